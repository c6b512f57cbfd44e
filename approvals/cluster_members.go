package approvals

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-memdb"
	"github.com/hashicorp/raft"
)

// NodeStatus is one node's view of itself and of the cluster, as /healthz
// and `jitssh operator members` show it.
type NodeStatus struct {
	ID         string `json:"id"`
	Address    string `json:"address,omitempty"`
	Role       string `json:"role"` // leader, follower, candidate or shutdown
	Leader     string `json:"leader,omitempty"`
	LeaderAddr string `json:"leader_address,omitempty"`
	// LastContact is when a follower last heard from the leader.
	LastContact  time.Time `json:"last_contact,omitzero"`
	Term         uint64    `json:"term"`
	AppliedIndex uint64    `json:"applied_index"`
	CommitIndex  uint64    `json:"commit_index"`
	Voters       int       `json:"voters"`
	Ready        bool      `json:"ready"`
	// Policy is the digest of the policy this node decides under;
	// ClusterPolicy the one the cluster last recorded. A node whose two
	// differ has its decisions refused until its file matches.
	Policy        string `json:"policy"`
	ClusterPolicy string `json:"cluster_policy,omitempty"`
	// Problems says what keeps the node from taking writes, if anything.
	Problems []string `json:"problems,omitempty"`
	Healthy  bool     `json:"healthy"`
}

// healthyContact is how long a follower may go without hearing from the
// leader and still count as healthy, in raft timeouts.
const healthyContact = 4

// Status returns this node's status.
func (s *Service) Status() NodeStatus {
	r := s.node.raft
	st := NodeStatus{
		ID:           s.node.id,
		Address:      s.node.addr,
		Role:         strings.ToLower(r.State().String()),
		Term:         r.CurrentTerm(),
		AppliedIndex: s.fsm.appliedIndex(),
		CommitIndex:  r.CommitIndex(),
	}
	addr, id := r.LeaderWithID()
	st.Leader, st.LeaderAddr = string(id), string(addr)
	if st.Role != "leader" {
		st.LastContact = r.LastContact().UTC()
	}
	if f := r.GetConfiguration(); f.Error() == nil {
		for _, sv := range f.Configuration().Servers {
			if sv.Suffrage == raft.Voter {
				st.Voters++
			}
		}
	}
	select {
	case <-s.ready:
		st.Ready = true
	default:
		reason := "starting"
		if s.cluster != nil {
			if p := s.cluster.startErr.Load(); p != nil {
				reason = *p
			}
		}
		st.Problems = append(st.Problems, "not ready: "+reason)
	}
	st.Policy = s.Policy().Digest()
	if recorded, err := textTxn(s.fsm.State().db.Txn(false), metaPolicy); err == nil {
		st.ClusterPolicy = recorded
		if recorded != "" && recorded != st.Policy {
			st.Problems = append(st.Problems, ErrPolicyChanged.Error())
		}
	}
	if err := s.journal.health(); err != nil {
		st.Problems = append(st.Problems, "audit log: "+err.Error())
	}
	switch {
	case st.Leader == "":
		st.Problems = append(st.Problems, "no leader")
	case st.Role != "leader" && time.Since(st.LastContact) > healthyContact*s.raftTimeout:
		st.Problems = append(st.Problems, fmt.Sprintf("no word from the leader since %s", st.LastContact.Format(time.RFC3339)))
	}
	st.Healthy = len(st.Problems) == 0
	return st
}

// Member is one member of the cluster as `jitssh operator members` lists
// it.
type Member struct {
	ID      string      `json:"id"`
	Address string      `json:"address"`
	Voter   bool        `json:"voter"`
	Leader  bool        `json:"leader"`
	Healthy bool        `json:"healthy"`
	Status  *NodeStatus `json:"status,omitempty"` // nil when it did not answer
	Error   string      `json:"error,omitempty"`  // why it did not
}

// memberTimeout bounds the wait for one member's status.
const memberTimeout = 2 * time.Second

