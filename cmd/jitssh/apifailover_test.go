package main

import (
	"bufio"
	"context"
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

	"github.com/jitssh/jitssh/approvals"
	"github.com/jitssh/jitssh/audit"
	"github.com/jitssh/jitssh/ca"
)

// deadAddr is a loopback address nothing listens on.
func deadAddr(t *testing.T) string { return freeAddr(t) }

// personEnv is what d.env(person) gives, with JITSSH_SERVER set to
// servers.
func personEnv(d *inProcessDaemon, person, servers string) []string {
	return []string{"JITSSH_SERVER=" + servers, "JITSSH_IDENTITY=" + filepath.Join(d.dir, person),
		"JITSSH_KNOWN_HOSTS=" + d.knownHosts, "JITSSH_STATE_DIR=" + filepath.Join(d.dir, "state", person)}
}

// TestClientFailsOverToTheNextAddress runs every command that talks to the
// daemon with a dead address first: each succeeds on the next one,
// whether the addresses come from JITSSH_SERVER, one --server with
// commas, or --server repeated.
func TestClientFailsOverToTheNextAddress(t *testing.T) {
	needTool(t, "ssh-agent")
	d := startInProcessDaemon(t, "")
	live, dead := d.addrs.API.String(), deadAddr(t)
	servers := dead + "," + live
	sock := newAgent(t)
	alice := append(personEnv(d, "alice", servers), "SSH_AUTH_SOCK="+sock)
	bob := personEnv(d, "bob", servers)
	run := func(env []string, args ...string) string {
		t.Helper()
		r := runJitssh(t, env, args...)
		require.Equal(t, 0, r.code, "jitssh %v: %s", args, r.stderr)
		assert.NotContains(t, r.stderr, "warning", "a dead node is passed over quietly")
		return r.stdout
	}

	assert.Contains(t, run(alice, "request", "allowed"), "write")
	assert.Contains(t, run(alice, "request", "--dry-run", "--repo", "demo/app", "--branch", "main", "--access", "write"), "allowed")
	id := strings.TrimSpace(run(alice, "request", "--no-wait", "--repo", "demo/app", "--branch", "main", "--access", "write", "--ttl", "10m", "--reason", "x"))
	require.True(t, strings.HasPrefix(id, "req-"), id)
	assert.Contains(t, run(bob, "requests", "list"), id)
	assert.Contains(t, run(bob, "requests", "show", id), "pending")
	assert.Contains(t, run(bob, "approve", id, "--reason", "ok"), "issued")
	assert.Contains(t, run(alice, "request", "wait", id), "issued")
	assert.Contains(t, run(bob, "revoke", id, "--reason", "done"), "revoked")
	assert.Contains(t, run(alice, "status"), "revoked", "status asks the daemon")
	assert.Contains(t, run(alice, "whoami"), "alice")

	other := strings.TrimSpace(run(alice, "request", "--no-wait", "--repo", "demo/app", "--branch", "dev", "--access", "write", "--ttl", "10m", "--reason", "y"))
	assert.Contains(t, run(bob, "deny", other, "--reason", "no"), "denied")
	third := strings.TrimSpace(run(alice, "request", "--no-wait", "--repo", "demo/app", "--branch", "dev", "--access", "write", "--ttl", "10m", "--reason", "z"))
	assert.Contains(t, run(alice, "request", "cancel", third), "cancelled")

	// A read grant in the foreground, then released.
	base := personEnv(d, "alice", "")
	flagged := append(base[1:], "SSH_AUTH_SOCK="+sock)
	assert.Contains(t, run(flagged, "request", "--server", servers, "--repo", "demo/app", "--ref", "*", "--ttl", "10m", "--reason", "r"), "issued")
	assert.Contains(t, run(flagged, "release", "--all", "--server", dead, "--server", live), "released")

	// A watch started past a dead node sees a new request.
	watch := exec.Command(jitsshBin, "requests", "watch")
	watch.Env = append(os.Environ(), bob...)
	out, err := watch.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, watch.Start())
	t.Cleanup(func() { watch.Process.Kill(); watch.Wait() })
	id = strings.TrimSpace(run(alice, "request", "--no-wait", "--repo", "demo/app", "--branch", "w", "--access", "write", "--ttl", "10m", "--reason", "w"))
	lines := bufio.NewScanner(out)
	for lines.Scan() {
		if strings.Contains(lines.Text(), id) {
			break
		}
	}
	require.NoError(t, lines.Err())
}

