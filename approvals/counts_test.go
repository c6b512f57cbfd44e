package approvals

import (
	"testing"
	"time"

	"github.com/hashicorp/go-memdb"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestStateCounter: the counts always match a count of every request, and
// the counter stops rereading the requests whose state is final and old
// enough, up to the first one still pending.
func TestStateCounter(t *testing.T) {
	env := newTestService(t, mustPolicy(t, withoutLimits(devPolicy(t).Config())))
	c := env.NewStateCounter()
	check := func(step string) {
		t.Helper()
		want := map[State]int{}
		for _, r := range env.listAny(ListFilter{}) {
			want[r.State]++
		}
		got, err := c.Counts()
		require.NoError(t, err)
		assert.Equal(t, want, got, step)
	}
	check("empty")
	old := []*Request{env.submit(t, "alice", readReq(t)), env.submit(t, "alice", readReq(t))}
	denied := env.submit(t, "alice", featureReq(t))
	_, err := env.Deny(ctx, "bob", denied.ID, DecisionInput{Reason: "no"})
	require.NoError(t, err)
	pending := env.submit(t, "alice", featureReq(t))
	after := env.submit(t, "alice", readReq(t))
	check("fresh")
	assert.Empty(t, c.mark, "nothing is old enough to be taken as final")

	env.clock.Advance(2 * countSettle)
	check("settled")
	assert.Equal(t, denied.ID, c.mark, "final up to the pending one")
	assert.Equal(t, map[State]int{StateApproved: len(old), StateDenied: 1}, c.frozen)

	env.approve(t, "bob", pending.ID)
	check("the pending one approved")
	env.clock.Advance(2 * countSettle)
	check("all settled")
	assert.Equal(t, after.ID, c.mark)

	expiring := env.submit(t, "alice", featureReq(t))
	env.clock.Advance(env.Policy().RequestTimeout() + time.Minute)
	env.expireDue(memdb.NewWatchSet())
	check("one expired")
	got, err := env.Get(expiring.ID)
	require.NoError(t, err)
	require.Equal(t, StateExpired, got.State)
}
