package approvals

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jitssh/jitssh/audit"
	"github.com/jitssh/jitssh/ca"
)

// DecisionInput is an approver's approval or denial.
type DecisionInput struct {
	Reason    string
	TTL       time.Duration // approvals only: a shorter grant; 0 leaves it
	Signature string        // the approver's SSHSIG, stored as given
	Statement string        // the exact message Signature signs, stored as given
}

// Approve records who's approval of a pending request. It refuses an
// unknown ID (ErrNotFound), a request that has ended (ErrNotPending), the
// requester (ErrSelfApproval), someone in none of the groups the request
// needs (ErrNotApprover), a second approval by the same person
// (ErrAlreadyApproved), and a TTL longer than requested or shorter than
// the rule's minimum (ErrBadRequest). The approval that meets the last step
// issues the certificate before Approve returns; its lifetime is the
// shortest TTL asked for, counted from the moment of issue.
func (s *Service) Approve(ctx context.Context, who Actor, id string, in DecisionInput) (*Request, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.policyMu.RLock()
	defer s.policyMu.RUnlock()
	p := s.policy
	person, groups, err := s.caller(p, who, id)
	if err != nil {
		return nil, err
	}
	if err := checkText("reason", in.Reason, MaxReasonLen); err != nil {
		return nil, err
	}
	if err := checkSignature(in.Signature); err != nil {
		return nil, err
	}
	cur, err := s.lookup(id)
	if err != nil {
		return nil, err
	}
	if in.TTL != 0 {
		minTTL := ca.MinTTL
		if rule, ok := p.Rule(cur.Rule); ok {
			minTTL = rule.MinTTL.D()
		}
		if in.TTL < minTTL {
			return nil, fmt.Errorf("%w: ttl %v is below %v, the shortest grant rule %s allows", ErrBadRequest, in.TTL, minTTL, cur.Rule)
		}
	}
	a := Approval{By: person, At: s.clock(), Reason: in.Reason, TTL: Duration(in.TTL), Signature: in.Signature, Statement: in.Statement, Groups: groups}
	if err := checkDecision(AuditApprove, cur, person, in); err != nil {
		return nil, err
	}
	res, err := s.commit(msgApprove, approveCmd{ID: id, Approval: a})
	if err != nil {
		if res != nil && res.complete {
			s.retryLater(id, err) // the approval stands; its certificate must still come
		}
		return nil, err
	}
	r := res.request
	if res.complete {
		return s.issue(r)
	}
	return r.clone(), nil
}

// Deny ends a pending request with a denial. Only someone whose approval
// the request needs may deny it, never the requester, and only with a
// reason.
func (s *Service) Deny(ctx context.Context, who Actor, id string, in DecisionInput) (*Request, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.policyMu.RLock()
	defer s.policyMu.RUnlock()
	person, groups, err := s.caller(s.policy, who, id)
	if err != nil {
		return nil, err
	}
	if err := checkText("reason", in.Reason, MaxReasonLen); err != nil {
		return nil, err
	}
	if strings.TrimSpace(in.Reason) == "" {
		return nil, fmt.Errorf("%w: a denial needs a reason", ErrBadRequest)
	}
	if err := checkSignature(in.Signature); err != nil {
		return nil, err
	}
	if !validID(id) {
		return nil, notFound(id)
	}
	if cur, err := s.lookup(id); err == nil {
		if err := checkDecision(AuditDeny, cur, person, in); err != nil {
			return nil, err
		}
	}
	d := Decision{By: person, At: s.clock(), Reason: in.Reason, Signature: in.Signature, Statement: in.Statement}
	res, err := s.commit(msgDeny, denyCmd{ID: id, Decision: d, Groups: groups})
	if err != nil {
		return nil, err
	}
	return res.request.clone(), nil
}

// Cancel ends a pending request at its requester's wish.
func (s *Service) Cancel(ctx context.Context, who Actor, id string) (*Request, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.policyMu.RLock()
	defer s.policyMu.RUnlock()
	person, _, err := s.caller(s.policy, who, id)
	if err != nil {
		return nil, err
	}
	if !validID(id) {
		return nil, notFound(id)
	}
	res, err := s.commit(msgCancel, cancelCmd{ID: id, Decision: Decision{By: person, At: s.clock()}})
	if err != nil {
		return nil, err
	}
	return res.request.clone(), nil
}

