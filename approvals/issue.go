package approvals

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/jitssh/jitssh/ca"
	"github.com/jitssh/jitssh/principals"
)

// Issuing a certificate is one command around the signature:
//
//  1. the approval must be durable on the audit log (journal.await);
//  2. the CA signs with the next serial, one signature at a time (issueMu),
//     and hands it to raft in serial order;
//  3. store-certificate takes that serial and records the certificate and
//     its "issue" entry in one change, refusing a certificate whose serial
//     is no longer the next one;
//  4. once the entry is durable, the certificate leaves.
//
// So every certificate that leaves has its serial in the state and its
// entry on the log, and no serial is on record for a certificate that did
// not leave. A crash anywhere before 3 leaves the request approved without
// a certificate; Open finds it and issues it.

// Retry delays after a failed issue.
const (
	retryFirst = 5 * time.Second
	retryMax   = 5 * time.Minute
)

type retryState struct {
	next  time.Time // real time of the next attempt
	delay time.Duration
}

var errDryRun = errors.New("dry run: no serial taken")

// refuseSerials is a SerialSource that never hands out a serial; Sign
// stops at it after checking the request.
type refuseSerials struct{}

func (refuseSerials) NextSerial() (uint64, error) { return 0, errDryRun }

// nextSerial is the SerialSource of one signature: the serial the state
// says comes next. store-certificate refuses it if another took it first.
type nextSerial struct{ serial uint64 }

func (n nextSerial) NextSerial() (uint64, error) {
	if n.serial >= ca.BreakGlassBit {
		return 0, fmt.Errorf("%w: %d serials issued", ca.ErrSerialsExhausted, n.serial-1)
	}
	return n.serial, nil
}

// certRequest is what r's certificate is signed from, under policy p: a
// grant certificate, or, when r's rule names a Git host's profile, a
// certificate for the requester's account on that host, which the host
// scopes to the whole account and jitssh only to the grant's time.
func certRequest(p *Policy, r *Request, key ssh.PublicKey, grant principals.Grant) (ca.CertRequest, error) {
	keyID := r.KeyID()
	if r.ID == "" { // a dry run: the key ID has the shape of the real one
		keyID = r.Requester + "/" + idPrefix + strings.Repeat("0", idLen-len(idPrefix))
	}
	req := ca.CertRequest{
		PublicKey:     key,
		KeyID:         keyID,
		Grants:        []principals.Grant{grant},
		TTL:           r.GrantedTTL().D(),
		SourceAddress: r.SourceAddress,
	}
	rule, ok := p.Rule(r.Rule)
	if !ok || rule.Profile == "" {
		return req, nil
	}
	profile, err := ca.ParseHostProfile(rule.Profile) // checked with the policy
	if err != nil {
		return ca.CertRequest{}, err
	}
	account := p.Account(r.Requester, profile)
	if account == "" {
		return ca.CertRequest{}, fmt.Errorf("%w: rule %s issues %s certificates, and the policy lists no %s account for %s (people: accounts: {%s: NAME})",
			ErrNoAccount, rule.Name, profile, profile, r.Requester, profile)
	}
	req.Profile, req.Account, req.Host, req.Grants = profile, account, rule.Host, nil
	if profile.KeyIDIsAccount() {
		req.KeyID = "" // the host reads the key ID as the account
	}
	return req, nil
}

// issue signs and stores the certificate of an approved request and
// returns the request with it. When it fails, the request stays approved
// and the Service retries in the background; the error wraps ErrIssue.
func (s *Service) issue(r *Request) (*Request, error) {
	s.mu.Lock()
	if s.issuing[r.ID] {
		s.mu.Unlock()
		return nil, fmt.Errorf("%w: %s is approved and its certificate is being issued; wait for it", errBeingIssued, r.ID)
	}
	s.issuing[r.ID] = true
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.issuing, r.ID)
		s.mu.Unlock()
	}()

	out, err := s.sign(r)
	if err != nil {
		s.retryLater(r.ID, err)
		if !errors.Is(err, ErrIssue) {
			err = fmt.Errorf("%w: %s is approved, but its certificate is not issued yet (retrying): %w", ErrIssue, r.ID, err)
		}
		return nil, err
	}
	s.mu.Lock()
	delete(s.retry, r.ID)
	s.mu.Unlock()
	return out.clone(), nil
}

// retryLater schedules another attempt at issuing the certificate of an
// approved request, backing off from retryFirst to retryMax, and wakes the
// background loop to take note.
func (s *Service) retryLater(id string, cause error) {
	s.mu.Lock()
	st := s.retry[id]
	st.delay = min(max(2*st.delay, retryFirst), retryMax)
	st.next = time.Now().Add(st.delay)
	s.retry[id] = st
	s.mu.Unlock()
	s.logger.Error("certificate not issued", "id", id, "retry_in", st.delay, "err", cause)
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *Service) sign(r *Request) (*Request, error) {
	ctx, cancel := context.WithTimeout(context.Background(), applyTimeout)
	defer cancel()
	if err := s.journal.await(ctx, r.Version); err != nil {
		return nil, fmt.Errorf("approval of %s not on the audit log: %w", r.ID, err)
	}
	key, _, _, _, err := ssh.ParseAuthorizedKey([]byte(r.PublicKey))
	if err != nil {
		return nil, fmt.Errorf("public key of %s: %w", r.ID, err)
	}
	grant, err := principals.Parse(r.Grant)
	if err != nil {
		return nil, fmt.Errorf("grant of %s: %w", r.ID, err)
	}
	for {
		if s.cluster != nil && !s.node.isLeader() {
			// In a cluster the leader signs (see cluster_issue.go).
			return s.issueOnLeader(ctx, r)
		}
		// Every caller of issue holds policyMu.
		creq, err := certRequest(s.policy, r, key, grant)
		if err != nil {
			return nil, fmt.Errorf("certificate of %s: %w", r.ID, err)
		}
		res, handOff, err := s.signHere(ctx, r, creq)
		if handOff {
			continue
		}
		if err != nil {
			return nil, err
		}
		// The next signature may start as soon as the state holds this
		// serial; this one leaves once its entry is on the audit log.
		if err := s.journal.await(ctx, res.index); err != nil {
			return nil, fmt.Errorf("%s: %w", msgStoreCertificate, err)
		}
		return res.request, nil
	}
}

