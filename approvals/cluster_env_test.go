package approvals

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/stretchr/testify/require"

	"github.com/jitssh/jitssh/audit"
	"github.com/jitssh/jitssh/ca"
)

// memNet is a network of named addresses whose links can be cut and
// restored. Each name is served by a TCP listener on loopback; cutting a
// link closes the connections dialed across it and refuses new ones, both
// ways (the far end of a closed connection reads its end at once).
type memNet struct {
	mu    sync.Mutex
	addrs map[string]string // name → loopback address
	cut   map[[2]string]bool
	conns map[[2]string][]net.Conn
}

func newMemNet() *memNet {
	return &memNet{addrs: map[string]string{}, cut: map[[2]string]bool{}, conns: map[[2]string][]net.Conn{}}
}

func link(a, b string) [2]string {
	if a > b {
		a, b = b, a
	}
	return [2]string{a, b}
}

// listen opens the listener of name.
func (n *memNet) listen(tb testing.TB, name string) net.Listener {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(tb, err)
	n.mu.Lock()
	defer n.mu.Unlock()
	n.addrs[name] = l.Addr().String()
	return l
}

// dialer returns how the node named from dials.
func (n *memNet) dialer(from string) dialFunc {
	return func(ctx context.Context, to string) (net.Conn, error) {
		n.mu.Lock()
		addr, ok := n.addrs[to]
		k := link(from, to)
		cut := n.cut[k]
		n.mu.Unlock()
		if cut {
			return nil, fmt.Errorf("dial %s from %s: link cut", to, from)
		}
		if !ok {
			return nil, fmt.Errorf("dial %s: no such node", to)
		}
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		n.mu.Lock()
		defer n.mu.Unlock()
		if n.cut[k] {
			c.Close()
			return nil, fmt.Errorf("dial %s from %s: link cut", to, from)
		}
		n.conns[k] = append(n.conns[k], c)
		return c, nil
	}
}

// partition cuts every link between the two groups.
func (n *memNet) partition(as, bs []string) {
	n.mu.Lock()
	var closing []net.Conn
	for _, a := range as {
		for _, b := range bs {
			k := link(a, b)
			n.cut[k] = true
			closing = append(closing, n.conns[k]...)
			delete(n.conns, k)
		}
	}
	n.mu.Unlock()
	for _, c := range closing {
		c.Close()
	}
}

// heal restores every link.
func (n *memNet) heal() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.cut = map[[2]string]bool{}
}

// testCluster is a cluster of Services in one process, on a memNet.
type testCluster struct {
	net       *memNet
	authority *ca.Authority
	tls       []*ClusterTLS
	nodes     []*testNode
	policy    *Policy
	tune      func(*raft.Config)
	timeout   time.Duration  // raft's
	wait      time.Duration  // how long writes wait for a leader
	tweak     func(*Options) // changes every node's options before it opens; nil: none
}

type testNode struct {
	*Service
	id, addr string
	dir      string
	log      *audit.Log
	opts     Options
	join     []string // for a node added later
	expect   int      // bootstrap_expect; 0: all nodes, -1: none
}

// clusterRaftTimeout is raft's timeout in in-process cluster tests: short,
// but long enough that a busy machine does not flap leadership; and how
// long a write waits for a leader there.
var (
	clusterRaftTimeout = map[bool]time.Duration{false: 100 * time.Millisecond, true: 300 * time.Millisecond}[raceEnabled]
	clusterApplyWait   = map[bool]time.Duration{false: 2 * time.Second, true: 6 * time.Second}[raceEnabled]
)

// newTestCluster starts n nodes that found a cluster together.
func newTestCluster(tb testing.TB, n int, tune func(*raft.Config)) *testCluster {
	tb.Helper()
	return newTestClusterTimed(tb, n, nil, tune, clusterRaftTimeout, clusterApplyWait)
}

// newTestClusterTimed is newTestCluster under policy p (nil: the dev
// policy) with raft timeout timeout, whose writes wait up to wait for a
// leader.
func newTestClusterTimed(tb testing.TB, n int, p *Policy, tune func(*raft.Config), timeout, wait time.Duration) *testCluster {
	tb.Helper()
	if p == nil {
		p = devPolicy(tb)
	}
	// One identity more than nodes, for a node that joins later.
	c := &testCluster{net: newMemNet(), authority: newCAKey(tb), tls: testClusterTLS(tb, n+1), policy: p, tune: tune,
		timeout: timeout, wait: wait}
	dir := tb.TempDir()
	for i := range n {
		id := fmt.Sprintf("node%d", i+1)
		c.nodes = append(c.nodes, &testNode{id: id, addr: id + ":7000", dir: filepath.Join(dir, id)})
	}
	for i := range c.nodes {
		c.start(tb, i)
	}
	c.awaitReady(tb)
	return c
}

// addNode starts one more node, with the spare identity, that founds
// nothing and asks the peers in join (if any) to add it.
func (c *testCluster) addNode(tb testing.TB, join []string) *testNode {
	tb.Helper()
	i := len(c.nodes)
	id := fmt.Sprintf("node%d", i+1)
	nd := &testNode{id: id, addr: id + ":7000", dir: filepath.Join(filepath.Dir(c.nodes[0].dir), id), join: join, expect: -1}
	c.nodes = append(c.nodes, nd)
	c.start(tb, i)
	return nd
}

