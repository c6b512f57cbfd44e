package principals

import (
	"errors"
	"math/rand"
	"strings"
	"testing"
	"testing/quick"
)

// sentinels lists every sentinel error, so a test can say which one an error
// wraps.
var sentinels = []error{ErrSyntax, ErrAccess, ErrRepo, ErrRef, ErrTooLong}

// errMismatch reports whether err fails to be want, a sentinel or nil.
func errMismatch(err, want error) bool {
	if want == nil {
		return err != nil
	}
	return !errors.Is(err, want)
}

func TestParseAccess(t *testing.T) {
	tests := []struct {
		in   string
		want Access
		err  error
	}{
		{"read", Read, nil},
		{"write", Write, nil},
		{"force", Force, nil},
		{"", 0, ErrAccess},
		{"Read", 0, ErrAccess},
		{"WRITE", 0, ErrAccess},
		{" read", 0, ErrAccess},
		{"read ", 0, ErrAccess},
		{"admin", 0, ErrAccess},
		{"r", 0, ErrAccess},
		{"1", 0, ErrAccess},
	}
	for _, tt := range tests {
		got, err := ParseAccess(tt.in)
		if got != tt.want || errMismatch(err, tt.err) {
			t.Errorf("ParseAccess(%q) = %v, %v; want %v, %v", tt.in, got, err, tt.want, tt.err)
		}
	}
}

func TestAccessString(t *testing.T) {
	tests := []struct {
		a    Access
		want string
	}{
		{Read, "read"},
		{Write, "write"},
		{Force, "force"},
		{0, "Access(0)"},
		{4, "Access(4)"},
	}
	for _, tt := range tests {
		if got := tt.a.String(); got != tt.want {
			t.Errorf("Access(%d).String() = %q; want %q", uint8(tt.a), got, tt.want)
		}
	}
}

func TestAccessIncludes(t *testing.T) {
	tests := []struct {
		a, b Access
		want bool
	}{
		{Read, Read, true},
		{Read, Write, false},
		{Read, Force, false},
		{Write, Read, true},
		{Write, Write, true},
		{Write, Force, false},
		{Force, Read, true},
		{Force, Write, true},
		{Force, Force, true},
		{0, 0, false},
		{0, Read, false},
		{Force, 0, false},
		{4, Read, false},
		{Force, 4, false},
		{255, 255, false},
	}
	for _, tt := range tests {
		if got := tt.a.Includes(tt.b); got != tt.want {
			t.Errorf("%v.Includes(%v) = %v; want %v", tt.a, tt.b, got, tt.want)
		}
	}
}

// atLength returns a valid principal of exactly n bytes.
func atLength(n int) string {
	p := "git:read:a:refs/heads/"
	return p + strings.Repeat("x", n-len(p))
}

