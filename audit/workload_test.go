package audit

import (
	"errors"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"
)

// workloadRequest is a CI/CD job's request as the daemon records it.
func (f *grantsFixture) workloadRequest(id, tokenID string) RequestData {
	f.t.Helper()
	w := &WorkloadData{Issuer: "gh", IssuerURL: "https://token.actions.githubusercontent.com", Audience: "jitssh",
		Subject: "repo:demo/app:ref:refs/heads/main", TokenID: "https://token.actions.githubusercontent.com#jti:" + tokenID,
		Expires: time.Now().Add(5 * time.Minute).UTC(), Token: "header.payload.sig",
		Claims: map[string]string{"repository": "demo/app", "ref": "refs/heads/main", "run_id": "9", "sha": "abc"}}
	key := newTestSigner(f.t).PublicKey()
	requester := WorkloadRequester(w.Issuer, w.Subject, w.Claims)
	return RequestData{ID: id, Requester: requester, Repo: "demo/app", Ref: "refs/heads/ci/*", Access: "write",
		Grant: "git:write:demo/app:refs/heads/ci/*", TTL: "10m0s", Rule: "ci", State: "approved",
		PublicKey: strings.TrimSpace(string(ssh.MarshalAuthorizedKey(key))), Workload: w}
}

// vouching is a WorkloadVerifier whose tokens say what the record says,
// changed by edit.
func vouching(edit func(*VerifiedWorkload)) WorkloadVerifier {
	return func(w *WorkloadData, _ time.Time) (*VerifiedWorkload, error) {
		v := &VerifiedWorkload{IssuerURL: w.IssuerURL, Subject: w.Subject, TokenID: w.TokenID, Claims: maps.Clone(w.Claims)}
		if edit != nil {
			edit(v)
		}
		return v, nil
	}
}

func TestCheckWorkloadRequests(t *testing.T) {
	f := newGrantsFixture(t)
	w1, w2 := f.workloadRequest("w1", "a"), f.workloadRequest("w2", "b")
	good := story{
		{"request w1", KindRequest, w1.Requester, w1},
		{"issue w1", KindIssue, "jitssh", later(func(now time.Time) IssueData { return f.issue(w1, 1, 10*time.Minute, now) })},
		{"refused", KindWorkloadRefused, w1.Requester, WorkloadRefusedData{Requester: w1.Requester, Reason: "token already used", Workload: *w1.Workload}},
		{"request w2", KindRequest, w2.Requester, w2},
	}
	edit := func(d RequestData, change func(*RequestData)) RequestData {
		w := *d.Workload
		w.Claims = maps.Clone(w.Claims)
		d.Workload = &w
		change(&d)
		return d
	}
	for _, tt := range []struct {
		name      string
		story     story
		verify    WorkloadVerifier
		at        string
		want      error
		checked   int
		unchecked int
	}{
		{name: "no verifier: tokens not checked", story: good, unchecked: 2},
		{name: "tokens vouch for the records", story: good, verify: vouching(nil), checked: 2},
		{name: "no key set for the issuer", story: good, unchecked: 2,
			verify: func(*WorkloadData, time.Time) (*VerifiedWorkload, error) { return nil, ErrWorkloadUnchecked }},
		{name: "token does not verify", story: good, at: "request w1", want: ErrWorkloadToken,
			verify: func(*WorkloadData, time.Time) (*VerifiedWorkload, error) { return nil, errors.New("bad signature") }},
		{name: "record claims another repository than the token", at: "request w1", want: ErrWorkloadToken,
			story: good, verify: vouching(func(v *VerifiedWorkload) { v.Claims["repository"] = "evil/app" })},
		{name: "record claims another subject", at: "request w1", want: ErrWorkloadToken,
			story: good, verify: vouching(func(v *VerifiedWorkload) { v.Subject = "repo:evil/app" })},
		{name: "record claims another token", at: "request w1", want: ErrWorkloadToken,
			story: good, verify: vouching(func(v *VerifiedWorkload) { v.TokenID += "x" })},
		{name: "one token, two requests", at: "request w2", want: ErrWorkloadToken,
			story: good.set("request w2", edit(w2, func(d *RequestData) { d.Workload.TokenID = w1.Workload.TokenID }))},
		{name: "requester other than the identity gives", at: "request w1", want: ErrRecord,
			story: good.set("request w1", edit(w1, func(d *RequestData) { d.Requester = "alice" }))},
		{name: "identity without a token ID", at: "request w1", want: ErrRecord,
			story: good.set("request w1", edit(w1, func(d *RequestData) { d.Workload.TokenID = "" }))},
		{name: "grant wider than the request", at: "request w1", want: ErrScope,
			story: good.set("request w1", edit(w1, func(d *RequestData) { d.Grant = "git:force:demo/app:*" }))},
		{name: "certificate for another key", at: "issue w1", want: ErrScope,
			story: good.set("issue w1", later(func(now time.Time) IssueData {
				return f.issueCert(f.ca, w1, newTestSigner(t).PublicKey(), []string{w1.Grant}, 1, 10*time.Minute, now)
			}))},
	} {
		t.Run(tt.name, func(t *testing.T) {
			opts := f.opts()
			opts.VerifyWorkload = tt.verify
			sum, err := checkFile(t, tt.story.write(t), opts)
			if tt.want == nil {
				require.NoError(t, err)
				assert.Equal(t, tt.checked, sum.WorkloadChecked)
				assert.Equal(t, tt.unchecked, sum.WorkloadUnchecked)
				return
			}
			require.ErrorIs(t, err, tt.want)
			var ce *CheckError
			require.ErrorAs(t, err, &ce)
			assert.Equal(t, tt.story.seq(tt.at), ce.Seq, "failing entry: %v", err)
		})
	}
}

func TestCheckWorkloadRecord(t *testing.T) {
	f := newGrantsFixture(t)
	d := f.workloadRequest("w1", "a")
	require.NoError(t, CheckWorkloadRecord(&d))
	signed := f.request("r1", "alice", "read", "demo/app", "*", "1h0m0s", "x")
	d.Statement, d.Signature = signed.Statement, signed.Signature
	require.ErrorContains(t, CheckWorkloadRecord(&d), "carries a signed statement too")
}
