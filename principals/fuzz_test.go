package principals

import (
	"errors"
	"strings"
	"testing"
)

// FuzzParse checks, for any input, that Parse does not panic, that what it
// accepts is canonical and valid, and that what it refuses it refuses with
// a *ParseError that wraps one sentinel. Seeds are in
// testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	f.Fuzz(func(t *testing.T, s string) {
		g, err := Parse(s)
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) || pe.Principal != s || wrapped(err) != 1 {
				t.Fatalf("Parse(%q) error %#v; want a *ParseError for the input wrapping one sentinel", s, err)
			}
			if g != (Grant{}) {
				t.Fatalf("Parse(%q) = %#v, %v; want the zero Grant with an error", s, g, err)
			}
			if !strings.HasPrefix(err.Error(), "principals: parse ") {
				t.Fatalf("Parse(%q) error %q; want the principals: parse prefix", s, err)
			}
			return
		}
		if got := g.String(); got != s {
			t.Fatalf("Parse(%q).String() = %q; want the input", s, got)
		}
		if err := g.Validate(); err != nil {
			t.Fatalf("Parse(%q).Validate() = %v", s, err)
		}
		if again, err := Parse(g.String()); again != g || err != nil {
			t.Fatalf("Parse(Parse(%q).String()) = %#v, %v; want %#v", s, again, err, g)
		}

		// The grant covers what its pattern names, and no more.
		ref := "refs/heads/x"
		if dir, ok := strings.CutSuffix(g.Ref, "*"); ok && g.Ref != "*" {
			if prefix := strings.TrimSuffix(dir, "/"); prefix != "refs" && g.MatchRef(prefix) {
				t.Fatalf("%v.MatchRef(%q) = true; a prefix pattern must not match its prefix", g, prefix)
			}
			ref = dir + "x"
		} else if g.Ref != "*" {
			ref = g.Ref
		}
		if !g.Covers(g.Repo, ref, g.Access) || !(Set{g}).Allows(g.Repo, ref, g.Access) {
			t.Fatalf("%v does not cover %q at its own access", g, ref)
		}
		if g.Access < Force && g.Covers(g.Repo, ref, g.Access+1) {
			t.Fatalf("%v covers %q at %v", g, ref, g.Access+1)
		}
	})
}

// FuzzNormalizeRepo checks that NormalizeRepo does not panic, strips only
// what it promises, and returns only canonical names. Seeds are in
// testdata/fuzz/FuzzNormalizeRepo.
func FuzzNormalizeRepo(f *testing.F) {
	f.Fuzz(func(t *testing.T, path string) {
		repo, err := NormalizeRepo(path)
		if err != nil {
			if repo != "" || !errors.Is(err, ErrRepo) || wrapped(err) != 1 {
				t.Fatalf("NormalizeRepo(%q) = %q, %v; want \"\" and an error wrapping ErrRepo", path, repo, err)
			}
			return
		}
		if want := strings.TrimSuffix(strings.TrimPrefix(path, "/"), ".git"); repo != want {
			t.Fatalf("NormalizeRepo(%q) = %q; want %q", path, repo, want)
		}
		if err := CheckRepo(repo); err != nil {
			t.Fatalf("NormalizeRepo(%q) = %q, but CheckRepo says %v", path, repo, err)
		}
		for _, p := range []string{repo, "/" + repo, repo + ".git", "/" + repo + ".git"} {
			if again, err := NormalizeRepo(p); again != repo || err != nil {
				t.Fatalf("NormalizeRepo(%q) = %q, %v; want %q", p, again, err, repo)
			}
		}
		// A repo name has no length limit of its own, but a principal does.
		p := "git:read:" + repo + ":*"
		if _, err := Parse(p); (err == nil) != (len(p) <= MaxLen) || err != nil && !errors.Is(err, ErrTooLong) {
			t.Fatalf("NormalizeRepo(%q) = %q, but Parse(%q) = %v", path, repo, p, err)
		}
	})
}
