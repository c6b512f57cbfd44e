package approvals

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"

	"github.com/jitssh/jitssh/ca"
)

// Every node takes calls. A node builds a command exactly as one node on
// its own would (policy checks, IDs, times), and commits it: through its
// own raft when it leads, or by sending the encoded command to the leader,
// which applies it and answers with the raft index and the state machine's
// result. The node then waits until its own state machine has applied
// that index and its own audit log holds the command's entries (commit
// awaits them), so a caller reads its own writes on the node it asked.
//
// A command whose fate is unknown (the leader went away mid-apply, the
// connection broke) is sent again, the same bytes, to whoever leads next:
// its idempotency key makes a second application change nothing.

// ErrNoLeader: the cluster had no leader this node could reach within the
// apply timeout. The change was not acknowledged; if a try was under way
// when the leader went away, it may still have been made, which reading
// the request tells.
var ErrNoLeader = errors.New("no cluster leader reachable")

// errNotLeader: a call that only the leader answers reached a follower.
var errNotLeader = errors.New("not the cluster leader")

// errUnavailable: the leader could not apply the command now (it lost
// leadership, is shutting down); the sender tries again.
var errUnavailable = errors.New("leader unavailable")

// wireError is an error sent between nodes: a code naming the sentinel it
// wraps, and its message.
type wireError struct {
	Code string `json:"code,omitempty"`
	Msg  string `json:"msg"`
}

// wireSentinels maps the errors callers branch on to codes; the more
// specific of two that wrap each other comes first.
var wireSentinels = []struct {
	code string
	err  error
}{
	{"unavailable", errUnavailable},
	{"unavailable", raft.ErrNotLeader},
	{"unavailable", raft.ErrLeadershipLost},
	{"unavailable", raft.ErrLeadershipTransferInProgress},
	{"unavailable", raft.ErrAbortedByRestore},
	{"unavailable", raft.ErrEnqueueTimeout},
	{"not_leader", errNotLeader},
	{"no_leader", ErrNoLeader},
	{"not_node", ErrNotNode},
	{"not_found", ErrNotFound},
	{"not_pending", ErrNotPending},
	{"self_approval", ErrSelfApproval},
	{"not_approver", ErrNotApprover},
	{"already_approved", ErrAlreadyApproved},
	{"no_rule", ErrNoRule},
	{"too_many_pending", ErrTooManyPending},
	{"rate_limited", ErrRateLimited},
	{"token_used", ErrTokenUsed},
	{"workload_refused", ErrWorkloadRefused},
	{"forbidden", ErrForbidden},
	{"not_active", ErrNotActive},
	{"serial_taken", errSerialTaken},
	{"serials_exhausted", ca.ErrSerialsExhausted},
	{"issue", ErrIssue},
	{"bad_request", ErrBadRequest},
	{"invalid_config", ErrInvalidConfig},
	{"policy_changed", ErrPolicyChanged},
	{"audit", ErrAudit},
	{"closed", ErrClosed},
}

func encodeError(err error) *wireError {
	if err == nil {
		return nil
	}
	for _, s := range wireSentinels {
		if errors.Is(err, s.err) {
			return &wireError{Code: s.code, Msg: err.Error()}
		}
	}
	return &wireError{Msg: err.Error()}
}

// remoteError is an error another node returned: its message as it was,
// wrapping the sentinel its code names.
type remoteError struct {
	msg      string
	sentinel error
}

func (e *remoteError) Error() string { return e.msg }
func (e *remoteError) Unwrap() error { return e.sentinel }

func (w *wireError) decode() error {
	for _, s := range wireSentinels {
		if s.code == w.Code {
			return &remoteError{msg: w.Msg, sentinel: s.err}
		}
	}
	return &remoteError{msg: w.Msg}
}

// wireResult is an applyResult sent from the leader to the node that
// forwarded the command.
type wireResult struct {
	Index    uint64     `json:"index"`
	Request  *Request   `json:"request,omitempty"`
	Requests []*Request `json:"requests,omitempty"`
	Complete bool       `json:"complete,omitempty"`
	Repeat   bool       `json:"repeat,omitempty"`
	Err      *wireError `json:"err,omitempty"`
	// Refused is a refusal the command recorded on the audit log (a CI/CD
	// token presented again): committed, and refused all the same.
	Refused *wireError `json:"refused,omitempty"`
	Pruned  int        `json:"pruned,omitempty"` // requests a prune dropped
}

func toWire(r *applyResult) wireResult {
	return wireResult{Index: r.index, Request: r.request, Requests: r.requests, Complete: r.complete, Repeat: r.repeat,
		Err: encodeError(r.err), Refused: encodeError(r.refused), Pruned: r.pruned}
}

