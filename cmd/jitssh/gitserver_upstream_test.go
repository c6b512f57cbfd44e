package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"

	"github.com/jitssh/jitssh/ca"
	"github.com/jitssh/jitssh/sshd/opensshtest"
)

// TestGitServerUpstream runs the real binary as a proxy in front of a Git
// host played by stock OpenSSH (GitLab-style: the key ID is the
// username): grants decide what goes through, the host sees its own
// certificate for the person's account, and a SIGHUP brings in a new
// account mapping.
func TestGitServerUpstream(t *testing.T) {
	needTool(t, "ssh")
	dir := t.TempDir()
	st := &stockServer{dir: dir}
	grantCA, forgeCA := filepath.Join(dir, "ca"), filepath.Join(dir, "forge-ca")
	for _, d := range []string{grantCA, forgeCA} {
		r := runJitssh(t, nil, "ca", "init", "--dir", d)
		require.Equal(t, 0, r.code, r.stderr)
	}
	forgePub, err := os.ReadFile(filepath.Join(forgeCA, ca.PublicKeyFile))
	require.NoError(t, err)
	root := repoRoot(t)
	forge := opensshtest.StartForge(t, opensshtest.ForgeConfig{Profile: "gitlab", CAPublicKey: string(forgePub), Root: root, Accounts: []string{"alice.gl", "bob.gl", "svc.gl"}})

	audit := filepath.Join(dir, "git-audit.log")
	accounts, service := "{alice: alice.gl}", `""`
	config := func(s *gitServerProc) string {
		return fmt.Sprintf(`listen: %s
host_key: %s
trusted_ca_keys: [%s]
audit_log: %s
upstream:
  address: %s
  user: %s
  host_keys: [%q]
  profile: gitlab
  ca_dir: %s
  ttl: 2m
  accounts: %s
  service_account: %s
`, s.addr, filepath.Join(s.dir, "host_key"), filepath.Join(grantCA, ca.PublicKeyFile), audit,
			forge.Addr, forge.User, forge.HostKeyPub, forgeCA, accounts, service)
	}
	s := startGitServerConfig(t, root, "", config)
	assert.Contains(t, s.log.all.String(), `"upstream":"`+forge.Addr+`"`)

	alice := st.credential(t, "alice", grantCA, "1h", "git:write:demo/app:refs/heads/feature/*", "git:read:demo/app:refs/heads/main")
	bob := st.credential(t, "bob", grantCA, "1h", "git:read:demo/app:*")
	carol := st.credential(t, "carol", grantCA, "1h", "git:read:demo/app:*")
	_, port, _ := net.SplitHostPort(s.addr)
	url := fmt.Sprintf("ssh://git@127.0.0.1:%s/demo/app", port)
	gitAs := func(c credential, dir string, args ...string) (string, error) {
		sshCmd := fmt.Sprintf("ssh -F /dev/null -o UserKnownHostsFile=%s -o StrictHostKeyChecking=yes -o BatchMode=yes -o IdentitiesOnly=yes -i %s -o CertificateFile=%s",
			s.knownHosts, c.key, c.cert)
		return gitRun(dir, []string{"GIT_SSH_COMMAND=" + sshCmd}, args...)
	}

	out, err := gitAs(alice, dir, "ls-remote", url)
	require.NoError(t, err, out)
	assert.Contains(t, out, "refs/heads/main")
	assert.Contains(t, out, "refs/heads/feature/a")
	assert.NotContains(t, out, "secret")

	work := filepath.Join(dir, "w")
	out, err = gitAs(alice, dir, "clone", "-q", url, work)
	require.NoError(t, err, out)
	mustGit(t, work, "commit", "-q", "--allow-empty", "-m", "x")
	out, err = gitAs(alice, work, "push", "origin", "HEAD:refs/heads/feature/x", "HEAD:refs/heads/main")
	require.Error(t, err, out)
	assert.Contains(t, out, "main (updating refs/heads/main needs write access on demo/app; your grant gives read)")
	bare := filepath.Join(root, "demo", "app.git")
	assert.Equal(t, mustGit(t, work, "rev-parse", "HEAD"), mustGit(t, bare, "rev-parse", "refs/heads/feature/x"))
	assert.NotEqual(t, mustGit(t, work, "rev-parse", "HEAD"), mustGit(t, bare, "rev-parse", "refs/heads/main"))

	// The host saw alice's GitLab account, by key ID, with her grant's
	// serial.
	assert.Equal(t, "alice.gl\tgit-upload-pack 'demo/app.git'", forge.Logins(t)[0])
	presented := forge.Presented(t)
	require.NotEmpty(t, presented)
	data, err := os.ReadFile(presented[0])
	require.NoError(t, err)
	key, _, _, _, err := ssh.ParseAuthorizedKey([]byte(strings.TrimPrefix(strings.TrimSpace(string(data)), "publickey ")))
	require.NoError(t, err)
	cert := key.(*ssh.Certificate)
	assert.Equal(t, "alice.gl", cert.KeyId)
	assert.Equal(t, alice.serial, cert.Serial)

	// Every decision is on the proxy's audit log.
	log, err := os.ReadFile(audit)
	require.NoError(t, err)
	assert.Contains(t, string(log), `"ref":"refs/heads/feature/x"`)
	assert.Contains(t, string(log), "updating refs/heads/main needs write access")

	// bob and carol have no account yet; a reload maps bob's, and names
	// a service account for everyone else.
	logins := len(forge.Logins(t))
	for _, c := range []credential{bob, carol} {
		out, err = gitAs(c, dir, "ls-remote", url)
		require.Error(t, err, out)
		assert.Contains(t, out, "you have no account on the Git host behind this server")
	}
	assert.Len(t, forge.Logins(t), logins, "nothing reached the host for bob or carol")
	accounts, service = "{alice: alice.gl, bob: bob.gl}", "svc.gl"
	require.NoError(t, os.WriteFile(s.config, []byte(config(s)), 0o600))
	require.NoError(t, s.cmd.Process.Signal(syscall.SIGHUP))
	s.waitLog(t, "reloaded trusted CAs")
	for _, c := range []credential{bob, carol} {
		out, err = gitAs(c, dir, "ls-remote", url)
		require.NoError(t, err, out)
		assert.Contains(t, out, "refs/heads/secret")
	}
	assert.Equal(t, []string{"bob.gl\tgit-upload-pack 'demo/app.git'", "svc.gl\tgit-upload-pack 'demo/app.git'"}, forge.Logins(t)[logins:])
}
