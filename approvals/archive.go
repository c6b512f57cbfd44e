package approvals

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"time"

	"github.com/jitssh/jitssh/audit"
)

// Archive holds the audit entries of requests that left the state, so
// that they still answer by ID: a persistent index of the daemon's audit
// log (audit.IndexFile).
type Archive interface {
	// RequestEntries returns every entry about the request with that ID,
	// in log order; none when the log has no such request.
	RequestEntries(id string) ([]audit.Entry, error)
}

// archived returns the request with that ID as its audit entries tell it,
// for a request that is no longer in the state; ErrNotFound when the
// archive has none.
func (s *Service) archived(id string) (*Request, error) {
	if s.archive == nil || !validID(id) {
		return nil, notFound(id)
	}
	entries, err := s.archive.RequestEntries(id)
	if err != nil {
		return nil, fmt.Errorf("read archived request: %w", err)
	}
	r, err := requestFromEntries(id, entries)
	if err != nil {
		return nil, err
	}
	return r, nil
}

// withDetail returns a copy of r and, when r is compacted, with the
// detail compaction dropped read back from its audit entries. When the
// archive cannot tell, the copy stays Compacted (and the reason is
// logged): what the state holds still answers.
func (s *Service) withDetail(r *Request) *Request {
	if !r.Compacted || s.archive == nil {
		return r.clone()
	}
	a, err := s.archived(r.ID)
	if err != nil {
		s.logger.Warn("compacted request: detail not read from the audit log", "id", r.ID, "err", err)
		return r.clone()
	}
	out := r.clone()
	out.Statement, out.Signature, out.PublicKey, out.Certificate = a.Statement, a.Signature, a.PublicKey, a.Certificate
	for i := range out.Approvals {
		for _, aa := range a.Approvals {
			if aa.By == out.Approvals[i].By {
				out.Approvals[i].Statement, out.Approvals[i].Signature = aa.Statement, aa.Signature
			}
		}
	}
	if out.Decision != nil && a.Decision != nil {
		out.Decision.Statement, out.Decision.Signature = a.Decision.Statement, a.Decision.Signature
	}
	out.Compacted = false
	return out
}

// requestFromEntries rebuilds a request from its audit entries, in log
// order. What the entries do not record is left out: when a pending
// request would have expired, the groups each approval counted for.
func requestFromEntries(id string, entries []audit.Entry) (*Request, error) {
	var r *Request
	for _, e := range entries {
		if e.Kind == audit.KindRequest {
			var d audit.RequestData
			if err := json.Unmarshal(e.Data, &d); err != nil {
				return nil, fmt.Errorf("archived request %s: seq %d: %w", id, e.Seq, err)
			}
			if d.ID != id {
				continue
			}
			r = requestOfData(&d, e.Time)
			continue
		}
		var about struct {
			ID string `json:"id"`
		}
		if r == nil || json.Unmarshal(e.Data, &about) != nil || about.ID != id {
			continue // not about this request, or before it: the index's mistake, not the log's
		}
		if err := applyEntry(r, e); err != nil {
			return nil, fmt.Errorf("archived request %s: seq %d (%s): %w", id, e.Seq, e.Kind, err)
		}
	}
	if r == nil {
		return nil, notFound(id)
	}
	r.Archived = true
	return r, nil
}

func requestOfData(d *audit.RequestData, at time.Time) *Request {
	ttl, _ := time.ParseDuration(d.TTL)
	r := &Request{
		ID: d.ID, Requester: d.Requester, Repo: d.Repo, Ref: d.Ref, Access: d.Access, Grant: d.Grant,
		TTL: Duration(ttl), Reason: d.Reason, PublicKey: d.PublicKey, Rule: d.Rule, Policy: d.PolicySHA256,
		State: State(d.State), CreatedAt: at, UpdatedAt: at, Signature: d.Signature, Statement: d.Statement,
		Approvals: []Approval{},
	}
	if r.State == "" {
		r.State = StatePending
	}
	for _, s := range d.Steps {
		r.Steps = append(r.Steps, Step{Group: s.Group, Count: s.Count})
	}
	if w := d.Workload; w != nil {
		r.Workload = &WorkloadIdentity{Issuer: w.Issuer, URL: w.IssuerURL, Audience: w.Audience, Subject: w.Subject,
			Claims: maps.Clone(w.Claims), TokenID: w.TokenID, Expires: w.Expires}
	}
	return r
}

// applyEntry applies one later entry about r to it.
func applyEntry(r *Request, e audit.Entry) error {
	switch e.Kind {
	case audit.KindApprove, audit.KindDeny:
		var d audit.DecisionData
		if err := json.Unmarshal(e.Data, &d); err != nil {
			return err
		}
		if e.Kind == audit.KindApprove {
			ttl, _ := time.ParseDuration(d.TTL)
			r.Approvals = append(r.Approvals, Approval{By: d.By, At: e.Time, Reason: d.Reason, TTL: Duration(ttl),
				Statement: d.Statement, Signature: d.Signature})
		} else {
			r.Decision = &Decision{By: d.By, At: e.Time, Reason: d.Reason, Statement: d.Statement, Signature: d.Signature}
		}
		setState(r, d.State)
	case audit.KindIssue:
		var d audit.IssueData
		if err := json.Unmarshal(e.Data, &d); err != nil {
			return err
		}
		r.Serial, r.Certificate = d.Serial, d.Certificate
		r.IssuedAt, r.ValidAfter, r.ValidBefore = e.Time, d.ValidAfter, d.ValidBefore
		setState(r, d.State)
	case audit.KindCancel, audit.KindExpire, audit.KindRevoke, audit.KindRelease, audit.KindOffboard:
		var d audit.EndData
		if err := json.Unmarshal(e.Data, &d); err != nil {
			return err
		}
		by := d.By
		if by == "" {
			by = e.Actor
		}
		end := &Decision{By: by, At: e.Time, Reason: d.Reason}
		setState(r, d.State)
		if r.State == StateApproved {
			r.Revoked = end // a revocation, release or offboarding of the certificate
		} else {
			r.Decision = end
		}
	default:
		return errors.New("not an entry about a request")
	}
	r.UpdatedAt = e.Time
	return nil
}

func setState(r *Request, s string) {
	if s != "" {
		r.State = State(s)
	}
}
