package approvals

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"
)

func TestLoadDevPolicy(t *testing.T) {
	c, err := LoadConfig("testdata/dev-policy.yaml")
	require.NoError(t, err)
	assert.Equal(t, "127.0.0.1:2200", c.Listen)
	assert.Equal(t, filepath.Join("testdata", "data"), c.DataDir, "relative to the file")
	assert.Equal(t, filepath.Join("testdata", "ca"), c.CADir)
	assert.Equal(t, filepath.Join("testdata", "host_key"), c.HostKey)
	assert.Equal(t, filepath.Join("testdata", "audit.log"), c.AuditLog)
	assert.Equal(t, Duration(time.Hour), c.RequestTimeout)
	assert.Equal(t, 5, c.MaxPendingPerUser)

	p, err := NewPolicy(c)
	require.NoError(t, err)
	var names []string
	for _, r := range p.Rules() {
		names = append(names, r.Name)
		assert.Equal(t, Duration(5*time.Second), r.MinTTL, r.Name)
		assert.Equal(t, Duration(time.Hour), r.DefaultTTL, r.Name)
		assert.Equal(t, Duration(8*time.Hour), r.MaxTTL, r.Name)
	}
	assert.Equal(t, []string{"app-read", "feature-write", "main-write"}, names)
	assert.Equal(t, []string{"bob", "carol"}, p.Members("approvers"))
}

func TestLoadConfigAbsolutePaths(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "jitssh.yaml")
	yml := strings.Replace(serverYAML, "data_dir: data", "data_dir: /var/lib/jitssh", 1) + withKeys(t, minimalPolicy)
	require.NoError(t, os.WriteFile(path, []byte(yml), 0o600))
	c, err := LoadConfig(path)
	require.NoError(t, err)
	assert.Equal(t, "/var/lib/jitssh", c.DataDir)
	assert.Equal(t, filepath.Join(dir, "ca"), c.CADir)
}

func TestLoadConfigMissingFile(t *testing.T) {
	_, err := LoadConfig(filepath.Join(t.TempDir(), "nope.yaml"))
	require.ErrorIs(t, err, os.ErrNotExist)
}

// minimalPolicy is the smallest valid people and rules.
const minimalPolicy = `people:
  - {name: alice, groups: [dev], keys: ["KEY(alice)"]}
  - {name: bob, groups: [approvers], keys: ["KEY(bob)"]}
rules:
  - {name: r, groups: [dev], repos: [demo/app], refs: ["*"], access: [read], approvals: [{group: approvers, count: 1}]}
`

