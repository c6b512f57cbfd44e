package approvals

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/hashicorp/go-memdb"
)

// Table and index names of the state store.
const (
	tableRequests = "requests"
	tableMeta     = "meta"
	// tableUsedTokens remembers the CI/CD tokens that got a request,
	// until they could no longer be accepted: each is used once.
	tableUsedTokens = "used_tokens"

	indexID        = "id"        // requests by ID, which is also creation order
	indexState     = "state"     // requests not compacted, by State, then ID
	indexRequester = "requester" // requests not compacted, by Requester, then ID
	indexSerial    = "serial"    // requests not compacted with a serial, by serial
	indexRevoked   = "revoked"   // revoked certificates
	indexUnissued  = "unissued"  // approved, not revoked, certificate not stored yet
	indexUntil     = "until"     // used tokens by the time they stop being usable
)

// Rows of the meta table.
const (
	metaIndex  = "index"  // raft index of the last change
	metaSerial = "serial" // the last serial allocated; serials start at 1
	metaAudit  = "audit"  // the audit chain position: Value the seq, Text the hash
	metaPolicy = "policy" // Text: the digest of the policy in force
)

// metaEntry is one counter or text in the meta table.
type metaEntry struct {
	Key   string
	Value uint64
	Text  string
}

// stateSchema is the whole schema of the state store.
func stateSchema() *memdb.DBSchema {
	return &memdb.DBSchema{
		Tables: map[string]*memdb.TableSchema{
			tableRequests:   requestsTableSchema(),
			tableMeta:       metaTableSchema(),
			tableOps:        opsTableSchema(),
			tableUsedTokens: usedTokensTableSchema(),
		},
	}
}

func requestsTableSchema() *memdb.TableSchema {
	return &memdb.TableSchema{
		Name: tableRequests,
		Indexes: map[string]*memdb.IndexSchema{
			indexID: {
				Name:    indexID,
				Unique:  true,
				Indexer: &memdb.StringFieldIndex{Field: "ID"},
			},
			indexState: {
				Name:         indexState,
				AllowMissing: true,
				Indexer:      stateIndex,
			},
			indexRequester: {
				Name:         indexRequester,
				AllowMissing: true,
				Indexer:      requesterIndex,
			},
			indexSerial: {
				Name:         indexSerial,
				Unique:       true,
				AllowMissing: true,
				Indexer:      serialIndex{},
			},
			indexRevoked: {
				Name:         indexRevoked,
				AllowMissing: true,
				Indexer:      flagIndex(func(r *Request) bool { return r.Revoked != nil }),
			},
			indexUnissued: {
				Name:         indexUnissued,
				AllowMissing: true,
				Indexer:      flagIndex((*Request).Issuing),
			},
		},
	}
}

func metaTableSchema() *memdb.TableSchema {
	return &memdb.TableSchema{
		Name: tableMeta,
		Indexes: map[string]*memdb.IndexSchema{
			indexID: {
				Name:    indexID,
				Unique:  true,
				Indexer: &memdb.StringFieldIndex{Field: "Key"},
			},
		},
	}
}

// serialIndex indexes requests by certificate serial, as 8 big-endian
// bytes so that keys sort like the numbers. Requests without a serial are
// left out, and so are compacted ones: a serial is looked up to revoke
// its certificate, and a compacted request's certificate has expired or
// been revoked.
type serialIndex struct{}

func (serialIndex) FromObject(obj any) (bool, []byte, error) {
	r, ok := obj.(*Request)
	if !ok {
		return false, nil, fmt.Errorf("serial index: %T is not a *Request", obj)
	}
	if r.Serial == 0 || r.Compacted {
		return false, nil, nil
	}
	return true, binary.BigEndian.AppendUint64(nil, r.Serial), nil
}

func (serialIndex) FromArgs(args ...any) ([]byte, error) {
	if len(args) != 1 {
		return nil, fmt.Errorf("serial index: want one argument, got %d", len(args))
	}
	n, ok := args[0].(uint64)
	if !ok {
		return nil, fmt.Errorf("serial index: argument is %T, want uint64", args[0])
	}
	return binary.BigEndian.AppendUint64(nil, n), nil
}

