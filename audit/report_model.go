package audit

import (
	"time"
)

// The compliance report and the certificate records behind `jitssh audit
// certs` and `show` are read from entries already verified (BuildIndex or
// Verify); nothing here judges them. Everything derived from a log depends
// on the log alone, never on the clock, so the same log always gives the
// same report.

// Certificate states.
const (
	StateActive   = "active"
	StateExpired  = "expired"
	StateRevoked  = "revoked"
	StateReleased = "released"
)

// CertRecord is what the log says about one certificate: who asked, who
// approved, when it was issued and ended, and what it was used for.
type CertRecord struct {
	Serial      uint64    `json:"serial"`
	KeyID       string    `json:"key_id"`
	Principals  []string  `json:"principals"`
	ValidAfter  time.Time `json:"valid_after"`
	ValidBefore time.Time `json:"valid_before"`
	Issued      time.Time `json:"issued"` // time of the issue or ca.sign entry
	IssueSeq    uint64    `json:"issue_seq"`
	BreakGlass  bool      `json:"break_glass,omitempty"`

	// From the request, for certificates the daemon issued.
	RequestID    string        `json:"request_id,omitempty"`
	Requester    string        `json:"requester"` // for break-glass, the user part of the key ID
	Approvers    []string      `json:"approvers,omitempty"`
	Rule         string        `json:"rule,omitempty"`
	Reason       string        `json:"reason,omitempty"`
	Requested    time.Time     `json:"requested,omitzero"` // zero when the request is not on the record
	AutoApproved bool          `json:"auto_approved,omitempty"`
	Asked        time.Duration `json:"asked_ns"` // TTL asked for; the policy's when left to it; the lifetime for break-glass
	SignedBy     string        `json:"signed_by,omitempty"`

	// How it ended early, if it did: a revoke, release or offboard entry.
	Ended     time.Time `json:"ended,omitzero"`
	EndSeq    uint64    `json:"end_seq,omitempty"`
	EndKind   string    `json:"end_kind,omitempty"`
	EndBy     string    `json:"end_by,omitempty"`
	EndReason string    `json:"end_reason,omitempty"`

	// Git operations under this certificate.
	Fetches    int   `json:"fetches"`
	Pushes     int   `json:"pushes"`
	Refused    int   `json:"refused"`
	RefUpdates int   `json:"ref_updates"`
	RefsDenied int   `json:"refs_refused"` // ref updates refused within allowed pushes
	BytesIn    int64 `json:"bytes_in"`
	BytesOut   int64 `json:"bytes_out"`
}

// GitOps is the number of Git operations recorded under the certificate.
func (c *CertRecord) GitOps() int { return c.Fetches + c.Pushes + c.Refused }

// End is when access ended or ends: an early end, else expiry.
func (c *CertRecord) End() time.Time {
	if !c.Ended.IsZero() && c.Ended.Before(c.ValidBefore) {
		return c.Ended
	}
	return c.ValidBefore
}

// State is the certificate's state at now.
func (c *CertRecord) State(now time.Time) string {
	if !c.Ended.IsZero() && c.Ended.Before(c.ValidBefore) && !now.Before(c.Ended) {
		if c.EndKind == KindRelease {
			return StateReleased
		}
		return StateRevoked
	}
	if !now.Before(c.ValidBefore) {
		return StateExpired
	}
	return StateActive
}

// Held is how long access was held by now: from issue to its end, or to
// now while it lasts.
func (c *CertRecord) Held(now time.Time) time.Duration {
	end := c.End()
	if now.Before(end) {
		end = now
	}
	return max(end.Sub(c.Issued), 0)
}

// Wait is the time from request to issue; zero when the request is not on
// the record.
func (c *CertRecord) Wait() time.Duration {
	if c.Requested.IsZero() {
		return 0
	}
	return max(c.Issued.Sub(c.Requested), 0)
}

// Report is the compliance review of a log from Since on.
type Report struct {
	Since time.Time // zero: from the first entry
	Until time.Time // time of the last entry given; "now" for the report

	// Set by the caller when it knows them: the whole log's size and head,
	// or for a report over several logs, each log's.
	LogEntries uint64
	Head       string
	Logs       []ReportLog

	Certs        []CertRecord // issued from Since on, in issue order
	Requests     int          // requests from Since on
	AutoApproved int          // of Certs, issued without approvals
	Wait         Stats        // request to issue, certificates that needed approval
	ByRepo       []Tally
	ByPerson     []Tally
	Denials      []Denial
	Revocations  []Revocation
	GitRefused   []GitRefusal // refused Git operations and ref updates, at most maxListed
	GitRefusedN  int          // all refused Git operations
	RefsRefusedN int          // all refused ref updates in allowed pushes
	GitUnknown   []CertRecord // Git use of serials not issued on this record
	GitOps       int          // Git operations from Since on

	marks map[uint64][]gitMark // Git operations by serial, for the timeline
}

// ReportLog is one of the logs a report covers: its name, size and head.
type ReportLog struct {
	Name    string
	Entries uint64
	Head    string
}

// gitMark is one Git operation on the timeline.
type gitMark struct {
	t       time.Time
	refused bool
}

// Stats summarises durations.
type Stats struct {
	N                int
	Median, P90, Max time.Duration
}

// Tally counts certificates by repository or by person.
type Tally struct {
	Name       string
	Certs      int
	BreakGlass int
	Read       int      // certificates whose grants here include read only,
	Write      int      // ... at most write,
	Force      int      // ... force
	Others     []string // people for a repository, repositories for a person
	Asked      time.Duration
	Held       time.Duration
	GitOps     int
}

// Denial is a denied request.
type Denial struct {
	Seq       uint64
	Time      time.Time
	RequestID string
	Requester string
	Grant     string
	By        string
	Reason    string
}

// Revocation is a certificate ended before expiry by someone other than its
// holder: a revoke or offboard entry.
type Revocation struct {
	Seq    uint64
	Time   time.Time
	Serial uint64
	KeyID  string
	By     string
	Reason string
	Held   time.Duration
	Asked  time.Duration
}

// GitRefusal is one refused Git operation, or one refused ref update of a
// push that went ahead otherwise (Ref set).
type GitRefusal struct {
	Seq     uint64
	Time    time.Time
	Serial  uint64
	KeyID   string
	Repo    string
	Service string
	Ref     string
	Reason  string
}
