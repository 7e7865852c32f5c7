package access

import (
	"errors"
	"testing"
)

func TestParseScope(t *testing.T) {
	tests := []struct {
		in   string
		want string // v2 form; "" for an error
	}{
		{"system/Communication.rs", "system/Communication.rs"},
		{"system/Communication.cruds", "system/Communication.cruds"},
		{"system/*.rs", "system/*.rs"},
		{"system/AuditEvent.read", "system/AuditEvent.rs"}, // v1
		{"system/Communication.write", "system/Communication.cud"},
		{"system/*.*", "system/*.cruds"},
		{"user/Communication.r", "user/Communication.r"},
		{"system/Communication.sr", ""}, // out of order
		{"system/Communication.rr", ""},
		{"system/Communication.x", ""},
		{"system/Communication.", ""},
		{"system/Communication", ""},
		{"system/communication.rs", ""},
		{"system/Communication.rs?category=alert", ""},
		{"launch/patient", ""},
		{"admin/Communication.rs", ""},
		{"Communication.rs", ""},
	}
	for _, tt := range tests {
		got, err := ParseScope(tt.in)
		if tt.want == "" {
			if err == nil || !errors.Is(err, ErrScope) {
				t.Errorf("ParseScope(%q) = %v, %v; want an ErrScope", tt.in, got, err)
			}
			continue
		}
		if err != nil || got.String() != tt.want {
			t.Errorf("ParseScope(%q) = %v, %v; want %s", tt.in, got, err, tt.want)
		}
	}
}

func TestParseScopesKeepsOtherWordsApart(t *testing.T) {
	ss, other, err := ParseScopes("openid system/Communication.rs  offline_access system/AuditEvent.read")
	if err != nil || ss.String() != "system/Communication.rs system/AuditEvent.rs" || len(other) != 2 {
		t.Fatalf("got %v %v %v", ss, other, err)
	}
	if _, _, err := ParseScopes("system/Communication.rs system/Bad.q"); err == nil {
		t.Fatal("a malformed resource scope was accepted")
	}
}

func scopes(t *testing.T, s string) Scopes {
	t.Helper()
	ss, _, err := ParseScopes(s)
	if err != nil {
		t.Fatal(err)
	}
	return ss
}

func TestGrant(t *testing.T) {
	tests := []struct {
		registered, requested, want string
	}{
		{"system/Communication.rs", "system/Communication.rs", "system/Communication.rs"},
		{"system/Communication.rs", "system/Communication.cruds", "system/Communication.rs"},
		{"system/Communication.rs", "system/AuditEvent.rs", ""},
		{"system/*.rs", "system/AuditEvent.read", "system/AuditEvent.rs"},
		{"system/Communication.rs system/AuditEvent.r", "system/*.rs", "system/Communication.rs system/AuditEvent.r"},
		{"system/Communication.r system/*.s", "system/Communication.rs", "system/Communication.rs"},
		{"user/Communication.rs", "system/Communication.rs", ""},
		{"system/Communication.c", "system/Communication.rs", ""},
	}
	for _, tt := range tests {
		got := scopes(t, tt.registered).Grant(scopes(t, tt.requested))
		if got.String() != tt.want {
			t.Errorf("%q granting %q = %q, want %q", tt.registered, tt.requested, got, tt.want)
		}
	}
}

func TestAllows(t *testing.T) {
	ss := scopes(t, "system/Communication.rs system/*.r")
	tests := []struct {
		ctx, res string
		p        Perm
		want     bool
	}{
		{"system", "Communication", Read, true},
		{"system", "Communication", Search, true},
		{"system", "Communication", Read | Search, true},
		{"system", "Communication", Create, false},
		{"system", "Patient", Read, true},
		{"system", "Patient", Search, false},
		{"user", "Communication", Read, false},
		{"system", "Communication", 0, false},
	}
	for _, tt := range tests {
		if got := ss.Allows(tt.ctx, tt.res, tt.p); got != tt.want {
			t.Errorf("Allows(%s, %s, %s) = %v", tt.ctx, tt.res, tt.p, got)
		}
	}
}

func FuzzParseScopes(f *testing.F) {
	for _, s := range []string{"system/Communication.rs", "system/*.read openid", "user/X.cruds?x=1", "a/b.c/d"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ss, _, err := ParseScopes(s)
		if err != nil {
			return
		}
		again, _, err := ParseScopes(ss.String())
		if err != nil || again.String() != ss.String() {
			t.Fatalf("%q → %q does not read back: %v", s, ss, err)
		}
	})
}
