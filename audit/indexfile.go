package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"go.etcd.io/bbolt"
)

// IndexFile is a persistent index of one audit log, kept in a bbolt file
// beside it (or wherever its owner puts it). Unlike Index, which is built
// from the whole log in memory by every command that reads it, an
// IndexFile is built once and then caught up from where it stopped: each
// open reads only the entries appended since, so a lookup costs the same
// in a log of a year as in a log of a day.
//
// It holds no entry itself. For each entry it keeps where its line is in
// the log file and the first bytes of the line's hash; lookups read the
// lines from the log and check them against those hashes, so a line
// changed after it was indexed is an error, not an answer. It keeps
// postings by kind, actor, repository, certificate serial and request ID,
// and the range of seqs of every UTC hour.
//
// An IndexFile records the log's chain position after the last entry it
// indexed (seq, byte offset, hash of that line). Opening it checks that
// the log still has that line at that offset: a log that was cut, replaced
// or rewritten is indexed again from its start. Catching up verifies the
// chain of the new entries from that position on, as Verify does; a log
// that does not verify is indexed up to the entry before the failure.
//
// An IndexFile is safe for concurrent use: lookups run while entries are
// added.
type IndexFile struct {
	db      *bbolt.DB
	log     *os.File
	logPath string

	mu  sync.Mutex // serialises catching up
	pos indexPos   // guarded by mu; readers use the committed bbolt state

	// Rebuilt says why Open indexed the log again from its start; empty
	// when it continued from where the file left off. Added is how many
	// entries Open indexed.
	Rebuilt string
	Added   uint64
}

// indexPos is how far an IndexFile has indexed its log.
type indexPos struct {
	seq    uint64
	offset int64
	hash   [sha256.Size]byte
}

// ErrIndexMismatch: the log does not hold, where the index says, the line
// the index recorded. The log was changed after it was indexed; verify it
// (jitssh audit verify), and rebuild the index.
var ErrIndexMismatch = errors.New("audit log does not match its index")

// indexFormat is the version of the file's layout; a file of another
// version is indexed again.
const indexFormat = 1

// Buckets and meta keys of the file.
var (
	bucketMeta  = []byte("meta")
	bucketLines = []byte("lines")
	bucketPost  = []byte("postings")
	bucketHours = []byte("hours")

	metaFormat = []byte("format")
	metaSeq    = []byte("seq")
	metaOffset = []byte("offset")
	metaHash   = []byte("hash")
)

// Catching up commits every indexBatch entries, so that a long build
// keeps bounded memory and shows progress to readers.
const indexBatch = 50_000

// OpenIndexFile opens, or creates, the index at path of the log at
// logPath, checks that it matches the log, rebuilding it from the start
// when it does not, and catches it up with the log. An index another
// process has open is waited for a few seconds, then refused.
func OpenIndexFile(path, logPath string) (*IndexFile, error) {
	ix, err := OpenIndexFileBehind(path, logPath)
	if err != nil {
		return nil, err
	}
	if ix.Added, err = ix.CatchUp(); err != nil {
		ix.Close()
		return nil, err
	}
	return ix, nil
}

// OpenIndexFileBehind is OpenIndexFile without catching up: for a process
// that catches up in the background rather than wait for a first build.
func OpenIndexFileBehind(path, logPath string) (*IndexFile, error) {
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		if errors.Is(err, bbolt.ErrTimeout) {
			return nil, fmt.Errorf("open audit index %s: in use by another process", path)
		}
		return nil, fmt.Errorf("open audit index %s: %w", path, err)
	}
	log, err := os.Open(logPath)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open audit log: %w", err)
	}
	ix := &IndexFile{db: db, log: log, logPath: logPath}
	if err := ix.open(); err != nil {
		ix.Close()
		return nil, fmt.Errorf("audit index %s: %w", path, err)
	}
	return ix, nil
}

// open reads the file's position and checks it against the log.
func (ix *IndexFile) open() error {
	var format uint64
	err := ix.db.Update(func(tx *bbolt.Tx) error {
		for _, name := range [][]byte{bucketMeta, bucketLines, bucketPost, bucketHours} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		m := tx.Bucket(bucketMeta)
		format = beUint(m.Get(metaFormat))
		ix.pos.seq = beUint(m.Get(metaSeq))
		ix.pos.offset = int64(beUint(m.Get(metaOffset)))
		copy(ix.pos.hash[:], m.Get(metaHash))
		return nil
	})
	if err != nil {
		return err
	}
	switch {
	case format == 0 && ix.pos.seq == 0:
		return ix.reset("")
	case format != indexFormat:
		return ix.reset(fmt.Sprintf("the index has format %d, this jitssh writes %d", format, indexFormat))
	}
	if reason := ix.check(); reason != "" {
		return ix.reset(reason)
	}
	return nil
}

