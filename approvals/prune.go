package approvals

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/hashicorp/go-memdb"

	"github.com/jitssh/jitssh/audit"
)

// The state holds the requests and certificates that can still change or
// still matter: pending requests, live certificates, revoked ones the KRL
// must still list. Everything else is history, which the audit log keeps
// in full; after a retention it leaves the in-memory state (and so every
// raft snapshot) through a replicated command, so that every replica drops
// the same requests at the same raft index. Until then it stays compacted
// (see compactTxn).
//
// The leader proposes the command with the cutoff computed from its clock;
// applying it reads no clock. A request's serial is never reused after it
// leaves: serials come from the counter in the meta table, which only
// grows. What other parts of the state counted over all requests (the KRL's
// version, requests by state, the newest request ID) carry the dropped
// ones in a meta row of their own.

// msgPrune drops ended requests from the state.
const msgPrune msgType = 12

// DefaultRetention is how long the state keeps a request after it ended
// when the config does not say.
const DefaultRetention = 30 * 24 * time.Hour

// Bounds on the work of one prune command, so that applying it stays
// short: the leader proposes another at once while work remains.
const (
	prunePerCommand  = 2000
	pruneScanMax     = 50_000 // requests looked at by one command, at most
	pruneInterval    = time.Minute
	tokenPruneMargin = time.Hour // a used token is kept this long past its expiry, for clocks that disagree
)

// pruneCmd drops what ended before Cutoff, by the times the state records.
type pruneCmd struct {
	Cutoff time.Time `json:"cutoff"` // requests that ended before it leave
	At     time.Time `json:"at"`     // the proposer's clock: tokens and keys age by it
	Limit  int       `json:"limit"`  // at most this many requests
	// Compact: requests that settled before it are compacted (see
	// compactTxn), at most Limit of them; zero compacts none.
	Compact time.Time `json:"compact,omitzero"`
}

const metaPruned = "pruned" // Text: prunedTotals as JSON

// prunedTotals is what the state keeps of the requests it dropped.
type prunedTotals struct {
	States      map[State]int `json:"states,omitempty"`
	Revoked     int           `json:"revoked,omitempty"`     // certificates revoked, for the KRL's version
	LastRevoked time.Time     `json:"last_revoked,omitzero"` // the latest of their revocations
	LastID      string        `json:"last_id,omitempty"`     // the newest request ID dropped
	Requests    int           `json:"requests,omitempty"`    // all dropped
	Commands    int           `json:"commands,omitempty"`    // prune commands that dropped something
	LastCutoff  time.Time     `json:"last_cutoff,omitzero"`  // the cutoff of the last of them
}

func prunedTxn(tx *memdb.Txn) (prunedTotals, error) {
	var p prunedTotals
	text, err := textTxn(tx, metaPruned)
	if err != nil || text == "" {
		return p, err
	}
	if err := json.Unmarshal([]byte(text), &p); err != nil {
		return p, fmt.Errorf("read pruned totals: %w", err)
	}
	return p, nil
}

func setPrunedTxn(t *txn, p prunedTotals) error {
	b, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("write pruned totals: %w", err)
	}
	return setTextTxn(t, metaPruned, string(b))
}

// endedAt returns when r stopped mattering to the state, or false while
// it still does: a pending request, or an approved one whose certificate
// is still to be issued. A certificate matters until it expires, a revoked
// one until the KRL stops listing it.
func endedAt(r *Request) (time.Time, bool) {
	switch r.State {
	case StateDenied, StateCancelled, StateExpired:
		return r.UpdatedAt, true
	case StateApproved:
		switch {
		case !r.HasCertificate() && r.Revoked != nil:
			return r.Revoked.At, true
		case !r.HasCertificate():
			return time.Time{}, false
		case r.Revoked != nil:
			end := r.ValidBefore.Add(krlKeep)
			if r.Revoked.At.After(end) {
				end = r.Revoked.At
			}
			return end, true
		}
		return r.ValidBefore, true
	}
	return time.Time{}, false
}

