package approvals

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"

	"github.com/jitssh/jitssh/audit"
	"github.com/jitssh/jitssh/ca/krl"
)

// linesArchive answers archive lookups from the lines a recordingAuditor
// holds, as the audit log's index does from the log.
type linesArchive struct{ a *recordingAuditor }

func (l linesArchive) RequestEntries(id string) ([]audit.Entry, error) {
	l.a.mu.Lock()
	defer l.a.mu.Unlock()
	var out []audit.Entry
	for _, line := range l.a.lines {
		var e audit.Entry
		if err := json.Unmarshal(line, &e); err != nil {
			return nil, err
		}
		var about struct {
			ID string `json:"id"`
		}
		if json.Unmarshal(e.Data, &about) == nil && about.ID == id {
			out = append(out, e)
		}
	}
	return out, nil
}

// compactEnv is a Service whose policy has keys for alice and bob, so that
// requests and decisions carry real statements and signatures, with a
// day's retention.
type compactEnv struct {
	*testEnv
	alice, bob   ssh.Signer
	aliceA, bobA Actor
}

func newCompactEnv(t *testing.T, archive bool) *compactEnv {
	alice, bob := newSigner(t), newSigner(t)
	yml := `people:
  - {name: alice, groups: [dev], keys: ["` + keyText(alice.PublicKey()) + `"]}
  - {name: bob, groups: [approvers], keys: ["` + keyText(bob.PublicKey()) + `"]}
rules:
  - {name: w, groups: [dev], repos: ["*"], refs: ["*"], access: [write], approvals: [{group: approvers, count: 1}]}
`
	env := newTestService(t, policyFrom(t, yml))
	env.opts.Retention = 24 * time.Hour
	if archive {
		env.opts.Archive = linesArchive{env.audit}
	}
	env.reopen(t)
	c := &compactEnv{testEnv: env, alice: alice, bob: bob}
	var err error
	c.aliceA, err = env.Authenticate(alice.PublicKey())
	require.NoError(t, err)
	c.bobA, err = env.Authenticate(bob.PublicKey())
	require.NoError(t, err)
	return c
}

func (c *compactEnv) sign(t *testing.T, s ssh.Signer, ns string, msg []byte) string {
	sig, err := audit.SignStatement(s, ns, msg)
	require.NoError(t, err)
	return sig
}

// request submits a signed request of alice's for a 30-minute grant,
// pending bob's decision.
func (c *compactEnv) request(t *testing.T) *Request { return c.requestFor(t, "30m") }

func (c *compactEnv) requestFor(t *testing.T, ttl string) *Request {
	sr := SignedRequest{Repo: "x", Ref: "*", Access: "write", TTL: ttl, Reason: "fix", PublicKey: keyText(freshKey(t))}
	sr.Signature = c.sign(t, c.alice, audit.NamespaceRequest, sr.Statement("alice").Message())
	r, err := c.SubmitSigned(ctx, c.aliceA, sr)
	require.NoError(t, err)
	require.NotEmpty(t, r.Statement)
	return r
}

// decide has bob approve (or deny) r with a signed decision.
func (c *compactEnv) decide(t *testing.T, r *Request, approve bool) *Request {
	kind, ns, call := KindApprove, audit.NamespaceApprove, c.ApproveSigned
	if !approve {
		kind, ns, call = KindDeny, audit.NamespaceDeny, c.DenySigned
	}
	sd := SignedDecision{Reason: "ok"}
	sd.Signature = c.sign(t, c.bob, ns, sd.Statement(kind, "bob", r).Message())
	got, err := call(ctx, c.bobA, r.ID, sd)
	require.NoError(t, err)
	return got
}

// stored returns the request as the state holds it.
func stored(t *testing.T, s *Service, id string) *Request {
	r, err := s.fsm.State().requestByID(nil, id)
	require.NoError(t, err)
	require.NotNil(t, r, id)
	return r
}