// Revoke ends a certificate before it expires, found by request ID or,
// when id is empty, by serial. Its serial is in KRL and RevokedSerials as
// soon as Revoke returns. The requester may revoke their own (that is a
// release, and recorded as one); otherwise only people in a group of the
// request's approval steps may, with a reason (for an auto-approved
// request, people in any rule's approval groups).
func (s *Service) Revoke(ctx context.Context, who Actor, id string, serial uint64, reason string) (*Request, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.policyMu.RLock()
	defer s.policyMu.RUnlock()
	p := s.policy
	person, groups, err := s.revoker(p, who, id, serial)
	if err != nil {
		return nil, err
	}
	if err := checkText("reason", reason, MaxReasonLen); err != nil {
		return nil, err
	}
	var cur *Request
	if id == "" {
		if serial != 0 {
			cur, err = s.fsm.State().requestBySerial(nil, serial)
		}
		if err != nil {
			return nil, err
		}
		if cur == nil {
			return nil, fmt.Errorf("%w: no live certificate with serial %d", ErrNotFound, serial)
		}
	} else if cur, err = s.lookup(id); err != nil {
		return nil, err
	} else if serial != 0 && serial != cur.Serial {
		return nil, fmt.Errorf("%w: %s has serial %d, not %d", ErrBadRequest, id, cur.Serial, serial)
	}
	if cur.Requester == person {
		return s.revoke(cur.ID, AuditRelease, Decision{By: person, At: s.clock(), Reason: releaseReason(reason)})
	}
	if !mayRevoke(p, cur, groups) {
		return nil, fmt.Errorf("%w: only %s or an approver of %s may revoke it", ErrForbidden, cur.Requester, cur.ID)
	}
	if strings.TrimSpace(reason) == "" {
		return nil, fmt.Errorf("%w: a revocation needs a reason", ErrBadRequest)
	}
	return s.revoke(cur.ID, AuditRevoke, Decision{By: person, At: s.clock(), Reason: reason})
}

// Release ends the requester's own live grant early, when the task is
// done: the certificate is revoked, and recorded as released.
func (s *Service) Release(ctx context.Context, who Actor, id string) (*Request, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.policyMu.RLock()
	defer s.policyMu.RUnlock()
	person, _, err := s.caller(s.policy, who, id)
	if err != nil {
		return nil, err
	}
	cur, err := s.lookup(id)
	if err != nil {
		return nil, err
	}
	if cur.Requester != person {
		return nil, fmt.Errorf("%w: only %s, who requested %s, may release it", ErrForbidden, cur.Requester, id)
	}
	return s.revoke(id, AuditRelease, Decision{By: person, At: s.clock(), Reason: releaseReason("")})
}

func releaseReason(reason string) string {
	if strings.TrimSpace(reason) == "" {
		return "released by the requester"
	}
	return reason
}

// mayRevoke reports whether someone with groups may revoke r: someone
// whose approval it needed, or for a request that needed none, anyone who
// approves under some rule.
func mayRevoke(p *Policy, r *Request, groups []string) bool {
	if len(r.Steps) > 0 {
		return slices.ContainsFunc(groups, r.stepGroup)
	}
	approvers := p.approverGroups()
	return slices.ContainsFunc(groups, func(g string) bool { return approvers[g] })
}

func (s *Service) revoke(id, kind string, d Decision) (*Request, error) {
	res, err := s.commit(msgRevoke, revokeCmd{ID: id, Decision: d, Kind: kind})
	if err != nil {
		return nil, err
	}
	return res.request.clone(), nil
}

// checkDecision refuses a signed decision whose record the auditor's
// verifier would reject: one that says other than what its maker signed.
func checkDecision(kind string, r *Request, person string, in DecisionInput) error {
	if in.Statement == "" {
		return nil
	}
	d := decisionData(r, person, in.Reason, Duration(in.TTL), in.Statement, in.Signature)
	if err := audit.CheckDecisionRecord(kind, &d); err != nil {
		return fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	return nil
}
