package approvals

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestInitClusterTLS(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	require.NoError(t, InitClusterTLS(dir, 3, []string{"127.0.0.1", "db.example"}, time.Now()))

	for _, f := range []struct {
		name string
		mode os.FileMode
	}{
		{ClusterCAKeyFile, 0o600}, {ClusterCAFile, 0o644},
		{"node1-key.pem", 0o600}, {"node1.pem", 0o644}, {"node3-key.pem", 0o600}, {"node3.pem", 0o644},
	} {
		fi, err := os.Stat(filepath.Join(dir, f.name))
		require.NoError(t, err, f.name)
		assert.Equal(t, f.mode, fi.Mode().Perm(), f.name)
	}
	_, err := os.Stat(filepath.Join(dir, "node4.pem"))
	assert.ErrorIs(t, err, os.ErrNotExist)

	for _, id := range []string{"node1", "node2", "node3"} {
		cert, key := ClusterNodeFiles(dir, id)
		ct, err := LoadClusterTLS(ClusterTLSFiles{CA: filepath.Join(dir, ClusterCAFile), Cert: cert, Key: key})
		require.NoError(t, err, id)
		assert.Equal(t, id, ct.NodeID())
		leaf := ct.cert.Leaf
		assert.Contains(t, leaf.DNSNames, id)
		assert.Contains(t, leaf.DNSNames, "db.example")
		require.Len(t, leaf.IPAddresses, 1)
		assert.Equal(t, "127.0.0.1", leaf.IPAddresses[0].String())
	}

	err = InitClusterTLS(dir, 3, nil, time.Now())
	assert.ErrorContains(t, err, "exists", "a second CA would split the cluster")

	require.NoError(t, IssueNodeFiles(dir, "node4", nil, time.Now()))
	cert, key := ClusterNodeFiles(dir, "node4")
	_, err = LoadClusterTLS(ClusterTLSFiles{CA: filepath.Join(dir, ClusterCAFile), Cert: cert, Key: key})
	require.NoError(t, err)
	assert.ErrorContains(t, IssueNodeFiles(dir, "node4", nil, time.Now()), "exists", "no node certificate is overwritten")
}

func TestLoadClusterTLSRefuses(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, InitClusterTLS(filepath.Join(dir, "a"), 1, nil, time.Now()))
	require.NoError(t, InitClusterTLS(filepath.Join(dir, "b"), 1, nil, time.Now()))
	caA := filepath.Join(dir, "a", ClusterCAFile)
	certB, keyB := ClusterNodeFiles(filepath.Join(dir, "b"), "node1")
	certA, keyA := ClusterNodeFiles(filepath.Join(dir, "a"), "node1")

	tests := []struct {
		name  string
		files ClusterTLSFiles
		msg   string
	}{
		{"another CA's node", ClusterTLSFiles{CA: caA, Cert: certB, Key: keyB}, "not a cluster node"},
		{"key of another node", ClusterTLSFiles{CA: caA, Cert: certA, Key: keyB}, "private key does not match"},
		{"no CA file", ClusterTLSFiles{CA: filepath.Join(dir, "nope.pem"), Cert: certA, Key: keyA}, "no such file"},
		{"CA file without a certificate", ClusterTLSFiles{CA: keyA, Cert: certA, Key: keyA}, "no PEM certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := LoadClusterTLS(tt.files)
			assert.ErrorContains(t, err, tt.msg)
		})
	}
}

// TestClusterTLSConfigs checks the two ends of a node connection: TLS 1.3
// only, a client certificate of the cluster CA required.
func TestClusterTLSConfigs(t *testing.T) {
	ct := testClusterTLS(t, 1)[0]
	srv := ct.serverConfig()
	assert.Equal(t, uint16(tls.VersionTLS13), srv.MinVersion)
	assert.Equal(t, tls.RequireAndVerifyClientCert, srv.ClientAuth)
	cli := ct.clientConfig()
	assert.Equal(t, uint16(tls.VersionTLS13), cli.MinVersion)
	require.NotNil(t, cli.VerifyConnection, "the server's chain is checked against the cluster CA")
	assert.ErrorIs(t, cli.VerifyConnection(tls.ConnectionState{}), ErrNotNode)
	self := &x509.Certificate{Raw: []byte("x")}
	assert.ErrorIs(t, cli.VerifyConnection(tls.ConnectionState{PeerCertificates: []*x509.Certificate{self}}), ErrNotNode)
}

// testClusterTLS makes a cluster CA and n node identities node1..nodeN.
func testClusterTLS(tb testing.TB, n int) []*ClusterTLS {
	tb.Helper()
	dir := tb.TempDir()
	require.NoError(tb, InitClusterTLS(dir, n, []string{"127.0.0.1"}, time.Now()))
	out := make([]*ClusterTLS, n)
	for i := range out {
		cert, key := ClusterNodeFiles(dir, "node"+string(rune('1'+i)))
		ct, err := LoadClusterTLS(ClusterTLSFiles{CA: filepath.Join(dir, ClusterCAFile), Cert: cert, Key: key})
		require.NoError(tb, err)
		out[i] = ct
	}
	return out
}