// Members lists the cluster's members with each one's own status, asked of
// it directly.
func (s *Service) Members(ctx context.Context) ([]Member, error) {
	f := s.node.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, fmt.Errorf("raft configuration: %w", err)
	}
	servers := f.Configuration().Servers
	_, leader := s.node.raft.LeaderWithID()
	out := make([]Member, len(servers))
	var wg sync.WaitGroup
	for i, sv := range servers {
		out[i] = Member{ID: string(sv.ID), Address: string(sv.Address), Voter: sv.Suffrage == raft.Voter, Leader: sv.ID == leader}
		if string(sv.ID) == s.node.id {
			st := s.Status()
			out[i].Status, out[i].Healthy = &st, st.Healthy
			continue
		}
		if s.cluster == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, memberTimeout)
			defer cancel()
			var st NodeStatus
			if err := s.cluster.rpc.call(cctx, string(sv.Address), rpcStatus, nil, &st); err != nil {
				out[i].Error = err.Error()
				return
			}
			out[i].Status, out[i].Healthy = &st, st.Healthy
		}()
	}
	wg.Wait()
	return out, nil
}

// memberArgs names a member to add or remove.
type memberArgs struct {
	ID   string `json:"id,omitempty"`
	Addr string `json:"addr,omitempty"`
}

// errNoCluster: a cluster operation on a node that runs on its own.
var errNoCluster = errors.New("this node runs on its own, not in a cluster")

// Join adds the node listening at addr to the cluster as a voter. The node
// at addr is asked its name first; the leader makes the change, wherever
// Join is called.
func (s *Service) Join(ctx context.Context, addr string) error {
	if s.cluster == nil {
		return errNoCluster
	}
	if err := checkAddr(addr); err != nil {
		return fmt.Errorf("%w: join: %v", ErrBadRequest, err)
	}
	var h helloReply
	if err := s.cluster.rpc.call(ctx, addr, rpcHello, nil, &h); err != nil {
		return fmt.Errorf("join %s: %w", addr, err)
	}
	return s.addVoter(ctx, memberArgs{ID: h.ID, Addr: h.Addr})
}

// Remove takes the member named id out of the cluster. A removed node
// keeps its data; it takes no part until it is joined again.
func (s *Service) Remove(ctx context.Context, id string) error {
	if s.cluster == nil {
		return errNoCluster
	}
	return s.removeServer(ctx, memberArgs{ID: id})
}

// onLeader runs a membership change on the leader: here when this node
// leads, else by calling the leader, whose method runs it only if it
// still leads (a node never passes on what was passed to it, so a stale
// view of the leader costs a retry, not a chain of calls).
func (s *Service) onLeader(ctx context.Context, method string, a memberArgs, here func() error) error {
	return s.retryOnLeader(ctx, func(ctx context.Context) error {
		if s.node.isLeader() {
			return here()
		}
		addr, err := s.leaderAddr()
		if err != nil {
			return err
		}
		return s.cluster.rpc.call(ctx, addr, method, a, nil)
	})
}

func (s *Service) addVoter(ctx context.Context, a memberArgs) error {
	if !nameRE().MatchString(a.ID) || checkAddr(a.Addr) != nil {
		return fmt.Errorf("%w: add member %q at %q", ErrBadRequest, a.ID, a.Addr)
	}
	return s.onLeader(ctx, rpcAddVoter, a, func() error { return s.addVoterHere(a) })
}

// addVoterHere adds a member; this node leads.
func (s *Service) addVoterHere(a memberArgs) error {
	f := s.node.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return err
	}
	for _, sv := range f.Configuration().Servers {
		switch {
		case string(sv.ID) == a.ID && string(sv.Address) == a.Addr && sv.Suffrage == raft.Voter:
			return nil // a member already
		case string(sv.Address) == a.Addr && string(sv.ID) != a.ID:
			return fmt.Errorf("%w: %s is the address of member %s; remove it first", ErrBadRequest, a.Addr, sv.ID)
		}
	}
	if err := s.node.raft.AddVoter(raft.ServerID(a.ID), raft.ServerAddress(a.Addr), 0, applyTimeout).Error(); err != nil {
		return fmt.Errorf("add %s at %s: %w", a.ID, a.Addr, err)
	}
	s.logger.Info("member added", "id", a.ID, "address", a.Addr)
	return nil
}

func (s *Service) removeServer(ctx context.Context, a memberArgs) error {
	return s.onLeader(ctx, rpcRemoveServer, a, func() error { return s.removeServerHere(a) })
}

