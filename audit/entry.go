package audit

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Entry is one line of the log.
type Entry struct {
	Seq   uint64          `json:"seq"`             // 1, 2, 3, ... without gaps
	Time  time.Time       `json:"time"`            // UTC, RFC 3339 with nanoseconds
	Kind  string          `json:"kind"`            // what happened, e.g. "issue"
	Actor string          `json:"actor,omitempty"` // who did it, when someone did
	Data  json.RawMessage `json:"data,omitempty"`  // a kind-specific JSON object
	Prev  string          `json:"prev"`            // hex SHA-256 of the previous line
}

// Kinds of entry written by jitssh. The log accepts any non-empty kind except
// the two reserved for this package; these are named once here so that every
// writer spells them the same way.
const (
	KindRequest      = "request"
	KindApprove      = "approve"
	KindDeny         = "deny"
	KindIssue        = "issue"
	KindRevoke       = "revoke"
	KindExpire       = "expire"
	KindPolicyReload = "policy.reload"
	KindCASign       = "ca.sign"
	KindGit          = "git"

	// KindCheckpoint entries are written by Log.Checkpoint only.
	KindCheckpoint = "checkpoint"
	// KindRepair entries are written only when a torn tail is moved aside.
	KindRepair = "audit.repair"
)

// GenesisHash is the prev of the first entry: the SHA-256 of the empty
// string, as if the log began with an empty line. It is also the head hash of
// an empty log.
const GenesisHash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

// MaxLineSize bounds the encoded size of one entry, newline excluded. Append
// refuses larger entries and Verify reports longer lines as syntax errors, so
// a reader never has to hold more than this in memory.
const MaxLineSize = 1 << 20

// Errors callers branch on with errors.Is.
var (
	// ErrTornTail: the last line is incomplete or does not parse, as a crash
	// in the middle of a write leaves it.
	ErrTornTail = errors.New("torn tail")
	// ErrSyntax: a line is not the canonical JSON encoding of an entry.
	ErrSyntax = errors.New("malformed entry")
	// ErrSeq: an entry's seq is not the one after its predecessor's.
	ErrSeq = errors.New("sequence broken")
	// ErrChain: an entry's prev is not the hash of the line before it.
	ErrChain = errors.New("hash chain broken")
	// ErrTruncated: the log ends before, or differs at, a signed checkpoint.
	ErrTruncated = errors.New("log truncated or rewritten")
	// ErrBadSignature: a checkpoint's signature does not verify with the
	// trusted key.
	ErrBadSignature = errors.New("bad checkpoint signature")
	// ErrInvalidEntry: Append was given something that cannot be recorded.
	ErrInvalidEntry = errors.New("invalid audit entry")
	// ErrClosed: the Log was closed.
	ErrClosed = errors.New("audit log closed")
)

// head is what a writer needs to extend the chain: the last entry's seq and
// the hash of its line.
type head struct {
	seq  uint64
	hash string
}

var genesis = head{seq: 0, hash: GenesisHash}

// next encodes the entry that follows h. It does not advance h: the caller
// does, with advance, once it knows the line will be written.
//
// Invalid UTF-8 in kind and actor becomes U+FFFD first, so that the line
// reads back as the entry returned: encoding/json writes invalid bytes as
// \ufffd escapes, which read back as U+FFFD, which it writes as is.
func (h head) next(kind, actor string, data json.RawMessage, t time.Time) (Entry, []byte, error) {
	kind, actor = strings.ToValidUTF8(kind, "\uFFFD"), strings.ToValidUTF8(actor, "\uFFFD")
	e := Entry{Seq: h.seq + 1, Time: t.UTC(), Kind: kind, Actor: actor, Data: data, Prev: h.hash}
	line, err := appendEntry(nil, &e)
	if err != nil {
		return Entry{}, nil, fmt.Errorf("encode %s entry: %w: %v", kind, ErrInvalidEntry, err)
	}
	if len(line) > MaxLineSize {
		return Entry{}, nil, fmt.Errorf("encode %s entry: %w: %d bytes, more than %d", kind, ErrInvalidEntry, len(line), MaxLineSize)
	}
	return e, line, nil
}

func advance(seq uint64, line []byte) head {
	return head{seq: seq, hash: lineHash(line)}
}

// lineHash is the hex SHA-256 of one line without its newline.
func lineHash(line []byte) string {
	sum := sha256.Sum256(line)
	return hex.EncodeToString(sum[:])
}

func validHash(s string) bool {
	if len(s) != sha256.Size*2 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// encodeData turns Append's data argument into the entry's data field: nil
// (or anything encoding as null) means no data; anything else must encode as
// a JSON object, so queries can look fields up by name.
func encodeData(data any) (json.RawMessage, error) {
	if data == nil {
		return nil, nil
	}
	b, err := json.Marshal(data)
	if err != nil {
		return nil, fmt.Errorf("%w: data: %v", ErrInvalidEntry, err)
	}
	if string(b) == "null" {
		return nil, nil
	}
	if b[0] != '{' {
		return nil, fmt.Errorf("%w: data must be a JSON object, not %.20s", ErrInvalidEntry, b)
	}
	return b, nil
}
