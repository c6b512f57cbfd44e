package principals

import (
	"errors"
	"fmt"
	"reflect"
	"testing"
)

func TestMatchRef(t *testing.T) {
	tests := []struct {
		pattern, ref string
		want         bool
	}{
		{"*", "refs/heads/main", true},
		{"*", "refs/tags/v1", true},
		{"*", "refs/x", true},
		{"*", "HEAD", false}, // not a full ref name: resolve it first
		{"*", "main", false},
		{"*", "refs/heads/a..b", false},
		{"*", "", false},

		{"refs/heads/main", "refs/heads/main", true},
		{"refs/heads/main", "refs/heads/main2", false},
		{"refs/heads/main", "refs/heads/mai", false},
		{"refs/heads/main", "refs/heads/main/x", false},
		{"refs/heads/main", "refs/heads/Main", false},
		{"refs/heads/main", "refs/tags/main", false},

		{"refs/heads/feature/*", "refs/heads/feature/login", true},
		{"refs/heads/feature/*", "refs/heads/feature/a/b", true},
		{"refs/heads/feature/*", "refs/heads/feature", false},
		{"refs/heads/feature/*", "refs/heads/feature/", false},
		{"refs/heads/feature/*", "refs/heads/featurex/y", false},
		{"refs/heads/feature/*", "refs/heads/featurex", false},
		{"refs/heads/feature/*", "refs/heads/main", false},
		{"refs/heads/feature/*", "refs/heads/feature/../main", false},
		{"refs/heads/feature/*", "refs/heads/feature//x", false},
		{"refs/heads/feature/*", "refs/heads/feature/x.lock", false},

		{"refs/*", "refs/heads/main", true},
		{"refs/*", "refs/x", true},
		{"refs/*", "refs", false},
		{"refs/*", "refsx/y", false},
		{"refs/tags/*", "refs/tags/v1.0", true},
		{"refs/tags/*", "refs/heads/v1.0", false},
	}
	for _, tt := range tests {
		g := Grant{Read, "demo/app", tt.pattern}
		if got := g.MatchRef(tt.ref); got != tt.want {
			t.Errorf("Grant{Ref: %q}.MatchRef(%q) = %v; want %v", tt.pattern, tt.ref, got, tt.want)
		}
	}
}

func TestCovers(t *testing.T) {
	tests := []struct {
		g         Grant
		repo, ref string
		need      Access
		want      bool
	}{
		{Grant{Read, "demo/app", "*"}, "demo/app", "refs/heads/main", Read, true},
		{Grant{Read, "demo/app", "*"}, "demo/app", "refs/heads/main", Write, false},
		{Grant{Read, "demo/app", "*"}, "demo/app", "refs/heads/main", Force, false},
		{Grant{Write, "demo/app", "*"}, "demo/app", "refs/heads/main", Read, true},
		{Grant{Write, "demo/app", "*"}, "demo/app", "refs/heads/main", Write, true},
		{Grant{Write, "demo/app", "*"}, "demo/app", "refs/heads/main", Force, false},
		{Grant{Force, "demo/app", "*"}, "demo/app", "refs/heads/main", Read, true},
		{Grant{Force, "demo/app", "*"}, "demo/app", "refs/heads/main", Write, true},
		{Grant{Force, "demo/app", "*"}, "demo/app", "refs/heads/main", Force, true},
		{Grant{Force, "demo/app", "*"}, "demo/app", "refs/heads/main", 0, false},
		{Grant{Force, "demo/app", "*"}, "demo/app", "refs/heads/main", 4, false},

		{Grant{Write, "demo/app", "refs/heads/main"}, "demo/app", "refs/heads/main", Write, true},
		{Grant{Write, "demo/app", "refs/heads/main"}, "demo/app", "refs/heads/dev", Write, false},
		{Grant{Write, "demo/app", "refs/heads/feature/*"}, "demo/app", "refs/heads/feature/login", Write, true},
		{Grant{Write, "demo/app", "refs/heads/feature/*"}, "demo/app", "refs/heads/feature", Write, false},

		// The repo is compared exactly; callers normalize first.
		{Grant{Read, "demo/app", "*"}, "demo/app2", "refs/heads/main", Read, false},
		{Grant{Read, "demo/app", "*"}, "demo", "refs/heads/main", Read, false},
		{Grant{Read, "demo/app", "*"}, "Demo/app", "refs/heads/main", Read, false},
		{Grant{Read, "demo/app", "*"}, "/demo/app", "refs/heads/main", Read, false},
		{Grant{Read, "demo/app", "*"}, "demo/app.git", "refs/heads/main", Read, false},
		{Grant{Read, "demo/app", "*"}, "demo/app/x", "refs/heads/main", Read, false},

		// A grant that did not come from Parse still covers nothing malformed.
		{Grant{}, "", "refs/heads/main", Read, false},
		{Grant{Read, "", "*"}, "", "refs/heads/main", Read, false},
		{Grant{Read, "a/../b", "*"}, "a/../b", "refs/heads/main", Read, false},
		{Grant{Read, "demo/app", "refs/heads/a..b"}, "demo/app", "refs/heads/a..b", Read, false},
		{Grant{Read, "demo/app", "HEAD"}, "demo/app", "HEAD", Read, false},
		{Grant{0, "demo/app", "*"}, "demo/app", "refs/heads/main", 0, false},
	}
	for _, tt := range tests {
		if got := tt.g.Covers(tt.repo, tt.ref, tt.need); got != tt.want {
			t.Errorf("%v.Covers(%q, %q, %v) = %v; want %v", tt.g, tt.repo, tt.ref, tt.need, got, tt.want)
		}
	}
}

