package approvals

import (
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
)

// digestBase is the policy the digest tests vary: every field that decides
// something is set.
const digestBase = `listen: 127.0.0.1:2200
host_key: host_key
data_dir: data
ca_dir: ca
audit_log: audit.log
request_timeout: 30m
max_pending_per_user: 3
people:
  - name: alice
    groups: [dev]
    keys: ["KEY(alice) alice@laptop"]
  - name: bob
    groups: [dev, leads]
    keys: ["KEY(bob)", "KEY(bob2)"]
  - name: sam
    groups: [security]
    keys: ["KEY(sam)"]
rules:
  - name: read
    groups: [dev, security]
    repos: ["demo/*", docs]
    refs: ["*"]
    access: [read]
    auto_approve: true
  - name: deploy
    groups: [dev]
    repos: ["infra/*"]
    refs: [refs/heads/main, refs/tags/*]
    access: [write, force]
    approvals: [{group: leads, count: 1}, {group: security, count: 1}]
    default_ttl: 30m
    min_ttl: 5m
    max_ttl: 2h
    require_reason: true
    source_address: 10.0.0.0/8
`

// edit applies replacements to the base policy, each old string once.
func edit(t testing.TB, pairs ...string) string {
	t.Helper()
	y := digestBase
	for i := 0; i < len(pairs); i += 2 {
		require.Contains(t, y, pairs[i])
		y = strings.Replace(y, pairs[i], pairs[i+1], 1)
	}
	return y
}

func digestOf(t *testing.T, yml string) string {
	t.Helper()
	p, err := ParsePolicy("test.yaml", []byte(withKeys(t, yml)))
	require.NoError(t, err)
	return p.Digest()
}

