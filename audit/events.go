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

// DecisionData is the data of KindApprove and KindDeny entries.
type DecisionData struct {
	ID        string `json:"id"`
	By        string `json:"by"`
	TTL       string `json:"ttl,omitempty"`
	Reason    string `json:"reason"`
	Statement string `json:"statement"` // DecisionStatement message, as signed
	Signature string `json:"signature"` // armored SSHSIG by the approver
}

// EndData is the data of cancel, expire and release entries.
type EndData struct {
	ID     string `json:"id"`
	Serial uint64 `json:"serial,omitempty"`
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
}

// RevokeData is the data of a KindRevoke entry.
type RevokeData struct {
	ID     string `json:"id"`
	Serial uint64 `json:"serial"`
	By     string `json:"by"`
	Reason string `json:"reason"`
}

// Kinds beyond those in entry.go.
const (
	KindCancel   = "cancel"
	KindRelease  = "release"
	KindOffboard = "offboard"
)
