package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jitssh/jitssh/ca"
	"golang.org/x/crypto/ssh"
)

// CheckGrants answers the auditor's question that the chain alone cannot:
// was every certificate on the record issued for a request its requester
// signed, with the approvals the policy asked for, by people who signed
// them, and no wider or longer than granted?

// Errors CheckGrants wraps in a *CheckError. A bad request or decision
// signature wraps ErrStatementSignature.
var (
	// ErrUnapprovedIssue: a certificate was issued without a request, for
	// a denied or already issued request, or without the approvals the
	// request's steps require.
	ErrUnapprovedIssue = errors.New("certificate issued without approval")
	// ErrSelfApproval: a requester approved their own request.
	ErrSelfApproval = errors.New("self-approval")
	// ErrScope: a certificate grants more than, or something other than,
	// the request: other principals, another key, a grant that is not the
	// requested repo, ref and access.
	ErrScope = errors.New("certificate scope differs from the request")
	// ErrValidity: a certificate is valid longer than the granted TTL, or
	// from earlier than the CA's clock skew allows.
	ErrValidity = errors.New("certificate validity exceeds the grant")
	// ErrUnknownPerson: a requester or approver is not among the people.
	ErrUnknownPerson = errors.New("unknown person")
	// ErrCA: a certificate is not a user certificate signed by a trusted
	// CA key, reuses a serial, or differs from what its entry records.
	ErrCA = errors.New("certificate not from a trusted CA")
	// ErrStatementMismatch: a record disagrees with the statement its
	// signature covers, or a decision signs another request.
	ErrStatementMismatch = errors.New("record disagrees with its signed statement")
	// ErrRecord: an entry's data cannot be read, or refers to a request
	// that is not on the record.
	ErrRecord = errors.New("malformed record")
)

// clockSlack absorbs the rounding of certificate times to whole seconds.
const clockSlack = time.Second

// CASignData is the data of a KindCASign entry: a break-glass certificate
// signed with `jitssh ca sign`, outside the approval flow. Its field names
// are those of the record `ca sign` prints.
type CASignData struct {
	Serial        uint64    `json:"serial"`
	KeyID         string    `json:"key_id"`
	Principals    []string  `json:"principals"`
	ValidAfter    time.Time `json:"valid_after"`
	ValidBefore   time.Time `json:"valid_before"`
	PublicKey     string    `json:"public_key,omitempty"` // fingerprint of the certified key
	CA            string    `json:"ca,omitempty"`         // fingerprint of the CA key
	SourceAddress string    `json:"source_address,omitempty"`
}

// Person is what the auditor knows of someone independently of the log:
// the SSH keys they sign with and the groups they belong to.
type Person struct {
	Keys   []ssh.PublicKey
	Groups []string
}

// pending is what CheckGrants remembers of one request.
type pending struct {
	seq       uint64
	requester string
	grant     string
	publicKey ssh.PublicKey
	steps     []Step
	ttl       time.Duration // the shortest TTL granted so far
	hash      string        // StatementHash of the signed request
	approvers []string      // valid approvals, in order, each person once
	approved  time.Time     // time of the request, then of each approval
	deniedBy  string
	issued    uint64 // serial, once issued
	bad       uint64 // seq of the request entry when it failed its checks
	digest    string // the policy version that decided it; "" before versions were recorded
	// host, when not nil, is the Git host certificate the deciding
	// version's rule issues instead of the grant.
	host *hostIssue
	// groups of each approver, as the people known at their approval have
	// them; groupsUnknown when some approver is known to none of them.
	groups        map[string][]string
	groupsUnknown bool
}

type checker struct {
	opts     CheckOptions
	scan     *scanner // the log being read, for the hashes of its lines
	sum      CheckSummary
	requests map[string]*pending
	mem      memory            // what is forgotten when, and the serials issued (check_memory.go)
	tokens   map[string]string // workload token ID -> the request it got
	versions map[string]*PolicyVersion
	current  string // the policy version in force, as far as the log says
}

func newChecker(opts CheckOptions) *checker {
	c := &checker{
		opts:     opts,
		requests: make(map[string]*pending),
		tokens:   make(map[string]string),
		versions: make(map[string]*PolicyVersion),
	}
	for i := range opts.Policies {
		c.versions[opts.Policies[i].Digest] = &opts.Policies[i]
	}
	if c.opts.Backdate <= 0 {
		c.opts.Backdate = ca.DefaultBackdate
	}
	c.sum.PeopleChecked = opts.People != nil
	return c
}

