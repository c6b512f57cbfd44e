package main

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"

	"github.com/jitssh/jitssh/ca"
	"github.com/jitssh/jitssh/sshd/opensshtest"
)

// gitRun runs git in dir with a fixed identity and extra environment.
func gitRun(dir string, env []string, args ...string) (string, error) {
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null",
		"GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com")
	cmd.Env = append(cmd.Env, env...)
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

func mustGit(t *testing.T, dir string, args ...string) string {
	t.Helper()
	out, err := gitRun(dir, nil, args...)
	require.NoError(t, err, "git %v: %s", args, out)
	return out
}

// repoRoot makes ROOT/demo/app.git (branches main, feature/a, secret) and
// ROOT/demo/other.git, and returns ROOT.
func repoRoot(t *testing.T) string {
	t.Helper()
	needTool(t, "git")
	root, work := t.TempDir(), t.TempDir()
	for _, r := range []string{"demo/app.git", "demo/other.git"} {
		mustGit(t, root, "init", "-q", "--bare", "-b", "main", r)
	}
	mustGit(t, work, "init", "-q", "-b", "main")
	commit := func(file string) {
		require.NoError(t, os.WriteFile(filepath.Join(work, file), []byte(file+"\n"), 0o644))
		mustGit(t, work, "add", file)
		mustGit(t, work, "commit", "-q", "-m", file)
	}
	commit("README")
	commit("main.txt")
	mustGit(t, work, "checkout", "-q", "-b", "feature/a", "HEAD~1")
	commit("feature.txt")
	mustGit(t, work, "checkout", "-q", "-b", "secret", "HEAD~1")
	commit("secret.txt")
	mustGit(t, work, "push", "-q", filepath.Join(root, "demo/app.git"), "main", "feature/a", "secret")
	mustGit(t, work, "push", "-q", filepath.Join(root, "demo/other.git"), "main")
	return root
}

// stockServer is a real OpenSSH sshd configured as the README tells an
// operator: TrustedUserCAKeys, RevokedKeys, ExposeAuthInfo and jitssh
// principals-command forcing jitssh git-shell.
type stockServer struct {
	*opensshtest.Server
	root, caDir, krl, audit, dir string
}

func startStock(t *testing.T) *stockServer {
	t.Helper()
	return startStockAudit(t, "")
}

// startStockAudit is startStock with the audit log at auditPath; "" is a
// fresh file.
func startStockAudit(t *testing.T, auditPath string) *stockServer {
	t.Helper()
	safe := opensshtest.SafeDir(t)
	bin := filepath.Join(safe, "jitssh")
	data, err := os.ReadFile(jitsshBin)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(bin, data, 0o755))

	s := &stockServer{root: repoRoot(t), dir: t.TempDir()}
	s.caDir = filepath.Join(s.dir, "ca")
	r := runJitssh(t, nil, "ca", "init", "--dir", s.caDir)
	require.Equal(t, 0, r.code, r.stderr)
	s.krl = filepath.Join(s.dir, "revoked.krl")
	r = runJitssh(t, nil, "ca", "krl", "--dir", s.caDir, "--out", s.krl)
	require.Equal(t, 0, r.code, r.stderr)
	s.audit = auditPath
	if s.audit == "" {
		s.audit = filepath.Join(s.dir, "audit.log")
	}
	caPub := filepath.Join(s.caDir, ca.PublicKeyFile)
	s.Server = opensshtest.Start(t, opensshtest.Config{
		TrustedUserCAKeys:               caPub,
		RevokedKeys:                     s.krl,
		ExposeAuthInfo:                  true,
		AuthorizedPrincipalsCommandUser: currentUser(t),
		AuthorizedPrincipalsCommand: fmt.Sprintf("%s principals-command --ca %s --repos %s --krl %s --audit-log %s %%t %%k",
			bin, caPub, s.root, s.krl, s.audit),
		ExtraConfig: []string{"AcceptEnv GIT_PROTOCOL"},
	})
	return s
}

func currentUser(t *testing.T) string {
	name := os.Getenv("USER")
	if name == "" {
		name = "root"
	}
	return name
}

// credential is a key pair and, unless plain, a certificate for it.
type credential struct {
	key, cert string
	serial    uint64
}

func (s *stockServer) credential(t *testing.T, name, caDir, ttl string, grants ...string) credential {
	t.Helper()
	c := credential{key: filepath.Join(s.dir, name)}
	out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", c.key).CombinedOutput()
	require.NoError(t, err, "%s", out)
	if len(grants) == 0 {
		return c
	}
	c.cert = c.key + "-cert.pub"
	args := []string{"ca", "sign", "--dir", caDir, "--pubkey", c.key + ".pub", "--key-id", name + "/req-1", "--ttl", ttl, "--out", c.cert}
	for _, g := range grants {
		args = append(args, "--grant", g)
	}
	r := runJitssh(t, nil, args...)
	require.Equal(t, 0, r.code, r.stderr)
	data, err := os.ReadFile(c.cert)
	require.NoError(t, err)
	pub, _, _, _, err := ssh.ParseAuthorizedKey(data)
	require.NoError(t, err)
	c.serial = pub.(*ssh.Certificate).Serial
	return c
}

