package approvals

import (
	"fmt"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/jitssh/jitssh/audit"
)

// auditEvent is one audit entry a command makes, before it is encoded.
type auditEvent struct {
	kind, actor string
	at          time.Time
	data        AuditRecord
}

// applyAudited applies a command and computes its audit lines in the same
// state transaction: the change and the chain position after its entries
// are committed together, or neither is. A command in an envelope (env not
// nil) is applied once per idempotency key, and only under the policy the
// state records (see envelope).
func (f *fsm) applyAudited(index uint64, t msgType, body []byte, env *envelope) (*applyResult, []auditLine) {
	st := f.State()
	tx := st.writeTxn(index)
	defer tx.Abort()
	if env != nil {
		res, err := repeatTxn(tx, env)
		if err != nil {
			return &applyResult{err: err}, nil
		}
		if res != nil {
			return res, nil
		}
		if err := checkPolicyTxn(tx, env); err != nil {
			return &applyResult{err: err}, nil
		}
	}
	res := &applyResult{}
	var events []auditEvent
	var err error
	if t == msgRestore {
		events, err = restoreTxn(tx, body, res)
	} else {
		events, err = applyAuditedTxn(tx, t, body, res)
	}
	if err != nil {
		res.err = err
		return res, nil
	}
	if env != nil {
		if err := recordOpTxn(tx, env, res); err != nil {
			return &applyResult{err: err}, nil
		}
	}
	lines, err := auditTxn(tx, events)
	if err != nil {
		return &applyResult{err: err}, nil
	}
	if err := tx.Commit(); err != nil {
		return &applyResult{err: err}, nil
	}
	return res, lines
}

// applyAuditedTxn makes the change of one command inside tx, fills res and
// returns the audit entries that record it.
func applyAuditedTxn(tx *txn, t msgType, body []byte, res *applyResult) ([]auditEvent, error) {
	switch t {
	case msgAuditAnchor:
		cmd, err := decode[auditAnchorCmd](t, body)
		if err != nil {
			return nil, err
		}
		return nil, anchorAuditTxn(tx, cmd.Chain)
	case msgSubmit:
		cmd, err := decode[submitCmd](t, body)
		if err != nil {
			return nil, err
		}
		r, err := submitRequestTxn(tx, cmd.Request, cmd.MaxPending)
		if err != nil {
			return nil, err
		}
		res.request = r
		rec := recordOf(r)
		rec.TTL, rec.Reason, rec.Signature = r.TTL, r.Reason, r.Signature
		rec.Ref, rec.Access, rec.Steps, rec.PublicKey, rec.Statement = r.Ref, r.Access, r.Steps, r.PublicKey, r.Statement
		rec.Policy = r.Policy
		return []auditEvent{{AuditRequest, r.Requester, r.CreatedAt, rec}}, nil
	case msgApprove:
		cmd, err := decode[approveCmd](t, body)
		if err != nil {
			return nil, err
		}
		r, complete, err := approveRequestTxn(tx, cmd.ID, cmd.Approval)
		if err != nil {
			return nil, err
		}
		res.request, res.complete = r, complete
		a := cmd.Approval
		rec := recordOf(r)
		rec.Reason, rec.TTL, rec.Signature, rec.By, rec.Statement = a.Reason, a.TTL, a.Signature, a.By, a.Statement
		return []auditEvent{{AuditApprove, a.By, a.At, rec}}, nil
	case msgDeny:
		cmd, err := decode[denyCmd](t, body)
		if err != nil {
			return nil, err
		}
		r, err := denyRequestTxn(tx, cmd.ID, cmd.Decision, cmd.Groups)
		if err != nil {
			return nil, err
		}
		res.request = r
		d := cmd.Decision
		rec := recordOf(r)
		rec.Reason, rec.Signature, rec.By, rec.Statement = d.Reason, d.Signature, d.By, d.Statement
		return []auditEvent{{AuditDeny, d.By, d.At, rec}}, nil
	case msgCancel:
		cmd, err := decode[cancelCmd](t, body)
		if err != nil {
			return nil, err
		}
		r, err := cancelRequestTxn(tx, cmd.ID, cmd.Decision)
		if err != nil {
			return nil, err
		}
		res.request = r
		return []auditEvent{{AuditCancel, cmd.Decision.By, cmd.Decision.At, recordOf(r)}}, nil
	case msgExpire:
		cmd, err := decode[expireCmd](t, body)
		if err != nil {
			return nil, err
		}
		r, err := expireRequestTxn(tx, cmd.ID, cmd.At, cmd.Reason)
		if err != nil {
			return nil, err
		}
		res.request = r
		rec := recordOf(r)
		rec.Reason = cmd.Reason
		return []auditEvent{{AuditExpire, SystemActor, cmd.At, rec}}, nil
	case msgStoreCertificate:
		cmd, err := decode[issuedCert](t, body)
		if err != nil {
			return nil, err
		}
		r, err := issueCertificateTxn(tx, cmd)
		if err != nil {
			return nil, err
		}
		res.request = r
		rec, err := issueRecord(r)
		if err != nil {
			return nil, err
		}
		return []auditEvent{{AuditIssue, SystemActor, r.IssuedAt, rec}}, nil
	case msgRevoke:
		cmd, err := decode[revokeCmd](t, body)
		if err != nil {
			return nil, err
		}
		if cmd.Kind != AuditRevoke && cmd.Kind != AuditRelease {
			return nil, fmt.Errorf("%w: revocation kind %q", ErrBadRequest, cmd.Kind)
		}
		r, err := revokeCertificateTxn(tx, cmd.ID, cmd.Decision)
		if err != nil {
			return nil, err
		}
		res.request = r
		d := cmd.Decision
		rec := recordOf(r)
		rec.Reason, rec.By = d.Reason, d.By
		return []auditEvent{{cmd.Kind, d.By, d.At, rec}}, nil
	case msgSetPolicy:
		cmd, err := decode[setPolicyCmd](t, body)
		if err != nil {
			return nil, err
		}
		changed, err := offboardTxn(tx, cmd.Offboard, cmd.At)
		if err != nil {
			return nil, err
		}
		if err := setTextTxn(tx, metaPolicy, cmd.Digest); err != nil {
			return nil, err
		}
		res.requests = changed
		var events []auditEvent
		for _, r := range changed {
			rec := recordOf(r)
			rec.Reason = cmd.Offboard[r.Requester]
			events = append(events, auditEvent{AuditOffboard, SystemActor, cmd.At, rec})
		}
		rec := AuditRecord{People: cmd.People, Rules: cmd.Rules, Offboarded: cmd.Offboard, Policy: cmd.Digest}
		return append(events, auditEvent{AuditPolicyReload, SystemActor, cmd.At, rec}), nil
	}
	return nil, &decodeError{fmt.Errorf("unknown audited command type %d", uint8(t))}
}

