package approvals

import (
	"fmt"
	"path"
	"slices"
	"strings"

	"github.com/jitssh/jitssh/approvals/workload"
	"github.com/jitssh/jitssh/principals"
)

// AcceptsWorkloads reports whether the policy trusts any CI/CD token
// issuer, and so whether a connection with a key nobody is listed for may
// ask for a workload certificate.
func (p *Policy) AcceptsWorkloads() bool { return p.workloads != nil }

// Issuers returns the trusted CI/CD token issuers, in config order.
func (p *Policy) Issuers() []workload.Issuer { return slices.Clone(p.cfg.OIDC) }

// admitsWorkload reports whether a job of issuer with these claims falls
// under the rule.
func (r *compiledRule) admitsWorkload(issuer string, claims map[string]string) bool {
	w := r.Workload
	if w == nil || w.Issuer != issuer {
		return false
	}
	for k, pattern := range w.Claims {
		v, ok := claims[k]
		if !ok || !claimMatches(pattern, v) {
			return false
		}
	}
	return true
}

// claimMatches compares a claim with a rule's value: a pattern without
// glob characters must be equal; one with them must match as a path.Match
// glob, where "*" stays within one path segment.
func claimMatches(pattern, v string) bool {
	if !strings.ContainsAny(pattern, `*?[\`) {
		return pattern == v
	}
	ok, err := path.Match(pattern, v)
	return err == nil && ok
}

// MatchWorkload returns the first rule, in file order, under which a
// CI/CD job of issuer (an oidc: name) with these token claims may request
// access on repo at ref. When there is none, the error wraps ErrNoRule and
// says why.
func (p *Policy) MatchWorkload(issuer string, claims map[string]string, repo, ref string, access principals.Access) (*Rule, error) {
	var near []string
	for i := range p.rules {
		r := &p.rules[i]
		if !r.admitsWorkload(issuer, claims) {
			continue
		}
		if r.coversRepo(repo) && r.access[access] && r.coversRef(ref) {
			out := cloneRule(r.Rule)
			return &out, nil
		}
		near = append(near, fmt.Sprintf("%s on %s at %s (rule %s)",
			strings.Join(r.Access, "/"), strings.Join(r.Repos, ", "), strings.Join(r.Refs, ", "), r.Name))
	}
	who := "a job of issuer " + issuer
	if len(near) == 0 {
		return nil, fmt.Errorf("%w: no workload rule admits %s (%s)", ErrNoRule, who, describeClaims(claims))
	}
	return nil, fmt.Errorf("%w: no rule lets %s request %s on %s at %s; it may request %s",
		ErrNoRule, who, access, repo, ref, strings.Join(near, "; "))
}

// ruleClaims returns the names of the claims some workload rule of the
// policy tests.
func (p *Policy) ruleClaims() []string {
	var out []string
	for _, r := range p.rules {
		if r.Workload == nil {
			continue
		}
		for k := range r.Workload.Claims {
			if !slices.Contains(out, k) {
				out = append(out, k)
			}
		}
	}
	slices.Sort(out)
	return out
}

// describeClaims names the claims that identify a job, for messages.
func describeClaims(claims map[string]string) string {
	var parts []string
	for _, k := range []string{"repository", "project_path", "ref", "ref_type", "ref_protected", "environment", "event_name", "pipeline_source"} {
		if v, ok := claims[k]; ok {
			parts = append(parts, k+"="+truncateText(v, 100))
		}
	}
	if len(parts) == 0 {
		return "no repository claims"
	}
	return strings.Join(parts, " ")
}

func truncateText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
