package approvals

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"

	"github.com/jitssh/jitssh/principals"
)

// andPolicy needs one lead and one security reviewer for a deploy; pat is
// both, and still counts once.
const andPolicy = `people:
  - {name: dana, groups: [dev], keys: ["KEY(dana)"]}
  - {name: lee, groups: [dev, leads], keys: ["KEY(lee)"]}
  - {name: sam, groups: [security], keys: ["KEY(sam)"]}
  - {name: pat, groups: [leads, security], keys: ["KEY(pat)"]}
rules:
  - name: deploy
    groups: [dev]
    repos: ["infra/*"]
    refs: [refs/heads/main, refs/tags/*]
    access: [write]
    approvals:
      - {group: leads, count: 1}
      - {group: security, count: 1}
  - name: infra-read
    groups: [dev, security]
    repos: ["infra/*", docs]
    refs: ["*"]
    access: [read]
    auto_approve: true
`

func TestMatch(t *testing.T) {
	dev := devPolicy(t)
	and := policyFrom(t, andPolicy)
	tests := []struct {
		p      *Policy
		person string
		repo   string
		ref    string
		access principals.Access
		rule   string // empty: no rule
		msg    string // part of the refusal
	}{
		{dev, "alice", "demo/app", "refs/heads/main", principals.Read, "app-read", ""},
		{dev, "alice", "demo/app", "*", principals.Read, "app-read", ""},
		{dev, "alice", "demo/app", "refs/tags/v1.0", principals.Read, "app-read", ""},
		{dev, "alice", "demo/app", "refs/heads/feature/login", principals.Write, "feature-write", ""},
		{dev, "alice", "demo/app", "refs/heads/feature/team/login", principals.Write, "feature-write", ""},
		{dev, "alice", "demo/app", "refs/heads/feature/*", principals.Write, "feature-write", ""},
		{dev, "alice", "demo/app", "refs/heads/feature/team/*", principals.Write, "feature-write", ""},
		{dev, "alice", "demo/app", "refs/heads/main", principals.Write, "main-write", ""},
		{dev, "alice", "demo/app", "refs/heads/main", principals.Force, "main-write", ""},
		{dev, "bob", "demo/app", "refs/heads/main", principals.Write, "main-write", ""},
		{dev, "alice", "demo/app", "refs/heads/feature", principals.Write, "",
			"no rule lets alice (group dev) request write on demo/app at refs/heads/feature; on demo/app you may request " +
				"read on * (rule app-read); write on refs/heads/feature/* (rule feature-write); write/force on refs/heads/main (rule main-write)"},
		{dev, "alice", "demo/app", "refs/heads/feature/x", principals.Force, "", "request force on demo/app"},
		{dev, "alice", "demo/app", "*", principals.Write, "", "request write on demo/app at *"},
		{dev, "alice", "demo/app", "refs/heads/*", principals.Write, "", "at refs/heads/*"},
		{dev, "alice", "demo/app", "refs/heads/mainline", principals.Write, "", "at refs/heads/mainline"},
		{dev, "alice", "demo/other", "refs/heads/main", principals.Read, "", "you may request nothing on demo/other"},
		{dev, "auditor", "demo/app", "refs/heads/main", principals.Read, "",
			"no rule lets auditor (group auditors) request read on demo/app at refs/heads/main; you may request nothing"},
		{dev, "mallory", "demo/app", "refs/heads/main", principals.Read, "", `"mallory" is not a person in the policy`},

		{and, "dana", "infra/net", "refs/heads/main", principals.Write, "deploy", ""},
		{and, "dana", "infra/net", "refs/tags/v2", principals.Write, "deploy", ""},
		{and, "dana", "infra/net", "refs/heads/dev", principals.Read, "infra-read", ""},
		{and, "dana", "infra/net/sub", "refs/heads/main", principals.Read, "", "nothing on infra/net/sub"},
		{and, "dana", "docs", "refs/heads/main", principals.Read, "infra-read", ""},
		{and, "sam", "infra/net", "refs/heads/main", principals.Read, "infra-read", ""},
		{and, "sam", "infra/net", "refs/heads/main", principals.Write, "", "on infra/net you may request read on * (rule infra-read)"},
		{and, "pat", "infra/net", "refs/heads/main", principals.Read, "infra-read", ""},
		{and, "pat", "docs", "refs/heads/main", principals.Read, "infra-read", ""},
	}
	for _, tt := range tests {
		r, err := tt.p.Match(tt.person, tt.repo, tt.ref, tt.access)
		if tt.rule == "" {
			if assert.ErrorIs(t, err, ErrNoRule, "Match(%s, %s, %s, %s)", tt.person, tt.repo, tt.ref, tt.access) {
				assert.Contains(t, err.Error(), tt.msg)
			}
			assert.Nil(t, r)
			continue
		}
		if assert.NoError(t, err, "Match(%s, %s, %s, %s)", tt.person, tt.repo, tt.ref, tt.access) {
			assert.Equal(t, tt.rule, r.Name, "Match(%s, %s, %s, %s)", tt.person, tt.repo, tt.ref, tt.access)
		}
	}
}

