package audit

import (
	"testing"
	"time"

	"github.com/hashicorp/go-memdb"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestIndexSchema(t *testing.T) {
	s := indexSchema()
	require.NoError(t, s.Validate())
	_, err := memdb.NewMemDB(s)
	require.NoError(t, err)
	for name, table := range s.Tables {
		assert.Equal(t, name, table.Name)
		for iname, index := range table.Indexes {
			assert.Equal(t, iname, index.Name)
		}
	}
}

func TestChunkIndexer(t *testing.T) {
	var x chunkIndexer
	objTests := []struct {
		name string
		obj  any
		want []byte
	}{
		{"block", &chunk[row]{First: 1}, []byte{0, 0, 0, 0, 0, 0, 0, 0, 1}},
		{"posting", &chunk[uint64]{Key: "kind:git", First: 258}, []byte("kind:git\x00\x00\x00\x00\x00\x00\x00\x01\x02")},
		{"big first", &chunk[uint64]{Key: "a", First: 1<<64 - 1}, []byte("a\x00\xff\xff\xff\xff\xff\xff\xff\xff")},
	}
	for _, tt := range objTests {
		ok, got, err := x.FromObject(tt.obj)
		require.NoError(t, err, tt.name)
		assert.True(t, ok, tt.name)
		assert.Equal(t, tt.want, got, tt.name)
	}
	_, _, err := x.FromObject(row{})
	assert.Error(t, err, "not a chunk")

	got, err := x.FromArgs("serial:42", uint64(3))
	require.NoError(t, err)
	assert.Equal(t, []byte("serial:42\x00\x00\x00\x00\x00\x00\x00\x00\x03"), got)
	got, err = x.PrefixFromArgs("serial:42")
	require.NoError(t, err)
	assert.Equal(t, []byte("serial:42\x00"), got)

	for _, args := range [][]any{nil, {"k"}, {"k", 3}, {1, uint64(3)}, {"k", uint64(3), "extra"}} {
		_, err := x.FromArgs(args...)
		assert.Error(t, err, "FromArgs(%v)", args)
	}
	for _, args := range [][]any{nil, {1}, {"k", uint64(3)}} {
		_, err := x.PrefixFromArgs(args...)
		assert.Error(t, err, "PrefixFromArgs(%v)", args)
	}
}

// The NUL after the key keeps one key's chunks from mixing with those of a
// key it is a prefix of, and the big-endian seq keeps them in seq order.
func TestChunkIDOrder(t *testing.T) {
	ids := [][]byte{
		chunkID("actor:al", 1),
		chunkID("actor:al", 2),
		chunkID("actor:al", 256),
		chunkID("actor:al", 1<<40),
		chunkID("actor:alice", 1),
	}
	for i := 1; i < len(ids); i++ {
		assert.Less(t, string(ids[i-1]), string(ids[i]))
	}
}

func TestPostingKeys(t *testing.T) {
	assert.Equal(t, "serial:18446744073709551615", serialKey(1<<64-1))
	assert.Equal(t, "hour:2025060109", hourKey(time.Date(2025, 6, 1, 9, 59, 59, 999, time.UTC)))
	assert.Equal(t, "hour:2025060107", hourKey(time.Date(2025, 6, 1, 9, 30, 0, 0, time.FixedZone("CEST", 2*3600))), "hours are UTC")
	assert.Less(t, hourKey(time.Date(999, 1, 1, 0, 0, 0, 0, time.UTC)), hourKey(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)), "keys sort in time order")
	for v, want := range map[string]bool{"git": true, "": false, "a\x00b": false, "zoë": true} {
		assert.Equal(t, want, indexable(v), "indexable(%q)", v)
	}
}
