package audit

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jitssh/jitssh/internal/atomicfile"
	"golang.org/x/crypto/ssh"
)

// Options configure a Log.
type Options struct {
	// RepairTornTail moves a torn tail found by Open, or found later after
	// another process crashed mid-write, to a sidecar file PATH.torn-<unixnanos>
	// and records an "audit.repair" entry, instead of refusing to go on.
	RepairTornTail bool

	// CheckpointSigner and CheckpointInterval, when both are set, make the
	// Log write a checkpoint every interval if entries were appended since
	// its last one.
	CheckpointSigner   ssh.Signer
	CheckpointInterval time.Duration

	// Journal marks a log that only AppendLines writes, from a writer that
	// can produce any entry again (the approval daemon's state machine,
	// which replays its raft log after a crash). Append and Checkpoint are
	// refused, so the file holds exactly the writer's chain; a torn tail is
	// moved to its sidecar file without an "audit.repair" entry, since the
	// writer writes the lost entries again. SignHead replaces checkpoints.
	Journal bool

	// Logger receives what the Log cannot return to a caller: failed periodic
	// checkpoints. Nil means slog.Default().
	Logger *slog.Logger
}

// Log is an open audit log. Its methods are safe for concurrent use, and
// several processes may have the same file open as a Log at once.
type Log struct {
	path string
	opts Options
	f    *os.File

	// Owned by the writer goroutine, and by Open before it starts it.
	head   head
	end    int64 // file size after this Log's last write or tail read
	sticky error // set when an fsync failed: what reached disk is unknown
	buf    []byte

	ops     chan *op
	closeMu sync.RWMutex // held for reading while sending on ops
	closed  bool
	done    chan struct{} // closed when the writer goroutine has finished
	stop    chan struct{} // closed by Close to stop periodic checkpoints
	wg      sync.WaitGroup

	repaired       atomic.Pointer[TornTailError]
	lastCheckpoint atomic.Uint64 // seq of this Log's last checkpoint entry
	syncs          atomic.Uint64 // fsyncs of the log file, for measurement
}

// op is one request to the writer goroutine.
type op struct {
	// An entry to append.
	kind, actor string
	data        json.RawMessage
	// Or lines made with Chain.Next, to append all or none.
	lines [][]byte
	// headFile, when set, replaces PATH.head once the entry is durable,
	// unless the file already holds a checkpoint at headSeq or later.
	headFile []byte
	headSeq  uint64

	// headOnly asks for the current durable head instead.
	headOnly bool

	// Results, valid once done is closed.
	entry Entry
	head  head
	err   error
	done  chan struct{}
}

// Group commit limits: one write and one fsync carry at most this much.
const (
	maxBatchOps   = 1024
	maxBatchBytes = 4 << 20
)

// Open opens the log at path for appending, creating it with mode 0600 if it
// does not exist. It reads the end of the file and checks its last line: a
// torn tail makes Open fail with a *TornTailError (wrapping ErrTornTail)
// unless opts.RepairTornTail is set. Open does not verify the whole chain;
// Verify does.
func Open(path string, opts Options) (*Log, error) {
	if err := checkJournalMarker(path, opts.Journal); err != nil {
		return nil, err
	}
	f, err := openFile(path)
	if err != nil {
		return nil, err
	}
	l := &Log{
		path: path,
		opts: opts,
		f:    f,
		end:  -1, // unknown: the first refresh reads the tail
		ops:  make(chan *op, maxBatchOps),
		done: make(chan struct{}),
		stop: make(chan struct{}),
	}
	if l.opts.Logger == nil {
		l.opts.Logger = slog.Default()
	}
	if err := l.openTail(); err != nil {
		f.Close()
		return nil, err
	}
	go l.run()
	if opts.CheckpointSigner != nil && opts.CheckpointInterval > 0 && !opts.Journal {
		l.wg.Add(1)
		go l.checkpointEvery(opts.CheckpointSigner, opts.CheckpointInterval)
	}
	return l, nil
}

