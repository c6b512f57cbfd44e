package approvals

import (
	"fmt"
	"path"
	"slices"
	"strings"

	"github.com/jitssh/jitssh/approvals/workload"
)

// repoClaims are the claims that name a job's repository: GitHub Actions'
// repository and repository_id, GitLab CI's project_path and project_id.
// A workload rule must pin one of them.
var repoClaims = []string{"repository", "repository_id", "project_path", "project_id"}

// oidc checks the token issuers and returns their names.
func (c *checker) oidc(issuers []workload.Issuer) map[string]bool {
	names := map[string]bool{}
	urls := map[string]bool{}
	for i, iss := range issuers {
		where := fmt.Sprintf("oidc issuer %q", iss.Name)
		for _, p := range iss.Check() {
			c.bad(at("oidc", i), "%s: %s", where, p)
		}
		switch {
		case names[iss.Name]:
			c.bad(at("oidc", i, "name"), "%s: name used by an earlier issuer", where)
		case urls[iss.Issuer]:
			c.bad(at("oidc", i, "issuer"), "%s: issuer %s listed by an earlier entry", where, iss.Issuer)
		}
		names[iss.Name], urls[iss.Issuer] = true, true
	}
	return names
}

// workload checks a rule's workload match: a configured issuer, valid
// patterns, and a pinned repository.
func (c *checker) workload(i int, where string, w WorkloadMatch, issuers map[string]bool) {
	switch {
	case w.Issuer == "":
		c.bad(at("rules", i, "workload"), "%s: workload: issuer: missing (the name of an oidc: entry)", where)
	case !issuers[w.Issuer]:
		c.bad(at("rules", i, "workload", "issuer"), "%s: workload: issuer %q is not the name of an oidc: entry", where, w.Issuer)
	}
	names := make([]string, 0, len(w.Claims))
	for k := range w.Claims {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		v := w.Claims[k]
		switch {
		case k == "":
			c.bad(at("rules", i, "workload", "claims"), "%s: workload: claims: an empty claim name", where)
		case v == "":
			c.bad(at("rules", i, "workload", "claims", k), "%s: workload: claims: %s: empty; give the value or a glob", where, k)
		default:
			if _, err := path.Match(v, ""); err != nil {
				c.bad(at("rules", i, "workload", "claims", k), "%s: workload: claims: %s: %q is not a valid glob: %v", where, k, v, err)
			}
		}
	}
	pinned := slices.ContainsFunc(repoClaims, func(k string) bool { v, ok := w.Claims[k]; return ok && pinsOwner(v) })
	if !pinned {
		c.bad(at("rules", i, "workload"), "%s: workload: claims must pin the repository: give %s with an exact value, or a glob with no wildcard before the first '/' (\"my-org/*\"), so that no token from another repository matches",
			where, strings.Join(repoClaims, ", "))
	}
}

// pinsOwner reports whether a claim pattern names one repository, or
// repositories of one owner: an exact value, or a glob whose part before
// the first "/" has no wildcard.
func pinsOwner(pattern string) bool {
	if pattern == "" {
		return false
	}
	if !strings.ContainsAny(pattern, `*?[\`) {
		return true
	}
	owner, _, ok := strings.Cut(pattern, "/")
	return ok && owner != "" && !strings.ContainsAny(owner, `*?[\`)
}
