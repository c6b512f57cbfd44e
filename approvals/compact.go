package approvals

import (
	"fmt"
	"time"
	"unique"

	"github.com/hashicorp/go-memdb"
)

// A request that has settled (ended, or its certificate expired or
// revoked) stays in the state for the retention, for listings, the KRL and
// the counts; none of them reads its statements, signatures, public key
// (but for a CI/CD job's, see compacted) or certificate text, which are
// most of its size and which its audit entries hold in full. So the leader's prune command also compacts the requests
// that settled more than compactAfter ago: it replaces each with a copy
// without them (Request.Compacted). Like the rest of the prune, this reads
// no clock: the command carries the time before which requests are
// compacted, so every replica compacts the same requests at the same raft
// index. A prune command logged before it carried that time compacts none.
//
// Get reads a compacted request's detail back from the audit log's index
// (see withDetail).

// compactAfter is how long a request keeps its detail in the state after
// it settled: long enough for the audit log's index to have its entries,
// and for whoever acted on it to read it back whole from memory.
const compactAfter = time.Hour

// settledAt returns when the last thing that could need r's detail
// happened, or false while that is still to come: a pending request, or
// an approved one whose certificate is still to be issued or still valid.
// A revoked certificate's serial and validity, which the KRL needs, stay
// in a compacted request.
func settledAt(r *Request) (time.Time, bool) {
	switch r.State {
	case StateDenied, StateCancelled, StateExpired:
		return r.UpdatedAt, true
	case StateApproved:
		switch {
		case r.Certificate != "" && r.IssuedAt.IsZero():
			// Compacted, it would read as a request still to issue
			// (HasCertificate goes by IssuedAt): kept whole.
			return time.Time{}, false
		case r.Revoked != nil:
			return r.Revoked.At, true
		case !r.HasCertificate():
			return time.Time{}, false
		}
		return r.ValidBefore, true
	}
	return time.Time{}, false
}

// compacted returns a copy of r without what its audit entries hold in
// full and nothing in the state reads once it has settled.
func (r *Request) compacted() *Request {
	n := r.clone()
	n.Statement, n.Signature, n.Certificate = "", "", ""
	if n.Workload == nil {
		// A CI/CD job is known by the key it asked to certify, which
		// WaitWorkload checks: a job's request keeps it.
		n.PublicKey = ""
	}
	for i := range n.Approvals {
		n.Approvals[i].Statement, n.Approvals[i].Signature = "", ""
	}
	for _, d := range []*Decision{n.Decision, n.Revoked} {
		if d != nil {
			d.Statement, d.Signature = "", ""
		}
	}
	n.Compacted = true
	// The names a request shares with many others (its requester, repo,
	// grant, rule, policy, approvers) are held once for all of them, not
	// once per request as the commands decoded them.
	n.Requester, n.Repo, n.Ref, n.Access = intern(n.Requester), intern(n.Repo), intern(n.Ref), intern(n.Access)
	n.Grant, n.Rule, n.Policy, n.State = intern(n.Grant), intern(n.Rule), intern(n.Policy), State(intern(string(n.State)))
	n.SourceAddress = intern(n.SourceAddress)
	for i := range n.Steps {
		n.Steps[i].Group = intern(n.Steps[i].Group)
	}
	for i := range n.Approvals {
		a := &n.Approvals[i]
		a.By = intern(a.By)
		for j := range a.Groups {
			a.Groups[j] = intern(a.Groups[j])
		}
	}
	for _, d := range []*Decision{n.Decision, n.Revoked} {
		if d != nil {
			d.By = intern(d.By)
		}
	}
	return n
}

// intern returns s in the one copy the process holds of that text.
func intern(s string) string {
	if s == "" {
		return ""
	}
	return unique.Make(s).Value()
}

// compactable returns up to limit requests, not compacted yet, that
// settled before before, in the state index's order (by state, then ID):
// the same on every replica. The state index holds only the requests not
// compacted, so this reads the live ones and the recently settled, not
// the retention's worth.
func compactable(tx *memdb.Txn, before time.Time, limit int) ([]*Request, error) {
	var out []*Request
	for _, state := range []State{StateApproved, StateCancelled, StateDenied, StateExpired} {
		it, err := tx.Get(tableRequests, indexState, string(state))
		if err != nil {
			return nil, fmt.Errorf("find requests to compact: %w", err)
		}
		for obj := it.Next(); obj != nil && len(out) < limit; obj = it.Next() {
			r := obj.(*Request)
			if at, ok := settledAt(r); ok && at.Before(before) {
				out = append(out, r)
			}
		}
	}
	return out, nil
}

// compactTxn compacts up to limit requests that settled before before,
// and says how many. The compacted copy keeps its Version: what a reader
// sees of the request, detail read back from the audit log, is unchanged.
func compactTxn(t *txn, before time.Time, limit int) (int, error) {
	reqs, err := compactable(t.Txn, before, limit)
	if err != nil {
		return 0, err
	}
	for _, r := range reqs {
		if err := t.Insert(tableRequests, r.compacted()); err != nil {
			return 0, fmt.Errorf("compact request %s: %w", r.ID, err)
		}
	}
	return len(reqs), nil
}
