package audit

import (
	"cmp"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/jitssh/jitssh/principals"
)

// The compliance report and the certificate records behind `jitssh audit
// certs` and `show` are read from entries already verified (BuildIndex or
// Verify); nothing here judges them. Everything derived from a log depends
// on the log alone, never on the clock, so the same log always gives the
// same report.

// Certificate states.
const (
	StateActive   = "active"
	StateExpired  = "expired"
	StateRevoked  = "revoked"
	StateReleased = "released"
)

// CertRecord is what the log says about one certificate: who asked, who
// approved, when it was issued and ended, and what it was used for.
type CertRecord struct {
	Serial      uint64    `json:"serial"`
	KeyID       string    `json:"key_id"`
	Principals  []string  `json:"principals"`
	ValidAfter  time.Time `json:"valid_after"`
	ValidBefore time.Time `json:"valid_before"`
	Issued      time.Time `json:"issued"` // time of the issue or ca.sign entry
	IssueSeq    uint64    `json:"issue_seq"`
	BreakGlass  bool      `json:"break_glass,omitempty"`

	// From the request, for certificates the daemon issued.
	RequestID    string        `json:"request_id,omitempty"`
	Requester    string        `json:"requester"` // for break-glass, the user part of the key ID
	Approvers    []string      `json:"approvers,omitempty"`
	Rule         string        `json:"rule,omitempty"`
	Reason       string        `json:"reason,omitempty"`
	Requested    time.Time     `json:"requested,omitzero"` // zero when the request is not on the record
	AutoApproved bool          `json:"auto_approved,omitempty"`
	Asked        time.Duration `json:"asked_ns"` // TTL asked for; the policy's when left to it; the lifetime for break-glass
	SignedBy     string        `json:"signed_by,omitempty"`

	// How it ended early, if it did: a revoke, release or offboard entry.
	Ended     time.Time `json:"ended,omitzero"`
	EndSeq    uint64    `json:"end_seq,omitempty"`
	EndKind   string    `json:"end_kind,omitempty"`
	EndBy     string    `json:"end_by,omitempty"`
	EndReason string    `json:"end_reason,omitempty"`

	// Git operations under this certificate.
	Fetches    int   `json:"fetches"`
	Pushes     int   `json:"pushes"`
	Refused    int   `json:"refused"`
	RefUpdates int   `json:"ref_updates"`
	RefsDenied int   `json:"refs_refused"` // ref updates refused within allowed pushes
	BytesIn    int64 `json:"bytes_in"`
	BytesOut   int64 `json:"bytes_out"`
}

// GitOps is the number of Git operations recorded under the certificate.
func (c *CertRecord) GitOps() int { return c.Fetches + c.Pushes + c.Refused }

// End is when access ended or ends: an early end, else expiry.
func (c *CertRecord) End() time.Time {
	if !c.Ended.IsZero() && c.Ended.Before(c.ValidBefore) {
		return c.Ended
	}
	return c.ValidBefore
}

// State is the certificate's state at now.
func (c *CertRecord) State(now time.Time) string {
	if !c.Ended.IsZero() && c.Ended.Before(c.ValidBefore) && !now.Before(c.Ended) {
		if c.EndKind == KindRelease {
			return StateReleased
		}
		return StateRevoked
	}
	if !now.Before(c.ValidBefore) {
		return StateExpired
	}
	return StateActive
}

// Held is how long access was held by now: from issue to its end, or to
// now while it lasts.
func (c *CertRecord) Held(now time.Time) time.Duration {
	end := c.End()
	if now.Before(end) {
		end = now
	}
	return max(end.Sub(c.Issued), 0)
}

// Wait is the time from request to issue; zero when the request is not on
// the record.
func (c *CertRecord) Wait() time.Duration {
	if c.Requested.IsZero() {
		return 0
	}
	return max(c.Issued.Sub(c.Requested), 0)
}

// FormatSerial writes a serial the way people read it: decimal for the
// daemon's, hex for break-glass serials, whose top bit is set.
func FormatSerial(s uint64) string {
	if s&(1<<63) != 0 {
		return "0x" + strconv.FormatUint(s, 16)
	}
	return strconv.FormatUint(s, 10)
}

// gitData is what the report reads of a KindGit entry (the JSON of an
// sshd.Event).
type gitData struct {
	Serial   uint64 `json:"serial"`
	KeyID    string `json:"key_id"`
	Decision string `json:"decision"`
	Reason   string `json:"reason"`
	Service  string `json:"service"`
	Repo     string `json:"repo"`
	Updates  []struct {
		Ref    string `json:"ref"`
		Old    string `json:"old"`
		New    string `json:"new"`
		Result string `json:"result"`
		Reason string `json:"reason"`
	} `json:"updates"`
	BytesIn  int64  `json:"bytes_in"`
	BytesOut int64  `json:"bytes_out"`
	Error    string `json:"error"`
}

// requestInfo is what collecting remembers of a request.
type requestInfo struct {
	data  RequestData
	time  time.Time
	asked time.Duration
	ttl   time.Duration
}

// collector reads entries in seq order into certificate records.
type collector struct {
	requests map[string]*requestInfo
	byID     map[string]*CertRecord
	bySerial map[uint64]*CertRecord
	certs    []*CertRecord
	unknown  map[uint64]*CertRecord // Git use of serials not on the record
	onGit    func(e *Entry, d *gitData, c *CertRecord)
	onEntry  func(e *Entry)
}

func newCollector() *collector {
	return &collector{
		requests: make(map[string]*requestInfo),
		byID:     make(map[string]*CertRecord),
		bySerial: make(map[uint64]*CertRecord),
		unknown:  make(map[uint64]*CertRecord),
	}
}

