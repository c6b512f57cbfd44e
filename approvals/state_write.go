package approvals

import (
	"fmt"
	"slices"
	"time"

	"github.com/hashicorp/go-memdb"

	"github.com/jitssh/jitssh/audit"
	"github.com/jitssh/jitssh/ca"
)

// submitRequest stores a new request, pending or (auto-)approved. A
// pending one is refused when its requester already has maxPending
// pending requests; 0 means no limit.
func (s *stateStore) submitRequest(index uint64, req *Request, maxPending int) (*Request, error) {
	t := s.writeTxn(index)
	defer t.Abort()
	out, err := submitRequestTxn(t, req, maxPending)
	if err != nil {
		return nil, err
	}
	return out, t.Commit()
}

func submitRequestTxn(t *txn, req *Request, maxPending int) (*Request, error) {
	if req == nil || !validID(req.ID) {
		return nil, fmt.Errorf("%w: submit without a valid request ID", ErrBadRequest)
	}
	if req.State != StatePending && req.State != StateApproved {
		return nil, fmt.Errorf("%w: a new request cannot be %s", ErrBadRequest, req.State)
	}
	existing, err := requestByIDTxn(t.Txn, nil, req.ID)
	if err != nil {
		return nil, err
	}
	if existing != nil {
		return nil, fmt.Errorf("%w: request ID %s is taken", ErrBadRequest, req.ID)
	}
	if req.State == StatePending && maxPending > 0 {
		n, err := pendingCountTxn(t.Txn, req.Requester, req.CreatedAt)
		if err != nil {
			return nil, err
		}
		if n >= maxPending {
			return nil, fmt.Errorf("%w: %s has %d pending %s, the most the policy allows; cancel one or wait for a decision",
				ErrTooManyPending, req.Requester, n, plural(n, "request", "requests"))
		}
	}
	if req.Workload != nil {
		if err := useTokenTxn(t, req); err != nil {
			return nil, err
		}
	}
	r := req.clone()
	r.Version = t.index
	if err := t.Insert(tableRequests, r); err != nil {
		return nil, fmt.Errorf("store request %s: %w", r.ID, err)
	}
	return r, nil
}

// ErrTokenUsed: a CI/CD token that already got a request was presented
// again. Every token is accepted once.
var ErrTokenUsed = fmt.Errorf("%w: token already used", ErrForbidden)

// useTokenTxn records that the request's token was used, refusing one used
// before; first it forgets the tokens that stopped being usable before the
// request was made. Both go by the time the command carries, never by a
// clock, so every replica decides alike.
func useTokenTxn(t *txn, req *Request) error {
	w := req.Workload
	if w.TokenID == "" || w.UsableUntil.IsZero() {
		return fmt.Errorf("%w: workload request %s without a token ID or expiry", ErrBadRequest, req.ID)
	}
	if err := pruneTokensTxn(t, req.CreatedAt); err != nil {
		return err
	}
	prev, err := t.First(tableUsedTokens, indexID, w.TokenID)
	if err != nil {
		return fmt.Errorf("look up used token: %w", err)
	}
	if prev != nil {
		return fmt.Errorf("%w: it got request %s; a CI job's token is good for one request", ErrTokenUsed, prev.(*usedToken).Request)
	}
	if err := t.Insert(tableUsedTokens, &usedToken{ID: w.TokenID, Until: w.UsableUntil, Request: req.ID}); err != nil {
		return fmt.Errorf("remember used token: %w", err)
	}
	return nil
}

// tokensOf returns the used tokens of requests, for a snapshot from before
// snapshots held them: each is on its request. Those that had stopped
// being usable, and were forgotten, come back too, and go at the next
// workload request, as they would have.
func tokensOf(requests []*Request) []*usedToken {
	var out []*usedToken
	for _, r := range requests {
		if w := r.Workload; w != nil && w.TokenID != "" {
			out = append(out, &usedToken{ID: w.TokenID, Until: w.UsableUntil, Request: r.ID})
		}
	}
	return out
}

// allUsedTokens returns every remembered token, by the time it stops
// being usable, for a snapshot.
func allUsedTokens(tx *memdb.Txn) ([]*usedToken, error) {
	it, err := tx.Get(tableUsedTokens, indexUntil)
	if err != nil {
		return nil, fmt.Errorf("read used tokens: %w", err)
	}
	var out []*usedToken
	for obj := it.Next(); obj != nil; obj = it.Next() {
		out = append(out, obj.(*usedToken))
	}
	return out, nil
}

