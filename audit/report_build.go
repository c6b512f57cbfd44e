package audit

import (
	"cmp"
	"encoding/json"
	"math"
	"slices"
	"time"

	"github.com/jitssh/jitssh/ca"
	"github.com/jitssh/jitssh/principals"
)

// Aggregation: entries become certificate records (CollectCerts), and
// certificate records and entries a Report (BuildReport).

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
		user, _ := ca.ParseKeyID(d.KeyID)
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

// maxListed bounds the refused Git operations a report lists one by one.
const maxListed = 100

// BuildReport reviews entries (in seq order; the entries of several logs
// merged by time) from since on. Entries before
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
