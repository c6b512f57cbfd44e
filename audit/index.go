package audit

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"sort"
	"strconv"
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
	intern map[string]string // one copy of each kind, actor and repo
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

// bulkBuilder fills an empty index from a verified log. Seqs arrive in
// increasing order, so every entry goes at the end of its block and of each
// of its postings: the builder keeps the last chunk of each and appends to
// it in place (nothing is visible before Commit) without looking anything
// up in memdb.
type bulkBuilder struct {
	ix    *Index
	txn   *memdb.Txn
	block *chunk[row]
	tails map[string]*chunk[uint64]
	key   []byte // scratch for posting keys
}

func (b *bulkBuilder) add(e *Entry) error {
	r, err := b.ix.newRow(e, bytes.Clone(e.Data))
	if err != nil {
		return err
	}
	if b.block == nil || len(b.block.Items) == blockSize {
		b.block = &chunk[row]{First: r.Seq, Items: make([]row, 0, blockSize)}
		if err := b.txn.Insert(tableBlocks, b.block); err != nil {
			return fmt.Errorf("index entry seq %d: %w", r.Seq, err)
		}
	}
	b.block.Items = append(b.block.Items, r)
	return eachPostingKey(&r, b.key[:0], func(key []byte) error {
		b.key = key
		c := b.tails[string(key)]
		if c == nil || len(c.Items) == postingSize {
			c = &chunk[uint64]{Key: string(key), First: r.Seq}
			b.tails[c.Key] = c
			if err := b.txn.Insert(tablePostings, c); err != nil {
				return fmt.Errorf("index entry seq %d: %w", r.Seq, err)
			}
		}
		c.Items = append(c.Items, r.Seq)
		return nil
	})
}

// trim gives back the spare capacity that appending left in the last chunk
// of each posting list.
func (b *bulkBuilder) trim() {
	for _, c := range b.tails {
		if cap(c.Items)-len(c.Items) > 8 {
			c.Items = slices.Clone(c.Items)
		}
	}
}

