package audit

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-memdb"
)

// Index answers queries over a log: by seq, kind, actor, certificate serial,
// repository and time. It holds one compact row per entry (the entry's
// fields, its data as raw JSON, prev as 32 bytes) in go-memdb. Rows are
// never modified after insertion. An Index is safe for concurrent use.
type Index struct {
	db *memdb.MemDB

	mu     sync.Mutex        // serialises Add, guards intern
	intern map[string]string // one copy of each kind, actor and repo
	count  atomic.Int64      // committed rows
}

// Filter selects entries; every field that is set must match. Since is
// inclusive and Until exclusive; zero times leave that end open. Limit > 0
// keeps only the first Limit entries in seq order.
type Filter struct {
	Kind   string
	Actor  string
	Serial *uint64 // entries whose data has this "serial"
	Repo   string  // entries whose data has this "repo"
	Since  time.Time
	Until  time.Time
	Limit  int
}

// row is what the index stores for one entry.
type row struct {
	Seq       uint64
	Time      time.Time
	Kind      string
	Actor     string
	Repo      string
	Serial    uint64
	HasSerial bool
	Prev      [32]byte
	Data      json.RawMessage
}

// NewIndex returns an empty index.
func NewIndex() (*Index, error) {
	db, err := memdb.NewMemDB(indexSchema())
	if err != nil {
		return nil, fmt.Errorf("create audit index: %w", err)
	}
	return &Index{db: db, intern: make(map[string]string)}, nil
}

// indexChunk is how many entries BuildIndex inserts per transaction: large
// enough to amortise the commit, small enough to bound its bookkeeping.
const indexChunk = 8192

