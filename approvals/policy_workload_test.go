package approvals

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/jitssh/jitssh/principals"
)

// workloadRuleYAML is a config with one workload rule whose claims are
// CLAIMS.
const workloadRuleYAML = `people:
  - {name: alice, keys: ["KEY(alice)"], groups: [dev]}
oidc:
  - {name: github, issuer: "https://token.actions.githubusercontent.com", audience: jitssh}
rules:
  - name: ci
    workload: {issuer: github, claims: CLAIMS}
    repos: [demo/app]
    refs: ["refs/heads/ci/*"]
    access: [write]
    auto_approve: true
`

func TestWorkloadRuleChecks(t *testing.T) {
	for _, tc := range []struct {
		name, claims string
		want         string // empty: valid
	}{
		{"exact repository", `{repository: demo/app, ref: refs/heads/main}`, ""},
		{"repositories of one owner", `{repository: "demo/*"}`, ""},
		{"repository id", `{repository_id: "17"}`, ""},
		{"GitLab project", `{project_path: "group/sub/*", ref_protected: true}`, ""},
		{"GitLab project id", `{project_id: "42"}`, ""},
		{"no repository", `{ref: refs/heads/main}`, "must pin the repository"},
		{"any owner", `{repository: "*/app"}`, "must pin the repository"},
		{"owner glob", `{repository: "de*/app"}`, "must pin the repository"},
		{"owner class", `{repository: "[a-z]emo/app"}`, "must pin the repository"},
		{"everything", `{repository: "*"}`, "must pin the repository"},
		{"id glob", `{repository_id: "1*"}`, "must pin the repository"},
		{"empty value", `{repository: ""}`, "empty"},
		{"bad glob", `{repository: demo/app, ref: "refs/heads/["}`, "not a valid glob"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parsePolicyYAML(withKeys(t, strings.Replace(workloadRuleYAML, "CLAIMS", tc.claims, 1)))
			if tc.want == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, ErrInvalidConfig)
			require.ErrorContains(t, err, tc.want)
		})
	}

	for _, tc := range []struct{ name, from, to, want string }{
		{"unknown issuer", "workload: {issuer: github", "workload: {issuer: gitlab", `issuer "gitlab" is not the name of an oidc: entry`},
		{"groups and workload", "    workload:", "    groups: [dev]\n    workload:", "both groups and workload"},
		{"http issuer", `"https://token.actions`, `"http://token.actions`, "https://"},
		{"no audience", "audience: jitssh", "audience: ''", "audience: missing"},
		{"both key sources", "audience: jitssh}", "audience: jitssh, jwks_url: 'https://x.example/k', jwks_file: k.json}", "not both"},
		{"issuer twice", "  - {name: github, issuer: \"https://token.actions.githubusercontent.com\", audience: jitssh}\n",
			"  - {name: github, issuer: \"https://token.actions.githubusercontent.com\", audience: jitssh}\n  - {name: github, issuer: \"https://b.example\", audience: jitssh}\n", "name used by an earlier issuer"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			yml := strings.Replace(workloadRuleYAML, "CLAIMS", "{repository: demo/app}", 1)
			require.Contains(t, yml, tc.from)
			_, err := parsePolicyYAML(withKeys(t, strings.Replace(yml, tc.from, tc.to, 1)))
			require.ErrorIs(t, err, ErrInvalidConfig)
			require.ErrorContains(t, err, tc.want)
		})
	}
}

// The daemon reads each jwks_file when it loads its config; paths are
// taken from the config's directory.
func TestLoadConfigChecksJWKSFile(t *testing.T) {
	dir := t.TempDir()
	yml := serverYAML + withKeys(t, strings.Replace(workloadRuleYAML, "CLAIMS", "{repository: demo/app}", 1))
	yml = strings.Replace(yml, "audience: jitssh}", "audience: jitssh, jwks_file: ci/jwks.json}", 1)
	path := filepath.Join(dir, "server.yaml")
	require.NoError(t, os.WriteFile(path, []byte(yml), 0o600))
	_, err := LoadConfig(path)
	require.ErrorIs(t, err, ErrInvalidConfig)
	require.ErrorContains(t, err, "jwks_file")

	require.NoError(t, os.MkdirAll(filepath.Join(dir, "ci"), 0o700))
	data, err := os.ReadFile(ciJWKS(t))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "ci", "jwks.json"), data, 0o600))
	c, err := LoadConfig(path)
	require.NoError(t, err)
	require.Equal(t, filepath.Join(dir, "ci", "jwks.json"), c.OIDC[0].JWKSFile)
}

