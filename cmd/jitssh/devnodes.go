package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/jitssh/jitssh/approvals"
	"github.com/jitssh/jitssh/internal/atomicfile"
	"github.com/jitssh/jitssh/sshd"
)

// `jitssh dev --nodes N` runs N approval daemons as one raft cluster, each
// its own `jitssh server` process with everything under DIR/nodes/<id>:
// server.yaml (absolute paths only, so the printed command restarts it
// from anywhere), host_key, data/, audit.log, server.pid and server.log.
// The cluster's TLS is DIR/tls, made as `jitssh operator tls init` makes
// it; the CA (DIR/ca) is every node's.

// devNode is one node's name and ports, kept in dev.json.
type devNode struct {
	ID       string `json:"id"`
	APIPort  int    `json:"api_port"`
	HTTPPort int    `json:"http_port"`
	RaftPort int    `json:"raft_port"`
}

func (n devNode) dir(devDir string) string    { return filepath.Join(devDir, "nodes", n.ID) }
func (n devNode) config(devDir string) string { return filepath.Join(n.dir(devDir), "server.yaml") }
func (n devNode) pidFile(devDir string) string {
	return filepath.Join(n.dir(devDir), "server.pid")
}
func (n devNode) api() string  { return fmt.Sprintf("127.0.0.1:%d", n.APIPort) }
func (n devNode) http() string { return fmt.Sprintf("127.0.0.1:%d", n.HTTPPort) }
func (n devNode) raft() string { return fmt.Sprintf("127.0.0.1:%d", n.RaftPort) }

// devDaemon is what clients are told about one daemon: its address, host
// key, audit log and the config holding the policy.
type devDaemon struct {
	API      string
	HostKey  ssh.PublicKey
	HeadKey  string // the host key's public half, which signs the log's head
	AuditLog string
	Config   string
}

// checkDevNodes decides how many nodes a run has: --nodes when given
// (which must match an earlier run's), else the earlier run's, else one.
func checkDevNodes(dir string, flag int, flagSet bool, st devState) (int, error) {
	was := max(1, len(st.Nodes))
	if !flagSet {
		return was, nil
	}
	if flag < 1 || flag == 2 || flag > 9 {
		return 0, usageError("--nodes %d: want 1, or 3 to 9 (a cluster of two stops when either node does)", flag)
	}
	if _, err := os.Stat(filepath.Join(dir, "data")); flag > 1 && err == nil {
		return 0, usageError("--nodes %d: %s holds a single daemon's state, which a cluster would not continue; use another --dir", flag, dir)
	}
	if len(st.Nodes) > 0 && flag != was {
		return 0, usageError("--nodes %d: %s runs %d nodes; give --nodes %d or leave it out (another count is `jitssh operator join`/`remove`, or another --dir)", flag, dir, was, was)
	}
	return flag, nil
}

// prepareDevNodes chooses the nodes' ports (a raft port stays the one the
// cluster knows the node by), makes the cluster TLS on the first run, and
// writes each node's config.
func prepareDevNodes(dir string, n int, st *devState) error {
	if len(st.Nodes) == 0 {
		for i := range n {
			st.Nodes = append(st.Nodes, devNode{ID: fmt.Sprintf("node%d", i+1)})
		}
	}
	for i := range st.Nodes {
		nd := &st.Nodes[i]
		if nd.RaftPort != 0 && !portFree(nd.RaftPort) {
			return fmt.Errorf("%s's cluster port %d is taken, and its peers know it by that port: free it, or stop what holds it (an earlier %s still running?)",
				nd.ID, nd.RaftPort, nd.ID)
		}
		for _, port := range []*int{&nd.APIPort, &nd.HTTPPort, &nd.RaftPort} {
			if *port == 0 || !portFree(*port) {
				p, err := freePort()
				if err != nil {
					return err
				}
				*port = p
			}
		}
	}
	tlsDir := filepath.Join(dir, "tls")
	if _, err := os.Stat(filepath.Join(tlsDir, "ca.pem")); errors.Is(err, os.ErrNotExist) {
		if err := approvals.InitClusterTLS(tlsDir, len(st.Nodes), []string{"127.0.0.1"}, time.Now()); err != nil {
			return fmt.Errorf("make the cluster's TLS: %w", err)
		}
	}
	policy, err := devPolicy(dir, filepath.Join(dir, "ci", devCIJWKSFile))
	if err != nil {
		return err
	}
	for _, nd := range st.Nodes {
		if err := writeDevNodeConfig(dir, st.Nodes, nd, policy); err != nil {
			return err
		}
	}
	return nil
}

