package approvals

import (
	"maps"
	"slices"
	"time"

	"github.com/jitssh/jitssh/approvals/workload"
	"github.com/jitssh/jitssh/audit"
)

// WorkloadIdentity is a CI/CD job as the token its platform signed
// describes it: what the request, its audit entry and its certificate's
// key ID say of the job.
type WorkloadIdentity struct {
	Issuer   string `json:"issuer"`     // the oidc: entry's name
	URL      string `json:"issuer_url"` // the token's iss
	Audience string `json:"audience"`
	Subject  string `json:"subject"`
	// Claims are those in recordedClaims and those some rule tests, as
	// the token has them: strings as they are, other values as JSON text.
	Claims map[string]string `json:"claims"`
	// TokenID identifies the token for the once-only check (see
	// workload.ReplayID); UsableUntil is the last moment it could be
	// accepted (exp plus the allowed skew), until which the state
	// remembers that it was used.
	TokenID     string    `json:"token_id"`
	Expires     time.Time `json:"expires"`
	UsableUntil time.Time `json:"usable_until"`
	// Token is the token itself. It goes on the request's audit entry
	// (through submitCmd.Token) and nowhere else: not into the state,
	// answers, webhooks or refusal entries.
	Token string `json:"-"`
}

// recordedClaims are the claims that identify a job on GitHub Actions and
// GitLab CI: repository or project, ref, event, run or pipeline, commit,
// environment. They go on the record whatever the rules test.
var recordedClaims = []string{
	// GitHub Actions
	"repository", "repository_id", "repository_owner", "ref", "ref_type", "sha", "environment",
	"workflow_ref", "job_workflow_ref", "event_name", "run_id", "run_attempt", "actor", "runner_environment",
	// GitLab CI
	"project_path", "project_id", "namespace_path", "ref_protected", "pipeline_source", "pipeline_id",
	"job_id", "user_login",
}

// workloadIdentity is what the request records of a verified token.
func (p *Policy) workloadIdentity(id *workload.Identity, raw string, skew time.Duration) *WorkloadIdentity {
	w := &WorkloadIdentity{
		Issuer: id.Issuer, URL: id.URL, Audience: id.Audience, Subject: id.Subject,
		Claims: map[string]string{}, TokenID: id.ID, Expires: id.Expiry, UsableUntil: id.Expiry.Add(skew), Token: raw,
	}
	for _, k := range append(slices.Clone(recordedClaims), p.ruleClaims()...) {
		if v, ok := id.Claims[k]; ok {
			w.Claims[k] = v
		}
	}
	return w
}

// Requester is the name the job requests under.
func (w *WorkloadIdentity) Requester() string {
	return audit.WorkloadRequester(w.Issuer, w.Subject, w.Claims)
}

func (w *WorkloadIdentity) clone() *WorkloadIdentity {
	if w == nil {
		return nil
	}
	out := *w
	out.Claims = maps.Clone(w.Claims)
	return &out
}

// data is the identity as the audit log records it; nil for nil.
func (w *WorkloadIdentity) data() *audit.WorkloadData {
	if w == nil {
		return nil
	}
	return &audit.WorkloadData{
		Issuer: w.Issuer, IssuerURL: w.URL, Audience: w.Audience, Subject: w.Subject,
		Claims: maps.Clone(w.Claims), TokenID: w.TokenID, Expires: w.Expires, Token: w.Token,
	}
}