func TestMatchWorkload(t *testing.T) {
	p := workloadPolicy(t)
	gh := map[string]string{"repository": "demo/app", "ref": "refs/heads/main", "event_name": "push"}
	gl := map[string]string{"project_path": "group/app", "ref": "main", "ref_protected": "true", "pipeline_source": "push"}
	write := principals.Write
	for _, tc := range []struct {
		name     string
		issuer   string
		claims   map[string]string
		repo     string
		ref      string
		wantRule string
	}{
		{"GitHub push to main", "ci", gh, "demo/app", "refs/heads/ci/x", "ci-demo"},
		{"GitLab protected ref", "ci", gl, "group/app", "refs/heads/deploy/prod", "gitlab-deploy"},
		{"another issuer name", "other", gh, "demo/app", "refs/heads/ci/x", ""},
		{"another repository", "ci", with(gh, "repository", "demo/app2"), "demo/app", "refs/heads/ci/x", ""},
		{"a repository claim missing", "ci", without(gh, "repository"), "demo/app", "refs/heads/ci/x", ""},
		{"a ref claim that only starts alike", "ci", with(gh, "ref", "refs/heads/main2"), "demo/app", "refs/heads/ci/x", ""},
		{"a ref outside the rule", "ci", gh, "demo/app", "refs/heads/main", ""},
		{"another repository than the rule's", "ci", gh, "demo/other", "refs/heads/ci/x", ""},
		{"unprotected ref, by its JSON text", "ci", with(gl, "ref_protected", "false"), "group/app", "refs/heads/deploy/prod", ""},
		{"a fork's merge request", "ci", with(with(gl, "project_path", "attacker/app"), "pipeline_source", "merge_request_event"), "group/app", "refs/heads/deploy/prod", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := p.MatchWorkload(tc.issuer, tc.claims, tc.repo, tc.ref, write)
			if tc.wantRule == "" {
				require.ErrorIs(t, err, ErrNoRule)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.wantRule, r.Name)
		})
	}
	// Globs: "*" stays within a path segment.
	require.True(t, claimMatches("refs/heads/*", "refs/heads/main"))
	require.False(t, claimMatches("refs/heads/*", "refs/heads/a/b"))
	require.False(t, claimMatches("demo/app", "demo/app2"))
	// People never fall under a workload rule, nor workloads under a
	// people's rule.
	_, err := p.Match("alice", "demo/app", "refs/heads/ci/x", write)
	require.ErrorIs(t, err, ErrNoRule)
}

func with(m map[string]string, k, v string) map[string]string {
	out := map[string]string{k: v}
	for key, val := range m {
		if key != k {
			out[key] = val
		}
	}
	return out
}

func without(m map[string]string, k string) map[string]string {
	out := map[string]string{}
	for key, val := range m {
		if key != k {
			out[key] = val
		}
	}
	return out
}

// The digest covers the issuers and the workload rules, and not where
// the keys come from.
func TestWorkloadPolicyDigest(t *testing.T) {
	base := strings.Replace(workloadPolicyYAML, "JWKS", "/a/jwks.json", 1)
	digest := func(yml string) string {
		c, err := parsePolicyYAML(withKeys(t, yml))
		require.NoError(t, err)
		p, err := NewPolicy(c)
		require.NoError(t, err)
		return p.Digest()
	}
	d := digest(base)
	require.Equal(t, d, digest(strings.Replace(base, "/a/jwks.json", "/b/jwks.json", 1)), "the key file's place decides nothing")
	seen := map[string]string{d: "base"}
	for _, tc := range []struct{ name, from, to string }{
		{"audience", "audience: jitssh", "audience: jitssh2"},
		{"issuer", `issuer: "https://ci.example"`, `issuer: "https://ci2.example"`},
		{"a claim's value", "ref: refs/heads/main", "ref: refs/heads/dev"},
		{"a claim added", "ref: refs/heads/main}", "ref: refs/heads/main, event_name: push}"},
		{"the rule's issuer", "workload: {issuer: ci, claims: {repository", "workload: {issuer: ci2, claims: {repository"},
	} {
		yml := strings.Replace(base, tc.from, tc.to, 1)
		if tc.name == "the rule's issuer" {
			yml = strings.Replace(yml, "oidc:\n", "oidc:\n  - {name: ci2, issuer: \"https://ci2.example\", audience: jitssh}\n", 1)
		}
		require.NotEqual(t, base, yml, tc.name)
		got := digest(yml)
		if other, dup := seen[got]; dup {
			t.Errorf("%s gives the digest of %s", tc.name, other)
		}
		seen[got] = tc.name
	}
}
