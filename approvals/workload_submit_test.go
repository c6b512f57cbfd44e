package approvals

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"regexp"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"

	"github.com/jitssh/jitssh/audit"
	"github.com/jitssh/jitssh/ca"
)

// rawEntries returns the entries of kind the Service wrote since it opened.
func (a *recordingAuditor) rawEntries(tb testing.TB, kind string) []audit.Entry {
	tb.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []audit.Entry
	for _, line := range a.lines[a.start:] {
		var e audit.Entry
		require.NoError(tb, json.Unmarshal(line, &e))
		if e.Kind == kind {
			out = append(out, e)
		}
	}
	return out
}

func TestSubmitWorkloadIssuesForTheKeyThatAuthenticated(t *testing.T) {
	env := newTestService(t, workloadPolicy(t))
	who := ciActor(t)
	tok := ciToken(t, githubClaims("run-9001-1"))
	r, err := env.SubmitWorkload(ctx, who, ciInput(tok))
	require.NoError(t, err)
	require.Equal(t, StateApproved, r.State)
	require.Equal(t, "ci-demo", r.Rule)
	require.Equal(t, "ci:ci:demo/app@refs/heads/main", r.Requester)

	cert := parseCert(t, r)
	require.True(t, bytes.Equal(who.Key.Marshal(), cert.Key.Marshal()), "the certificate is for the key the job authenticated with")
	require.Equal(t, []string{"git:write:demo/app:refs/heads/ci/build"}, cert.ValidPrincipals)
	require.Regexp(t, `^ci:ci:demo/app@refs/heads/main/req-[0-9A-Z]{26}$`, cert.KeyId)
	require.LessOrEqual(t, len(cert.KeyId), ca.MaxKeyIDLen)

	reqs := env.audit.rawEntries(t, AuditRequest)
	require.Len(t, reqs, 1)
	var d audit.RequestData
	require.NoError(t, json.Unmarshal(reqs[0].Data, &d))
	require.Equal(t, r.Requester, reqs[0].Actor)
	require.NotNil(t, d.Workload)
	require.Equal(t, "ci", d.Workload.Issuer)
	require.Equal(t, ciIssuer, d.Workload.IssuerURL)
	require.Equal(t, "repo:demo/app:ref:refs/heads/main", d.Workload.Subject)
	require.Equal(t, tok, d.Workload.Token, "the token is on the record for an offline check")
	require.Empty(t, r.Workload.Token, "and nowhere else: not in answers, the state or webhooks")
	stored, err := env.Get(r.ID)
	require.NoError(t, err)
	require.Empty(t, stored.Workload.Token)
	for k, v := range map[string]string{"repository": "demo/app", "ref": "refs/heads/main", "run_id": "9001",
		"sha": "0123456789abcdef0123456789abcdef01234567", "event_name": "push"} {
		require.Equal(t, v, d.Workload.Claims[k], k)
	}
	require.Empty(t, d.Statement)
	require.NoError(t, audit.CheckWorkloadRecord(&d), "the daemon writes what the verifier accepts")
	issues := env.audit.rawEntries(t, AuditIssue)
	require.Len(t, issues, 1)
	require.Equal(t, r.Requester, requesterOf(t, issues[0]))
}

func requesterOf(t *testing.T, e audit.Entry) string {
	var d struct{ Requester string }
	require.NoError(t, json.Unmarshal(e.Data, &d))
	return d.Requester
}

// A token is good for one request: presented again, with another key or
// the same, it is refused by the state machine, and the refusal is on the
// record.
func TestSubmitWorkloadTokenOnce(t *testing.T) {
	env := newTestService(t, workloadPolicy(t))
	tok := ciToken(t, githubClaims("once"))
	_, err := env.SubmitWorkload(ctx, ciActor(t), ciInput(tok))
	require.NoError(t, err)
	_, err = env.SubmitWorkload(ctx, ciActor(t), ciInput(tok))
	require.ErrorIs(t, err, ErrTokenUsed)
	require.ErrorContains(t, err, "good for one request")
	refused := env.audit.rawEntries(t, AuditWorkloadRefused)
	require.Len(t, refused, 1)
	var d audit.WorkloadRefusedData
	require.NoError(t, json.Unmarshal(refused[0].Data, &d))
	require.Contains(t, d.Reason, "token already used")
	require.Equal(t, "demo/app", d.Workload.Claims["repository"])
	require.Len(t, env.audit.rawEntries(t, AuditRequest), 1)

	// A token without jti is told by its hash: the same bytes are refused.
	c := githubClaims("")
	delete(c, "jti")
	nojti := ciToken(t, c)
	_, err = env.SubmitWorkload(ctx, ciActor(t), ciInput(nojti))
	require.NoError(t, err)
	_, err = env.SubmitWorkload(ctx, ciActor(t), ciInput(nojti))
	require.ErrorIs(t, err, ErrTokenUsed)
}