// add reads one entry. Data that does not decode is skipped: this is a
// view of a verified log, and CheckGrants is where records are judged.
func (col *collector) add(e *Entry) {
	if col.onEntry != nil {
		col.onEntry(e)
	}
	switch e.Kind {
	case KindRequest:
		var d RequestData
		if json.Unmarshal(e.Data, &d) != nil || d.ID == "" {
			return
		}
		info := &requestInfo{data: d, time: e.Time}
		info.ttl, _ = time.ParseDuration(d.TTL)
		info.asked = info.ttl
		var st RequestStatement
		if json.Unmarshal([]byte(d.Statement), &st) == nil && st.TTL != "" {
			if asked, err := time.ParseDuration(st.TTL); err == nil {
				info.asked = asked
			}
		}
		col.requests[d.ID] = info
	case KindIssue:
		var d IssueData
		if json.Unmarshal(e.Data, &d) != nil {
			return
		}
		c := &CertRecord{
			Serial: d.Serial, KeyID: d.KeyID, Principals: d.Principals,
			ValidAfter: d.ValidAfter.UTC(), ValidBefore: d.ValidBefore.UTC(),
			Issued: e.Time, IssueSeq: e.Seq,
			RequestID: d.ID, Requester: d.Requester, Approvers: d.Approvers, Rule: d.Rule,
			Asked: d.ValidBefore.Sub(e.Time).Round(time.Second),
		}
		if info, ok := col.requests[d.ID]; ok {
			c.Requested, c.Reason, c.AutoApproved = info.time, info.data.Reason, len(info.data.Steps) == 0
			if info.asked > 0 {
				c.Asked = info.asked
			}
		}
		col.addCert(c)
		col.byID[d.ID] = c
	case KindCASign:
		var d CASignData
		if json.Unmarshal(e.Data, &d) != nil {
			return
		}
		user, _, _ := strings.Cut(d.KeyID, "/")
		col.addCert(&CertRecord{
			Serial: d.Serial, KeyID: d.KeyID, Principals: d.Principals,
			ValidAfter: d.ValidAfter.UTC(), ValidBefore: d.ValidBefore.UTC(),
			Issued: e.Time, IssueSeq: e.Seq, BreakGlass: true,
			Requester: user, SignedBy: e.Actor,
			Asked: d.ValidBefore.Sub(e.Time).Round(time.Second),
		})
	case KindRevoke, KindRelease, KindOffboard:
		var d EndData // RevokeData has the same fields
		if json.Unmarshal(e.Data, &d) != nil {
			return
		}
		c := col.bySerial[d.Serial]
		if c == nil || d.Serial == 0 {
			c = col.byID[d.ID]
		}
		if c == nil || !c.Ended.IsZero() {
			return
		}
		c.Ended, c.EndSeq, c.EndKind, c.EndBy, c.EndReason = e.Time, e.Seq, e.Kind, cmp.Or(d.By, e.Actor), d.Reason
	case KindGit:
		var d gitData
		if json.Unmarshal(e.Data, &d) != nil {
			return
		}
		c := col.bySerial[d.Serial]
		if c == nil {
			if c = col.unknown[d.Serial]; c == nil {
				c = &CertRecord{Serial: d.Serial, KeyID: d.KeyID}
				col.unknown[d.Serial] = c
			}
		}
		switch {
		case d.Decision != "allow":
			c.Refused++
		case d.Service == "git-receive-pack":
			c.Pushes++
		default:
			c.Fetches++
		}
		for _, u := range d.Updates {
			switch u.Result {
			case "updated":
				c.RefUpdates++
			case "refused":
				c.RefsDenied++
			}
		}
		c.BytesIn += d.BytesIn
		c.BytesOut += d.BytesOut
		if col.onGit != nil {
			col.onGit(e, &d, c)
		}
	}
}

func (col *collector) addCert(c *CertRecord) {
	if c.Serial != 0 {
		if prev, ok := col.unknown[c.Serial]; ok {
			// Git use logged before the issue entry (another log merged
			// in, or clocks apart): count it here.
			c.Fetches, c.Pushes, c.Refused, c.RefUpdates, c.RefsDenied = prev.Fetches, prev.Pushes, prev.Refused, prev.RefUpdates, prev.RefsDenied
			c.BytesIn, c.BytesOut = prev.BytesIn, prev.BytesOut
			delete(col.unknown, c.Serial)
		}
		col.bySerial[c.Serial] = c
	}
	col.certs = append(col.certs, c)
}

// CollectCerts returns the records of the certificates issued or
// break-glass signed in entries, which must be in seq order, in issue
// order. Entries of the certificates' requests, ends and Git operations
// fill in the rest; without them those fields stay empty.
func CollectCerts(entries []Entry) []CertRecord {
	col := newCollector()
	for i := range entries {
		col.add(&entries[i])
	}
	out := make([]CertRecord, len(col.certs))
	for i, c := range col.certs {
		out[i] = *c
	}
	return out
}

// Report is the compliance review of a log from Since on.
type Report struct {
	Since time.Time // zero: from the first entry
	Until time.Time // time of the last entry given; "now" for the report

	// Set by the caller when it knows them: the whole log's size and head.
	LogEntries uint64
	Head       string

	Certs        []CertRecord // issued from Since on, in issue order
	Requests     int          // requests from Since on
	AutoApproved int          // of Certs, issued without approvals
	Wait         Stats        // request to issue, certificates that needed approval
	ByRepo       []Tally
	ByPerson     []Tally
	Denials      []Denial
	Revocations  []Revocation
	GitRefused   []GitRefusal // refused Git operations and ref updates, at most maxListed
	GitRefusedN  int          // all refused Git operations
	RefsRefusedN int          // all refused ref updates in allowed pushes
	GitUnknown   []CertRecord // Git use of serials not issued on this record
	GitOps       int          // Git operations from Since on

	marks map[uint64][]gitMark // Git operations by serial, for the timeline
}

// gitMark is one Git operation on the timeline.
type gitMark struct {
	t       time.Time
	refused bool
}