// start opens node i on its data dir.
func (c *testCluster) start(tb testing.TB, i int) {
	tb.Helper()
	nd := c.nodes[i]
	join, expect := nd.join, nd.expect
	if expect == 0 {
		expect = len(c.nodes)
		for _, o := range c.nodes {
			if o != nd {
				join = append(join, o.addr)
			}
		}
	}
	expect = max(expect, 0)
	require.NoError(tb, os.MkdirAll(nd.dir, 0o700))
	log, err := audit.Open(filepath.Join(nd.dir, "audit.log"), audit.Options{Journal: true, RepairTornTail: true, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(tb, err)
	nd.log = log
	nd.opts = Options{
		DataDir:     filepath.Join(nd.dir, "data"),
		Policy:      c.policy,
		Authority:   c.authority,
		Logger:      slog.New(slog.DiscardHandler),
		Audit:       log,
		RaftTimeout: c.timeout,
		Cluster: &ClusterOptions{
			NodeID: nd.id, Advertise: nd.addr, BootstrapExpect: expect, Join: join,
			Listener: c.net.listen(tb, nd.addr), TLS: c.tls[i], dial: c.net.dialer(nd.addr), tune: c.tune,
		},
		applyWait: c.wait,
	}
	if c.tweak != nil {
		c.tweak(&nd.opts)
	}
	if os.Getenv("JITSSH_TEST_CLUSTER_LOG") != "" {
		nd.opts.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("node", nd.id)
	}
	s, err := Open(nd.opts)
	require.NoError(tb, err)
	nd.Service = s
	tb.Cleanup(func() { c.stop(i) })
}

// stop closes node i, if it runs.
func (c *testCluster) stop(i int) {
	nd := c.nodes[i]
	if nd.Service == nil {
		return
	}
	nd.Service.Close()
	nd.log.Close()
	nd.Service = nil
}

// awaitReady waits until every running node is ready.
func (c *testCluster) awaitReady(tb testing.TB) {
	tb.Helper()
	for _, nd := range c.nodes {
		if nd.Service == nil {
			continue
		}
		select {
		case <-nd.Ready():
		case <-time.After(30 * time.Second):
			tb.Fatalf("%s not ready: %+v", nd.id, nd.Status())
		}
	}
}

// leader returns the node that leads, waiting for one among the running
// nodes not in except.
func (c *testCluster) leader(tb testing.TB, except ...*testNode) *testNode {
	tb.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		for _, nd := range c.nodes {
			if nd.Service != nil && nd.node.isLeader() && !containsNode(except, nd) {
				return nd
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	tb.Fatal("no leader elected")
	return nil
}

func containsNode(l []*testNode, nd *testNode) bool {
	for _, o := range l {
		if o == nd {
			return true
		}
	}
	return false
}

// followers returns the running nodes other than leader.
func (c *testCluster) followers(leader *testNode) []*testNode {
	var out []*testNode
	for _, nd := range c.nodes {
		if nd != leader && nd.Service != nil {
			out = append(out, nd)
		}
	}
	return out
}

// converged waits until every running node has applied the same index
// and written the same audit log, and returns the logs' bytes.
func (c *testCluster) converged(tb testing.TB) [][]byte {
	tb.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var logs [][]byte
		var applied []uint64
		same := true
		for _, nd := range c.nodes {
			if nd.Service == nil {
				continue
			}
			data, err := os.ReadFile(filepath.Join(nd.dir, "audit.log"))
			require.NoError(tb, err)
			logs = append(logs, data)
			applied = append(applied, nd.fsm.appliedIndex())
			same = same && bytes.Equal(logs[0], data) && applied[0] == applied[len(applied)-1]
		}
		if same {
			return logs
		}
		if time.Now().After(deadline) {
			tb.Fatalf("nodes do not converge: applied %v, audit log sizes %v", applied, sizes(logs))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func sizes(logs [][]byte) []int {
	out := make([]int, len(logs))
	for i, l := range logs {
		out[i] = len(l)
	}
	return out
}

// errNoLeaderOr reports whether err is what a node without a reachable
// leader answers.
func errNoLeaderOr(err error) bool {
	return errors.Is(err, ErrNoLeader)
}

// The cluster tests name people, as the lifecycle tests do: these methods
// call the node's Service as the person's first key (see testEnv's), and
// its reads see every request.

func (nd *testNode) as(person string) Actor { return actorOf(nd.Policy(), person) }

func (nd *testNode) Submit(ctx context.Context, person string, in SubmitInput) (*Request, error) {
	return nd.Service.Submit(ctx, nd.as(person), in)
}

func (nd *testNode) Approve(ctx context.Context, person, id string, in DecisionInput) (*Request, error) {
	return nd.Service.Approve(ctx, nd.as(person), id, in)
}

func (nd *testNode) Deny(ctx context.Context, person, id string, in DecisionInput) (*Request, error) {
	return nd.Service.Deny(ctx, nd.as(person), id, in)
}

func (nd *testNode) Cancel(ctx context.Context, person, id string) (*Request, error) {
	return nd.Service.Cancel(ctx, nd.as(person), id)
}

func (nd *testNode) Revoke(ctx context.Context, person, id string, serial uint64, reason string) (*Request, error) {
	return nd.Service.Revoke(ctx, nd.as(person), id, serial, reason)
}

func (nd *testNode) Release(ctx context.Context, person, id string) (*Request, error) {
	return nd.Service.Release(ctx, nd.as(person), id)
}

func (nd *testNode) Get(id string) (*Request, error) { return nd.Service.getAny(id) }

func (nd *testNode) List(f ListFilter) []*Request { return nd.Service.listAny(f) }

func (nd *testNode) Wait(ctx context.Context, id string, after uint64) (*Request, error) {
	return nd.Service.wait(ctx, id, after, anyone)
}
