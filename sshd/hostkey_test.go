package sshd

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"
)

func TestLoadOrCreateHostKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "host_key")
	created, err := LoadOrCreateHostKey(path, "approval daemon")
	require.NoError(t, err)
	fi, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())

	// The same key comes back, and OpenSSH reads the file with the
	// comment naming the server.
	loaded, err := LoadOrCreateHostKey(path, "git-server")
	require.NoError(t, err)
	assert.Equal(t, ssh.MarshalAuthorizedKey(created.PublicKey()), ssh.MarshalAuthorizedKey(loaded.PublicKey()))
	if keygen, err := exec.LookPath("ssh-keygen"); err == nil {
		out, err := exec.Command(keygen, "-l", "-f", path).CombinedOutput()
		require.NoError(t, err, "%s", out)
		assert.True(t, strings.Contains(string(out), "jitssh approval daemon"), "%s", out)
	}

	// A key others can read is refused.
	require.NoError(t, os.Chmod(path, 0o644))
	_, err = LoadOrCreateHostKey(path, "git-server")
	assert.Error(t, err)
}
