package approvals

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/jitssh/jitssh/approvals/workload"
	"github.com/jitssh/jitssh/audit"
	"github.com/jitssh/jitssh/principals"
)

// A CI/CD job has no key listed in the policy: it proves who it is with
// the identity token its platform gives it (GitHub Actions, GitLab CI),
// and what key it holds by authenticating with it. SubmitWorkload checks
// the token (see package workload), turns it into the job's identity,
// matches that against the workload rules, and requests a certificate for
// exactly the key the job authenticated with.

// ErrWorkloadRefused: a CI/CD job's token was refused (expired, another
// audience, an issuer or key the daemon does not trust, ...). The message
// says why.
var ErrWorkloadRefused = fmt.Errorf("%w: workload token refused", ErrForbidden)

// WorkloadInput is what a CI/CD job asks for.
type WorkloadInput struct {
	Token  string // the platform's OIDC ID token
	Repo   string
	Ref    string
	Access string
	TTL    time.Duration // 0 takes the rule's default
	Reason string
}

// SubmitWorkload makes a request as the CI/CD job whose token in.Token
// is, for the key who authenticated with (who.Key: a plain key nobody is
// listed for). The token must verify, must not have been used for a
// request before, and its claims must fall under a workload rule; a
// request under an auto-approving rule comes back with its certificate.
//
// Refusals wrap ErrWorkloadRefused (the token), ErrTokenUsed (a token
// presented again), ErrNoRule, ErrBadRequest or ErrRateLimited. A refusal
// of a token its issuer did sign is recorded on the audit log as
// AuditWorkloadRefused, with the token's claims; a token no trusted issuer
// signed is refused with a line in the daemon's log only, since anyone
// who can reach the daemon can send one.
func (s *Service) SubmitWorkload(ctx context.Context, who Actor, in WorkloadInput) (*Request, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.policyMu.RLock()
	defer s.policyMu.RUnlock()
	p := s.policy
	if err := s.admitWorkloadKey(p, who.Key); err != nil {
		return nil, err
	}
	now := s.clock()
	id, err := p.workloads.Verify(ctx, in.Token, now)
	if err != nil {
		return nil, s.tokenRefused(p, in, now, err)
	}
	w := p.workloadIdentity(id, in.Token, p.workloads.Skew())
	who = Actor{Person: w.Requester(), Key: who.Key, Workload: w}
	if err := s.admitWorkload(p, who.Person, in, now); err != nil {
		return nil, err
	}
	sub := SubmitInput{Repo: in.Repo, Ref: in.Ref, Access: in.Access, TTL: in.TTL, Reason: in.Reason, PublicKey: who.Key}
	req, err := s.buildRequest(p, who.Person, sub, now, func(repo, ref string, access principals.Access) (*Rule, error) {
		return p.MatchWorkload(w.Issuer, w.Claims, repo, ref, access)
	})
	if errors.Is(err, ErrNoRule) {
		return nil, s.recordRefusal(refusalOf(&Request{Requester: who.Person, Repo: in.Repo, Ref: in.Ref, Access: in.Access, CreatedAt: now, Workload: w}, err), err)
	}
	if err != nil {
		return nil, err
	}
	req.Workload = w
	if req.ID, err = s.ids.next(now); err != nil {
		return nil, err
	}
	d := requestData(req)
	if err := audit.CheckWorkloadRecord(&d); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	res, err := s.commit(msgSubmit, submitCmd{Request: req, MaxPending: p.MaxPendingPerUser(), Token: w.Token})
	if err != nil {
		if res != nil && res.request != nil && res.request.State == StateApproved {
			s.retryLater(req.ID, err)
		}
		return nil, err
	}
	if res.refused != nil {
		s.logger.Info("workload refused", "requester", who.Person, "token", w.TokenID, "err", res.refused)
		return nil, res.refused
	}
	r := res.request
	if r.State == StateApproved {
		return s.issue(r)
	}
	return r.clone(), nil
}

// admitWorkloadKey checks that the policy takes workload requests and that
// key may be certified for one: a plain key, nobody's identity, not the
// daemon's own.
func (s *Service) admitWorkloadKey(p *Policy, key ssh.PublicKey) error {
	switch {
	case !p.AcceptsWorkloads():
		return fmt.Errorf("%w: this daemon trusts no CI/CD token issuer (no oidc: in its config)", ErrForbidden)
	case key == nil:
		return fmt.Errorf("%w: a workload must authenticate with the fresh key it asks a certificate for", ErrForbidden)
	}
	if _, ok := key.(*ssh.Certificate); ok {
		return fmt.Errorf("%w: the key to certify is a certificate; authenticate with a fresh plain key", ErrBadRequest)
	}
	if owner, _, ok := p.Identify(key); ok {
		return fmt.Errorf("%w: the key is %s's identity key; a workload authenticates with a fresh key", ErrForbidden, owner)
	}
	if k := s.guard.hostKey; k != nil && bytes.Equal(key.Marshal(), k.Marshal()) {
		return fmt.Errorf("%w: the key to certify is the daemon's own host key; use a fresh key", ErrBadRequest)
	}
	return nil
}