func writeDevNodeConfig(dir string, nodes []devNode, nd devNode, policy string) error {
	nodeDir := nd.dir(dir)
	if err := os.MkdirAll(nodeDir, 0o700); err != nil {
		return err
	}
	var join []string
	for _, o := range nodes {
		if o.ID != nd.ID {
			join = append(join, o.raft())
		}
	}
	cert, key := approvals.ClusterNodeFiles(filepath.Join(dir, "tls"), nd.ID)
	var b strings.Builder
	fmt.Fprintf(&b, "# jitssh dev: approval daemon %s of %d. Restart it with: jitssh server --config %s\n", nd.ID, len(nodes), nd.config(dir))
	fmt.Fprintf(&b, "listen: %s\nhttp_listen: %s\n", nd.api(), nd.http())
	fmt.Fprintf(&b, "host_key: %q\ndata_dir: %q\nca_dir: %q\naudit_log: %q\npid_file: %q\n",
		filepath.Join(nodeDir, "host_key"), filepath.Join(nodeDir, "data"), filepath.Join(dir, "ca"),
		filepath.Join(nodeDir, "audit.log"), nd.pidFile(dir))
	fmt.Fprintf(&b, "cluster:\n  node_id: %s\n  bind: %s\n  bootstrap_expect: %d\n  join: [%s]\n", nd.ID, nd.raft(), len(nodes), strings.Join(join, ", "))
	fmt.Fprintf(&b, "  tls: {ca: %q, cert: %q, key: %q}\n", filepath.Join(dir, "tls", "ca.pem"), cert, key)
	b.WriteString(policy)
	return atomicfile.WriteFile(nd.config(dir), []byte(b.String()), 0o600)
}

// devCluster is the running nodes.
type devCluster struct {
	dir     string
	out     io.Writer
	nodes   []devNode
	procs   []*exec.Cmd
	exited  []chan struct{}
	stopped chan struct{} // closed once jitssh dev stops them
	once    sync.Once
}

