package approvals

import (
	"fmt"
	"slices"
	"time"

	"github.com/jitssh/jitssh/ca"
)

// State is where a request is in its lifecycle; see the package
// documentation.
type State string

// Request states. Only StatePending changes; the others are final.
const (
	StatePending   State = "pending"
	StateApproved  State = "approved"
	StateDenied    State = "denied"
	StateExpired   State = "expired"
	StateCancelled State = "cancelled"
)

// ParseState returns the State named s, for filters given on a command
// line; the error wraps ErrBadRequest.
func ParseState(s string) (State, error) {
	switch st := State(s); st {
	case StatePending, StateApproved, StateDenied, StateExpired, StateCancelled:
		return st, nil
	}
	return "", fmt.Errorf("%w: state %q: want pending, approved, denied, expired or cancelled", ErrBadRequest, s)
}

// CertState is the state of an approved request's certificate at a given
// time.
type CertState string

// Certificate states; the empty CertState means no certificate was issued.
const (
	CertActive  CertState = "active"
	CertExpired CertState = "expired"
	CertRevoked CertState = "revoked"
	// CertReleased: the requester ended the grant early; for a Git
	// server it is revoked like any other.
	CertReleased CertState = "released"
)

// Request is one request for access and everything that happened to it.
// Requests are never deleted. A *Request returned by the Service is the
// caller's own copy.
type Request struct {
	ID            string     `json:"id"` // "req-" and a 26-character ULID: time-sortable and unique
	Requester     string     `json:"requester"`
	Repo          string     `json:"repo"`
	Ref           string     `json:"ref"`    // a full ref or a ref pattern
	Access        string     `json:"access"` // read, write or force
	Grant         string     `json:"grant"`  // the certificate principal, git:<access>:<repo>:<ref>
	TTL           Duration   `json:"ttl"`    // requested, after the rule's default
	Reason        string     `json:"reason"`
	PublicKey     string     `json:"public_key"` // the key to certify, authorized_keys form
	Rule          string     `json:"rule"`
	Policy        string     `json:"policy,omitempty"` // digest of the policy the request was decided under
	Steps         []Step     `json:"steps"`            // approvals required, copied from the rule at submit
	SourceAddress string     `json:"source_address,omitempty"`
	State         State      `json:"state"`
	CreatedAt     time.Time  `json:"created_at"`
	ExpiresAt     time.Time  `json:"expires_at,omitzero"` // when a pending request expires
	UpdatedAt     time.Time  `json:"updated_at"`
	Approvals     []Approval `json:"approvals"`
	Decision      *Decision  `json:"decision,omitempty"`  // denial, cancellation or expiry
	Signature     string     `json:"signature,omitempty"` // the requester's SSHSIG, as given
	Statement     string     `json:"statement,omitempty"` // the exact message the requester signed
	// Workload is set when a CI/CD job made the request with its
	// platform's token; Requester is then its requester name, and
	// Signature and Statement are empty.
	Workload *WorkloadIdentity `json:"workload,omitempty"`

	// Set when the certificate is issued.
	Serial      uint64    `json:"serial,omitempty"`
	Certificate string    `json:"certificate,omitempty"` // authorized_keys form
	IssuedAt    time.Time `json:"issued_at,omitzero"`
	ValidAfter  time.Time `json:"valid_after,omitzero"`
	ValidBefore time.Time `json:"valid_before,omitzero"`
	Revoked     *Decision `json:"revoked,omitempty"` // revocation, release or offboarding

	Version uint64 `json:"version"` // raft index of the last change
	// Archived: the request had ended and left the daemon's state; this
	// is what its audit entries tell of it.
	Archived bool `json:"archived,omitempty"`
	// Compacted: the request had ended and the daemon keeps it without
	// what its audit entries hold in full: the statements and signatures
	// (its own, its approvals' and its decision's), the public key and the
	// certificate's text. The serial, validity and every who and when
	// stay. A request is read with them again from the audit log where
	// the daemon has its index.
	Compacted bool `json:"compacted,omitempty"`
}