func TestPolicyDigest(t *testing.T) {
	base := digestOf(t, digestBase)
	assert.Regexp(t, `^sha256:[0-9a-f]{64}$`, base)
	assert.Equal(t, base, digestOf(t, digestBase), "the same policy, the same digest")

	same := []struct{ name, yml string }{
		{"comments and blank lines", "# the policy\n\n" + strings.ReplaceAll(digestBase, "rules:\n", "# rules follow\nrules:\n\n")},
		{"block style for flow style", edit(t, "approvals: [{group: leads, count: 1}, {group: security, count: 1}]",
			"approvals:\n      - group: leads\n        count: 1\n      - {count: 1, group: security}")},
		{"keys of a mapping in another order", edit(t, "  - name: sam\n    groups: [security]\n    keys: [\"KEY(sam)\"]",
			"  - keys: [\"KEY(sam)\"]\n    groups: [security]\n    name: sam")},
		{"quoting", edit(t, `repos: ["demo/*", docs]`, `repos: ['demo/*', "docs"]`)},
		{"people in another order", edit(t, "  - name: alice\n    groups: [dev]\n    keys: [\"KEY(alice) alice@laptop\"]\n", "",
			"    keys: [\"KEY(sam)\"]\n", "    keys: [\"KEY(sam)\"]\n  - name: alice\n    groups: [dev]\n    keys: [\"KEY(alice) alice@laptop\"]\n")},
		{"a person's groups in another order", edit(t, "groups: [dev, leads]", "groups: [leads, dev]")},
		{"a person's keys in another order", edit(t, `keys: ["KEY(bob)", "KEY(bob2)"]`, `keys: ["KEY(bob2)", "KEY(bob)"]`)},
		{"another key comment", edit(t, "KEY(alice) alice@laptop", "KEY(alice) alice@desktop")},
		{"a rule's lists in another order", edit(t, "groups: [dev, security]", "groups: [security, dev]",
			`repos: ["demo/*", docs]`, `repos: [docs, "demo/*"]`, "refs: [refs/heads/main, refs/tags/*]", "refs: [refs/tags/*, refs/heads/main]",
			"access: [write, force]", "access: [force, write]")},
		{"approval steps in another order", edit(t, "[{group: leads, count: 1}, {group: security, count: 1}]", "[{group: security, count: 1}, {group: leads, count: 1}]")},
		{"a repo listed twice", edit(t, `repos: ["demo/*", docs]`, `repos: ["demo/*", docs, "demo/*"]`)},
		{"durations spelled otherwise", edit(t, "request_timeout: 30m", "request_timeout: 1800s", "max_ttl: 2h", "max_ttl: 120m")},
		{"a default written out", edit(t, "    auto_approve: true\n", "    auto_approve: true\n    max_ttl: 8h\n    min_ttl: 1m\n    default_ttl: 1h\n")},
		{"the daemon's own settings", edit(t, "listen: 127.0.0.1:2200", "listen: 0.0.0.0:22\nhttp_listen: 127.0.0.1:8080\nwebhooks: [{url: https://chat.example/hook, secret: s}]",
			"host_key: host_key", "host_key: /etc/jitssh/host_key", "data_dir: data", "data_dir: /var/lib/jitssh", "audit_log: audit.log", "audit_log: /var/log/jitssh.log")},
		{"without the daemon's settings", digestBase[strings.Index(digestBase, "request_timeout"):]},
	}
	for _, tt := range same {
		assert.Equal(t, base, digestOf(t, tt.yml), "%s must keep the digest", tt.name)
	}

	changed := []struct{ name, yml string }{
		{"a person added", digestBase[:strings.Index(digestBase, "rules:")] + "  - {name: zoe, groups: [dev], keys: [\"KEY(zoe)\"]}\n" + digestBase[strings.Index(digestBase, "rules:"):]},
		{"a person removed", edit(t, "  - name: alice\n    groups: [dev]\n    keys: [\"KEY(alice) alice@laptop\"]\n", "")},
		{"a person renamed", edit(t, "name: alice", "name: alicia")},
		{"a person joins a group", edit(t, "groups: [security]", "groups: [security, leads]")},
		{"a person leaves a group", edit(t, "groups: [dev, leads]", "groups: [leads]")},
		{"a key added", edit(t, `keys: ["KEY(sam)"]`, `keys: ["KEY(sam)", "KEY(sam2)"]`)},
		{"a key replaced", edit(t, `keys: ["KEY(sam)"]`, `keys: ["KEY(sam2)"]`)},
		{"rules in another order", edit(t, "  - name: read\n    groups: [dev, security]\n    repos: [\"demo/*\", docs]\n    refs: [\"*\"]\n    access: [read]\n    auto_approve: true\n", "") +
			"  - name: read\n    groups: [dev, security]\n    repos: [\"demo/*\", docs]\n    refs: [\"*\"]\n    access: [read]\n    auto_approve: true\n"},
		{"a rule renamed", edit(t, "name: deploy", "name: ship")},
		{"a rule's groups", edit(t, "    groups: [dev]\n    repos: [\"infra/*\"]", "    groups: [dev, security]\n    repos: [\"infra/*\"]")},
		{"a rule's repos", edit(t, `repos: ["infra/*"]`, `repos: ["infra/*", "ops/*"]`)},
		{"a rule's refs", edit(t, "refs: [refs/heads/main, refs/tags/*]", "refs: [refs/heads/main]")},
		{"a rule's access", edit(t, "access: [write, force]", "access: [write]")},
		{"a step's count", edit(t, "{group: leads, count: 1}, {group: security, count: 1}", "{group: dev, count: 2}")},
		{"a step's group", edit(t, "{group: leads, count: 1}, {group: security, count: 1}", "{group: dev, count: 1}")},
		{"a step removed", edit(t, "[{group: leads, count: 1}, {group: security, count: 1}]", "[{group: leads, count: 1}]")},
		{"approvals for auto_approve", edit(t, "    auto_approve: true\n", "    approvals: [{group: leads, count: 1}]\n")},
		{"default_ttl", edit(t, "default_ttl: 30m", "default_ttl: 45m")},
		{"min_ttl", edit(t, "min_ttl: 5m", "min_ttl: 10m")},
		{"max_ttl", edit(t, "max_ttl: 2h", "max_ttl: 3h")},
		{"require_reason", edit(t, "    require_reason: true\n", "")},
		{"source_address", edit(t, "source_address: 10.0.0.0/8", "source_address: 10.0.0.0/16")},
		{"request_timeout", edit(t, "request_timeout: 30m", "request_timeout: 31m")},
		{"max_pending_per_user", edit(t, "max_pending_per_user: 3", "max_pending_per_user: 4")},
		{"a Git host account added", edit(t, `keys: ["KEY(sam)"]`, `keys: ["KEY(sam)"]`+"\n    accounts: {github: sam-gh}")},
		{"a Git host account on another host", edit(t, `keys: ["KEY(sam)"]`, `keys: ["KEY(sam)"]`+"\n    accounts: {gitea: sam-gh}")},
		{"a Git host account renamed", edit(t, `keys: ["KEY(sam)"]`, `keys: ["KEY(sam)"]`+"\n    accounts: {github: sam-other}")},
		{"a rule issued for a Git host", edit(t, "    source_address: 10.0.0.0/8\n", "    source_address: 10.0.0.0/8\n    profile: github\n")},
		{"a rule issued for another Git host", edit(t, "    source_address: 10.0.0.0/8\n", "    source_address: 10.0.0.0/8\n    profile: gitlab\n")},
		{"a rule issued for GitHub Enterprise Server", edit(t, "    source_address: 10.0.0.0/8\n", "    source_address: 10.0.0.0/8\n    profile: github\n    host: ghe.example.com\n")},
	}
	seen := map[string]string{base: "the base"}
	for _, tt := range changed {
		d := digestOf(t, tt.yml)
		if other, dup := seen[d]; dup {
			t.Errorf("%s gives the digest of %s", tt.name, other)
		}
		seen[d] = tt.name
	}
}