// Stats summarises durations.
type Stats struct {
	N                int
	Median, P90, Max time.Duration
}

// Tally counts certificates by repository or by person.
type Tally struct {
	Name       string
	Certs      int
	BreakGlass int
	Read       int      // certificates whose grants here include read only,
	Write      int      // ... at most write,
	Force      int      // ... force
	Others     []string // people for a repository, repositories for a person
	Asked      time.Duration
	Held       time.Duration
	GitOps     int
}

// Denial is a denied request.
type Denial struct {
	Seq       uint64
	Time      time.Time
	RequestID string
	Requester string
	Grant     string
	By        string
	Reason    string
}

// Revocation is a certificate ended before expiry by someone other than its
// holder: a revoke or offboard entry.
type Revocation struct {
	Seq    uint64
	Time   time.Time
	Serial uint64
	KeyID  string
	By     string
	Reason string
	Held   time.Duration
	Asked  time.Duration
}

// GitRefusal is one refused Git operation, or one refused ref update of a
// push that went ahead otherwise (Ref set).
type GitRefusal struct {
	Seq     uint64
	Time    time.Time
	Serial  uint64
	KeyID   string
	Repo    string
	Service string
	Ref     string
	Reason  string
}

// maxListed bounds the refused Git operations a report lists one by one.
const maxListed = 100

// BuildReport reviews entries (in seq order) from since on. Entries before
// since still link what happens after it to its request. The report's
// clock is the time of the last entry, so certificates valid beyond it
// count as active and held until then.
func BuildReport(entries []Entry, since time.Time) *Report {
	r := &Report{Since: since, marks: make(map[uint64][]gitMark)}
	if n := len(entries); n > 0 {
		r.Until = entries[n-1].Time
	}
	in := func(t time.Time) bool { return !t.Before(since) }
	col := newCollector()
	col.onEntry = func(e *Entry) {
		if !in(e.Time) {
			return
		}
		switch e.Kind {
		case KindRequest:
			r.Requests++
		case KindDeny:
			var d DecisionData
			if json.Unmarshal(e.Data, &d) != nil {
				return
			}
			den := Denial{Seq: e.Seq, Time: e.Time, RequestID: d.ID, By: d.By, Reason: d.Reason}
			if info := col.requests[d.ID]; info != nil {
				den.Requester, den.Grant = info.data.Requester, info.data.Grant
			}
			r.Denials = append(r.Denials, den)
		}
	}
	col.onGit = func(e *Entry, d *gitData, _ *CertRecord) {
		if !in(e.Time) {
			return
		}
		r.GitOps++
		r.marks[d.Serial] = append(r.marks[d.Serial], gitMark{t: e.Time, refused: d.Decision != "allow"})
		refusal := GitRefusal{Seq: e.Seq, Time: e.Time, Serial: d.Serial, KeyID: d.KeyID, Repo: d.Repo, Service: d.Service, Reason: d.Reason}
		if d.Decision != "allow" {
			r.GitRefusedN++
			if len(r.GitRefused) < maxListed {
				r.GitRefused = append(r.GitRefused, refusal)
			}
			return
		}
		for _, u := range d.Updates {
			if u.Result != "refused" {
				continue
			}
			r.RefsRefusedN++
			if len(r.GitRefused) < maxListed {
				refusal.Ref, refusal.Reason = u.Ref, u.Reason
				r.GitRefused = append(r.GitRefused, refusal)
			}
		}
	}
	for i := range entries {
		col.add(&entries[i])
	}

	repos, people := make(map[string]*Tally), make(map[string]*Tally)
	var waits []time.Duration
	for _, c := range col.certs {
		if !in(c.Issued) {
			continue
		}
		r.Certs = append(r.Certs, *c)
		if !c.BreakGlass {
			if c.AutoApproved {
				r.AutoApproved++
			} else if !c.Requested.IsZero() {
				waits = append(waits, c.Wait())
			}
		}
		if !c.Ended.IsZero() && c.EndKind != KindRelease && c.Ended.Before(c.ValidBefore) {
			r.Revocations = append(r.Revocations, Revocation{Seq: c.EndSeq, Time: c.Ended, Serial: c.Serial, KeyID: c.KeyID,
				By: c.EndBy, Reason: c.EndReason, Held: c.Held(r.Until), Asked: c.Asked})
		}
		access := make(map[string]principals.Access)
		for _, p := range c.Principals {
			if g, err := principals.Parse(p); err == nil {
				access[g.Repo] = max(access[g.Repo], g.Access)
			}
		}
		person := cmp.Or(c.Requester, "(unknown)")
		for repo, a := range access {
			tallyCert(tally(repos, repo), c, a, person, r.Until)
			tallyCert(tally(people, person), c, a, repo, r.Until)
		}
		if len(access) == 0 {
			tallyCert(tally(people, person), c, 0, "(no grant)", r.Until)
		}
	}
	r.Wait = statsOf(waits)
	r.ByRepo, r.ByPerson = sortedTallies(repos), sortedTallies(people)
	for _, c := range col.unknown {
		r.GitUnknown = append(r.GitUnknown, *c)
	}
	slices.SortFunc(r.GitUnknown, func(a, b CertRecord) int { return cmp.Compare(a.Serial, b.Serial) })
	return r
}

func tally(m map[string]*Tally, name string) *Tally {
	t := m[name]
	if t == nil {
		t = &Tally{Name: name}
		m[name] = t
	}
	return t
}

func tallyCert(t *Tally, c *CertRecord, a principals.Access, other string, now time.Time) {
	t.Certs++
	if c.BreakGlass {
		t.BreakGlass++
	}
	switch a {
	case principals.Read:
		t.Read++
	case principals.Write:
		t.Write++
	case principals.Force:
		t.Force++
	}
	if !slices.Contains(t.Others, other) {
		t.Others = append(t.Others, other)
		slices.Sort(t.Others)
	}
	t.Asked += c.Asked
	t.Held += c.Held(now)
	t.GitOps += c.GitOps()
}