// prunable returns up to limit requests that ended before cutoff, oldest
// first. Requests are read in ID order, which is creation order, and one
// created at or after cutoff cannot have ended before it, so the reading
// stops there; requests still live in between (a certificate valid longer
// than the retention, one still to be issued) are passed over, up to
// pruneScanMax requests read in all.
func prunable(tx *memdb.Txn, cutoff time.Time, limit int) ([]*Request, error) {
	it, err := tx.Get(tableRequests, indexID)
	if err != nil {
		return nil, fmt.Errorf("find prunable requests: %w", err)
	}
	var out []*Request
	scanned := 0
	for obj := it.Next(); obj != nil && len(out) < limit && scanned < pruneScanMax; obj = it.Next() {
		r := obj.(*Request)
		if !r.CreatedAt.Before(cutoff) {
			break
		}
		scanned++
		if end, ok := endedAt(r); ok && end.Before(cutoff) {
			out = append(out, r)
		}
	}
	return out, nil
}

// pruneTxn applies a prune command and returns its audit event, or none
// when it dropped nothing.
func pruneTxn(tx *txn, body []byte, res *applyResult) ([]auditEvent, error) {
	cmd, err := decode[pruneCmd](msgPrune, body)
	if err != nil {
		return nil, err
	}
	if cmd.Cutoff.IsZero() || cmd.At.IsZero() || cmd.Cutoff.After(cmd.At) || cmd.Compact.After(cmd.At) {
		return nil, fmt.Errorf("%w: prune up to %s, compact up to %s, at %s", ErrBadRequest, cmd.Cutoff, cmd.Compact, cmd.At)
	}
	limit := cmd.Limit
	if limit <= 0 || limit > prunePerCommand {
		limit = prunePerCommand
	}
	reqs, err := prunable(tx.Txn, cmd.Cutoff, limit)
	if err != nil {
		return nil, err
	}
	d := audit.PrunedData{Cutoff: cmd.Cutoff}
	totals, err := prunedTxn(tx.Txn)
	if err != nil {
		return nil, err
	}
	if totals.States == nil {
		totals.States = map[State]int{}
	}
	for _, r := range reqs {
		if err := tx.Delete(tableRequests, r); err != nil {
			return nil, fmt.Errorf("drop request %s: %w", r.ID, err)
		}
		if d.States == nil {
			d.States = map[string]int{}
			d.First = r.ID
		}
		d.States[string(r.State)]++
		d.Last = r.ID
		totals.States[r.State]++
		if r.HasCertificate() {
			d.Certificates++
			if r.Revoked != nil {
				d.Revoked++
				totals.Revoked++
				if r.Revoked.At.After(totals.LastRevoked) {
					totals.LastRevoked = r.Revoked.At
				}
			}
		}
		if r.ID > totals.LastID {
			totals.LastID = r.ID
		}
	}
	d.Requests = len(reqs)
	if d.Tokens, err = pruneTokensCounted(tx, cmd.At.Add(-tokenPruneMargin), limit); err != nil {
		return nil, err
	}
	if d.Keys, err = pruneOpsTxn(tx, cmd.At.Add(-opsKeep), limit); err != nil {
		return nil, err
	}
	if !cmd.Compact.IsZero() {
		if res.compacted, err = compactTxn(tx, cmd.Compact, limit); err != nil {
			return nil, err
		}
	}
	if d.Requests == 0 && d.Tokens == 0 && d.Keys == 0 {
		return nil, nil
	}
	res.pruned = d.Requests
	totals.Requests += d.Requests
	totals.Commands++
	totals.LastCutoff = cmd.Cutoff
	if err := setPrunedTxn(tx, totals); err != nil {
		return nil, err
	}
	return []auditEvent{{audit.KindPruned, SystemActor, cmd.At, d}}, nil
}

// pruneTokensCounted forgets up to limit used tokens that stopped being
// usable before before, and says how many.
func pruneTokensCounted(t *txn, before time.Time, limit int) (int, error) {
	it, err := t.Get(tableUsedTokens, indexUntil)
	if err != nil {
		return 0, fmt.Errorf("read used tokens: %w", err)
	}
	var gone []*usedToken
	for obj := it.Next(); obj != nil && len(gone) < limit; obj = it.Next() {
		u := obj.(*usedToken)
		if !u.Until.Before(before) {
			break
		}
		gone = append(gone, u)
	}
	for _, u := range gone {
		if err := t.Delete(tableUsedTokens, u); err != nil {
			return 0, fmt.Errorf("forget used token: %w", err)
		}
	}
	return len(gone), nil
}

