package approvals

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// A Service with Options.Cluster is one node of a raft cluster of three or
// five (or one). What differs from a node on its own:
//
//   - raft talks over the node's listener, mutual TLS with certificates
//     of the cluster CA (ClusterTLS), and the cluster is founded by
//     bootstrap_expect or joined (formCluster);
//   - writes are committed on the leader (forward.go) and read-your-writes
//     holds on the node that made them; reads are local, so on a follower
//     they may trail the leader by the commits it has not applied yet;
//   - expiry and issue retries run on the leader only (run);
//   - every node's state machine writes the same audit log; a node that
//     was sent a snapshot fetches the lines it lacks (cluster_catchup.go);
//   - every decision carries the digest of the policy it was made under,
//     and the state machine refuses one made under another policy than
//     the cluster's (envelope);
//   - every voter holds the CA key, and the leader signs: a follower asks
//     it to issue what the follower's calls approved (cluster_issue.go); the
//     state machine's serial check settles two nodes signing at once
//     around a change of leader.

// ClusterOptions make the Service one node of a raft cluster.
type ClusterOptions struct {
	NodeID          string // this node's name; must be the name in TLS's certificate
	Advertise       string // the address peers dial
	BootstrapExpect int    // found a new cluster once this many voters are known
	Join            []string
	// Listener accepts peers (raft, forwarded writes, operators) at the
	// node's bind address. The Service serves and closes it.
	Listener net.Listener
	TLS      *ClusterTLS

	dial dialFunc           // tests: an in-memory network; nil dials TCP
	tune func(*raft.Config) // tests: snapshot thresholds
}

// NewClusterOptions returns the options of the node cfg describes, with
// its TLS identity loaded and its listener open at cfg.Bind.
func NewClusterOptions(cfg *ClusterConfig) (*ClusterOptions, error) {
	t, err := LoadClusterTLS(cfg.TLS)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", cfg.Bind)
	if err != nil {
		return nil, fmt.Errorf("cluster listener: %w", err)
	}
	return &ClusterOptions{
		NodeID:          cfg.NodeID,
		Advertise:       cfg.AdvertiseAddr(),
		BootstrapExpect: cfg.BootstrapExpect,
		Join:            cfg.Join,
		Listener:        ln,
		TLS:             t,
	}, nil
}

// cluster is what a Service in a cluster has besides raft.
type cluster struct {
	opts ClusterOptions
	id   string // this node's raft ID
	addr string // its advertised address
	mux  *clusterMux
	rpc  *rpcClient

	// startErr is why the node is not ready yet (see startCluster).
	startErr atomic.Pointer[string]
}

// Raft's network transport settings.
const (
	raftMaxPool   = 3
	raftIOTimeout = 10 * time.Second
)

// openCluster starts the Service as a node of a cluster: raft on the
// node's listener, the RPC server, and in the background the founding or
// joining of the cluster and the steps that need a leader.
func (s *Service) openCluster(o Options, timeout time.Duration) error {
	co := o.Cluster
	switch {
	case co.TLS == nil:
		return errors.New("open approvals: cluster without TLS")
	case co.Listener == nil:
		return errors.New("open approvals: cluster without a listener")
	case co.NodeID != co.TLS.NodeID():
		co.Listener.Close()
		return fmt.Errorf("open approvals: cluster node_id is %s, but the node certificate names %s", co.NodeID, co.TLS.NodeID())
	}
	c := &cluster{opts: *co, id: co.NodeID, addr: co.Advertise}
	c.mux = newClusterMux(co.Listener, co.TLS, co.dial, co.Advertise, s.logger)
	c.rpc = newRPCClient(co.dial, co.TLS)
	s.cluster = c
	msg := "starting"
	c.startErr.Store(&msg)

	trans := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  raftStream{c.mux},
		MaxPool: raftMaxPool,
		Timeout: raftIOTimeout,
		Logger: hclog.New(&hclog.LoggerOptions{
			Name: "raft-net", Output: &raftLog{logger: s.logger}, Level: hclog.Warn,
		}),
	})
	peer := &raftPeer{
		id:             c.id,
		advertise:      c.addr,
		trans:          trans,
		bootstrapAlone: co.BootstrapExpect == 1 && len(co.Join) == 0,
		tune:           co.tune,
	}
	var err error
	s.node, err = openRaft(context.Background(), o.DataDir, s.fsm, timeout, s.logger, peer)
	if err != nil {
		trans.Close()
		c.mux.close()
		return fmt.Errorf("open approvals in %s: %w", o.DataDir, err)
	}
	c.mux.serve(s.serveRPC)
	s.journal.setFetch(s.fetchAuditLines)
	go s.formCluster()
	go s.startCluster()
	go s.watchPolicy()
	return nil
}

