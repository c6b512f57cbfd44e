package approvals

import (
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/go-memdb"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// TestSchemaGolden pins the whole state schema: a change to a table or an
// index shows up as a change to testdata/schema.golden (go test -update).
func TestSchemaGolden(t *testing.T) {
	schema := stateSchema()
	require.NoError(t, schema.Validate())
	var b strings.Builder
	tables := make([]string, 0, len(schema.Tables))
	for name := range schema.Tables {
		tables = append(tables, name)
	}
	slices.Sort(tables)
	for _, name := range tables {
		fmt.Fprintf(&b, "table %s\n", name)
		indexes := schema.Tables[name].Indexes
		names := make([]string, 0, len(indexes))
		for n := range indexes {
			names = append(names, n)
		}
		slices.Sort(names)
		for _, n := range names {
			ix := indexes[n]
			fmt.Fprintf(&b, "\tindex %s unique=%v allow_missing=%v %s\n", n, ix.Unique, ix.AllowMissing, describeIndexer(ix.Indexer))
		}
	}
	const golden = "testdata/schema.golden"
	if *update {
		require.NoError(t, os.WriteFile(golden, []byte(b.String()), 0o644))
	}
	want, err := os.ReadFile(golden)
	require.NoError(t, err)
	assert.Equal(t, string(want), b.String(), "run go test -update if the change is meant")
}

func describeIndexer(ix memdb.Indexer) string {
	switch ix := ix.(type) {
	case *memdb.StringFieldIndex:
		return fmt.Sprintf("string field %s (lowercase=%v)", ix.Field, ix.Lowercase)
	case serialIndex:
		return "serial of requests not compacted (8 bytes, big-endian)"
	case flagIndex:
		return "flag"
	case uncompactedIndex:
		return fmt.Sprintf("string field %s of requests not compacted", ix.field)
	case untilIndex:
		return "until (8 bytes, big-endian, sign bit flipped)"
	}
	return fmt.Sprintf("%T", ix)
}

func TestIndexerKeys(t *testing.T) {
	at := t0
	reqs := map[string]*Request{
		"pending":  {ID: "req-A", Requester: "alice", State: StatePending},
		"unissued": {ID: "req-B", Requester: "bob", State: StateApproved, Serial: 258},
		"issued":   {ID: "req-C", Requester: "bob", State: StateApproved, Serial: 1, Certificate: "cert"},
		"revoked":  {ID: "req-D", Requester: "bob", State: StateApproved, Serial: 2, Certificate: "cert", Revoked: &Decision{At: at}},
		"stopped":  {ID: "req-E", Requester: "bob", State: StateApproved, Revoked: &Decision{At: at}},
		// A revoked certificate, compacted: only the ID and revoked
		// indexes hold it.
		"compacted": {ID: "req-F", Requester: "bob", State: StateApproved, Serial: 3, IssuedAt: at, Revoked: &Decision{At: at}, Compacted: true},
	}
	indexes := requestsTableSchema().Indexes
	tests := []struct {
		index string
		req   string
		want  []byte // nil: not indexed
	}{
		{indexID, "pending", []byte("req-A\x00")},
		{indexState, "pending", []byte("pending\x00")},
		{indexState, "issued", []byte("approved\x00")},
		{indexRequester, "pending", []byte("alice\x00")},
		{indexSerial, "pending", nil},
		{indexSerial, "unissued", []byte{0, 0, 0, 0, 0, 0, 1, 2}},
		{indexSerial, "issued", []byte{0, 0, 0, 0, 0, 0, 0, 1}},
		{indexRevoked, "issued", nil},
		{indexRevoked, "revoked", []byte{1}},
		{indexRevoked, "stopped", []byte{1}},
		{indexUnissued, "pending", nil},
		{indexUnissued, "unissued", []byte{1}},
		{indexUnissued, "issued", nil},
		{indexUnissued, "stopped", nil},
		{indexID, "compacted", []byte("req-F\x00")},
		{indexState, "compacted", nil},
		{indexRequester, "compacted", nil},
		{indexSerial, "compacted", nil},
		{indexRevoked, "compacted", []byte{1}},
		{indexUnissued, "compacted", nil},
	}
	for _, tt := range tests {
		ix := indexes[tt.index].Indexer.(memdb.SingleIndexer)
		ok, key, err := ix.FromObject(reqs[tt.req])
		require.NoError(t, err)
		if tt.want == nil {
			assert.False(t, ok, "%s index of %s request", tt.index, tt.req)
			continue
		}
		assert.True(t, ok, "%s index of %s request", tt.index, tt.req)
		assert.Equal(t, tt.want, key, "%s index of %s request", tt.index, tt.req)
	}

	args := []struct {
		index string
		args  []any
		want  []byte
		err   bool
	}{
		{indexID, []any{"req-A"}, []byte("req-A\x00"), false},
		{indexState, []any{string(StatePending)}, []byte("pending\x00"), false},
		{indexRequester, []any{"alice"}, []byte("alice\x00"), false},
		{indexRequester, []any{1}, nil, true},
		{indexState, nil, nil, true},
		{indexSerial, []any{uint64(258)}, []byte{0, 0, 0, 0, 0, 0, 1, 2}, false},
		{indexSerial, []any{258}, nil, true},
		{indexSerial, nil, nil, true},
		{indexRevoked, nil, []byte{1}, false},
		{indexRevoked, []any{true}, nil, true},
	}
	for _, tt := range args {
		key, err := indexes[tt.index].Indexer.FromArgs(tt.args...)
		if tt.err {
			assert.Error(t, err, "%s.FromArgs(%v)", tt.index, tt.args)
			continue
		}
		require.NoError(t, err)
		assert.Equal(t, tt.want, key, "%s.FromArgs(%v)", tt.index, tt.args)
	}

	_, _, err := serialIndex{}.FromObject("not a request")
	assert.Error(t, err)
	_, _, err = flagIndex(func(*Request) bool { return true }).FromObject(&metaEntry{})
	assert.Error(t, err)
}