func sortedTallies(m map[string]*Tally) []Tally {
	out := make([]Tally, 0, len(m))
	for _, t := range m {
		out = append(out, *t)
	}
	slices.SortFunc(out, func(a, b Tally) int {
		return cmp.Or(cmp.Compare(b.Certs, a.Certs), cmp.Compare(a.Name, b.Name))
	})
	return out
}

// statsOf returns the median and 90th percentile by nearest rank.
func statsOf(ds []time.Duration) Stats {
	if len(ds) == 0 {
		return Stats{}
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	rank := func(p float64) time.Duration {
		i := int(math.Ceil(p*float64(len(s)))) - 1
		return s[max(i, 0)]
	}
	return Stats{N: len(s), Median: rank(0.5), P90: rank(0.9), Max: s[len(s)-1]}
}

// Summarize describes an entry in one line of plain text for lists and
// exports. Free text from the record (reasons) is quoted, so it cannot
// break the line.
func Summarize(e Entry) string {
	switch e.Kind {
	case KindRequest:
		var d RequestData
		if json.Unmarshal(e.Data, &d) == nil {
			return fmt.Sprintf("%s asks %s on %s %s for %s (%s): %q", d.Requester, d.Access, d.Repo, d.Ref, d.TTL, d.ID, d.Reason)
		}
	case KindWorkloadRefused:
		var d WorkloadRefusedData
		if json.Unmarshal(e.Data, &d) == nil {
			run := cmp.Or(d.Workload.Claims["run_id"], d.Workload.Claims["pipeline_id"])
			return fmt.Sprintf("%s refused %s on %s %s (sub %q, run %s): %q", d.Requester, d.Access, d.Repo, d.Ref,
				d.Workload.Subject, cmp.Or(run, "-"), d.Reason)
		}
	case KindApprove, KindDeny:
		var d DecisionData
		if json.Unmarshal(e.Data, &d) == nil {
			verb := "approves"
			if e.Kind == KindDeny {
				verb = "denies"
			}
			s := fmt.Sprintf("%s %s %s", d.By, verb, d.ID)
			if d.TTL != "" {
				s += " for " + d.TTL
			}
			if d.Reason != "" {
				s += fmt.Sprintf(": %q", d.Reason)
			}
			return s
		}
	case KindIssue:
		var d IssueData
		if json.Unmarshal(e.Data, &d) == nil {
			return fmt.Sprintf("serial %s %s %s until %s (%s, approved by %s)", FormatSerial(d.Serial), d.KeyID,
				strings.Join(d.Principals, ","), d.ValidBefore.UTC().Format(time.RFC3339), d.ID, orNone(d.Approvers))
		}
	case KindCASign:
		var d CASignData
		if json.Unmarshal(e.Data, &d) == nil {
			return fmt.Sprintf("break-glass serial %s %s %s until %s", FormatSerial(d.Serial), d.KeyID,
				strings.Join(d.Principals, ","), d.ValidBefore.UTC().Format(time.RFC3339))
		}
	case KindRevoke, KindRelease, KindOffboard, KindExpire, KindCancel:
		var d EndData
		if json.Unmarshal(e.Data, &d) == nil {
			s := e.Kind
			if d.Serial != 0 {
				s += " serial " + FormatSerial(d.Serial)
			}
			if d.ID != "" {
				s += " " + d.ID
			}
			if by := cmp.Or(d.By, e.Actor); by != "" {
				s += " by " + by
			}
			if d.Reason != "" {
				s += fmt.Sprintf(": %q", d.Reason)
			}
			return s
		}
	case KindGit:
		var d gitData
		if json.Unmarshal(e.Data, &d) == nil {
			s := fmt.Sprintf("%s %s %s serial %s", d.Decision, d.Service, d.Repo, FormatSerial(d.Serial))
			for _, u := range d.Updates {
				s += fmt.Sprintf("; %s %s..%s %s", u.Ref, shortHash(u.Old), shortHash(u.New), u.Result)
			}
			if d.Reason != "" {
				s += fmt.Sprintf(": %q", d.Reason)
			}
			if d.Error != "" {
				s += fmt.Sprintf(" (error %q)", d.Error)
			}
			return s
		}
	case KindCheckpoint:
		var h Head
		if json.Unmarshal(e.Data, &h) == nil {
			return fmt.Sprintf("signed head at seq %d", h.Seq)
		}
	}
	if len(e.Data) == 0 {
		return ""
	}
	s := string(e.Data)
	if len(s) > 120 {
		s = s[:117] + "..."
	}
	return strconv.QuoteToGraphic(s)
}

func orNone(names []string) string {
	if len(names) == 0 {
		return "policy (automatic)"
	}
	return strings.Join(names, ", ")
}

// shortHash abbreviates a Git object name as git does; the all-zero name
// (no object) stays recognisable.
func shortHash(h string) string {
	if strings.Trim(h, "0") == "" && h != "" {
		return "0000000"
	}
	if len(h) > 7 {
		return h[:7]
	}
	return h
}

// FormatDuration writes a duration for people: "0s", "45s", "4m30s",
// "1h05m", "2d03h".
func FormatDuration(d time.Duration) string {
	d = d.Round(time.Second)
	if d < 0 {
		return "-" + FormatDuration(-d)
	}
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d/time.Second))
	case d < time.Hour:
		if s := d % time.Minute / time.Second; s != 0 {
			return fmt.Sprintf("%dm%02ds", int(d/time.Minute), int(s))
		}
		return fmt.Sprintf("%dm", int(d/time.Minute))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d/time.Hour), int(d%time.Hour/time.Minute))
	}
	return fmt.Sprintf("%dd%02dh", int(d/(24*time.Hour)), int(d%(24*time.Hour)/time.Hour))
}

