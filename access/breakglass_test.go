package access_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/carebridge/carebridge/access"
)

func TestCommunicationScope(t *testing.T) {
	now := time.Date(2026, 11, 3, 15, 0, 0, 0, time.UTC)
	own := []string{"Practitioner/a", "CareTeam/icu"}
	user := func(r access.Role, until time.Time) access.Principal {
		return access.Principal{Kind: access.KindUser, Role: r, Recipients: own, BreakGlassUntil: until}
	}
	tests := []struct {
		name string
		p    access.Principal
		want access.CommunicationScope
	}{
		{"client", access.Principal{Kind: access.KindClient, ID: "ehr"}, access.CommunicationScope{All: true}},
		{"physician", user(access.RolePhysician, time.Time{}), access.CommunicationScope{Recipients: own}},
		{"nurse", user(access.RoleNurse, time.Time{}), access.CommunicationScope{Recipients: own}},
		{"unit clerk", user(access.RoleUnitClerk, time.Time{}), access.CommunicationScope{Recipients: own}},
		{"physician without recipients", access.Principal{Kind: access.KindUser, Role: access.RolePhysician}, access.CommunicationScope{}},
		{"break-glass", user(access.RolePhysician, now.Add(time.Second)), access.CommunicationScope{All: true, Recipients: own, BreakGlass: true}},
		{"break-glass ended", user(access.RoleNurse, now), access.CommunicationScope{Recipients: own}},
		{"security officer", user(access.RoleSecurityOfficer, time.Time{}), access.CommunicationScope{All: true}},
		{"administrator", user(access.RoleAdministrator, time.Time{}), access.CommunicationScope{All: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.p.CommunicationScope(now); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("CommunicationScope = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestCommunicationScopeAllows(t *testing.T) {
	own := []string{"Practitioner/a", "CareTeam/icu"}
	limited := access.CommunicationScope{Recipients: own}
	glass := access.CommunicationScope{All: true, Recipients: own, BreakGlass: true}
	tests := []struct {
		name           string
		scope          access.CommunicationScope
		recipients     []string
		ok, breakGlass bool
	}{
		{"own practitioner", limited, []string{"Practitioner/a"}, true, false},
		{"own care team among others", limited, []string{"Practitioner/z", "CareTeam/icu"}, true, false},
		{"another unit's", limited, []string{"Practitioner/z", "CareTeam/ward-3"}, false, false},
		{"no recipients", limited, nil, false, false},
		{"nothing linked", access.CommunicationScope{}, []string{"Practitioner/a"}, false, false},
		{"break-glass, another unit's", glass, []string{"CareTeam/ward-3"}, true, true},
		{"break-glass, own", glass, []string{"Practitioner/a"}, true, false},
		{"client", access.CommunicationScope{All: true}, []string{"CareTeam/ward-3"}, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ok, bg := tt.scope.Allows(tt.recipients)
			if ok != tt.ok || bg != tt.breakGlass {
				t.Errorf("Allows(%v) = %v, %v; want %v, %v", tt.recipients, ok, bg, tt.ok, tt.breakGlass)
			}
		})
	}
}

func TestParseRecipients(t *testing.T) {
	tests := []struct {
		name string
		in   []string
		want []string
		err  bool
	}{
		{"none", nil, nil, false},
		{"practitioner and care team", []string{"Practitioner/a", " CareTeam/icu "}, []string{"Practitioner/a", "CareTeam/icu"}, false},
		{"repeats", []string{"CareTeam/icu", "CareTeam/icu"}, []string{"CareTeam/icu"}, false},
		{"another type", []string{"Patient/p1"}, nil, true},
		{"no id", []string{"Practitioner/"}, nil, true},
		{"not an id", []string{"CareTeam/a b"}, nil, true},
		{"absolute", []string{"https://ehr.example.org/fhir/Practitioner/a"}, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := access.ParseRecipients(tt.in)
			if (err != nil) != tt.err || !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ParseRecipients(%q) = %q, %v; want %q, error %v", tt.in, got, err, tt.want, tt.err)
			}
		})
	}
}

// TestRecipientsReachThePrincipal: the references a user is added with, or
// set to later, are their session's principal's.
func TestRecipientsReachThePrincipal(t *testing.T) {
	ctx := context.Background()
	f := newLoginFixture(t, access.UsersConfig{})
	if _, err := f.users.Add(ctx, "bad.md", access.RolePhysician, "Patient/p1"); !errors.Is(err, access.ErrRecipient) {
		t.Fatalf("Add with a Patient as recipient: %v, want ErrRecipient", err)
	}
	p := f.add(t, "ann.md", access.RolePhysician)
	tok := f.login(t, p)
	if pr, err := f.users.VerifySession(ctx, tok.Token); err != nil || pr.Recipients != nil {
		t.Fatalf("principal of a user with no recipients: %+v, %v", pr, err)
	}
	want := []string{"Practitioner/a", "CareTeam/icu"}
	if _, err := f.users.SetRecipients(ctx, "ann.md", want); err != nil {
		t.Fatal(err)
	}
	if pr, err := f.users.VerifySession(ctx, tok.Token); err != nil || !reflect.DeepEqual(pr.Recipients, want) {
		t.Fatalf("principal after SetRecipients: %+v, %v; want recipients %v", pr, err, want)
	}
	if _, err := f.users.SetRecipients(ctx, "nobody", want); !errors.Is(err, access.ErrUnknownUser) {
		t.Fatalf("SetRecipients of an unknown user: %v", err)
	}
}

func TestBreakGlass(t *testing.T) {
	ctx := context.Background()
	f := newLoginFixture(t, access.UsersConfig{})
	p := f.add(t, "ann.md", access.RolePhysician)
	tok := f.login(t, p).Token
	const reason = "cardiac arrest on ward 3, covering for Dr Z"

	for _, bad := range []struct {
		name   string
		reason string
		d      time.Duration
		want   error
	}{
		{"no reason", "", 0, access.ErrBreakGlassReason},
		{"blank reason", "             ", 0, access.ErrBreakGlassReason},
		{"9 characters", "emergency", 0, access.ErrBreakGlassReason},
		{"501 characters", strings.Repeat("é", 501), 0, access.ErrBreakGlassReason},
		{"longer than 4 hours", reason, 4*time.Hour + time.Second, access.ErrBreakGlassLength},
		{"negative", reason, -time.Minute, access.ErrBreakGlassLength},
		{"not a session", reason, 0, access.ErrToken},
	} {
		t.Run(bad.name, func(t *testing.T) {
			token := tok
			if bad.want == access.ErrToken {
				token = "not a session token"
			}
			if _, err := f.users.BreakGlass(ctx, token, bad.reason, bad.d); !errors.Is(err, bad.want) {
				t.Fatalf("BreakGlass = %v, want %v", err, bad.want)
			}
		})
	}
	if pr, _ := f.users.VerifySession(ctx, tok); !pr.BreakGlassUntil.IsZero() {
		t.Fatalf("refused break-glass requests left %v", pr.BreakGlassUntil)
	}

	now := f.clock.Now()
	until, err := f.users.BreakGlass(ctx, tok, reason, 0)
	if err != nil || !until.Equal(now.Add(30*time.Minute)) {
		t.Fatalf("BreakGlass = %v, %v; want 30 minutes from now", until, err)
	}
	pr, err := f.users.VerifySession(ctx, tok)
	if err != nil || !pr.BreakGlassUntil.Equal(until) || !pr.CommunicationScope(f.clock.Now()).BreakGlass {
		t.Fatalf("principal after break-glass: %+v, %v", pr, err)
	}
	// The reason is stored sealed to the session, not in the clear.
	h := sha256.Sum256([]byte(tok))
	ss, err := f.st.GetSession(ctx, h[:])
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(ss.BreakGlassReason), "cardiac") {
		t.Fatal("the break-glass reason is stored in the clear")
	}
	if got, err := f.keys.Open(ss.BreakGlassReason, []byte("Session/"+hex.EncodeToString(h[:]))); err != nil || string(got) != reason {
		t.Fatalf("opening the reason = %q, %v", got, err)
	}
	if _, err := f.keys.Open(ss.BreakGlassReason, []byte("Session/00")); err == nil {
		t.Fatal("the reason opens with another session's associated data")
	}

	if until, err = f.users.BreakGlass(ctx, tok, reason, 4*time.Hour); err != nil || !until.Equal(now.Add(4*time.Hour)) {
		t.Fatalf("BreakGlass for 4 hours = %v, %v", until, err)
	}
	if pr, err = f.users.VerifySession(ctx, tok); err != nil || !pr.CommunicationScope(now.Add(4*time.Hour-time.Second)).All {
		t.Fatalf("principal after a 4-hour break-glass: %+v, %v", pr, err)
	}
	if pr.CommunicationScope(now.Add(4 * time.Hour)).All {
		t.Fatal("the break-glass outlived its 4 hours")
	}

	officer := f.add(t, "sec", access.RoleSecurityOfficer)
	if _, err := f.users.BreakGlass(ctx, f.login(t, officer).Token, reason, 0); !errors.Is(err, access.ErrBreakGlassRole) {
		t.Fatalf("a security officer's break-glass: %v, want ErrBreakGlassRole", err)
	}
	nurse := f.add(t, "nia.rn", access.RoleNurse)
	ntok := f.login(t, nurse).Token
	if _, err := f.users.Logout(ctx, ntok); err != nil {
		t.Fatal(err)
	}
	if _, err := f.users.BreakGlass(ctx, ntok, reason, 0); !errors.Is(err, access.ErrToken) {
		t.Fatalf("break-glass after logout: %v, want ErrToken", err)
	}
}