// tokenRefused answers a token Verify refused: on the audit log when its
// issuer signed it (the claims are then the issuer's word), in the
// daemon's log only otherwise.
func (s *Service) tokenRefused(p *Policy, in WorkloadInput, now time.Time, err error) error {
	var r *workload.Refusal
	if !errors.As(err, &r) {
		return err
	}
	if errors.Is(err, workload.ErrKeySet) {
		// Not the job's doing: the issuer's keys could not be fetched.
		return fmt.Errorf("workload token not checked: %w", err)
	}
	refused := fmt.Errorf("%w: %w", ErrWorkloadRefused, err)
	if r.Signed == nil {
		s.logger.Warn("workload token refused", "reason", r.Msg, "claimed_iss", r.Claimed["iss"],
			"claimed_sub", r.Claimed["sub"], "claimed", describeClaims(r.Claimed))
		return refused
	}
	w := p.workloadIdentity(r.Signed, in.Token, p.workloads.Skew())
	if err := s.admitWorkload(p, w.Requester(), in, now); err != nil {
		s.logger.Warn("workload token refused; not audited", "requester", w.Requester(), "reason", r.Msg, "because", err)
		return refused
	}
	return s.recordRefusal(refusalOf(&Request{Requester: w.Requester(), Repo: in.Repo, Ref: in.Ref, Access: in.Access, CreatedAt: now, Workload: w}, refused), refused)
}

// recordRefusal puts a refusal on the audit log and returns why.
func (s *Service) recordRefusal(f *workloadRefusal, why error) error {
	s.logger.Info("workload refused", "requester", f.Requester, "reason", f.Reason)
	if _, err := s.commit(msgSubmit, submitCmd{Refusal: f}); err != nil {
		return fmt.Errorf("record workload refusal: %w", err)
	}
	return why
}

// workloadRefusal is a refused CI/CD job, as the audit log records it.
type workloadRefusal struct {
	Requester string            `json:"requester"`
	At        time.Time         `json:"at"`
	Repo      string            `json:"repo"`
	Ref       string            `json:"ref"`
	Access    string            `json:"access"`
	Reason    string            `json:"reason"`
	Workload  *WorkloadIdentity `json:"workload"`
}

// refusalOf is the record of r refused. It leaves the token out: one that
// was refused may still be good, and the audit log is read by many.
func refusalOf(r *Request, why error) *workloadRefusal {
	return &workloadRefusal{Requester: r.Requester, At: r.CreatedAt, Repo: truncateText(r.Repo, 256), Ref: truncateText(r.Ref, 256),
		Access: truncateText(r.Access, 16), Reason: truncateText(why.Error(), MaxReasonLen), Workload: r.Workload}
}

func (f *workloadRefusal) event() auditEvent {
	d := audit.WorkloadRefusedData{Requester: f.Requester, Repo: f.Repo, Ref: f.Ref, Access: f.Access, Reason: f.Reason}
	if w := f.Workload.data(); w != nil {
		d.Workload = *w
	}
	return auditEvent{AuditWorkloadRefused, f.Requester, f.At, d}
}

// admitWorkload keeps one job identity within the request limits a person
// has: its live certificates and its requests per hour, refusals
// included, so that a leaked token presented again and again cannot fill
// the audit log.
func (s *Service) admitWorkload(p *Policy, requester string, in WorkloadInput, now time.Time) error {
	if err := checkRefText(in.Ref); err != nil {
		return err
	}
	lim := p.Limits()
	n, err := s.liveCertificates(p, requester, now, lim.MaxLiveCertificates)
	if err != nil {
		return err
	}
	if n >= lim.MaxLiveCertificates {
		return fmt.Errorf("%w: %s has %d live %s, the most the limits allow",
			ErrRateLimited, requester, n, plural(n, "certificate", "certificates"))
	}
	g := &s.guard
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.buckets == nil {
		g.buckets = map[string]*bucket{}
	}
	b, ok := g.buckets[requester]
	if !ok {
		b = &bucket{}
		g.buckets[requester] = b
	}
	if ok, wait := b.take(now, lim.RequestsPerHour, lim.RequestBurst); !ok {
		return fmt.Errorf("%w: %s has made as many requests as the limits allow (%d at once, %d an hour); try again in %v",
			ErrRateLimited, requester, lim.RequestBurst, lim.RequestsPerHour, wait.Round(time.Second))
	}
	return nil
}

// WaitWorkload is Wait for the CI/CD job that made request id: who must
// hold the key the request certifies, which is what the job authenticated
// with when it made the request.
func (s *Service) WaitWorkload(ctx context.Context, who Actor, id string, afterVersion uint64) (*Request, error) {
	return s.wait(ctx, id, afterVersion, func(r *Request) error {
		if r.Workload == nil || who.Key == nil {
			return notFound(id)
		}
		key, _, _, _, err := ssh.ParseAuthorizedKey([]byte(r.PublicKey))
		if err != nil || !bytes.Equal(key.Marshal(), who.Key.Marshal()) {
			return notFound(id)
		}
		return nil
	})
}
