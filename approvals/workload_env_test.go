package approvals

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/stretchr/testify/require"
)

// ciIssuer is the CI/CD token issuer of the workload tests.
const ciIssuer = "https://ci.example"

var (
	ciKeyOnce sync.Once
	ciKey     *rsa.PrivateKey // the issuer's signing key
	ciOther   *rsa.PrivateKey // a key nobody trusts
)

func ciKeys() (*rsa.PrivateKey, *rsa.PrivateKey) {
	ciKeyOnce.Do(func() {
		var err error
		if ciKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
		if ciOther, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
	})
	return ciKey, ciOther
}

// ciJWKS writes the issuer's key set, kid "k1", and returns its path.
func ciJWKS(tb testing.TB) string {
	tb.Helper()
	key, _ := ciKeys()
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "k1", Use: "sig", Algorithm: "RS256"}}}
	b, err := json.Marshal(set)
	require.NoError(tb, err)
	path := filepath.Join(tb.TempDir(), "jwks.json")
	require.NoError(tb, os.WriteFile(path, b, 0o600))
	return path
}

// workloadPolicyYAML is the dev policy's people with a CI issuer and
// workload rules: demo/app's main branch may write refs/heads/ci/*
// automatically, and a GitLab project's protected refs may write
// refs/heads/deploy/* once a member of approvers agrees.
const workloadPolicyYAML = `people:
  - {name: alice, keys: ["KEY(alice)"], groups: [dev]}
  - {name: bob, keys: ["KEY(bob)"], groups: [dev, approvers]}
  - {name: carol, keys: ["KEY(carol)"], groups: [dev, approvers]}
oidc:
  - {name: ci, issuer: "https://ci.example", audience: jitssh, jwks_file: "JWKS"}
rules:
  - name: read-demo
    groups: [dev]
    repos: ["*/*"]
    refs: ["*"]
    access: [read]
    auto_approve: true
  - name: ci-demo
    workload: {issuer: ci, claims: {repository: demo/app, ref: refs/heads/main}}
    repos: [demo/app]
    refs: ["refs/heads/ci/*"]
    access: [write]
    auto_approve: true
    min_ttl: 1m
    default_ttl: 10m
    max_ttl: 10m
  - name: gitlab-deploy
    workload: {issuer: ci, claims: {project_path: group/app, ref_protected: "true"}}
    repos: [group/app]
    refs: ["refs/heads/deploy/*"]
    access: [write]
    approvals: [{group: approvers, count: 1}]
    max_ttl: 1h
`

// workloadPolicy is workloadPolicyYAML trusting a fresh copy of the CI
// issuer's key set.
func workloadPolicy(tb testing.TB) *Policy {
	tb.Helper()
	return policyFrom(tb, strings.Replace(workloadPolicyYAML, "JWKS", ciJWKS(tb), 1))
}

// githubClaims are a GitHub Actions token's claims for a push to demo/app's
// main branch, valid at the fake clock's start.
func githubClaims(jti string) map[string]any {
	return map[string]any{
		"iss": ciIssuer, "aud": "jitssh", "sub": "repo:demo/app:ref:refs/heads/main", "jti": jti,
		"iat": t0.Add(-time.Minute).Unix(), "nbf": t0.Add(-time.Minute).Unix(), "exp": t0.Add(5 * time.Minute).Unix(),
		"repository": "demo/app", "repository_id": "17", "repository_owner": "demo", "ref": "refs/heads/main",
		"ref_type": "branch", "sha": "0123456789abcdef0123456789abcdef01234567", "run_id": "9001",
		"event_name": "push", "workflow_ref": "demo/app/.github/workflows/ci.yml@refs/heads/main",
		"runner_environment": "github-hosted",
	}
}

// gitlabClaims are a GitLab CI token's claims for a pipeline of group/app.
func gitlabClaims(jti string) map[string]any {
	return map[string]any{
		"iss": ciIssuer, "aud": "jitssh", "sub": "project_path:group/app:ref_type:branch:ref:main", "jti": jti,
		"iat": t0.Add(-time.Minute).Unix(), "exp": t0.Add(time.Hour).Unix(),
		"project_path": "group/app", "project_id": "42", "namespace_path": "group", "ref": "main",
		"ref_type": "branch", "ref_protected": true, "pipeline_source": "push", "pipeline_id": "777",
		"sha": "89abcdef0123456789abcdef0123456789abcdef",
	}
}

// ciToken signs claims as the CI issuer (or with key, under kid).
func ciToken(tb testing.TB, claims map[string]any) string {
	tb.Helper()
	key, _ := ciKeys()
	return signToken(tb, jose.RS256, key, "k1", claims)
}

func signToken(tb testing.TB, alg jose.SignatureAlgorithm, key any, kid string, claims map[string]any) string {
	tb.Helper()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: jose.JSONWebKey{Key: key, KeyID: kid}}, (&jose.SignerOptions{}).WithType("JWT"))
	require.NoError(tb, err)
	payload, err := json.Marshal(claims)
	require.NoError(tb, err)
	obj, err := signer.Sign(payload)
	require.NoError(tb, err)
	tok, err := obj.CompactSerialize()
	require.NoError(tb, err)
	return tok
}

// ciInput asks for write on demo/app's refs/heads/ci/build with token.
func ciInput(token string) WorkloadInput {
	return WorkloadInput{Token: token, Repo: "demo/app", Ref: "refs/heads/ci/build", Access: "write", TTL: 10 * time.Minute}
}

// ciActor is a CI job that authenticated with a fresh key.
func ciActor(tb testing.TB) Actor { return Actor{Key: freshKey(tb)} }