// eachPostingKey calls fn with each posting key of r, built in buf.
func eachPostingKey(r *row, buf []byte, fn func(key []byte) error) error {
	serial, hasSerial, repo := dataFields(r.Data)
	buf = r.Time.UTC().AppendFormat(append(buf[:0], keyHour...), "2006010215")
	if err := fn(buf); err != nil {
		return err
	}
	for _, kv := range [...]struct{ prefix, v string }{{keyKind, r.Kind}, {keyActor, r.Actor}, {keyRepo, repo}} {
		if indexable(kv.v) {
			buf = append(append(buf[:0], kv.prefix...), kv.v...)
			if err := fn(buf); err != nil {
				return err
			}
		}
	}
	if hasSerial {
		buf = strconv.AppendUint(append(buf[:0], keySerial...), serial, 10)
		return fn(buf)
	}
	return nil
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
		slices.SortFunc(out, func(a, b Entry) int { return cmpSeq(a.Seq, b.Seq) })
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

func cmpSeq(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
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
	from := keyHour
	if !since.IsZero() {
		from = hourKey(since)
	}
	it, err := txn.LowerBound(tablePostings, indexID, from, uint64(0))
	if err != nil {
		return
	}
	for obj := it.Next(); obj != nil; obj = it.Next() {
		c := obj.(*chunk[uint64])
		if !strings.HasPrefix(c.Key, keyHour) || (!until.IsZero() && c.Key > hourKey(until)) {
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

// indexWriter is one write transaction on the index.
type indexWriter struct {
	ix  *Index
	txn *memdb.Txn
	// owned holds the chunks this transaction created. Nobody else can see
	// them before Commit, so they are changed in place; every other chunk
	// is copied before it is changed, as memdb requires.
	owned map[any]struct{}
}

// writer starts a write transaction; the caller holds ix.mu.
func (ix *Index) writer() *indexWriter {
	return &indexWriter{ix: ix, txn: ix.db.Txn(true), owned: make(map[any]struct{})}
}

// add indexes e, whose data the index may keep.
func (w *indexWriter) add(e *Entry, data json.RawMessage) error {
	r, err := w.ix.newRow(e, data)
	if err != nil {
		return err
	}
	if err := insertItem(w, tableBlocks, "", r.Seq, r, func(r *row) uint64 { return r.Seq }, blockSize, blockSize); err != nil {
		return fmt.Errorf("index entry seq %d: %w", r.Seq, err)
	}
	return eachPostingKey(&r, nil, func(key []byte) error {
		if err := insertItem(w, tablePostings, string(key), r.Seq, r.Seq, func(s *uint64) uint64 { return *s }, postingSize, 1); err != nil {
			return fmt.Errorf("index entry seq %d: %w", r.Seq, err)
		}
		return nil
	})
}

// newRow makes the row of e, keeping data. The caller holds ix.mu.
func (ix *Index) newRow(e *Entry, data json.RawMessage) (row, error) {
	if e.Seq == 0 {
		return row{}, fmt.Errorf("index entry: %w: seq 0", ErrInvalidEntry)
	}
	r := row{
		Seq:   e.Seq,
		Time:  e.Time,
		Kind:  ix.internString(e.Kind),
		Actor: ix.internString(e.Actor),
		Data:  data,
	}
	if len(e.Prev) != 2*len(r.Prev) {
		return row{}, fmt.Errorf("index entry seq %d: %w: prev is not a hex SHA-256", e.Seq, ErrInvalidEntry)
	}
	if _, err := hex.Decode(r.Prev[:], []byte(e.Prev)); err != nil {
		return row{}, fmt.Errorf("index entry seq %d: %w: prev is not a hex SHA-256", e.Seq, ErrInvalidEntry)
	}
	return r, nil
}

// insertItem puts item, whose seq is seq, in its place among key's chunks
// of table. A chunk that grows past max is split, except that an item added
// after the end of a full chunk starts a new one, so a log indexed in order
// fills its chunks. initCap is the capacity of new chunks.
func insertItem[T any](w *indexWriter, table, key string, seq uint64, item T, seqOf func(*T) uint64, max, initCap int) error {
	c := findChunk[T](w.txn, table, key, seq)
	if c == nil || (seq > seqOf(&c.Items[len(c.Items)-1]) && len(c.Items) >= max) {
		return insertNew(w, table, key, append(make([]T, 0, initCap), item), seqOf)
	}
	items := c.Items
	i := sort.Search(len(items), func(i int) bool { return seqOf(&items[i]) >= seq })
	if i < len(items) && seqOf(&items[i]) == seq {
		return fmt.Errorf("%w: seq %d already indexed", ErrInvalidEntry, seq)
	}
	_, owned := w.owned[c]
	if i == 0 {
		// The chunk's first seq, hence its id, changes: take it out under
		// the old id before changing it.
		if err := w.txn.Delete(table, c); err != nil {
			return err
		}
	}
	if !owned {
		c = &chunk[T]{Key: c.Key, First: c.First, Items: make([]T, len(items), len(items)+1)}
		copy(c.Items, items)
		w.owned[c] = struct{}{}
	}
	c.Items = slices.Insert(c.Items, i, item)
	c.First = seqOf(&c.Items[0])
	if i == 0 || !owned {
		if err := w.txn.Insert(table, c); err != nil {
			return err
		}
	}
	if len(c.Items) > max {
		half := len(c.Items) / 2
		right := slices.Clone(c.Items[half:])
		c.Items = slices.Clip(c.Items[:half])
		return insertNew(w, table, key, right, seqOf)
	}
	return nil
}

// insertNew adds a new chunk of items to table.
func insertNew[T any](w *indexWriter, table, key string, items []T, seqOf func(*T) uint64) error {
	c := &chunk[T]{Key: key, First: seqOf(&items[0]), Items: items}
	w.owned[c] = struct{}{}
	return w.txn.Insert(table, c)
}

func (ix *Index) internString(s string) string {
	if s == "" {
		return ""
	}
	if v, ok := ix.intern[s]; ok {
		return v
	}
	ix.intern[s] = s
	return s
}