func TestLoadConfigInvalid(t *testing.T) {
	userCert := &ssh.Certificate{Key: freshKey(t), CertType: ssh.UserCert, SignatureKey: freshKey(t), Signature: &ssh.Signature{Format: "ssh-ed25519"}}
	certLine := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(userCert)))
	rule := func(extra string) string {
		return "people:\n" +
			"  - {name: alice, groups: [dev], keys: [\"KEY(alice)\"]}\n" +
			"  - {name: bob, groups: [approvers, leads], keys: [\"KEY(bob)\"]}\n" +
			"rules:\n" +
			"  - name: r\n" +
			"    groups: [dev]\n" +
			"    repos: [demo/app]\n" +
			"    refs: [\"*\"]\n" +
			"    access: [read]\n" + extra
	}
	step := "    approvals: [{group: approvers, count: 1}]\n"

	tests := []struct {
		name    string
		yml     string // people and rules; the server settings come first
		full    bool   // yml is the whole file
		msg     string
		at      string // text on the line the problem is reported at
		problem int    // how many problems
	}{
		{name: "empty file", yml: "", full: true, msg: "the file is empty"},
		{name: "not YAML", yml: "listen: [", full: true, msg: "yaml:"},
		{name: "unknown field", yml: "colour: blue\n" + minimalPolicy, msg: "field colour not found"},
		{name: "unknown rule field", yml: rule(step + "    approvers: 2\n"), msg: "field approvers not found"},
		{name: "two documents", yml: minimalPolicy + "---\nlisten: x\n", msg: "more than one YAML document"},
		{name: "bare number ttl", yml: rule(step + "    max_ttl: 3600\n"), msg: "want a number with a unit"},
		{name: "missing listen", yml: "host_key: k\ndata_dir: d\nca_dir: c\naudit_log: a\n" + minimalPolicy, full: true,
			msg: "listen: missing"},
		{name: "bad listen", yml: "listen: localhost\nhost_key: k\ndata_dir: d\nca_dir: c\naudit_log: a\n" + minimalPolicy, full: true,
			msg: `listen: "localhost": want host:port`, at: "listen: localhost"},
		{name: "missing data_dir", yml: "listen: :1\nhost_key: k\nca_dir: c\naudit_log: a\n" + minimalPolicy, full: true,
			msg: "data_dir: missing"},
		{name: "webhook url", yml: "webhooks:\n  - {url: 'ftp://x', secret: s}\n" + minimalPolicy,
			msg: `webhooks[0]: url "ftp://x": want an http:// or https:// URL`, at: "ftp://x"},
		{name: "webhook secret", yml: "webhooks:\n  - {url: 'https://chat.example/hook'}\n" + minimalPolicy,
			msg: "webhooks[0]: secret: missing"},
		{name: "negative request timeout", yml: "request_timeout: -1m\n" + minimalPolicy, msg: "request_timeout: -1m0s is not positive",
			at: "request_timeout"},
		{name: "negative pending limit", yml: "max_pending_per_user: -1\n" + minimalPolicy, msg: "max_pending_per_user: -1 is negative"},
		{name: "no people", yml: "rules: []\n", msg: "people: none listed", problem: 2},
		{name: "no rules", yml: "people:\n  - {name: alice, groups: [dev], keys: [\"KEY(alice)\"]}\n", msg: "rules: none listed"},
		{name: "person without name", yml: strings.Replace(minimalPolicy, "name: alice, ", "", 1), msg: "people[0]: name: missing",
			problem: 1, at: "KEY(alice)"},
		{name: "bad person name", yml: strings.Replace(minimalPolicy, "name: alice", "name: al ice", 1),
			msg: `person "al ice": name: use letters`, problem: 1, at: "al ice"},
		{name: "reserved name", yml: strings.Replace(minimalPolicy, "name: alice", "name: jitssh", 1),
			msg: `person "jitssh": name: "jitssh" is reserved`},
		{name: "person twice", yml: strings.Replace(minimalPolicy, "name: bob, groups: [approvers]", "name: alice, groups: [approvers]", 1),
			msg: `person "alice": listed twice`, at: "KEY(bob)"},
		{name: "group twice", yml: strings.Replace(minimalPolicy, "groups: [dev]", "groups: [dev, dev]", 1),
			msg: `person "alice": group "dev" listed twice`},
		{name: "bad group name", yml: strings.Replace(minimalPolicy, "groups: [dev]", "groups: [dev, 'a b']", 1),
			msg: `person "alice": group "a b": use letters`},
		{name: "no keys", yml: strings.Replace(minimalPolicy, `keys: ["KEY(alice)"]`, "keys: []", 1),
			msg: `person "alice": keys: none listed`},
		{name: "bad key", yml: strings.Replace(minimalPolicy, "KEY(alice)", "ssh-ed25519 AAAAnotakey", 1),
			msg: `person "alice": keys[0]: not an authorized_keys line`, at: "AAAAnotakey"},
		{name: "key with options", yml: strings.Replace(minimalPolicy, `"KEY(alice)"`, `'restrict KEY(alice)'`, 1),
			msg: "options (restrict) are not supported"},
		{name: "certificate as key", yml: strings.Replace(minimalPolicy, "KEY(alice)", certLine, 1),
			msg: "a certificate; certificates never identify anyone"},
		{name: "key of two people", yml: strings.Replace(minimalPolicy, "KEY(bob)", "KEY(alice)", 1),
			msg: `person "bob": keys[0]: SHA256:`, at: `name: bob`},
		{name: "key twice", yml: strings.Replace(minimalPolicy, `"KEY(alice)"]`, `"KEY(alice)", "KEY(alice)"]`, 1),
			msg: "listed twice"},
		{name: "rule without name", yml: strings.Replace(minimalPolicy, "name: r, ", "", 1), msg: "rules[0]: name: missing"},
		{name: "rule twice", yml: minimalPolicy + "  - {name: r, groups: [dev], repos: [x], refs: ['*'], access: [read], auto_approve: true}\n",
			msg: `rule "r": name used by an earlier rule`, at: "auto_approve: true"},
		{name: "rule group without members", yml: strings.Replace(rule(step), "groups: [dev]\n    repos", "groups: [ops]\n    repos", 1),
			msg: `rule "r": groups: "ops" has no members`, at: "groups: [ops]"},
		{name: "rule without groups", yml: strings.Replace(rule(step), "    groups: [dev]\n", "", 1),
			msg: `rule "r": groups: none listed`},
		{name: "bad repo glob", yml: strings.Replace(rule(step), "repos: [demo/app]", "repos: ['demo/[']", 1),
			msg: `rule "r": repos: "demo/[" is not a valid glob`, at: "demo/["},
		{name: "bad repo name", yml: strings.Replace(rule(step), "repos: [demo/app]", "repos: [demo/app.git]", 1),
			msg: `rule "r": repos: invalid repo "demo/app.git"`},
		{name: "no repos", yml: strings.Replace(rule(step), "repos: [demo/app]", "repos: []", 1), msg: `rule "r": repos: none listed`},
		{name: "bad ref pattern", yml: strings.Replace(rule(step), `refs: ["*"]`, `refs: ["refs/heads/*/x"]`, 1),
			msg: `rule "r": refs: invalid ref "refs/heads/*/x"`, at: "refs/heads/*/x"},
		{name: "no refs", yml: strings.Replace(rule(step), `refs: ["*"]`, "refs: []", 1), msg: `refs: none listed (use "*" for every ref)`},
		{name: "bad access", yml: strings.Replace(rule(step), "access: [read]", "access: [read, admin]", 1),
			msg: `rule "r": access: invalid access "admin"`},
		{name: "access twice", yml: strings.Replace(rule(step), "access: [read]", "access: [read, read]", 1),
			msg: `access: "read" listed twice`},
		{name: "no access", yml: strings.Replace(rule(step), "access: [read]", "access: []", 1), msg: "access: none listed"},
		{name: "nobody approves", yml: rule(""), msg: `rule "r": neither approvals nor auto_approve`, at: "- name: r"},
		{name: "approvals and auto", yml: rule(step + "    auto_approve: true\n"), msg: "both approvals and auto_approve",
			at: "auto_approve"},
		{name: "step group without members", yml: rule("    approvals: [{group: ops, count: 1}]\n"),
			msg: `approvals[0]: group "ops" has no members`},
		{name: "zero count", yml: rule("    approvals: [{group: approvers}]\n"), msg: "approvals[0]: count 0; want at least 1"},
		{name: "count above members", yml: rule("    approvals: [{group: approvers, count: 2}]\n"),
			msg: `approvals[0]: count 2, but group "approvers" has 1 member`, at: "count: 2"},
		{name: "step group twice", yml: rule("    approvals: [{group: approvers, count: 1}, {group: approvers, count: 1}]\n"),
			msg: `approvals[1]: group "approvers" has an earlier step`},
		{name: "steps one person cannot meet alone",
			yml: rule("    approvals: [{group: approvers, count: 1}, {group: leads, count: 1}]\n"),
			msg: "approvals: 1 of approvers and 1 of leads cannot all be met by distinct people"},
		{name: "ttl below a second", yml: rule(step + "    min_ttl: 500ms\n"), msg: "min_ttl: 500ms; want at least 1s", at: "min_ttl"},
		{name: "ttl above the CA's cap", yml: rule(step + "    max_ttl: 200h\n"), msg: "max_ttl: 200h0m0s; the CA signs for at most 168h0m0s"},
		{name: "negative ttl", yml: rule(step + "    default_ttl: -1h\n"), msg: "default_ttl: -1h0m0s; want at least 1s"},
		{name: "min above max", yml: rule(step + "    min_ttl: 2h\n    max_ttl: 1h\n"), msg: "min_ttl 2h0m0s is above max_ttl 1h0m0s"},
		{name: "default above max", yml: rule(step + "    default_ttl: 2h\n    max_ttl: 1h\n"),
			msg: "default_ttl 2h0m0s is outside min_ttl 1m0s to max_ttl 1h0m0s", at: "default_ttl"},
		{name: "bad source address", yml: rule(step + "    source_address: 10.0.0.1/8\n"),
			msg: `source_address: "10.0.0.1/8" has host bits set (want 10.0.0.0/8)`},
		{name: "source address not an address", yml: rule(step + "    source_address: 'example.com'\n"),
			msg: `"example.com" is not an address or CIDR prefix`},
		{name: "every problem at once", yml: rule("    max_ttl: 200h\n    source_address: x\n"), msg: "3 problems:\n\ttest.yaml:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			yml := withKeys(t, tt.yml)
			if !tt.full {
				yml = serverYAML + yml
			}
			_, err := parseConfig("test.yaml", []byte(yml))
			require.ErrorIs(t, err, ErrInvalidConfig)
			assert.Contains(t, err.Error(), tt.msg)
			var ce *ConfigError
			if !errors.As(err, &ce) {
				return // a YAML decoding error, reported by the decoder
			}
			if tt.problem > 0 {
				assert.Len(t, ce.Problems, tt.problem, err.Error())
			}
			if tt.at != "" {
				want := 0
				for i, line := range strings.Split(yml, "\n") {
					if strings.Contains(line, withKeys(t, tt.at)) {
						want = i + 1
						break
					}
				}
				require.NotZero(t, want, "%q is not in the config", tt.at)
				assert.Equal(t, want, ce.Problems[0].Line, err.Error())
			}
		})
	}
}

