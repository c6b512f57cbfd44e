package approvals

import (
	"strings"

	"golang.org/x/crypto/ssh"

	"github.com/jitssh/jitssh/audit"
)

// Kinds of the audit entries the Service writes, through its state machine
// (see journal). Their data are the audit package's types, which the
// auditor's checks read back.
const (
	AuditRequest      = audit.KindRequest      // audit.RequestData
	AuditApprove      = audit.KindApprove      // audit.DecisionData
	AuditDeny         = audit.KindDeny         // audit.DecisionData
	AuditCancel       = audit.KindCancel       // audit.EndData
	AuditExpire       = audit.KindExpire       // audit.EndData
	AuditIssue        = audit.KindIssue        // audit.IssueData
	AuditRevoke       = audit.KindRevoke       // audit.EndData
	AuditRelease      = audit.KindRelease      // audit.EndData
	AuditPolicyReload = audit.KindPolicyReload // audit.PolicyReloadData
	AuditOffboard     = audit.KindOffboard     // audit.EndData
	// AuditWorkloadRefused: a CI/CD job's signed token got it no
	// certificate (audit.WorkloadRefusedData).
	AuditWorkloadRefused = audit.KindWorkloadRefused
)

// SystemActor is the actor of what jitssh does by itself: expiring
// requests, issuing certificates, offboarding. No person may have this name.
const SystemActor = "jitssh"

// subjectOf names r, as it stands, in an audit entry.
func subjectOf(r *Request) audit.Subject {
	return audit.Subject{ID: r.ID, Requester: r.Requester, Repo: r.Repo, Grant: r.Grant, Rule: r.Rule, State: string(r.State), Serial: r.Serial}
}

// requestData is the data of r's request entry.
func requestData(r *Request) audit.RequestData {
	steps := make([]audit.Step, len(r.Steps))
	for i, s := range r.Steps {
		steps[i] = audit.Step{Group: s.Group, Count: s.Count}
	}
	return audit.RequestData{
		ID: r.ID, Requester: r.Requester, Repo: r.Repo, Ref: r.Ref, Access: r.Access, Grant: r.Grant,
		TTL: r.TTL.String(), Reason: r.Reason, Rule: r.Rule, Steps: steps, PublicKey: r.PublicKey,
		Statement: r.Statement, Signature: r.Signature, State: string(r.State), PolicySHA256: r.Policy,
		Workload: r.Workload.data(),
	}
}

// decisionData is the data of an approve or deny entry on r.
func decisionData(r *Request, by, reason string, ttl Duration, statement, signature string) audit.DecisionData {
	d := audit.DecisionData{Subject: subjectOf(r), By: by, Reason: reason, Statement: statement, Signature: signature}
	if ttl > 0 {
		d.TTL = ttl.String()
	}
	return d
}

// endData is the data of an entry that ends r or its certificate.
func endData(r *Request, by, reason string) audit.EndData {
	return audit.EndData{Subject: subjectOf(r), By: by, Reason: reason}
}

// issueData is the data of r's issue entry, read from the certificate
// itself so that the record cannot say other than what left.
func issueData(r *Request) (audit.IssueData, error) {
	pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(r.Certificate))
	if err != nil {
		return audit.IssueData{}, err
	}
	cert, ok := pub.(*ssh.Certificate)
	if !ok {
		return audit.IssueData{}, errNotCertificate
	}
	d := audit.IssueData{
		ID: r.ID, Serial: cert.Serial, KeyID: cert.KeyId, Requester: r.Requester, Principals: cert.ValidPrincipals,
		ValidAfter: r.ValidAfter, ValidBefore: r.ValidBefore, Approvers: []string{}, Rule: r.Rule,
		Certificate: strings.TrimSpace(r.Certificate), Repo: r.Repo, Grant: r.Grant, State: string(r.State),
		TTL: r.GrantedTTL().String(), KeyFingerprint: ssh.FingerprintSHA256(cert.Key),
	}
	for _, a := range r.Approvals {
		d.Approvers = append(d.Approvers, a.By)
	}
	return d, nil
}
