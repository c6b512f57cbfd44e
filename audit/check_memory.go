package audit

import (
	"slices"
	"sort"
	"strings"
	"time"
)

// A Checker reads logs of years. What it remembers of each request is
// needed only while something can still refer to it: approvals and
// denials come while it is pending, its certificate once. So a request is
// forgotten forgetAfter, in the log's time, after it is done (denied,
// expired, cancelled, issued or revoked unissued), and a used token after
// it expired; serials are kept as runs, which the daemon's counter makes
// few. Memory then follows what is in flight, not the log's length.
//
// A request entry for an ID the checker no longer remembers is still
// caught when it repeats an old one: request IDs are ULIDs, which carry
// the time they were made, and an ID made more than forgetAfter before the
// latest entry read is refused. IDs that are not ULIDs are never
// forgotten.

// forgetAfter is how long, in log time, a done request is remembered.
const forgetAfter = 7 * 24 * time.Hour

// forgetItem is a request (or, with token set, a used token) to forget
// once the log's time passes at plus forgetAfter.
type forgetItem struct {
	at    time.Time
	key   string
	token bool
}

// memory is the forgetting part of a checker.
type memory struct {
	latest  time.Time    // the latest entry time read
	queue   []forgetItem // roughly in time order
	head    int
	runs    serialRuns
	recent  map[uint64]uint64 // serial -> seq, for the serials of the last forgetAfter
	serialQ []serialAt
}

type serialAt struct {
	at     time.Time
	serial uint64
}

// advance moves the log's time to t and forgets what has had its time.
func (c *checker) advance(t time.Time) {
	m := &c.mem
	if t.After(m.latest) {
		m.latest = t
	}
	horizon := m.latest.Add(-forgetAfter)
	for m.head < len(m.queue) && m.queue[m.head].at.Before(horizon) {
		it := m.queue[m.head]
		m.queue[m.head] = forgetItem{}
		m.head++
		if it.token {
			delete(c.tokens, it.key)
		} else {
			delete(c.requests, it.key)
		}
	}
	if m.head > 1024 && m.head > len(m.queue)/2 {
		m.queue = slices.Clone(m.queue[m.head:])
		m.head = 0
	}
	n := 0
	for n < len(m.serialQ) && m.serialQ[n].at.Before(horizon) {
		delete(m.recent, m.serialQ[n].serial)
		n++
	}
	if n > 0 {
		m.serialQ = slices.Clone(m.serialQ[n:])
	}
}

// done marks request id done at t: it is forgotten forgetAfter later,
// unless its ID is not a ULID.
func (c *checker) done(id string, t time.Time) {
	if _, ok := ulidTime(id); ok {
		c.mem.queue = append(c.mem.queue, forgetItem{at: t, key: id})
	}
}

// usedToken schedules a used token's forgetting after its expiry.
func (c *checker) usedToken(id string, expires time.Time) {
	if !expires.IsZero() {
		c.mem.queue = append(c.mem.queue, forgetItem{at: expires, key: id, token: true})
	}
}

// tooOld refuses a request whose ID was made more than forgetAfter before
// the log's time: the checker may have forgotten an earlier request with
// that ID, and the daemon records a request when it is made.
func (c *checker) tooOld(id string) error {
	made, ok := ulidTime(id)
	if !ok || c.mem.latest.IsZero() || !made.Before(c.mem.latest.Add(-forgetAfter)) {
		return nil
	}
	return fail(ErrRecord, "request %s was made at %s, more than %v before entries already on the log (up to %s): replayed, or recorded long after it was made",
		id, made.UTC().Format(time.RFC3339), forgetAfter, c.mem.latest.UTC().Format(time.RFC3339))
}

// claimSerial records that serial was issued by the entry at seq, and
// refuses one issued before.
func (c *checker) claimSerial(serial, seq uint64) error {
	if serial == 0 {
		return fail(ErrCA, "serial 0 cannot be revoked and is never issued")
	}
	m := &c.mem
	if prev, dup := m.recent[serial]; dup {
		return fail(ErrCA, "serial %d was already issued at seq %d", serial, prev)
	}
	if m.runs.contains(serial) {
		return fail(ErrCA, "serial %d was already issued, more than %v before", serial, forgetAfter)
	}
	m.runs.add(serial)
	if m.recent == nil {
		m.recent = map[uint64]uint64{}
	}
	m.recent[serial] = seq
	m.serialQ = append(m.serialQ, serialAt{at: m.latest, serial: serial})
	return nil
}

// serialRuns is a set of serials as sorted, disjoint runs of consecutive
// serials.
type serialRuns []serialRun

type serialRun struct{ lo, hi uint64 }

// find returns the index of the first run that starts after s.
func (r serialRuns) find(s uint64) int {
	return sort.Search(len(r), func(i int) bool { return r[i].lo > s })
}

func (r serialRuns) contains(s uint64) bool {
	i := r.find(s)
	return i > 0 && r[i-1].hi >= s
}

func (r *serialRuns) add(s uint64) {
	runs := *r
	i := runs.find(s)
	joinPrev := i > 0 && runs[i-1].hi+1 == s
	joinNext := i < len(runs) && runs[i].lo == s+1
	switch {
	case joinPrev && joinNext:
		runs[i-1].hi = runs[i].hi
		runs = slices.Delete(runs, i, i+1)
	case joinPrev:
		runs[i-1].hi = s
	case joinNext:
		runs[i].lo = s
	default:
		runs = slices.Insert(runs, i, serialRun{s, s})
	}
	*r = runs
}

// ulidTime returns when a request ID ("req-" and a ULID) was made.
func ulidTime(id string) (time.Time, bool) {
	s, ok := strings.CutPrefix(id, "req-")
	if !ok || len(s) != 26 || s[0] > '7' {
		return time.Time{}, false
	}
	const crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
	var ms uint64
	for i := 0; i < 10; i++ {
		d := strings.IndexByte(crockford, s[i])
		if d < 0 {
			return time.Time{}, false
		}
		ms = ms<<5 | uint64(d)
	}
	for i := 10; i < 26; i++ {
		if strings.IndexByte(crockford, s[i]) < 0 {
			return time.Time{}, false
		}
	}
	return time.UnixMilli(int64(ms)), true
}
