package approvals

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/jitssh/jitssh/ca"
)

// hostPolicy has a rule per Git host profile, and a grant rule beside them.
const hostPolicy = `
people:
  - name: alice
    groups: [dev]
    keys: ["KEY(alice)"]
    accounts: {github: alice-gh, gitlab: alice.smith, gitea: alice-gitea}
  - name: bob
    groups: [dev, leads]
    keys: ["KEY(bob)"]
rules:
  - {name: gh, groups: [dev], repos: ["gh/*"], refs: ["*"], access: [write], auto_approve: true, max_ttl: 1h, profile: github}
  - {name: ghes, groups: [dev], repos: ["ghes/*"], refs: ["*"], access: [write], auto_approve: true, profile: github, host: ghe.example.com}
  - {name: gl, groups: [dev], repos: ["gl/*"], refs: ["*"], access: [write], approvals: [{group: leads, count: 1}], profile: gitlab}
  - {name: gt, groups: [dev], repos: ["gt/*"], refs: ["*"], access: [read], auto_approve: true, profile: gitea}
  - {name: grants, groups: [dev], repos: ["demo/*"], refs: ["*"], access: [read], auto_approve: true}
`

// TestDirectModeIssuesHostCertificates: under a rule with a Git host
// profile, the grant is issued as a certificate for the requester's
// account on that host, for the grant's time and no longer.
func TestDirectModeIssuesHostCertificates(t *testing.T) {
	env := newTestService(t, policyFrom(t, hostPolicy))
	tests := []struct {
		repo       string
		approver   string
		keyID      func(r *Request) string
		principals []string
		extensions map[string]string
	}{
		{"gh/app", "", func(r *Request) string { return "alice/" + r.ID }, []string{"alice-gh"}, map[string]string{"login@github.com": "alice-gh"}},
		{"ghes/app", "", func(r *Request) string { return "alice/" + r.ID }, []string{"alice-gh"}, map[string]string{"login@ghe.example.com": "alice-gh"}},
		{"gl/app", "bob", func(*Request) string { return "alice.smith" }, []string{"alice.smith"}, map[string]string{}},
		{"gt/app", "", func(r *Request) string { return "alice/" + r.ID }, []string{"alice-gitea"}, map[string]string{}},
		{"demo/app", "", func(r *Request) string { return "alice/" + r.ID }, nil, map[string]string{}},
	}
	for _, tt := range tests {
		t.Run(tt.repo, func(t *testing.T) {
			access := "write"
			if strings.HasPrefix(tt.repo, "gt/") || strings.HasPrefix(tt.repo, "demo/") {
				access = "read"
			}
			r := env.submit(t, "alice", SubmitInput{Repo: tt.repo, Ref: "refs/heads/main", Access: access, TTL: 30 * time.Minute, PublicKey: freshKey(t)})
			if tt.approver != "" {
				r = env.approve(t, tt.approver, r.ID)
			}
			cert := parseCert(t, r)
			assert.Equal(t, tt.keyID(r), cert.KeyId)
			if tt.principals == nil {
				assert.Equal(t, []string{r.Grant}, cert.ValidPrincipals, "a grant rule keeps the grant certificate")
			} else {
				assert.Equal(t, tt.principals, cert.ValidPrincipals)
			}
			assert.Equal(t, tt.extensions, cert.Extensions)
			assert.Equal(t, uint64(t0.Add(30*time.Minute).Unix()), cert.ValidBefore, "the grant's time, no more")
			assert.Equal(t, r.Serial, cert.Serial)
		})
	}
}

// TestDirectModeNeedsAnAccount: someone without an account on the rule's
// host is refused when asking, with what to add, and nothing is stored.
func TestDirectModeNeedsAnAccount(t *testing.T) {
	env := newTestService(t, policyFrom(t, hostPolicy))
	_, err := env.Submit(ctx, "bob", SubmitInput{Repo: "gh/app", Ref: "refs/heads/main", Access: "write", PublicKey: freshKey(t)})
	require.ErrorIs(t, err, ErrBadRequest)
	require.ErrorIs(t, err, ErrNoAccount)
	assert.Contains(t, err.Error(), "no github account for bob")
	assert.Empty(t, env.audit.kinds(), "nothing recorded")

	// The same person under a grant rule is fine.
	r := env.submit(t, "bob", SubmitInput{Repo: "demo/app", Ref: "refs/heads/main", Access: "read", PublicKey: freshKey(t)})
	assert.NotEmpty(t, r.Certificate)
}