// demoSet is the grant set the Set tests share.
var demoSet = mustParseSet(
	"git:read:demo/app:*",
	"git:write:demo/app:refs/heads/feature/*",
	"git:force:demo/app:refs/heads/feature/mine",
	"git:write:other/app:refs/heads/main",
)

func mustParseSet(principals ...string) Set {
	s, errs := ParseSet(principals)
	if len(errs) > 0 {
		panic(fmt.Sprint(errs))
	}
	return s
}

func TestSetAllowsMax(t *testing.T) {
	tests := []struct {
		repo, ref string
		max       Access // 0: none
	}{
		{"demo/app", "refs/heads/main", Read},
		{"demo/app", "refs/tags/v1", Read},
		{"demo/app", "refs/heads/feature", Read},
		{"demo/app", "refs/heads/featurex/y", Read},
		{"demo/app", "refs/heads/feature/login", Write},
		{"demo/app", "refs/heads/feature/a/b", Write},
		{"demo/app", "refs/heads/feature/mine", Force},
		{"demo/app", "refs/heads/feature/mine/x", Write},
		{"other/app", "refs/heads/main", Write},
		{"other/app", "refs/heads/dev", 0},
		{"other", "refs/heads/main", 0},
		{"nope/app", "refs/heads/main", 0},
		{"demo/app", "HEAD", 0},
		{"demo/app", "refs/heads/a..b", 0},
		{"demo/app.git", "refs/heads/main", 0},
		{"", "refs/heads/main", 0},
	}
	for _, tt := range tests {
		got, ok := demoSet.Max(tt.repo, tt.ref)
		if got != tt.max || ok != (tt.max != 0) {
			t.Errorf("Max(%q, %q) = %v, %v; want %v, %v", tt.repo, tt.ref, got, ok, tt.max, tt.max != 0)
		}
		for _, need := range []Access{Read, Write, Force} {
			want := tt.max != 0 && tt.max >= need
			if got := demoSet.Allows(tt.repo, tt.ref, need); got != want {
				t.Errorf("Allows(%q, %q, %v) = %v; want %v", tt.repo, tt.ref, need, got, want)
			}
		}
		for _, need := range []Access{0, 4} {
			if demoSet.Allows(tt.repo, tt.ref, need) {
				t.Errorf("Allows(%q, %q, %v) = true; want false", tt.repo, tt.ref, need)
			}
		}
	}
	// Hand-built grants with an invalid access give nothing.
	bad := Set{{0, "demo/app", "*"}, {7, "demo/app", "*"}, {Read, "demo/app", "refs/heads/main"}}
	if a, ok := bad.Max("demo/app", "refs/heads/main"); a != Read || !ok {
		t.Errorf("Max over invalid accesses = %v, %v; want read, true", a, ok)
	}
	if a, ok := bad.Max("demo/app", "refs/heads/dev"); ok {
		t.Errorf("Max over invalid accesses = %v, true; want 0, false", a)
	}
	if bad.Allows("demo/app", "refs/heads/dev", Read) {
		t.Error("Allows over invalid accesses = true; want false")
	}

	var empty Set
	if empty.Allows("demo/app", "refs/heads/main", Read) {
		t.Error("empty Set allows read; want nothing")
	}
	if a, ok := empty.Max("demo/app", "refs/heads/main"); ok {
		t.Errorf("empty Set Max = %v, true; want 0, false", a)
	}
}

// TestAllowsMatchesCovers checks that Allows is the "any grant covers"
// question and Max the strongest covering access, over random grants and
// requests.
func TestAllowsMatchesCovers(t *testing.T) {
	r := newRand(5)
	for range 500 {
		var s Set
		for range 1 + r.Intn(4) {
			s = append(s, Grant(validGrant{}.Generate(r, 0).Interface().(validGrant)))
		}
		g := s[r.Intn(len(s))]
		repo, ref := g.Repo, genRefName(r)
		if r.Intn(2) == 0 {
			repo = genRepo(r)
		}
		var best Access
		for _, need := range []Access{Read, Write, Force} {
			covered := false
			for _, g := range s {
				if g.Covers(repo, ref, need) {
					covered = true
				}
			}
			if got := s.Allows(repo, ref, need); got != covered {
				t.Fatalf("%v.Allows(%q, %q, %v) = %v; Covers says %v", s, repo, ref, need, got, covered)
			}
			if covered {
				best = need
			}
		}
		if got, ok := s.Max(repo, ref); got != best || ok != (best != 0) {
			t.Fatalf("%v.Max(%q, %q) = %v, %v; want %v", s, repo, ref, got, ok, best)
		}
	}
}