// entry checks one entry and returns its failure, if any. What the entry
// records is remembered even when it fails, so that one bad entry is
// reported once, where it is, and not again at every entry that refers to
// it.
func (c *checker) entry(e *Entry) *failure {
	if err := c.check(e); err != nil {
		return errFailure(err)
	}
	return nil
}

func (c *checker) check(e *Entry) error {
	c.advance(e.Time)
	switch e.Kind {
	case KindRequest:
		c.sum.Requests++
		return c.request(e)
	case KindApprove, KindDeny:
		if e.Kind == KindApprove {
			c.sum.Approvals++
		} else {
			c.sum.Denials++
		}
		return c.decision(e)
	case KindIssue:
		c.sum.Issued++
		return c.issue(e)
	case KindCheckpoint:
		return c.checkpoint(e)
	case KindPolicyReload:
		return c.policyReload(e)
	case KindRestore:
		return c.restore(e)
	case KindExpire, KindCancel, KindRevoke, KindRelease, KindOffboard:
		// A request that ends without a certificate is done.
		var d EndData
		if decodeData(e, &d) == nil {
			if p, ok := c.requests[d.ID]; ok && p.issued == 0 {
				c.done(d.ID, e.Time)
			}
		}
		return nil
	case KindPruned:
		return checkPruned(e)
	case KindCASign:
		c.sum.BreakGlass++
		var d CASignData
		if err := decodeData(e, &d); err != nil {
			return err
		}
		return c.claimSerial(d.Serial, e.Seq)
	}
	return nil
}

func decodeData(e *Entry, v any) error {
	if err := json.Unmarshal(e.Data, v); err != nil {
		return fail(ErrRecord, "data of %s entry: %v", e.Kind, err)
	}
	return nil
}

func (c *checker) request(e *Entry) error {
	var d RequestData
	if err := decodeData(e, &d); err != nil {
		return err
	}
	if d.ID == "" {
		return fail(ErrRecord, "request without an ID")
	}
	if _, dup := c.requests[d.ID]; dup {
		return fail(ErrRecord, "request %s recorded twice", d.ID)
	}
	if err := c.tooOld(d.ID); err != nil {
		return err
	}
	p := &pending{
		seq:       e.Seq,
		requester: d.Requester,
		grant:     d.Grant,
		steps:     d.Steps,
		hash:      StatementHash([]byte(d.Statement)),
		approved:  e.Time,
		groups:    make(map[string][]string),
	}
	c.requests[d.ID] = p
	unknown := c.requestPolicy(&d, p)
	if err := c.checkRequest(&d, p); err != nil {
		p.bad = e.Seq
		return err
	}
	if err := c.checkPolicy(&d, p); err != nil {
		return err
	}
	return unknown
}

// checkRequest checks a request entry's data, and fills in p what it
// parses.
func (c *checker) checkRequest(d *RequestData, p *pending) error {
	if d.Workload != nil {
		return c.checkWorkloadRequest(d, p)
	}
	var st RequestStatement
	if err := json.Unmarshal([]byte(d.Statement), &st); err != nil {
		return fail(ErrStatementMismatch, "request %s: statement is not a request statement: %v", d.ID, err)
	}
	if err := c.verifySigner(d.Requester, NamespaceRequest, d.Statement, d.Signature, c.viewFor(p, false)); err != nil {
		return fail(err, "request %s by %s", d.ID, d.Requester)
	}
	pub, ttl, err := checkRequestRecord(d, &st)
	if err != nil {
		return err
	}
	p.publicKey, p.ttl = pub, ttl
	return nil
}

