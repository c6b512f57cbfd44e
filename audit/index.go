package audit

import (
	"bytes"
	"cmp"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-memdb"
)

// Index answers queries over a log: by seq, kind, actor, certificate serial
// (the "serial" field of an entry's data), repository (its "repo" field) and
// time. It is an in-memory go-memdb database (see schema.go for its layout);
// readers see a consistent snapshot while entries are added. An Index is safe
// for concurrent use.
type Index struct {
	db *memdb.MemDB

	mu     sync.Mutex        // serialises writers, guards intern
	intern map[string]string // one copy of each kind and actor
	count  atomic.Int64      // committed entries
}

// Filter selects entries: every field that is set must match. Since is
// inclusive and Until exclusive; zero times leave that end open. Limit > 0
// keeps only the first Limit matching entries in seq order.
type Filter struct {
	Kind   string
	Actor  string
	Serial *uint64 // entries whose data has this "serial"
	Repo   string  // entries whose data has this "repo"
	Since  time.Time
	Until  time.Time
	Limit  int
}

// row is what the index keeps of one entry.
type row struct {
	Seq   uint64
	Time  time.Time
	Kind  string
	Actor string
	Prev  [32]byte
	Data  json.RawMessage // serial and repo are read from here when needed
}

// NewIndex returns an empty index.
func NewIndex() (*Index, error) {
	db, err := memdb.NewMemDB(indexSchema())
	if err != nil {
		return nil, fmt.Errorf("create audit index: %w", err)
	}
	return &Index{db: db, intern: make(map[string]string)}, nil
}

// BuildIndex streams a log into a new index, verifying it as Verify does,
// and fails with Verify's error if it does not verify.
func BuildIndex(r io.Reader) (*Index, error) {
	ix, err := NewIndex()
	if err != nil {
		return nil, err
	}
	ix.mu.Lock()
	defer ix.mu.Unlock()
	b := bulkBuilder{ix: ix, txn: ix.db.Txn(true), tails: make(map[string]*chunk[uint64])}
	defer b.txn.Abort()
	n := 0
	_, err = verifyStream(r, func(e *Entry, _ []byte, _ int) error {
		n++
		return b.add(e)
	})
	if err != nil {
		return nil, err
	}
	b.trim()
	b.txn.Commit()
	ix.count.Store(int64(n))
	return ix, nil
}

// Add indexes one entry, typically one just returned by Log.Append. Entries
// may be added in any order, but each seq only once.
func (ix *Index) Add(e Entry) error {
	if len(e.Data) > 0 && (e.Data[0] != '{' || !json.Valid(e.Data)) {
		return fmt.Errorf("index entry seq %d: %w: data is not a JSON object", e.Seq, ErrInvalidEntry)
	}
	ix.mu.Lock()
	defer ix.mu.Unlock()
	w := ix.writer()
	defer w.txn.Abort()
	if err := w.add(&e, bytes.Clone(e.Data)); err != nil {
		return err
	}
	w.txn.Commit()
	ix.count.Add(1)
	return nil
}

// Len returns the number of indexed entries.
func (ix *Index) Len() int { return int(ix.count.Load()) }

// Get returns the entry with the given seq.
func (ix *Index) Get(seq uint64) (Entry, bool) {
	txn := ix.db.Txn(false)
	defer txn.Abort()
	c := rowCursor{txn: txn}
	r := c.get(seq)
	if r == nil {
		return Entry{}, false
	}
	return r.entry(), true
}

// List returns the entries that match f, in seq order. It reads the postings
// of the most selective field f sets (serial, repo, actor, kind, then time)
// and checks the other fields on each entry; with none set, it reads all.
func (ix *Index) List(f Filter) []Entry {
	txn := ix.db.Txn(false)
	defer txn.Abort()
	var out []Entry
	keep := func(r *row) bool {
		if f.match(r) {
			out = append(out, r.entry())
		}
		return f.Limit <= 0 || len(out) < f.Limit
	}
	switch key := f.postingKey(); {
	case key != "":
		rows := rowCursor{txn: txn}
		eachPosting(txn, key, func(seq uint64) bool {
			if r := rows.get(seq); r != nil {
				return keep(r)
			}
			return true
		})
	case !f.Since.IsZero() || !f.Until.IsZero():
		// Hours sort in time order, but entries within them need not be in
		// seq order: collect, sort, then apply the limit.
		limit := f.Limit
		f.Limit = 0
		rows := rowCursor{txn: txn}
		eachHour(txn, f.Since, f.Until, func(seq uint64) {
			if r := rows.get(seq); r != nil {
				keep(r)
			}
		})
		slices.SortFunc(out, func(a, b Entry) int { return cmp.Compare(a.Seq, b.Seq) })
		if limit > 0 && len(out) > limit {
			out = out[:limit]
		}
	default:
		eachRow(txn, keep)
	}
	return out
}