// TestPolicyDigestCoversEveryField fails when a field is added to the
// config without deciding whether it is part of a policy version: a field
// that decides requests but escapes the digest would let two different
// policies pass for one.
func TestPolicyDigestCoversEveryField(t *testing.T) {
	digested := map[string][]string{
		"Config": {"RequestTimeout", "MaxPendingPerUser", "People", "Rules", "OIDC"},
		"Person": {"Name", "Keys", "Groups", "Accounts"},
		"Rule": {"Name", "Groups", "Repos", "Refs", "Access", "Approvals", "AutoApprove", "DefaultTTL", "MinTTL", "MaxTTL",
			"RequireReason", "SourceAddress", "Workload", "Profile", "Host"},
		"Step": {"Group", "Count"},
	}
	daemonOnly := map[string][]string{
		// Who may read requests, and how fast one person may make them, are
		// the daemon's to enforce; neither changes what a request needs.
		// The cluster block differs from node to node by design. The host
		// names only go into the daemon's own host certificate; the pid
		// file is the daemon's process. How long ended requests stay in
		// memory decides nothing about any request.
		"Config": {"Listen", "HTTPListen", "MetricsListen", "HostKey", "HostNames", "DataDir", "CADir", "AuditLog", "PIDFile", "Webhooks",
			"AuditorGroups", "Limits", "Cluster", "Retention"},
	}
	for _, v := range []any{Config{}, Person{}, Rule{}, Step{}} {
		typ := reflect.TypeOf(v)
		for f := range typ.Fields() {
			name := typ.Name()
			assert.True(t, slices.Contains(digested[name], f.Name) || slices.Contains(daemonOnly[name], f.Name),
				"%s.%s: add it to the policy digest (policy_digest.go) if it decides anything, else to daemonOnly here", name, f.Name)
		}
	}
	// And the canonical form has a field for each digested rule field.
	form := reflect.TypeOf(digestRule{})
	assert.Equal(t, len(digested["Rule"]), form.NumField())
}

// TestPolicyDigestStable pins the digest of a fixed policy: a change to the
// canonical form would make every recorded digest unrecognisable, so it
// must be deliberate (bump digestVersion, go test -update).
func TestPolicyDigestStable(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "dev-policy.yaml"))
	require.NoError(t, err)
	p, err := ParsePolicy("dev-policy.yaml", data)
	require.NoError(t, err)
	golden := filepath.Join("testdata", "dev-policy.digest")
	if *update {
		require.NoError(t, os.WriteFile(golden, []byte(p.Digest()+"\n"), 0o644))
	}
	want, err := os.ReadFile(golden)
	require.NoError(t, err)
	assert.Equal(t, strings.TrimSpace(string(want)), p.Digest())

	cfg, err := LoadConfig(filepath.Join("testdata", "dev-policy.yaml"))
	require.NoError(t, err)
	daemon, err := NewPolicy(cfg)
	require.NoError(t, err)
	assert.Equal(t, daemon.Digest(), p.Digest(), "the auditor's copy and the daemon's config give one digest")
}

