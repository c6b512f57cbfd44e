package approvals

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/jitssh/jitssh/audit"
	"github.com/jitssh/jitssh/principals"
)

// SubmitInput is a request for access.
type SubmitInput struct {
	Repo      string        // a repo name; a leading "/" and trailing ".git" are dropped
	Ref       string        // a full ref ("refs/heads/main") or a pattern ("refs/heads/feature/*", "*")
	Access    string        // read, write or force
	TTL       time.Duration // 0 takes the rule's default
	Reason    string
	PublicKey ssh.PublicKey // the fresh key to certify; a plain key, not a certificate
	Signature string        // the requester's SSHSIG over the request, stored as given
	Statement string        // the exact message Signature signs, stored as given
	DryRun    bool          // check and answer, store nothing
	// RequestTTL is how long the request may wait for a decision; 0 takes
	// the daemon's request_timeout, which is also the most it may be.
	RequestTTL time.Duration
}

// Submit makes a request as who. It checks the input, the policy and the
// limits, and refuses with ErrBadRequest, ErrNoRule, ErrForbidden,
// ErrTooManyPending or ErrRateLimited. A
// request under an auto-approving rule comes back with its certificate;
// any other comes back pending. With DryRun, nothing is stored: the answer
// is the request as it would be (no ID, State pending or approved, Rule
// set) or the refusal.
func (s *Service) Submit(ctx context.Context, who Actor, in SubmitInput) (*Request, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.policyMu.RLock()
	defer s.policyMu.RUnlock()
	p := s.policy
	now := s.clock()
	person, err := s.admitSubmit(p, who, in, now)
	if err != nil {
		return nil, err
	}
	req, err := s.newRequest(p, person, in, now)
	if err != nil {
		return nil, err
	}
	if in.DryRun {
		if req.State == StatePending && p.MaxPendingPerUser() > 0 {
			n, err := pendingCountTxn(s.fsm.State().db.Txn(false), person, now)
			if err != nil {
				return nil, err
			}
			if n >= p.MaxPendingPerUser() {
				return nil, fmt.Errorf("%w: %s has %d pending %s, the most the policy allows; cancel one or wait for a decision",
					ErrTooManyPending, person, n, plural(n, "request", "requests"))
			}
		}
		return req, nil
	}
	if req.ID, err = s.ids.next(now); err != nil {
		return nil, err
	}
	if req.Statement != "" {
		// Refuse what the auditor's verifier would reject: the record must
		// say what the requester signed.
		d := requestData(req)
		if err := audit.CheckRequestRecord(&d); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrBadRequest, err)
		}
	}
	res, err := s.commit(msgSubmit, submitCmd{Request: req, MaxPending: p.MaxPendingPerUser()})
	if err != nil {
		if res != nil && res.request != nil && res.request.State == StateApproved {
			s.retryLater(req.ID, err) // auto-approved: its certificate must still come
		}
		return nil, err
	}
	r := res.request
	if r.State == StateApproved {
		return s.issue(r)
	}
	return r.clone(), nil
}

// newRequest checks in against the policy and builds the request it asks
// for, without an ID.
func (s *Service) newRequest(p *Policy, person string, in SubmitInput, now time.Time) (*Request, error) {
	if _, err := actor(p, person); err != nil {
		return nil, err
	}
	return s.buildRequest(p, person, in, now, func(repo, ref string, access principals.Access) (*Rule, error) {
		return p.Match(person, repo, ref, access)
	})
}