// The report's two forms share their content: view turns the Report into
// titled tables of text, which Markdown writes as Markdown tables and HTML
// as HTML tables beside a timeline.

// timeLayout is how the report writes times; every time is UTC.
const timeLayout = "2006-01-02 15:04:05"

// maxCell bounds free text in a table cell, in runes.
const maxCell = 160

type reportView struct {
	Title    string
	Period   string
	LogLine  string
	Summary  [][2]string
	Tables   []viewTable
	Timeline *timeline
}

type viewTable struct {
	ID, Title, Note string
	Head            []string
	Rows            []viewRow
	Empty           string
}

type viewRow struct {
	Class string
	Cells []string
}

func (r *Report) view() *reportView {
	v := &reportView{Title: "jitssh access report"}
	from := "the first entry"
	if !r.Since.IsZero() {
		from = fmtTime(r.Since)
	}
	v.Period = fmt.Sprintf("From %s to %s (UTC). Certificates still valid at %s count as active.", from, fmtTime(r.Until), fmtTime(r.Until))
	if r.LogEntries > 0 {
		v.LogLine = fmt.Sprintf("Hash chain verified: %d entries, head %s.", r.LogEntries, r.Head)
	}

	var issued, breakGlass, held, asked = 0, 0, time.Duration(0), time.Duration(0)
	for i := range r.Certs {
		c := &r.Certs[i]
		if c.BreakGlass {
			breakGlass++
		} else {
			issued++
		}
		held += c.Held(r.Until)
		asked += c.Asked
	}
	wait := "none needed approval"
	if r.Wait.N > 0 {
		wait = fmt.Sprintf("median %s, 90th percentile %s, longest %s (%d %s)", FormatDuration(r.Wait.Median),
			FormatDuration(r.Wait.P90), FormatDuration(r.Wait.Max), r.Wait.N, plural(r.Wait.N, "certificate", "certificates"))
	}
	v.Summary = [][2]string{
		{"Certificates issued", fmt.Sprintf("%d, and %d break-glass", issued, breakGlass)},
		{"Requests", fmt.Sprintf("%d, of which %d denied", r.Requests, len(r.Denials))},
		{"Approved by policy without approvers", strconv.Itoa(r.AutoApproved)},
		{"Time to approval (request to issue)", wait},
		{"Access held against asked", fmt.Sprintf("%s of %s%s", FormatDuration(held), FormatDuration(asked), percent(held, asked))},
		{"Revoked before expiry", strconv.Itoa(len(r.Revocations))},
		{"Git operations", fmt.Sprintf("%d, of which %d refused; %d ref %s refused in pushes that went ahead",
			r.GitOps, r.GitRefusedN, r.RefsRefusedN, plural(r.RefsRefusedN, "update", "updates"))},
	}

	v.Tables = append(v.Tables, r.tallyTable("by-repo", "Grants by repository", "Repository", "People", r.ByRepo),
		r.tallyTable("by-person", "Grants by person", "Person", "Repositories", r.ByPerson))

	certs := viewTable{ID: "certificates", Title: "Certificates",
		Note:  "Asked is the TTL the requester signed for (the policy's when they left it out); held runs from issue to expiry, revocation or release.",
		Head:  []string{"Serial", "Key ID", "Grants", "Requester", "Approvers", "Requested", "Issued", "Wait", "Asked", "Held", "State", "Git ops"},
		Empty: "No certificates were issued."}
	for i := range r.Certs {
		c := &r.Certs[i]
		approvers := strings.Join(c.Approvers, ", ")
		switch {
		case c.BreakGlass:
			approvers = "break-glass"
		case c.AutoApproved:
			approvers = "policy (automatic)"
		}
		wait := ""
		if !c.BreakGlass && !c.Requested.IsZero() {
			wait = FormatDuration(c.Wait())
		}
		state := c.State(r.Until)
		certs.Rows = append(certs.Rows, viewRow{Class: rowClass(c, state), Cells: []string{
			FormatSerial(c.Serial), c.KeyID, strings.Join(c.Principals, " "), c.Requester, approvers,
			fmtOptTime(c.Requested), fmtTime(c.Issued), wait, FormatDuration(c.Asked), FormatDuration(c.Held(r.Until)),
			state, strconv.Itoa(c.GitOps())}})
	}
	v.Tables = append(v.Tables, certs)

	den := viewTable{ID: "denials", Title: "Denied requests", Head: []string{"Time", "Request", "Requester", "Grant", "Denied by", "Reason"},
		Empty: "No request was denied."}
	for _, d := range r.Denials {
		den.Rows = append(den.Rows, viewRow{Cells: []string{fmtTime(d.Time), d.RequestID, d.Requester, d.Grant, d.By, clip(d.Reason)}})
	}
	v.Tables = append(v.Tables, den)

	rev := viewTable{ID: "revocations", Title: "Revocations", Head: []string{"Time", "Serial", "Key ID", "Revoked by", "Reason", "Held", "Asked"},
		Empty: "No certificate was revoked before it expired."}
	for _, x := range r.Revocations {
		rev.Rows = append(rev.Rows, viewRow{Class: "revoked", Cells: []string{fmtTime(x.Time), FormatSerial(x.Serial), x.KeyID, x.By, clip(x.Reason),
			FormatDuration(x.Held), FormatDuration(x.Asked)}})
	}
	v.Tables = append(v.Tables, rev)

	bg := viewTable{ID: "break-glass", Title: "Break-glass signings", Note: "Certificates signed with jitssh ca sign, outside the approval flow.",
		Head: []string{"Time", "Serial", "Key ID", "Principals", "Valid until", "Signed by", "Held", "Git ops"}, Empty: "No break-glass certificate was signed."}
	for i := range r.Certs {
		if c := &r.Certs[i]; c.BreakGlass {
			bg.Rows = append(bg.Rows, viewRow{Class: "break-glass", Cells: []string{fmtTime(c.Issued), FormatSerial(c.Serial), c.KeyID,
				strings.Join(c.Principals, " "), fmtTime(c.ValidBefore), c.SignedBy, FormatDuration(c.Held(r.Until)), strconv.Itoa(c.GitOps())}})
		}
	}
	v.Tables = append(v.Tables, bg)

	git := viewTable{ID: "git", Title: "Git operations by certificate",
		Head:  []string{"Serial", "Key ID", "Fetches", "Pushes", "Refs updated", "Refs refused", "Refused", "Bytes in", "Bytes out"},
		Empty: "No Git operation was recorded."}
	gitRow := func(c *CertRecord, class, note string) {
		git.Rows = append(git.Rows, viewRow{Class: class, Cells: []string{FormatSerial(c.Serial), c.KeyID + note, strconv.Itoa(c.Fetches),
			strconv.Itoa(c.Pushes), strconv.Itoa(c.RefUpdates), strconv.Itoa(c.RefsDenied), strconv.Itoa(c.Refused), strconv.FormatInt(c.BytesIn, 10), strconv.FormatInt(c.BytesOut, 10)}})
	}
	for i := range r.Certs {
		if c := &r.Certs[i]; c.GitOps() > 0 {
			gitRow(c, "", "")
		}
	}
	for i := range r.GitUnknown {
		gitRow(&r.GitUnknown[i], "unknown", " (not issued on this record)")
	}
	v.Tables = append(v.Tables, git)

	ref := viewTable{ID: "refused", Title: "Refused Git operations and ref updates",
		Head:  []string{"Time", "Serial", "Key ID", "Repository", "Service", "Ref", "Reason"},
		Empty: "No Git operation or ref update was refused."}
	if n := r.GitRefusedN + r.RefsRefusedN; n > len(r.GitRefused) {
		ref.Note = fmt.Sprintf("The first %d of %d.", len(r.GitRefused), n)
	}
	for _, g := range r.GitRefused {
		ref.Rows = append(ref.Rows, viewRow{Class: "refused", Cells: []string{fmtTime(g.Time), FormatSerial(g.Serial), g.KeyID, g.Repo, g.Service, g.Ref, clip(g.Reason)}})
	}
	v.Tables = append(v.Tables, ref)
	return v
}