// closeCluster stops serving peers, once raft has stopped.
func (s *Service) closeCluster() {
	if s.cluster == nil {
		return
	}
	s.cluster.rpc.close()
	s.cluster.mux.close()
}

// Ready is closed once the Service takes calls: at once for a node on its
// own; in a cluster, once there is a leader, this node has applied what it
// had committed, and the audit chain and policy are recorded.
func (s *Service) Ready() <-chan struct{} { return s.ready }

// startCluster takes the steps of Open that need a leader, as soon as
// there is one, and then marks the Service ready.
func (s *Service) startCluster() {
	delay := time.Duration(0)
	logged := ""
	for {
		err := s.startClusterOnce()
		if err == nil {
			s.cluster.startErr.Store(nil)
			close(s.ready)
			s.logger.Info("cluster node ready", "node", s.cluster.id)
			return
		}
		msg := err.Error()
		s.cluster.startErr.Store(&msg)
		if msg != logged {
			s.logger.Warn("cluster node not ready yet", "node", s.cluster.id, "reason", msg)
			logged = msg
		}
		delay = min(max(2*delay, 20*time.Millisecond), time.Second)
		select {
		case <-s.stop:
			return
		case <-time.After(delay):
		case <-s.node.watchLeader():
		}
	}
}

func (s *Service) startClusterOnce() error {
	ctx, cancel := context.WithTimeout(context.Background(), applyTimeout)
	defer cancel()
	if err := s.syncWithLeader(ctx); err != nil {
		return err
	}
	st := s.fsm.State()
	chain, err := st.auditChain()
	if err != nil {
		return err
	}
	if chain.IsZero() && !s.node.isLeader() {
		return errors.New("waiting for the leader to record the audit chain position")
	}
	if err := s.anchorAudit(); err != nil {
		return err
	}
	if err := s.startPolicy(); err != nil {
		return err
	}
	return s.ids.seed(s.fsm.State())
}

// syncWithLeader returns once there is a leader and this node has applied
// every entry the leader had committed when asked: from then on, what the
// node reads is at least as new as what it could have acknowledged before
// it restarted.
func (s *Service) syncWithLeader(ctx context.Context) error {
	if s.node.isLeader() {
		if err := s.node.raft.Barrier(applyTimeout).Error(); err != nil {
			return fmt.Errorf("raft barrier: %w", err)
		}
		return nil
	}
	addr, err := s.leaderAddr()
	if err != nil {
		return err
	}
	var st NodeStatus
	if err := s.cluster.rpc.call(ctx, string(addr), rpcStatus, nil, &st); err != nil {
		return fmt.Errorf("ask the leader at %s: %w", addr, err)
	}
	if st.Role != "leader" {
		return fmt.Errorf("%w: %s at %s does not lead", ErrNoLeader, st.ID, addr)
	}
	// The leader's applied index, not its commit index: entries that are
	// not commands never reach a state machine.
	return s.fsm.awaitApplied(ctx, st.AppliedIndex)
}