// TestClientAllAddressesDead: when no address answers, every command says
// so in one line that names each address and what it did.
func TestClientAllAddressesDead(t *testing.T) {
	d := startInProcessDaemon(t, "")
	one, two := deadAddr(t), deadAddr(t)
	env := personEnv(d, "bob", one+","+two)
	const id = "req-01J00000000000000000000000"
	// request wait needs the key --no-wait kept.
	pending := filepath.Join(d.dir, "state", "bob", "pending")
	require.NoError(t, os.MkdirAll(pending, 0o700))
	require.NoError(t, ensureKey(filepath.Join(pending, id+".key")))
	for _, args := range [][]string{
		{"request", "--out", filepath.Join(t.TempDir(), "key"), "--repo", "demo/app", "--ref", "*", "--reason", "x"},
		{"request", "--dry-run", "--repo", "demo/app", "--ref", "*"},
		{"request", "allowed"},
		{"request", "wait", id, "--out", filepath.Join(t.TempDir(), "key")},
		{"request", "cancel", id},
		{"requests", "list"},
		{"requests", "show", id},
		{"requests", "watch"},
		{"approve", id},
		{"deny", id, "--reason", "no"},
		{"revoke", id, "--reason", "no"},
		{"release", id},
		{"whoami"},
	} {
		t.Run(strings.Join(args[:min(2, len(args))], " "), func(t *testing.T) {
			r := runJitssh(t, env, args...)
			assertOneLineError(t, r, exitError, fmt.Sprintf("no daemon answered at any of %s, %s: %s refused the connection; %s refused the connection", one, two, one, two))
		})
	}
}

// TestClientDoesNotFailOverARefusal: a refusal is the cluster's answer,
// not a node's failure, and is not asked again elsewhere. Two separate
// daemons know the same people; a request made on the second is unknown
// to the first, which answers first and is believed.
func TestClientDoesNotFailOverARefusal(t *testing.T) {
	needTool(t, "ssh-agent")
	first := startInProcessDaemon(t, "")
	dir := t.TempDir()
	for _, p := range []string{"alice", "alice.pub", "bob", "bob.pub"} {
		data, err := os.ReadFile(filepath.Join(first.dir, p))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(dir, p), data, 0o600))
	}
	second := startInProcessDaemonIn(t, dir, "")
	known := filepath.Join(t.TempDir(), "known_hosts")
	require.NoError(t, os.WriteFile(known, []byte(readFile(t, first.knownHosts)+"\n"+readFile(t, second.knownHosts)), 0o644))
	withKnown := func(env []string) []string { return append(env, "JITSSH_KNOWN_HOSTS="+known) }

	id := noWait(t, append(second.env("alice"), "SSH_AUTH_SOCK="+newAgent(t)), "--repo", "demo/app", "--branch", "main", "--access", "write", "--ttl", "10m", "--reason", "x")
	both := first.addrs.API.String() + "," + second.addrs.API.String()
	for _, args := range [][]string{
		{"requests", "show", id},
		{"approve", id, "--reason", "ok"},
		{"revoke", id, "--reason", "no"},
	} {
		r := runJitssh(t, withKnown(personEnv(first, "bob", both)), args...)
		assertOneLineError(t, r, exitError, "not found")
	}
	got, err := second.client(t, "bob").call(methodGet, apiRequest{ID: id})
	require.NoError(t, err)
	assert.Equal(t, approvals.StatePending, got.Request.State, "the second daemon was never asked")

	// A node whose host key is not the pinned one is passed over, out
	// loud, and never used.
	wrong := filepath.Join(t.TempDir(), "known_hosts")
	firstPort := first.addrs.API.(*net.TCPAddr).Port
	lines := fmt.Sprintf("[127.0.0.1]:%d %s%s\n", firstPort, ssh.MarshalAuthorizedKey(second.addrs.HostKey), readFile(t, second.knownHosts))
	require.NoError(t, os.WriteFile(wrong, []byte(lines), 0o644))
	r := runJitssh(t, append(personEnv(first, "bob", both), "JITSSH_KNOWN_HOSTS="+wrong), "requests", "show", id)
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, id, "answered by the second daemon")
	assert.Contains(t, r.stderr, fmt.Sprintf("warning: the daemon at %s presented a host key that does not match the known_hosts file", first.addrs.API))
}

