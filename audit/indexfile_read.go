package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"time"

	"go.etcd.io/bbolt"
)

// lineLoc is where an entry's line is in the log.
type lineLoc struct {
	offset int64
	length int
	hash   [hashPrefix]byte
}

// lineReader finds lines, keeping the last "lines" chunk it decoded:
// lookups in seq order mostly land in the same one.
type lineReader struct {
	c *linesChunk
}

func (r *lineReader) find(tx *bbolt.Tx, seq uint64) (lineLoc, bool) {
	if seq == 0 {
		return lineLoc{}, false
	}
	num := (seq - 1) / linesPerChunk
	if r.c == nil || r.c.num != num {
		c, ok := decodeLinesChunk(num, tx.Bucket(bucketLines).Get(binary.BigEndian.AppendUint64(nil, num)))
		if !ok {
			return lineLoc{}, false
		}
		r.c = c
	}
	i := int((seq - 1) % linesPerChunk)
	if i >= len(r.c.lens) {
		return lineLoc{}, false
	}
	off := r.c.start
	for _, n := range r.c.lens[:i] {
		off += int64(n) + 1
	}
	return lineLoc{offset: off, length: int(r.c.lens[i]), hash: r.c.hashes[i]}, true
}

// entryReader reads entries from the log where the index has them.
type entryReader struct {
	ix    *IndexFile
	tx    *bbolt.Tx
	lines lineReader
	p     parser
	buf   []byte
}

// read returns the entry with seq, checked against the hash the index
// recorded.
func (r *entryReader) read(seq uint64) (Entry, error) {
	loc, ok := r.lines.find(r.tx, seq)
	if !ok {
		return Entry{}, fmt.Errorf("entry %d is not indexed", seq)
	}
	if cap(r.buf) < loc.length {
		r.buf = make([]byte, loc.length)
	}
	line := r.buf[:loc.length]
	if _, err := r.ix.log.ReadAt(line, loc.offset); err != nil {
		return Entry{}, fmt.Errorf("%w: entry %d: %v", ErrIndexMismatch, seq, err)
	}
	return r.parse(seq, line, loc.hash)
}

func (r *entryReader) parse(seq uint64, line []byte, want [hashPrefix]byte) (Entry, error) {
	if sum := sha256.Sum256(line); !bytes.Equal(sum[:hashPrefix], want[:]) {
		return Entry{}, fmt.Errorf("%w: entry %d was changed after it was indexed", ErrIndexMismatch, seq)
	}
	e, err := r.p.parse(line)
	if err != nil || e.Seq != seq {
		return Entry{}, fmt.Errorf("%w: entry %d does not parse: %v", ErrIndexMismatch, seq, err)
	}
	e.Data = bytes.Clone(e.Data)
	return e, nil
}

// scan calls fn with the entries from seq lo to hi in order, reading the
// log sequentially, until fn returns false.
func (r *entryReader) scan(lo, hi uint64, fn func(Entry) bool) error {
	const window = 1 << 20
	for seq := lo; seq <= hi; {
		first, ok := r.lines.find(r.tx, seq)
		if !ok {
			return nil
		}
		// Read the lines of up to a window of bytes at once.
		end, last := first.offset+int64(first.length)+1, seq
		var locs []lineLoc
		locs = append(locs, first)
		for s := seq + 1; s <= hi && end-first.offset < window; s++ {
			loc, ok := r.lines.find(r.tx, s)
			if !ok {
				break
			}
			locs = append(locs, loc)
			end, last = loc.offset+int64(loc.length)+1, s
		}
		if int64(cap(r.buf)) < end-first.offset {
			r.buf = make([]byte, end-first.offset)
		}
		buf := r.buf[:end-first.offset]
		if _, err := r.ix.log.ReadAt(buf, first.offset); err != nil {
			return fmt.Errorf("%w: entries %d to %d: %v", ErrIndexMismatch, seq, last, err)
		}
		for i, loc := range locs {
			at := loc.offset - first.offset
			e, err := r.parse(seq+uint64(i), buf[at:at+int64(loc.length)], loc.hash)
			if err != nil {
				return err
			}
			if !fn(e) {
				return nil
			}
		}
		seq = last + 1
	}
	return nil
}

// view runs fn on a consistent view of the index.
func (ix *IndexFile) view(fn func(r *entryReader) error) error {
	return ix.db.View(func(tx *bbolt.Tx) error {
		return fn(&entryReader{ix: ix, tx: tx})
	})
}

// Get returns the entry with the given seq.
func (ix *IndexFile) Get(seq uint64) (Entry, bool, error) {
	var e Entry
	var found bool
	err := ix.view(func(r *entryReader) error {
		if _, ok := r.lines.find(r.tx, seq); !ok {
			return nil
		}
		var err error
		e, err = r.read(seq)
		found = err == nil
		return err
	})
	return e, found, err
}