// TestCompactKeepsWhatTheStateNeeds ends requests every way there is and
// checks that a prune compacts each an hour after it settled, not before:
// the compacted copy has lost the statements, signatures, key and
// certificate, and kept everything the live state reads (state, serial,
// validity, who and when), so that the certificate's state, the KRL,
// issuing, listings by state and the counts answer as before.
func TestCompactKeepsWhatTheStateNeeds(t *testing.T) {
	c := newCompactEnv(t, false)

	issued := c.decide(t, c.request(t), true)
	require.NotEmpty(t, issued.Certificate)
	denied := c.decide(t, c.request(t), false)
	cancelled := c.request(t)
	cancelled, err := c.Cancel(ctx, "alice", cancelled.ID)
	require.NoError(t, err)
	revoked := c.decide(t, c.requestFor(t, "2h"), true) // on the KRL for the whole test
	revoked, err = c.Revoke(ctx, "bob", revoked.ID, 0, "key leaked")
	require.NoError(t, err)
	live := c.request(t) // approved last, its certificate outlives the others
	pending := c.request(t)

	countsBefore, err := c.NewStateCounter().Counts()
	require.NoError(t, err)
	krlBefore, err := c.KRL()
	require.NoError(t, err)

	// Within the hour: nothing is compacted.
	c.clock.Advance(59 * time.Minute)
	_, err = c.Prune()
	require.NoError(t, err)
	for _, r := range []*Request{issued, denied, cancelled, revoked} {
		assert.False(t, stored(t, c.Service, r.ID).Compacted, r.ID)
	}
	live = c.decide(t, live, true)
	require.NotEmpty(t, live.Certificate)

	// The 30-minute certificates expired more than an hour ago; the one
	// approved a moment ago is still valid, and the pending request, whose
	// decision is still to come, is left alone however old it is.
	c.clock.Advance(31*time.Minute + time.Second)
	_, err = c.Prune()
	require.NoError(t, err)

	for _, tc := range []struct {
		name      string
		r         *Request
		compacted bool
	}{
		{"issued, expired", issued, true},
		{"denied", denied, true},
		{"cancelled", cancelled, true},
		{"revoked", revoked, true},
		{"issued, valid", live, false},
		{"pending", pending, false},
	} {
		got := stored(t, c.Service, tc.r.ID)
		require.Equal(t, tc.compacted, got.Compacted, tc.name)
		if !tc.compacted {
			assert.NotEmpty(t, got.Statement, tc.name)
			continue
		}
		assert.Empty(t, got.Statement, tc.name)
		assert.Empty(t, got.Signature, tc.name)
		assert.Empty(t, got.PublicKey, tc.name)
		assert.Empty(t, got.Certificate, tc.name)
		for _, a := range got.Approvals {
			assert.Empty(t, a.Statement, tc.name)
			assert.Empty(t, a.Signature, tc.name)
		}
		if got.Decision != nil {
			assert.Empty(t, got.Decision.Signature, tc.name)
			assert.Empty(t, got.Decision.Statement, tc.name)
		}
		// What stays is the request but for the dropped detail.
		want := tc.r.clone()
		want.Statement, want.Signature, want.PublicKey, want.Certificate = "", "", "", ""
		for i := range want.Approvals {
			want.Approvals[i].Statement, want.Approvals[i].Signature = "", ""
		}
		if want.Decision != nil {
			want.Decision.Statement, want.Decision.Signature = "", ""
		}
		want.Compacted = true
		assert.Equal(t, want, got, tc.name)
		assert.Equal(t, tc.r.CertState(c.clock.Now()), got.CertState(c.clock.Now()), tc.name)
		assert.Equal(t, tc.r.HasCertificate(), got.HasCertificate(), tc.name)
		assert.False(t, got.Issuing(), tc.name)
	}

	// The KRL, the counts, issuing and listings by state read the same.
	krlAfter, err := c.KRL()
	require.NoError(t, err)
	before, err := krl.Parse(krlBefore)
	require.NoError(t, err)
	after, err := krl.Parse(krlAfter)
	require.NoError(t, err)
	assert.Equal(t, before.Version, after.Version)
	assert.True(t, after.IsRevoked(parseCert(t, revoked)), "a compacted revoked certificate stays on the KRL")
	unissued, err := c.fsm.State().unissuedRequests(nil)
	require.NoError(t, err)
	assert.Empty(t, unissued, "a compacted certificate is not taken for one still to issue")
	countsAfter, err := c.NewStateCounter().Counts()
	require.NoError(t, err)
	assert.Equal(t, countsBefore[StateDenied], countsAfter[StateDenied])
	assert.Equal(t, countsBefore[StateCancelled], countsAfter[StateCancelled])
	for _, tc := range []struct {
		state State
		want  []string
	}{
		{StateApproved, []string{live.ID, revoked.ID, issued.ID}},
		{StateDenied, []string{denied.ID}},
		{StateCancelled, []string{cancelled.ID}},
		{StatePending, []string{pending.ID}},
	} {
		page, err := c.Service.List(c.bobA, ListFilter{States: []State{tc.state}})
		require.NoError(t, err)
		var ids []string
		for _, r := range page.Requests {
			ids = append(ids, r.ID)
		}
		assert.Equal(t, tc.want, ids, tc.state)
	}

	// Listing someone's requests (--mine) finds the compacted ones too.
	mine, err := c.Service.List(c.aliceA, ListFilter{Requester: "alice"})
	require.NoError(t, err)
	var ids []string
	for _, r := range mine.Requests {
		ids = append(ids, r.ID)
	}
	assert.Equal(t, []string{pending.ID, live.ID, revoked.ID, cancelled.ID, denied.ID, issued.ID}, ids)

	// Revoking a compacted, expired certificate is refused as before; by
	// serial, only live certificates are looked up.
	_, err = c.Revoke(ctx, "bob", issued.ID, 0, "late")
	require.ErrorIs(t, err, ErrNotActive)
	_, err = c.Revoke(ctx, "bob", "", issued.Serial, "late")
	require.ErrorIs(t, err, ErrNotFound)
	bySerial, err := c.fsm.State().requestBySerial(nil, live.Serial)
	require.NoError(t, err)
	require.NotNil(t, bySerial)
	assert.Equal(t, live.ID, bySerial.ID)

	// Compacted requests leave at the retention like the others.
	c.clock.Advance(48 * time.Hour)
	n, err := c.Prune()
	require.NoError(t, err)
	assert.Equal(t, 5, n)
	assert.True(t, inState(t, c.Service, pending.ID))
}

