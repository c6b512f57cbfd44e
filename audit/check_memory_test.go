package audit

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestCheckerForgetsWhatIsDone checks that a checker forgets a done
// request forgetAfter after it is done, and still refuses what it could
// no longer tell by memory: a request ID made before that, and a serial
// issued before.
func TestCheckerForgetsWhatIsDone(t *testing.T) {
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	id := "req-" + encodeTestULID(t0)
	c := newChecker(CheckOptions{})
	c.advance(t0)
	require.NoError(t, c.tooOld(id))
	c.requests[id] = &pending{}
	c.done(id, t0.Add(time.Hour))
	require.NoError(t, c.claimSerial(7, 3))
	pendingID := "req-" + encodeTestULID(t0.Add(time.Minute))
	c.requests[pendingID] = &pending{}
	c.requests["r1"] = &pending{} // not a ULID: never forgotten
	c.done("r1", t0)

	c.advance(t0.Add(forgetAfter))
	assert.Contains(t, c.requests, id, "remembered for forgetAfter after it was done")
	err := c.claimSerial(7, 9)
	assert.Equal(t, ErrCA, errFailure(err).err)
	assert.Contains(t, err.Error(), "at seq 3")

	c.advance(t0.Add(forgetAfter + 2*time.Hour))
	assert.NotContains(t, c.requests, id, "forgotten")
	assert.Contains(t, c.requests, pendingID, "a pending request is never forgotten")
	assert.Contains(t, c.requests, "r1")

	err = c.tooOld(id)
	require.Error(t, err, "the same ID again is refused by the time it carries")
	assert.Equal(t, ErrRecord, errFailure(err).err)
	err = c.claimSerial(7, 12)
	require.Error(t, err, "a serial issued long before is still refused")
	assert.Equal(t, ErrCA, errFailure(err).err)
	assert.Contains(t, err.Error(), "already issued")
	require.NoError(t, c.claimSerial(8, 13))
}

func TestSerialRuns(t *testing.T) {
	for _, tt := range []struct {
		name string
		add  []uint64
		want serialRuns
	}{
		{"in order", []uint64{1, 2, 3, 4}, serialRuns{{1, 4}}},
		{"gap", []uint64{1, 2, 5, 6}, serialRuns{{1, 2}, {5, 6}}},
		{"gap filled", []uint64{1, 3, 2}, serialRuns{{1, 3}}},
		{"backwards", []uint64{9, 8, 7}, serialRuns{{7, 9}}},
		{"break-glass", []uint64{1, 1 << 63, 2}, serialRuns{{1, 2}, {1 << 63, 1 << 63}}},
	} {
		var r serialRuns
		for _, s := range tt.add {
			require.False(t, r.contains(s), tt.name)
			r.add(s)
			require.True(t, r.contains(s), tt.name)
		}
		assert.Equal(t, tt.want, r, tt.name)
		assert.False(t, r.contains(0), tt.name)
	}
}

// encodeTestULID writes a ULID made at t, with zero random bits.
func encodeTestULID(t time.Time) string {
	const crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
	ms := uint64(t.UnixMilli())
	out := make([]byte, 26)
	for i := range out {
		out[i] = '0'
	}
	for i := 9; i >= 0; i-- {
		out[i] = crockford[ms&31]
		ms >>= 5
	}
	return string(out)
}
