package access

import (
	"errors"
	"fmt"
	"strings"
)

// Perm is a set of SMART v2 interactions: create, read, update, delete,
// search.
type Perm uint8

// Interactions a scope permits.
const (
	Create Perm = 1 << iota
	Read
	Update
	Delete
	Search
	All = Create | Read | Update | Delete | Search
)

// String is the SMART v2 suffix, letters in the order c, r, u, d, s.
func (p Perm) String() string {
	var b strings.Builder
	for i, c := range "cruds" {
		if p&(1<<i) != 0 {
			b.WriteRune(c)
		}
	}
	return b.String()
}

// Scope is one SMART resource scope: a context ("system", "user",
// "patient"), a resource type or "*", and the interactions it permits.
type Scope struct {
	Context  string
	Resource string
	Perm     Perm
}

// String is the scope in SMART v2 syntax.
func (s Scope) String() string { return s.Context + "/" + s.Resource + "." + s.Perm.String() }

// ErrScope is wrapped by every error ParseScope returns.
var ErrScope = errors.New("not a SMART resource scope")

// ParseScope reads one scope in SMART v2 syntax ("system/Communication.rs")
// or v1 ("system/Communication.read", ".write", ".*"). Granular v2 scopes
// (with a "?" query) are not supported.
func ParseScope(s string) (Scope, error) {
	if len(s) > 128 {
		return Scope{}, fmt.Errorf("%w: longer than 128 characters", ErrScope)
	}
	ctx, rest, ok := strings.Cut(s, "/")
	if !ok {
		return Scope{}, fmt.Errorf("%w: %q has no context/ part", ErrScope, s)
	}
	switch ctx {
	case "system", "user", "patient":
	default:
		return Scope{}, fmt.Errorf("%w: context %q is not system, user or patient", ErrScope, ctx)
	}
	if strings.Contains(rest, "?") {
		return Scope{}, fmt.Errorf("%w: granular scopes (with ?) are not supported", ErrScope)
	}
	i := strings.LastIndexByte(rest, '.')
	if i < 0 {
		return Scope{}, fmt.Errorf("%w: %q has no .permissions part", ErrScope, s)
	}
	res, perms := rest[:i], rest[i+1:]
	if res != "*" && !resourceName(res) {
		return Scope{}, fmt.Errorf("%w: %q is not a resource type", ErrScope, res)
	}
	var p Perm
	switch perms {
	case "read":
		p = Read | Search
	case "write":
		p = Create | Update | Delete
	case "*":
		p = All
	default:
		last := -1
		for _, c := range perms {
			i := strings.IndexRune("cruds", c)
			if i <= last {
				return Scope{}, fmt.Errorf("%w: permissions %q are not letters of cruds in that order", ErrScope, perms)
			}
			last = i
			p |= 1 << i
		}
		if p == 0 {
			return Scope{}, fmt.Errorf("%w: %q permits nothing", ErrScope, s)
		}
	}
	return Scope{Context: ctx, Resource: res, Perm: p}, nil
}

func resourceName(s string) bool {
	if s == "" || len(s) > 64 || s[0] < 'A' || s[0] > 'Z' {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') {
			return false
		}
	}
	return true
}

// Scopes is a set of scopes.
type Scopes []Scope

// ParseScopes reads a space-separated scope list. Words that are not
// resource scopes (openid, launch, offline_access …) are returned apart in
// other; a malformed resource scope is an error.
func ParseScopes(s string) (scopes Scopes, other []string, err error) {
	for _, w := range strings.Fields(s) {
		if !strings.Contains(w, "/") {
			other = append(other, w)
			continue
		}
		sc, err := ParseScope(w)
		if err != nil {
			return nil, nil, err
		}
		scopes = append(scopes, sc)
	}
	return scopes, other, nil
}

// String is the space-separated list.
func (ss Scopes) String() string {
	words := make([]string, len(ss))
	for i, s := range ss {
		words[i] = s.String()
	}
	return strings.Join(words, " ")
}

// Allows reports whether a scope of the given context permits p on
// resource.
func (ss Scopes) Allows(context, resource string, p Perm) bool {
	var have Perm
	for _, s := range ss {
		if s.Context == context && (s.Resource == "*" || s.Resource == resource) {
			have |= s.Perm
		}
	}
	return p != 0 && have&p == p
}

// Grant is what of the requested scopes ss permit: each requested scope
// narrowed to the interactions ss allow on it (a wildcard request to what
// ss allow on each resource), dropping those left with nothing.
func (ss Scopes) Grant(requested Scopes) Scopes {
	var out Scopes
	add := func(s Scope) {
		for i := range out {
			if out[i].Context == s.Context && out[i].Resource == s.Resource {
				out[i].Perm |= s.Perm
				return
			}
		}
		out = append(out, s)
	}
	for _, r := range requested {
		for _, have := range ss {
			if have.Context != r.Context {
				continue
			}
			p := have.Perm & r.Perm
			if p == 0 {
				continue
			}
			switch {
			case have.Resource == r.Resource, have.Resource == "*":
				add(Scope{r.Context, r.Resource, p})
			case r.Resource == "*":
				add(Scope{r.Context, have.Resource, p})
			}
		}
	}
	return out
}
