package audit

import (
	"encoding/hex"
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
	// Backdate is how far before its issue entry a certificate may become
	// valid: the CA's backdate. Zero means ca.DefaultBackdate.
	Backdate time.Duration
	// Policies are the versions of the policy the auditor holds. A request
	// recorded with a policy version is judged against that version: its
	// requester and approvers must be its people (or, for an approval, the
	// people of the version in force when it was given), its rule the one
	// the version picks, with the steps and TTL range the version gives
	// it, and its certificate must meet those steps. People must then be
	// set too: it judges requests recorded without a version, and should
	// hold everyone of every version.
	Policies []PolicyVersion
	// AllowUnknownPolicy makes a request whose version is not among
	// Policies a gap in the evidence rather than a failure: it is counted
	// in CheckSummary.UnknownPolicy, judged by the entry's own steps, and a
	// person known to no version supplied is not held against the log.
	AllowUnknownPolicy bool
	// VerifyWorkload checks the token a CI/CD job's request carries
	// (see WorkloadVerifier). When nil, or when it answers
	// ErrWorkloadUnchecked, the token is counted in
	// CheckSummary.WorkloadUnchecked rather than held against the log.
	VerifyWorkload WorkloadVerifier
	// HeadKey is the public key that signs checkpoints (the daemon's host
	// key). When set, a Checker verifies every checkpoint entry with it,
	// and a head file given to Check; when nil, checkpoints are counted as
	// not checked.
	HeadKey ssh.PublicKey
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
	// PolicyRequests counts requests by the policy version that decided
	// them; PolicyChecked those judged against a version supplied,
	// UnknownPolicy those whose version was not supplied. NotChecked
	// counts signatures and approvers that could not be checked because
	// the person is in no version supplied while the one that decided was
	// not supplied (with AllowUnknownPolicy).
	PolicyRequests                           map[string]int
	PolicyChecked, UnknownPolicy, NotChecked int
	// WorkloadChecked counts the CI/CD job requests whose token
	// CheckOptions.VerifyWorkload verified; WorkloadUnchecked those whose
	// token it could not check (no key set for the issuer, or no
	// verifier).
	WorkloadChecked, WorkloadUnchecked int
	// Checkpoints counts the checkpoint entries verified with
	// CheckOptions.HeadKey (whether or not they passed); Unchecked the
	// ones read without a head key.
	Checkpoints, CheckpointsUnchecked int
}

// LogSummary describes one log a Checker read.
type LogSummary struct {
	Summary         // Entries counts the entries read
	Checkpoints int // checkpoint entries verified with the head key
	// HeadSeq is the seq of the head file given to Check, when it was
	// checked: signed by the head key, and the log holds that entry.
	HeadChecked bool
	HeadSeq     uint64
}

// HeadError says that a head file cannot be read or is not signed by the
// head key. It wraps ErrBadSignature or ErrSyntax.
type HeadError struct {
	Reason string
	Err    error
}

func (e *HeadError) Error() string { return "signed head: " + e.Reason + ": " + e.Err.Error() }