// pruneTokensTxn forgets the used tokens that could no longer be accepted
// at at: they stopped being usable, so nobody can present them again.
func pruneTokensTxn(t *txn, at time.Time) error {
	it, err := t.LowerBound(tableUsedTokens, indexUntil, time.Unix(0, 0))
	if err != nil {
		return fmt.Errorf("read used tokens: %w", err)
	}
	var gone []*usedToken
	for obj := it.Next(); obj != nil; obj = it.Next() {
		u := obj.(*usedToken)
		if !u.Until.Before(at) {
			break
		}
		gone = append(gone, u)
	}
	for _, u := range gone {
		if err := t.Delete(tableUsedTokens, u); err != nil {
			return fmt.Errorf("forget used token: %w", err)
		}
	}
	return nil
}

// approveRequest records an approval. It reports complete when the
// approval met the last step and so moved the request to approved: exactly
// one approval of a request ever does.
func (s *stateStore) approveRequest(index uint64, id string, a Approval) (r *Request, complete bool, err error) {
	t := s.writeTxn(index)
	defer t.Abort()
	r, complete, err = approveRequestTxn(t, id, a)
	if err != nil {
		return nil, false, err
	}
	return r, complete, t.Commit()
}

func approveRequestTxn(t *txn, id string, a Approval) (*Request, bool, error) {
	r, err := mustRequestTxn(t, id)
	if err != nil {
		return nil, false, err
	}
	if a.By == r.Requester {
		return nil, false, fmt.Errorf("%w: %s requested %s, so someone else must approve it", ErrSelfApproval, a.By, id)
	}
	if err := checkPending(r, a.At); err != nil {
		return nil, false, err
	}
	for _, prev := range r.Approvals {
		if prev.By == a.By {
			return nil, false, fmt.Errorf("%w: %s approved %s at %s; one approver counts once",
				ErrAlreadyApproved, a.By, id, prev.At.Format(time.RFC3339))
		}
	}
	var counts []string
	for _, g := range a.Groups {
		if r.stepGroup(g) && !slices.Contains(counts, g) {
			counts = append(counts, g)
		}
	}
	if len(counts) == 0 {
		return nil, false, fmt.Errorf("%w: %s needs approval by %s, and %s is in none of these groups",
			ErrNotApprover, id, stepsString(r.Steps), a.By)
	}
	if a.TTL < 0 || a.TTL > r.TTL {
		return nil, false, fmt.Errorf("%w: an approval may only shorten the grant: %s asks for %v, approval gives %v",
			ErrBadRequest, id, r.TTL, a.TTL)
	}
	a.Groups = counts
	n := r.clone()
	n.Approvals = append(n.Approvals, a)
	n.UpdatedAt = a.At
	n.Version = t.index
	complete := n.Satisfied()
	if complete {
		n.State = StateApproved
	}
	if err := t.Insert(tableRequests, n); err != nil {
		return nil, false, fmt.Errorf("store approval of %s: %w", id, err)
	}
	return n, complete, nil
}

// denyRequest ends a pending request with a denial by one of its
// approvers; groups are the denier's groups.
func (s *stateStore) denyRequest(index uint64, id string, d Decision, groups []string) (*Request, error) {
	t := s.writeTxn(index)
	defer t.Abort()
	r, err := denyRequestTxn(t, id, d, groups)
	if err != nil {
		return nil, err
	}
	return r, t.Commit()
}

func denyRequestTxn(t *txn, id string, d Decision, groups []string) (*Request, error) {
	r, err := mustRequestTxn(t, id)
	if err != nil {
		return nil, err
	}
	if d.By == r.Requester {
		return nil, fmt.Errorf("%w: %s cannot deny their own request %s; cancel it instead", ErrSelfApproval, d.By, id)
	}
	if err := checkPending(r, d.At); err != nil {
		return nil, err
	}
	if !slices.ContainsFunc(groups, r.stepGroup) {
		return nil, fmt.Errorf("%w: %s needs approval by %s, and %s is in none of these groups",
			ErrNotApprover, id, stepsString(r.Steps), d.By)
	}
	return endTxn(t, r, StateDenied, d, d.At)
}

// cancelRequest ends a pending request at its requester's wish.
func (s *stateStore) cancelRequest(index uint64, id string, d Decision) (*Request, error) {
	t := s.writeTxn(index)
	defer t.Abort()
	r, err := cancelRequestTxn(t, id, d)
	if err != nil {
		return nil, err
	}
	return r, t.Commit()
}

