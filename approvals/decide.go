package approvals

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

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
	res, err := s.apply(msgApprove, approveCmd{ID: id, Approval: a})
	if err != nil {
		return nil, err
	}
	r := res.request
	rec := recordOf(r)
	rec.Reason, rec.TTL, rec.Signature = in.Reason, Duration(in.TTL), in.Signature
	rec.By, rec.Statement = person, in.Statement
	if err := s.record(AuditApprove, person, rec); err != nil {
		if res.complete {
			s.retryLater(r.ID, err) // the approval stands; its certificate must still come
		}
		return nil, err
	}
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
	d := Decision{By: person, At: s.clock(), Reason: in.Reason, Signature: in.Signature, Statement: in.Statement}
	res, err := s.apply(msgDeny, denyCmd{ID: id, Decision: d, Groups: groups})
	if err != nil {
		return nil, err
	}
	rec := recordOf(res.request)
	rec.Reason, rec.Signature = in.Reason, in.Signature
	rec.By, rec.Statement = person, in.Statement
	if err := s.record(AuditDeny, person, rec); err != nil {
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
	res, err := s.apply(msgCancel, cancelCmd{ID: id, Decision: Decision{By: person, At: s.clock()}})
	if err != nil {
		return nil, err
	}
	if err := s.record(AuditCancel, person, recordOf(res.request)); err != nil {
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
			return nil, fmt.Errorf("%w: no certificate with serial %d", ErrNotFound, serial)
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
	res, err := s.apply(msgRevoke, revokeCmd{ID: id, Decision: d})
	if err != nil {
		return nil, err
	}
	rec := recordOf(res.request)
	rec.Reason, rec.By = d.Reason, d.By
	if err := s.record(kind, d.By, rec); err != nil {
		return nil, err
	}
	return res.request.clone(), nil
}
