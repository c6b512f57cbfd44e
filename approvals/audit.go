package approvals

import "time"

// Kinds of the audit entries the Service writes, through its state machine
// (see journal). The data of each is an AuditRecord.
const (
	AuditRequest      = "request"
	AuditApprove      = "approve"
	AuditDeny         = "deny"
	AuditCancel       = "cancel"
	AuditExpire       = "expire"
	AuditIssue        = "issue"
	AuditRevoke       = "revoke"
	AuditRelease      = "release"
	AuditPolicyReload = "policy.reload"
	AuditOffboard     = "offboard"
)

// SystemActor is the actor of what jitssh does by itself: expiring
// requests, issuing certificates, offboarding. No person may have this name.
const SystemActor = "jitssh"

// AuditRecord is the data of an audit entry. Serial and Repo sit at the top
// level, where the audit log indexes them.
type AuditRecord struct {
	ID             string            `json:"id,omitempty"`
	Requester      string            `json:"requester,omitempty"`
	Repo           string            `json:"repo,omitempty"`
	Grant          string            `json:"grant,omitempty"`
	Rule           string            `json:"rule,omitempty"`
	State          State             `json:"state,omitempty"`
	TTL            Duration          `json:"ttl,omitempty"`
	Reason         string            `json:"reason,omitempty"`
	Signature      string            `json:"signature,omitempty"`
	Statement      string            `json:"statement,omitempty"` // the message Signature signs
	By             string            `json:"by,omitempty"`        // who approved, denied or revoked
	Ref            string            `json:"ref,omitempty"`
	Access         string            `json:"access,omitempty"`
	Steps          []Step            `json:"steps,omitempty"`
	PublicKey      string            `json:"public_key,omitempty"`  // the key the request asks to certify
	Certificate    string            `json:"certificate,omitempty"` // issue: the certificate, authorized_keys form
	Serial         uint64            `json:"serial,omitempty"`
	KeyID          string            `json:"key_id,omitempty"`
	KeyFingerprint string            `json:"key_fingerprint,omitempty"` // of the certified key
	Principals     []string          `json:"principals,omitempty"`
	ValidAfter     time.Time         `json:"valid_after,omitzero"`
	ValidBefore    time.Time         `json:"valid_before,omitzero"`
	Approvers      []string          `json:"approvers,omitempty"`
	People         int               `json:"people,omitempty"`        // policy.reload: people in the new policy
	Rules          int               `json:"rules,omitempty"`         // policy.reload: rules in the new policy
	Offboarded     map[string]string `json:"offboarded,omitempty"`    // policy.reload: person → why
	Policy         string            `json:"policy_sha256,omitempty"` // request, policy.reload: digest of the policy in force
}

// recordOf returns the audit data that describes r.
func recordOf(r *Request) AuditRecord {
	return AuditRecord{
		ID:        r.ID,
		Requester: r.Requester,
		Repo:      r.Repo,
		Grant:     r.Grant,
		Rule:      r.Rule,
		State:     r.State,
		Serial:    r.Serial,
	}
}
