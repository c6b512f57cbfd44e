package main

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"

	"github.com/jitssh/jitssh/approvals"
	"github.com/jitssh/jitssh/principals"
)

// startWorkloadDaemon is an in-process daemon that also trusts the
// playground's CI issuer, with its workload rule.
func startWorkloadDaemon(t *testing.T) *inProcessDaemon {
	t.Helper()
	dir := t.TempDir()
	require.NoError(t, ensureDevCI(dir))
	d := startInProcessDaemonIn(t, dir, devCIRule+devCIConfig)
	return d
}

// devToken mints a playground CI token signed with DIR/ci's key.
func devToken(t *testing.T, dir string, sets ...string) string {
	t.Helper()
	key, err := loadDevCIKey(dir)
	require.NoError(t, err)
	claims, err := devCIClaims(time.Now(), 5*time.Minute, sets)
	require.NoError(t, err)
	tok, err := signDevToken(key, claims)
	require.NoError(t, err)
	return tok
}

// jobClient connects as a CI job: with a fresh key nobody is listed for.
func (d *inProcessDaemon) jobClient(t *testing.T) (*apiClient, ssh.PublicKey, error) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	signer, err := ssh.NewSignerFromKey(priv)
	require.NoError(t, err)
	hostKeys, err := hostKeyCallback(d.knownHosts)
	require.NoError(t, err)
	c, err := connectWith(d.addrs.API.String(), []ssh.Signer{signer}, hostKeys)
	if err == nil {
		t.Cleanup(func() { c.Close() })
	}
	return c, signer.PublicKey(), err
}

func ciRequest(token string) apiRequest {
	return apiRequest{Token: token, Repo: "demo/app", Ref: "refs/heads/ci/build", Access: "write"}
}

func TestAPIWorkloadSubmit(t *testing.T) {
	d := startWorkloadDaemon(t)
	job, key, err := d.jobClient(t)
	require.NoError(t, err, "a key nobody is listed for connects while the policy trusts a token issuer")

	// It may ask for a workload certificate, and nothing else.
	for _, method := range []string{methodWhoami, methodSubmit, methodList, methodGet, methodApprove, methodWatch, methodAllowed, "nonsense"} {
		_, err := job.call(method, apiRequest{ID: "req-x"})
		require.Error(t, err, method)
		assert.Equal(t, "forbidden", apiCode(err), method)
		assert.ErrorContains(t, err, "may only ask for a CI/CD workload certificate", method)
	}

	tok := devToken(t, d.dir)
	resp, err := job.call(methodWorkloadSubmit, ciRequest(tok))
	require.NoError(t, err)
	r := resp.Request
	require.NotEmpty(t, r.Certificate)
	cert, err := parseCert(r.Certificate)
	require.NoError(t, err)
	assert.True(t, bytes.Equal(key.Marshal(), cert.Key.Marshal()), "the certificate is for the key that authenticated")
	assert.True(t, strings.HasPrefix(cert.KeyId, "ci:dev:demo/app@refs/heads/main/req-"), cert.KeyId)
	assert.Equal(t, []string{"git:write:demo/app:refs/heads/ci/build"}, cert.ValidPrincipals)
	assert.LessOrEqual(t, time.Until(r.ValidBefore), 10*time.Minute+time.Second, "the rule's max TTL")

	// The same token again, from another job's key: refused.
	other, _, err := d.jobClient(t)
	require.NoError(t, err)
	_, err = other.call(methodWorkloadSubmit, ciRequest(tok))
	require.Error(t, err)
	assert.ErrorContains(t, err, "token already used")

	// A person may not use the workload method, not even with a token.
	alice := d.client(t, "alice")
	_, err = alice.call(methodWorkloadSubmit, ciRequest(devToken(t, d.dir)))
	require.Error(t, err)
	assert.Equal(t, "forbidden", apiCode(err))
}

// Without an oidc: block, a key nobody is listed for does not get in.
func TestAPIUnlistedKeyWithoutIssuers(t *testing.T) {
	d := startInProcessDaemon(t, "")
	_, _, err := d.jobClient(t)
	require.Error(t, err)
	assert.ErrorContains(t, err, "unable to authenticate")
}

