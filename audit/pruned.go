package audit

import (
	"fmt"
	"time"
)

// KindPruned: the daemon dropped from its in-memory state requests that
// had ended before a cutoff, and what else it no longer needs (used CI/CD
// tokens, idempotency keys). Nothing leaves the record: every request's
// entries stay on this log; only the daemon's working set shrinks
// (PrunedData).
const KindPruned = "state.pruned"

// PrunedData is the data of a KindPruned entry.
type PrunedData struct {
	// Cutoff: every request dropped had ended (decided, expired, its
	// certificate expired, a revoked certificate off the revocation list)
	// before it.
	Cutoff   time.Time `json:"cutoff"`
	Requests int       `json:"requests"`
	// States counts the requests dropped by their final state.
	States map[string]int `json:"states,omitempty"`
	// Certificates counts those that had a certificate, Revoked those
	// whose certificate was revoked or released.
	Certificates int `json:"certificates,omitempty"`
	Revoked      int `json:"revoked,omitempty"`
	// First and Last are the oldest and newest request IDs dropped.
	First string `json:"first,omitempty"`
	Last  string `json:"last,omitempty"`
	// Tokens counts used CI/CD tokens forgotten (they can no longer be
	// presented), Keys applied idempotency keys forgotten.
	Tokens int `json:"tokens,omitempty"`
	Keys   int `json:"keys,omitempty"`
}

// checkPruned checks a KindPruned entry: a record of what the daemon
// forgot must say so coherently, and never forget what had not ended when
// it was written.
func checkPruned(e *Entry) error {
	var d PrunedData
	if err := decodeData(e, &d); err != nil {
		return err
	}
	n := 0
	for state, c := range d.States {
		if c < 0 {
			return fail(ErrRecord, "state.pruned: %d %s requests", c, state)
		}
		n += c
	}
	switch {
	case d.Cutoff.IsZero():
		return fail(ErrRecord, "state.pruned without a cutoff")
	case d.Cutoff.After(e.Time):
		return fail(ErrRecord, "state.pruned at %s drops requests that ended up to %s, which is later", e.Time.Format(time.RFC3339), d.Cutoff.Format(time.RFC3339))
	case d.Requests < 0 || d.Certificates < 0 || d.Revoked < 0 || d.Tokens < 0 || d.Keys < 0:
		return fail(ErrRecord, "state.pruned with a negative count")
	case n != d.Requests:
		return fail(ErrRecord, "state.pruned counts %d requests, but its states add up to %d", d.Requests, n)
	case d.Certificates > d.Requests || d.Revoked > d.Certificates:
		return fail(ErrRecord, "state.pruned counts %d certificates (%d revoked) among %d requests", d.Certificates, d.Revoked, d.Requests)
	case d.Requests > 0 && (d.First == "" || d.Last == "" || d.First > d.Last):
		return fail(ErrRecord, "state.pruned of %d requests names the range %q to %q", d.Requests, d.First, d.Last)
	}
	return nil
}

// summarizePruned is Summarize for a KindPruned entry.
func summarizePruned(d PrunedData) string {
	s := fmt.Sprintf("dropped from the daemon's state: %d requests ended before %s", d.Requests, d.Cutoff.UTC().Format(time.RFC3339))
	if d.Requests > 0 {
		s += fmt.Sprintf(" (%s to %s)", d.First, d.Last)
	}
	if d.Tokens > 0 {
		s += fmt.Sprintf(", %d used tokens", d.Tokens)
	}
	if d.Keys > 0 {
		s += fmt.Sprintf(", %d idempotency keys", d.Keys)
	}
	return s
}