// uncompactedIndex indexes the requests that are not compacted by a
// text field, as the text and a zero byte, like a StringFieldIndex.
// Compacted requests, most of those the state holds, are left out: they
// have ended, and nothing looks them up by these fields but listings,
// which read them in ID order instead. So the state index holds the
// pending requests, the live ones and those that settled too recently to
// be compacted yet, and is also the list of those to compact; the
// requester index, someone's requests that may still be live.
type uncompactedIndex struct {
	field string
	get   func(*Request) string
}

var (
	stateIndex     = uncompactedIndex{"State", func(r *Request) string { return string(r.State) }}
	requesterIndex = uncompactedIndex{"Requester", func(r *Request) string { return r.Requester }}
)

func (ix uncompactedIndex) FromObject(obj any) (bool, []byte, error) {
	r, ok := obj.(*Request)
	if !ok {
		return false, nil, fmt.Errorf("%s index: %T is not a *Request", ix.field, obj)
	}
	if r.Compacted {
		return false, nil, nil
	}
	return true, append([]byte(ix.get(r)), 0), nil
}

func (ix uncompactedIndex) FromArgs(args ...any) ([]byte, error) {
	if len(args) != 1 {
		return nil, fmt.Errorf("%s index: want one argument, got %d", ix.field, len(args))
	}
	s, ok := args[0].(string)
	if !ok {
		return nil, fmt.Errorf("%s index: argument is %T, want string", ix.field, args[0])
	}
	return append([]byte(s), 0), nil
}

// flagIndex indexes the requests for which it returns true, all under the
// one key {1}, and leaves the others out, so that the index holds exactly
// the set it names and is read whole with no arguments.
type flagIndex func(*Request) bool

func (f flagIndex) FromObject(obj any) (bool, []byte, error) {
	r, ok := obj.(*Request)
	if !ok {
		return false, nil, fmt.Errorf("flag index: %T is not a *Request", obj)
	}
	if !f(r) {
		return false, nil, nil
	}
	return true, []byte{1}, nil
}

func (f flagIndex) FromArgs(args ...any) ([]byte, error) {
	if len(args) != 0 {
		return nil, fmt.Errorf("flag index: takes no arguments, got %d", len(args))
	}
	return []byte{1}, nil
}

// usedToken is a CI/CD token that got a request: ID is its
// WorkloadIdentity.TokenID, Until its UsableUntil.
type usedToken struct {
	ID      string    `json:"id"`
	Until   time.Time `json:"until"`
	Request string    `json:"request"`
}

func usedTokensTableSchema() *memdb.TableSchema {
	return &memdb.TableSchema{
		Name: tableUsedTokens,
		Indexes: map[string]*memdb.IndexSchema{
			indexID: {
				Name:    indexID,
				Unique:  true,
				Indexer: &memdb.StringFieldIndex{Field: "ID"},
			},
			indexUntil: {
				Name:    indexUntil,
				Indexer: untilIndex{},
			},
		},
	}
}

// untilIndex indexes used tokens by Until, in Unix nanoseconds as 8
// big-endian bytes with the sign bit flipped, so that keys sort like the
// times.
type untilIndex struct{}

func untilKey(t time.Time) []byte {
	return binary.BigEndian.AppendUint64(nil, uint64(t.UnixNano())^(1<<63))
}

func (untilIndex) FromObject(obj any) (bool, []byte, error) {
	u, ok := obj.(*usedToken)
	if !ok {
		return false, nil, fmt.Errorf("until index: %T is not a *usedToken", obj)
	}
	return true, untilKey(u.Until), nil
}

func (untilIndex) FromArgs(args ...any) ([]byte, error) {
	if len(args) != 1 {
		return nil, fmt.Errorf("until index: want one argument, got %d", len(args))
	}
	t, ok := args[0].(time.Time)
	if !ok {
		return nil, fmt.Errorf("until index: argument is %T, want time.Time", args[0])
	}
	return untilKey(t), nil
}