func cancelRequestTxn(t *txn, id string, d Decision) (*Request, error) {
	r, err := mustRequestTxn(t, id)
	if err != nil {
		return nil, err
	}
	if d.By != r.Requester {
		return nil, fmt.Errorf("%w: only %s, who requested %s, may cancel it", ErrForbidden, r.Requester, id)
	}
	if err := checkPending(r, d.At); err != nil {
		return nil, err
	}
	return endTxn(t, r, StateCancelled, d, d.At)
}

// expireRequest ends a pending request whose time ran out by at.
func (s *stateStore) expireRequest(index uint64, id string, at time.Time, reason string) (*Request, error) {
	t := s.writeTxn(index)
	defer t.Abort()
	r, err := expireRequestTxn(t, id, at, reason)
	if err != nil {
		return nil, err
	}
	return r, t.Commit()
}

func expireRequestTxn(t *txn, id string, at time.Time, reason string) (*Request, error) {
	r, err := mustRequestTxn(t, id)
	if err != nil {
		return nil, err
	}
	if r.State != StatePending {
		return nil, fmt.Errorf("%w: %s", ErrNotPending, endedMessage(r))
	}
	if at.Before(r.ExpiresAt) {
		return nil, fmt.Errorf("%w: %s expires at %s, not yet", ErrBadRequest, id, r.ExpiresAt.Format(time.RFC3339))
	}
	return endTxn(t, r, StateExpired, Decision{By: SystemActor, At: r.ExpiresAt, Reason: reason}, at)
}

// endTxn moves a pending request to a final state.
func endTxn(t *txn, r *Request, state State, d Decision, at time.Time) (*Request, error) {
	n := r.clone()
	n.State = state
	n.Decision = &d
	n.UpdatedAt = at
	n.Version = t.index
	if err := t.Insert(tableRequests, n); err != nil {
		return nil, fmt.Errorf("store %s request %s: %w", state, r.ID, err)
	}
	return n, nil
}

// allocateSerial takes the next serial for an approved request about to be
// signed, and records it on the request. Serials come from one counter that
// only grows, so none is ever handed out twice; one that was allocated but
// whose certificate was never stored (the signer crashed in between) is
// replaced by a fresh one, never reused.
func (s *stateStore) allocateSerial(index uint64, id string, at time.Time) (*Request, error) {
	t := s.writeTxn(index)
	defer t.Abort()
	r, err := allocateSerialTxn(t, id, at)
	if err != nil {
		return nil, err
	}
	return r, t.Commit()
}

func allocateSerialTxn(t *txn, id string, at time.Time) (*Request, error) {
	r, err := mustRequestTxn(t, id)
	if err != nil {
		return nil, err
	}
	if err := checkIssuable(r); err != nil {
		return nil, err
	}
	last, err := counterTxn(t.Txn, metaSerial)
	if err != nil {
		return nil, err
	}
	next := last + 1
	if next >= ca.BreakGlassBit {
		return nil, fmt.Errorf("allocate serial for %s: %w: %d serials issued", id, ca.ErrSerialsExhausted, last)
	}
	if err := setCounterTxn(t, metaSerial, next); err != nil {
		return nil, err
	}
	n := r.clone()
	n.Serial = next
	n.UpdatedAt = at
	n.Version = t.index
	if err := t.Insert(tableRequests, n); err != nil {
		return nil, fmt.Errorf("store serial of %s: %w", id, err)
	}
	return n, nil
}

// issuedCert is a signed certificate to record on its request.
type issuedCert struct {
	ID          string    `json:"id"`
	Serial      uint64    `json:"serial"`
	Certificate string    `json:"certificate"`
	IssuedAt    time.Time `json:"issued_at"`
	ValidAfter  time.Time `json:"valid_after"`
	ValidBefore time.Time `json:"valid_before"`
}

// storeCertificate records a signed certificate. It is refused unless the
// certificate carries the serial last allocated to the request and none was
// stored before, so at most one certificate per request is ever recorded,
// and only one whose serial is on record.
func (s *stateStore) storeCertificate(index uint64, c issuedCert) (*Request, error) {
	t := s.writeTxn(index)
	defer t.Abort()
	r, err := storeCertificateTxn(t, c)
	if err != nil {
		return nil, err
	}
	return r, t.Commit()
}