// The state machine alone refuses a token used before, whatever the
// Service checked: two replicas applying the same log agree.
func TestUsedTokenRefusedByTheStateMachine(t *testing.T) {
	st, err := newStateStore()
	require.NoError(t, err)
	req := func(id string, at time.Time) *Request {
		return &Request{ID: id, Requester: "ci:ci:demo/app@refs/heads/main", State: StatePending, CreatedAt: at,
			ExpiresAt: at.Add(time.Hour), Workload: &WorkloadIdentity{TokenID: ciIssuer + "#jti:x", UsableUntil: t0.Add(5 * time.Minute)}}
	}
	ids := []string{"req-01HZZZZZZZZZZZZZZZZZZZZZZ1", "req-01HZZZZZZZZZZZZZZZZZZZZZZ2", "req-01HZZZZZZZZZZZZZZZZZZZZZZ3"}
	_, err = st.submitRequest(1, req(ids[0], t0), 0)
	require.NoError(t, err)
	_, err = st.submitRequest(2, req(ids[1], t0.Add(time.Minute)), 0)
	require.ErrorIs(t, err, ErrTokenUsed)
	require.Equal(t, 1, usedTokens(t, st))
	// Once the token could no longer be accepted, it is forgotten, by the
	// time of the next workload command.
	other := req(ids[2], t0.Add(5*time.Minute+time.Second))
	other.Workload.TokenID = ciIssuer + "#jti:y"
	other.Workload.UsableUntil = t0.Add(10 * time.Minute)
	_, err = st.submitRequest(3, other, 0)
	require.NoError(t, err)
	require.Equal(t, 1, usedTokens(t, st), "x pruned, y remembered")
}

func usedTokens(t *testing.T, st *stateStore) int {
	t.Helper()
	it, err := st.db.Txn(false).Get(tableUsedTokens, indexID)
	require.NoError(t, err)
	n := 0
	for obj := it.Next(); obj != nil; obj = it.Next() {
		n++
	}
	return n
}

// A snapshot keeps the used tokens (see TestUsedTokensInTheSnapshot).
func TestUsedTokensSurviveASnapshot(t *testing.T) {
	env := newTestService(t, workloadPolicy(t))
	tok := ciToken(t, githubClaims("snap"))
	_, err := env.SubmitWorkload(ctx, ciActor(t), ciInput(tok))
	require.NoError(t, err)
	var buf bytes.Buffer
	snap, err := env.fsm.Snapshot()
	require.NoError(t, err)
	require.NoError(t, snap.(*fsmSnapshot).write(&buf))
	st, err := readSnapshot(&buf)
	require.NoError(t, err)
	require.Equal(t, 1, usedTokens(t, st))
}