func TestNewPolicyChecksConfig(t *testing.T) {
	c, err := parsePolicyYAML(withKeys(t, minimalPolicy))
	require.NoError(t, err)
	c.Rules[0].Approvals[0].Count = 3
	_, err = NewPolicy(c)
	require.ErrorIs(t, err, ErrInvalidConfig)
	assert.Equal(t, `invalid config: rule "r": approvals[0]: count 3, but group "approvers" has 1 member`, err.Error())

	_, err = NewPolicy(nil)
	require.ErrorIs(t, err, ErrInvalidConfig)
}

func TestNewPolicyLeavesConfigAlone(t *testing.T) {
	c := &Config{
		People: []Person{{Name: "alice", Groups: []string{"dev"}, Keys: []string{keyLine(t, "alice")}}},
		Rules:  []Rule{{Name: "r", Groups: []string{"dev"}, Repos: []string{"x"}, Refs: []string{"*"}, Access: []string{"read"}, AutoApprove: true}},
	}
	p, err := NewPolicy(c)
	require.NoError(t, err)
	assert.Zero(t, c.Rules[0].MaxTTL, "defaults go into the policy's copy")
	assert.Equal(t, Duration(DefaultMaxTTL), p.Rules()[0].MaxTTL)
	assert.Equal(t, DefaultRequestTimeout, p.RequestTimeout())
	assert.Equal(t, DefaultMaxPendingPerUser, p.MaxPendingPerUser())

	p.Rules()[0].Groups[0] = "changed"
	assert.Equal(t, "dev", p.Rules()[0].Groups[0], "callers get copies")
}

