package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"unicode/utf8"

	"go.etcd.io/bbolt"
)

// The file's layout:
//
//   - "lines": for every run of linesPerChunk seqs (key: the run's number,
//     8 bytes big-endian), the byte offset of the run's first line, then
//     per entry its line's length (without the newline) and the first
//     hashPrefix bytes of its SHA-256, all as uvarints and bytes;
//   - "postings": for each looked-up value, the sorted seqs of the entries
//     that have it, in chunks of up to postingChunk seqs (key: a one-byte
//     field tag, the value, NUL, the chunk's first seq big-endian), as
//     uvarint deltas;
//   - "hours": for each UTC hour (key 2006010215), the lowest and highest
//     seq of the entries of that hour;
//   - "meta": the format and the position after the last entry indexed.
const (
	linesPerChunk = 256
	hashPrefix    = 8
	postingChunk  = 512
)

// Posting field tags.
const (
	tagKind   = 'k'
	tagActor  = 'a'
	tagRepo   = 'r'
	tagSerial = 's' // 8 bytes big-endian
	tagID     = 'i' // a request ID
)

// indexBuilder collects one batch of entries, in seq order, and writes it
// in one transaction.
type indexBuilder struct {
	pos indexPos // after the last entry added
	n   int      // entries in this batch

	lines   *linesChunk            // the chunk being filled, nil before the first entry
	touched map[uint64]*linesChunk // chunks of this batch
	tails   map[string][]uint64    // new seqs of each posting key
	hours   map[string][2]uint64   // hour → lowest and highest seq of this batch
	key     []byte
}

// linesChunk is one "lines" value, decoded.
type linesChunk struct {
	num    uint64
	start  int64 // offset of the first line
	lens   []uint32
	hashes [][hashPrefix]byte
}

func newIndexBuilder(pos indexPos) *indexBuilder {
	b := &indexBuilder{pos: pos}
	b.next()
	return b
}

// next starts a new batch.
func (b *indexBuilder) next() {
	b.n = 0
	b.touched = map[uint64]*linesChunk{}
	b.tails = map[string][]uint64{}
	b.hours = map[string][2]uint64{}
	if b.lines != nil {
		b.touched[b.lines.num] = b.lines
	}
}

// add takes the next entry, whose line (without newline) starts at the
// builder's offset.
func (b *indexBuilder) add(e *Entry, line []byte) {
	num := (e.Seq - 1) / linesPerChunk
	if b.lines == nil || b.lines.num != num {
		if b.lines == nil && (e.Seq-1)%linesPerChunk != 0 {
			// Continuing a chunk written by an earlier batch: it is
			// read in write, before its new lines are appended.
			b.lines = &linesChunk{num: num, start: -1}
		} else {
			b.lines = &linesChunk{num: num, start: b.pos.offset}
		}
		b.touched[num] = b.lines
	}
	sum := sha256.Sum256(line)
	b.lines.lens = append(b.lines.lens, uint32(len(line)))
	b.lines.hashes = append(b.lines.hashes, [hashPrefix]byte(sum[:hashPrefix]))

	serial, hasSerial, repo, id := indexFields(e.Data)
	post := func(tag byte, v string) {
		if !indexable(v) {
			return
		}
		b.key = append(append(b.key[:0], tag), v...)
		b.tails[string(b.key)] = append(b.tails[string(b.key)], e.Seq)
	}
	post(tagKind, e.Kind)
	post(tagActor, e.Actor)
	post(tagRepo, repo)
	post(tagID, id)
	if hasSerial {
		b.key = binary.BigEndian.AppendUint64(append(b.key[:0], tagSerial), serial)
		b.tails[string(b.key)] = append(b.tails[string(b.key)], e.Seq)
	}
	hour := e.Time.UTC().Format("2006010215")
	h, ok := b.hours[hour]
	if !ok {
		h = [2]uint64{e.Seq, e.Seq}
	}
	b.hours[hour] = [2]uint64{min(h[0], e.Seq), max(h[1], e.Seq)}

	b.pos.seq = e.Seq
	b.pos.offset += int64(len(line)) + 1
	b.pos.hash = sum
	b.n++
}

// write stores the batch.
func (b *indexBuilder) write(tx *bbolt.Tx) error {
	lines := tx.Bucket(bucketLines)
	lines.FillPercent = 1 // runs are only ever appended
	nums := make([]uint64, 0, len(b.touched))
	for num := range b.touched {
		nums = append(nums, num)
	}
	slices.Sort(nums)
	for _, num := range nums {
		c := b.touched[num]
		if len(c.lens) == 0 {
			continue
		}
		key := binary.BigEndian.AppendUint64(nil, num)
		if c.start < 0 {
			// The chunk's earlier lines are in the file: keep them,
			// and from now on this chunk holds them too.
			old, ok := decodeLinesChunk(num, lines.Get(key))
			if !ok {
				return fmt.Errorf("lines of run %d are damaged", num)
			}
			c.start = old.start
			c.lens = append(old.lens, c.lens...)
			c.hashes = append(old.hashes, c.hashes...)
		}
		if err := lines.Put(key, c.encode()); err != nil {
			return err
		}
	}
	// In key order, so that bbolt fills its pages from left to right: most
	// keys are new (a request ID, a serial), and come after the last one.
	post := tx.Bucket(bucketPost)
	post.FillPercent = 0.9
	keys := make([]string, 0, len(b.tails))
	for key := range b.tails {
		keys = append(keys, key)
	}
	slices.Sort(keys)
	for _, key := range keys {
		if err := appendPostings(post, []byte(key), b.tails[key]); err != nil {
			return err
		}
	}
	hours := tx.Bucket(bucketHours)
	for hour, h := range b.hours {
		if old := hours.Get([]byte(hour)); len(old) == 16 {
			h[0] = min(h[0], binary.BigEndian.Uint64(old))
			h[1] = max(h[1], binary.BigEndian.Uint64(old[8:]))
		}
		v := binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(nil, h[0]), h[1])
		if err := hours.Put([]byte(hour), v); err != nil {
			return err
		}
	}
	return putPos(tx, b.pos)
}