func (w wireResult) result() *applyResult {
	r := &applyResult{index: w.Index, request: w.Request, requests: w.Requests, complete: w.Complete, repeat: w.Repeat, pruned: w.Pruned}
	if w.Err != nil {
		r.err = w.Err.decode()
	}
	if w.Refused != nil {
		r.refused = w.Refused.decode()
	}
	return r
}

type applyArgs struct {
	Data []byte `json:"data"`
}

// Backoff between attempts at committing a command while the cluster has
// no reachable leader.
const (
	applyRetryFirst = 10 * time.Millisecond
	applyRetryMax   = 500 * time.Millisecond
)

// apply commits a command through raft and returns what the FSM made of
// it. A command the FSM refused comes back as the refusal's error.
func (s *Service) apply(t msgType, cmd any) (*applyResult, error) {
	if s.closed() {
		return nil, ErrClosed
	}
	if base := t &^ msgAudited; s.cluster != nil && base != msgAuditAnchor && base != msgSetPolicy {
		ctx, cancel := context.WithTimeout(context.Background(), s.applyWait)
		err := s.awaitReady(ctx)
		cancel()
		if err != nil {
			return nil, err
		}
	}
	policy := ""
	if decidesUnderPolicy(t) {
		// Callers of deciding commands hold policyMu.
		policy = s.digestOf(s.policy)
	}
	data, err := encodeEnvelope(t, cmd, policy, s.clock())
	if err != nil {
		return nil, err
	}
	res, err := s.applyBytes(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", t, err)
	}
	if res.err != nil {
		return nil, res.err
	}
	return res, nil
}

// applyBytes commits encoded command bytes, on this node when it leads or
// on the leader, trying again, with the same bytes, until applyTimeout
// while the outcome is unknown or there is no leader.
func (s *Service) applyBytes(data []byte) (*applyResult, error) {
	ctx, cancel := context.WithTimeout(context.Background(), s.applyWait)
	defer cancel()
	delay := time.Duration(0)
	var last error
	for {
		changed := s.node.watchLeader()
		res, err := s.applyOnce(ctx, data)
		if err == nil {
			return res, nil
		}
		if !retryable(err) {
			return nil, err
		}
		last = err
		delay = min(max(2*delay, applyRetryFirst), applyRetryMax)
		timer := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			timer.Stop()
			if errors.Is(last, ErrNoLeader) {
				return nil, last
			}
			return nil, fmt.Errorf("%w: %w", ErrNoLeader, last)
		case <-s.stop:
			timer.Stop()
			return nil, ErrClosed
		case <-changed:
			timer.Stop()
		case <-timer.C:
		}
	}
}

// retryable reports whether a failed attempt may be made again: the
// command was not applied, or its fate is unknown and its key keeps a
// second application from changing anything.
func retryable(err error) bool {
	var te *transportError
	switch {
	case errors.As(err, &te):
		return !errors.Is(err, ErrNotNode)
	case errors.Is(err, errNotLeader), errors.Is(err, errUnavailable), errors.Is(err, ErrNoLeader):
		return true
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipLost),
		errors.Is(err, raft.ErrLeadershipTransferInProgress), errors.Is(err, raft.ErrAbortedByRestore),
		errors.Is(err, raft.ErrEnqueueTimeout):
		return true
	}
	return false
}

// applyOnce makes one attempt at committing data.
func (s *Service) applyOnce(ctx context.Context, data []byte) (*applyResult, error) {
	if s.cluster == nil || s.node.raft.State() == raft.Leader {
		return s.applyLocal(ctx, data)
	}
	addr, err := s.leaderAddr()
	if err != nil {
		return nil, err
	}
	var w wireResult
	if err := s.cluster.rpc.call(ctx, addr, rpcApply, applyArgs{Data: data}, &w); err != nil {
		return nil, err
	}
	res := w.result()
	// The change is the leader's now; it is this node's once its own
	// state machine has it. A refusal is waited for too, so that what
	// refused it (a serial another node took) reads here afterwards; but
	// it is answered even if that wait runs out.
	if err := s.fsm.awaitApplied(ctx, res.index); err != nil && res.err == nil {
		return nil, fmt.Errorf("%w: committed at raft index %d, not applied here yet: %w", ErrNoLeader, res.index, err)
	}
	return res, nil
}

// applyLocal applies data through this node's raft, which must lead. The
// result's err is the state machine's refusal, if any.
func (s *Service) applyLocal(ctx context.Context, data []byte) (*applyResult, error) {
	s.applyGate.RLock()
	defer s.applyGate.RUnlock()
	return s.raftApply(ctx, data)
}