// buildRequest checks in and builds the request requester asks for under
// the rule match picks, without an ID.
func (s *Service) buildRequest(p *Policy, requester string, in SubmitInput, now time.Time,
	match func(repo, ref string, access principals.Access) (*Rule, error)) (*Request, error) {
	person := requester
	repo, err := principals.NormalizeRepo(in.Repo)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	if err := principals.CheckRefPattern(in.Ref); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	access, err := principals.ParseAccess(in.Access)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	grant := principals.Grant{Access: access, Repo: repo, Ref: in.Ref}
	if err := grant.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	if err := checkText("reason", in.Reason, MaxReasonLen); err != nil {
		return nil, err
	}
	if err := checkSignature(in.Signature); err != nil {
		return nil, err
	}
	if err := checkFreshKey(p, in.PublicKey); err != nil {
		return nil, err
	}

	rule, err := match(repo, in.Ref, access)
	if err != nil {
		return nil, err
	}
	ttl := in.TTL
	if ttl == 0 {
		ttl = rule.DefaultTTL.D()
	}
	if ttl < rule.MinTTL.D() || ttl > rule.MaxTTL.D() {
		return nil, fmt.Errorf("%w: ttl %v is outside %v to %v, the range of rule %s",
			ErrBadRequest, ttl, rule.MinTTL, rule.MaxTTL, rule.Name)
	}
	waits := p.RequestTimeout()
	switch {
	case in.RequestTTL < 0:
		return nil, fmt.Errorf("%w: request ttl %v is negative", ErrBadRequest, in.RequestTTL)
	case in.RequestTTL > waits:
		return nil, fmt.Errorf("%w: request ttl %v is longer than the %v a request may wait here (request_timeout)",
			ErrBadRequest, in.RequestTTL, waits)
	case in.RequestTTL > 0:
		waits = in.RequestTTL
	}
	if rule.RequireReason && strings.TrimSpace(in.Reason) == "" {
		return nil, fmt.Errorf("%w: rule %s requires a reason", ErrBadRequest, rule.Name)
	}
	if !rule.AutoApprove && !p.canBeApproved(rule.Approvals, person) {
		return nil, fmt.Errorf("%w: rule %s needs approval by %s, and there are not enough people besides %s to give it",
			ErrNoRule, rule.Name, stepsString(rule.Approvals), person)
	}

	req := &Request{
		Requester:     person,
		Repo:          repo,
		Ref:           in.Ref,
		Access:        access.String(),
		Grant:         grant.String(),
		TTL:           Duration(ttl),
		Reason:        in.Reason,
		PublicKey:     strings.TrimSuffix(string(ssh.MarshalAuthorizedKey(in.PublicKey)), "\n"),
		Rule:          rule.Name,
		Policy:        p.Digest(),
		Steps:         append([]Step{}, rule.Approvals...), // [] rather than null when none
		SourceAddress: rule.SourceAddress,
		State:         StatePending,
		CreatedAt:     now,
		ExpiresAt:     now.Add(waits),
		UpdatedAt:     now,
		Approvals:     []Approval{},
		Signature:     in.Signature,
		Statement:     in.Statement,
	}
	if rule.AutoApprove {
		req.State = StateApproved
		req.ExpiresAt = time.Time{}
	}
	// The CA checks a request completely before it takes a serial; asking
	// it now, with a serial source that refuses, catches what it would
	// refuse (key type and size, TTL cap, the CA's own key) before anything
	// is stored.
	creq, err := certRequest(p, req, in.PublicKey, grant)
	if err == nil {
		_, err = s.authority.Sign(creq, refuseSerials{})
	}
	if !errors.Is(err, errDryRun) {
		return nil, fmt.Errorf("%w: the certificate could not be signed: %w", ErrBadRequest, err)
	}
	return req, nil
}

// checkFreshKey refuses a key that cannot be certified for a grant.
func checkFreshKey(p *Policy, key ssh.PublicKey) error {
	if key == nil {
		return fmt.Errorf("%w: no public key to certify", ErrBadRequest)
	}
	if _, ok := key.(*ssh.Certificate); ok {
		return fmt.Errorf("%w: the key to certify is a certificate; send a plain public key", ErrBadRequest)
	}
	// A grant belongs on a fresh key that lives as long as the grant, not
	// on a long-lived identity key, where it would outlast the task.
	if owner, _, ok := p.Identify(key); ok {
		return fmt.Errorf("%w: the key to certify is %s's identity key; use a fresh key", ErrBadRequest, owner)
	}
	return nil
}