// postingKey is the posting list List reads for f, or "" to scan.
func (f Filter) postingKey() string {
	switch {
	case f.Serial != nil:
		return serialKey(*f.Serial)
	case indexable(f.Repo):
		return keyRepo + f.Repo
	case indexable(f.Actor):
		return keyActor + f.Actor
	case indexable(f.Kind):
		return keyKind + f.Kind
	}
	return ""
}

func (f Filter) match(r *row) bool {
	switch {
	case f.Kind != "" && r.Kind != f.Kind,
		f.Actor != "" && r.Actor != f.Actor,
		!f.Since.IsZero() && r.Time.Before(f.Since),
		!f.Until.IsZero() && !r.Time.Before(f.Until):
		return false
	}
	if f.Repo != "" || f.Serial != nil {
		serial, hasSerial, repo := dataFields(r.Data)
		if f.Repo != "" && repo != f.Repo || f.Serial != nil && (!hasSerial || serial != *f.Serial) {
			return false
		}
	}
	return true
}

func (r *row) entry() Entry {
	return Entry{
		Seq:   r.Seq,
		Time:  r.Time,
		Kind:  r.Kind,
		Actor: r.Actor,
		Data:  slices.Clone(r.Data), // rows never change once indexed
		Prev:  hex.EncodeToString(r.Prev[:]),
	}
}

// eachPosting calls fn with the seqs of key's postings in order until fn
// returns false.
func eachPosting(txn *memdb.Txn, key string, fn func(seq uint64) bool) {
	it, err := txn.Get(tablePostings, indexIDPrefix, key)
	if err != nil {
		return // only a schema mistake gets here
	}
	for obj := it.Next(); obj != nil; obj = it.Next() {
		c := obj.(*chunk[uint64])
		if c.Key != key {
			continue
		}
		for _, seq := range c.Items {
			if !fn(seq) {
				return
			}
		}
	}
}

// eachHour calls fn with the seqs of the entries in the hours from since to
// until; zero times leave that end open.
func eachHour(txn *memdb.Txn, since, until time.Time, fn func(seq uint64)) {
	from, to := keyHour, ""
	if !since.IsZero() {
		from = hourKey(since)
	}
	if !until.IsZero() {
		to = hourKey(until)
	}
	it, err := txn.LowerBound(tablePostings, indexID, from, uint64(0))
	if err != nil {
		return
	}
	for obj := it.Next(); obj != nil; obj = it.Next() {
		c := obj.(*chunk[uint64])
		if !strings.HasPrefix(c.Key, keyHour) || (to != "" && c.Key > to) {
			return
		}
		for _, seq := range c.Items {
			fn(seq)
		}
	}
}

// eachRow calls fn with every row in seq order until it returns false.
func eachRow(txn *memdb.Txn, fn func(*row) bool) {
	it, err := txn.Get(tableBlocks, indexIDPrefix, "")
	if err != nil {
		return
	}
	for obj := it.Next(); obj != nil; obj = it.Next() {
		b := obj.(*chunk[row])
		for i := range b.Items {
			if !fn(&b.Items[i]) {
				return
			}
		}
	}
}

// rowCursor finds rows by seq, remembering the last block it looked in:
// consecutive lookups mostly land in the same block.
type rowCursor struct {
	txn *memdb.Txn
	blk *chunk[row]
}

func (c *rowCursor) get(seq uint64) *row {
	if c.blk == nil || seq < c.blk.First || seq > c.blk.Items[len(c.blk.Items)-1].Seq {
		c.blk = findChunk[row](c.txn, tableBlocks, "", seq)
		if c.blk == nil {
			return nil
		}
	}
	items := c.blk.Items
	i := sort.Search(len(items), func(i int) bool { return items[i].Seq >= seq })
	if i == len(items) || items[i].Seq != seq {
		return nil
	}
	return &items[i]
}

// findChunk returns key's chunk that seq belongs in: the one with the
// greatest first seq not above seq, or when seq comes before all of them,
// the first; nil when key has no chunk.
func findChunk[T any](txn *memdb.Txn, table, key string, seq uint64) *chunk[T] {
	it, err := txn.ReverseLowerBound(table, indexID, key, seq)
	if err != nil {
		return nil
	}
	if obj := it.Next(); obj != nil {
		if c := obj.(*chunk[T]); c.Key == key {
			return c
		}
	}
	it, err = txn.Get(table, indexIDPrefix, key)
	if err != nil {
		return nil
	}
	if obj := it.Next(); obj != nil {
		if c := obj.(*chunk[T]); c.Key == key {
			return c
		}
	}
	return nil
}