func (c *checker) decision(e *Entry) error {
	var d DecisionData
	if err := decodeData(e, &d); err != nil {
		return err
	}
	p, ok := c.requests[d.ID]
	if !ok {
		return fail(ErrRecord, "%s of request %s, which is not on the record before it", e.Kind, d.ID)
	}
	var st DecisionStatement
	if err := json.Unmarshal([]byte(d.Statement), &st); err != nil {
		return fail(ErrStatementMismatch, "%s of %s: statement is not a decision statement: %v", e.Kind, d.ID, err)
	}
	namespace := NamespaceApprove
	if e.Kind == KindDeny {
		namespace = NamespaceDeny
	}
	v := c.viewFor(p, true)
	if err := c.verifySigner(d.By, namespace, d.Statement, d.Signature, v); err != nil {
		return fail(err, "%s of %s by %s", e.Kind, d.ID, d.By)
	}
	ttl, err := checkDecisionRecord(e.Kind, &d, &st)
	if err != nil {
		return err
	}
	if st.RequestSHA256 != p.hash {
		return fail(ErrStatementMismatch, "%s of %s by %s signs request hash %.16s…, not the hash of the request at seq %d", e.Kind, d.ID, d.By, st.RequestSHA256, p.seq)
	}
	if e.Kind == KindDeny {
		if p.deniedBy == "" {
			p.deniedBy = d.By
			c.done(d.ID, e.Time)
		}
		return nil
	}
	if d.By == p.requester {
		return fail(ErrSelfApproval, "%s approved their own request %s", d.By, d.ID)
	}
	if ttl > 0 {
		p.ttl = min(p.ttl, ttl)
	}
	if !slices.Contains(p.approvers, d.By) {
		p.approvers = append(p.approvers, d.By)
		if person, ok := v.lookup(d.By); ok {
			p.groups[d.By] = person.Groups
		} else {
			p.groupsUnknown = true
		}
	}
	p.approved = e.Time
	return nil
}

func (c *checker) issue(e *Entry) error {
	var d IssueData
	if err := decodeData(e, &d); err != nil {
		return err
	}
	err := c.checkIssue(e, &d)
	// The certificate left the daemon whatever is wrong with it: its serial
	// is taken, and its request issued.
	if serr := c.claimSerial(d.Serial, e.Seq); err == nil {
		err = serr
	}
	if p, ok := c.requests[d.ID]; ok && p.issued == 0 {
		p.issued = d.Serial
		c.done(d.ID, e.Time)
	}
	return err
}

func (c *checker) checkIssue(e *Entry, d *IssueData) error {
	p, ok := c.requests[d.ID]
	switch {
	case !ok:
		return fail(ErrUnapprovedIssue, "serial %d issued for request %q, which is not on the record before it", d.Serial, d.ID)
	case p.deniedBy != "":
		return fail(ErrUnapprovedIssue, "serial %d issued for request %s, which %s denied", d.Serial, d.ID, p.deniedBy)
	case p.issued != 0:
		return fail(ErrUnapprovedIssue, "serial %d issued for request %s, which already had serial %d", d.Serial, d.ID, p.issued)
	case p.bad != 0:
		return fail(ErrUnapprovedIssue, "serial %d issued for request %s, whose request entry (seq %d) fails its checks", d.Serial, d.ID, p.bad)
	case d.Requester != p.requester:
		return fail(ErrUnapprovedIssue, "serial %d issued to %s, but request %s is %s's", d.Serial, d.Requester, d.ID, p.requester)
	}
	for _, a := range d.Approvers {
		if a == p.requester {
			return fail(ErrSelfApproval, "serial %d lists the requester %s among its approvers", d.Serial, a)
		}
		if !slices.Contains(p.approvers, a) {
			return fail(ErrUnapprovedIssue, "serial %d lists %s as approver of %s, but no valid approval by %s is recorded before it", d.Serial, a, d.ID, a)
		}
	}
	if err := c.stepsMet(p); err != nil {
		return fail(ErrUnapprovedIssue, "serial %d for request %s: %v", d.Serial, d.ID, err)
	}
	switch {
	case p.host != nil && p.host.noAccount:
		return fail(ErrScope, "serial %d for request %s is a Git host certificate, but the policy version that decided it lists no account there for %s", d.Serial, d.ID, p.requester)
	case p.host != nil:
		if !slices.Equal(d.Principals, p.host.shape.Principals) {
			return fail(ErrScope, "serial %d has principals %q, but request %s was issued for the Git host account %q", d.Serial, d.Principals, d.ID, p.host.shape.Principals)
		}
	case len(d.Principals) != 1 || d.Principals[0] != p.grant:
		return fail(ErrScope, "serial %d has principals %q, but request %s granted only %q", d.Serial, d.Principals, d.ID, p.grant)
	}
	if err := c.validity(p.approved, e.Time, d.ValidAfter, d.ValidBefore, p.ttl); err != nil {
		return fail(ErrValidity, "serial %d for request %s: %v", d.Serial, d.ID, err)
	}
	return c.certificate(d, p)
}

