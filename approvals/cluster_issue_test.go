package approvals

import (
	"slices"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestConcurrentIssuesTakeConsecutiveSerials issues many certificates at
// once, their signatures handed to raft without waiting for each other:
// every one is stored, and the serials run without a gap or a repeat. One
// person makes them all, beyond what the limits let a person request.
func TestConcurrentIssuesTakeConsecutiveSerials(t *testing.T) {
	env := newTestService(t, unlimitedDevPolicy(t))
	const n = 24
	serials := make([]uint64, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := env.Submit(ctx, "alice", readReq(t))
			if assert.NoError(t, err) {
				serials[i] = r.Serial
			}
		}()
	}
	wg.Wait()
	slices.Sort(serials)
	for i, s := range serials {
		assert.Equal(t, uint64(i+1), s)
	}
	assert.Len(t, env.audit.of(AuditIssue), n)
}

// TestRefusedSignatureSignsAgain: a signature whose serial is refused (one
// handed over before it was refused, leaving a gap) is made again from the
// serial the state holds.
func TestRefusedSignatureSignsAgain(t *testing.T) {
	env := newTestService(t, nil)
	first := env.issued(t, "alice")
	env.issueMu.Lock()
	env.issueNext = first.Serial + 5 // as if five were in flight and then refused
	env.issueMu.Unlock()
	r, err := env.Submit(ctx, "alice", readReq(t))
	require.NoError(t, err)
	assert.Equal(t, first.Serial+1, r.Serial, "no gap: the refused serial is not skipped")
	last, err := env.fsm.State().counter(metaSerial)
	require.NoError(t, err)
	env.issueMu.Lock()
	assert.LessOrEqual(t, env.issueNext, last, "nothing beyond the state is reserved any more")
	env.issueMu.Unlock()
}
