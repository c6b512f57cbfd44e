package principals

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// A flaw is what is wrong with a repo or ref name, kept as constants and
// substrings of the name so that checking a good name allocates nothing;
// the message is only built when there is a flaw to report.
type flaw struct {
	noun string // "segment", "component" or "character"; empty for the whole name
	part string // the offending part, when noun is set
	rule string // what is wrong; empty means no flaw
}

func (f flaw) ok() bool { return f.rule == "" }

func (f flaw) String() string {
	if f.noun == "" {
		return f.rule
	}
	return f.noun + " " + strconv.Quote(f.part) + " " + f.rule
}

// CheckRepo reports whether repo is a canonical repo name: one or more
// "/"-separated segments of [A-Za-z0-9][A-Za-z0-9._-]*, the whole not
// ending in ".git". A repo name has no length limit of its own; the
// principal that carries it is limited to MaxLen. The error wraps ErrRepo.
func CheckRepo(repo string) error {
	if f := repoFlaw(repo); !f.ok() {
		return fmt.Errorf("%w %q: %s", ErrRepo, repo, f)
	}
	return nil
}

// NormalizeRepo turns the repository path a Git client sends ("/demo/app.git",
// "demo/app") into the canonical repo name ("demo/app"). It strips at most
// one leading "/" and then at most one trailing ".git", and refuses what is
// left unless CheckRepo accepts it. The error wraps ErrRepo.
func NormalizeRepo(path string) (string, error) {
	repo := strings.TrimPrefix(path, "/")
	repo = strings.TrimSuffix(repo, ".git")
	if err := CheckRepo(repo); err != nil {
		if repo != path {
			return "", fmt.Errorf("repo path %q: %w", path, err)
		}
		return "", err
	}
	return repo, nil
}

func repoFlaw(repo string) flaw {
	switch {
	case repo == "":
		return flaw{rule: "is empty"}
	case repo[0] == '/':
		return flaw{rule: `starts with "/"`}
	case repo[len(repo)-1] == '/':
		return flaw{rule: `ends with "/"`}
	case strings.HasSuffix(repo, ".git"):
		return flaw{rule: `ends with ".git"`}
	}
	for rest := repo; rest != ""; {
		var seg string
		seg, rest, _ = strings.Cut(rest, "/")
		if f := segmentFlaw(seg); !f.ok() {
			return f
		}
	}
	return flaw{}
}

func segmentFlaw(seg string) flaw {
	switch {
	case seg == "":
		return flaw{rule: `contains "//"`}
	case seg == "..":
		return flaw{noun: "segment", part: seg, rule: "is not allowed"}
	case !isAlnum(seg[0]):
		return flaw{noun: "segment", part: seg, rule: "does not start with a letter or digit"}
	}
	for i := 0; i < len(seg); i++ {
		c := seg[i]
		if isAlnum(c) || c == '.' || c == '_' || c == '-' {
			continue
		}
		_, n := utf8.DecodeRuneInString(seg[i:])
		return flaw{noun: "character", part: seg[i : i+n], rule: "is not allowed"}
	}
	return flaw{}
}

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

// CheckRefName reports whether ref is a full ref name as the package
// documentation defines it: it starts with "refs/", git check-ref-format
// accepts it, and it is valid UTF-8. The error wraps ErrRef.
func CheckRefName(ref string) error {
	if f := refNameFlaw(ref); !f.ok() {
		return fmt.Errorf("%w %q: %s", ErrRef, ref, f)
	}
	return nil
}

// CheckRefPattern reports whether p is a ref pattern: "*", a full ref name,
// or "P/*" where P is "refs" or a full ref name. The error wraps ErrRef.
func CheckRefPattern(p string) error {
	if p == "*" {
		return nil
	}
	name, isPrefix := strings.CutSuffix(p, "/*")
	if isPrefix && name == "refs" {
		return nil
	}
	if strings.Contains(name, "*") {
		return fmt.Errorf(`%w %q: "*" is allowed only alone or as the whole last component`, ErrRef, p)
	}
	f := refNameFlaw(name)
	switch {
	case f.ok():
		return nil
	case isPrefix:
		return fmt.Errorf("%w %q: prefix %q %s", ErrRef, p, name, f)
	}
	return fmt.Errorf("%w %q: %s", ErrRef, p, f)
}

// badRefByte marks the bytes a ref name may not hold anywhere: ASCII
// control characters, space, and ~ ^ : ? * [ \.
var badRefByte = func() (bad [256]bool) {
	for c := range 0x20 {
		bad[c] = true
	}
	bad[0x7f] = true
	for _, c := range []byte(` ~^:?*[\`) {
		bad[c] = true
	}
	return bad
}()

// refNameFlaw follows the rules of git's check_refname_format, with
// git check-ref-format's default of at least two components, plus the
// refs/ prefix and UTF-8 that jitssh adds. The single name "@", which git
// refuses, cannot start with "refs/", so it needs no rule of its own.
func refNameFlaw(ref string) flaw {
	switch {
	case !strings.HasPrefix(ref, "refs/"):
		return flaw{rule: `does not start with "refs/"`}
	case !utf8.ValidString(ref):
		return flaw{rule: "is not valid UTF-8"}
	case ref[len(ref)-1] == '/':
		return flaw{rule: `ends with "/"`}
	case ref[len(ref)-1] == '.':
		return flaw{rule: `ends with "."`}
	}
	for i := 0; i < len(ref); i++ {
		switch c := ref[i]; {
		case badRefByte[c]:
			return flaw{noun: "character", part: ref[i : i+1], rule: "is not allowed"}
		case c == '.' && i+1 < len(ref) && ref[i+1] == '.':
			return flaw{rule: `contains ".."`}
		case c == '@' && i+1 < len(ref) && ref[i+1] == '{':
			return flaw{rule: `contains "@{"`}
		}
	}
	for rest := ref; rest != ""; {
		var comp string
		comp, rest, _ = strings.Cut(rest, "/")
		switch {
		case comp == "":
			return flaw{rule: `contains "//"`}
		case comp[0] == '.':
			return flaw{noun: "component", part: comp, rule: `starts with "."`}
		case strings.HasSuffix(comp, ".lock"):
			return flaw{noun: "component", part: comp, rule: `ends with ".lock"`}
		}
	}
	return flaw{}
}