func storeCertificateTxn(t *txn, c issuedCert) (*Request, error) {
	r, err := mustRequestTxn(t, c.ID)
	if err != nil {
		return nil, err
	}
	if err := checkIssuable(r); err != nil {
		return nil, err
	}
	if c.Serial == 0 || c.Serial != r.Serial {
		return nil, fmt.Errorf("%w: %s: certificate serial %d is not the serial on record (%d)", ErrIssue, c.ID, c.Serial, r.Serial)
	}
	n := r.clone()
	n.Certificate = c.Certificate
	n.IssuedAt = c.IssuedAt
	n.ValidAfter = c.ValidAfter
	n.ValidBefore = c.ValidBefore
	n.UpdatedAt = c.IssuedAt
	n.Version = t.index
	if err := t.Insert(tableRequests, n); err != nil {
		return nil, fmt.Errorf("store certificate of %s: %w", c.ID, err)
	}
	return n, nil
}

// issueCertificateTxn allocates the next serial and records the signed
// certificate that carries it, in one change: the signer signed with the
// serial it read as next from the state, and a certificate signed with any
// other (a race, a stale leader) is refused, so serials stay unique and a
// serial on record is always the serial of the certificate that left.
func issueCertificateTxn(t *txn, c issuedCert) (*Request, error) {
	r, err := mustRequestTxn(t, c.ID)
	if err != nil {
		return nil, err
	}
	if err := checkIssuable(r); err != nil {
		return nil, err
	}
	last, err := counterTxn(t.Txn, metaSerial)
	if err != nil {
		return nil, err
	}
	if c.Serial != last+1 {
		return nil, fmt.Errorf("%w: %s: certificate serial %d is not the next serial (%d)", errSerialTaken, c.ID, c.Serial, last+1)
	}
	if c.Serial >= ca.BreakGlassBit {
		return nil, fmt.Errorf("issue %s: %w: %d serials issued", c.ID, ca.ErrSerialsExhausted, last)
	}
	if err := setCounterTxn(t, metaSerial, c.Serial); err != nil {
		return nil, err
	}
	n := r.clone()
	n.Serial = c.Serial
	n.Certificate = c.Certificate
	n.IssuedAt = c.IssuedAt
	n.ValidAfter = c.ValidAfter
	n.ValidBefore = c.ValidBefore
	n.UpdatedAt = c.IssuedAt
	n.Version = t.index
	if err := t.Insert(tableRequests, n); err != nil {
		return nil, fmt.Errorf("store certificate of %s: %w", c.ID, err)
	}
	return n, nil
}

// errSerialTaken refuses a certificate signed with a serial that is no
// longer the next one; the signer signs again.
var errSerialTaken = fmt.Errorf("%w: serial taken", ErrIssue)

// checkIssuable refuses a request that must not get a certificate (any
// more).
func checkIssuable(r *Request) error {
	switch {
	case r.State != StateApproved:
		return fmt.Errorf("%w: %s is %s, not approved", ErrIssue, r.ID, r.State)
	case r.Revoked != nil:
		return fmt.Errorf("%w: %s was revoked by %s before its certificate was issued", ErrIssue, r.ID, r.Revoked.By)
	case r.HasCertificate():
		return fmt.Errorf("%w: %s already has certificate serial %d", ErrIssue, r.ID, r.Serial)
	}
	return nil
}

// revokeCertificate revokes an approved request's certificate, or, when
// it has not been issued yet, stops it from ever being issued.
func (s *stateStore) revokeCertificate(index uint64, id string, d Decision) (*Request, error) {
	t := s.writeTxn(index)
	defer t.Abort()
	r, err := revokeCertificateTxn(t, id, d)
	if err != nil {
		return nil, err
	}
	return r, t.Commit()
}

func revokeCertificateTxn(t *txn, id string, d Decision) (*Request, error) {
	r, err := mustRequestTxn(t, id)
	if err != nil {
		return nil, err
	}
	switch {
	case r.State != StateApproved:
		return nil, fmt.Errorf("%w: %s was never approved (it is %s)", ErrNotActive, id, r.State)
	case r.Revoked != nil:
		return nil, fmt.Errorf("%w: %s was revoked already, by %s at %s",
			ErrNotActive, id, r.Revoked.By, r.Revoked.At.Format(time.RFC3339))
	case r.HasCertificate() && !d.At.Before(r.ValidBefore):
		return nil, fmt.Errorf("%w: the certificate of %s expired at %s",
			ErrNotActive, id, r.ValidBefore.Format(time.RFC3339))
	}
	return revokeTxn(t, r, d)
}

