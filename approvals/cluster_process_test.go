package approvals

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"

	"github.com/jitssh/jitssh/audit"
	"github.com/jitssh/jitssh/ca"
)

// clusterChildEnv, when set to a node's config file, turns the test binary
// into that node of a cluster: it serves on loopback with TLS and takes
// commands on stdin, one per line, answering each with one line:
//
//	issue    submit an auto-approved request: "ok ID SERIAL" or "err ..."
//	status   "status ROLE APPLIED"
//	dump     "dump HASH COUNT": a hash of every request, and how many
//	get ID   "got ID SERIAL" when the request has its certificate
//
// It prints "ready" once it takes calls.
const clusterChildEnv = "JITSSH_APPROVALS_CLUSTER_CHILD"

// childConfig is what a cluster child is told.
type childConfig struct {
	ID      string          `json:"id"`
	Addr    string          `json:"addr"`
	Join    []string        `json:"join"`
	Expect  int             `json:"expect"`
	Dir     string          `json:"dir"`
	CADir   string          `json:"ca_dir"`
	TLS     ClusterTLSFiles `json:"tls"`
	Timeout time.Duration   `json:"timeout"`
}

func clusterChild(path string) int {
	fail := func(err error) int {
		fmt.Fprintln(os.Stderr, "cluster child:", err)
		return 1
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return fail(err)
	}
	var cfg childConfig
	if err := json.Unmarshal(data, &cfg); err != nil {
		return fail(err)
	}
	authority, err := ca.Load(cfg.CADir)
	if err != nil {
		return fail(err)
	}
	c, err := LoadConfig("testdata/dev-policy.yaml")
	if err != nil {
		return fail(err)
	}
	p, err := NewPolicy(c)
	if err != nil {
		return fail(err)
	}
	t, err := LoadClusterTLS(cfg.TLS)
	if err != nil {
		return fail(err)
	}
	log, err := audit.Open(filepath.Join(cfg.Dir, "audit.log"), audit.Options{Journal: true, RepairTornTail: true, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return fail(err)
	}
	defer log.Close()
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fail(err)
	}
	logger := slog.New(slog.DiscardHandler)
	if os.Getenv("JITSSH_TEST_CLUSTER_LOG") != "" {
		logger = slog.New(slog.NewTextHandler(os.Stderr, nil)).With("node", cfg.ID)
	}
	s, err := Open(Options{
		DataDir: filepath.Join(cfg.Dir, "data"), Policy: p, Authority: authority, Logger: logger, Audit: log,
		RaftTimeout: cfg.Timeout,
		Cluster: &ClusterOptions{
			NodeID: cfg.ID, Advertise: cfg.Addr, BootstrapExpect: cfg.Expect, Join: cfg.Join, Listener: ln, TLS: t,
		},
	})
	if err != nil {
		return fail(err)
	}
	defer s.Close()
	<-s.Ready()
	fmt.Println("ready")
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		cmd, arg, _ := strings.Cut(in.Text(), " ")
		switch cmd {
		case "get":
			r, err := s.getAny(arg)
			if err != nil || r.Certificate == "" {
				fmt.Printf("missing %s %v\n", arg, err)
				continue
			}
			fmt.Printf("got %s %d\n", r.ID, r.Serial)
		case "issue":
			raw, _, err := ed25519.GenerateKey(rand.Reader)
			if err != nil {
				return fail(err)
			}
			pub, err := ssh.NewPublicKey(raw)
			if err != nil {
				return fail(err)
			}
			r, err := s.Submit(context.Background(), actorOf(s.Policy(), "alice"), SubmitInput{Repo: "demo/app", Ref: "*", Access: "read", PublicKey: pub})
			if err != nil {
				fmt.Printf("err %s\n", strings.ReplaceAll(err.Error(), "\n", " "))
				continue
			}
			fmt.Printf("ok %s %d\n", r.ID, r.Serial)
		case "status":
			st := s.Status()
			fmt.Printf("status %s %d\n", st.Role, st.AppliedIndex)
		case "dump":
			b, err := json.Marshal(s.listAny(ListFilter{}))
			if err != nil {
				return fail(err)
			}
			sum := sha256.Sum256(b)
			fmt.Printf("dump %s %d\n", hex.EncodeToString(sum[:]), len(s.listAny(ListFilter{})))
		default:
			return fail(fmt.Errorf("unknown command %q", in.Text()))
		}
	}
	return 0
}

