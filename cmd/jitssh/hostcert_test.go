package main

import (
	"fmt"
	"net"
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
)

// caLine is the public key line of the CA in dir.
func caLine(t *testing.T, dir string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, ca.PublicKeyFile))
	require.NoError(t, err)
	return strings.TrimSpace(string(b))
}

// TestDaemonHostCertificate: with host_names, the daemon presents a host
// certificate of its CA; a client trusts it through one @cert-authority
// line, a client that pinned the plain key still gets in, and a
// certificate of another CA or for another name is refused.
func TestDaemonHostCertificate(t *testing.T) {
	d := startInProcessDaemon(t, "host_names: [127.0.0.1, localhost]\n")
	port := d.addrs.API.(*net.TCPAddr).Port
	other := filepath.Join(t.TempDir(), "other-ca")
	require.Equal(t, 0, runJitssh(t, nil, "ca", "init", "--dir", other).code)

	whoami := func(knownHosts string) cliResult {
		t.Helper()
		env := append(d.env("alice"), "JITSSH_KNOWN_HOSTS="+knownHosts)
		return runJitssh(t, env, "whoami")
	}
	knownHosts := func(content string) string {
		t.Helper()
		path := filepath.Join(t.TempDir(), "known_hosts")
		require.NoError(t, os.WriteFile(path, []byte(content+"\n"), 0o644))
		return path
	}

	r := whoami(knownHosts(fmt.Sprintf("@cert-authority [127.0.0.1]:%d %s", port, caLine(t, filepath.Join(d.dir, "ca")))))
	require.Equal(t, 0, r.code, "one @cert-authority line is enough: %s", r.stderr)
	assert.Contains(t, r.stdout, "person  alice")

	r = whoami(d.knownHosts)
	require.Equal(t, 0, r.code, "a pinned plain key still works: %s", r.stderr)

	r = whoami(knownHosts(fmt.Sprintf("@cert-authority [127.0.0.1]:%d %s", port, caLine(t, other))))
	assert.NotEqual(t, 0, r.code, "a certificate of another CA was trusted")
	assert.Empty(t, r.stdout)
}

// TestDaemonHostCertificateForAnotherName: a certificate whose names do
// not include the address dialled is refused even from the trusted CA.
func TestDaemonHostCertificateForAnotherName(t *testing.T) {
	d := startInProcessDaemon(t, "host_names: [jitssh.example.com]\n")
	port := d.addrs.API.(*net.TCPAddr).Port
	path := filepath.Join(t.TempDir(), "known_hosts")
	line := fmt.Sprintf("@cert-authority [127.0.0.1]:%d %s\n", port, caLine(t, filepath.Join(d.dir, "ca")))
	require.NoError(t, os.WriteFile(path, []byte(line), 0o644))
	r := runJitssh(t, append(d.env("alice"), "JITSSH_KNOWN_HOSTS="+path), "whoami")
	assert.NotEqual(t, 0, r.code)
	assert.Empty(t, r.stdout)
}

// TestHostCertSignerRenewsAtHalfLife: the daemon's certificate is due for
// renewal halfway through its validity, and renewal moves its end.
func TestHostCertSignerRenewsAtHalfLife(t *testing.T) {
	dir := t.TempDir()
	_, err := ca.Init(filepath.Join(dir, "ca"), ca.Ed25519)
	require.NoError(t, err)
	authority, err := ca.Load(filepath.Join(dir, "ca"))
	require.NoError(t, err)
	now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	authority.Now = func() time.Time { return now }
	authority.Backdate = 0
	key := filepath.Join(dir, "host")
	require.NoError(t, ensureKey(key))
	b, err := os.ReadFile(key)
	require.NoError(t, err)
	signer, err := ssh.ParsePrivateKey(b)
	require.NoError(t, err)

	s, err := newHostCertSigner(signer, authority, []string{"127.0.0.1"}, func() time.Time { return now })
	require.NoError(t, err)
	first := s.PublicKey().(*ssh.Certificate)
	assert.True(t, now.Add(hostCertValidity/2).Equal(s.due()), "due at %v", s.due())

	now = now.Add(hostCertValidity / 2)
	require.NoError(t, s.sign())
	second := s.PublicKey().(*ssh.Certificate)
	assert.Greater(t, second.ValidBefore, first.ValidBefore)
	assert.Equal(t, first.Key.Marshal(), second.Key.Marshal(), "the same host key, newly certified")
}

// TestGitServerHostCertificate: git over OpenSSH trusts a git-server whose
// host key `jitssh ca sign-host` certified, with only an @cert-authority
// line in known_hosts.
func TestGitServerHostCertificate(t *testing.T) {
	needTool(t, "ssh")
	dir := t.TempDir()
	st := &stockServer{dir: dir}
	caDir := filepath.Join(dir, "ca")
	require.Equal(t, 0, runJitssh(t, nil, "ca", "init", "--dir", caDir).code)
	grant := st.credential(t, "one", caDir, "1h", "git:read:demo/app:*")

	serverDir := t.TempDir()
	hostKey := filepath.Join(serverDir, "host_key")
	require.NoError(t, exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", hostKey).Run())
	certPath := filepath.Join(serverDir, "host_key-cert.pub")
	r := runJitssh(t, nil, "ca", "sign-host", "--dir", caDir, "--pubkey", hostKey+".pub", "--name", "127.0.0.1", "--out", certPath)
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stderr, "host certificate for 127.0.0.1")

	s := startGitServerIn(t, serverDir, []string{filepath.Join(caDir, ca.PublicKeyFile)}, "", "host_certificate: "+certPath+"\n")
	_, port, _ := net.SplitHostPort(s.addr)
	require.NoError(t, os.WriteFile(s.knownHosts, []byte(fmt.Sprintf("@cert-authority [127.0.0.1]:%s %s\n", port, caLine(t, caDir))), 0o644))
	out, err := s.lsRemote(grant)
	require.NoError(t, err, "OpenSSH trusts the certified host key: %s", out)
	assert.Contains(t, out, "refs/heads/main")

	// Trusting another CA, the client refuses the same server.
	other := filepath.Join(dir, "other")
	require.Equal(t, 0, runJitssh(t, nil, "ca", "init", "--dir", other).code)
	require.NoError(t, os.WriteFile(s.knownHosts, []byte(fmt.Sprintf("@cert-authority [127.0.0.1]:%s %s\n", port, caLine(t, other))), 0o644))
	_, err = s.lsRemote(grant)
	require.Error(t, err, "a host certificate of an untrusted CA was accepted")
}

func TestSignHostCommandRefusesBadNames(t *testing.T) {
	dir := t.TempDir()
	caDir := filepath.Join(dir, "ca")
	require.Equal(t, 0, runJitssh(t, nil, "ca", "init", "--dir", caDir).code)
	key := filepath.Join(dir, "host")
	require.NoError(t, ensureKey(key))
	assertOneLineError(t, runJitssh(t, nil, "ca", "sign-host", "--dir", caDir, "--pubkey", key+".pub", "--name", "*.example.com"), exitUsage, "bad host name")
	assertOneLineError(t, runJitssh(t, nil, "ca", "sign-host", "--dir", caDir, "--pubkey", key+".pub"), exitUsage, "missing --name")
}