// RequestEntries returns every entry whose data names the request with
// that ID, in seq order.
func (ix *IndexFile) RequestEntries(id string) ([]Entry, error) {
	if !indexable(id) {
		return nil, nil
	}
	var out []Entry
	err := ix.view(func(r *entryReader) error {
		return eachSeq(r.tx, append([]byte{tagID}, id...), 1, ^uint64(0), func(seq uint64) (bool, error) {
			e, err := r.read(seq)
			if err != nil {
				return false, err
			}
			out = append(out, e)
			return true, nil
		})
	})
	return out, err
}

// List returns the entries that match f, in seq order, as Index.List
// does. It reads the postings of the most selective field f sets (serial,
// repo, actor, kind), within the seqs of the hours f's times cover; with
// none set, the log itself over those seqs.
func (ix *IndexFile) List(f Filter) ([]Entry, error) {
	var out []Entry
	err := ix.view(func(r *entryReader) error {
		lo, hi := uint64(1), ^uint64(0)
		if !f.Since.IsZero() || !f.Until.IsZero() {
			var ok bool
			if lo, hi, ok = hourSeqs(r.tx, f.Since, f.Until); !ok {
				return nil
			}
		}
		keep := func(e Entry) bool {
			if f.match(&row{Seq: e.Seq, Time: e.Time, Kind: e.Kind, Actor: e.Actor, Data: e.Data}) {
				out = append(out, e)
			}
			return f.Limit <= 0 || len(out) < f.Limit
		}
		key := f.fileKey()
		if key == nil {
			return r.scan(lo, hi, keep)
		}
		return eachSeq(r.tx, key, lo, hi, func(seq uint64) (bool, error) {
			e, err := r.read(seq)
			if err != nil {
				return false, err
			}
			return keep(e), nil
		})
	})
	return out, err
}

// fileKey is the posting key List reads for f, or nil to scan.
func (f Filter) fileKey() []byte {
	switch {
	case f.Serial != nil:
		return binary.BigEndian.AppendUint64([]byte{tagSerial}, *f.Serial)
	case indexable(f.Repo):
		return append([]byte{tagRepo}, f.Repo...)
	case indexable(f.Actor):
		return append([]byte{tagActor}, f.Actor...)
	case indexable(f.Kind):
		return append([]byte{tagKind}, f.Kind...)
	}
	return nil
}

// eachSeq calls fn with key's seqs from lo to hi in order, until fn
// returns false or fails.
func eachSeq(tx *bbolt.Tx, key []byte, lo, hi uint64, fn func(uint64) (bool, error)) error {
	prefix := append(bytes.Clone(key), 0)
	c := tx.Bucket(bucketPost).Cursor()
	// The chunk that holds lo starts at or before it.
	k, v := c.Seek(binary.BigEndian.AppendUint64(bytes.Clone(prefix), lo))
	if k == nil || !bytes.Equal(k, binary.BigEndian.AppendUint64(bytes.Clone(prefix), lo)) {
		if pk, pv := c.Prev(); pk != nil && bytes.HasPrefix(pk, prefix) && len(pk) == len(prefix)+8 {
			k, v = pk, pv
		} else {
			k, v = c.Seek(binary.BigEndian.AppendUint64(bytes.Clone(prefix), lo))
		}
	}
	for ; k != nil && bytes.HasPrefix(k, prefix) && len(k) == len(prefix)+8; k, v = c.Next() {
		if binary.BigEndian.Uint64(k[len(prefix):]) > hi {
			return nil
		}
		for _, seq := range decodePostings(v) {
			if seq < lo {
				continue
			}
			if seq > hi {
				return nil
			}
			more, err := fn(seq)
			if err != nil || !more {
				return err
			}
		}
	}
	return nil
}

// hourSeqs returns the lowest and highest seq of the entries in the hours
// from since to until (zero: open); false when there are none.
func hourSeqs(tx *bbolt.Tx, since, until time.Time) (lo, hi uint64, ok bool) {
	c := tx.Bucket(bucketHours).Cursor()
	from := []byte("0")
	if !since.IsZero() {
		from = []byte(since.UTC().Format("2006010215"))
	}
	var to []byte
	if !until.IsZero() {
		to = []byte(until.UTC().Format("2006010215"))
	}
	lo = ^uint64(0)
	for k, v := c.Seek(from); k != nil; k, v = c.Next() {
		if to != nil && bytes.Compare(k, to) > 0 {
			break
		}
		if len(v) != 16 {
			continue
		}
		lo = min(lo, binary.BigEndian.Uint64(v))
		hi = max(hi, binary.BigEndian.Uint64(v[8:]))
		ok = true
	}
	return lo, hi, ok
}