// procNode is a cluster child as the parent sees it.
type procNode struct {
	cfg     childConfig
	cfgPath string
	cmd     *exec.Cmd
	stdin   *bufio.Writer
	lines   chan string
	stderr  *lockedBuffer
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (n *procNode) start(tb testing.TB) {
	tb.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), clusterChildEnv+"="+n.cfgPath)
	n.stderr = &lockedBuffer{}
	cmd.Stderr = n.stderr
	stdin, err := cmd.StdinPipe()
	require.NoError(tb, err)
	stdout, err := cmd.StdoutPipe()
	require.NoError(tb, err)
	require.NoError(tb, cmd.Start())
	n.cmd, n.stdin, n.lines = cmd, bufio.NewWriter(stdin), make(chan string, 16)
	go func(lines chan<- string) {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}(n.lines)
}

// read returns the child's next line.
func (n *procNode) read(tb testing.TB, timeout time.Duration) (string, error) {
	tb.Helper()
	select {
	case l, ok := <-n.lines:
		if !ok {
			return "", fmt.Errorf("%s exited: %s", n.cfg.ID, lastLines(n.stderr.String(), 5))
		}
		return l, nil
	case <-time.After(timeout):
		return "", fmt.Errorf("%s did not answer within %v", n.cfg.ID, timeout)
	}
}

// ask sends a command and returns the answer.
func (n *procNode) ask(tb testing.TB, command string, timeout time.Duration) (string, error) {
	tb.Helper()
	if _, err := n.stdin.WriteString(command + "\n"); err != nil {
		return "", err
	}
	if err := n.stdin.Flush(); err != nil {
		return "", err
	}
	return n.read(tb, timeout)
}

func (n *procNode) kill() {
	if n.cmd == nil {
		return
	}
	n.cmd.Process.Kill() // SIGKILL
	n.cmd.Wait()
	n.cmd = nil
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(l[max(0, len(l)-n):], "\n")
}

func freeLoopback(tb testing.TB) string {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(tb, err)
	defer l.Close()
	return l.Addr().String()
}

// startProcessCluster writes the configs of n nodes and starts them, with
// raft timeout timeout.
func startProcessCluster(tb testing.TB, n int, timeout time.Duration) []*procNode {
	tb.Helper()
	dir := tb.TempDir()
	_, err := ca.Init(filepath.Join(dir, "ca"), ca.Ed25519)
	require.NoError(tb, err)
	tlsDir := filepath.Join(dir, "tls")
	require.NoError(tb, InitClusterTLS(tlsDir, n, []string{"127.0.0.1"}, time.Now()))
	nodes := make([]*procNode, n)
	for i := range nodes {
		id := "node" + strconv.Itoa(i+1)
		cert, key := ClusterNodeFiles(tlsDir, id)
		nodes[i] = &procNode{cfg: childConfig{
			ID: id, Addr: freeLoopback(tb), Expect: n, Dir: filepath.Join(dir, id), CADir: filepath.Join(dir, "ca"),
			TLS:     ClusterTLSFiles{CA: filepath.Join(tlsDir, ClusterCAFile), Cert: cert, Key: key},
			Timeout: timeout,
		}}
	}
	for _, nd := range nodes {
		for _, o := range nodes {
			if o != nd {
				nd.cfg.Join = append(nd.cfg.Join, o.cfg.Addr)
			}
		}
		require.NoError(tb, os.MkdirAll(nd.cfg.Dir, 0o700))
		data, err := json.Marshal(nd.cfg)
		require.NoError(tb, err)
		nd.cfgPath = filepath.Join(nd.cfg.Dir, "node.json")
		require.NoError(tb, os.WriteFile(nd.cfgPath, data, 0o600))
		nd.start(tb)
		tb.Cleanup(nd.kill)
	}
	for _, nd := range nodes {
		awaitChildReady(tb, nd)
	}
	return nodes
}

// processRaftTimeout is raft's timeout in the process tests.
var processRaftTimeout = map[bool]time.Duration{false: 150 * time.Millisecond, true: 400 * time.Millisecond}[raceEnabled]

func awaitChildReady(tb testing.TB, nd *procNode) {
	tb.Helper()
	l, err := nd.read(tb, 60*time.Second)
	require.NoError(tb, err)
	require.Equal(tb, "ready", l)
}

