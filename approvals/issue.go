package approvals

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/jitssh/jitssh/ca"
	"github.com/jitssh/jitssh/principals"
)

// Issuing a certificate takes two commands around the signature:
//
//  1. allocate-serial, applied from inside ca.Authority.Sign once the CA
//     has checked the request, takes the next serial and records it on the
//     request;
//  2. the CA signs;
//  3. the issue goes on the audit log;
//  4. store-certificate records the certificate, if it carries the serial on
//     record and the request has no certificate yet.
//
// Only then does the certificate leave, so every certificate that leaves
// has its serial on disk and on the audit log. A crash anywhere before 4
// leaves the request approved without a certificate; Open finds it and
// issues it again, with a new serial.

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

// serialSource allocates one serial for one request through raft.
type serialSource struct {
	s  *Service
	id string
	at time.Time // when the serial was taken: the moment of issue
}

func (src *serialSource) NextSerial() (uint64, error) {
	src.at = src.s.clock()
	res, err := src.s.apply(msgAllocateSerial, allocateSerialCmd{ID: src.id, At: src.at})
	if err != nil {
		return 0, err
	}
	return res.request.Serial, nil
}

func certRequest(r *Request, key ssh.PublicKey, grant principals.Grant) ca.CertRequest {
	keyID := r.KeyID()
	if r.ID == "" { // a dry run: the key ID has the shape of the real one
		keyID = r.Requester + "/" + idPrefix + strings.Repeat("0", idLen-len(idPrefix))
	}
	return ca.CertRequest{
		PublicKey:     key,
		KeyID:         keyID,
		Grants:        []principals.Grant{grant},
		TTL:           r.GrantedTTL().D(),
		SourceAddress: r.SourceAddress,
	}
}

// issue signs and stores the certificate of an approved request and
// returns the request with it. When it fails, the request stays approved
// and the Service retries in the background; the error wraps ErrIssue.
func (s *Service) issue(r *Request) (*Request, error) {
	s.mu.Lock()
	if s.issuing[r.ID] {
		s.mu.Unlock()
		return nil, fmt.Errorf("%w: %s is approved and its certificate is being issued; wait for it", ErrIssue, r.ID)
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
	key, _, _, _, err := ssh.ParseAuthorizedKey([]byte(r.PublicKey))
	if err != nil {
		return nil, fmt.Errorf("public key of %s: %w", r.ID, err)
	}
	grant, err := principals.Parse(r.Grant)
	if err != nil {
		return nil, fmt.Errorf("grant of %s: %w", r.ID, err)
	}
	src := &serialSource{s: s, id: r.ID}
	cert, err := s.authority.Sign(certRequest(r, key, grant), src)
	if err != nil {
		return nil, err
	}
	c := issuedCert{
		ID:          r.ID,
		Serial:      cert.Serial,
		Certificate: strings.TrimSuffix(string(ssh.MarshalAuthorizedKey(cert)), "\n"),
		IssuedAt:    src.at,
		ValidAfter:  time.Unix(int64(cert.ValidAfter), 0).UTC(),
		ValidBefore: time.Unix(int64(cert.ValidBefore), 0).UTC(),
	}
	rec := recordOf(r)
	rec.State = StateApproved
	rec.Serial = cert.Serial
	rec.KeyID = cert.KeyId
	rec.KeyFingerprint = ssh.FingerprintSHA256(key)
	rec.Principals = cert.ValidPrincipals
	rec.ValidAfter, rec.ValidBefore = c.ValidAfter, c.ValidBefore
	rec.Certificate = strings.TrimSpace(string(ssh.MarshalAuthorizedKey(cert)))
	rec.TTL = r.GrantedTTL()
	for _, a := range r.Approvals {
		rec.Approvers = append(rec.Approvers, a.By)
	}
	if err := s.record(AuditIssue, SystemActor, rec); err != nil {
		return nil, err
	}
	res, err := s.apply(msgStoreCertificate, c)
	if err != nil {
		return nil, err
	}
	return res.request, nil
}

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