// validity checks a certificate window against the granted ttl counted
// from the issue entry's time t, and against the time the request was
// last approved: the CA backdates a certificate by its skew, but never to
// before the grant existed. (Counting from the approval rather than the
// issue entry keeps a slow write of the entry from looking like a
// backdated certificate; validity in the past grants nothing.)
func (c *checker) validity(approved, t, after, before time.Time, ttl time.Duration) error {
	switch {
	case !before.After(after):
		return fmt.Errorf("valid before %s is not after valid after %s", before.Format(time.RFC3339), after.Format(time.RFC3339))
	case after.Before(approved.Add(-c.opts.Backdate - clockSlack)):
		return fmt.Errorf("valid from %s, more than %v before it was approved at %s", after.Format(time.RFC3339), c.opts.Backdate, approved.Format(time.RFC3339))
	case before.Sub(t) > ttl+clockSlack:
		return fmt.Errorf("valid until %s, %v after it was issued, but the grant is %v", before.Format(time.RFC3339), before.Sub(t).Round(time.Second), ttl)
	}
	return nil
}

// certificate checks the certificate an issue entry carries against the
// CA keys, the entry and the request.
func (c *checker) certificate(d *IssueData, p *pending) error {
	pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(d.Certificate))
	if err != nil {
		return fail(ErrCA, "serial %d: certificate does not parse: %v", d.Serial, err)
	}
	cert, ok := pub.(*ssh.Certificate)
	if !ok || cert.CertType != ssh.UserCert {
		return fail(ErrCA, "serial %d: not a user certificate", d.Serial)
	}
	if !c.trustedCA(cert.SignatureKey) {
		return fail(ErrCA, "serial %d: signed by %s, which is not a trusted CA key", d.Serial, ssh.FingerprintSHA256(cert.SignatureKey))
	}
	// CheckCert verifies the CA's signature; its clock is set inside the
	// window so that it judges the signature, not today's date.
	checker := ssh.CertChecker{
		SupportedCriticalOptions: []string{"source-address"},
		Clock:                    func() time.Time { return time.Unix(int64(cert.ValidAfter), 0) },
	}
	if len(cert.ValidPrincipals) == 0 {
		return fail(ErrScope, "serial %d: certificate has no principals", d.Serial)
	}
	if err := checker.CheckCert(cert.ValidPrincipals[0], cert); err != nil {
		return fail(ErrCA, "serial %d: %v", d.Serial, err)
	}
	switch {
	case cert.Serial != d.Serial:
		return fail(ErrCA, "entry records serial %d, but the certificate has serial %d", d.Serial, cert.Serial)
	case cert.KeyId != d.KeyID:
		return fail(ErrCA, "serial %d: entry records key ID %q, but the certificate has %q", d.Serial, d.KeyID, cert.KeyId)
	case !slices.Equal(cert.ValidPrincipals, d.Principals):
		return fail(ErrScope, "serial %d: certificate principals %q are not the recorded %q", d.Serial, cert.ValidPrincipals, d.Principals)
	case int64(cert.ValidAfter) != d.ValidAfter.Unix() || int64(cert.ValidBefore) != d.ValidBefore.Unix():
		return fail(ErrValidity, "serial %d: certificate is valid %s to %s, not the recorded %s to %s", d.Serial,
			time.Unix(int64(cert.ValidAfter), 0).UTC().Format(time.RFC3339), time.Unix(int64(cert.ValidBefore), 0).UTC().Format(time.RFC3339),
			d.ValidAfter.UTC().Format(time.RFC3339), d.ValidBefore.UTC().Format(time.RFC3339))
	case !bytes.Equal(cert.Key.Marshal(), p.publicKey.Marshal()):
		return fail(ErrScope, "serial %d certifies %s, not the key %s requested", d.Serial, ssh.FingerprintSHA256(cert.Key), ssh.FingerprintSHA256(p.publicKey))
	}
	return hostFields(cert, p)
}

// hostIssue is the Git host certificate a request's rule issues.
type hostIssue struct {
	shape     HostCert
	noAccount bool // the deciding version lists no account for the requester
}