// startDevNodes starts every node from bin and waits until the cluster
// takes writes. A node that stops later is reported on out; the others
// go on.
func startDevNodes(ctx context.Context, dir string, nodes []devNode, bin string, out io.Writer, logger *slog.Logger) (*devCluster, []devDaemon, error) {
	cl := &devCluster{dir: dir, out: out, nodes: nodes, stopped: make(chan struct{})}
	var daemons []devDaemon
	for _, nd := range nodes {
		// Made here rather than by the node, so its key is known before it
		// answers.
		hostKeyFile := filepath.Join(nd.dir(dir), "host_key")
		hostKey, err := sshd.LoadOrCreateHostKey(hostKeyFile, "approval daemon "+nd.ID)
		if err != nil {
			return nil, nil, err
		}
		pub := hostKeyFile + ".pub"
		if err := atomicfile.WriteFile(pub, ssh.MarshalAuthorizedKey(hostKey.PublicKey()), 0o644); err != nil {
			return nil, nil, err
		}
		daemons = append(daemons, devDaemon{API: nd.api(), HostKey: hostKey.PublicKey(), HeadKey: pub,
			AuditLog: filepath.Join(nd.dir(dir), "audit.log"), Config: nd.config(dir)})
	}
	for _, nd := range nodes {
		log, err := os.OpenFile(filepath.Join(nd.dir(dir), "server.log"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			cl.stop()
			return nil, nil, err
		}
		cmd := exec.Command(bin, "server", "--config", nd.config(dir))
		cmd.Stdout, cmd.Stderr = log, log
		cmd.SysProcAttr = dieWithParent()
		if err := cmd.Start(); err != nil {
			log.Close()
			cl.stop()
			return nil, nil, fmt.Errorf("start %s: %w", nd.ID, err)
		}
		exited := make(chan struct{})
		cl.procs, cl.exited = append(cl.procs, cmd), append(cl.exited, exited)
		go func() {
			err := cmd.Wait()
			log.Close()
			close(exited)
			select {
			case <-cl.stopped:
				return
			default:
			}
			logger.Warn("jitssh dev: node stopped", "node", nd.ID, "err", err)
			fmt.Fprintf(out, "\njitssh dev: %s stopped (%v); the other nodes go on. Restart it with:\n  %s server --config %s\n",
				nd.ID, err, shWord(bin), shWord(nd.config(dir)))
		}()
	}
	if err := cl.awaitHealthy(ctx); err != nil {
		cl.stop()
		return nil, nil, err
	}
	return cl, daemons, nil
}

// awaitHealthy waits until every node says it takes writes.
func (cl *devCluster) awaitHealthy(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	client := &http.Client{Timeout: 2 * time.Second}
	for i, nd := range cl.nodes {
		for {
			st, err := nodeStatus(ctx, client, nd)
			if err == nil && st.Healthy {
				break
			}
			if err == nil {
				err = fmt.Errorf("not healthy: %s", strings.Join(st.Problems, "; "))
			}
			select {
			case <-cl.exited[i]:
				return fmt.Errorf("%s exited at start (see %s)", nd.ID, filepath.Join(nd.dir(cl.dir), "server.log"))
			case <-ctx.Done():
				return fmt.Errorf("%s did not become healthy: %w (see %s)", nd.ID, err, filepath.Join(nd.dir(cl.dir), "server.log"))
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	return nil
}

func nodeStatus(ctx context.Context, client *http.Client, nd devNode) (approvals.NodeStatus, error) {
	var st approvals.NodeStatus
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+nd.http()+"/healthz?format=json", nil)
	if err != nil {
		return st, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

// stop ends the nodes jitssh dev started: SIGTERM, and SIGKILL for one
// still running after a while. A node restarted by hand is not its to
// stop: it says which still run.
func (cl *devCluster) stop() {
	cl.once.Do(func() { close(cl.stopped) })
	for _, p := range cl.procs {
		p.Process.Signal(syscall.SIGTERM)
	}
	for i, p := range cl.procs {
		select {
		case <-cl.exited[i]:
		case <-time.After(15 * time.Second):
			p.Process.Kill()
			<-cl.exited[i]
		}
	}
	for _, nd := range cl.nodes {
		if pid, alive := runningPID(nd.pidFile(cl.dir)); alive {
			fmt.Fprintf(cl.out, "jitssh dev: %s, started by hand, still runs (pid %d): stop it with kill %d\n", nd.ID, pid, pid)
		}
	}
}

// checkNoDevNodeRuns refuses to start over nodes of an earlier run that
// still run (restarted by hand, say): a second node on one data
// directory would not start, and the env files must not be replaced
// under the running ones.
func checkNoDevNodeRuns(dir string) error {
	data, err := os.ReadFile(filepath.Join(dir, "dev.json"))
	if err != nil {
		return nil // a first run; a bad file is prepareDev's to report
	}
	var st devState
	if json.Unmarshal(data, &st) != nil {
		return nil
	}
	for _, nd := range st.Nodes {
		if pid, alive := runningPID(nd.pidFile(dir)); alive {
			return fmt.Errorf("%s is already running (pid %d, in %s): stop it first (kill %d), or remove that file if it names another process",
				nd.ID, pid, nd.pidFile(dir), pid)
		}
	}
	return nil
}

// runningPID reads a pid file and reports whether the process it names is
// alive.
func runningPID(path string) (int, bool) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 0 {
		return 0, false
	}
	return pid, syscall.Kill(pid, 0) == nil
}
