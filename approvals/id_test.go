package approvals

import (
	"bytes"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestEncodeULID(t *testing.T) {
	tests := []struct {
		ms   uint64
		hi   uint16
		lo   uint64
		want string
	}{
		{0, 0, 0, "00000000000000000000000000"},
		{0, 0, 1, "00000000000000000000000001"},
		{0, 0, 32, "00000000000000000000000010"},
		{maxULIDms, 0xffff, ^uint64(0), "7ZZZZZZZZZZZZZZZZZZZZZZZZZ"},
		// The timestamp of the ULID specification's example,
		// 01ARZ3NDEKTSV4RRFFQ69G5FAV.
		{1469922850259, 0, 0, "01ARZ3NDEK0000000000000000"},
		{0, 1, 0, "0000000000000G000000000000"},
	}
	for _, tt := range tests {
		got := encodeULID(tt.ms, tt.hi, tt.lo)
		assert.Equal(t, tt.want, got, "encodeULID(%d, %d, %d)", tt.ms, tt.hi, tt.lo)
		ms, hi, lo, ok := decodeULID(got)
		assert.True(t, ok)
		assert.Equal(t, []uint64{tt.ms, uint64(tt.hi), tt.lo}, []uint64{ms, uint64(hi), lo}, "decodeULID(%q)", got)
	}
	for _, bad := range []string{"", "8ZZZZZZZZZZZZZZZZZZZZZZZZZ", "0000000000000000000000000U", "000"} {
		_, _, _, ok := decodeULID(bad)
		assert.False(t, ok, "decodeULID(%q)", bad)
	}
}

func TestIDsIncrease(t *testing.T) {
	g := newIDSource()
	g.rand = bytes.NewReader(bytes.Repeat([]byte{0xff}, 10*100)) // the largest random part: increments carry
	now := time.UnixMilli(1_700_000_000_000)
	var got []string
	for i := range 300 {
		at := now
		switch {
		case i%3 == 1:
			at = now.Add(-time.Hour) // the clock stepped back
		case i%100 == 99:
			now = now.Add(time.Millisecond)
			at = now
		}
		id, err := g.next(at)
		require.NoError(t, err)
		require.True(t, validID(id), id)
		got = append(got, id)
	}
	assert.True(t, slices.IsSorted(got), "IDs from one source increase")
	assert.Len(t, slices.Compact(slices.Clone(got)), len(got), "and never repeat")
	assert.True(t, strings.HasPrefix(got[0], "req-01HF"), got[0])
}

func TestValidID(t *testing.T) {
	for id, want := range map[string]bool{
		"req-01ARZ3NDEKTSV4RRFFQ69G5FAV":  true,
		"req-01arz3ndektsv4rrffq69g5fav":  false,
		"req-01ARZ3NDEKTSV4RRFFQ69G5FA":   false,
		"req-01ARZ3NDEKTSV4RRFFQ69G5FAVV": false,
		"rex-01ARZ3NDEKTSV4RRFFQ69G5FAV":  false,
		"req-81ARZ3NDEKTSV4RRFFQ69G5FAV":  false,
		"req-01ARZ3NDEKTSV4RRFFQ69G5FAU":  false,
		"":                                false,
	} {
		assert.Equal(t, want, validID(id), "validID(%q)", id)
	}
}