// pruneOpsTxn forgets up to limit idempotency keys applied before before.
// Each command forgets some too (recordOpTxn); this catches the keys of a
// burst followed by quiet.
func pruneOpsTxn(t *txn, before time.Time, limit int) (int, error) {
	it, err := t.Get(tableOps, indexAt)
	if err != nil {
		return 0, fmt.Errorf("age applied keys: %w", err)
	}
	var old []*opEntry
	for obj := it.Next(); obj != nil && len(old) < limit; obj = it.Next() {
		o := obj.(*opEntry)
		if !o.At.Before(before) {
			break
		}
		old = append(old, o)
	}
	for _, o := range old {
		if err := t.Delete(tableOps, o); err != nil {
			return 0, fmt.Errorf("age applied keys: %w", err)
		}
	}
	return len(old), nil
}

// pruneWork reports whether a prune at now with cutoff would drop or
// compact anything: the leader proposes one only then.
func pruneWork(st *stateStore, cutoff, now time.Time) (bool, error) {
	tx := st.db.Txn(false)
	reqs, err := prunable(tx, cutoff, 1)
	if err != nil || len(reqs) > 0 {
		return len(reqs) > 0, err
	}
	if reqs, err = compactable(tx, now.Add(-compactAfter), 1); err != nil || len(reqs) > 0 {
		return len(reqs) > 0, err
	}
	obj, err := tx.First(tableUsedTokens, indexUntil)
	if err != nil {
		return false, fmt.Errorf("read used tokens: %w", err)
	}
	if obj != nil && obj.(*usedToken).Until.Before(now.Add(-tokenPruneMargin)) {
		return true, nil
	}
	obj, err = tx.First(tableOps, indexAt)
	if err != nil {
		return false, fmt.Errorf("read applied keys: %w", err)
	}
	return obj != nil && obj.(*opEntry).At.Before(now.Add(-opsKeep)), nil
}

// pruneDue proposes prune commands while there is something to drop, and
// returns when to look again. It runs on the leader's background loop.
func (s *Service) pruneDue() time.Time {
	if s.retention <= 0 {
		return time.Time{}
	}
	now := s.clock()
	if now.Before(s.nextPrune) {
		return s.nextPrune
	}
	for range 64 { // then let the loop do its other work, and come back
		if s.closed() {
			return time.Time{}
		}
		cutoff := now.Add(-s.retention)
		work, err := pruneWork(s.fsm.State(), cutoff, now)
		if err != nil {
			s.logger.Error("find prunable state", "err", err)
			break
		}
		if !work {
			s.nextPrune = now.Add(s.pruneEvery())
			return s.nextPrune
		}
		if _, err := s.commit(msgPrune, newPruneCmd(now, s.retention)); err != nil {
			s.logger.Error("prune state", "err", err)
			break
		}
		now = s.clock()
	}
	s.nextPrune = now.Add(s.pruneEvery())
	return s.nextPrune
}

// newPruneCmd is the prune command the leader proposes at now.
func newPruneCmd(now time.Time, retention time.Duration) pruneCmd {
	return pruneCmd{Cutoff: now.Add(-retention), At: now, Limit: prunePerCommand, Compact: now.Add(-compactAfter)}
}

func (s *Service) pruneEvery() time.Duration {
	if s.pruneInterval > 0 {
		return s.pruneInterval
	}
	return pruneInterval
}

// Prune drops from the state, at once, what ended more than the
// retention ago, as the background loop does every minute; it reports how
// many requests left. It must run on the leader.
func (s *Service) Prune() (int, error) {
	if s.retention <= 0 {
		return 0, nil
	}
	n := 0
	for {
		now := s.clock()
		res, err := s.commit(msgPrune, newPruneCmd(now, s.retention))
		if err != nil {
			return n, err
		}
		if res.pruned == 0 && res.compacted == 0 {
			return n, nil
		}
		n += res.pruned
	}
}

// restorePruned loads what a snapshot keeps of pruned requests.
func (s *stateStore) restorePruned(index uint64, p prunedTotals) error {
	t := s.writeTxn(index)
	defer t.Abort()
	if err := setPrunedTxn(t, p); err != nil {
		return err
	}
	return t.Commit()
}

// pruned returns what the state keeps of the requests it dropped.
func (s *stateStore) pruned() (prunedTotals, error) {
	return prunedTxn(s.db.Txn(false))
}
