package audit

import (
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-memdb"
)

// The query index keeps entries in runs rather than one memdb row per entry:
// go-memdb spends several hundred bytes of radix-tree nodes per row and per
// index, which at a million entries and six lookups came to 2.7 GB. Instead,
//
//   - the "blocks" table holds the entries themselves, up to blockSize
//     consecutive ones per row, sorted by seq;
//   - the "postings" table holds, for every looked-up value (a kind, an
//     actor, a repo, a serial, an hour), the sorted seqs of the entries that
//     have it, up to postingSize per row.
//
// Both are chunks, identified by (key, seq of their first item); blocks have
// the empty key.

// Table and index names of the query index.
const (
	tableBlocks   = "blocks"
	tablePostings = "postings"

	indexID       = "id"
	indexIDPrefix = indexID + "_prefix"
)

// Chunk sizes: large enough that per-row overhead is small, small enough
// that copying a chunk to add one entry to it stays cheap.
const (
	blockSize   = 128
	postingSize = 512
)

// Posting key prefixes, one per lookup.
const (
	keyKind   = "kind:"
	keyActor  = "actor:"
	keyRepo   = "repo:"
	keySerial = "serial:"
	keyHour   = "hour:" // UTC hour, 2006010215, so keys sort in time order
)

// indexSchema is the whole schema of the query index.
func indexSchema() *memdb.DBSchema {
	return &memdb.DBSchema{
		Tables: map[string]*memdb.TableSchema{
			tableBlocks:   blocksTableSchema(),
			tablePostings: postingsTableSchema(),
		},
	}
}

func blocksTableSchema() *memdb.TableSchema {
	return &memdb.TableSchema{
		Name: tableBlocks,
		Indexes: map[string]*memdb.IndexSchema{
			indexID: {Name: indexID, Unique: true, Indexer: chunkIndexer{}},
		},
	}
}

func postingsTableSchema() *memdb.TableSchema {
	return &memdb.TableSchema{
		Name: tablePostings,
		Indexes: map[string]*memdb.IndexSchema{
			indexID: {Name: indexID, Unique: true, Indexer: chunkIndexer{}},
		},
	}
}

// chunk is a run of items sorted by seq, stored as one row.
type chunk[T any] struct {
	Key   string // "" for blocks
	First uint64 // seq of Items[0]
	Items []T
}

func (c *chunk[T]) chunkID() (string, uint64) { return c.Key, c.First }

// chunkIndexer makes a chunk's id: its key, a NUL, and the seq of its first
// item as 8 bytes big-endian, so that a key's chunks sort by seq and one
// key's chunks never mix with another's. Keys never contain NUL (see
// indexable).
type chunkIndexer struct{}

func (chunkIndexer) FromObject(obj any) (bool, []byte, error) {
	c, ok := obj.(interface{ chunkID() (string, uint64) })
	if !ok {
		return false, nil, fmt.Errorf("chunk index: %T is not a chunk", obj)
	}
	key, first := c.chunkID()
	return true, chunkID(key, first), nil
}

// FromArgs takes (key string, seq uint64).
func (chunkIndexer) FromArgs(args ...any) ([]byte, error) {
	if len(args) != 2 {
		return nil, fmt.Errorf("chunk index: want key and seq, got %d arguments", len(args))
	}
	key, ok1 := args[0].(string)
	seq, ok2 := args[1].(uint64)
	if !ok1 || !ok2 {
		return nil, fmt.Errorf("chunk index: arguments are %T, %T; want string, uint64", args[0], args[1])
	}
	return chunkID(key, seq), nil
}

// PrefixFromArgs takes (key string): all of that key's chunks.
func (chunkIndexer) PrefixFromArgs(args ...any) ([]byte, error) {
	if len(args) != 1 {
		return nil, fmt.Errorf("chunk index prefix: want a key, got %d arguments", len(args))
	}
	key, ok := args[0].(string)
	if !ok {
		return nil, fmt.Errorf("chunk index prefix: argument is %T, want string", args[0])
	}
	return append([]byte(key), 0), nil
}

func chunkID(key string, first uint64) []byte {
	b := make([]byte, 0, len(key)+9)
	b = append(b, key...)
	b = append(b, 0)
	return binary.BigEndian.AppendUint64(b, first)
}

// indexable reports whether a value can be a posting key: values that are
// empty or contain NUL are not indexed, and lookups of them scan instead.
func indexable(v string) bool { return v != "" && !strings.Contains(v, "\x00") }

func serialKey(serial uint64) string { return keySerial + strconv.FormatUint(serial, 10) }

func hourKey(t time.Time) string { return keyHour + t.UTC().Format("2006010215") }
