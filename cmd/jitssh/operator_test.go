package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"

	"github.com/jitssh/jitssh/approvals"
	"github.com/jitssh/jitssh/audit"
	"github.com/jitssh/jitssh/ca"
)

func TestOperatorTLSInit(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	r := runJitssh(t, nil, "operator", "tls", "init", "--dir", dir, "--nodes", "3", "--host", "127.0.0.1")
	require.Equal(t, 0, r.code, r.stderr)
	for _, f := range []struct {
		name string
		mode os.FileMode
	}{{"ca.pem", 0o644}, {"ca-key.pem", 0o600}, {"node1.pem", 0o644}, {"node1-key.pem", 0o600}, {"node3-key.pem", 0o600}} {
		fi, err := os.Stat(filepath.Join(dir, f.name))
		require.NoError(t, err, f.name)
		assert.Equal(t, f.mode, fi.Mode().Perm(), f.name)
	}

	r = runJitssh(t, nil, "operator", "tls", "init", "--dir", dir, "--nodes", "3")
	assertOneLineError(t, r, exitError, "exists")
	r = runJitssh(t, nil, "operator", "tls", "init", "--dir", t.TempDir(), "--nodes", "0")
	assertOneLineError(t, r, exitUsage, "--nodes 0")

	r = runJitssh(t, nil, "operator", "tls", "cert", "--dir", dir, "--id", "node4")
	require.Equal(t, 0, r.code, r.stderr)
	_, err := approvals.LoadClusterTLS(approvals.ClusterTLSFiles{
		CA: filepath.Join(dir, "ca.pem"), Cert: filepath.Join(dir, "node4.pem"), Key: filepath.Join(dir, "node4-key.pem"),
	})
	require.NoError(t, err, "a later node certificate is one of the cluster's")
}

func TestOperatorWithoutCluster(t *testing.T) {
	d := startInProcessDaemon(t, "")
	r := runJitssh(t, nil, "operator", "members", "--config", filepath.Join(d.dir, "server.yaml"))
	assertOneLineError(t, r, exitError, "has no cluster block")
	r = runJitssh(t, nil, "operator", "members")
	assertOneLineError(t, r, exitUsage, "missing --config")
}

// clusterDaemon is one of the daemons of TestClusterDaemons.
type clusterDaemon struct {
	id, config string
	addrs      daemonAddrs
	stop       func()
}