// Each refusal says why; those of tokens the issuer signed go on the
// audit log with the token's claims, the others only to the daemon's log.
func TestSubmitWorkloadRefusals(t *testing.T) {
	key, other := ciKeys()
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	require.NoError(t, err)
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	with := func(base map[string]any, change map[string]any) map[string]any {
		for k, v := range change {
			if v == nil {
				delete(base, k)
			} else {
				base[k] = v
			}
		}
		return base
	}
	algNone := func(c map[string]any) string {
		b, _ := json.Marshal(c)
		enc := base64.RawURLEncoding.EncodeToString
		return enc([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + enc(b) + "."
	}
	gitlabDeploy := func(tok string) WorkloadInput {
		return WorkloadInput{Token: tok, Repo: "group/app", Ref: "refs/heads/deploy/prod", Access: "write"}
	}
	for _, tc := range []struct {
		name    string
		token   string
		in      func(string) WorkloadInput
		want    error
		reason  string
		audited bool
	}{
		{"expired", ciToken(t, with(githubClaims("a"), map[string]any{"exp": t0.Add(-time.Minute).Unix()})), ciInput, ErrWorkloadRefused, "token expired", true},
		{"not yet valid", ciToken(t, with(githubClaims("b"), map[string]any{"nbf": t0.Add(time.Minute).Unix()})), ciInput, ErrWorkloadRefused, "not valid before", true},
		{"wrong audience", ciToken(t, with(githubClaims("c"), map[string]any{"aud": "https://github.com/demo"})), ciInput, ErrWorkloadRefused, "audience", true},
		{"wrong issuer", ciToken(t, with(githubClaims("d"), map[string]any{"iss": "https://evil.example"})), ciInput, ErrWorkloadRefused, "not one this daemon trusts", false},
		{"unknown key", signToken(t, jose.RS256, other, "k9", githubClaims("e")), ciInput, ErrWorkloadRefused, "does not publish", false},
		{"other signing key", signToken(t, jose.RS256, other, "k1", githubClaims("f")), ciInput, ErrWorkloadRefused, "does not verify", false},
		{"alg none", algNone(githubClaims("g")), ciInput, ErrWorkloadRefused, "unsigned", false},
		{"HS256 with the public key as secret", signToken(t, jose.HS256, pubPEM, "k1", githubClaims("h")), ciInput, ErrWorkloadRefused, "shared-secret", false},
		{"another repository", ciToken(t, with(githubClaims("i"), map[string]any{"repository": "evil/app", "sub": "repo:evil/app:ref:refs/heads/main"})), ciInput, ErrNoRule, "no workload rule admits", true},
		{"another branch", ciToken(t, with(githubClaims("j"), map[string]any{"ref": "refs/heads/feature"})), ciInput, ErrNoRule, "no workload rule admits", true},
		{"a ref outside the rule", ciToken(t, githubClaims("k")), func(tok string) WorkloadInput {
			in := ciInput(tok)
			in.Ref = "refs/heads/main"
			return in
		}, ErrNoRule, "it may request write on demo/app at refs/heads/ci/*", true},
		{"longer than the rule's max_ttl", ciToken(t, githubClaims("l")), func(tok string) WorkloadInput {
			in := ciInput(tok)
			in.TTL = time.Hour
			return in
		}, ErrBadRequest, "outside", false},
		{"GitLab merge request from a fork", ciToken(t, with(gitlabClaims("m"), map[string]any{"pipeline_source": "merge_request_event",
			"project_path": "attacker/app", "sub": "project_path:attacker/app:ref_type:branch:ref:main"})), gitlabDeploy, ErrNoRule, "no workload rule admits", true},
		{"GitLab unprotected ref", ciToken(t, with(gitlabClaims("n"), map[string]any{"ref_protected": false})), gitlabDeploy, ErrNoRule, "no workload rule admits", true},
		{"not a token", "not.a.token", ciInput, ErrWorkloadRefused, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := newTestService(t, workloadPolicy(t))
			_, err := env.SubmitWorkload(ctx, ciActor(t), tc.in(tc.token))
			require.ErrorIs(t, err, tc.want)
			require.ErrorContains(t, err, tc.reason)
			refused := env.audit.rawEntries(t, AuditWorkloadRefused)
			require.Empty(t, env.audit.rawEntries(t, AuditRequest))
			if !tc.audited {
				require.Empty(t, refused)
				return
			}
			require.Len(t, refused, 1)
			var d audit.WorkloadRefusedData
			require.NoError(t, json.Unmarshal(refused[0].Data, &d))
			require.Contains(t, d.Reason, tc.reason)
			require.NotEmpty(t, d.Workload.Subject)
			require.NotEmpty(t, d.Workload.Claims, "the claims are on the record")
			require.Empty(t, d.Workload.Token, "a refused token may still be good: it stays off the record")
			require.Equal(t, d.Requester, refused[0].Actor)
		})
	}
}

func TestSubmitWorkloadKeyRules(t *testing.T) {
	env := newTestService(t, workloadPolicy(t))
	alice := Actor{Key: mustKey(t, keyLine(t, "alice"))}
	_, err := env.SubmitWorkload(ctx, alice, ciInput(ciToken(t, githubClaims("p1"))))
	require.ErrorIs(t, err, ErrForbidden)
	require.ErrorContains(t, err, "alice's identity key")

	plain := newTestService(t, nil)
	_, err = plain.SubmitWorkload(ctx, ciActor(t), ciInput(ciToken(t, githubClaims("p2"))))
	require.ErrorIs(t, err, ErrForbidden)
	require.ErrorContains(t, err, "no oidc")
}

func mustKey(t *testing.T, line string) ssh.PublicKey {
	t.Helper()
	k, err := parseIdentityKey(line)
	require.NoError(t, err)
	return k
}

// A workload is no person: it cannot list, approve or read requests, and
// may wait only on its own request, by the key it authenticated with.
func TestWorkloadIsNoPerson(t *testing.T) {
	env := newTestService(t, workloadPolicy(t))
	who := ciActor(t)
	tok := ciToken(t, gitlabClaims("gl1"))
	r, err := env.SubmitWorkload(ctx, who, WorkloadInput{Token: tok, Repo: "group/app", Ref: "refs/heads/deploy/prod", Access: "write", Reason: "deploy"})
	require.NoError(t, err)
	require.Equal(t, StatePending, r.State, "this rule needs an approver")
	require.Equal(t, "ci:ci:group/app@main", r.Requester)

	as := Actor{Person: r.Requester, Key: who.Key, Workload: r.Workload}
	_, err = env.Service.Get(as, r.ID)
	require.ErrorIs(t, err, ErrForbidden)
	_, err = env.Service.List(as, ListFilter{})
	require.ErrorIs(t, err, ErrForbidden)
	_, err = env.Service.Approve(ctx, as, r.ID, DecisionInput{})
	require.ErrorIs(t, err, ErrForbidden)

	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	got, err := env.WaitWorkload(wctx, Actor{Key: who.Key}, r.ID, 0)
	require.NoError(t, err)
	require.Equal(t, r.ID, got.ID)
	_, err = env.WaitWorkload(wctx, Actor{Key: freshKey(t)}, r.ID, 0)
	require.ErrorIs(t, err, ErrNotFound, "another key may not follow it")

	approved := env.approve(t, "bob", r.ID)
	require.NotEmpty(t, approved.Certificate)
	got, err = env.WaitWorkload(wctx, Actor{Key: who.Key}, r.ID, r.Version)
	require.NoError(t, err)
	require.NotEmpty(t, got.Certificate)

	// A restart under another policy version offboards nobody: a job is
	// no person of the policy.
	env.opts.Policy = policyFrom(t, strings.Replace(strings.Replace(workloadPolicyYAML, "JWKS", ciJWKS(t), 1), "max_ttl: 1h", "max_ttl: 2h", 1))
	env.reopen(t)
	require.Empty(t, env.audit.rawEntries(t, AuditOffboard))
	still, err := env.Get(r.ID)
	require.NoError(t, err)
	require.Nil(t, still.Revoked)
}

// A job's token refused again and again is recorded at most as often as
// the request limits allow; after that, only the daemon's log says so.
func TestWorkloadRefusalsAreRateLimited(t *testing.T) {
	env := newTestService(t, workloadPolicy(t))
	tok := ciToken(t, githubClaims("flood"))
	_, err := env.SubmitWorkload(ctx, ciActor(t), ciInput(tok))
	require.NoError(t, err)
	for range DefaultRequestBurst + 5 {
		_, err = env.SubmitWorkload(ctx, ciActor(t), ciInput(tok))
		require.Error(t, err)
	}
	require.Len(t, env.audit.rawEntries(t, AuditWorkloadRefused), DefaultRequestBurst-1)
}

func TestWorkloadRequesterName(t *testing.T) {
	for _, tc := range []struct {
		claims map[string]string
		sub    string
		want   string
	}{
		{map[string]string{"repository": "demo/app", "ref": "refs/heads/main"}, "s", "ci:gh:demo/app@refs/heads/main"},
		{map[string]string{"project_path": "group/sub/app", "ref": "main"}, "s", "ci:gh:group/sub/app@main"},
		{map[string]string{}, "repo:x", "ci:gh:repo:x"},
		{map[string]string{"repository": "demo/app", "ref": "refs/heads/a b\n%"}, "s", "ci:gh:demo/app@refs/heads/a%20b%0A%25"},
		{map[string]string{"repository": "demo/app", "ref": "refs/heads/é"}, "s", "ci:gh:demo/app@refs/heads/%C3%A9"},
	} {
		require.Equal(t, tc.want, audit.WorkloadRequester("gh", tc.sub, tc.claims))
	}
	long := audit.WorkloadRequester("gh", "s", map[string]string{"repository": "demo/app", "ref": strings.Repeat("x", 500)})
	require.LessOrEqual(t, len(long)+1+idLen, ca.MaxKeyIDLen)
	require.Regexp(t, regexp.MustCompile(`^[!-~]+$`), long)
}
