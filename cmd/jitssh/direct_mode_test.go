package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"

	"github.com/jitssh/jitssh/audit"
	"github.com/jitssh/jitssh/ca"
	"github.com/jitssh/jitssh/sshd/opensshtest"
)

// TestDirectModeAgainstGitHosts runs the daemon with rules issued in the
// github and gitlab profiles, and uses each certificate it issues straight
// on a Git host played by stock OpenSSH that trusts the daemon's CA and
// finds the account as that host does. The host, not jitssh, then decides
// refs: a push outside the requested ref pattern goes through. The
// auditor's verify, given the policy, passes on the daemon's log.
func TestDirectModeAgainstGitHosts(t *testing.T) {
	needTool(t, "ssh")
	dir := t.TempDir()
	_, err := ca.Init(filepath.Join(dir, "ca"), ca.Ed25519)
	require.NoError(t, err)
	caPub, err := os.ReadFile(filepath.Join(dir, "ca", ca.PublicKeyFile))
	require.NoError(t, err)
	keys := make(map[string]string)
	for _, name := range []string{"alice", "bob"} {
		require.NoError(t, ensureKey(filepath.Join(dir, name)))
		pub, err := os.ReadFile(filepath.Join(dir, name+".pub"))
		require.NoError(t, err)
		keys[name] = strings.TrimSpace(string(pub))
	}
	cfg := fmt.Sprintf(`listen: 127.0.0.1:0
http_listen: 127.0.0.1:0
host_key: host_key
data_dir: data
ca_dir: ca
audit_log: audit.log
people:
  - {name: alice, keys: [%q], groups: [dev], accounts: {github: alice-gh, gitlab: alice.gl}}
  - {name: bob, keys: [%q], groups: [dev, leads]}
rules:
  - {name: gh, groups: [dev], repos: [demo/app], refs: ["refs/heads/feature/*"], access: [write], auto_approve: true, max_ttl: 1h, profile: github}
  - {name: gl, groups: [dev], repos: [demo/other], refs: ["refs/heads/feature/*"], access: [write], approvals: [{group: leads, count: 1}], max_ttl: 1h, profile: gitlab}
`, keys["alice"], keys["bob"])
	config := filepath.Join(dir, "server.yaml")
	require.NoError(t, os.WriteFile(config, []byte(cfg), 0o600))
	d := startDaemonConfig(t, dir, config)
	alice, bob := d.client(t, "alice"), d.client(t, "bob")

	tests := []struct {
		profile, repo, account string
		approve                bool
	}{
		{"github", "demo/app", "alice-gh", false},
		{"gitlab", "demo/other", "alice.gl", true},
	}
	for _, tt := range tests {
		t.Run(tt.profile, func(t *testing.T) {
			root := repoRoot(t)
			forge := opensshtest.StartForge(t, opensshtest.ForgeConfig{Profile: tt.profile, CAPublicKey: string(caPub), Root: root, Accounts: []string{tt.account}})
			key := filepath.Join(t.TempDir(), "id")
			require.NoError(t, ensureKey(key))
			pub, err := os.ReadFile(key + ".pub")
			require.NoError(t, err)
			req := apiRequest{Repo: tt.repo, Ref: "refs/heads/feature/*", Access: "write", TTL: "10m", Reason: "direct", PublicKey: strings.TrimSpace(string(pub))}
			req.Signature, err = alice.sign(audit.NamespaceRequest, requestStatement("alice", req).Message())
			require.NoError(t, err)
			resp, err := alice.call(methodSubmit, req)
			require.NoError(t, err)
			r := resp.Request
			if tt.approve {
				approval := apiRequest{ID: r.ID, Reason: "ok"}
				approval.Signature, err = bob.sign(audit.NamespaceApprove, decisionStatement(methodApprove, "bob", r, approval).Message())
				require.NoError(t, err)
				_, err = bob.call(methodApprove, approval)
				require.NoError(t, err)
				resp, err = alice.call(methodGet, apiRequest{ID: r.ID})
				require.NoError(t, err)
				r = resp.Request
			}
			require.NotEmpty(t, r.Certificate, "issued")
			require.NoError(t, os.WriteFile(key+"-cert.pub", []byte(r.Certificate+"\n"), 0o644))
			k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(r.Certificate))
			require.NoError(t, err)
			assert.Equal(t, []string{tt.account}, k.(*ssh.Certificate).ValidPrincipals)

			env := []string{"GIT_SSH_COMMAND=" + forge.GitSSHCommand("-i", key, "-o", "CertificateFile="+key+"-cert.pub")}
			work := filepath.Join(t.TempDir(), "w")
			out, err := gitRun(dir, env, "clone", "-q", forge.GitURL(tt.repo+".git"), work)
			require.NoError(t, err, "%s\nsshd log:\n%s", out, forge.Log())
			mustGit(t, work, "commit", "-q", "--allow-empty", "-m", "direct")
			out, err = gitRun(work, env, "push", "-q", "origin", "HEAD:refs/heads/main")
			require.NoError(t, err, "the host, not the grant, decides refs: %s", out)
			assert.Equal(t, mustGit(t, work, "rev-parse", "HEAD"), mustGit(t, filepath.Join(root, tt.repo+".git"), "rev-parse", "refs/heads/main"))
			assert.Equal(t, tt.account+"\tgit-upload-pack '/"+tt.repo+".git'", forge.Logins(t)[0])
		})
	}

	d.stop()
	res := runJitssh(t, nil, "audit", "verify", "--log", filepath.Join(dir, "audit.log"), "--ca", filepath.Join(dir, "ca", ca.PublicKeyFile), "--people", config)
	require.Equal(t, 0, res.code, "%s%s", res.stdout, res.stderr)
	assert.Contains(t, res.stdout, "2 certificates issued")
}

// startDaemonConfig runs runDaemon on config, whose relative paths are in
// dir, and knows its address as startInProcessDaemonIn does.
func startDaemonConfig(t *testing.T, dir, config string) *inProcessDaemon {
	t.Helper()
	d := &inProcessDaemon{dir: dir}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan daemonAddrs, 1)
	done := make(chan error, 1)
	go func() { done <- runDaemon(ctx, config, slog.New(slog.NewTextHandler(io.Discard, nil)), ready) }()
	select {
	case d.addrs = <-ready:
	case err := <-done:
		t.Fatalf("daemon did not start: %v", err)
	}
	d.stop = sync.OnceFunc(func() { cancel(); <-done })
	t.Cleanup(d.stop)
	d.knownHosts = filepath.Join(dir, "known_hosts")
	line := fmt.Sprintf("[127.0.0.1]:%d %s", d.addrs.API.(*net.TCPAddr).Port, ssh.MarshalAuthorizedKey(d.addrs.HostKey))
	require.NoError(t, os.WriteFile(d.knownHosts, []byte(line), 0o644))
	return d
}
