package audit

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/hashicorp/go-memdb"
)

// Table and index names of the query index.
const (
	tableEntries = "entries"

	indexID     = "id" // seq
	indexKind   = "kind"
	indexActor  = "actor"
	indexSerial = "serial"
	indexRepo   = "repo"
	indexTime   = "time"
)

// indexSchema is the whole schema of the query index.
func indexSchema() *memdb.DBSchema {
	return &memdb.DBSchema{
		Tables: map[string]*memdb.TableSchema{
			tableEntries: entriesTableSchema(),
		},
	}
}

func entriesTableSchema() *memdb.TableSchema {
	return &memdb.TableSchema{
		Name: tableEntries,
		Indexes: map[string]*memdb.IndexSchema{
			indexID: {
				Name:    indexID,
				Unique:  true,
				Indexer: seqIndexer{},
			},
			indexKind: {
				Name:    indexKind,
				Indexer: stringIndexer{field: func(r *row) string { return r.Kind }},
			},
			indexActor: {
				Name:         indexActor,
				AllowMissing: true,
				Indexer:      stringIndexer{field: func(r *row) string { return r.Actor }},
			},
			indexSerial: {
				Name:         indexSerial,
				AllowMissing: true,
				Indexer:      serialIndexer{},
			},
			indexRepo: {
				Name:         indexRepo,
				AllowMissing: true,
				Indexer:      stringIndexer{field: func(r *row) string { return r.Repo }},
			},
			indexTime: {
				Name:    indexTime,
				Indexer: timeIndexer{},
			},
		},
	}
}

// The indexers below write fixed-width big-endian keys, so that the radix
// trees iterate in numeric order: by seq, by serial then seq, by time then
// seq. (memdb appends the seq key to the keys of non-unique indexes.)

// seqIndexer indexes a row by its seq: 8 bytes big-endian.
type seqIndexer struct{}

func (seqIndexer) FromObject(obj any) (bool, []byte, error) {
	r, ok := obj.(*row)
	if !ok {
		return false, nil, fmt.Errorf("seq index: %T is not an audit row", obj)
	}
	return true, binary.BigEndian.AppendUint64(nil, r.Seq), nil
}

func (seqIndexer) FromArgs(args ...any) ([]byte, error) {
	seq, err := oneArg[uint64](args)
	if err != nil {
		return nil, fmt.Errorf("seq index: %w", err)
	}
	return binary.BigEndian.AppendUint64(nil, seq), nil
}

// serialIndexer indexes a row by its certificate serial, when its data has
// one: 8 bytes big-endian.
type serialIndexer struct{}

func (serialIndexer) FromObject(obj any) (bool, []byte, error) {
	r, ok := obj.(*row)
	if !ok {
		return false, nil, fmt.Errorf("serial index: %T is not an audit row", obj)
	}
	if !r.HasSerial {
		return false, nil, nil
	}
	return true, binary.BigEndian.AppendUint64(nil, r.Serial), nil
}

func (serialIndexer) FromArgs(args ...any) ([]byte, error) {
	serial, err := oneArg[uint64](args)
	if err != nil {
		return nil, fmt.Errorf("serial index: %w", err)
	}
	return binary.BigEndian.AppendUint64(nil, serial), nil
}

// stringIndexer indexes a row by one of its string fields, NUL-terminated so
// that "alice" does not match "alice2"; an empty field is not indexed.
type stringIndexer struct {
	field func(*row) string
}

func (x stringIndexer) FromObject(obj any) (bool, []byte, error) {
	r, ok := obj.(*row)
	if !ok {
		return false, nil, fmt.Errorf("string index: %T is not an audit row", obj)
	}
	v := x.field(r)
	if v == "" {
		return false, nil, nil
	}
	return true, append([]byte(v), 0), nil
}

func (stringIndexer) FromArgs(args ...any) ([]byte, error) {
	v, err := oneArg[string](args)
	if err != nil {
		return nil, fmt.Errorf("string index: %w", err)
	}
	return append([]byte(v), 0), nil
}

// timeIndexer indexes a row by its time: seconds since 1970 with the sign bit
// flipped, so that earlier times sort first, then nanoseconds, 12 bytes.
type timeIndexer struct{}

func (timeIndexer) FromObject(obj any) (bool, []byte, error) {
	r, ok := obj.(*row)
	if !ok {
		return false, nil, fmt.Errorf("time index: %T is not an audit row", obj)
	}
	return true, timeKey(r.Time), nil
}

func (timeIndexer) FromArgs(args ...any) ([]byte, error) {
	t, err := oneArg[time.Time](args)
	if err != nil {
		return nil, fmt.Errorf("time index: %w", err)
	}
	return timeKey(t), nil
}

func timeKey(t time.Time) []byte {
	b := binary.BigEndian.AppendUint64(make([]byte, 0, 12), uint64(t.Unix())^(1<<63))
	return binary.BigEndian.AppendUint32(b, uint32(t.Nanosecond()))
}

func oneArg[T any](args []any) (T, error) {
	var zero T
	if len(args) != 1 {
		return zero, fmt.Errorf("want one argument, got %d", len(args))
	}
	v, ok := args[0].(T)
	if !ok {
		return zero, fmt.Errorf("argument is %T, want %T", args[0], zero)
	}
	return v, nil
}
