package audit

import (
	"errors"
	"fmt"
	"io"
	"time"

	"golang.org/x/crypto/ssh"
)

// CheckOptions are the trust anchors of CheckGrants and of a Checker.
type CheckOptions struct {
	// CAKeys are the trusted CA public keys. Every issued certificate must
	// be signed by one of them.
	CAKeys []ssh.PublicKey
	// People by name. When nil, signatures, identities and group
	// membership are not checked, and approval steps are checked by count
	// only; CheckSummary.PeopleChecked is then false.
	People map[string]Person
	// Skew is how far before its issue entry a certificate may become
	// valid; zero means DefaultSkew.
	Skew time.Duration
}

// CheckSummary describes the logs a Checker read, or for CheckGrants a log
// that passed, or the prefix of one that passed before the first failing
// entry.
type CheckSummary struct {
	Summary
	Requests   int // request entries
	Approvals  int // approve entries
	Denials    int // deny entries
	Issued     int // certificates issued by the daemon
	BreakGlass int // certificates signed with `ca sign`
	// PeopleChecked is true when signatures and groups were checked
	// against CheckOptions.People.
	PeopleChecked bool
}

// CheckError names an entry that fails a check beyond the chain. It wraps
// one of the errors of grants.go, or ErrStatementSignature.
type CheckError struct {
	Line   int    // 1-based line number
	Seq    uint64 // seq of the entry
	Kind   string // kind of the entry
	Reason string
	Err    error
}

func (e *CheckError) Error() string {
	return fmt.Sprintf("audit log line %d (seq %d, %s): %s: %v", e.Line, e.Seq, e.Kind, e.Reason, e.Err)
}

func (e *CheckError) Unwrap() error { return e.Err }

// CheckGrants verifies the chain of the log read from r, as Verify does,
// and in the same pass checks every request, decision and issued
// certificate against the trust anchors in opts (see Checker). The first
// failing entry is returned as a *CheckError, or as Verify's *VerifyError
// when the chain breaks first, with the summary of the entries before it.
// Memory grows with the number of requests, not of entries.
func CheckGrants(r io.Reader, opts CheckOptions) (CheckSummary, error) {
	c := newChecker(opts)
	s := newScanner(r, 0)
	sum, err := s.run(func(e *Entry, _ []byte, line int) error {
		if f := c.entry(e); f != nil {
			return f.at(e, line)
		}
		return nil
	}, func(v *VerifyError) error { return v })
	c.sum.Summary = sum
	return c.sum, err
}

// A Checker verifies logs completely: it checks everything CheckGrants
// checks, but reports every failure, with its line and seq, and goes on to
// the end of the log, so that one bad entry does not hide the ones after it.
// After a break in the chain it takes the chain up again from the line that
// broke it.
//
// Several logs may go through one Checker, one after another (a daemon's
// log and Git servers' logs): each is verified on its own chain, while what
// is learnt of requests and serials carries over from one to the next. A
// Checker is not safe for concurrent use.
//
// Everything CheckGrants checks:
//
//   - a request is signed by its requester (namespace NamespaceRequest),
//     its record agrees with the signed statement, its grant is the
//     requested repo, ref and access, and its granted TTL is no longer
//     than asked;
//   - a decision is signed by its maker (NamespaceApprove, NamespaceDeny),
//     names the request by the hash of the requester's statement, agrees
//     with its record, and is not the requester approving themselves;
//   - an issued certificate follows an undenied request that has not been
//     issued before and passed its own checks; its approvals, recorded
//     before it, meet the request's steps, one person filling at most one
//     place (no steps means the rule approves automatically); its
//     principals are exactly the grant, its key the requested key; it is a
//     user certificate signed by a trusted CA, with a serial never used
//     before, whose serial, key ID, principals and validity are those of
//     the entry; it becomes valid no earlier than opts.Skew before the last
//     approval (the request, when the rule approves automatically) and
//     expires no later than the granted TTL (the shortest among request and
//     approvals) after the issue entry, to the second.
//
// Break-glass certificates (KindCASign) are counted, not judged: by design
// nobody approved them; their serials must still be unique.
type Checker struct {
	c *checker
}

// NewChecker returns a Checker that judges logs against opts.
func NewChecker(opts CheckOptions) *Checker {
	return &Checker{c: newChecker(opts)}
}

// Check reads one log from r to its end and passes every failure to
// report: a *VerifyError for the chain (ErrSyntax, ErrSeq, ErrChain,
// ErrTornTail), a *CheckError for the rest. It returns the log's summary,
// whose Entries counts the entries read, and an error only when the log
// could not be read.
func (k *Checker) Check(r io.Reader, report func(error)) (Summary, error) {
	c := k.c
	s := newScanner(r, 0)
	sum, err := s.run(func(e *Entry, _ []byte, line int) error {
		if f := c.entry(e); f != nil {
			report(f.at(e, line))
		}
		return nil
	}, func(v *VerifyError) error {
		report(v)
		return nil
	})
	sum.Entries = s.count
	c.sum.Summary.Entries += s.count
	c.sum.Summary.Head, c.sum.Summary.LastTime = sum.Head, sum.LastTime
	return sum, err
}

// Summary returns the counts over every log checked so far.
func (k *Checker) Summary() CheckSummary { return k.c.sum }

// failure is a failed check, before it is placed on a line.
type failure struct {
	err    error
	reason string
}

func (f *failure) Error() string { return f.reason + ": " + f.err.Error() }

func (f *failure) at(e *Entry, line int) *CheckError {
	return &CheckError{Line: line, Seq: e.Seq, Kind: e.Kind, Reason: f.reason, Err: f.err}
}

func fail(err error, format string, args ...any) *failure {
	return &failure{err: err, reason: fmt.Sprintf(format, args...)}
}

// errFailure is a failure for an error that is not one already.
func errFailure(err error) *failure {
	var f *failure
	if errors.As(err, &f) {
		return f
	}
	return &failure{err: err, reason: "check"}
}