func (s *stockServer) git(c credential, dir string, args ...string) (string, error) {
	extra := []string{"-i", c.key}
	if c.cert != "" {
		extra = append(extra, "-o", "CertificateFile="+c.cert)
	}
	return gitRun(dir, []string{"GIT_SSH_COMMAND=" + s.GitSSHCommand(extra...)}, args...)
}

func (s *stockServer) refs(t *testing.T, repo string) string {
	return mustGit(t, filepath.Join(s.root, repo), "for-each-ref")
}

// TestStockOpenSSHGit is the whole stock-OpenSSH story with real sshd,
// ssh, ssh-agent and git: what the grant allows works, and everything
// else is refused with nothing changed on the server.
func TestStockOpenSSHGit(t *testing.T) {
	s := startStock(t)
	otherCA := filepath.Join(s.dir, "other-ca")
	r := runJitssh(t, nil, "ca", "init", "--dir", otherCA)
	require.Equal(t, 0, r.code, r.stderr)

	expired := s.credential(t, "expired", s.caDir, "")
	expired.cert = expired.key + "-cert.pub"
	expired.serial = signExpired(t, s.caDir, expired.key+".pub", expired.cert, "expired/req-1", "git:write:demo/app:refs/heads/feature/*")
	dev := s.credential(t, "dev", s.caDir, "1h", "git:write:demo/app:refs/heads/feature/*", "git:read:demo/app:refs/heads/main")
	foreign := s.credential(t, "foreign", otherCA, "1h", "git:write:demo/app:refs/heads/feature/*")
	revoked := s.credential(t, "revoked", s.caDir, "1h", "git:write:demo/app:refs/heads/feature/*")
	plain := s.credential(t, "plain", "", "")
	r = runJitssh(t, nil, "ca", "krl", "--dir", s.caDir, "--serial", fmt.Sprint(revoked.serial), "--out", s.krl)
	require.Equal(t, 0, r.code, r.stderr)

	work := t.TempDir()
	for _, proto := range []string{"0", "2"} {
		dir := filepath.Join(work, "v"+proto)
		out, err := s.git(dev, work, "-c", "protocol.version="+proto, "clone", "-q", s.GitURL("demo/app"), dir)
		require.NoError(t, err, "clone over protocol v%s: %s\nsshd log:\n%s", proto, out, s.Log())
		assert.FileExists(t, filepath.Join(dir, "main.txt"))
		out, err = s.git(dev, dir, "-c", "protocol.version="+proto, "ls-remote", "origin")
		require.NoError(t, err, out)
		assert.NotContains(t, out, "secret")
	}
	clone := filepath.Join(work, "v0")
	mustGit(t, clone, "checkout", "-q", "-b", "feature/b")
	mustGit(t, clone, "commit", "-q", "--allow-empty", "-m", "work")

	out, err := s.git(dev, clone, "push", "origin", "feature/b")
	require.NoError(t, err, out)
	assert.Contains(t, s.refs(t, "demo/app.git"), "refs/heads/feature/b")

	before := map[string]string{"demo/app.git": s.refs(t, "demo/app.git"), "demo/other.git": s.refs(t, "demo/other.git")}
	refusals := []struct {
		name string
		c    credential
		url  string
		ref  string
	}{
		{"another branch", dev, s.GitURL("demo/app"), "HEAD:refs/heads/main"},
		{"another repo", dev, s.GitURL("demo/other"), "HEAD:refs/heads/feature/x"},
		{"expired certificate", expired, s.GitURL("demo/app"), "HEAD:refs/heads/feature/c"},
		{"another CA", foreign, s.GitURL("demo/app"), "HEAD:refs/heads/feature/c"},
		{"revoked serial", revoked, s.GitURL("demo/app"), "HEAD:refs/heads/feature/c"},
		{"plain key", plain, s.GitURL("demo/app"), "HEAD:refs/heads/feature/c"},
	}
	for _, tt := range refusals {
		t.Run(tt.name, func(t *testing.T) {
			out, err := s.git(tt.c, clone, "push", tt.url, tt.ref)
			require.Error(t, err, out)
			out, err = s.git(tt.c, work, "ls-remote", tt.url)
			if tt.c.serial == dev.serial {
				return // dev can read demo/app, and not demo/other
			}
			require.Error(t, err, out)
		})
	}
	for repo, refs := range before {
		assert.Equal(t, refs, s.refs(t, repo), "refs of %s changed", repo)
	}
	out, err = s.git(dev, clone, "push", s.GitURL("demo/app"), "HEAD:refs/heads/main")
	require.Error(t, err)
	assert.Contains(t, out, "! [remote rejected] HEAD -> main (updating refs/heads/main needs write access on demo/app; your grant gives read)")

	// A command that is not Git gets nowhere, under the forced command.
	cmd := s.SSH(t, "-i", dev.key, "-o", "CertificateFile="+dev.cert, "id")
	cmd.Stdin = strings.NewReader("")
	idOut, err := cmd.CombinedOutput()
	require.Error(t, err)
	assert.NotContains(t, string(idOut), "uid=")
	assert.Contains(t, string(idOut), "jitssh: only git-upload-pack")

	// The same certificate works from ssh-agent, as `jitssh request` loads it.
	sock := startAgent(t, dev)
	out, err = gitRun(work, []string{"SSH_AUTH_SOCK=" + sock,
		"GIT_SSH_COMMAND=" + s.GitSSHCommand("-o", "IdentityFile="+dev.key+".pub", "-o", "CertificateFile="+dev.cert)},
		"ls-remote", s.GitURL("demo/app"))
	require.NoError(t, err, out)
	assert.Contains(t, out, "refs/heads/main")

	audit, err := os.ReadFile(s.audit)
	require.NoError(t, err)
	assert.Contains(t, string(audit), `"decision":"deny"`)
	assert.Contains(t, string(audit), `"decision":"allow"`)
}