// TestClientFailoverInCluster: a waiting `jitssh request` whose node
// stops picks the wait up on another node, and gets the certificate that
// an approval made on a third node brings; a `requests watch` on the
// stopped node goes on elsewhere and sees the approval.
func TestClientFailoverInCluster(t *testing.T) {
	needTool(t, "ssh-agent")
	nodes, dir, known := startTestCluster(t, 3)
	var servers []string
	for _, nd := range nodes {
		servers = append(servers, nd.addrs.API.String())
	}
	d := &inProcessDaemon{dir: dir, knownHosts: known}
	bob, err := connectAPI(nodes[2].addrs.API.String(), filepath.Join(dir, "bob"), known)
	require.NoError(t, err)
	defer bob.Close()

	env := append(personEnv(d, "alice", strings.Join(servers, ",")), "SSH_AUTH_SOCK="+newAgent(t))
	cmd, stdout, stderr, pending := startWaitingRequest(t, bob, env)
	watch := exec.Command(jitsshBin, "requests", "watch")
	watch.Env = append(os.Environ(), personEnv(d, "bob", strings.Join(servers, ","))...)
	watched, err := watch.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, watch.Start())
	t.Cleanup(func() { watch.Process.Kill(); watch.Wait() })
	lines := bufio.NewScanner(watched)
	require.True(t, lines.Scan(), "the watch lists the pending request")
	require.Contains(t, lines.Text(), pending.ID+"  alice")
	require.Contains(t, lines.Text(), "pending")
	nodes[0].stop()

	req := apiRequest{ID: pending.ID, Reason: "ok"}
	req.Signature, err = bob.sign(audit.NamespaceApprove, decisionStatement(methodApprove, "bob", pending, req).Message())
	require.NoError(t, err)
	_, err = bob.call(methodApprove, req)
	require.NoError(t, err)
	require.NoError(t, cmd.Wait(), "stdout: %s\nstderr: %s", stdout, stderr)
	assert.Contains(t, stdout.String(), "issued "+pending.ID)
	stopWatch := time.AfterFunc(20*time.Second, func() { watch.Process.Kill() })
	defer stopWatch.Stop()
	for lines.Scan() {
		if strings.Contains(lines.Text(), pending.ID) && strings.Contains(lines.Text(), "approved/active") {
			return
		}
	}
	t.Fatalf("the watch never showed the approval: %v", lines.Err())
}

