package principals

import (
	"math/rand"
	"reflect"
	"strings"
)

// The generators below build names from the grammar itself, not from the
// code under test, so that the property tests check the code against the
// documented rules.

const (
	alnum        = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	segmentChars = alnum + "._-"
)

// refChars are the characters a ref name component may hold, "." and "@"
// included (their neighbours are constrained in genComponent).
var refChars = []string{
	"a", "b", "z", "A", "Q", "0", "9", "-", "_", "+", "=", ",", ";", "!", "#",
	"$", "%", "&", "'", "(", ")", "<", ">", "|", `"`, "{", "}", "]", "@", ".",
	"é", "ß", "日", "本", "\u00a0", "\U0001F600",
}

func pick(r *rand.Rand, s string) string {
	i := r.Intn(len(s))
	return s[i : i+1]
}

// genRepo returns a valid repo name.
func genRepo(r *rand.Rand) string {
	var b strings.Builder
	for i := range 1 + r.Intn(3) {
		if i > 0 {
			b.WriteByte('/')
		}
		b.WriteString(pick(r, alnum))
		for range r.Intn(10) {
			b.WriteString(pick(r, segmentChars))
		}
	}
	repo := b.String()
	if strings.HasSuffix(repo, ".git") {
		repo += "x"
	}
	return repo
}

// genComponent returns a valid ref name component: it does not start with
// ".", holds no ".." or "@{", and does not end in ".lock".
func genComponent(r *rand.Rand) string {
	var b strings.Builder
	prev := "."
	for range 1 + r.Intn(12) {
		c := refChars[r.Intn(len(refChars))]
		if c == "." && prev == "." || c == "{" && prev == "@" {
			c = "x"
		}
		b.WriteString(c)
		prev = c
	}
	comp := b.String()
	if strings.HasSuffix(comp, ".lock") {
		comp += "x"
	}
	return comp
}

// genRefName returns a valid full ref name.
func genRefName(r *rand.Rand) string {
	parts := []string{"refs"}
	for range 1 + r.Intn(4) {
		parts = append(parts, genComponent(r))
	}
	name := strings.Join(parts, "/")
	if strings.HasSuffix(name, ".") {
		name += "x"
	}
	return name
}

// genRefPattern returns a valid ref pattern of any of the four forms.
func genRefPattern(r *rand.Rand) string {
	switch r.Intn(4) {
	case 0:
		return "*"
	case 1:
		return "refs/*"
	case 2:
		return genRefName(r) + "/*"
	}
	return genRefName(r)
}

// validGrant generates valid grants for testing/quick.
type validGrant Grant

func (validGrant) Generate(r *rand.Rand, _ int) reflect.Value {
	return reflect.ValueOf(validGrant{
		Access: Read + Access(r.Intn(3)),
		Repo:   genRepo(r),
		Ref:    genRefPattern(r),
	})
}

// trickyTokens are the pieces genTricky joins: each rule of a ref name is
// broken by at least one of them, alone or next to another.
var trickyTokens = []string{
	"a", "b", "main", "x1", "-", "_", ".", "..", "@", "{", "@{", "}", "lock",
	".lock", "/", "//", "~", "^", ":", "?", "*", "[", "\\", " ", "\t", "\n",
	"\x01", "\x1f", "\x7f", "é", "日", "\xff", "\xc3", "\xed\xa0\x80", "heads",
	"tags", "HEAD", "refs", "refs/",
}

// genTricky returns a name that is often, but not always, a valid ref name.
func genTricky(r *rand.Rand) string {
	var b strings.Builder
	if r.Intn(10) > 0 {
		b.WriteString("refs/")
	}
	for range 1 + r.Intn(6) {
		if r.Intn(3) == 0 {
			b.WriteString(trickyTokens[r.Intn(len(trickyTokens))])
		} else {
			b.WriteString(pick(r, alnum))
		}
		if r.Intn(3) == 0 {
			b.WriteByte('/')
		}
	}
	return b.String()
}

func newRand(seed int64) *rand.Rand { return rand.New(rand.NewSource(seed)) }
