package audit

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/jitssh/jitssh/internal/atomicfile"
	"golang.org/x/crypto/ssh"
)

// Chain is the position of a log: the seq of its last entry and the hex
// SHA-256 of that entry's line. The zero Chain is not a position; an empty
// log is at GenesisChain.
//
// A writer that must produce the same log wherever it runs (the approval
// daemon's replicated state machine) computes its lines with Chain.Next from
// a Chain it keeps in its own state, and hands them to Log.AppendLines: the
// lines, their seqs and their hashes are then a function of the writer's
// inputs alone, identical on every replica.
type Chain struct {
	Seq  uint64 `json:"seq"`
	Hash string `json:"hash"`
}

// GenesisChain is the position of an empty log.
var GenesisChain = Chain{Seq: 0, Hash: GenesisHash}

// IsZero reports whether c is the zero Chain, which is no position at all.
func (c Chain) IsZero() bool { return c == Chain{} }

// Next encodes the entry that follows c, at time t, and returns the line
// (canonical JSON, without the newline) and the position after it. data
// must encode to a JSON object, or be nil. The kinds reserved for the Log
// itself are refused.
func (c Chain) Next(kind, actor string, t time.Time, data any) (Chain, []byte, error) {
	switch kind {
	case "":
		return c, nil, fmt.Errorf("%w: kind is empty", ErrInvalidEntry)
	case KindCheckpoint, KindRepair:
		return c, nil, fmt.Errorf("%w: kind %q is reserved", ErrInvalidEntry, kind)
	}
	if !validHash(c.Hash) {
		return c, nil, fmt.Errorf("%w: chain position %d has no valid hash", ErrInvalidEntry, c.Seq)
	}
	raw, err := encodeData(data)
	if err != nil {
		return c, nil, fmt.Errorf("%s entry: %w", kind, err)
	}
	e, line, err := head{seq: c.Seq, hash: c.Hash}.next(kind, actor, raw, t)
	if err != nil {
		return c, nil, err
	}
	return Chain{Seq: e.Seq, Hash: lineHash(line)}, line, nil
}

// ErrNotContinuation is returned by AppendLines when a line does not
// continue the log: its seq is not the next one, or its prev is not the
// hash of the log's last line.
var ErrNotContinuation = errors.New("line does not continue the log")

// Head returns the position of the log's last durable entry.
func (l *Log) Head() (Chain, error) {
	h, err := l.durableHead()
	if err != nil {
		return Chain{}, err
	}
	return Chain{Seq: h.seq, Hash: h.hash}, nil
}

// AppendLines appends lines made with Chain.Next, all or none, with one
// write and one fsync. The first must continue the log's last entry and each
// the one before it; otherwise nothing is written and the error wraps
// ErrNotContinuation.
func (l *Log) AppendLines(lines [][]byte) error {
	if len(lines) == 0 {
		return nil
	}
	o := &op{lines: lines}
	if err := l.submit(o); err != nil {
		return err
	}
	return o.err
}

// SignHead signs the log's durable head with signer and writes it to
// PATH.head, without adding an entry. It is the checkpoint of a log that
// only AppendLines writes (see Options.Journal), whose entries must stay
// exactly those of its writer.
func (l *Log) SignHead(signer ssh.Signer) (Head, error) {
	h, err := l.durableHead()
	if err != nil {
		return Head{}, fmt.Errorf("sign head of audit log %s: %w", l.path, err)
	}
	hd := Head{Seq: h.seq, Hash: h.hash, Time: time.Now().UTC()}
	if err := signHead(&hd, signer); err != nil {
		return Head{}, err
	}
	b, err := json.Marshal(hd)
	if err != nil {
		return Head{}, fmt.Errorf("encode head: %w", err)
	}
	b = append(b, '\n')
	// The head file is replaced under the log's lock, like a checkpoint's.
	o := &op{headOnly: true, headFile: b, headSeq: hd.Seq}
	if err := l.submit(o); err != nil {
		return Head{}, err
	}
	if o.err != nil {
		return Head{}, o.err
	}
	return hd, nil
}

// checkContinuation parses line and checks that it follows h.
func checkContinuation(h head, line []byte) (head, error) {
	e, err := parseLine(line)
	if err != nil {
		return h, fmt.Errorf("%w: %w", ErrNotContinuation, err)
	}
	if e.Seq != h.seq+1 || e.Prev != h.hash {
		return h, fmt.Errorf("%w: line seq %d after seq %d (prev %.12s, head %.12s)", ErrNotContinuation, e.Seq, h.seq, e.Prev, h.hash)
	}
	return advance(e.Seq, line), nil
}

// JournalSuffix is appended to a journal's path to name the marker file
// that tells other writers the log is not theirs. It outlives the writer,
// so a break-glass `jitssh ca sign --audit-log` aimed at the daemon's log
// is refused whether the daemon runs or not.
const JournalSuffix = ".journal"

// ErrJournal: Open was asked to append to a log that a journal writer
// owns (see Options.Journal).
var ErrJournal = errors.New("audit log is a journal")

// journalMarker is the marker file's content.
const journalMarker = "This audit log is written by the jitssh approval daemon's state machine only.\n" +
	"Other writers (a Git server, break-glass signing) must use a log of their own.\n"

// checkJournalMarker makes the marker when a journal opens path, and
// refuses any other writer when the marker is there.
func checkJournalMarker(path string, journal bool) error {
	marker := path + JournalSuffix
	_, err := os.Stat(marker)
	switch {
	case journal && errors.Is(err, fs.ErrNotExist):
		if err := os.WriteFile(marker, []byte(journalMarker), 0o644); err != nil {
			return fmt.Errorf("mark audit log %s as a journal: %w", path, err)
		}
		return atomicfile.SyncDir(filepath.Dir(path))
	case journal || errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("audit log %s: %w", path, err)
	}
	return fmt.Errorf("%w: %s is written by the approval daemon only (%s); give this writer a log of its own", ErrJournal, path, marker)
}
