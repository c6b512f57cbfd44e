package main

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/jitssh/jitssh/sshd/opensshtest"
)

// TestTryStockOpenSSHRecipe runs the README's stock-OpenSSH recipe as a
// newcomer would: its own sshd on a high port, a branch-scoped push that
// works, one to main that does not, and an audit log that verifies.
func TestTryStockOpenSSHRecipe(t *testing.T) {
	needTool(t, "ssh")
	needTool(t, "git")
	safe := opensshtest.SafeDir(t)
	bin := filepath.Join(safe, "jitssh")
	data, err := os.ReadFile(jitsshBin)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(bin, data, 0o755))
	_, port, err := net.SplitHostPort(freeAddr(t))
	require.NoError(t, err)

	cmd := exec.Command("sh", filepath.Join("..", "..", "testdata", "try-stock-openssh.sh"), bin, port, t.TempDir())
	cmd.Env = append(os.Environ(), "PATH="+os.Getenv("PATH")+":/usr/sbin:/usr/local/sbin")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.Contains(t, string(out), "pushed refs/heads/feature/try")
	assert.Contains(t, string(out), "refused refs/heads/main")
	assert.Regexp(t, `(?m)^ok: \d+ entries`, string(out))
}
