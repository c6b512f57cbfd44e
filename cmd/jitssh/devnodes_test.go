package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/jitssh/jitssh/approvals"
	"github.com/jitssh/jitssh/sshd"
)

// TestDevNodesConfigs: --nodes 3 writes one config per node that the
// daemon loads from any directory (every path absolute, its own data,
// audit log and pid file, the cluster's TLS), and a git-server config
// following all three.
func TestDevNodesConfigs(t *testing.T) {
	needTool(t, "git")
	dir := t.TempDir()
	st, err := prepareDev(dir, 3, true)
	require.NoError(t, err)
	require.Len(t, st.Nodes, 3)

	t.Chdir(t.TempDir()) // the configs must not depend on where the daemon starts
	var urls []string
	for _, nd := range st.Nodes {
		cfg, err := approvals.LoadConfig(nd.config(dir))
		require.NoError(t, err, nd.ID)
		require.NotNil(t, cfg.Cluster)
		assert.Equal(t, nd.ID, cfg.Cluster.NodeID)
		assert.Equal(t, 3, cfg.Cluster.BootstrapExpect)
		assert.Len(t, cfg.Cluster.Join, 2)
		_, err = approvals.LoadClusterTLS(cfg.Cluster.TLS)
		require.NoError(t, err, "%s: the TLS files the config names", nd.ID)
		// As written, not as loaded: loading resolves relative paths.
		var raw approvals.Config
		data, err := os.ReadFile(nd.config(dir))
		require.NoError(t, err)
		require.NoError(t, yaml.Unmarshal(data, &raw))
		for _, p := range []string{raw.HostKey, raw.DataDir, raw.CADir, raw.AuditLog, raw.PIDFile,
			raw.Cluster.TLS.CA, raw.Cluster.TLS.Cert, raw.Cluster.TLS.Key, raw.OIDC[0].JWKSFile} {
			assert.True(t, filepath.IsAbs(p), "%s: %q", nd.ID, p)
		}
		own := filepath.Join(dir, "nodes", nd.ID)
		assert.Equal(t, filepath.Join(own, "host_key"), cfg.HostKey)
		assert.Equal(t, filepath.Join(own, "data"), cfg.DataDir)
		assert.Equal(t, filepath.Join(own, "audit.log"), cfg.AuditLog)
		assert.Equal(t, filepath.Join(own, "server.pid"), cfg.PIDFile)
		urls = append(urls, "http://"+nd.http()+"/v1/krl")
	}
	g, err := sshd.LoadServerConfig(filepath.Join(dir, "git-server.yaml"))
	require.NoError(t, err)
	assert.Equal(t, urls, g.Revocation.URLs())

	// A later run keeps the count; another count, or a cluster over a
	// single daemon's state, is refused.
	again, err := prepareDev(dir, 0, false)
	require.NoError(t, err)
	assert.Equal(t, st.Nodes, again.Nodes, "same nodes, same cluster ports")
	_, err = prepareDev(dir, 5, true)
	require.ErrorContains(t, err, "runs 3 nodes")
}

func TestDevNodesFlag(t *testing.T) {
	single := t.TempDir()
	require.NoError(t, os.Mkdir(filepath.Join(single, "data"), 0o700))
	three := devState{Nodes: make([]devNode, 3)}
	for _, tt := range []struct {
		name    string
		dir     string
		flag    int
		set     bool
		st      devState
		want    int
		wantErr string
	}{
		{name: "default", dir: t.TempDir(), want: 1},
		{name: "one", dir: t.TempDir(), flag: 1, set: true, want: 1},
		{name: "three", dir: t.TempDir(), flag: 3, set: true, want: 3},
		{name: "kept", dir: t.TempDir(), st: three, want: 3},
		{name: "two", dir: t.TempDir(), flag: 2, set: true, wantErr: "want 1, or 3 to 9"},
		{name: "ten", dir: t.TempDir(), flag: 10, set: true, wantErr: "want 1, or 3 to 9"},
		{name: "another count", dir: t.TempDir(), flag: 5, set: true, st: three, wantErr: "runs 3 nodes"},
		{name: "over a single daemon", dir: single, flag: 3, set: true, wantErr: "holds a single daemon's state"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			n, err := checkDevNodes(tt.dir, tt.flag, tt.set, tt.st)
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, n)
		})
	}
}