// Approval is one person's approval of a request.
type Approval struct {
	By        string    `json:"by"`
	At        time.Time `json:"at"`
	Reason    string    `json:"reason,omitempty"`
	TTL       Duration  `json:"ttl,omitempty"` // a shorter grant; 0 leaves it as requested
	Signature string    `json:"signature,omitempty"`
	Statement string    `json:"statement,omitempty"` // the exact message the approver signed
	// Groups are the approver's groups, among those the request's steps
	// name, when they approved: what the approval counts for.
	Groups []string `json:"groups"`
}

// Decision records who ended something, when and why.
type Decision struct {
	By        string    `json:"by"`
	At        time.Time `json:"at"`
	Reason    string    `json:"reason,omitempty"`
	Signature string    `json:"signature,omitempty"` // a denier's SSHSIG, as given
	Statement string    `json:"statement,omitempty"` // the exact message the denier signed
	// Release marks the end of a grant by its own requester, who was
	// done with it (jitssh release), apart from a revocation by others.
	Release bool `json:"release,omitempty"`
}

// CertState returns the state of the request's certificate at now, or ""
// when none was issued.
func (r *Request) CertState(now time.Time) CertState {
	switch {
	case !r.HasCertificate():
		return ""
	case r.Revoked != nil && r.Revoked.Release:
		return CertReleased
	case r.Revoked != nil:
		return CertRevoked
	case !now.Before(r.ValidBefore):
		return CertExpired
	}
	return CertActive
}

// Issuing reports whether the request is approved and its certificate not
// yet stored. Issuing records the approval and the serial a moment before
// the certificate, and retries until it is stored, so this is a passing
// state: whoever waits for the request waits through it.
func (r *Request) Issuing() bool {
	return r.State == StateApproved && !r.HasCertificate() && r.Revoked == nil
}

// HasCertificate reports whether a certificate was stored for r. A
// compacted request no longer carries its text, only when it was issued.
func (r *Request) HasCertificate() bool {
	return r.Certificate != "" || r.Compacted && !r.IssuedAt.IsZero()
}

// Satisfied reports whether the approvals meet every step.
func (r *Request) Satisfied() bool {
	groups := make([][]string, len(r.Approvals))
	for i, a := range r.Approvals {
		groups[i] = a.Groups
	}
	return canSatisfy(r.Steps, groups)
}

// GrantedTTL is the lifetime the certificate gets: the requested TTL,
// shortened by any approver who asked for less.
func (r *Request) GrantedTTL() Duration {
	ttl := r.TTL
	for _, a := range r.Approvals {
		if a.TTL > 0 && a.TTL < ttl {
			ttl = a.TTL
		}
	}
	return ttl
}

// KeyID is the certificate key ID, which names the user and the request in
// OpenSSH's logs.
func (r *Request) KeyID() string { return ca.KeyID(r.Requester, r.ID) }

// approvedBy reports whether person has approved r.
func (r *Request) approvedBy(person string) bool {
	return slices.ContainsFunc(r.Approvals, func(a Approval) bool { return a.By == person })
}

// stepGroup reports whether some step of r names group.
func (r *Request) stepGroup(group string) bool {
	return slices.ContainsFunc(r.Steps, func(s Step) bool { return s.Group == group })
}

// clone returns a deep copy. Objects in the state store are never modified
// in place; a change is made on a clone that replaces the original.
func (r *Request) clone() *Request {
	if r == nil {
		return nil
	}
	out := *r
	out.Steps = slices.Clone(r.Steps)
	out.Approvals = make([]Approval, len(r.Approvals))
	for i, a := range r.Approvals {
		a.Groups = slices.Clone(a.Groups)
		out.Approvals[i] = a
	}
	if r.Decision != nil {
		d := *r.Decision
		out.Decision = &d
	}
	if r.Revoked != nil {
		d := *r.Revoked
		out.Revoked = &d
	}
	out.Workload = r.Workload.clone()
	return &out
}