// check returns why the log no longer matches the index, or "".
func (ix *IndexFile) check() string {
	if ix.pos.seq == 0 {
		return ""
	}
	size, err := sizeUnderLock(ix.log)
	if err != nil {
		return "the log cannot be read: " + err.Error()
	}
	if size < ix.pos.offset {
		return fmt.Sprintf("the log has %d bytes, but the index covers %d: it was cut short or replaced", size, ix.pos.offset)
	}
	var loc lineLoc
	err = ix.db.View(func(tx *bbolt.Tx) error {
		var r lineReader
		var ok bool
		if loc, ok = r.find(tx, ix.pos.seq); !ok {
			return fmt.Errorf("entry %d is not indexed", ix.pos.seq)
		}
		return nil
	})
	if err != nil {
		return "the index is damaged: " + err.Error()
	}
	line := make([]byte, loc.length+1)
	if _, err := ix.log.ReadAt(line, loc.offset); err != nil {
		return fmt.Sprintf("entry %d cannot be read where the index has it: %v", ix.pos.seq, err)
	}
	if line[loc.length] != '\n' || sha256.Sum256(line[:loc.length]) != ix.pos.hash {
		return fmt.Sprintf("entry %d is not the line the index recorded: the log was rewritten or replaced", ix.pos.seq)
	}
	return ""
}

// reset empties the index, to build it again from the start of the log.
func (ix *IndexFile) reset(reason string) error {
	ix.Rebuilt = reason
	ix.pos = indexPos{hash: genesisSum}
	return ix.db.Update(func(tx *bbolt.Tx) error {
		for _, name := range [][]byte{bucketMeta, bucketLines, bucketPost, bucketHours} {
			if err := tx.DeleteBucket(name); err != nil && !errors.Is(err, bbolt.ErrBucketNotFound) {
				return err
			}
			if _, err := tx.CreateBucket(name); err != nil {
				return err
			}
		}
		return putPos(tx, ix.pos)
	})
}

// Rebuild indexes the log again from its start.
func (ix *IndexFile) Rebuild() (uint64, error) {
	ix.mu.Lock()
	err := ix.reset("rebuild asked for")
	ix.mu.Unlock()
	if err != nil {
		return 0, fmt.Errorf("rebuild audit index: %w", err)
	}
	return ix.CatchUp()
}

func putPos(tx *bbolt.Tx, p indexPos) error {
	m := tx.Bucket(bucketMeta)
	for _, kv := range []struct{ k, v []byte }{
		{metaFormat, binary.BigEndian.AppendUint64(nil, indexFormat)},
		{metaSeq, binary.BigEndian.AppendUint64(nil, p.seq)},
		{metaOffset, binary.BigEndian.AppendUint64(nil, uint64(p.offset))},
		{metaHash, bytes.Clone(p.hash[:])},
	} {
		if err := m.Put(kv.k, kv.v); err != nil {
			return err
		}
	}
	return nil
}

// CatchUp indexes the entries appended to the log since the last call (or
// since the index was built), verifying their chain from the last indexed
// entry on. It returns how many entries it added. A log that fails to
// verify is indexed up to the entry before the failure, and the failure,
// a *VerifyError, is returned.
func (ix *IndexFile) CatchUp() (uint64, error) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	size, err := sizeUnderLock(ix.log)
	if err != nil {
		return 0, fmt.Errorf("read audit log %s: %w", ix.logPath, err)
	}
	if size < ix.pos.offset {
		return 0, fmt.Errorf("%w: %s has %d bytes, but %d are indexed: it was cut short or replaced; rebuild the index",
			ErrIndexMismatch, ix.logPath, size, ix.pos.offset)
	}
	if size == ix.pos.offset {
		return 0, nil
	}
	s := newScanner(io.NewSectionReader(ix.log, ix.pos.offset, size-ix.pos.offset), 0)
	s.prevSeq, s.maxSeq, s.lineNo = ix.pos.seq, ix.pos.seq, int(ix.pos.seq)
	s.remember(ix.pos.seq, ix.pos.hash)
	b := newIndexBuilder(ix.pos)
	var added uint64
	commit := func() error {
		if b.n == 0 {
			return nil
		}
		if err := ix.db.Update(b.write); err != nil {
			return fmt.Errorf("write audit index: %w", err)
		}
		ix.pos = b.pos
		added += uint64(b.n)
		b.next()
		return nil
	}
	_, err = s.run(func(e *Entry, line []byte, _ int) error {
		b.add(e, line)
		if b.n >= indexBatch {
			return commit()
		}
		return nil
	}, func(v *VerifyError) error { return v })
	if cerr := commit(); err == nil {
		err = cerr
	}
	if err != nil {
		return added, fmt.Errorf("audit log %s: %w", ix.logPath, err)
	}
	return added, nil
}

// Len returns the number of entries indexed, which is the last seq.
func (ix *IndexFile) Len() uint64 {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	return ix.pos.seq
}

// Head returns the chain position after the last entry indexed.
func (ix *IndexFile) Head() Chain {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	return Chain{Seq: ix.pos.seq, Hash: hex.EncodeToString(ix.pos.hash[:])}
}

// Close closes the index and the log it reads.
func (ix *IndexFile) Close() error {
	err := ix.db.Close()
	if lerr := ix.log.Close(); err == nil {
		err = lerr
	}
	return err
}

func beUint(b []byte) uint64 {
	if len(b) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(b)
}
