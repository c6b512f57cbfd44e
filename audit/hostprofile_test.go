package audit

import (
	"crypto/ed25519"
	"crypto/rand"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"

	"github.com/jitssh/jitssh/ca"
	"github.com/jitssh/jitssh/principals"
)

// heldCA gives the fixture a CA whose private key the test holds, so that
// it can sign certificates jitssh's CA would refuse to make.
func (f *grantsFixture) heldCA() ssh.Signer {
	f.t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(f.t, err)
	f.ca, err = ca.New(priv)
	require.NoError(f.t, err)
	signer, err := ssh.NewSignerFromKey(priv)
	require.NoError(f.t, err)
	return signer
}

// issueShaped is the issue entry of a certificate jitssh's CA signs from
// creq for req, then changed by tamper (when not nil) and signed again by
// caKey, the same CA.
func (f *grantsFixture) issueShaped(req RequestData, creq ca.CertRequest, caKey ssh.Signer, tamper func(*ssh.Certificate), now time.Time, approvers ...string) IssueData {
	f.t.Helper()
	pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(req.PublicKey))
	require.NoError(f.t, err)
	creq.PublicKey, creq.TTL = pub, time.Hour
	if creq.KeyID == "" && !creq.Profile.KeyIDIsAccount() {
		creq.KeyID = req.Requester + "/" + req.ID
	}
	f.ca.Now = func() time.Time { return now }
	cert, err := f.ca.Sign(creq, fixedSerial(1))
	require.NoError(f.t, err)
	if tamper != nil {
		tamper(cert)
		require.NoError(f.t, cert.SignCert(rand.Reader, caKey))
	}
	return IssueData{ID: req.ID, Serial: cert.Serial, KeyID: cert.KeyId, Requester: req.Requester, Principals: cert.ValidPrincipals,
		ValidAfter: time.Unix(int64(cert.ValidAfter), 0).UTC(), ValidBefore: time.Unix(int64(cert.ValidBefore), 0).UTC(),
		Approvers: approvers, Rule: req.Rule, Certificate: strings.TrimSpace(string(ssh.MarshalAuthorizedKey(cert)))}
}

// TestCheckerHostCertificates: a rule that issues Git host certificates
// has its certificates judged by the account the deciding policy version
// lists for the requester, in every part the host reads the account from
// (principals, GitHub's login extension, GitLab's key ID), not by the
// grant; a grant certificate carries no extension at all.
func TestCheckerHostCertificates(t *testing.T) {
	f := newGrantsFixture(t)
	caKey := f.heldCA()
	leads := []Step{{Group: "leads", Count: 1}}
	const digest = "sha256:3333333333333333333333333333333333333333333333333333333333333333"
	grantRules := f.version(digest, leads, maps.Clone(fixturePeople))
	hostRules := func(profile ca.Profile, account string) PolicyVersion {
		v := f.version(digest, leads, maps.Clone(fixturePeople))
		reviewed := v.Rules["reviewed"]
		reviewed.HostCert = func(requester string) (HostCert, bool) {
			if requester != "alice" || account == "" {
				return HostCert{}, false
			}
			names, ext, keyID := ca.HostShape(profile, account, "")
			return HostCert{Principals: names, Extensions: ext, KeyID: keyID}, true
		}
		v.Rules["reviewed"] = reviewed
		return v
	}
	github, gitlab, gitea := hostRules(ca.ProfileGitHub, "alice-gh"), hostRules(ca.ProfileGitLab, "alice.gl"), hostRules(ca.ProfileGitea, "alice-gitea")

	r1 := f.request("r1", "alice", "write", "demo/app", "refs/heads/feature/*", "1h0m0s", "login form", leads...)
	storyOf := func(creq ca.CertRequest, tamper func(*ssh.Certificate)) story {
		return story{
			{"request r1", KindRequest, "alice", versioned(r1, digest)},
			{"approve r1", KindApprove, "bob", f.decide(KindApprove, r1, "bob", "", "ok")},
			{"issue r1", KindIssue, "jitssh", later(func(now time.Time) IssueData { return f.issueShaped(r1, creq, caKey, tamper, now, "bob") })},
		}
	}
	grant, err := principals.Parse(r1.Grant)
	require.NoError(t, err)
	githubCert := ca.CertRequest{Profile: ca.ProfileGitHub, Account: "alice-gh"}
	grantCert := ca.CertRequest{Grants: []principals.Grant{grant}}
	issueSeq := storyOf(grantCert, nil).seq("issue r1")
	scope := []found{{int(issueSeq), issueSeq, ErrScope}}
	tests := []struct {
		name    string
		story   story
		version PolicyVersion
		want    []found
	}{
		{"github certificate for the listed account", storyOf(githubCert, nil), github, nil},
		{"gitlab certificate for the listed account", storyOf(ca.CertRequest{Profile: ca.ProfileGitLab, Account: "alice.gl"}, nil), gitlab, nil},
		{"gitea certificate for the listed account", storyOf(ca.CertRequest{Profile: ca.ProfileGitea, Account: "alice-gitea"}, nil), gitea, nil},
		{"grant certificate under a grant rule", storyOf(grantCert, nil), grantRules, nil},

		{"host certificate for another account", storyOf(ca.CertRequest{Profile: ca.ProfileGitea, Account: "mallory"}, nil), gitea, scope},
		{"github login extension naming another account", storyOf(githubCert, func(c *ssh.Certificate) {
			c.Extensions = map[string]string{"login@github.com": "mallory"}
		}), github, scope},
		{"github certificate without its login extension", storyOf(ca.CertRequest{Profile: ca.ProfileGitea, Account: "alice-gh"}, nil), github, scope},
		{"github certificate with a login for another host", storyOf(ca.CertRequest{Profile: ca.ProfileGitHub, Account: "alice-gh", Host: "ghe.example.com"}, nil), github, scope},
		{"github certificate that also permits a pty", storyOf(githubCert, func(c *ssh.Certificate) {
			c.Extensions["permit-pty"] = ""
		}), github, scope},
		{"gitlab key ID other than the account", storyOf(ca.CertRequest{Profile: ca.ProfileGitLab, Account: "alice.gl"}, func(c *ssh.Certificate) {
			c.KeyId = "alice/r1"
		}), gitlab, scope},
		{"host certificate where the version lists no account", storyOf(githubCert, nil), hostRules(ca.ProfileGitHub, ""), scope},
		{"grant certificate where the rule issues host ones", storyOf(grantCert, nil), github, scope},
		{"host certificate under a grant rule", storyOf(githubCert, nil), grantRules, scope},
		{"grant certificate with an extension", storyOf(grantCert, func(c *ssh.Certificate) {
			c.Extensions = map[string]string{"permit-agent-forwarding": ""}
		}), grantRules, scope},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := CheckOptions{CAKeys: []ssh.PublicKey{f.ca.PublicKey()}, Policies: []PolicyVersion{tt.version}, People: union(tt.version)}
			got, _ := checkAll(t, tt.story.write(t), opts)
			assert.Equal(t, tt.want, got)
		})
	}
}