// childLeader returns the index of the child that leads.
func childLeader(tb testing.TB, nodes []*procNode) int {
	tb.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		for i, nd := range nodes {
			if nd.cmd == nil {
				continue
			}
			l, err := nd.ask(tb, "status", 10*time.Second)
			require.NoError(tb, err)
			if strings.HasPrefix(l, "status leader ") {
				return i
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	tb.Fatal("no child leads")
	return -1
}

// TestClusterProcessesSurviveLeaderKills runs three nodes as processes on
// loopback TLS and issues certificates on all of them while the leader is
// killed with SIGKILL, three times over, and restarted. Afterwards no
// acknowledged certificate is missing, no serial repeats, and every node
// holds the same state and the same audit log, which verifies.
func TestClusterProcessesSurviveLeaderKills(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	nodes := startProcessCluster(t, 3, processRaftTimeout)
	acked := map[string]uint64{} // request ID → serial
	issue := func(nd *procNode) {
		t.Helper()
		l, err := nd.ask(t, "issue", 30*time.Second)
		require.NoError(t, err)
		f := strings.Fields(l)
		require.True(t, len(f) == 3 && f[0] == "ok", "%s: %s", nd.cfg.ID, l)
		serial, err := strconv.ParseUint(f[2], 10, 64)
		require.NoError(t, err)
		acked[f[1]] = serial
	}
	const kills = 3
	for k := range kills {
		for i := range 6 {
			issue(nodes[i%3])
		}
		lead := childLeader(t, nodes)
		// Kill the leader while a follower's request is on its way.
		var other *procNode
		for i, nd := range nodes {
			if i != lead {
				other = nd
				break
			}
		}
		_, err := other.stdin.WriteString("issue\n")
		require.NoError(t, err)
		require.NoError(t, other.stdin.Flush())
		time.Sleep(time.Duration(k) * time.Millisecond)
		nodes[lead].kill()
		l, err := other.read(t, 30*time.Second)
		require.NoError(t, err)
		f := strings.Fields(l)
		require.True(t, len(f) == 3 && f[0] == "ok", "a write across the leader's death: %s", l)
		serial, err := strconv.ParseUint(f[2], 10, 64)
		require.NoError(t, err)
		acked[f[1]] = serial

		// The two others go on.
		for i := range 4 {
			nd := nodes[(lead+1+i%2)%3]
			issue(nd)
		}
		nodes[lead].start(t)
		awaitChildReady(t, nodes[lead])
	}
	for i := range 6 {
		issue(nodes[i%3])
	}

	seen := map[uint64]string{}
	for id, serial := range acked {
		other, dup := seen[serial]
		require.False(t, dup, "serial %d issued to %s and %s", serial, id, other)
		seen[serial] = id
	}

	// Converge: the same requests and the same audit log on all three.
	deadline := time.Now().Add(30 * time.Second)
	for {
		var dumps []string
		var logs [][]byte
		for _, nd := range nodes {
			l, err := nd.ask(t, "dump", 10*time.Second)
			require.NoError(t, err)
			dumps = append(dumps, l)
			data, err := os.ReadFile(filepath.Join(nd.cfg.Dir, "audit.log"))
			require.NoError(t, err)
			logs = append(logs, data)
		}
		same := dumps[0] == dumps[1] && dumps[1] == dumps[2] && bytes.Equal(logs[0], logs[1]) && bytes.Equal(logs[1], logs[2])
		if same {
			sum, err := audit.Verify(bytes.NewReader(logs[0]))
			require.NoError(t, err)
			issued := bytes.Count(logs[0], []byte(`"kind":"issue"`))
			assert.GreaterOrEqual(t, issued, len(acked), "every acknowledged certificate is on the log")
			f := strings.Fields(dumps[0])
			count, _ := strconv.Atoi(f[2])
			assert.GreaterOrEqual(t, count, len(acked))
			t.Logf("%d certificates acknowledged across %d leader kills; %d requests, %d audit entries, identical on 3 nodes",
				len(acked), kills, count, sum.Entries)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("nodes do not converge: %v, audit log sizes %v", dumps, sizes(logs))
		}
		time.Sleep(50 * time.Millisecond)
	}

	// Every acknowledged certificate is there, with its serial, on every
	// node.
	for _, nd := range nodes {
		for id, serial := range acked {
			l, err := nd.ask(t, "get "+id, 10*time.Second)
			require.NoError(t, err)
			assert.Equal(t, fmt.Sprintf("got %s %d", id, serial), l, nd.cfg.ID)
		}
	}
}