// signHere signs and stores the certificate on this node and returns once
// the state holds it. Signatures are made one at a time, each with the
// serial after the last one handed to raft (issueNext), and handed to raft
// in that order, so that several can be committed at once: raft applies
// them in the order they were handed over. When one is refused (its
// request was revoked meanwhile), the ones after it are refused too, for
// the gap, and sign again. It hands off (to the leader) when this node
// stops leading while another node takes the serials it signs with.
func (s *Service) signHere(ctx context.Context, r *Request, creq ca.CertRequest) (_ *applyResult, handOff bool, _ error) {
	for attempt := 1; ; attempt++ {
		res, err := s.signNext(ctx, r, creq)
		// In a cluster another node may have taken the serial (sign again
		// with the next one, or let the leader sign), or issued this very
		// request (it has left once its entry is on this node's log too).
		if errors.Is(err, errSerialTaken) && attempt < maxSignAttempts && ctx.Err() == nil {
			if s.cluster != nil && !s.node.isLeader() {
				return nil, true, err
			}
			continue
		}
		if errors.Is(err, ErrIssue) && s.cluster != nil {
			if cur, lerr := s.lookup(r.ID); lerr == nil && cur.HasCertificate() {
				return &applyResult{index: cur.Version, request: cur}, false, nil
			}
		}
		if err != nil {
			return nil, false, err
		}
		return res, false, nil
	}
}

// signNext makes one attempt: sign with the next serial, commit.
func (s *Service) signNext(ctx context.Context, r *Request, creq ca.CertRequest) (*applyResult, error) {
	s.issueMu.Lock()
	last, err := s.fsm.State().counter(metaSerial)
	if err != nil {
		s.issueMu.Unlock()
		return nil, err
	}
	last = max(last, s.issueNext)
	issuedAt := s.clock()
	cert, err := s.authority.Sign(creq, nextSerial{last + 1})
	if err != nil {
		s.issueMu.Unlock()
		return nil, err
	}
	data, err := encodeEnvelope(msgStoreCertificate|msgAudited, issuedCert{
		ID:          r.ID,
		Serial:      cert.Serial,
		Certificate: strings.TrimSuffix(string(ssh.MarshalAuthorizedKey(cert)), "\n"),
		IssuedAt:    issuedAt,
		ValidAfter:  time.Unix(int64(cert.ValidAfter), 0).UTC(),
		ValidBefore: time.Unix(int64(cert.ValidBefore), 0).UTC(),
	}, "", issuedAt)
	if err != nil {
		s.issueMu.Unlock()
		return nil, err
	}
	wait, queued := s.enqueue(data)
	if !queued {
		// Not leading: commit it the ordinary way, one at a time.
		defer s.issueMu.Unlock()
		res, err := s.applyBytes(data)
		return resultErr(res, err)
	}
	s.issueNext = cert.Serial
	s.issueMu.Unlock()
	res, err := resultErr(wait(ctx))
	if err != nil {
		// What was handed over after this one is refused too; whoever
		// signs next starts from the state again.
		s.issueMu.Lock()
		s.issueNext = 0
		s.issueMu.Unlock()
	}
	return res, err
}

func resultErr(res *applyResult, err error) (*applyResult, error) {
	if err != nil {
		return nil, fmt.Errorf("%s: %w", msgStoreCertificate, err)
	}
	if res.err != nil {
		return nil, res.err
	}
	return res, nil
}

// maxSignAttempts bounds how often one issue signs again after another
// node took the serial it signed with; the apply timeout bounds it too.
const maxSignAttempts = 100

// issueUnissued issues the certificates of approved requests that have
// none: at start, those a crash interrupted (all is true); later, those
// whose retry is due.
func (s *Service) issueUnissued(all bool) {
	reqs, err := s.fsm.State().unissuedRequests(nil)
	if err != nil {
		s.logger.Error("find unissued requests", "err", err)
		return
	}
	// Forget retries of requests that got their certificate, or were
	// revoked, some other way.
	unissued := make(map[string]bool, len(reqs))
	for _, r := range reqs {
		unissued[r.ID] = true
	}
	s.mu.Lock()
	for id := range s.retry {
		if !unissued[id] {
			delete(s.retry, id)
		}
	}
	s.mu.Unlock()

	s.policyMu.RLock()
	defer s.policyMu.RUnlock()
	now := time.Now()
	for _, r := range reqs {
		s.mu.Lock()
		st, failed := s.retry[r.ID]
		s.mu.Unlock()
		// A request approved a moment ago and not in the retry set is
		// being issued by the call that approved it.
		if !all && (!failed || now.Before(st.next)) {
			continue
		}
		if r.Serial != 0 && !failed {
			s.logger.Warn("serial allocated but no certificate stored; issuing with a new serial", "id", r.ID, "serial", r.Serial)
		}
		if _, err := s.issue(r); err == nil {
			s.logger.Info("certificate issued after restart or retry", "id", r.ID)
		}
	}
}

// nextRetry returns the real time of the earliest due retry, or zero.
func (s *Service) nextRetry() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	var next time.Time
	for _, st := range s.retry {
		if next.IsZero() || st.next.Before(next) {
			next = st.next
		}
	}
	return next
}
