package approvals

import (
	"fmt"
	"time"
)

// Auditor puts the Service's actions on the audit log. Append must return
// only once the entry is durable: the Service calls it before it reports
// success, and before a certificate leaves it.
type Auditor interface {
	Append(kind, actor string, data any) error
}

// Kinds of the audit entries the Service writes. The data of each is an
// AuditRecord.
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
	People         int               `json:"people,omitempty"`     // policy.reload: people in the new policy
	Rules          int               `json:"rules,omitempty"`      // policy.reload: rules in the new policy
	Offboarded     map[string]string `json:"offboarded,omitempty"` // policy.reload: person → why
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

type nopAuditor struct{}

func (nopAuditor) Append(string, string, any) error { return nil }

// record appends one audit entry.
func (s *Service) record(kind, actor string, data AuditRecord) error {
	if err := s.audit.Append(kind, actor, data); err != nil {
		s.logger.Error("audit entry not written", "kind", kind, "actor", actor, "id", data.ID, "err", err)
		return fmt.Errorf("audit %s of %s: %w", kind, data.ID, err)
	}
	return nil
}