func (c *linesChunk) encode() []byte {
	out := binary.AppendUvarint(make([]byte, 0, 8+len(c.lens)*(3+hashPrefix)), uint64(c.start))
	for i, n := range c.lens {
		out = binary.AppendUvarint(out, uint64(n))
		out = append(out, c.hashes[i][:]...)
	}
	return out
}

func decodeLinesChunk(num uint64, v []byte) (*linesChunk, bool) {
	if v == nil {
		return nil, false
	}
	start, n := binary.Uvarint(v)
	if n <= 0 {
		return nil, false
	}
	c := &linesChunk{num: num, start: int64(start)}
	for v = v[n:]; len(v) > 0; {
		l, n := binary.Uvarint(v)
		if n <= 0 || len(v) < n+hashPrefix {
			return nil, false
		}
		c.lens = append(c.lens, uint32(l))
		c.hashes = append(c.hashes, [hashPrefix]byte(v[n:n+hashPrefix]))
		v = v[n+hashPrefix:]
	}
	return c, true
}

// appendPostings adds seqs, all above those the key has, to the key's
// last chunk, and starts new chunks as they fill.
func appendPostings(b *bbolt.Bucket, key []byte, seqs []uint64) error {
	prefix := append(bytes.Clone(key), 0)
	var first uint64
	var items []uint64
	c := b.Cursor()
	// The key's last chunk is the one before where a chunk starting at
	// the greatest seq would go.
	var k, v []byte
	if sk, _ := c.Seek(binary.BigEndian.AppendUint64(bytes.Clone(prefix), ^uint64(0))); sk == nil {
		k, v = c.Last()
	} else {
		k, v = c.Prev()
	}
	if k != nil && bytes.HasPrefix(k, prefix) && len(k) == len(prefix)+8 {
		first = binary.BigEndian.Uint64(k[len(prefix):])
		items = decodePostings(v)
	}
	for len(seqs) > 0 {
		if len(items) == 0 {
			first = seqs[0]
		}
		room := min(postingChunk-len(items), len(seqs))
		items = append(items, seqs[:room]...)
		seqs = seqs[room:]
		if err := b.Put(binary.BigEndian.AppendUint64(bytes.Clone(prefix), first), encodePostings(items)); err != nil {
			return err
		}
		if len(items) == postingChunk {
			items = items[:0]
		}
	}
	return nil
}

func encodePostings(seqs []uint64) []byte {
	out := make([]byte, 0, len(seqs)*2)
	var last uint64
	for _, s := range seqs {
		out = binary.AppendUvarint(out, s-last)
		last = s
	}
	return out
}

func decodePostings(v []byte) []uint64 {
	out := make([]uint64, 0, len(v)/2)
	var last uint64
	for len(v) > 0 {
		d, n := binary.Uvarint(v)
		if n <= 0 {
			return out
		}
		last += d
		out = append(out, last)
		v = v[n:]
	}
	return out
}

// indexFields returns what the index looks up in an entry's data: its
// "serial", "repo" and "id" (a request ID) at the top level.
func indexFields(data []byte) (serial uint64, hasSerial bool, repo, id string) {
	s := jsonScan{b: data}
	if !s.lit('{') || s.lit('}') {
		return 0, false, "", ""
	}
	for {
		key, ok := s.str()
		if !ok || !s.lit(':') {
			return 0, false, "", ""
		}
		s.space()
		start := s.i
		if !s.skipValue() {
			return 0, false, "", ""
		}
		val := data[start:s.i]
		switch key {
		case "serial":
			serial, hasSerial = 0, false
			if n, err := strconv.ParseUint(string(val), 10, 64); err == nil {
				serial, hasSerial = n, true
			}
		case "repo":
			repo = plainString(val)
		case "id":
			id = plainString(val)
		}
		if s.lit(',') {
			continue
		}
		if s.lit('}') {
			return serial, hasSerial, repo, id
		}
		return 0, false, "", ""
	}
}

// plainString returns a JSON string's text, or "" for any other value.
func plainString(val []byte) string {
	if len(val) < 2 || val[0] != '"' {
		return ""
	}
	if bytes.IndexByte(val, '\\') < 0 && utf8.Valid(val) {
		return string(val[1 : len(val)-1])
	}
	var s string
	if json.Unmarshal(val, &s) != nil {
		return ""
	}
	return s
}