// TestCompactedReadBackFromArchive: Get, and a wait on a compacted
// request, answer with the detail compaction dropped, read from the audit
// log's entries, equal to what the request had; List answers with what
// the state keeps, marked compacted. Without an archive, Get still
// answers with the compacted request.
func TestCompactedReadBackFromArchive(t *testing.T) {
	for _, tc := range []struct {
		name    string
		archive bool
	}{{"with archive", true}, {"without archive", false}} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCompactEnv(t, tc.archive)
			issued := c.decide(t, c.request(t), true)
			denied := c.decide(t, c.request(t), false)
			c.clock.Advance(2 * time.Hour)
			_, err := c.Prune()
			require.NoError(t, err)
			for _, want := range []*Request{issued, denied} {
				require.True(t, stored(t, c.Service, want.ID).Compacted)
				got, err := c.Service.Get(c.aliceA, want.ID)
				require.NoError(t, err)
				waited, err := c.Service.Wait(ctx, c.aliceA, want.ID, 0)
				require.NoError(t, err)
				if tc.archive {
					assert.Equal(t, want, got, "Get: whole again")
					assert.Equal(t, want, waited, "Wait: whole again")
				} else {
					assert.True(t, got.Compacted)
					assert.Empty(t, got.Statement)
					assert.Equal(t, want.State, got.State)
					assert.Equal(t, want.Serial, got.Serial)
				}
				// Copies: changing one changes nothing in the state.
				got.Approvals = nil
				assert.NotNil(t, stored(t, c.Service, want.ID).Approvals)
			}
			page, err := c.Service.List(c.aliceA, ListFilter{})
			require.NoError(t, err)
			require.Len(t, page.Requests, 2)
			for _, r := range page.Requests {
				assert.True(t, r.Compacted, "a listing answers from memory")
			}
			assert.Equal(t, CertExpired, page.Requests[1].CertState(c.clock.Now()))
		})
	}
}

