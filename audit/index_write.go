package audit

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strconv"

	"github.com/hashicorp/go-memdb"
)

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
