package principals

import (
	"errors"
	"math/rand"
	"os"
	"os/exec"
	"strings"
	"testing"
	"unicode/utf8"
)

// lookGit returns the path of git, skipping the test when it is missing
// outside CI and failing it inside CI.
func lookGit(t *testing.T) string {
	t.Helper()
	git, err := exec.LookPath("git")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("git is required in CI: %v", err)
		}
		t.Skipf("git not found, skipping the comparison with git check-ref-format: %v", err)
	}
	return git
}

// gitAccepts runs git check-ref-format on name.
func gitAccepts(t *testing.T, git, name string) bool {
	t.Helper()
	err := exec.Command(git, "check-ref-format", name).Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return true
	case errors.As(err, &exit) && exit.ExitCode() == 1:
		return false
	}
	t.Fatalf("git check-ref-format %q: %v", name, err)
	return false
}

// gitRefNames are hand-picked names for the comparison with git, in
// addition to the random ones.
var gitRefNames = []string{
	"refs/heads/main", "refs/x", "refs/heads/a.b", "refs/heads/a-lock",
	"refs/heads/a.lock", "refs/heads/a.lock/b", "refs/heads/.lock",
	"refs/heads/.x", "refs/.x/y", "refs/heads/x.", "refs/heads/x./y",
	"refs/heads/a..b", "refs/heads/..", "refs/heads/a@{b", "refs/heads/@{",
	"refs/heads/@", "refs/heads/a@", "refs/heads/{", "@", "HEAD", "main",
	"refs", "refs/", "refs//x", "refs/heads//x", "refs/heads/x/", "/refs/x",
	"refs/heads/a\tb", "refs/heads/a\nb", "refs/heads/a\x01b", "refs/heads/a\x1fb",
	"refs/heads/a\x7fb", "refs/heads/a b", "refs/heads/a~b", "refs/heads/a^b",
	"refs/heads/a:b", "refs/heads/a?b", "refs/heads/a*b", "refs/heads/a[b",
	"refs/heads/a]b", "refs/heads/a\\b", "refs/heads/日本", "refs/heads/é",
	"refs/heads/\u00a0", "refs/heads/\u0085", "refs/heads/\U0001F600",
	"refs/heads/\xff", "refs/heads/\xc3", "refs/heads/\xc0\xaf",
	"refs/heads/\xed\xa0\x80", "refs/heads/a_b+c=d,e;f!g#h$i%j&k'l(m)n<o>p|q\"r",
	"refs/heads/-x", "refs/tags/v1.0", "refs/pull/1/head", "refs/heads/a/b/c/d/e",
	"heads/main", "refs/heads/.", "refs/heads/a/.", "refs/heads/a.lock.",
	"refs/heads/lock", "refs/heads/x.lockx", "refs/heads/x.LOCK",
}

// TestCheckRefNameAgainstGit compares CheckRefName with git check-ref-format.
// Every name jitssh accepts must be one git accepts. For names under refs/
// that are valid UTF-8, where jitssh means to follow git exactly, the two
// must agree both ways.
func TestCheckRefNameAgainstGit(t *testing.T) {
	git := lookGit(t)

	names := append([]string(nil), gitRefNames...)
	r := rand.New(rand.NewSource(4))
	for range 250 {
		names = append(names, genTricky(r))
	}
	valid := make(map[string]bool)
	for range 100 {
		name := genRefName(r)
		valid[name] = true
		names = append(names, name)
	}

	var accepted, refused int
	for _, name := range names {
		ours := CheckRefName(name)
		if strings.ContainsRune(name, 0) || strings.HasPrefix(name, "-") {
			// Not passable to git as an argument; CheckRefName refuses
			// both for its own reasons.
			if ours == nil {
				t.Errorf("CheckRefName(%q) = nil; want an error", name)
			}
			continue
		}
		theirs := gitAccepts(t, git, name)
		if theirs {
			accepted++
		} else {
			refused++
		}
		switch {
		case ours == nil && !theirs:
			t.Errorf("CheckRefName(%q) = nil, but git check-ref-format refuses it", name)
		case ours != nil && theirs && strings.HasPrefix(name, "refs/") && utf8.ValidString(name):
			t.Errorf("CheckRefName(%q) = %v, but git check-ref-format accepts it", name, ours)
		case valid[name] && ours != nil:
			t.Errorf("CheckRefName(%q) = %v for a name built valid", name, ours)
		}
	}
	t.Logf("compared %d names: git accepted %d, refused %d", accepted+refused, accepted, refused)
	// Guard against a comparison that checks nothing.
	if accepted < 100 || refused < 100 {
		t.Errorf("git accepted %d and refused %d names; want at least 100 of each", accepted, refused)
	}
}