// TestCompactDeterministic: two state machines applying the same log,
// one snapshot taken and restored halfway, hold the same state, byte for
// byte in their snapshots; a prune command without a compaction time, as
// logged before there was one, compacts nothing.
func TestCompactDeterministic(t *testing.T) {
	y := newYearRun(t, 24*time.Hour)
	var logs []*raft.Log
	y.logs = &logs
	y.run(3000) // three thousand requests over a year, an hourly prune
	snap := func(f *fsm) []byte {
		s, err := f.Snapshot()
		require.NoError(t, err)
		var b bytes.Buffer
		require.NoError(t, s.(*fsmSnapshot).write(&b))
		return b.Bytes()
	}
	all, err := y.f.State().all(nil, indexID)
	require.NoError(t, err)
	compacted := 0
	for _, r := range all {
		if r.Compacted {
			compacted++
		}
	}
	assert.Positive(t, compacted)

	// The same log applied by another state machine, in other batches,
	// and a snapshot restored, hold the same state.
	replica, err := newFSM(nil, nil)
	require.NoError(t, err)
	replica.Apply(&raft.Log{Index: 1, Type: raft.LogCommand, Data: envelopeOf(t, msgAuditAnchor, auditAnchorCmd{Chain: audit.GenesisChain}, t0)})
	for len(logs) > 0 {
		n := min(len(logs), 7)
		for _, res := range replica.ApplyBatch(logs[:n]) {
			if r, ok := res.(*applyResult); ok {
				require.NoError(t, r.err)
			}
		}
		logs = logs[n:]
	}
	assert.Equal(t, snap(y.f), snap(replica), "a replica holds the same state")
	restored, err := newFSM(nil, nil)
	require.NoError(t, err)
	require.NoError(t, restored.Restore(io.NopCloser(bytes.NewReader(snap(y.f)))))
	assert.Equal(t, snap(y.f), snap(restored), "a restored snapshot holds the same state")

	// A prune with no compaction time compacts nothing, even with
	// requests settled long ago and still whole.
	f, err := newFSM(nil, nil)
	require.NoError(t, err)
	z := &yearRun{tb: t, f: f, retention: 24 * time.Hour, ids: newIDSource(), cert: y.cert, key: y.key, statement: y.statement, signature: y.signature}
	z.apply(msgAuditAnchor, auditAnchorCmd{Chain: audit.GenesisChain}, t0)
	z.request(0, t0) // approved, certificate valid an hour
	z.request(90, t0)
	z.flush()
	at := t0.Add(10 * time.Hour)
	z.apply(msgPrune, pruneCmd{Cutoff: at.Add(-24 * time.Hour), At: at, Limit: prunePerCommand}, at)
	z.flush()
	reqs, err := f.State().all(nil, indexID)
	require.NoError(t, err)
	require.Len(t, reqs, 2)
	for _, r := range reqs {
		assert.False(t, r.Compacted)
	}
	z.apply(msgPrune, newPruneCmd(at, 24*time.Hour), at)
	z.flush()
	reqs, err = f.State().all(nil, indexID)
	require.NoError(t, err)
	for _, r := range reqs {
		assert.True(t, r.Compacted)
	}

	// A compaction time after the command's own is refused.
	res := f.Apply(&raft.Log{Index: 100, Type: raft.LogCommand, Data: envelopeOf(t, msgPrune,
		pruneCmd{Cutoff: at.Add(-time.Hour), At: at, Limit: 1, Compact: at.Add(time.Minute)}, at)})
	require.ErrorIs(t, res.(*applyResult).err, ErrBadRequest)
}

// TestCompactOlderSnapshot: a snapshot of an older format, whose requests
// are all whole, restores as it is; the next prune compacts what settled.
// One of the current format carries compacted requests, which the older
// formats could not say, so it is refused by a reader of those: its
// format number is new.
func TestCompactOlderSnapshot(t *testing.T) {
	y := newYearRun(t, 365*24*time.Hour)
	y.run(200)
	s, err := y.f.Snapshot()
	require.NoError(t, err)
	var b bytes.Buffer
	require.NoError(t, s.(*fsmSnapshot).write(&b))
	assert.Contains(t, b.String(), `"compacted":true`)
	assert.Contains(t, b.String(), `"format":5`)

	// The same state as a format-4 snapshot: every request whole.
	var old bytes.Buffer
	dec := json.NewDecoder(&b)
	enc := json.NewEncoder(&old)
	var h snapshotHeader
	require.NoError(t, dec.Decode(&h))
	h.Format = 4
	require.NoError(t, enc.Encode(h))
	for range h.Requests {
		var r Request
		require.NoError(t, dec.Decode(&r))
		if r.Compacted {
			r.Compacted, r.Statement, r.Signature, r.PublicKey = false, y.statement, y.signature, y.key
			if !r.IssuedAt.IsZero() {
				r.Certificate = y.cert
			}
		}
		require.NoError(t, enc.Encode(r))
	}
	for dec.More() {
		var raw json.RawMessage
		require.NoError(t, dec.Decode(&raw))
		require.NoError(t, enc.Encode(raw))
	}
	f, err := newFSM(nil, nil)
	require.NoError(t, err)
	require.NoError(t, f.Restore(io.NopCloser(bytes.NewReader(old.Bytes()))))
	reqs, err := f.State().all(nil, indexID)
	require.NoError(t, err)
	require.Len(t, reqs, h.Requests)
	for _, r := range reqs {
		require.False(t, r.Compacted)
	}
	at := t0.Add(365 * 24 * time.Hour)
	z := &yearRun{tb: t, f: f, index: h.Index + 10, retention: 366 * 24 * time.Hour}
	z.prune(at)
	reqs, err = f.State().all(nil, indexID)
	require.NoError(t, err)
	compacted := 0
	for _, r := range reqs {
		if r.Compacted {
			compacted++
			assert.Empty(t, r.Statement)
		}
	}
	assert.Positive(t, compacted)
}