// raftApply is applyLocal for callers that hold applyGate already.
func (s *Service) raftApply(ctx context.Context, data []byte) (*applyResult, error) {
	timeout := applyTimeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
	}
	// The future is not abandoned when a caller's context ends: the
	// command may commit regardless, and the caller must learn its fate.
	f := s.node.raft.Apply(data, timeout)
	if err := f.Error(); err != nil {
		if errors.Is(err, raft.ErrRaftShutdown) {
			return nil, ErrClosed
		}
		return nil, fmt.Errorf("raft: %w", err)
	}
	res, ok := f.Response().(*applyResult)
	if !ok {
		return nil, fmt.Errorf("unexpected state machine response %T", f.Response())
	}
	return res, nil
}

// serveApply applies a command another node forwarded.
func (s *Service) serveApply(ctx context.Context, a applyArgs) (wireResult, error) {
	if s.node.raft.State() != raft.Leader {
		return wireResult{}, s.notLeader()
	}
	if len(a.Data) == 0 || msgType(a.Data[0])&msgEnvelope == 0 {
		// Only commands in an envelope may be sent again safely.
		return wireResult{}, fmt.Errorf("%w: forwarded command without an idempotency key", ErrBadRequest)
	}
	res, err := s.applyLocal(ctx, a.Data)
	if err != nil {
		if errors.Is(err, ErrClosed) || retryable(err) {
			return wireResult{}, fmt.Errorf("%w: %w", errUnavailable, err)
		}
		return wireResult{}, err
	}
	return toWire(res), nil
}

func (s *Service) notLeader() error {
	addr, id := s.node.raft.LeaderWithID()
	if addr == "" {
		return fmt.Errorf("%w: %s does not lead and knows no leader", errNotLeader, s.cluster.id)
	}
	return fmt.Errorf("%w: %s does not lead; %s at %s does", errNotLeader, s.cluster.id, id, addr)
}

// policyDigest caches a policy's digest, which hashes the whole policy.
type policyDigest struct {
	p      *Policy
	digest string
}

func (s *Service) digestOf(p *Policy) string {
	if c := s.digest.Load(); c != nil && c.p == p {
		return c.digest
	}
	d := p.Digest()
	s.digest.Store(&policyDigest{p, d})
	return d
}

// leaderAddr returns the address of the leader, for a node that does not
// lead. A node that names itself (it is shutting down, or was removed while
// it led) has none: calling itself would go round in circles.
func (s *Service) leaderAddr() (string, error) {
	addr, id := s.node.raft.LeaderWithID()
	switch {
	case addr == "":
		return "", fmt.Errorf("%w: none elected", ErrNoLeader)
	case string(id) == s.cluster.id || string(addr) == s.cluster.addr:
		return "", fmt.Errorf("%w: this node does not lead, and knows no other leader", ErrNoLeader)
	}
	return string(addr), nil
}

// soleVoter reports whether this node is the only voter of its cluster,
// or runs on its own.
func (s *Service) soleVoter() bool {
	if s.cluster == nil {
		return true
	}
	f := s.node.raft.GetConfiguration()
	if f.Error() != nil {
		return false
	}
	voters := 0
	for _, sv := range f.Configuration().Servers {
		if sv.Suffrage == raft.Voter {
			voters++
		}
	}
	return voters == 1
}

// retryOnLeader runs f, a call that must reach the leader, again while it
// fails for want of one, until ctx ends.
func (s *Service) retryOnLeader(ctx context.Context, f func(context.Context) error) error {
	delay := time.Duration(0)
	for {
		changed := s.node.watchLeader()
		err := f(ctx)
		if err == nil || !retryable(err) {
			return err
		}
		delay = min(max(2*delay, applyRetryFirst), applyRetryMax)
		timer := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			timer.Stop()
			return err
		case <-s.stop:
			timer.Stop()
			return ErrClosed
		case <-changed:
			timer.Stop()
		case <-timer.C:
		}
	}
}

// enqueue hands data to this node's raft when it leads, and returns a
// function that waits for its result; a command raft does not take then
// (leadership lost) is committed the ordinary way, the same bytes, which
// its key keeps from being applied twice. Commands handed over one after
// another are applied in that order. It returns false when this node
// does not lead.
func (s *Service) enqueue(data []byte) (wait func(context.Context) (*applyResult, error), ok bool) {
	s.applyGate.RLock()
	if s.cluster != nil && !s.node.isLeader() {
		s.applyGate.RUnlock()
		return nil, false
	}
	f := s.node.raft.Apply(data, s.applyWait)
	s.applyGate.RUnlock()
	return func(ctx context.Context) (*applyResult, error) {
		if err := f.Error(); err != nil {
			if retryable(err) {
				return s.applyBytes(data)
			}
			if errors.Is(err, raft.ErrRaftShutdown) {
				return nil, ErrClosed
			}
			return nil, fmt.Errorf("raft: %w", err)
		}
		res, ok := f.Response().(*applyResult)
		if !ok {
			return nil, fmt.Errorf("unexpected state machine response %T", f.Response())
		}
		return res, nil
	}, true
}