func TestParse(t *testing.T) {
	tests := []struct {
		in   string
		want Grant
		err  error
	}{
		// Accepted.
		{"git:read:demo/app:refs/heads/main", Grant{Read, "demo/app", "refs/heads/main"}, nil},
		{"git:write:demo/app:refs/heads/feature/*", Grant{Write, "demo/app", "refs/heads/feature/*"}, nil},
		{"git:force:demo/app:*", Grant{Force, "demo/app", "*"}, nil},
		{"git:read:a:refs/*", Grant{Read, "a", "refs/*"}, nil},
		{"git:read:A9/x:refs/tags/*", Grant{Read, "A9/x", "refs/tags/*"}, nil},
		{"git:read:a.b_c-d:refs/tags/v1.0", Grant{Read, "a.b_c-d", "refs/tags/v1.0"}, nil},
		{"git:write:org/team/app:refs/heads/日本", Grant{Write, "org/team/app", "refs/heads/日本"}, nil},
		{atLength(MaxLen), Grant{Read, "a", atLength(MaxLen)[len("git:read:a:"):]}, nil},

		// Not four fields, or not git.
		{"", Grant{}, ErrSyntax},
		{"alice", Grant{}, ErrSyntax},
		{"git", Grant{}, ErrSyntax},
		{"git:read", Grant{}, ErrSyntax},
		{"git:read:demo/app", Grant{}, ErrSyntax},
		{"git:read:demo/app:refs/heads/a:b", Grant{}, ErrSyntax},
		{"git:read:demo/app:refs/heads/main:", Grant{}, ErrSyntax},
		{":git:read:demo/app:*", Grant{}, ErrSyntax},
		{"GIT:read:demo/app:*", Grant{}, ErrSyntax},
		{"ssh:read:demo/app:*", Grant{}, ErrSyntax},
		{" git:read:demo/app:*", Grant{}, ErrSyntax},
		{":::", Grant{}, ErrSyntax},

		// Access.
		{"git::demo/app:*", Grant{}, ErrAccess},
		{"git:Read:demo/app:*", Grant{}, ErrAccess},
		{"git:admin:demo/app:*", Grant{}, ErrAccess},
		{"git:read :demo/app:*", Grant{}, ErrAccess},

		// Repo.
		{"git:read::*", Grant{}, ErrRepo},
		{"git:read:/demo/app:*", Grant{}, ErrRepo},
		{"git:read:demo/app/:*", Grant{}, ErrRepo},
		{"git:read:demo/app.git:*", Grant{}, ErrRepo},
		{"git:read:demo//app:*", Grant{}, ErrRepo},
		{"git:read:demo/../app:*", Grant{}, ErrRepo},
		{"git:read:-a:*", Grant{}, ErrRepo},
		{"git:read:~alice/app:*", Grant{}, ErrRepo},
		{"git:read:demo/app :*", Grant{}, ErrRepo},

		// Ref pattern.
		{"git:read:demo/app:", Grant{}, ErrRef},
		{"git:read:demo/app:main", Grant{}, ErrRef},
		{"git:read:demo/app:HEAD", Grant{}, ErrRef},
		{"git:read:demo/app:refs/heads/feat*", Grant{}, ErrRef},
		{"git:read:demo/app:refs/heads/**", Grant{}, ErrRef},
		{"git:read:demo/app:refs/*/main", Grant{}, ErrRef},
		{"git:read:demo/app:**", Grant{}, ErrRef},
		{"git:read:demo/app:refs/heads/a..b", Grant{}, ErrRef},
		{"git:read:demo/app:refs/heads/main ", Grant{}, ErrRef},
		{"git:read:demo/app:refs/heads/\xff", Grant{}, ErrRef},

		// Length.
		{atLength(MaxLen + 1), Grant{}, ErrTooLong},
		{strings.Repeat(":", 5000), Grant{}, ErrTooLong},
	}
	for _, tt := range tests {
		got, err := Parse(tt.in)
		if got != tt.want || errMismatch(err, tt.err) {
			t.Errorf("Parse(%q) = %v, %v; want %v, %v", tt.in, got, err, tt.want, tt.err)
			continue
		}
		if err == nil {
			if s := got.String(); s != tt.in {
				t.Errorf("Parse(%q).String() = %q; want the input", tt.in, s)
			}
			continue
		}
		var pe *ParseError
		if !errors.As(err, &pe) || pe.Principal != tt.in {
			t.Errorf("Parse(%q) error %#v; want a *ParseError for the input", tt.in, err)
		}
		if n := wrapped(err); n != 1 {
			t.Errorf("Parse(%q) error %v wraps %d sentinel errors; want 1", tt.in, err, n)
		}
	}
}

func wrapped(err error) int {
	n := 0
	for _, s := range sentinels {
		if errors.Is(err, s) {
			n++
		}
	}
	return n
}

// TestParseErrorMessage checks that a refusal names the field and the
// offending part, so an operator can tell from a log line what was wrong.
func TestParseErrorMessage(t *testing.T) {
	tests := []struct {
		in   string
		want string
	}{
		{"alice", `principals: parse "alice": not a grant principal: 1 colon-separated field, want 4 ("git:<access>:<repo>:<refpattern>")`},
		{"ssh:read:a:*", `principals: parse "ssh:read:a:*": not a grant principal: first field "ssh" is not "git"`},
		{"git:admin:a:*", `principals: parse "git:admin:a:*": invalid access "admin": want "read", "write" or "force"`},
		{"git:read:a//b:*", `principals: parse "git:read:a//b:*": invalid repo "a//b": contains "//"`},
		{"git:read:a/../b:*", `principals: parse "git:read:a/../b:*": invalid repo "a/../b": segment ".." is not allowed`},
		{"git:read:a/.b:*", `principals: parse "git:read:a/.b:*": invalid repo "a/.b": segment ".b" does not start with a letter or digit`},
		{"git:read:a/b~c:*", `principals: parse "git:read:a/b~c:*": invalid repo "a/b~c": character "~" is not allowed`},
		{"git:read:a/bé:*", `principals: parse "git:read:a/bé:*": invalid repo "a/bé": character "é" is not allowed`},
		{"git:read:a.git:*", `principals: parse "git:read:a.git:*": invalid repo "a.git": ends with ".git"`},
		{"git:read:a:refs/heads/x.lock", `principals: parse "git:read:a:refs/heads/x.lock": invalid ref "refs/heads/x.lock": component "x.lock" ends with ".lock"`},
		{"git:read:a:refs/heads/a\tb", `principals: parse "git:read:a:refs/heads/a\tb": invalid ref "refs/heads/a\tb": character "\t" is not allowed`},
		{"git:read:a:refs/heads/.x/*", `principals: parse "git:read:a:refs/heads/.x/*": invalid ref "refs/heads/.x/*": prefix "refs/heads/.x" component ".x" starts with "."`},
		{"git:read:a:refs/*/main", `principals: parse "git:read:a:refs/*/main": invalid ref "refs/*/main": "*" is allowed only alone or as the whole last component`},
		{"git:read:a:heads/main", `principals: parse "git:read:a:heads/main": invalid ref "heads/main": does not start with "refs/"`},
	}
	for _, tt := range tests {
		_, err := Parse(tt.in)
		if err == nil || err.Error() != tt.want {
			t.Errorf("Parse(%q) error = %v; want %s", tt.in, err, tt.want)
		}
	}

	long := atLength(MaxLen + 1)
	_, err := Parse(long)
	want := `principals: parse "` + long[:quoteLimit] + `"...: principal too long: 1025 bytes, limit 1024`
	if err == nil || err.Error() != want {
		t.Errorf("Parse(<%d bytes>) error = %v; want %s", len(long), err, want)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		g   Grant
		err error
	}{
		{Grant{Read, "demo/app", "refs/heads/main"}, nil},
		{Grant{Force, "a", "*"}, nil},
		{Grant{Write, "a", "refs/*"}, nil},
		{Grant{Read, "a", atLength(MaxLen)[len("git:read:a:"):]}, nil},
		{Grant{}, ErrAccess},
		{Grant{0, "demo/app", "*"}, ErrAccess},
		{Grant{4, "demo/app", "*"}, ErrAccess},
		{Grant{Read, "", "*"}, ErrRepo},
		{Grant{Read, "demo/app.git", "*"}, ErrRepo},
		{Grant{Read, "demo:app", "*"}, ErrRepo},
		{Grant{Read, "demo/app", ""}, ErrRef},
		{Grant{Read, "demo/app", "refs/heads/a:b"}, ErrRef},
		{Grant{Read, "demo/app", "refs/heads/x/"}, ErrRef},
		{Grant{Read, "a", atLength(MaxLen + 1)[len("git:read:a:"):]}, ErrTooLong},
	}
	for _, tt := range tests {
		err := tt.g.Validate()
		if errMismatch(err, tt.err) {
			t.Errorf("%#v.Validate() = %v; want %v", tt.g, err, tt.err)
		}
		// Validate and Parse agree.
		back, perr := Parse(tt.g.String())
		if (err == nil) != (perr == nil && back == tt.g) {
			t.Errorf("%#v.Validate() = %v, but Parse(%q) = %#v, %v", tt.g, err, tt.g.String(), back, perr)
		}
	}
}