func TestForRepo(t *testing.T) {
	tests := []struct {
		repo string
		want Set
	}{
		{"demo/app", Set{demoSet[0], demoSet[1], demoSet[2]}},
		{"other/app", Set{demoSet[3]}},
		{"other", nil},
		{"demo/app.git", nil},
		{"", nil},
	}
	for _, tt := range tests {
		if got := demoSet.ForRepo(tt.repo); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ForRepo(%q) = %v; want %v", tt.repo, got, tt.want)
		}
	}
}

func TestParseSet(t *testing.T) {
	in := []string{
		"alice",
		"git:write:demo/app:refs/heads/main",
		"git:read:demo/app:*",
		"git:write:demo/app:refs/heads/main", // duplicate
		"git:READ:demo/app:*",
		"git:read:demo/app.git:*",
		"",
		"git:read:demo/app:*", // duplicate
		"git:force:demo/app:refs/heads/x*",
		"git:read:other:refs/*",
	}
	want := Set{
		{Write, "demo/app", "refs/heads/main"},
		{Read, "demo/app", "*"},
		{Read, "other", "refs/*"},
	}
	wantErrs := []struct {
		principal string
		err       error
	}{
		{"alice", ErrSyntax},
		{"git:READ:demo/app:*", ErrAccess},
		{"git:read:demo/app.git:*", ErrRepo},
		{"", ErrSyntax},
		{"git:force:demo/app:refs/heads/x*", ErrRef},
	}
	got, errs := ParseSet(in)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ParseSet grants = %v; want %v", got, want)
	}
	if len(errs) != len(wantErrs) {
		t.Fatalf("ParseSet errors = %v; want %d errors", errs, len(wantErrs))
	}
	for i, w := range wantErrs {
		var pe *ParseError
		if !errors.As(errs[i], &pe) || pe.Principal != w.principal || !errors.Is(errs[i], w.err) {
			t.Errorf("ParseSet error %d = %v; want a *ParseError for %q wrapping %v", i, errs[i], w.principal, w.err)
		}
	}

	if s, errs := ParseSet(nil); s != nil || errs != nil {
		t.Errorf("ParseSet(nil) = %v, %v; want nil, nil", s, errs)
	}
	if s, errs := ParseSet([]string{"alice", "bob"}); len(s) != 0 || len(errs) != 2 {
		t.Errorf("ParseSet(alice, bob) = %v, %v; want no grants and 2 errors", s, errs)
	}
}

// TestMatchAllocs holds the hot path to its promise of no allocations.
func TestMatchAllocs(t *testing.T) {
	s := benchSet()
	g := s[len(s)-1]
	checks := map[string]func(){
		"MatchRef": func() { g.MatchRef("refs/heads/feature/login") },
		"Covers":   func() { g.Covers("demo/app", "refs/heads/feature/login", Write) },
		"Allows":   func() { s.Allows("demo/app", "refs/heads/feature/login", Write) },
		"Max":      func() { s.Max("demo/app", "refs/heads/feature/login") },
		"Refused":  func() { s.Allows("demo/app", "refs/heads/a..b", Write) },
	}
	for name, f := range checks {
		if n := testing.AllocsPerRun(100, f); n != 0 {
			t.Errorf("%s: %v allocations per run; want 0", name, n)
		}
	}
}

// benchSet returns ten grants of which only the last covers a write to
// demo/app at refs/heads/feature/login.
func benchSet() Set {
	return mustParseSet(
		"git:read:demo/app:*",
		"git:write:demo/app:refs/heads/main",
		"git:write:demo/app:refs/heads/release/*",
		"git:write:demo/lib:refs/heads/feature/*",
		"git:force:other/app:*",
		"git:write:demo/app:refs/tags/*",
		"git:write:demo/app:refs/heads/feat",
		"git:write:demo/app:refs/heads/featurex/*",
		"git:read:demo/app:refs/heads/feature/*",
		"git:write:demo/app:refs/heads/feature/*",
	)
}

func BenchmarkSetAllows(b *testing.B) {
	s := benchSet()
	b.ReportAllocs()
	for b.Loop() {
		if !s.Allows("demo/app", "refs/heads/feature/login", Write) {
			b.Fatal("Allows = false; want true")
		}
	}
}

func BenchmarkMatchRef(b *testing.B) {
	g := Grant{Write, "demo/app", "refs/heads/feature/*"}
	b.ReportAllocs()
	for b.Loop() {
		if !g.MatchRef("refs/heads/feature/login") {
			b.Fatal("MatchRef = false; want true")
		}
	}
}
