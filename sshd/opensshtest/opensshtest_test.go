package opensshtest_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"

	"github.com/jitssh/jitssh/sshd/opensshtest"
)

// userKey writes a fresh ed25519 key pair as ssh-keygen would and returns
// the private key's path and the public key.
func userKey(t *testing.T, dir, name string) (string, ssh.PublicKey) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	block, err := ssh.MarshalPrivateKey(priv, "")
	require.NoError(t, err)
	path := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(path, pem.EncodeToMemory(block), 0o600))
	sshPub, err := ssh.NewPublicKey(pub)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(path+".pub", ssh.MarshalAuthorizedKey(sshPub), 0o644))
	return path, sshPub
}

func TestStartAndLogIn(t *testing.T) {
	dir := t.TempDir()
	key, pub := userKey(t, dir, "id_ed25519")
	stranger, _ := userKey(t, dir, "id_stranger")
	authorized := filepath.Join(dir, "authorized_keys")
	require.NoError(t, os.WriteFile(authorized, ssh.MarshalAuthorizedKey(pub), 0o600))

	s := opensshtest.Start(t, opensshtest.Config{AuthorizedKeysFile: authorized})
	assert.True(t, strings.HasPrefix(s.Addr, "127.0.0.1:"), s.Addr)
	assert.NotZero(t, s.Port)

	out, err := s.SSH(t, "-i", key, "echo", "logged-in-as", "$(id -un)").CombinedOutput()
	require.NoError(t, err, "%s\nsshd log:\n%s", out, s.Log())
	assert.Equal(t, "logged-in-as "+s.User+"\n", string(out))

	out, err = s.SSH(t, "-i", stranger, "true").CombinedOutput()
	require.Error(t, err)
	assert.Equal(t, 255, exitCode(err), "%s", out)
	assert.Contains(t, string(out), "Permission denied")

	assert.Contains(t, s.Log(), "Accepted publickey for "+s.User, "LogLevel VERBOSE logs each login")
}

func TestPlainKeysRefusedByDefault(t *testing.T) {
	dir := t.TempDir()
	key, _ := userKey(t, dir, "id_ed25519")
	s := opensshtest.Start(t, opensshtest.Config{})
	out, err := s.SSH(t, "-i", key, "true").CombinedOutput()
	require.Error(t, err)
	assert.Equal(t, 255, exitCode(err), "%s", out)
	assert.Contains(t, string(out), "Permission denied")
	cfg, err := os.ReadFile(s.ConfigFile)
	require.NoError(t, err)
	assert.Contains(t, string(cfg), "\nAuthorizedKeysFile none\n")
}

func TestHostKeyIsPinned(t *testing.T) {
	dir := t.TempDir()
	key, pub := userKey(t, dir, "id_ed25519")
	authorized := filepath.Join(dir, "authorized_keys")
	require.NoError(t, os.WriteFile(authorized, ssh.MarshalAuthorizedKey(pub), 0o600))
	s := opensshtest.Start(t, opensshtest.Config{AuthorizedKeysFile: authorized})

	// Pin some other host key for the address: ssh must refuse to go on.
	_, other := userKey(t, dir, "not_the_host_key")
	line := "[127.0.0.1]:" + strings.TrimPrefix(s.Addr, "127.0.0.1:") + " " + string(ssh.MarshalAuthorizedKey(other))
	require.NoError(t, os.WriteFile(s.KnownHostsFile, []byte(line), 0o644))
	out, err := s.SSH(t, "-i", key, "true").CombinedOutput()
	require.Error(t, err)
	assert.Equal(t, 255, exitCode(err), "%s", out)
	assert.Contains(t, string(out), "Host key verification failed")
}

func TestTwoServersAtOnce(t *testing.T) {
	a := opensshtest.Start(t, opensshtest.Config{})
	b := opensshtest.Start(t, opensshtest.Config{ExtraConfig: []string{"MaxAuthTries 3"}})
	assert.NotEqual(t, a.Port, b.Port)
	assert.NotEqual(t, a.HostKeyPub, b.HostKeyPub)
	cfg, err := os.ReadFile(b.ConfigFile)
	require.NoError(t, err)
	assert.Contains(t, string(cfg), "\nMaxAuthTries 3\n")
}

func TestGitSSHCommandQuotes(t *testing.T) {
	s := opensshtest.Start(t, opensshtest.Config{})
	cmd := s.GitSSHCommand("-i", "/path with space/key")
	assert.True(t, strings.HasPrefix(cmd, "ssh -F /dev/null -p "), cmd)
	assert.Contains(t, cmd, "'/path with space/key'")
	assert.Equal(t, "ssh://"+s.User+"@"+s.Addr+"/demo/app.git", s.GitURL("demo/app.git"))
}

func TestSafeDir(t *testing.T) {
	dir := opensshtest.SafeDir(t)
	fi, err := os.Stat(dir)
	require.NoError(t, err)
	assert.True(t, fi.IsDir())
	assert.False(t, strings.HasPrefix(dir, os.TempDir()), "never under %s: %s", os.TempDir(), dir)
	for p := dir; p != filepath.Dir(p); p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		require.NoError(t, err)
		assert.Zero(t, fi.Mode().Perm()&0o022, "%s is writable by group or others", p)
	}
}

func exitCode(err error) int {
	if ee, ok := err.(interface{ ExitCode() int }); ok {
		return ee.ExitCode()
	}
	return -1
}
