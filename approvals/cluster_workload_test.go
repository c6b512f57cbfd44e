package approvals

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/jitssh/jitssh/audit"
)

// nowToken is a CI token for demo/app's main branch that is valid on the
// real clock, which the cluster tests run on.
func nowToken(tb testing.TB, jti string) string {
	tb.Helper()
	c := githubClaims(jti)
	now := time.Now()
	c["iat"], c["nbf"], c["exp"] = now.Add(-time.Minute).Unix(), now.Add(-time.Minute).Unix(), now.Add(5*time.Minute).Unix()
	return ciToken(tb, c)
}

// TestClusterWorkloadTokenOnce: a CI job's token gets one certificate in
// the whole cluster, whichever nodes it is presented to. The follower
// that takes it forwards everything the state machine needs (the token's
// ID and expiry, the token itself for the audit entry), the leader signs,
// and the token presented again on any node is refused by the state
// machine, recorded alike on every node's log.
func TestClusterWorkloadTokenOnce(t *testing.T) {
	c := newTestClusterTimed(t, 3, workloadPolicy(t), nil, clusterRaftTimeout, clusterApplyWait)
	leader := c.leader(t)
	f := c.followers(leader)
	tok := nowToken(t, "cluster-once")

	who := ciActor(t)
	r, err := f[0].SubmitWorkload(ctx, who, ciInput(tok))
	require.NoError(t, err)
	require.NotEmpty(t, r.Certificate, "the leader signed it for the follower's caller")
	require.NotEmpty(t, r.Workload.TokenID)
	got, err := f[0].WaitWorkload(ctx, who, r.ID, 0)
	require.NoError(t, err, "the job follows its request on the node it asked")
	assert.Equal(t, r.Certificate, got.Certificate)

	for _, nd := range []*testNode{f[1], leader, f[0]} {
		_, err = nd.SubmitWorkload(ctx, ciActor(t), ciInput(tok))
		require.ErrorIs(t, err, ErrTokenUsed, nd.id)
		require.ErrorContains(t, err, "good for one request", nd.id)
	}

	logs := c.converged(t)
	for i := 1; i < len(logs); i++ {
		assert.True(t, bytes.Equal(logs[0], logs[i]), "audit log of node %d differs", i+1)
	}
	var requests, refusals int
	for _, line := range bytes.Split(bytes.TrimSpace(logs[0]), []byte("\n")) {
		var e audit.Entry
		require.NoError(t, json.Unmarshal(line, &e))
		switch e.Kind {
		case AuditRequest:
			requests++
			var d audit.RequestData
			require.NoError(t, json.Unmarshal(e.Data, &d))
			require.NotNil(t, d.Workload)
			assert.Equal(t, tok, d.Workload.Token, "the token travelled with the forwarded command to every log")
		case AuditWorkloadRefused:
			refusals++
			assert.NotContains(t, string(e.Data), tok, "a refusal leaves the token out")
		}
	}
	assert.Equal(t, 1, requests)
	assert.Equal(t, 3, refusals)
	for _, nd := range f {
		assertSameState(t, leader.Service, nd.Service, nd.id)
		assert.Equal(t, 1, usedTokens(t, nd.fsm.State()), nd.id)
	}
}

// TestRepeatedRefusalAnswersAlike sends a workload submit again, the same
// bytes, as a node does when it cannot tell whether the first try was
// committed: the token was used, so the first application records a
// refusal; the repeat is refused alike, writes nothing, and the refusal
// crosses the wire between nodes as the same error.
func TestRepeatedRefusalAnswersAlike(t *testing.T) {
	env := newTestService(t, workloadPolicy(t))
	first, err := env.SubmitWorkload(ctx, ciActor(t), ciInput(ciToken(t, githubClaims("repeat"))))
	require.NoError(t, err)

	again := first.clone()
	again.ID, again.Version, again.Certificate, again.Serial = otherID(first.ID), 0, "", 0
	again.State, again.ExpiresAt = StatePending, env.clock.Now().Add(time.Hour)
	data := encodeFor(t, env, msgSubmit, submitCmd{Request: again})
	one, err := env.applyBytes(data)
	require.NoError(t, err)
	require.ErrorIs(t, one.refused, ErrTokenUsed)
	require.NoError(t, one.err, "committed: the refusal is on the record")
	two, err := env.applyBytes(data)
	require.NoError(t, err)
	assert.True(t, two.repeat)
	require.ErrorIs(t, two.refused, ErrTokenUsed, "the repeat is refused as the first was")
	assert.Equal(t, one.refused.Error(), two.refused.Error())
	require.Len(t, env.audit.rawEntries(t, AuditWorkloadRefused), 1, "and records nothing more")

	wire, err := json.Marshal(toWire(two))
	require.NoError(t, err)
	var back wireResult
	require.NoError(t, json.Unmarshal(wire, &back))
	res := back.result()
	require.ErrorIs(t, res.refused, ErrTokenUsed, "a follower's caller gets the same sentinel")
	require.ErrorIs(t, res.refused, ErrForbidden)
	assert.Equal(t, two.refused.Error(), res.refused.Error())
}