func (r *Report) tallyTable(id, title, name, others string, ts []Tally) viewTable {
	t := viewTable{ID: id, Title: title, Head: []string{name, "Certificates", "Read", "Write", "Force", "Break-glass", others, "Held", "Asked", "Git ops"},
		Empty: "No certificates were issued."}
	for _, x := range ts {
		t.Rows = append(t.Rows, viewRow{Cells: []string{x.Name, strconv.Itoa(x.Certs), strconv.Itoa(x.Read), strconv.Itoa(x.Write),
			strconv.Itoa(x.Force), strconv.Itoa(x.BreakGlass), strings.Join(x.Others, ", "), FormatDuration(x.Held), FormatDuration(x.Asked), strconv.Itoa(x.GitOps)}})
	}
	return t
}

func rowClass(c *CertRecord, state string) string {
	if c.BreakGlass {
		return "break-glass"
	}
	return state
}

func fmtTime(t time.Time) string { return t.UTC().Format(timeLayout) }

func fmtOptTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return fmtTime(t)
}

func percent(part, whole time.Duration) string {
	if whole <= 0 {
		return ""
	}
	return fmt.Sprintf(" (%d%%)", int(math.Round(100*float64(part)/float64(whole))))
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// clip shortens free text for a table cell.
func clip(s string) string {
	if r := []rune(s); len(r) > maxCell {
		return string(r[:maxCell-1]) + "…"
	}
	return s
}

// Markdown writes the report as a Markdown document.
func (r *Report) Markdown(w io.Writer) error {
	v := r.view()
	var b strings.Builder
	b.WriteString("# " + v.Title + "\n\n" + v.Period + "\n")
	if v.LogLine != "" {
		b.WriteString(v.LogLine + "\n")
	}
	b.WriteString("\n## Summary\n\n| | |\n|---|---|\n")
	for _, kv := range v.Summary {
		b.WriteString("| " + mdCell(kv[0]) + " | " + mdCell(kv[1]) + " |\n")
	}
	for _, t := range v.Tables {
		b.WriteString("\n## " + t.Title + "\n\n")
		if t.Note != "" {
			b.WriteString(mdCell(t.Note) + "\n\n")
		}
		if len(t.Rows) == 0 {
			b.WriteString(t.Empty + "\n")
			continue
		}
		b.WriteString("|")
		for _, h := range t.Head {
			b.WriteString(" " + h + " |")
		}
		b.WriteString("\n|")
		for range t.Head {
			b.WriteString("---|")
		}
		b.WriteString("\n")
		for _, row := range t.Rows {
			b.WriteString("|")
			for _, c := range row.Cells {
				b.WriteString(" " + mdCell(c) + " |")
			}
			b.WriteString("\n")
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// mdCell makes text safe in a Markdown table cell: nothing in it can end
// the cell, start markup, or pass through as HTML.
func mdCell(s string) string {
	var b strings.Builder
	for _, c := range s {
		switch {
		case c == '&':
			b.WriteString("&amp;")
		case c == '<':
			b.WriteString("&lt;")
		case c == '>':
			b.WriteString("&gt;")
		case strings.ContainsRune("\\|*_`[]#~", c):
			b.WriteByte('\\')
			b.WriteRune(c)
		case unicode.IsControl(c) || unicode.Is(unicode.Bidi_Control, c):
			b.WriteRune(' ')
		default:
			b.WriteRune(c)
		}
	}
	return b.String()
}

// The timeline: one row per certificate on a shared time axis, a faint bar
// for the window granted, a solid one for the time access was held, a
// dashed line for the wait from request to issue, and a tick per Git
// operation.
type timeline struct {
	Width, Height, LabelW, PlotW, Bottom float64
	Ticks                                []tlTick
	Rows                                 []tlRow
	NowX                                 float64 // the end of the log, or -1 when off the axis
	Note                                 string
}

type tlTick struct {
	X     float64
	Label string
}

type tlRow struct {
	Y, Mid              float64
	MarkTop, MarkBottom float64
	Label, Title, Class string
	WaitX, WaitW        float64
	AskX, AskW          float64
	HeldX, HeldW        float64
	Marks               []tlMark
}

type tlMark struct {
	X       float64
	Refused bool
}

// Timeline layout, in pixels.
const (
	tlWidth   = 1100.0
	tlLabelW  = 260.0
	tlRight   = 16.0
	tlTop     = 34.0
	tlRowH    = 24.0
	tlBarH    = 12.0
	tlLegendH = 44.0
	tlMaxRows = 300
)

func (r *Report) timeline() *timeline {
	if len(r.Certs) == 0 {
		return nil
	}
	certs := r.Certs
	tl := &timeline{Width: tlWidth, LabelW: tlLabelW, PlotW: tlWidth - tlLabelW - tlRight, NowX: -1}
	if len(certs) > tlMaxRows {
		tl.Note = fmt.Sprintf("The first %d of %d certificates.", tlMaxRows, len(certs))
		certs = certs[:tlMaxRows]
	}
	t0, t1 := certs[0].Issued, certs[0].ValidBefore
	for i := range certs {
		c := &certs[i]
		start := c.Issued
		if !c.Requested.IsZero() && c.Requested.Before(start) {
			start = c.Requested
		}
		t0 = minTime(t0, start)
		t1 = maxTime(t1, c.ValidBefore)
	}
	if !t1.After(t0) {
		t1 = t0.Add(time.Minute)
	}
	span := t1.Sub(t0)
	x := func(t time.Time) float64 {
		return round1(tl.LabelW + tl.PlotW*float64(t.Sub(t0))/float64(span))
	}
	step := tickStep(span)
	layout := "15:04"
	switch {
	case step >= 24*time.Hour:
		layout = "2006-01-02"
	case t0.YearDay() != t1.YearDay() || t0.Year() != t1.Year():
		layout = "01-02 15:04"
	}
	for t := t0.Truncate(step); !t.After(t1); t = t.Add(step) {
		if !t.Before(t0) {
			tl.Ticks = append(tl.Ticks, tlTick{X: x(t), Label: t.UTC().Format(layout)})
		}
	}
	if !r.Until.Before(t0) && !r.Until.After(t1) {
		tl.NowX = x(r.Until)
	}
	for i := range certs {
		c := &certs[i]
		y := tlTop + float64(i)*tlRowH
		state := c.State(r.Until)
		row := tlRow{
			Y: y + (tlRowH-tlBarH)/2, Mid: y + tlRowH/2,
			MarkTop: y + 3, MarkBottom: y + tlRowH - 3,
			Label: clipRunes(FormatSerial(c.Serial)+"  "+c.KeyID, 38),
			Class: rowClass(c, state),
			Title: fmt.Sprintf("serial %s %s\n%s\nrequester %s; issued %s; held %s of %s asked; %s; %d Git operations",
				FormatSerial(c.Serial), c.KeyID, strings.Join(c.Principals, " "), c.Requester, fmtTime(c.Issued),
				FormatDuration(c.Held(r.Until)), FormatDuration(c.Asked), state, c.GitOps()),
			AskX: x(c.Issued), HeldX: x(c.Issued),
		}
		row.AskW = max(x(c.ValidBefore)-row.AskX, 1)
		end := c.End()
		if r.Until.Before(end) {
			end = r.Until
		}
		row.HeldW = max(x(end)-row.HeldX, 1)
		if !c.BreakGlass && !c.Requested.IsZero() && c.Requested.Before(c.Issued) {
			row.WaitX = x(c.Requested)
			row.WaitW = row.AskX - row.WaitX
		}
		for _, m := range r.marks[c.Serial] {
			if !m.t.Before(t0) && !m.t.After(t1) {
				row.Marks = append(row.Marks, tlMark{X: x(m.t), Refused: m.refused})
			}
		}
		tl.Rows = append(tl.Rows, row)
	}
	tl.Bottom = tlTop + float64(len(tl.Rows))*tlRowH
	tl.Height = tl.Bottom + tlLegendH
	return tl
}

// tickStep is the smallest round interval that puts at most ten ticks on
// span.
func tickStep(span time.Duration) time.Duration {
	for _, s := range []time.Duration{time.Minute, 2 * time.Minute, 5 * time.Minute, 10 * time.Minute, 15 * time.Minute,
		30 * time.Minute, time.Hour, 2 * time.Hour, 3 * time.Hour, 6 * time.Hour, 12 * time.Hour, 24 * time.Hour,
		48 * time.Hour, 7 * 24 * time.Hour, 14 * 24 * time.Hour} {
		if span/s <= 10 {
			return s
		}
	}
	return 30 * 24 * time.Hour * time.Duration(1+span/(300*24*time.Hour))
}

func round1(f float64) float64 { return math.Round(f*10) / 10 }

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

func clipRunes(s string, n int) string {
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

// HTML writes the report as one self-contained HTML page: styles inline,
// the timeline as inline SVG, no scripts and nothing fetched from
// elsewhere. Everything from the log is escaped by html/template.
func (r *Report) HTML(w io.Writer) error {
	v := r.view()
	v.Timeline = r.timeline()
	return reportHTML.Execute(w, v)
}

var reportHTML = template.Must(template.New("report").Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}}</title>
<style>
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1f2328; margin: 24px auto; max-width: 1180px; padding: 0 16px; }
h1 { font-size: 24px; margin-bottom: 4px; }
h2 { font-size: 18px; margin-top: 32px; border-bottom: 1px solid #d0d7de; padding-bottom: 4px; }
p.meta, p.note, p.empty { color: #57606a; }
div.wide { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; font-size: 12.5px; }
th, td { text-align: left; padding: 4px 6px; border-bottom: 1px solid #eaeef2; vertical-align: top; }
thead th { background: #f6f8fa; border-bottom: 1px solid #d0d7de; white-space: nowrap; }
table.summary { width: auto; }
table.summary th { font-weight: 600; padding-right: 24px; }
td { overflow-wrap: break-word; }
td.nowrap { white-space: nowrap; }
tr.revoked td, tr.refused td { background: #fff1f0; }
tr.break-glass td { background: #fff4e5; }
tr.unknown td { background: #fffbe6; }
svg { display: block; max-width: 100%; height: auto; font-size: 12px; }
svg .grid { stroke: #eaeef2; }
svg .now { stroke: #57606a; stroke-dasharray: 4 3; }
svg .tick { fill: #57606a; }
svg .label { fill: #1f2328; font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 11.5px; }
svg .wait { stroke: #8c959f; stroke-dasharray: 3 3; }
svg .mark { stroke: #1f2328; stroke-width: 1.5; }
svg .mark.refused { stroke: #cf222e; stroke-width: 2; }
svg .expired { --c: #2563eb; }
svg .active { --c: #7c3aed; }
svg .released { --c: #059669; }
svg .revoked { --c: #dc2626; }
svg .break-glass { --c: #ea580c; }
svg .asked { fill: var(--c); fill-opacity: 0.18; stroke: var(--c); stroke-opacity: 0.5; }
svg .held { fill: var(--c); }
</style>
</head>
<body>
<h1>{{.Title}}</h1>
<p class="meta">{{.Period}}{{if .LogLine}}<br>{{.LogLine}}{{end}}</p>
<h2 id="summary">Summary</h2>
<table class="summary">
{{- range .Summary}}
<tr><th>{{index . 0}}</th><td>{{index . 1}}</td></tr>
{{- end}}
</table>
{{- with .Timeline}}
<h2 id="timeline">Timeline</h2>
<p class="note">One row per certificate. The faint bar is the window granted, the solid bar the time access was held (to expiry, revocation or release), the dashed line the wait from request to issue; each tick is a Git operation, red when refused.{{if .Note}} {{.Note}}{{end}}</p>
<svg width="{{.Width}}" height="{{.Height}}" viewBox="0 0 {{.Width}} {{.Height}}" role="img" aria-label="Certificate timeline">
{{- $top := 30.0}}{{$bottom := .Bottom}}
{{- range .Ticks}}
<line class="grid" x1="{{.X}}" y1="{{$top}}" x2="{{.X}}" y2="{{$bottom}}"/><text class="tick" x="{{.X}}" y="20" text-anchor="middle">{{.Label}}</text>
{{- end}}
{{- if ge .NowX 0.0}}
<line class="now" x1="{{.NowX}}" y1="{{$top}}" x2="{{.NowX}}" y2="{{$bottom}}"><title>end of the log</title></line>
{{- end}}
{{- range .Rows}}
<g class="{{.Class}}"><title>{{.Title}}</title>
<text class="label" x="4" y="{{.Mid}}" dominant-baseline="middle">{{.Label}}</text>
{{- if .WaitW}}
<line class="wait" x1="{{.WaitX}}" y1="{{.Mid}}" x2="{{.AskX}}" y2="{{.Mid}}"/>
{{- end}}
<rect class="asked" x="{{.AskX}}" y="{{.Y}}" width="{{.AskW}}" height="12" rx="2"/>
<rect class="held" x="{{.HeldX}}" y="{{.Y}}" width="{{.HeldW}}" height="12" rx="2"/>
{{- $y1 := .MarkTop}}{{$y2 := .MarkBottom}}
{{- range .Marks}}
<line class="mark{{if .Refused}} refused{{end}}" x1="{{.X}}" y1="{{$y1}}" x2="{{.X}}" y2="{{$y2}}"/>
{{- end}}
</g>
{{- end}}
<g transform="translate(4 {{.Bottom}})">
<g class="expired"><rect class="held" x="0" y="16" width="14" height="10" rx="2"/><text x="20" y="25">expired</text></g>
<g class="active"><rect class="held" x="90" y="16" width="14" height="10" rx="2"/><text x="110" y="25">active</text></g>
<g class="released"><rect class="held" x="170" y="16" width="14" height="10" rx="2"/><text x="190" y="25">released</text></g>
<g class="revoked"><rect class="held" x="260" y="16" width="14" height="10" rx="2"/><text x="280" y="25">revoked</text></g>
<g class="break-glass"><rect class="held" x="345" y="16" width="14" height="10" rx="2"/><text x="365" y="25">break-glass</text></g>
<g class="expired"><rect class="asked" x="455" y="16" width="28" height="10" rx="2"/><text x="490" y="25">granted, not held</text></g>
<line class="wait" x1="615" y1="21" x2="645" y2="21"/><text x="651" y="25">waiting for approval</text>
<line class="mark" x1="805" y1="14" x2="805" y2="28"/><text x="812" y="25">Git operation</text>
</g>
</svg>
{{- end}}
{{- range .Tables}}
<h2 id="{{.ID}}">{{.Title}}</h2>
{{- if .Note}}
<p class="note">{{.Note}}</p>
{{- end}}
{{- if .Rows}}
<div class="wide"><table>
<thead><tr>{{range .Head}}<th>{{.}}</th>{{end}}</tr></thead>
<tbody>
{{- range .Rows}}
<tr{{if .Class}} class="{{.Class}}"{{end}}>{{range .Cells}}<td>{{.}}</td>{{end}}</tr>
{{- end}}
</tbody>
</table></div>
{{- else}}
<p class="empty">{{.Empty}}</p>
{{- end}}
{{- end}}
</body>
</html>
`))
