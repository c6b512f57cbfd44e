package principals

import (
	"math/rand"
	"strings"
	"testing"
)

func TestCheckRepo(t *testing.T) {
	tests := []struct {
		repo string
		ok   bool
	}{
		{"demo/app", true},
		{"a", true},
		{"a.b_c-d", true},
		{"A9/x", true},
		{"9", true},
		{"org/team/sub/app", true},
		{"a/b.c", true},
		{"a.gitx", true},
		{"a.git/b", true}, // only the whole name's suffix matters
		{"git", true},
		{"a/git", true},
		{"a.GIT", true}, // the suffix rule is exact, as servers strip exactly ".git"

		{"", false},
		{"-a", false},
		{".a", false},
		{"_a", false},
		{"a/-b", false},
		{"a/.b", false},
		{"..", false},
		{"a/../b", false},
		{"a/..", false},
		{"a/.", false},
		{"a//b", false},
		{"/a", false},
		{"a/", false},
		{"/", false},
		{"a.git", false},
		{"a/b.git", false},
		{".git", false},
		{"a/.git", false},
		{"~x", false},
		{"a b", false},
		{"a:b", false},
		{"a\\b", false},
		{"a\x00b", false},
		{"a\tb", false},
		{"a@b", false},
		{"a+b", false},
		{"café", false},
		{"a\xff", false},
	}
	for _, tt := range tests {
		err := CheckRepo(tt.repo)
		if (err == nil) != tt.ok || !errIs(err, ErrRepo) {
			t.Errorf("CheckRepo(%q) = %v; want ok=%v", tt.repo, err, tt.ok)
		}
	}
}

// errIs reports whether err is nil or wraps sentinel.
func errIs(err, sentinel error) bool {
	return err == nil || !errMismatch(err, sentinel)
}

func TestNormalizeRepo(t *testing.T) {
	tests := []struct {
		path string
		want string
		ok   bool
	}{
		{"/demo/app.git", "demo/app", true},
		{"demo/app.git", "demo/app", true},
		{"/demo/app", "demo/app", true},
		{"demo/app", "demo/app", true},
		{"a", "a", true},
		{"/a.b_c-d.git", "a.b_c-d", true},

		{"", "", false},
		{"/", "", false},
		{".git", "", false},
		{"/.git", "", false},
		{"~x", "", false},
		{"/~x", "", false},
		{"../x", "", false},
		{"/../x", "", false},
		{"a//b", "", false},
		{"//a", "", false},       // one "/" only
		{"a.git.git", "", false}, // one ".git" only
		{"a/.git", "", false},
		{"/a/.git", "", false},
		{"a/", "", false},
		{"a/.git/", "", false},
		{"a.git/", "", false},
		{"demo/app.GIT", "demo/app.GIT", true}, // not stripped, and a valid name
		{" demo/app", "", false},
		{"demo/app.git ", "", false},
	}
	for _, tt := range tests {
		got, err := NormalizeRepo(tt.path)
		if got != tt.want || (err == nil) != tt.ok || !errIs(err, ErrRepo) {
			t.Errorf("NormalizeRepo(%q) = %q, %v; want %q, ok=%v", tt.path, got, err, tt.want, tt.ok)
		}
	}
}

