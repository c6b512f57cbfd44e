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
	// Workload is set when a CI/CD job made the request with its
	// platform's identity token instead of a signed statement: Statement
	// and Signature are then empty, and Requester is
	// WorkloadRequester(Workload.Issuer, Workload.Subject, Workload.Claims).
	Workload *WorkloadData `json:"workload,omitempty"`
}

// WorkloadData is a CI/CD job's identity as its platform's token vouches
// for it.
type WorkloadData struct {
	Issuer    string `json:"issuer"`     // the daemon's name for the issuer (oidc: name)
	IssuerURL string `json:"issuer_url"` // the token's iss
	Audience  string `json:"audience"`   // the audience the daemon required
	Subject   string `json:"subject"`    // the token's sub
	// Claims are the claims that identify the job (repository or
	// project, ref, run or pipeline, sha, ...) and every claim a rule
	// tested: strings as they are, other values as their JSON text.
	Claims  map[string]string `json:"claims"`
	TokenID string            `json:"token_id"` // issuer and jti (or the token's hash): used once
	Expires time.Time         `json:"expires"`  // the token's exp
	// Token is the token itself, on request entries only: used once and
	// bound to the daemon's audience, it lets an auditor check the
	// issuer's signature offline. Refusals leave it out, since a refused
	// token may still be good.
	Token string `json:"token,omitempty"`
}

// WorkloadRefusedData is the data of a KindWorkloadRefused entry: a CI/CD
// job whose token its issuer did sign was refused a certificate. Tokens
// that no trusted issuer signed are refused too, but only the daemon's log
// says so: whoever can reach the daemon could send them.
type WorkloadRefusedData struct {
	Requester string       `json:"requester"`
	Repo      string       `json:"repo"`
	Ref       string       `json:"ref"`
	Access    string       `json:"access"`
	Reason    string       `json:"reason"` // why, as the job was told
	Workload  WorkloadData `json:"workload"`
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
	// KindWorkloadRefused: a CI/CD job's signed token did not get it a
	// certificate (WorkloadRefusedData).
	KindWorkloadRefused = "workload.refused"
	// KindRestore: an operator restored the daemon's state from a
	// snapshot (RestoreData).
	KindRestore = "restore"
)

// RestoreData is the data of a KindRestore entry. The state continues
// from the snapshot's, under the policy version it recorded.
type RestoreData struct {
	Reason       string            `json:"reason"`                  // what was restored, and where serials continue
	Offboarded   map[string]string `json:"offboarded,omitempty"`    // person → why
	PolicySHA256 string            `json:"policy_sha256,omitempty"` // the version the restored state records
}