// issueRecord is the audit data of an issued certificate, read from the
// certificate itself so that the record cannot say other than what left.
func issueRecord(r *Request) (AuditRecord, error) {
	pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(r.Certificate))
	if err != nil {
		return AuditRecord{}, fmt.Errorf("%w: certificate of %s: %v", ErrIssue, r.ID, err)
	}
	cert, ok := pub.(*ssh.Certificate)
	if !ok {
		return AuditRecord{}, fmt.Errorf("%w: certificate of %s is a plain key", ErrIssue, r.ID)
	}
	rec := recordOf(r)
	rec.State = StateApproved
	rec.KeyID = cert.KeyId
	rec.KeyFingerprint = ssh.FingerprintSHA256(cert.Key)
	rec.Principals = cert.ValidPrincipals
	rec.ValidAfter, rec.ValidBefore = r.ValidAfter, r.ValidBefore
	rec.Certificate = strings.TrimSpace(r.Certificate)
	rec.TTL = r.GrantedTTL()
	for _, a := range r.Approvals {
		rec.Approvers = append(rec.Approvers, a.By)
	}
	return rec, nil
}

// auditTxn encodes events after the chain position the state holds, and
// records the position after them, inside tx.
func auditTxn(tx *txn, events []auditEvent) ([]auditLine, error) {
	if len(events) == 0 {
		return nil, nil
	}
	pos, err := auditChainTxn(tx.Txn)
	if err != nil {
		return nil, err
	}
	if pos.IsZero() {
		return nil, fmt.Errorf("%w: the state has no audit chain position yet", ErrAudit)
	}
	lines := make([]auditLine, 0, len(events))
	for _, e := range events {
		next, line, err := pos.Next(e.kind, e.actor, e.at, e.data)
		if err != nil {
			return nil, fmt.Errorf("%w: %s entry: %w", ErrAudit, e.kind, err)
		}
		lines = append(lines, auditLine{pos: next, line: line})
		pos = next
	}
	return lines, setAuditChainTxn(tx, pos)
}

// anchorAuditTxn sets the chain position the state continues from, unless
// it has one already.
func anchorAuditTxn(tx *txn, c audit.Chain) error {
	cur, err := auditChainTxn(tx.Txn)
	if err != nil || !cur.IsZero() {
		return err
	}
	if c.IsZero() {
		return fmt.Errorf("%w: anchor at no chain position", ErrBadRequest)
	}
	return setAuditChainTxn(tx, c)
}