func revokeTxn(t *txn, r *Request, d Decision) (*Request, error) {
	n := r.clone()
	n.Revoked = &d
	n.UpdatedAt = d.At
	n.Version = t.index
	if err := t.Insert(tableRequests, n); err != nil {
		return nil, fmt.Errorf("store revocation of %s: %w", r.ID, err)
	}
	return n, nil
}

// offboard cancels the pending requests and revokes the live certificates
// of people who left the policy; people maps each of them to the reason.
// It returns every request it changed.
func (s *stateStore) offboard(index uint64, people map[string]string, at time.Time) ([]*Request, error) {
	t := s.writeTxn(index)
	defer t.Abort()
	out, err := offboardTxn(t, people, at)
	if err != nil {
		return nil, err
	}
	return out, t.Commit()
}

func offboardTxn(t *txn, people map[string]string, at time.Time) ([]*Request, error) {
	names := make([]string, 0, len(people))
	for name := range people {
		names = append(names, name)
	}
	slices.Sort(names) // the same order on every replica
	var out []*Request
	for _, name := range names {
		// Collect first and change after: the iterator walks the tree
		// the inserts below would modify.
		it, err := t.Get(tableRequests, indexRequester, name)
		if err != nil {
			return nil, fmt.Errorf("offboard %s: %w", name, err)
		}
		var theirs []*Request
		for obj := it.Next(); obj != nil; obj = it.Next() {
			theirs = append(theirs, obj.(*Request))
		}
		d := Decision{By: SystemActor, At: at, Reason: "offboarded: " + people[name]}
		for _, r := range theirs {
			var n *Request
			switch {
			case r.State == StatePending:
				n, err = endTxn(t, r, StateCancelled, d, at)
			case r.State == StateApproved && r.Revoked == nil && (!r.HasCertificate() || at.Before(r.ValidBefore)):
				n, err = revokeTxn(t, r, d)
			default:
				continue
			}
			if err != nil {
				return nil, err
			}
			out = append(out, n)
		}
	}
	return out, nil
}

// restore loads a whole state, from a snapshot, into an empty store.
func (s *stateStore) restore(index, lastSerial uint64, chain audit.Chain, policy string, requests []*Request, tokens []*usedToken) error {
	t := s.writeTxn(index)
	defer t.Abort()
	for _, r := range requests {
		if err := t.Insert(tableRequests, r); err != nil {
			return fmt.Errorf("restore request %s: %w", r.ID, err)
		}
	}
	for _, u := range tokens {
		if err := t.Insert(tableUsedTokens, u); err != nil {
			return fmt.Errorf("restore used token of %s: %w", u.Request, err)
		}
	}
	if err := setCounterTxn(t, metaSerial, lastSerial); err != nil {
		return err
	}
	if !chain.IsZero() {
		if err := setAuditChainTxn(t, chain); err != nil {
			return err
		}
	}
	if policy != "" {
		if err := setTextTxn(t, metaPolicy, policy); err != nil {
			return err
		}
	}
	return t.Commit()
}

// mustRequestTxn returns the request with that ID or an error wrapping
// ErrNotFound.
func mustRequestTxn(t *txn, id string) (*Request, error) {
	r, err := requestByIDTxn(t.Txn, nil, id)
	if err != nil {
		return nil, err
	}
	if r == nil {
		return nil, notFound(id)
	}
	return r, nil
}

func notFound(id string) error {
	if len(id) > idLen {
		id = id[:idLen] + "..."
	}
	return fmt.Errorf("%w: no request %q", ErrNotFound, id)
}

// checkPending refuses a request that can no longer be decided at at.
func checkPending(r *Request, at time.Time) error {
	if r.State != StatePending {
		return fmt.Errorf("%w: %s", ErrNotPending, endedMessage(r))
	}
	if !at.Before(r.ExpiresAt) {
		return fmt.Errorf("%w: %s expired at %s", ErrNotPending, r.ID, r.ExpiresAt.Format(time.RFC3339))
	}
	return nil
}

// endedMessage says how a request that is no longer pending ended.
func endedMessage(r *Request) string {
	switch {
	case r.State == StateApproved:
		return r.ID + " was approved already"
	case r.State == StateExpired:
		return r.ID + " expired at " + r.ExpiresAt.Format(time.RFC3339)
	case r.Decision != nil:
		return fmt.Sprintf("%s was %s by %s at %s", r.ID, r.State, r.Decision.By, r.Decision.At.Format(time.RFC3339))
	}
	return fmt.Sprintf("%s is %s", r.ID, r.State)
}