func TestCheckRefName(t *testing.T) {
	tests := []struct {
		ref string
		ok  bool
	}{
		{"refs/heads/main", true},
		{"refs/x", true},
		{"refs/heads/feature/login", true},
		{"refs/tags/v1.0.0", true},
		{"refs/heads/a.b", true},
		{"refs/heads/a-lock", true},
		{"refs/heads/a.locks", true},
		{"refs/heads/lock", true},
		{"refs/heads/lock/a", true},
		{"refs/heads/x./y", true}, // only the whole name may not end in "."
		{"refs/heads/@", true},    // only the whole name may not be "@"
		{"refs/heads/a@b", true},
		{"refs/heads/a{b}", true},
		{"refs/heads/a@", true},
		{"refs/heads/-x", true},
		{"refs/heads/a_b+c=d,e;f!g#h$i%j&k'l(m)n", true},
		{"refs/heads/日本", true},
		{"refs/heads/é", true},
		{"refs/heads/\U0001F600", true},
		{"refs/pull/1/head", true},

		// Not under refs/.
		{"", false},
		{"main", false},
		{"HEAD", false},
		{"heads/main", false},
		{"refs", false},
		{"refs/", false},
		{"Refs/heads/main", false},
		{"@", false},
		{"/refs/x", false},
		// "..", "@{".
		{"refs/heads/a..b", false},
		{"refs/../x", false},
		{"refs/heads/..", false},
		{"refs/heads/a@{b", false},
		{"refs/heads/@{u}", false},
		{"refs/heads/main@{1}", false},
		// Control characters, space and ~^:?*[\.
		{"refs/heads/a\tb", false},
		{"refs/heads/a\nb", false},
		{"refs/heads/a\x00b", false},
		{"refs/heads/a\x01b", false},
		{"refs/heads/a\x1fb", false},
		{"refs/heads/a\x7fb", false},
		{"refs/heads/a b", false},
		{"refs/heads/a~b", false},
		{"refs/heads/a^b", false},
		{"refs/heads/a:b", false},
		{"refs/heads/a?b", false},
		{"refs/heads/a*b", false},
		{"refs/heads/*", false},
		{"refs/heads/a[b", false},
		{"refs/heads/a\\b", false},
		// Components.
		{"refs/heads/.x", false},
		{"refs/.heads/x", false},
		{"refs/heads/.", false},
		{"refs/heads/a.lock", false},
		{"refs/heads/a.lock/b", false},
		{"refs/heads/.lock", false},
		{"refs//x", false},
		{"refs/heads//x", false},
		{"refs/heads/x/", false},
		{"refs/heads/x.", false},
		// UTF-8.
		{"refs/heads/\xff", false},
		{"refs/heads/\xc3", false},
		{"refs/heads/\xc0\xaf", false},
		{"refs/heads/\xed\xa0\x80", false},
	}
	for _, tt := range tests {
		err := CheckRefName(tt.ref)
		if (err == nil) != tt.ok || !errIs(err, ErrRef) {
			t.Errorf("CheckRefName(%q) = %v; want ok=%v", tt.ref, err, tt.ok)
		}
	}
}

func TestCheckRefPattern(t *testing.T) {
	tests := []struct {
		p  string
		ok bool
	}{
		{"*", true},
		{"refs/*", true},
		{"refs/heads/*", true},
		{"refs/tags/*", true},
		{"refs/heads/feature/*", true},
		{"refs/heads/main", true},
		{"refs/heads/日本/*", true},

		{"", false},
		{"**", false},
		{"/*", false},
		{"*/*", false},
		{"refs", false},
		{"refs/", false},
		{"heads/*", false},
		{"refs/heads/feat*", false},
		{"refs/heads/*x", false},
		{"refs/*/main", false},
		{"refs/heads/**", false},
		{"refs/heads/*/*", false},
		{"refs/heads//*", false},
		{"refs/heads/x./*", false},
		{"refs/heads/.x/*", false},
		{"refs/heads/a.lock/*", false},
		{"refs/heads/a..b/*", false},
		{"refs/heads/ /*", false},
		{"refs/heads/*/", false},
		{"refs/*/", false},
		{"* ", false},
		{" *", false},
	}
	for _, tt := range tests {
		err := CheckRefPattern(tt.p)
		if (err == nil) != tt.ok || !errIs(err, ErrRef) {
			t.Errorf("CheckRefPattern(%q) = %v; want ok=%v", tt.p, err, tt.ok)
		}
	}
}

// TestCheckRefPatternNames checks that a name without "*" is a pattern, and
// that name + "/*" is one, exactly when CheckRefName accepts the name.
func TestCheckRefPatternNames(t *testing.T) {
	r := rand.New(rand.NewSource(3))
	for range 2000 {
		ref := genTricky(r)
		if strings.Contains(ref, "*") || ref == "refs" { // "refs/*" is the one prefix that is not a name
			continue
		}
		nameOK := CheckRefName(ref) == nil
		if patOK := CheckRefPattern(ref) == nil; patOK != nameOK {
			t.Errorf("CheckRefPattern(%q) ok=%v, CheckRefName ok=%v; want the same", ref, patOK, nameOK)
		}
		if patOK := CheckRefPattern(ref+"/*") == nil; patOK != nameOK {
			t.Errorf("CheckRefPattern(%q) ok=%v, CheckRefName(%q) ok=%v; want the same", ref+"/*", patOK, ref, nameOK)
		}
	}
}

func BenchmarkCheckRefName(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if err := CheckRefName("refs/heads/feature/login"); err != nil {
			b.Fatal(err)
		}
	}
}
