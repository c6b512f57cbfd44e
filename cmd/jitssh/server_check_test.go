package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// checkWorkspace is the example server configuration rewritten to live in
// a temporary directory, with a CA and the audit log's directory made.
func checkWorkspace(t *testing.T) (dir, config string) {
	t.Helper()
	dir = t.TempDir()
	example, err := os.ReadFile(filepath.Join("..", "..", "testdata", "server.yaml"))
	require.NoError(t, err)
	cfg := strings.NewReplacer("/var/lib/jitssh", dir, "/var/log/jitssh", filepath.Join(dir, "logs")).Replace(string(example))
	config = filepath.Join(dir, "server.yaml")
	require.NoError(t, os.WriteFile(config, []byte(cfg), 0o600))
	require.Equal(t, 0, runJitssh(t, nil, "ca", "init", "--dir", filepath.Join(dir, "ca")).code)
	require.NoError(t, os.Mkdir(filepath.Join(dir, "logs"), 0o700))
	return dir, config
}

func TestServerCheck(t *testing.T) {
	tests := []struct {
		name    string
		breakIt func(t *testing.T, dir string)
		want    string // on stderr; empty means the check passes
	}{
		{name: "valid", breakIt: func(*testing.T, string) {}},
		{
			name:    "no CA",
			breakIt: func(t *testing.T, dir string) { require.NoError(t, os.RemoveAll(filepath.Join(dir, "ca"))) },
			want:    "make one with `jitssh ca init --dir " + "DIR/ca`",
		},
		{
			name:    "no audit log directory",
			breakIt: func(t *testing.T, dir string) { require.NoError(t, os.RemoveAll(filepath.Join(dir, "logs"))) },
			want:    "directory DIR/logs does not exist: create it (mkdir -p DIR/logs)",
		},
		{
			name: "host key that is not a key",
			breakIt: func(t *testing.T, dir string) {
				require.NoError(t, os.WriteFile(filepath.Join(dir, "daemon-host-key"), []byte("not a key\n"), 0o600))
			},
			want: "host_key DIR/daemon-host-key:",
		},
		{
			name: "cluster TLS material missing",
			breakIt: func(t *testing.T, dir string) {
				f, err := os.OpenFile(filepath.Join(dir, "server.yaml"), os.O_APPEND|os.O_WRONLY, 0)
				require.NoError(t, err)
				defer f.Close()
				_, err = f.WriteString("cluster:\n  node_id: n1\n  bind: 127.0.0.1:7400\n  bootstrap_expect: 1\n" +
					"  tls: {ca: " + dir + "/tls/ca.pem, cert: " + dir + "/tls/n1.pem, key: " + dir + "/tls/n1-key.pem}\n")
				require.NoError(t, err)
			},
			want: "DIR/tls/",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir, config := checkWorkspace(t)
			tt.breakIt(t, dir)
			before := listTree(t, dir)

			r := runJitssh(t, nil, "server", "--check", "--config", config)

			assert.Equal(t, before, listTree(t, dir), "a check writes nothing")
			if tt.want == "" {
				require.Equal(t, 0, r.code, "stderr: %s", r.stderr)
				assert.Contains(t, r.stdout, config+": ready to serve")
				assert.Contains(t, r.stdout, "policy     3 people, 5 rules, sha256:")
				assert.Contains(t, r.stdout, "will be made at the first start", "the host key is not made by a check")
				return
			}
			assert.Equal(t, exitError, r.code, "stdout: %s", r.stdout)
			assert.Contains(t, r.stderr, strings.ReplaceAll(tt.want, "DIR", dir))
			assert.NotContains(t, r.stdout, "ready to serve")
		})
	}
}

// listTree names every file and directory under dir.
func listTree(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	require.NoError(t, filepath.WalkDir(dir, func(path string, _ os.DirEntry, err error) error {
		out = append(out, path)
		return err
	}))
	return out
}