func TestRefWithin(t *testing.T) {
	tests := []struct {
		ref, pattern string
		want         bool
	}{
		{"refs/heads/main", "*", true},
		{"*", "*", true},
		{"refs/*", "*", true},
		{"refs/heads/main", "refs/heads/main", true},
		{"refs/heads/main", "refs/heads/mainline", false},
		{"refs/heads/mainline", "refs/heads/main", false},
		{"refs/heads/feature/x", "refs/heads/feature/*", true},
		{"refs/heads/feature/x/y", "refs/heads/feature/*", true},
		{"refs/heads/feature/*", "refs/heads/feature/*", true},
		{"refs/heads/feature/x/*", "refs/heads/feature/*", true},
		{"refs/heads/feature", "refs/heads/feature/*", false},
		{"refs/heads/featurex", "refs/heads/feature/*", false},
		{"refs/heads/*", "refs/heads/feature/*", false},
		{"*", "refs/*", false},
		{"refs/heads/main", "refs/*", true},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, refWithin(tt.ref, tt.pattern), "refWithin(%q, %q)", tt.ref, tt.pattern)
	}
}

func TestIdentify(t *testing.T) {
	p := devPolicy(t)
	person, _ := p.Person("bob")
	key, _, _, _, err := ssh.ParseAuthorizedKey([]byte(person.Keys[0]))
	require.NoError(t, err)

	name, groups, ok := p.Identify(key)
	assert.True(t, ok)
	assert.Equal(t, "bob", name)
	assert.Equal(t, []string{"dev", "approvers"}, groups)

	// The same key blob from another parse is the same person.
	again, err := ssh.ParsePublicKey(key.Marshal())
	require.NoError(t, err)
	name, _, ok = p.Identify(again)
	assert.True(t, ok)
	assert.Equal(t, "bob", name)

	_, _, ok = p.Identify(freshKey(t))
	assert.False(t, ok, "an unknown key is nobody")
	_, _, ok = p.Identify(nil)
	assert.False(t, ok)
	cert := &ssh.Certificate{Key: key, CertType: ssh.UserCert, ValidPrincipals: []string{"bob"}}
	_, _, ok = p.Identify(cert)
	assert.False(t, ok, "a certificate, even for bob's key, identifies nobody")
}

func TestAllowed(t *testing.T) {
	p := devPolicy(t)
	names := func(rules []Rule) []string {
		var out []string
		for _, r := range rules {
			out = append(out, r.Name)
		}
		return out
	}
	assert.Equal(t, []string{"app-read", "feature-write", "main-write"}, names(p.Allowed("alice")))
	assert.Empty(t, p.Allowed("auditor"))
	assert.Empty(t, p.Allowed("mallory"))
	and := policyFrom(t, andPolicy)
	assert.Equal(t, []string{"infra-read"}, names(and.Allowed("sam")))
	assert.Equal(t, []string{"deploy", "infra-read"}, names(and.Allowed("lee")))
}

// TestAndAcrossGroups runs "one lead and one security reviewer" through the
// Service: pat, in both groups, is only one of the two.
func TestAndAcrossGroups(t *testing.T) {
	env := newTestService(t, policyFrom(t, andPolicy))
	in := SubmitInput{Repo: "infra/net", Ref: "refs/heads/main", Access: "write", PublicKey: freshKey(t)}
	r := env.submit(t, "dana", in)
	assert.Equal(t, []Step{{Group: "leads", Count: 1}, {Group: "security", Count: 1}}, r.Steps)

	r = env.approve(t, "pat", r.ID)
	assert.Equal(t, StatePending, r.State, "pat counts once, as lead or as security, not both")
	assert.Equal(t, []string{"leads", "security"}, r.Approvals[0].Groups)
	_, err := env.Approve(ctx, "pat", r.ID, DecisionInput{})
	require.ErrorIs(t, err, ErrAlreadyApproved)

	r = env.approve(t, "lee", r.ID)
	assert.Equal(t, StateApproved, r.State, "lee as lead, pat as security")
	assert.NotEmpty(t, r.Certificate)

	// lee may not approve a request they made, and without lee, pat
	// alone cannot be both.
	r = env.submit(t, "lee", in)
	_, err = env.Approve(ctx, "lee", r.ID, DecisionInput{})
	require.ErrorIs(t, err, ErrSelfApproval)
	r = env.approve(t, "pat", r.ID)
	assert.Equal(t, StatePending, r.State)
	r = env.approve(t, "sam", r.ID)
	assert.Equal(t, StateApproved, r.State, "pat as lead, sam as security")
}