// removeServerHere removes a member; this node leads.
func (s *Service) removeServerHere(a memberArgs) error {
	f := s.node.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return err
	}
	servers := f.Configuration().Servers
	found := false
	for _, sv := range servers {
		found = found || string(sv.ID) == a.ID
	}
	switch {
	case !found:
		return fmt.Errorf("%w: no member %q", ErrNotFound, a.ID)
	case len(servers) == 1:
		return fmt.Errorf("%w: %s is the only member", ErrBadRequest, a.ID)
	}
	if err := s.node.raft.RemoveServer(raft.ServerID(a.ID), 0, applyTimeout).Error(); err != nil {
		return fmt.Errorf("remove %s: %w", a.ID, err)
	}
	s.logger.Info("member removed", "id", a.ID)
	return nil
}

// leading waits until this node may do the background work only the
// leader does, and reports false when the Service closes first. A node
// on its own always may. A node that has just become the leader (led was
// false) first issues the certificates of approved requests nobody issued:
// their approver may have gone down with the old leader.
func (s *Service) leading(led bool) (leads, ok bool) {
	if s.cluster == nil {
		return true, !s.closed()
	}
	for {
		changed := s.node.watchLeader()
		select {
		case <-s.stop:
			return false, false
		case <-s.ready:
		}
		if s.node.isLeader() {
			if !led {
				s.issueUnissued(true)
			}
			s.adoptUnissued()
			return true, true
		}
		select {
		case <-s.stop:
			return false, false
		case <-changed:
		}
	}
}

// adoptUnissued schedules a retry, retryFirst from now, of every approved
// request without a certificate that this node is not issuing and has no
// retry for: one approved on another node whose issue failed there, or
// whose node went down before issuing. Its own node usually issues it
// well before then, and the retry then finds it issued.
func (s *Service) adoptUnissued() {
	reqs, err := s.fsm.State().unissuedRequests(nil)
	if err != nil {
		s.logger.Error("find unissued requests", "err", err)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range reqs {
		if _, ok := s.retry[r.ID]; !ok && !s.issuing[r.ID] {
			s.retry[r.ID] = retryState{next: time.Now().Add(retryFirst)}
		}
	}
}

// outOfStep reports whether this node, in a cluster, decides under another
// policy than the one the cluster last recorded, and returns that one.
// The caller holds policyMu.
func (s *Service) outOfStep() (recorded string, behind bool) {
	if s.cluster == nil {
		return "", false
	}
	recorded, err := textTxn(s.fsm.State().db.Txn(false), metaPolicy)
	if err != nil || recorded == "" {
		return recorded, false
	}
	return recorded, recorded != s.digestOf(s.policy)
}

// watchPolicy logs, at Error, whenever the cluster's recorded policy
// becomes one this node does not run: its decisions are refused until its
// file matches (or a reload here makes its file the cluster's).
func (s *Service) watchPolicy() {
	reported := ""
	for {
		st := s.fsm.State()
		ws := memdb.NewWatchSet()
		ws.Add(s.stop)
		ws.Add(st.AbandonCh())
		ch, obj, err := st.db.Txn(false).FirstWatch(tableMeta, indexID, metaPolicy)
		if err != nil {
			s.logger.Error("watch the cluster's policy", "err", err)
			return
		}
		ws.Add(ch)
		recorded := ""
		if obj != nil {
			recorded = obj.(*metaEntry).Text
		}
		s.policyMu.RLock()
		mine := s.digestOf(s.policy)
		s.policyMu.RUnlock()
		if recorded != "" && recorded != mine && recorded != reported {
			s.logger.Error(ErrPolicyChanged.Error()+": this node's decisions are refused until its policy file matches the cluster's, or a reload here makes it the cluster's",
				"policy", mine, "cluster_policy", recorded)
			reported = recorded
		}
		ws.Watch(nil)
		if s.closed() {
			return
		}
	}
}

// Leads reports whether this node does what only one node of a cluster
// should do on its behalf (posting webhooks): it leads, or runs on its own.
// Around a change of leader an event may be posted twice or not at all.
func (s *Service) Leads() bool {
	return s.cluster == nil || s.node.isLeader()
}