func TestParsePolicy(t *testing.T) {
	_, err := ParsePolicy("people.yaml", []byte(withKeys(t, "people: [{name: a, keys: [\"KEY(a)\"], groups: [x]}]\n")))
	require.ErrorIs(t, err, ErrNoRules)
	for _, tt := range []struct{ name, yml, want string }{
		{"unknown field", digestBase + "colour: blue\n", "field colour not found"},
		{"bad rule", edit(t, "access: [read]", "access: [reed]"), `rule "read": access`},
		{"two documents", digestBase + "---\npeople: []\n", "more than one YAML document"},
		{"empty", "", "the file is empty"},
		{"a key with options", edit(t, `keys: ["KEY(sam)"]`, `keys: ["from=\"10.0.0.1\" KEY(sam)"]`), "options"},
	} {
		_, err := ParsePolicy("p.yaml", []byte(withKeys(t, tt.yml)))
		require.ErrorIs(t, err, ErrInvalidConfig, tt.name)
		assert.Contains(t, err.Error(), tt.want, tt.name)
	}
	// Line numbers, as the daemon reports them.
	_, err = ParsePolicy("p.yaml", []byte(withKeys(t, edit(t, "access: [read]", "access: [reed]"))))
	assert.Regexp(t, regexp.MustCompile(`p\.yaml:\d+: rule "read"`), err.Error())
}

func TestParsePeople(t *testing.T) {
	people, err := ParsePeople("people.yaml", []byte(withKeys(t, "people:\n  - {name: a, keys: [\"KEY(a) a@host\"], groups: [x, y]}\n")))
	require.NoError(t, err)
	require.Len(t, people, 1)
	assert.Equal(t, []string{"x", "y"}, people[0].Groups)
	for _, tt := range []struct{ yml, want string }{
		{"people: [{name: a, keys: [\"KEY(a)\", \"KEY(a)\"]}]\n", "listed twice"},
		{"people: [{name: a, keys: [\"KEY(a)\\nKEY(b)\"]}]\n", "more than one key"},
		{"people: [{name: a, keys: [\"cert-authority KEY(a)\"]}]\n", "options"},
		{"people: [{name: a b, keys: [\"KEY(a)\"]}]\n", "name: use letters"},
		{"people: [{name: a, keys: [\"KEY(a)\"], colour: red}]\n", "field colour not found"},
	} {
		_, err := ParsePeople("people.yaml", []byte(withKeys(t, tt.yml)))
		require.Error(t, err, tt.yml)
		assert.Contains(t, err.Error(), tt.want, tt.yml)
	}
}

// FuzzPolicyDigest: a policy ParsePolicy accepts has one digest, which it
// keeps when its config is written out again, in another YAML layout.
func FuzzPolicyDigest(f *testing.F) {
	f.Add(withKeys(f, digestBase))
	f.Add(withKeys(f, edit(f, "access: [write, force]", "access: [force]")))
	data, err := os.ReadFile(filepath.Join("testdata", "dev-policy.yaml"))
	require.NoError(f, err)
	f.Add(string(data))
	f.Fuzz(func(t *testing.T, yml string) {
		p, err := ParsePolicy("fuzz.yaml", []byte(yml))
		if err != nil {
			return
		}
		d := p.Digest()
		if d != p.Digest() {
			t.Fatal("two digests for one policy")
		}
		again, err := yaml.Marshal(p.Config())
		require.NoError(t, err)
		q, err := ParsePolicy("again.yaml", again)
		require.NoError(t, err, "%s", again)
		if q.Digest() != d {
			t.Fatalf("the same policy written out again has another digest:\n%s\n---\n%s", yml, again)
		}
	})
}