// TestUsedTokensInTheSnapshot: a snapshot holds the used-token table as it
// is, so that a replica restored from it refuses and forgets exactly the
// tokens the others do; one from before snapshots held them rebuilds it
// from the requests.
func TestUsedTokensInTheSnapshot(t *testing.T) {
	st, err := newStateStore()
	require.NoError(t, err)
	req := func(id, jti string, at, until time.Time) *Request {
		return &Request{ID: id, Requester: "ci:ci:demo/app@refs/heads/main", State: StatePending, CreatedAt: at,
			ExpiresAt: at.Add(time.Hour), Workload: &WorkloadIdentity{TokenID: ciIssuer + "#jti:" + jti, UsableUntil: until}}
	}
	_, err = st.submitRequest(1, req("req-01HZZZZZZZZZZZZZZZZZZZZZZ1", "x", t0, t0.Add(5*time.Minute)), 0)
	require.NoError(t, err)
	// y comes after x stopped being usable: x is forgotten.
	_, err = st.submitRequest(2, req("req-01HZZZZZZZZZZZZZZZZZZZZZZ2", "y", t0.Add(6*time.Minute), t0.Add(10*time.Minute)), 0)
	require.NoError(t, err)
	want, err := allUsedTokens(st.db.Txn(false))
	require.NoError(t, err)
	require.Len(t, want, 1)

	var buf bytes.Buffer
	require.NoError(t, (&fsmSnapshot{db: st.db.Snapshot()}).write(&buf))
	header, _, _ := strings.Cut(buf.String(), "\n")
	assert.Contains(t, header, `"tokens":1`)
	back, err := readSnapshot(bytes.NewReader(buf.Bytes()))
	require.NoError(t, err)
	got, err := allUsedTokens(back.db.Txn(false))
	require.NoError(t, err)
	assert.Equal(t, want, got, "the table as it was: x stays forgotten")
	_, err = back.submitRequest(3, req("req-01HZZZZZZZZZZZZZZZZZZZZZZ3", "y", t0.Add(7*time.Minute), t0.Add(10*time.Minute)), 0)
	require.ErrorIs(t, err, ErrTokenUsed)

	_, err = readSnapshot(strings.NewReader(buf.String() + `{"id":"extra"}` + "\n"))
	require.ErrorContains(t, err, "more lines than the header counts")
	_, err = readSnapshot(strings.NewReader(strings.Replace(buf.String(), `"tokens":1`, `"tokens":2`, 1)))
	require.ErrorContains(t, err, "holds 1 used tokens, header says 2")

	// Format 2: requests only; the tokens come from them.
	var old bytes.Buffer
	require.NoError(t, json.NewEncoder(&old).Encode(snapshotHeader{Format: 2, Index: 2, Requests: 2}))
	for _, r := range back.listAll(t) {
		require.NoError(t, json.NewEncoder(&old).Encode(r))
	}
	fromOld, err := readSnapshot(&old)
	require.NoError(t, err)
	assert.Equal(t, 2, usedTokens(t, fromOld), "x and y, from their requests")
}

// listAll returns every request of st.
func (st *stateStore) listAll(tb testing.TB) []*Request {
	tb.Helper()
	it, err := st.db.Txn(false).Get(tableRequests, indexID)
	require.NoError(tb, err)
	var out []*Request
	for obj := it.Next(); obj != nil; obj = it.Next() {
		out = append(out, obj.(*Request))
	}
	return out
}