// envelopeOf is cmd as a leader logs it.
func envelopeOf(t *testing.T, typ msgType, cmd any, at time.Time) []byte {
	data, err := encodeEnvelope(typ|msgAudited, cmd, "", at)
	require.NoError(t, err)
	return data
}

// TestSettledAt: when each kind of request stops needing its detail, and
// those that never may be compacted.
func TestSettledAt(t *testing.T) {
	at, end := t0, t0.Add(time.Hour)
	for _, tc := range []struct {
		name string
		r    *Request
		want time.Time // zero: not settled
	}{
		{"pending", &Request{State: StatePending, UpdatedAt: at}, time.Time{}},
		{"denied", &Request{State: StateDenied, UpdatedAt: at}, at},
		{"cancelled", &Request{State: StateCancelled, UpdatedAt: at}, at},
		{"expired", &Request{State: StateExpired, UpdatedAt: at}, at},
		{"approved, to issue", &Request{State: StateApproved, Serial: 4}, time.Time{}},
		{"approved, stopped before issue", &Request{State: StateApproved, Revoked: &Decision{At: at}}, at},
		{"issued", &Request{State: StateApproved, Certificate: "c", IssuedAt: at, ValidBefore: end}, end},
		{"issued, revoked", &Request{State: StateApproved, Certificate: "c", IssuedAt: at, ValidBefore: end, Revoked: &Decision{At: at}}, at},
		{"issued, no issue time", &Request{State: StateApproved, Certificate: "c", ValidBefore: end}, time.Time{}},
	} {
		got, ok := settledAt(tc.r)
		assert.Equal(t, !tc.want.IsZero(), ok, tc.name)
		assert.Equal(t, tc.want, got, tc.name)
		if ok {
			c := tc.r.compacted()
			assert.Equal(t, tc.r.HasCertificate(), c.HasCertificate(), tc.name)
			assert.Equal(t, tc.r.Issuing(), c.Issuing(), tc.name)
			e1, ok1 := endedAt(tc.r)
			e2, ok2 := endedAt(c)
			assert.Equal(t, ok1, ok2, tc.name)
			assert.Equal(t, e1, e2, "%s: leaves the state when it would have", tc.name)
		}
	}
}

// TestCompactedWorkloadStillFollowed: a CI/CD job's request, compacted,
// keeps the key the job is known by, so the job may still follow it and
// no other key may.
func TestCompactedWorkloadStillFollowed(t *testing.T) {
	env := newTestService(t, workloadPolicy(t))
	env.opts.Retention = 24 * time.Hour
	env.reopen(t)
	who := ciActor(t)
	r, err := env.SubmitWorkload(ctx, who, WorkloadInput{Token: ciToken(t, gitlabClaims("gl1")), Repo: "group/app",
		Ref: "refs/heads/deploy/prod", Access: "write", Reason: "deploy"})
	require.NoError(t, err)
	approved := env.approve(t, "bob", r.ID)
	env.clock.Advance(approved.ValidBefore.Sub(env.clock.Now()) + compactAfter + time.Second)
	_, err = env.Prune()
	require.NoError(t, err)
	stored := stored(t, env.Service, r.ID)
	require.True(t, stored.Compacted)
	assert.Empty(t, stored.Certificate)
	assert.Equal(t, r.PublicKey, stored.PublicKey)

	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	got, err := env.WaitWorkload(wctx, Actor{Key: who.Key}, r.ID, 0)
	require.NoError(t, err)
	assert.Equal(t, CertExpired, got.CertState(env.clock.Now()))
	_, err = env.WaitWorkload(wctx, Actor{Key: freshKey(t)}, r.ID, 0)
	require.ErrorIs(t, err, ErrNotFound)
}