// TestDirectModeAccountRemovedBeforeIssue: a request approved after its
// requester's account was taken out of the policy is not issued a
// certificate for a stale account.
func TestDirectModeAccountRemovedBeforeIssue(t *testing.T) {
	env := newTestService(t, policyFrom(t, hostPolicy))
	r := env.submit(t, "alice", SubmitInput{Repo: "gl/app", Ref: "refs/heads/main", Access: "write", PublicKey: freshKey(t)})
	require.NoError(t, env.SetPolicy(policyFrom(t, strings.Replace(hostPolicy, "gitlab: alice.smith, ", "", 1))))
	_, err := env.Approve(ctx, "bob", r.ID, DecisionInput{Reason: "ok"})
	require.ErrorIs(t, err, ErrIssue)
	assert.True(t, errors.Is(err, ErrNoAccount), "%v", err)
	got, err := env.Get(r.ID)
	require.NoError(t, err)
	assert.Empty(t, got.Certificate)
}

func TestHostProfileConfigChecks(t *testing.T) {
	base := `
people:
  - name: alice
    groups: [dev]
    keys: ["KEY(alice)"]
    ACCOUNTS
rules:
  - {name: r, groups: [dev], repos: ["*/*"], refs: ["*"], access: [read], auto_approve: true RULE}
`
	tests := []struct {
		name, accounts, rule, want string
	}{
		{"unknown host in accounts", "accounts: {bitbucket: alice}", "", `person "alice": accounts: bad certificate profile: "bitbucket"`},
		{"grant is no host", "accounts: {grant: alice}", "", `accounts: bad certificate profile: "grant"`},
		{"bad GitHub login", "accounts: {github: alice.smith}", "", `accounts: github: bad Git host account: "alice.smith" is not a GitHub username`},
		{"account reading as a grant", `accounts: {gitea: "git:read:a/b:*"}`, "", "reads as a jitssh grant"},
		{"unknown rule profile", "", ", profile: bitbucket", `rule "r": profile: bad certificate profile`},
		{"grant as rule profile", "", ", profile: grant", `rule "r": profile: bad certificate profile`},
		{"host without profile", "", ", host: ghe.example.com", `rule "r": host: needs profile: github`},
		{"host for gitea", "", ", profile: gitea, host: gitea.example.com", `rule "r": host: bad Git host name`},
		{"host with a port", "", ", profile: github, host: \"ghe.example.com:443\"", `rule "r": host: bad Git host name`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			yml := strings.Replace(strings.Replace(base, "ACCOUNTS", tt.accounts, 1), " RULE", tt.rule, 1)
			_, err := parsePolicyYAML(withKeys(t, yml))
			require.ErrorIs(t, err, ErrInvalidConfig)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
	t.Run("workload rule with a profile", func(t *testing.T) {
		_, err := parsePolicyYAML(withKeys(t, `
oidc: [{name: gh, issuer: "https://token.actions.githubusercontent.com", audience: jitssh, jwks_url: "https://token.actions.githubusercontent.com/.well-known/jwks"}]
people:
  - {name: alice, groups: [dev], keys: ["KEY(alice)"]}
rules:
  - {name: r, groups: [dev], repos: ["*/*"], refs: ["*"], access: [read], auto_approve: true}
  - {name: ci, workload: {issuer: gh, claims: {repository: a/b}}, repos: [a/b], refs: ["*"], access: [read], auto_approve: true, profile: github}
`))
		require.ErrorIs(t, err, ErrInvalidConfig)
		assert.Contains(t, err.Error(), "a CI/CD job has no account on github")
	})
	t.Run("good", func(t *testing.T) {
		yml := strings.Replace(strings.Replace(base, "ACCOUNTS", "accounts: {github: alice-gh, gitlab: alice.smith, gitea: alice@example.com}", 1),
			" RULE", ", profile: github, host: ghe.example.com", 1)
		c, err := parsePolicyYAML(withKeys(t, yml))
		require.NoError(t, err)
		p, err := NewPolicy(c)
		require.NoError(t, err)
		assert.Equal(t, "alice.smith", p.Account("alice", ca.ProfileGitLab))
		assert.Equal(t, "", p.Account("nobody", ca.ProfileGitLab))
	})
}