// TestCanonicalOnly checks that near spellings of a valid principal are
// refused rather than read as it.
func TestCanonicalOnly(t *testing.T) {
	const canon = "git:write:demo/app:refs/heads/feature/*"
	if _, err := Parse(canon); err != nil {
		t.Fatalf("Parse(%q) = %v", canon, err)
	}
	for _, s := range []string{
		"GIT:write:demo/app:refs/heads/feature/*",
		"git:WRITE:demo/app:refs/heads/feature/*",
		"git:Write:demo/app:refs/heads/feature/*",
		"git:write:/demo/app:refs/heads/feature/*",
		"git:write:demo/app.git:refs/heads/feature/*",
		"git:write:demo/app/:refs/heads/feature/*",
		"git:write:demo//app:refs/heads/feature/*",
		"git:write:demo/app:refs/heads/feature/",
		"git:write:demo/app:refs/heads/feature//*",
		"git:write:demo/app:refs/heads/feature/**",
		"git:write:demo/app:/refs/heads/feature/*",
		"git:write:demo/app:heads/feature/*",
		" git:write:demo/app:refs/heads/feature/*",
		"git:write:demo/app:refs/heads/feature/* ",
		"git:write:demo/app:refs/heads/feature/*\n",
		"git: write:demo/app:refs/heads/feature/*",
		"git:write: demo/app:refs/heads/feature/*",
		"git:write:demo/app: refs/heads/feature/*",
	} {
		if g, err := Parse(s); err == nil {
			t.Errorf("Parse(%q) = %v, nil; want an error", s, g)
		}
	}
}

// TestRoundTrip checks over random valid grants that the canonical
// string parses back to the same grant.
func TestRoundTrip(t *testing.T) {
	roundTrip := func(v validGrant) bool {
		g := Grant(v)
		if err := g.Validate(); err != nil {
			t.Logf("%#v.Validate() = %v", g, err)
			return false
		}
		s := g.String()
		back, err := Parse(s)
		if err != nil || back != g || back.String() != s {
			t.Logf("Parse(%q) = %#v, %v; want %#v", s, back, err, g)
			return false
		}
		return true
	}
	cfg := &quick.Config{MaxCount: 3000, Rand: rand.New(rand.NewSource(1))}
	if err := quick.Check(roundTrip, cfg); err != nil {
		t.Error(err)
	}
}

// TestParseArbitrary checks the canonical-form property on arbitrary
// strings, most of which are refused.
func TestParseArbitrary(t *testing.T) {
	canonical := func(s string) bool {
		g, err := Parse(s)
		if err != nil {
			return g == Grant{} && wrapped(err) == 1
		}
		return g.String() == s && g.Validate() == nil
	}
	cfg := &quick.Config{MaxCount: 3000, Rand: rand.New(rand.NewSource(2))}
	if err := quick.Check(canonical, cfg); err != nil {
		t.Error(err)
	}
}

func BenchmarkParse(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse("git:write:demo/app:refs/heads/feature/*"); err != nil {
			b.Fatal(err)
		}
	}
}