func TestRuleDefaults(t *testing.T) {
	const (
		s = Duration(time.Second)
		m = Duration(time.Minute)
		h = Duration(time.Hour)
	)
	tests := []struct {
		min, def, max    Duration
		wMin, wDef, wMax Duration
	}{
		{0, 0, 0, m, h, 8 * h},
		{5 * s, 0, 0, 5 * s, h, 8 * h},
		{0, 0, 30 * m, m, 30 * m, 30 * m},
		{0, 0, 30 * s, 30 * s, 30 * s, 30 * s},
		{0, 12 * h, 0, m, 12 * h, 12 * h},
		{0, 30 * s, 0, 30 * s, 30 * s, 8 * h},
		{2 * h, 0, 0, 2 * h, 2 * h, 8 * h},
		{10 * h, 0, 0, 10 * h, 10 * h, 10 * h},
		{5 * s, h, 8 * h, 5 * s, h, 8 * h},
	}
	for _, tt := range tests {
		r := Rule{MinTTL: tt.min, DefaultTTL: tt.def, MaxTTL: tt.max}
		ruleDefaults(&r)
		assert.Equal(t, []Duration{tt.wMin, tt.wDef, tt.wMax}, []Duration{r.MinTTL, r.DefaultTTL, r.MaxTTL},
			"ruleDefaults(min %v, default %v, max %v)", tt.min, tt.def, tt.max)
	}
}

func TestDurationText(t *testing.T) {
	var d Duration
	require.NoError(t, d.UnmarshalText([]byte("1h30m")))
	assert.Equal(t, Duration(90*time.Minute), d)
	b, err := d.MarshalText()
	require.NoError(t, err)
	assert.Equal(t, "1h30m0s", string(b))
	require.Error(t, d.UnmarshalText([]byte("90")))
}