// In GitHub Actions, --oidc asks the runner's endpoint for a token with
// the audience, authenticated with the runner's request token.
func TestGitHubToken(t *testing.T) {
	var gotAuth, gotAudience, gotVersion string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotAuth, gotAudience, gotVersion = r.Header.Get("Authorization"), r.URL.Query().Get("audience"), r.URL.Query().Get("api-version")
		if gotAuth != "bearer runner-secret" {
			http.Error(w, "no", http.StatusUnauthorized)
			return
		}
		w.Write([]byte(`{"count":1,"value":"eyJ.tok.en"}`))
	}))
	defer srv.Close()
	t.Setenv("ACTIONS_ID_TOKEN_REQUEST_URL", srv.URL+"/token?api-version=2.0")
	t.Setenv("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "runner-secret")
	tok, err := githubToken(t.Context(), "jitssh")
	require.NoError(t, err)
	assert.Equal(t, "eyJ.tok.en", tok)
	assert.Equal(t, "jitssh", gotAudience)
	assert.Equal(t, "2.0", gotVersion, "the runner's own query is kept")

	t.Setenv("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "wrong")
	_, err = githubToken(t.Context(), "jitssh")
	assert.ErrorContains(t, err, "id-token: write")

	t.Setenv("ACTIONS_ID_TOKEN_REQUEST_URL", "")
	_, err = githubToken(t.Context(), "jitssh")
	assert.ErrorContains(t, err, "JITSSH_OIDC_TOKEN")
}

// The example config's workload rules mean what the README says.
func TestExampleConfigWorkloadRules(t *testing.T) {
	cfg, err := approvals.LoadConfig(filepath.Join("..", "..", "testdata", "server.yaml"))
	require.NoError(t, err)
	policy, err := approvals.NewPolicy(cfg)
	require.NoError(t, err)
	gh := map[string]string{"repository": "payments/api", "ref": "refs/heads/main", "event_name": "push"}
	rule, err := policy.MatchWorkload("github", gh, "payments/api", "refs/heads/deploy/prod", principals.Write)
	require.NoError(t, err)
	assert.Equal(t, "ci-deploy", rule.Name)
	assert.True(t, rule.AutoApprove)
	gh["event_name"] = "pull_request"
	_, err = policy.MatchWorkload("github", gh, "payments/api", "refs/heads/deploy/prod", principals.Write)
	assert.ErrorIs(t, err, approvals.ErrNoRule, "a pull request's job is not a push's")
	gl := map[string]string{"project_path": "payments/web", "ref": "v1.2", "ref_protected": "true"}
	rule, err = policy.MatchWorkload("gitlab", gl, "payments/web", "refs/tags/v1.2", principals.Write)
	require.NoError(t, err)
	assert.Equal(t, "gitlab-release", rule.Name)
	assert.NotEmpty(t, rule.Approvals)
	gl["project_path"] = "fork/web"
	_, err = policy.MatchWorkload("gitlab", gl, "payments/web", "refs/tags/v1.2", principals.Write)
	assert.ErrorIs(t, err, approvals.ErrNoRule, "a fork's pipeline")
}

// A reload keeps CI jobs' connections while the policy trusts a token
// issuer; one that drops the last issuer ends them, and keeps such keys
// out from then on.
func TestReloadWithoutIssuersCutsWorkloads(t *testing.T) {
	d := startWorkloadDaemon(t)
	job, _, err := d.jobClient(t)
	require.NoError(t, err)
	_, err = job.call(methodWhoami, apiRequest{})
	require.Equal(t, "forbidden", apiCode(err), "connected, allowed nothing but workload-submit")

	// A reload that keeps the issuers keeps the job's connection: it may
	// be waiting for an approval.
	path := filepath.Join(d.dir, "server.yaml")
	cfg := readFile(t, path)
	require.NoError(t, os.WriteFile(path, []byte(strings.Replace(cfg, "max_ttl: 8h", "max_ttl: 7h", 1)), 0o600))
	require.True(t, d.addrs.Reload())
	resp, err := job.call(methodWorkloadSubmit, ciRequest(devToken(t, d.dir)))
	require.NoError(t, err, "the job's connection survived the reload")
	require.NotEmpty(t, resp.Request.Certificate)

	require.Contains(t, cfg, devCIRule+devCIConfig)
	require.NoError(t, os.WriteFile(path, []byte(strings.Replace(cfg, devCIRule+devCIConfig, "", 1)), 0o600))
	require.True(t, d.addrs.Reload())

	_, err = job.call(methodWorkloadSubmit, ciRequest(devToken(t, d.dir)))
	require.Error(t, err)
	assert.Empty(t, apiCode(err), "the connection is gone, not refused: %v", err)
	_, _, err = d.jobClient(t)
	assert.ErrorContains(t, err, "unable to authenticate")
}
