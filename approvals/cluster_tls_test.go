package approvals

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// newLoneNode starts a cluster of one on loopback TCP with the given TLS
// identity, and returns it with its address.
func newLoneNode(tb testing.TB, id *ClusterTLS) (*Service, string) {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(tb, err)
	dir := tb.TempDir()
	s, err := Open(Options{
		DataDir: filepath.Join(dir, "data"), Policy: devPolicy(tb), Authority: newCAKey(tb),
		Logger: slog.New(slog.DiscardHandler), RaftTimeout: clusterRaftTimeout,
		Cluster: &ClusterOptions{NodeID: id.NodeID(), Advertise: ln.Addr().String(), BootstrapExpect: 1, Listener: ln, TLS: id},
	})
	require.NoError(tb, err)
	tb.Cleanup(func() { s.Close() })
	select {
	case <-s.Ready():
	case <-time.After(30 * time.Second):
		tb.Fatalf("not ready: %+v", s.Status())
	}
	return s, ln.Addr().String()
}

// TestClusterRefusesStrangers: only holders of a node certificate of the
// cluster's CA get past the TLS handshake; a certificate of another CA, no
// certificate, or TLS below 1.3 is refused before any call is read.
func TestClusterRefusesStrangers(t *testing.T) {
	ours := testClusterTLS(t, 2)
	theirs := testClusterTLS(t, 1)[0]
	s, addr := newLoneNode(t, ours[0])
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()

	var h helloReply
	require.NoError(t, newRPCClient(nil, ours[1]).call(ctx, addr, rpcHello, nil, &h), "a node of the cluster is heard")
	assert.Equal(t, "node1", h.ID)

	err := newRPCClient(nil, theirs).call(ctx, addr, rpcHello, nil, &h)
	require.Error(t, err, "a node of another cluster is refused")

	other := ours[1].clientConfig()
	tests := []struct {
		name string
		conf *tls.Config
	}{
		{"no client certificate", &tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true, VerifyConnection: other.VerifyConnection}},
		{"another CA's certificate", theirs.clientConfig()},
		{"TLS 1.2", func() *tls.Config {
			c := ours[1].clientConfig()
			c.MinVersion, c.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
			return c
		}()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw, err := net.Dial("tcp", addr)
			require.NoError(t, err)
			defer raw.Close()
			conn := tls.Client(raw, tt.conf)
			_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
			err = conn.Handshake()
			if err == nil {
				// In TLS 1.3 the client finishes first; the server's
				// refusal arrives on the first read. A server that let
				// it in would answer the call.
				_, err = conn.Write([]byte{connRPC})
				if err == nil {
					err = writeFrame(conn, rpcRequest{Method: rpcHello})
				}
				if err == nil {
					var resp rpcResponse
					err = readFrame(conn, &resp)
				}
			}
			require.Error(t, err)
			assert.NotErrorIs(t, err, os.ErrDeadlineExceeded, "refused, not ignored")
		})
	}
	assert.True(t, s.Status().Healthy, "%v", s.Status().Problems)
}

// TestClusterClientRefusesStrangeServer: a node does not talk to a server
// without a node certificate of its cluster, whatever the address.
func TestClusterClientRefusesStrangeServer(t *testing.T) {
	ours := testClusterTLS(t, 1)[0]
	theirs := testClusterTLS(t, 1)[0]
	ln, err := tls.Listen("tcp", "127.0.0.1:0", theirs.serverConfig())
	require.NoError(t, err)
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(io.Discard, c)
			}()
		}
	}()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	err = newRPCClient(nil, ours).call(ctx, ln.Addr().String(), rpcHello, nil, nil)
	require.ErrorIs(t, err, ErrNotNode)
}
