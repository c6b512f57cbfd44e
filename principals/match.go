package principals

import "strings"

// MatchRef reports whether g's ref pattern covers ref: "*" covers every ref,
// a full ref name covers only itself, and "P/*" covers the refs strictly
// below "P/", at any depth, but not P itself. A ref that CheckRefName
// refuses (HEAD included: resolve symbolic refs first) is covered by no
// pattern. MatchRef does not allocate.
func (g Grant) MatchRef(ref string) bool {
	return refNameFlaw(ref).ok() && matchRef(g.Ref, ref)
}

// matchRef is MatchRef for a ref already known to be well-formed.
func matchRef(pattern, ref string) bool {
	if pattern == "*" {
		return true
	}
	if strings.HasSuffix(pattern, "/*") {
		dir := pattern[:len(pattern)-1] // "P/"
		return len(ref) > len(dir) && strings.HasPrefix(ref, dir)
	}
	return ref == pattern
}

// Covers reports whether g allows access need on repo at ref: the repo is
// exactly g.Repo (case-sensitive; pass a canonical name, see
// NormalizeRepo), g.MatchRef(ref), and g.Access includes need. A malformed
// repo or ref is covered by nothing. Covers does not allocate.
func (g Grant) Covers(repo, ref string, need Access) bool {
	return g.Access.Includes(need) && repo == g.Repo && repoFlaw(repo).ok() &&
		refNameFlaw(ref).ok() && matchRef(g.Ref, ref)
}

// A Set is the grants of one certificate. Build it with ParseSet, which
// keeps only well-formed grants.
type Set []Grant

// ParseSet parses the principals of a certificate. It returns the
// well-formed grants in their first-seen order without duplicates, and one
// error for each principal that is not a well-formed grant; a bare user name
// such as "alice" is one of those, and grants nothing.
func ParseSet(principals []string) (Set, []error) {
	var (
		set  Set
		errs []error
		seen = make(map[Grant]bool, len(principals))
	)
	for _, p := range principals {
		g, err := Parse(p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if !seen[g] {
			seen[g] = true
			set = append(set, g)
		}
	}
	return set, errs
}

// Allows is the authorization question: may the holder of s do need on repo
// at ref? It is true when some grant in s covers it (see Grant.Covers).
// Allows does not allocate.
func (s Set) Allows(repo, ref string, need Access) bool {
	if !need.valid() || !repoFlaw(repo).ok() || !refNameFlaw(ref).ok() {
		return false
	}
	for _, g := range s {
		if g.Repo == repo && g.Access.Includes(need) && matchRef(g.Ref, ref) {
			return true
		}
	}
	return false
}

// ForRepo returns the grants in s that name exactly repo, in order, or nil
// if there are none or repo is malformed.
func (s Set) ForRepo(repo string) Set {
	if !repoFlaw(repo).ok() {
		return nil
	}
	var out Set
	for _, g := range s {
		if g.Repo == repo {
			out = append(out, g)
		}
	}
	return out
}

// Max returns the strongest access that s gives on repo at ref, and false
// if s gives none. Max does not allocate.
func (s Set) Max(repo, ref string) (Access, bool) {
	if !repoFlaw(repo).ok() || !refNameFlaw(ref).ok() {
		return 0, false
	}
	var best Access
	for _, g := range s {
		if g.Repo == repo && g.Access.valid() && g.Access > best && matchRef(g.Ref, ref) {
			best = g.Access
		}
	}
	return best, best != 0
}