func (e *HeadError) Unwrap() error { return e.Err }

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
// Memory grows with the requests in flight, not with the log (see
// check_memory.go).
func CheckGrants(r io.Reader, opts CheckOptions) (CheckSummary, error) {
	c := newChecker(opts)
	s := newScanner(r, c.window())
	c.scan = s
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
//     the entry; it becomes valid no earlier than opts.Backdate before the last
//     approval (the request, when the rule approves automatically) and
//     expires no later than the granted TTL (the shortest among request and
//     approvals) after the issue entry, to the second.
//
// With CheckOptions.Policies, a request that names the policy version that
// decided it is judged by that version (see CheckOptions.Policies), and its
// certificate must meet that version's steps, not merely those recorded.
//
// With CheckOptions.HeadKey, a Checker also checks every checkpoint entry:
// signed by that key, for an entry before it, whose line hashes to what it
// signs. A log rewritten from some entry on, chain and all, fails at the
// first checkpoint after that entry, unless the checkpoints were dropped
// too; a head file kept apart (see Check) catches that, and a cut tail.
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
// ErrTornTail) and for a log that was cut or rewritten below a signed head
// (ErrTruncated), a *CheckError for the rest, a *HeadError for a head file
// that does not verify. It returns the log's summary, and an error only
// when the log could not be read.
//
// head, when not nil, is the content of a head file (PATH.head) kept for
// this log; it needs CheckOptions.HeadKey. The log must hold the entry the
// head names, with the hash it signs: a log cut below it, or rewritten up
// to it, fails with ErrTruncated.
func (k *Checker) Check(r io.Reader, head []byte, report func(error)) (LogSummary, error) {
	c := k.c
	var hd *Head
	if head != nil {
		h, err := c.head(head)
		if err != nil {
			report(err)
		} else {
			hd = &h
		}
	}
	s := newScanner(r, c.window())
	c.scan = s
	defer func() { c.scan = nil }()
	var out LogSummary
	checkpoints := c.sum.Checkpoints
	headOK := hd != nil
	sum, err := s.run(func(e *Entry, line []byte, lineNo int) error {
		if hd != nil && e.Seq == hd.Seq && lineHash(line) != hd.Hash {
			headOK = false
			report(&VerifyError{Line: lineNo, Seq: e.Seq, Err: ErrTruncated,
				Reason: fmt.Sprintf("entry does not hash to the head signed at %s: the log was rewritten", hd.Time.Format(time.RFC3339))})
		}
		if f := c.entry(e); f != nil {
			report(f.at(e, lineNo))
		}
		return nil
	}, func(v *VerifyError) error {
		report(v)
		return nil
	})
	if err != nil {
		return out, err
	}
	if hd != nil && s.maxSeq < hd.Seq {
		headOK = false
		report(&VerifyError{Line: s.lineNo + 1, Seq: s.maxSeq + 1, Err: ErrTruncated,
			Reason: fmt.Sprintf("log ends at seq %d, but a head signed at %s has seq %d", s.maxSeq, hd.Time.Format(time.RFC3339), hd.Seq)})
	}
	if headOK {
		out.HeadChecked, out.HeadSeq = true, hd.Seq
	}
	out.Summary = sum
	out.Entries = s.count
	out.Checkpoints = c.sum.Checkpoints - checkpoints
	c.sum.Summary.Entries += s.count
	c.sum.Summary.Head, c.sum.Summary.LastTime = sum.Head, sum.LastTime
	return out, nil
}

// checkpointWindow is how far back a checkpoint entry may sign: the
// entries appended while one checkpoint was being signed come between the
// entry it signs and itself.
const checkpointWindow = 1 << 16

// window is how many line hashes the scanner keeps: enough for
// checkpoints when they are checked.
func (c *checker) window() int {
	if c.opts.HeadKey != nil {
		return checkpointWindow
	}
	return 0
}

// head parses a head file and checks its signature.
func (c *checker) head(b []byte) (Head, error) {
	if c.opts.HeadKey == nil {
		return Head{}, &HeadError{Reason: "no head key to check it with", Err: ErrBadSignature}
	}
	h, err := ParseHead(b)
	if err != nil {
		return Head{}, &HeadError{Reason: err.Error(), Err: ErrSyntax}
	}
	if h.Seq == 0 && h.Hash != GenesisHash {
		return Head{}, &HeadError{Reason: "a head signed at seq 0 must have the genesis hash", Err: ErrBadSignature}
	}
	if err := VerifyHead(h, c.opts.HeadKey); err != nil {
		return Head{}, &HeadError{Reason: fmt.Sprintf("head at seq %d is not signed by the head key %s", h.Seq, ssh.FingerprintSHA256(c.opts.HeadKey)), Err: err}
	}
	return h, nil
}

// checkpoint checks a checkpoint entry: signed by the head key, for an
// entry before it, whose line hashes to what it signs.
func (c *checker) checkpoint(e *Entry) error {
	if c.opts.HeadKey == nil {
		c.sum.CheckpointsUnchecked++
		return nil
	}
	c.sum.Checkpoints++
	h, err := ParseHead(e.Data)
	if err != nil {
		return fail(ErrRecord, "%v", err)
	}
	if err := VerifyHead(h, c.opts.HeadKey); err != nil {
		return fail(err, "not signed by the head key %s", ssh.FingerprintSHA256(c.opts.HeadKey))
	}
	switch {
	case h.Seq >= e.Seq:
		return fail(ErrTruncated, "signs seq %d, which is not before it: entries before it were removed", h.Seq)
	case h.Seq == 0:
		if h.Hash != GenesisHash {
			return fail(ErrTruncated, "signs seq 0 with a hash other than the genesis hash")
		}
		return nil
	}
	if c.scan == nil {
		return nil
	}
	want, ok := c.scan.hashOf(h.Seq)
	if !ok {
		return fail(ErrTruncated, "signs seq %d, which is not among the %d entries before it", h.Seq, checkpointWindow)
	}
	if hex.EncodeToString(want[:]) != h.Hash {
		return fail(ErrTruncated, "signs hash %.16s… for seq %d, but that entry hashes to %x…: the log was rewritten up to there", h.Hash, h.Seq, want[:8])
	}
	return nil
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
