package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

func TestFlagValueHints(t *testing.T) {
	for _, tt := range []struct {
		env  []string
		args []string
		want string
	}{
		{nil, []string{"request", "--repo", "demo/app", "--ttl", "10"}, "--ttl 10: a duration needs a unit: 10s? 10m?"},
		{nil, []string{"request", "--repo", "demo/app", "--ttl", "1.5"}, "--ttl 1.5: a duration needs a unit: 1.5s? 1.5m?"},
		{nil, []string{"request", "--repo", "demo/app", "--ttl=soon"}, "--ttl soon: not a duration; write it like 90s, 30m or 2h"},
		{[]string{"JITSSH_TTL=10"}, []string{"request", "--repo", "demo/app"}, "JITSSH_TTL=10: a duration needs a unit: 10s? 10m?"},
		{nil, []string{"approve", "req-1", "--ttl", "5"}, "--ttl 5: a duration needs a unit: 5s? 5m?"},
		{nil, []string{"requests", "list", "--limit", "many"}, "--limit many: not a whole number"},
	} {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			assertOneLineError(t, runJitssh(t, tt.env, tt.args...), exitUsage, tt.want)
		})
	}
}

// TestNoCAHint: the commands that need an existing CA say how to make one
// when --dir has none, and write nothing.
func TestNoCAHint(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "no-ca")
	empty := filepath.Join(dir, "empty")
	require.NoError(t, os.Mkdir(empty, 0o700))
	pub := filepath.Join(dir, "user")
	require.NoError(t, ensureKey(pub))
	out := filepath.Join(dir, "out")
	for _, caDir := range []string{missing, empty} {
		for _, args := range [][]string{
			{"ca", "pubkey", "--dir", caDir},
			{"ca", "sign", "--dir", caDir, "--pubkey", pub + ".pub", "--grant", "git:read:demo/app:*", "--ttl", "1h", "--key-id", "a/b", "--out", out},
			{"ca", "krl", "--dir", caDir, "--serial", "1", "--out", out},
		} {
			t.Run(strings.Join(args[:2], " ")+" "+filepath.Base(caDir), func(t *testing.T) {
				assertOneLineError(t, runJitssh(t, nil, args...), exitError, "create one with `jitssh ca init --dir "+caDir+"`")
				assert.NoFileExists(t, out)
			})
		}
	}
	_, err := os.Stat(missing)
	assert.True(t, os.IsNotExist(err), "the hint created the directory")
}

// TestPinHostKeyHint: without the daemon's host key pinned, jitssh
// refuses it and says how to pin it, with the key's fingerprint; the line
// it gives works. A key that does not match gets no such line.
func TestPinHostKeyHint(t *testing.T) {
	d := startInProcessDaemon(t, "")
	dir := t.TempDir()
	fp := ssh.FingerprintSHA256(d.addrs.HostKey)
	echo := regexp.MustCompile(`pin it with: (echo .* >> \S+)\n$`)
	for _, tt := range []struct {
		name    string
		content *string
	}{
		{"no file", nil},
		{"empty file", new(string)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			kh := filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "_"))
			if tt.content != nil {
				require.NoError(t, os.WriteFile(kh, []byte(*tt.content), 0o644))
			}
			env := append(d.env("alice"), "JITSSH_KNOWN_HOSTS="+kh)
			r := runJitssh(t, env, "requests", "list")
			assertOneLineError(t, r, exitError, "refusing to trust it")
			assert.Contains(t, r.stderr, fp)
			m := echo.FindStringSubmatch(r.stderr)
			require.NotNil(t, m, r.stderr)
			out, err := exec.Command("sh", "-c", m[1]).CombinedOutput()
			require.NoError(t, err, "%s", out)
			r = runJitssh(t, env, "requests", "list")
			require.Equal(t, 0, r.code, "after pinning as told: %s", r.stderr)
		})
	}

	t.Run("another key", func(t *testing.T) {
		other := filepath.Join(dir, "other")
		require.NoError(t, ensureKey(other))
		signer, err := ssh.ParsePrivateKey(mustRead(t, other))
		require.NoError(t, err)
		kh := filepath.Join(dir, "wrong")
		require.NoError(t, os.WriteFile(kh, []byte(knownhosts.Line([]string{knownhosts.Normalize(d.addrs.API.String())}, signer.PublicKey())+"\n"), 0o644))
		r := runJitssh(t, append(d.env("alice"), "JITSSH_KNOWN_HOSTS="+kh), "requests", "list")
		assertOneLineError(t, r, exitError, "does not match")
		assert.NotContains(t, r.stderr, "echo")
	})
}
