package audit

import (
	"bytes"
	"encoding/json"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/jitssh/jitssh/principals"
)

// The checks below are what a request or decision record must satisfy
// against the statement its author signed, apart from the signature
// itself. The verifier runs them on every entry, and the daemon runs the
// same functions before it records anything, so it never writes an entry
// its own verifier would reject.

// CheckRequestRecord checks a request entry's data against the request
// statement it carries: the same requester, repo, ref, access, reason and
// key as signed, a grant that is exactly that access on that repo and ref,
// a positive TTL no longer than the one asked, a parseable key and
// well-formed approval steps. The error is a *failure wrapping one of
// ErrStatementMismatch, ErrScope or ErrRecord.
func CheckRequestRecord(d *RequestData) error {
	var st RequestStatement
	if err := json.Unmarshal([]byte(d.Statement), &st); err != nil {
		return fail(ErrStatementMismatch, "request %s: statement is not a request statement: %v", d.ID, err)
	}
	_, _, err := checkRequestRecord(d, &st)
	return err
}

// CheckDecisionRecord checks an approve or deny entry's data against the
// decision statement it carries: the same kind, request, maker, TTL and
// reason as signed, and a positive TTL when there is one.
func CheckDecisionRecord(kind string, d *DecisionData) error {
	var st DecisionStatement
	if err := json.Unmarshal([]byte(d.Statement), &st); err != nil {
		return fail(ErrStatementMismatch, "%s of %s: statement is not a decision statement: %v", kind, d.ID, err)
	}
	_, err := checkDecisionRecord(kind, d, &st)
	return err
}

func checkRequestRecord(d *RequestData, st *RequestStatement) (ssh.PublicKey, time.Duration, error) {
	// The daemon records the repo, access and key in canonical form; the
	// statement has them as the requester typed them.
	repo, access, samekey := st.Repo, st.Access, st.PublicKey == d.PublicKey
	if r, err := principals.NormalizeRepo(st.Repo); err == nil {
		repo = r
	}
	if a, err := principals.ParseAccess(st.Access); err == nil {
		access = a.String()
	}
	if !samekey {
		signed, _, _, _, err1 := ssh.ParseAuthorizedKey([]byte(st.PublicKey))
		recorded, _, _, _, err2 := ssh.ParseAuthorizedKey([]byte(d.PublicKey))
		samekey = err1 == nil && err2 == nil && bytes.Equal(signed.Marshal(), recorded.Marshal())
	}
	for _, f := range [...]struct {
		name, signed, recorded string
		same                   bool
	}{
		{"kind", st.Kind, KindRequest, st.Kind == KindRequest},
		{"requester", st.Requester, d.Requester, st.Requester == d.Requester},
		{"repo", st.Repo, d.Repo, repo == d.Repo},
		{"ref", st.Ref, d.Ref, st.Ref == d.Ref},
		{"access", st.Access, d.Access, access == d.Access},
		{"reason", st.Reason, d.Reason, st.Reason == d.Reason},
		{"public key", st.PublicKey, d.PublicKey, samekey},
	} {
		if !f.same {
			return nil, 0, fail(ErrStatementMismatch, "request %s: %s is %q, but %s signed %q", d.ID, f.name, f.recorded, d.Requester, f.signed)
		}
	}
	ttl, err := parseTTL(d.TTL)
	if err != nil {
		return nil, 0, fail(ErrRecord, "request %s: ttl %q: %v", d.ID, d.TTL, err)
	}
	if st.TTL != "" {
		asked, err := parseTTL(st.TTL)
		if err != nil {
			return nil, 0, fail(ErrStatementMismatch, "request %s: signed ttl %q: %v", d.ID, st.TTL, err)
		}
		if ttl > asked {
			return nil, 0, fail(ErrStatementMismatch, "request %s: granted ttl %v is longer than the %v asked", d.ID, ttl, asked)
		}
	}
	return checkRequestScope(d)
}

// checkRequestScope checks what every request record must hold, signed
// or not: a grant that is exactly its access on its repo and ref, a
// positive TTL, a parseable key and well-formed approval steps.
func checkRequestScope(d *RequestData) (ssh.PublicKey, time.Duration, error) {
	g, err := principals.Parse(d.Grant)
	if err != nil {
		return nil, 0, fail(ErrScope, "request %s: grant %q: %v", d.ID, d.Grant, err)
	}
	if g.Access.String() != d.Access || g.Repo != d.Repo || g.Ref != d.Ref {
		return nil, 0, fail(ErrScope, "request %s: grant %s is not %s on %s %s as requested", d.ID, d.Grant, d.Access, d.Repo, d.Ref)
	}
	ttl, err := parseTTL(d.TTL)
	if err != nil {
		return nil, 0, fail(ErrRecord, "request %s: ttl %q: %v", d.ID, d.TTL, err)
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(d.PublicKey))
	if err != nil {
		return nil, 0, fail(ErrRecord, "request %s: public key: %v", d.ID, err)
	}
	for _, s := range d.Steps {
		if s.Count < 1 || s.Group == "" {
			return nil, 0, fail(ErrRecord, "request %s: approval step %+v", d.ID, s)
		}
	}
	return pub, ttl, nil
}

// checkDecisionRecord returns the decision's TTL, zero when it has none.
func checkDecisionRecord(kind string, d *DecisionData, st *DecisionStatement) (time.Duration, error) {
	for _, f := range [...]struct {
		name, signed, recorded string
		same                   bool
	}{
		{"kind", st.Kind, kind, st.Kind == kind},
		{"request", st.Request, d.ID, st.Request == d.ID},
		{"by", st.By, d.By, st.By == d.By},
		{"ttl", st.TTL, d.TTL, sameTTL(st.TTL, d.TTL)},
		{"reason", st.Reason, d.Reason, st.Reason == d.Reason},
	} {
		if !f.same {
			return 0, fail(ErrStatementMismatch, "%s of %s: %s is %q, but %s signed %q", kind, d.ID, f.name, f.recorded, d.By, f.signed)
		}
	}
	if d.TTL == "" {
		return 0, nil
	}
	ttl, err := parseTTL(d.TTL)
	if err != nil {
		return 0, fail(ErrRecord, "%s of %s: ttl %q: %v", kind, d.ID, d.TTL, err)
	}
	return ttl, nil
}
