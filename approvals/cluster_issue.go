package approvals

import (
	"context"
	"errors"
	"fmt"
)

// In a cluster the leader signs. Every voter holds the CA key, and any of
// them could sign with the serial it reads as next; but nodes signing at
// once all read the same serial, the state machine takes one certificate
// and refuses the others, and under load most signatures are wasted on
// retries. So a follower whose approval completes a request (or whose
// request was auto-approved) asks the leader to issue it: the leader signs
// one certificate at a time, as a node on its own does. The follower then
// waits until its own state and audit log hold the certificate, and
// answers with it. Should the leader change meanwhile, the next one finds
// the certificate if it was stored, or issues it.

// errBeingIssued: the certificate is being issued by another call on this
// node; wait for it.
var errBeingIssued = fmt.Errorf("%w: being issued", ErrIssue)

type issueArgs struct {
	ID string `json:"id"`
}

// issueOnLeader has the leader issue the certificate of r, an approved
// request, and returns r with it once this node's audit log holds its
// issue entry.
func (s *Service) issueOnLeader(ctx context.Context, r *Request) (*Request, error) {
	var version uint64
	err := s.retryOnLeader(ctx, func(ctx context.Context) error {
		addr, err := s.leaderAddr()
		if err != nil {
			return err
		}
		var got Request
		if err := s.cluster.rpc.call(ctx, addr, rpcIssue, issueArgs{ID: r.ID}, &got); err != nil {
			return err
		}
		version = got.Version
		return nil
	})
	if err != nil {
		return nil, err
	}
	if err := s.fsm.awaitApplied(ctx, version); err != nil {
		return nil, fmt.Errorf("%w: certificate of %s stored at raft index %d, not applied here yet: %w", ErrIssue, r.ID, version, err)
	}
	if err := s.journal.await(ctx, version); err != nil {
		return nil, err
	}
	cur, err := s.lookup(r.ID)
	if err != nil {
		return nil, err
	}
	if !cur.HasCertificate() {
		return nil, fmt.Errorf("%w: %s has no certificate here after the leader issued it", ErrIssue, r.ID)
	}
	return cur, nil
}

// serveIssue issues, on the leader, the certificate of an approved request
// a follower asks for, or returns the one it has.
func (s *Service) serveIssue(ctx context.Context, a issueArgs) (*Request, error) {
	if !s.node.isLeader() {
		return nil, s.notLeader()
	}
	r, err := s.lookup(a.ID)
	if err != nil {
		return nil, err
	}
	for !r.HasCertificate() {
		s.policyMu.RLock()
		_, err = s.issue(r)
		s.policyMu.RUnlock()
		if errors.Is(err, errBeingIssued) {
			// Another call here is issuing it (the follower's earlier try
			// whose answer it never got, a retry): wait for that one.
			if r, err = s.wait(ctx, a.ID, r.Version, anyone); err != nil {
				return nil, err
			}
			continue
		}
		if err != nil {
			if cur, lerr := s.lookup(a.ID); lerr == nil && cur.HasCertificate() {
				r = cur
				break
			}
			return nil, err
		}
		if r, err = s.lookup(a.ID); err != nil {
			return nil, err
		}
		if !r.HasCertificate() {
			return nil, fmt.Errorf("%w: %s has no certificate after it was issued", ErrIssue, a.ID)
		}
	}
	if err := s.journal.await(ctx, r.Version); err != nil {
		return nil, err
	}
	return r, nil
}