// startAgent runs a real ssh-agent holding c and returns its socket.
func startAgent(t *testing.T, c credential) string {
	t.Helper()
	needTool(t, "ssh-agent")
	sock := filepath.Join(t.TempDir(), "agent.sock")
	agent := exec.Command("ssh-agent", "-D", "-a", sock)
	agent.Stdout, agent.Stderr = io.Discard, io.Discard
	require.NoError(t, agent.Start())
	t.Cleanup(func() { agent.Process.Kill(); agent.Wait() })
	require.Eventually(t, func() bool { _, err := os.Stat(sock); return err == nil }, 5*time.Second, 20*time.Millisecond)
	add := exec.Command("ssh-add", c.key)
	add.Env = append(os.Environ(), "SSH_AUTH_SOCK="+sock)
	out, err := add.CombinedOutput()
	require.NoError(t, err, "%s", out)
	return sock
}

// TestStockOpenSSHSourceAddress signs certificates bound to loopback
// addresses and connects from each with the real ssh client.
func TestStockOpenSSHSourceAddress(t *testing.T) {
	s := startStock(t)
	bound := s.credential(t, "bound", s.caDir, "1h", "git:read:demo/app:*")
	r := runJitssh(t, nil, "ca", "sign", "--dir", s.caDir, "--pubkey", bound.key+".pub", "--key-id", "bound/req-2",
		"--ttl", "1h", "--grant", "git:read:demo/app:*", "--source-address", "127.0.0.2/32", "--out", bound.cert)
	require.Equal(t, 0, r.code, r.stderr)
	for _, tt := range []struct {
		from string
		ok   bool
	}{{"127.0.0.2", true}, {"127.0.0.1", false}} {
		out, err := gitRun(t.TempDir(), []string{"GIT_SSH_COMMAND=" + s.GitSSHCommand("-i", bound.key, "-o", "CertificateFile="+bound.cert, "-o", "BindAddress="+tt.from)},
			"ls-remote", s.GitURL("demo/app"))
		if tt.ok {
			require.NoError(t, err, "from %s: %s", tt.from, out)
			assert.Contains(t, out, "refs/heads/secret")
		} else {
			require.Error(t, err, "from %s: %s", tt.from, out)
		}
	}
}

// TestStockOpenSSHFailsClosedOnAudit: with an audit log that takes no
// writes (/dev/full), git-shell serves nothing: a clone gets no objects and
// a push changes no ref, and the client is told why.
func TestStockOpenSSHFailsClosedOnAudit(t *testing.T) {
	if _, err := os.Stat("/dev/full"); err != nil {
		t.Skip("no /dev/full")
	}
	s := startStockAudit(t, "/dev/full")
	dev := s.credential(t, "dev", s.caDir, "1h", "git:write:demo/app:refs/heads/feature/*", "git:read:demo/app:*")
	work := t.TempDir()
	mustGit(t, work, "init", "-q")
	out, err := s.git(dev, work, "fetch", s.GitURL("demo/app"), "main")
	require.Error(t, err, out)
	assert.Contains(t, out, "audit log cannot be written")
	_, err = gitRun(work, nil, "rev-parse", "--verify", "FETCH_HEAD")
	assert.Error(t, err, "the fetch brought something")

	before := s.refs(t, "demo/app.git")
	src := filepath.Join(s.root, "demo/app.git")
	out, err = s.git(dev, src, "push", s.GitURL("demo/app"), "main:refs/heads/feature/new")
	require.Error(t, err, out)
	assert.Contains(t, out, "[remote rejected] main -> feature/new (the audit record could not be written)")
	assert.Equal(t, before, s.refs(t, "demo/app.git"), "a push changed refs with no record")
}
