package audit

import "time"

// The data of each entry kind the daemon and the Git front-ends write.
// Verification and queries read them back, so field names are part of the
// log format: add fields, never rename them.

// RequestData is the data of a KindRequest entry.
type RequestData struct {
	ID        string    `json:"id"`
	Requester string    `json:"requester"`
	Repo      string    `json:"repo"`
	Ref       string    `json:"ref"`
	Access    string    `json:"access"`
	Grant     string    `json:"grant"`
	TTL       string    `json:"ttl"` // granted duration, Go syntax
	Reason    string    `json:"reason"`
	Rule      string    `json:"rule"`
	Steps     []Step    `json:"steps"`
	PublicKey string    `json:"public_key"`
	Statement string    `json:"statement"` // RequestStatement message, as signed
	Signature string    `json:"signature"` // armored SSHSIG by the requester
	At        time.Time `json:"at,omitzero"`
	// State is the request's state once submitted: pending, or approved
	// when its rule approves automatically.
	State string `json:"state,omitempty"`
	// PolicySHA256 is the version of the policy that decided the request
	// (approvals.Policy.Digest); empty in entries written before versions
	// were recorded.
	PolicySHA256 string `json:"policy_sha256,omitempty"`
}

// Step is one required group of approvals.
type Step struct {
	Group string `json:"group"`
	Count int    `json:"count"`
}

// Subject names the request an entry is about, and where it stands after
// the entry. It is embedded in the data of every entry about a request, so
// that queries find them by repo and serial.
type Subject struct {
	ID        string `json:"id"`
	Requester string `json:"requester,omitempty"`
	Repo      string `json:"repo,omitempty"`
	Grant     string `json:"grant,omitempty"`
	Rule      string `json:"rule,omitempty"`
	State     string `json:"state,omitempty"`
	Serial    uint64 `json:"serial,omitempty"`
}

// DecisionData is the data of KindApprove and KindDeny entries.
type DecisionData struct {
	Subject
	By        string `json:"by"`
	TTL       string `json:"ttl,omitempty"`
	Reason    string `json:"reason"`
	Statement string `json:"statement"` // DecisionStatement message, as signed
	Signature string `json:"signature"` // armored SSHSIG by the approver
}

// EndData is the data of cancel, expire, release, revoke and offboard
// entries.
type EndData struct {
	Subject
	By     string `json:"by,omitempty"`
	Reason string `json:"reason,omitempty"`
}

// IssueData is the data of a KindIssue entry: one certificate left the
// daemon.
type IssueData struct {
	ID          string    `json:"id"`
	Serial      uint64    `json:"serial"`
	KeyID       string    `json:"key_id"`
	Requester   string    `json:"requester"`
	Principals  []string  `json:"principals"`
	ValidAfter  time.Time `json:"valid_after"`
	ValidBefore time.Time `json:"valid_before"`
	Approvers   []string  `json:"approvers"`
	Rule        string    `json:"rule"`
	Certificate string    `json:"certificate"` // authorized_keys form
	// Repo, Grant and TTL restate the request; KeyFingerprint is the
	// SHA256 fingerprint of the certified key.
	Repo           string `json:"repo,omitempty"`
	Grant          string `json:"grant,omitempty"`
	State          string `json:"state,omitempty"`
	TTL            string `json:"ttl,omitempty"`
	KeyFingerprint string `json:"key_fingerprint,omitempty"`
}

// RevokeData is the data of a KindRevoke entry.
type RevokeData = EndData

// Kinds beyond those in entry.go.
const (
	KindCancel   = "cancel"
	KindRelease  = "release"
	KindOffboard = "offboard"
)