// hostFields checks the parts of a certificate a Git host reads besides
// its principals: its extensions (none on a grant certificate; GitHub's
// login extension, naming the account, on a github one) and, where the host
// reads it as the account, its key ID.
func hostFields(cert *ssh.Certificate, p *pending) error {
	want := map[string]string{}
	if p.host != nil {
		want = p.host.shape.Extensions
	}
	if !maps.Equal(cert.Extensions, want) {
		return fail(ErrScope, "serial %d has extensions %s, not %s", cert.Serial, extensionList(cert.Extensions), extensionList(want))
	}
	if p.host != nil && p.host.shape.KeyID != "" && cert.KeyId != p.host.shape.KeyID {
		return fail(ErrScope, "serial %d has key ID %q, but the Git host reads the key ID as the account, %q", cert.Serial, cert.KeyId, p.host.shape.KeyID)
	}
	return nil
}

// extensionList names extensions for a message: "(none)", or
// name=value, in name order.
func extensionList(ext map[string]string) string {
	if len(ext) == 0 {
		return "(none)"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(ext)) {
		parts = append(parts, k+"="+ext[k])
	}
	return strings.Join(parts, ", ")
}

func (c *checker) trustedCA(k ssh.PublicKey) bool {
	for _, t := range c.opts.CAKeys {
		if bytes.Equal(t.Marshal(), k.Marshal()) {
			return true
		}
	}
	return false
}

// verifySigner checks a statement's signature with the keys the view
// knows for the person named, when people are known at all.
func (c *checker) verifySigner(name, namespace, statement, signature string, v view) error {
	if c.opts.People == nil {
		return nil
	}
	person, ok := v.lookup(name)
	if !ok {
		if v.lenient {
			c.sum.NotChecked++
			return nil
		}
		return fmt.Errorf("%w %q", ErrUnknownPerson, name)
	}
	var last error = fmt.Errorf("%w: %s has no keys", ErrStatementSignature, name)
	for _, k := range person.Keys {
		if last = VerifyStatement(k, namespace, []byte(statement), signature); last == nil {
			return nil
		}
	}
	return fmt.Errorf("not signed by any key of %s: %w", name, last)
}

// stepsMet reports whether the request's approvals meet its steps, each
// approver filling at most one place in one step.
func (c *checker) stepsMet(p *pending) error {
	need := sumSteps(p.steps)
	if need < 0 || need > len(p.approvers) {
		total := strconv.Itoa(need)
		if need < 0 {
			total = "countless" // forged counts whose sum overflows
		}
		return fmt.Errorf("%s approvals required (%s), %d recorded", total, stepsString(p.steps), len(p.approvers))
	}
	if c.opts.People == nil || p.groupsUnknown {
		return nil // groups unknown: the count is all that can be checked
	}
	// Places to fill, one per required approval, matched to approvers
	// (bipartite matching by augmenting paths; both sides are tiny).
	var places []string
	for _, s := range p.steps {
		for range s.Count {
			places = append(places, s.Group)
		}
	}
	holder := make([]int, len(places)) // place -> approver index + 1
	var try func(a int, seen []bool) bool
	try = func(a int, seen []bool) bool {
		groups := p.groups[p.approvers[a]]
		for i, g := range places {
			if seen[i] || !slices.Contains(groups, g) {
				continue
			}
			seen[i] = true
			if holder[i] == 0 || try(holder[i]-1, seen) {
				holder[i] = a + 1
				return true
			}
		}
		return false
	}
	for a := range p.approvers {
		try(a, make([]bool, len(places)))
	}
	for _, h := range holder {
		if h == 0 {
			return fmt.Errorf("approvals by %s do not meet %s", strings.Join(p.approvers, ", "), stepsString(p.steps))
		}
	}
	return nil
}

// sameTTL reports whether two TTLs are both absent or the same duration,
// however spelled ("30m", "30m0s").
func sameTTL(a, b string) bool {
	if a == "" || b == "" {
		return a == b
	}
	da, err1 := time.ParseDuration(a)
	db, err2 := time.ParseDuration(b)
	return err1 == nil && err2 == nil && da == db
}

// parseTTL reads a TTL as the daemon records it: a positive Go duration.
func parseTTL(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, err
	}
	if d <= 0 {
		return 0, errors.New("not positive")
	}
	return d, nil
}

// sumSteps adds the counts of steps, which come from the log, or returns
// -1 when the sum would overflow.
func sumSteps(steps []Step) int {
	n := 0
	for _, s := range steps {
		if s.Count > math.MaxInt-n {
			return -1
		}
		n += s.Count
	}
	return n
}