// openFile opens or creates the log, making a new file's directory entry
// durable so the log does not vanish in a crash after its first entry.
func openFile(path string) (*os.File, error) {
	const flags = os.O_RDWR | os.O_APPEND
	f, err := os.OpenFile(path, flags|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		f, err = os.OpenFile(path, flags, 0)
		if err != nil {
			return nil, fmt.Errorf("open audit log: %w", err)
		}
		return f, nil
	}
	if err != nil {
		return nil, fmt.Errorf("create audit log: %w", err)
	}
	if err := atomicfile.SyncDir(filepath.Dir(path)); err != nil {
		f.Close()
		return nil, fmt.Errorf("create audit log %s: sync directory: %w", path, err)
	}
	return f, nil
}

// openTail reads the tail under the lock and, when it repaired a torn tail,
// records the repair before anyone else can append.
func (l *Log) openTail() error {
	if err := lockFile(l.f); err != nil {
		return fmt.Errorf("lock audit log %s: %w", l.path, err)
	}
	defer unlockFile(l.f)
	ops, err := l.refresh(nil)
	if err != nil {
		return err
	}
	if len(ops) > 0 {
		l.writeLocked(ops)
		if err := ops[0].err; err != nil {
			return fmt.Errorf("torn tail of %s moved to %s, but the repair entry was not recorded: %w", l.path, l.repaired.Load().Sidecar, err)
		}
	}
	return nil
}

// Path returns the path the Log was opened with.
func (l *Log) Path() string { return l.path }

// Repaired returns the last torn tail this Log moved aside (see
// Options.RepairTornTail), or nil if it never repaired one.
func (l *Log) Repaired() *TornTailError { return l.repaired.Load() }

// Append records one entry and returns it once it is durable: written and
// fsync'd. Only then may the caller acknowledge what the entry records. data
// must encode (with encoding/json) to a JSON object, or be nil. The kinds
// "checkpoint" and "audit.repair" are reserved for the Log itself.
//
// Appends from many goroutines are committed together: one write and one
// fsync for all the entries waiting at that moment.
func (l *Log) Append(kind, actor string, data any) (Entry, error) {
	switch kind {
	case "":
		return Entry{}, fmt.Errorf("%w: kind is empty", ErrInvalidEntry)
	case KindCheckpoint, KindRepair:
		return Entry{}, fmt.Errorf("%w: kind %q is reserved", ErrInvalidEntry, kind)
	}
	if l.opts.Journal {
		return Entry{}, fmt.Errorf("%w: %s is a journal; only its writer appends to it", ErrInvalidEntry, l.path)
	}
	raw, err := encodeData(data)
	if err != nil {
		return Entry{}, fmt.Errorf("append %s entry: %w", kind, err)
	}
	o := &op{kind: kind, actor: actor, data: raw}
	if err := l.submit(o); err != nil {
		return Entry{}, err
	}
	return o.entry, o.err
}

// submit hands o to the writer goroutine and waits for its result.
func (l *Log) submit(o *op) error {
	o.done = make(chan struct{})
	l.closeMu.RLock()
	if l.closed {
		l.closeMu.RUnlock()
		return ErrClosed
	}
	l.ops <- o
	l.closeMu.RUnlock()
	<-o.done
	return nil
}

// Close waits for appends in progress, stops periodic checkpoints and closes
// the file. Appending after Close fails with ErrClosed.
func (l *Log) Close() error {
	l.closeMu.Lock()
	if l.closed {
		l.closeMu.Unlock()
		return nil
	}
	l.closed = true
	close(l.stop)
	close(l.ops)
	l.closeMu.Unlock()

	l.wg.Wait()
	<-l.done
	if err := l.f.Close(); err != nil {
		return fmt.Errorf("close audit log %s: %w", l.path, err)
	}
	return nil
}

// checkpointEvery writes a checkpoint every interval when the log has grown
// since the last one.
func (l *Log) checkpointEvery(signer ssh.Signer, interval time.Duration) {
	defer l.wg.Done()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
		}
		h, err := l.durableHead()
		if err == nil && h.seq == l.lastCheckpoint.Load() {
			continue // nothing new since our last checkpoint
		}
		if err == nil {
			_, err = l.checkpointAt(h, signer)
		}
		if err != nil && !errors.Is(err, ErrClosed) {
			l.opts.Logger.Error("audit checkpoint failed", "log", l.path, "err", err)
		}
	}
}