// BuildIndex streams a log into a new index, verifying it as Verify does; it
// returns Verify's error for a log that does not verify.
func BuildIndex(r io.Reader) (*Index, error) {
	ix, err := NewIndex()
	if err != nil {
		return nil, err
	}
	ix.mu.Lock()
	defer ix.mu.Unlock()
	txn := ix.db.Txn(true)
	defer func() { txn.Abort() }()
	n := 0
	_, err = verifyStream(r, func(e *Entry, _ []byte, _ int) error {
		if err := ix.insertTxn(txn, e); err != nil {
			return err
		}
		if n++; n%indexChunk == 0 {
			txn.Commit()
			txn = ix.db.Txn(true)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	txn.Commit()
	ix.count.Store(int64(n))
	return ix, nil
}

// Add indexes one entry, typically one just returned by Log.Append. It
// refuses an entry whose seq is already indexed.
func (ix *Index) Add(e Entry) error {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	txn := ix.db.Txn(true)
	defer txn.Abort()
	existing, err := txn.First(tableEntries, indexID, e.Seq)
	if err != nil {
		return fmt.Errorf("index entry seq %d: %w", e.Seq, err)
	}
	if existing != nil {
		return fmt.Errorf("index entry seq %d: %w: seq already indexed", e.Seq, ErrInvalidEntry)
	}
	if err := ix.insertTxn(txn, &e); err != nil {
		return err
	}
	txn.Commit()
	ix.count.Add(1)
	return nil
}

// insertTxn inserts e within txn; the caller holds ix.mu.
func (ix *Index) insertTxn(txn *memdb.Txn, e *Entry) error {
	if e.Seq == 0 {
		return fmt.Errorf("index entry: %w: seq 0", ErrInvalidEntry)
	}
	r := &row{
		Seq:   e.Seq,
		Time:  e.Time,
		Kind:  ix.internString(e.Kind),
		Actor: ix.internString(e.Actor),
		Data:  e.Data,
	}
	if _, err := hex.Decode(r.Prev[:], []byte(e.Prev)); err != nil || len(e.Prev) != 2*len(r.Prev) {
		return fmt.Errorf("index entry seq %d: %w: prev is not a hex SHA-256", e.Seq, ErrInvalidEntry)
	}
	if len(e.Data) > 0 {
		var f struct {
			Serial json.RawMessage `json:"serial"`
			Repo   json.RawMessage `json:"repo"`
		}
		// Data that is not an object, or fields of other types, are simply
		// not indexed: the index reflects what the log says, no more.
		if json.Unmarshal(e.Data, &f) == nil {
			if s, err := strconv.ParseUint(string(f.Serial), 10, 64); err == nil {
				r.Serial, r.HasSerial = s, true
			}
			var repo string
			if json.Unmarshal(f.Repo, &repo) == nil {
				r.Repo = ix.internString(repo)
			}
		}
	}
	if err := txn.Insert(tableEntries, r); err != nil {
		return fmt.Errorf("index entry seq %d: %w", e.Seq, err)
	}
	return nil
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

// Len returns the number of indexed entries.
func (ix *Index) Len() int { return int(ix.count.Load()) }

// Get returns the entry with the given seq.
func (ix *Index) Get(seq uint64) (Entry, bool) {
	txn := ix.db.Txn(false)
	defer txn.Abort()
	obj, err := txn.First(tableEntries, indexID, seq)
	if err != nil || obj == nil {
		return Entry{}, false
	}
	return obj.(*row).entry(), true
}

// List returns the entries that match f, in seq order. It reads through the
// most selective index f allows (serial, repo, actor, kind, time, in that
// order) and checks the other fields of f on each row.
func (ix *Index) List(f Filter) []Entry {
	txn := ix.db.Txn(false)
	defer txn.Abort()

	var (
		it      memdb.ResultIterator
		err     error
		byTime  bool // rows come in time order, not seq order
		timeEnd = !f.Until.IsZero()
	)
	switch {
	case f.Serial != nil:
		it, err = txn.Get(tableEntries, indexSerial, *f.Serial)
	case f.Repo != "":
		it, err = txn.Get(tableEntries, indexRepo, f.Repo)
	case f.Actor != "":
		it, err = txn.Get(tableEntries, indexActor, f.Actor)
	case f.Kind != "":
		it, err = txn.Get(tableEntries, indexKind, f.Kind)
	case !f.Since.IsZero() || timeEnd:
		it, err = txn.LowerBound(tableEntries, indexTime, f.Since)
		byTime = true
	default:
		it, err = txn.Get(tableEntries, indexID)
	}
	if err != nil {
		// Only a mistake in the schema can get here: every name and
		// argument type above is fixed.
		return nil
	}
	var out []Entry
	for obj := it.Next(); obj != nil; obj = it.Next() {
		r := obj.(*row)
		if byTime && timeEnd && !r.Time.Before(f.Until) {
			break
		}
		if !f.match(r) {
			continue
		}
		out = append(out, r.entry())
		if !byTime && f.Limit > 0 && len(out) == f.Limit {
			break
		}
	}
	if byTime {
		slices.SortFunc(out, func(a, b Entry) int {
			switch {
			case a.Seq < b.Seq:
				return -1
			case a.Seq > b.Seq:
				return 1
			}
			return 0
		})
		if f.Limit > 0 && len(out) > f.Limit {
			out = out[:f.Limit]
		}
	}
	return out
}

func (f Filter) match(r *row) bool {
	switch {
	case f.Kind != "" && r.Kind != f.Kind,
		f.Actor != "" && r.Actor != f.Actor,
		f.Repo != "" && r.Repo != f.Repo,
		f.Serial != nil && (!r.HasSerial || r.Serial != *f.Serial),
		!f.Since.IsZero() && r.Time.Before(f.Since),
		!f.Until.IsZero() && !r.Time.Before(f.Until):
		return false
	}
	return true
}

func (r *row) entry() Entry {
	return Entry{
		Seq:   r.Seq,
		Time:  r.Time,
		Kind:  r.Kind,
		Actor: r.Actor,
		Data:  slices.Clone(r.Data), // rows must never change once indexed
		Prev:  hex.EncodeToString(r.Prev[:]),
	}
}