// TestClusterDaemons runs three daemons with cluster blocks made by
// `jitssh operator tls init`: they found a cluster, /healthz reports each
// node's role, `jitssh operator members` lists all three as healthy, a
// request made on one node is approved on another, and `operator snapshot
// save` writes the state.
func TestClusterDaemons(t *testing.T) {
	dir := t.TempDir()
	_, err := ca.Init(filepath.Join(dir, "ca"), ca.Ed25519)
	require.NoError(t, err)
	require.Equal(t, 0, runJitssh(t, nil, "operator", "tls", "init", "--dir", filepath.Join(dir, "tls"), "--nodes", "3").code)
	var people strings.Builder
	for _, p := range []struct{ name, groups string }{{"alice", "dev"}, {"bob", "dev, approvers"}} {
		key := filepath.Join(dir, p.name)
		require.NoError(t, ensureKey(key))
		pub, err := os.ReadFile(key + ".pub")
		require.NoError(t, err)
		fmt.Fprintf(&people, "  - name: %s\n    keys: [%q]\n    groups: [%s]\n", p.name, strings.TrimSpace(string(pub)), p.groups)
	}
	binds := []string{freeAddr(t), freeAddr(t), freeAddr(t)}
	nodes := make([]*clusterDaemon, 3)
	for i := range nodes {
		id := fmt.Sprintf("node%d", i+1)
		var join []string
		for j, b := range binds {
			if j != i {
				join = append(join, b)
			}
		}
		cfg := fmt.Sprintf(`listen: 127.0.0.1:0
http_listen: 127.0.0.1:0
host_key: %[1]s/host_key
data_dir: %[1]s/data
ca_dir: ca
audit_log: %[1]s/audit.log
cluster:
  node_id: %[1]s
  bind: %[2]s
  bootstrap_expect: 3
  join: [%[3]s]
  tls: {ca: tls/ca.pem, cert: tls/%[1]s.pem, key: tls/%[1]s-key.pem}
people:
%[4]srules:
  - {name: read, groups: [dev], repos: ["demo/*"], refs: ["*"], access: [read], auto_approve: true}
  - {name: write, groups: [dev], repos: ["demo/*"], refs: ["refs/heads/*"], access: [write], approvals: [{group: approvers, count: 1}]}
`, id, binds[i], strings.Join(join, ", "), people.String())
		path := filepath.Join(dir, id+".yaml")
		require.NoError(t, os.MkdirAll(filepath.Join(dir, id), 0o700))
		require.NoError(t, os.WriteFile(path, []byte(cfg), 0o600))
		nodes[i] = &clusterDaemon{id: id, config: path}
	}
	startClusterDaemons(t, nodes)

	// Every node becomes healthy; exactly one leads.
	leaders := 0
	for _, nd := range nodes {
		st := awaitHealthy(t, "http://"+nd.addrs.HTTP.String())
		assert.Equal(t, nd.id, st.ID)
		assert.Equal(t, 3, st.Voters)
		if st.Role == "leader" {
			leaders++
		}
		assert.Equal(t, "ok\n", string(httpGet(t, "http://"+nd.addrs.HTTP.String()+"/healthz")), "plain /healthz as before")
	}
	assert.Equal(t, 1, leaders)

	r := runJitssh(t, nil, "operator", "members", "--json", "--config", nodes[1].config)
	require.Equal(t, 0, r.code, r.stderr)
	var ms []approvals.Member
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &ms))
	require.Len(t, ms, 3)
	for _, m := range ms {
		assert.True(t, m.Healthy, "%s: %+v", m.ID, m)
		assert.True(t, m.Voter)
	}
	r = runJitssh(t, nil, "operator", "members", "--config", nodes[2].config)
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, "leader")
	assert.Equal(t, 4, strings.Count(r.stdout, "\n"), r.stdout)

	// A request made on one node is approved on another.
	known := filepath.Join(dir, "known_hosts")
	var hosts strings.Builder
	for _, nd := range nodes {
		fmt.Fprintf(&hosts, "[127.0.0.1]:%d %s", nd.addrs.API.(*net.TCPAddr).Port, ssh.MarshalAuthorizedKey(nd.addrs.HostKey))
	}
	require.NoError(t, os.WriteFile(known, []byte(hosts.String()), 0o644))
	alice, err := connectAPI(nodes[0].addrs.API.String(), filepath.Join(dir, "alice"), known)
	require.NoError(t, err)
	defer alice.Close()
	d := &inProcessDaemon{dir: dir, knownHosts: known}
	sub := d.submit(t, alice, "alice", apiRequest{Repo: "demo/app", Ref: "refs/heads/fix", Access: "write", TTL: "10m", Reason: "fix"})
	require.Equal(t, approvals.StatePending, sub.Request.State)
	bob, err := connectAPI(nodes[2].addrs.API.String(), filepath.Join(dir, "bob"), known)
	require.NoError(t, err)
	defer bob.Close()
	got, err := bob.call(methodGet, apiRequest{ID: sub.Request.ID})
	require.NoError(t, err)
	req := apiRequest{ID: sub.Request.ID, Reason: "ok"}
	req.Signature, err = bob.sign(audit.NamespaceApprove, decisionStatement(methodApprove, "bob", got.Request, req).Message())
	require.NoError(t, err)
	approved, err := bob.call(methodApprove, req)
	require.NoError(t, err)
	assert.NotEmpty(t, approved.Request.Certificate)

	snap := filepath.Join(dir, "backup.snap")
	r = runJitssh(t, nil, "operator", "snapshot", "save", "--config", nodes[0].config, snap)
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, "saved 1 requests")
	fi, err := os.Stat(snap)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())

	// Membership, from any node: out and back in.
	r = runJitssh(t, nil, "operator", "remove", "--config", nodes[0].config, "node3")
	require.Equal(t, 0, r.code, r.stderr)
	r = runJitssh(t, nil, "operator", "members", "--json", "--config", nodes[0].config)
	require.Equal(t, 0, r.code, r.stderr)
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &ms))
	assert.Len(t, ms, 2)
	r = runJitssh(t, nil, "operator", "join", "--config", nodes[1].config, binds[2])
	require.Equal(t, 0, r.code, r.stderr)
	r = runJitssh(t, nil, "operator", "members", "--json", "--config", nodes[0].config)
	require.Equal(t, 0, r.code, r.stderr)
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &ms))
	assert.Len(t, ms, 3)

	r = runJitssh(t, nil, "operator", "snapshot", "restore", "--config", nodes[2].config, snap)
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, "restored 1 requests")
	assert.Contains(t, r.stdout, "epoch 1")
	r = runJitssh(t, nil, "operator", "snapshot", "restore", "--config", nodes[2].config, nodes[0].config)
	assertOneLineError(t, r, exitError, "not a whole snapshot")
}

// awaitHealthy polls /healthz as JSON until the node says it is healthy.
func awaitHealthy(t *testing.T, base string) approvals.NodeStatus {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(base + "/healthz?format=json")
		require.NoError(t, err)
		var st approvals.NodeStatus
		err = json.NewDecoder(resp.Body).Decode(&st)
		resp.Body.Close()
		require.NoError(t, err)
		if st.Healthy {
			require.Equal(t, http.StatusOK, resp.StatusCode)
			return st
		}
		require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, "an unhealthy node says so")
		if time.Now().After(deadline) {
			t.Fatalf("%s never healthy: %v", base, st.Problems)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func testDaemonLogger(id string) *slog.Logger {
	if os.Getenv("JITSSH_TEST_CLUSTER_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, nil)).With("node", id)
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// startClusterDaemons starts every node's daemon at once, since a cluster
// forms only once enough of them are up, and stops them when the test ends.
func startClusterDaemons(t *testing.T, nodes []*clusterDaemon) {
	t.Helper()
	var wg sync.WaitGroup
	for _, nd := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithCancel(context.Background())
			ready := make(chan daemonAddrs, 1)
			done := make(chan error, 1)
			go func() { done <- runDaemon(ctx, nd.config, testDaemonLogger(nd.id), ready) }()
			select {
			case nd.addrs = <-ready:
			case err := <-done:
				t.Errorf("%s did not start: %v", nd.id, err)
				cancel()
				return
			}
			nd.stop = sync.OnceFunc(func() { cancel(); <-done })
		}()
	}
	wg.Wait()
	for _, nd := range nodes {
		require.NotNil(t, nd.stop, nd.id)
		t.Cleanup(nd.stop)
	}
}