// awaitReady waits until the Service is ready, for calls made right after
// Open.
func (s *Service) awaitReady(ctx context.Context) error {
	select {
	case <-s.ready:
		return nil
	default:
	}
	select {
	case <-s.ready:
		return nil
	case <-s.stop:
		return ErrClosed
	case <-ctx.Done():
		reason := "not ready"
		if p := s.cluster.startErr.Load(); p != nil {
			reason = *p
		}
		return fmt.Errorf("%w: this node is not ready: %s", ErrNoLeader, reason)
	}
}

// serveRPC serves the calls on one connection from a peer or operator,
// one after another.
func (s *Service) serveRPC(conn net.Conn, peer string) {
	defer conn.Close()
	br := bufio.NewReader(conn)
	bw := bufio.NewWriter(conn)
	for {
		var req rpcRequest
		if err := readFrame(br, &req); err != nil {
			return
		}
		switch req.Method {
		case rpcSnapshotSave:
			s.serveSnapshotSave(br, bw)
			return
		case rpcSnapshotRestore, rpcRestoreOnLeader:
			s.serveSnapshotRestore(br, bw, req.Method == rpcRestoreOnLeader)
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), applyTimeout)
		out, err := s.dispatch(ctx, req, peer)
		cancel()
		resp := rpcResponse{Err: encodeError(err)}
		if err == nil && out != nil {
			if resp.Body, err = json.Marshal(out); err != nil {
				resp = rpcResponse{Err: encodeError(err)}
			}
		}
		if err := writeFrame(bw, resp); err != nil {
			return
		}
		if err := bw.Flush(); err != nil {
			return
		}
	}
}

func decodeArgs[T any](body json.RawMessage) (T, error) {
	var v T
	if len(body) == 0 {
		return v, nil
	}
	if err := json.Unmarshal(body, &v); err != nil {
		return v, fmt.Errorf("%w: arguments: %v", ErrBadRequest, err)
	}
	return v, nil
}

func (s *Service) dispatch(ctx context.Context, req rpcRequest, peer string) (any, error) {
	if s.closed() {
		return nil, ErrClosed
	}
	switch req.Method {
	case rpcHello:
		return s.hello(), nil
	case rpcStatus:
		st := s.Status()
		return st, nil
	case rpcApply:
		a, err := decodeArgs[applyArgs](req.Body)
		if err != nil {
			return nil, err
		}
		return s.serveApply(ctx, a)
	case rpcIssue:
		a, err := decodeArgs[issueArgs](req.Body)
		if err != nil {
			return nil, err
		}
		return s.serveIssue(ctx, a)
	case rpcAddVoter, rpcRemoveServer:
		a, err := decodeArgs[memberArgs](req.Body)
		if err != nil {
			return nil, err
		}
		if !s.node.isLeader() {
			return nil, s.notLeader()
		}
		if req.Method == rpcAddVoter {
			if !nameRE().MatchString(a.ID) || checkAddr(a.Addr) != nil {
				return nil, fmt.Errorf("%w: add member %q at %q", ErrBadRequest, a.ID, a.Addr)
			}
			return nil, s.addVoterHere(a)
		}
		return nil, s.removeServerHere(a)
	case rpcRemove:
		a, err := decodeArgs[memberArgs](req.Body)
		if err != nil {
			return nil, err
		}
		return nil, s.Remove(ctx, a.ID)
	case rpcAuditLines:
		a, err := decodeArgs[linesArgs](req.Body)
		if err != nil {
			return nil, err
		}
		return s.serveAuditLines(a)
	case rpcMembers:
		return s.Members(ctx)
	case rpcJoin:
		a, err := decodeArgs[memberArgs](req.Body)
		if err != nil {
			return nil, err
		}
		return nil, s.Join(ctx, a.Addr)
	}
	s.logger.Warn("unknown cluster call", "method", req.Method, "peer", peer)
	return nil, fmt.Errorf("%w: unknown call %q", ErrBadRequest, req.Method)
}
