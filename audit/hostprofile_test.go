package audit

import (
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"

	"github.com/jitssh/jitssh/ca"
)

// issueHost is the issue entry of a Git host certificate for account,
// as a rule with a host profile issues it.
func (f *grantsFixture) issueHost(req RequestData, account string, serial uint64, ttl time.Duration, now time.Time, approvers ...string) IssueData {
	f.t.Helper()
	pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(req.PublicKey))
	require.NoError(f.t, err)
	f.ca.Now = func() time.Time { return now }
	cert, err := f.ca.Sign(ca.CertRequest{Profile: ca.ProfileGitea, PublicKey: pub, KeyID: req.Requester + "/" + req.ID, Account: account, TTL: ttl}, fixedSerial(serial))
	require.NoError(f.t, err)
	return IssueData{ID: req.ID, Serial: cert.Serial, KeyID: cert.KeyId, Requester: req.Requester, Principals: cert.ValidPrincipals,
		ValidAfter: time.Unix(int64(cert.ValidAfter), 0).UTC(), ValidBefore: time.Unix(int64(cert.ValidBefore), 0).UTC(),
		Approvers: approvers, Rule: req.Rule, Certificate: strings.TrimSpace(string(ssh.MarshalAuthorizedKey(cert)))}
}

// TestCheckerHostCertificates: a rule that issues Git host certificates
// has its certificates judged by the account the deciding policy version
// lists for the requester, not by the grant.
func TestCheckerHostCertificates(t *testing.T) {
	f := newGrantsFixture(t)
	leads := []Step{{Group: "leads", Count: 1}}
	const digest = "sha256:3333333333333333333333333333333333333333333333333333333333333333"
	grantRules := f.version(digest, leads, maps.Clone(fixturePeople))
	hostRules := f.version(digest, leads, maps.Clone(fixturePeople))
	reviewed := hostRules.Rules["reviewed"]
	reviewed.HostPrincipals = func(requester string) []string {
		if requester == "alice" {
			return []string{"alice-gitea"}
		}
		return nil
	}
	hostRules.Rules["reviewed"] = reviewed

	r1 := f.request("r1", "alice", "write", "demo/app", "refs/heads/feature/*", "1h0m0s", "login form", leads...)
	storyOf := func(issue func(now time.Time) IssueData) story {
		return story{
			{"request r1", KindRequest, "alice", versioned(r1, digest)},
			{"approve r1", KindApprove, "bob", f.decide(KindApprove, r1, "bob", "", "ok")},
			{"issue r1", KindIssue, "jitssh", later(issue)},
		}
	}
	hostCert := storyOf(func(now time.Time) IssueData { return f.issueHost(r1, "alice-gitea", 1, time.Hour, now, "bob") })
	otherAccount := storyOf(func(now time.Time) IssueData { return f.issueHost(r1, "mallory", 1, time.Hour, now, "bob") })
	grantCert := storyOf(func(now time.Time) IssueData { return f.issue(r1, 1, time.Hour, now, "bob") })
	issueSeq := hostCert.seq("issue r1")
	tests := []struct {
		name    string
		story   story
		version PolicyVersion
		want    []found
	}{
		{"host certificate for the listed account", hostCert, hostRules, nil},
		{"host certificate for another account", otherAccount, hostRules, []found{{int(issueSeq), issueSeq, ErrScope}}},
		{"grant certificate where the rule issues host ones", grantCert, hostRules, []found{{int(issueSeq), issueSeq, ErrScope}}},
		{"host certificate under a grant rule", hostCert, grantRules, []found{{int(issueSeq), issueSeq, ErrScope}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := CheckOptions{CAKeys: []ssh.PublicKey{f.ca.PublicKey()}, Policies: []PolicyVersion{tt.version}, People: union(tt.version)}
			got, _ := checkAll(t, tt.story.write(t), opts)
			assert.Equal(t, tt.want, got)
		})
	}
}