// startTestCluster starts n in-process daemons that found one cluster,
// with people alice (dev) and bob (approvers), and returns them, their
// directory (which holds the people's keys) and a known_hosts file
// pinning every node.
func startTestCluster(t *testing.T, n int) ([]*clusterDaemon, string, string) {
	t.Helper()
	dir := t.TempDir()
	_, err := ca.Init(filepath.Join(dir, "ca"), ca.Ed25519)
	require.NoError(t, err)
	require.NoError(t, approvals.InitClusterTLS(filepath.Join(dir, "tls"), n, nil, time.Now()))
	var people strings.Builder
	for _, p := range []struct{ name, groups string }{{"alice", "dev"}, {"bob", "dev, approvers"}} {
		key := filepath.Join(dir, p.name)
		require.NoError(t, ensureKey(key))
		pub, err := os.ReadFile(key + ".pub")
		require.NoError(t, err)
		fmt.Fprintf(&people, "  - name: %s\n    keys: [%q]\n    groups: [%s]\n", p.name, strings.TrimSpace(string(pub)), p.groups)
	}
	binds := make([]string, n)
	for i := range binds {
		binds[i] = freeAddr(t)
	}
	nodes := make([]*clusterDaemon, n)
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
  bootstrap_expect: %[5]d
  join: [%[3]s]
  tls: {ca: tls/ca.pem, cert: tls/%[1]s.pem, key: tls/%[1]s-key.pem}
people:
%[4]srules:
  - {name: read, groups: [dev], repos: ["demo/*"], refs: ["*"], access: [read], auto_approve: true}
  - {name: write, groups: [dev], repos: ["demo/*"], refs: ["refs/heads/*"], access: [write], approvals: [{group: approvers, count: 1}]}
`, id, binds[i], strings.Join(join, ", "), people.String(), n)
		path := filepath.Join(dir, id+".yaml")
		require.NoError(t, os.MkdirAll(filepath.Join(dir, id), 0o700))
		require.NoError(t, os.WriteFile(path, []byte(cfg), 0o600))
		nodes[i] = &clusterDaemon{id: id, config: path}
	}
	startClusterDaemons(t, nodes)
	var hosts strings.Builder
	for _, nd := range nodes {
		fmt.Fprintf(&hosts, "[127.0.0.1]:%d %s", nd.addrs.API.(*net.TCPAddr).Port, ssh.MarshalAuthorizedKey(nd.addrs.HostKey))
	}
	for _, nd := range nodes {
		awaitHealthy(t, "http://"+nd.addrs.HTTP.String())
	}
	known := filepath.Join(dir, "known_hosts")
	require.NoError(t, os.WriteFile(known, []byte(hosts.String()), 0o644))
	return nodes, dir, known
}

// TestWatchResumesAfterVersion: a watch that resumes on another node says
// the newest version it had; it gets every request changed since, in
// whatever state, and none it already had. A fresh watch gets the pending
// requests.
func TestWatchResumesAfterVersion(t *testing.T) {
	d := startInProcessDaemon(t, "")
	alice, bob := d.client(t, "alice"), d.client(t, "bob")
	pending := d.submit(t, alice, "alice", apiRequest{Repo: "demo/app", Ref: "refs/heads/main", Access: "write", TTL: "10m", Reason: "w"}).Request
	d.submit(t, alice, "alice", apiRequest{Repo: "demo/app", Ref: "*", Access: "read", TTL: "10m", Reason: "r"})
	list, err := bob.call(methodList, apiRequest{})
	require.NoError(t, err)
	var approved *approvals.Request
	for _, r := range list.Requests {
		if r.ID != pending.ID {
			approved = r
		}
	}
	require.NotNil(t, approved)
	require.Equal(t, approvals.StateApproved, approved.State)
	require.Greater(t, approved.Version, pending.Version)

	first := func(after uint64) *approvals.Request {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var got *approvals.Request
		require.NoError(t, bob.stream(ctx, methodWatch, apiRequest{After: after}, func(r *apiResponse) (bool, error) {
			got = r.Request
			return false, nil
		}))
		return got
	}
	assert.Equal(t, pending.ID, first(0).ID, "a fresh watch: the pending requests")
	assert.Equal(t, approved.ID, first(pending.Version).ID, "resumed: what changed since, approved or not, and not what it had")
}
