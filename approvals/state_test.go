package approvals

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-memdb"
	"github.com/hashicorp/raft"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/jitssh/jitssh/audit"
	"github.com/jitssh/jitssh/ca"
)

// testStateStore returns an empty state store.
func testStateStore(t testing.TB) *stateStore {
	t.Helper()
	st, err := newStateStore()
	require.NoError(t, err)
	return st
}

// mockRequest returns a pending request of alice's that bob may approve.
func mockRequest(id string) *Request {
	return &Request{
		ID:        id,
		Requester: "alice",
		Repo:      "demo/app",
		Ref:       "refs/heads/feature/x",
		Access:    "write",
		Grant:     "git:write:demo/app:refs/heads/feature/x",
		TTL:       Duration(time.Hour),
		Rule:      "feature-write",
		Steps:     []Step{{Group: "approvers", Count: 1}},
		State:     StatePending,
		CreatedAt: t0,
		ExpiresAt: t0.Add(time.Hour),
		UpdatedAt: t0,
		Approvals: []Approval{},
	}
}

const (
	idA = "req-01ARZ3NDEKTSV4RRFFQ69G5FAA"
	idB = "req-01ARZ3NDEKTSV4RRFFQ69G5FAB"
)

func TestStateWatchFires(t *testing.T) {
	st := testStateStore(t)
	ws := memdb.NewWatchSet()
	r, err := st.requestByID(ws, idA)
	require.NoError(t, err)
	assert.Nil(t, r)
	_, err = st.submitRequest(10, mockRequest(idA), 0)
	require.NoError(t, err)
	assert.True(t, watchFired(ws), "a new request wakes a watch on its ID")

	ws = memdb.NewWatchSet()
	r, err = st.requestByID(ws, idA)
	require.NoError(t, err)
	assert.Equal(t, uint64(10), r.Version)
	_, err = st.submitRequest(11, mockRequest(idB), 0)
	require.NoError(t, err)
	assert.False(t, watchFired(ws), "another request's change does not")

	_, _, err = st.approveRequest(12, idA, Approval{By: "bob", At: t0, Groups: []string{"approvers"}})
	require.NoError(t, err)
	assert.True(t, watchFired(ws), "a change to the request does")

	index, err := st.counter(metaIndex)
	require.NoError(t, err)
	assert.Equal(t, uint64(12), index)
}

func TestStateObjectsAreNotModified(t *testing.T) {
	st := testStateStore(t)
	_, err := st.submitRequest(1, mockRequest(idA), 0)
	require.NoError(t, err)
	before, err := st.requestByID(nil, idA)
	require.NoError(t, err)
	_, complete, err := st.approveRequest(2, idA, Approval{By: "bob", At: t0, Groups: []string{"approvers"}})
	require.NoError(t, err)
	assert.True(t, complete)
	assert.Equal(t, StatePending, before.State, "a reader's object stays as it was read")
	assert.Empty(t, before.Approvals)
}

func TestStateRefusals(t *testing.T) {
	st := testStateStore(t)
	_, err := st.submitRequest(1, mockRequest(idA), 0)
	require.NoError(t, err)

	_, err = st.submitRequest(2, mockRequest(idA), 0)
	require.ErrorIs(t, err, ErrBadRequest, "an ID is used once")
	bad := mockRequest(idB)
	bad.State = StateDenied
	_, err = st.submitRequest(2, bad, 0)
	require.ErrorIs(t, err, ErrBadRequest)
	_, err = st.submitRequest(2, mockRequest(idB), 1)
	require.ErrorIs(t, err, ErrTooManyPending)

	_, err = st.expireRequest(3, idA, t0, "early")
	require.ErrorIs(t, err, ErrBadRequest, "not due yet")
	_, err = st.allocateSerial(3, idA, t0)
	require.ErrorIs(t, err, ErrIssue, "a pending request gets no serial")

	_, _, err = st.approveRequest(4, idA, Approval{By: "bob", At: t0, Groups: []string{"approvers"}})
	require.NoError(t, err)
	r, err := st.allocateSerial(5, idA, t0)
	require.NoError(t, err)
	assert.Equal(t, uint64(1), r.Serial)
	_, err = st.storeCertificate(6, issuedCert{ID: idA, Serial: 2, Certificate: "c", IssuedAt: t0})
	require.ErrorIs(t, err, ErrIssue, "only the serial on record")
	_, err = st.storeCertificate(6, issuedCert{ID: idA, Serial: 1, Certificate: "c", IssuedAt: t0, ValidBefore: t0.Add(time.Hour)})
	require.NoError(t, err)
	_, err = st.storeCertificate(7, issuedCert{ID: idA, Serial: 1, Certificate: "c2", IssuedAt: t0})
	require.ErrorIs(t, err, ErrIssue, "one certificate per request")
	_, err = st.allocateSerial(7, idA, t0)
	require.ErrorIs(t, err, ErrIssue)

	_, err = st.revokeCertificate(8, idB, Decision{By: "bob", At: t0})
	require.ErrorIs(t, err, ErrNotFound)
}

func TestStateSerialsStopBelowBreakGlass(t *testing.T) {
	st := testStateStore(t)
	r := mockRequest(idA)
	r.State = StateApproved
	_, err := st.submitRequest(1, r, 0)
	require.NoError(t, err)
	require.NoError(t, st.restore(1, ca.BreakGlassBit-2, audit.Chain{}, "", []*Request{r}, nil))
	got, err := st.allocateSerial(2, idA, t0)
	require.NoError(t, err)
	assert.Equal(t, ca.BreakGlassBit-1, got.Serial)
	_, err = st.allocateSerial(3, idA, t0)
	require.ErrorIs(t, err, ca.ErrSerialsExhausted)
}

// fsmLog is a stream of commands: a request approved, issued and revoked,
// one denied, one cancelled, one expired, and an offboarding.
func fsmLog(t *testing.T) []*raft.Log {
	t.Helper()
	var logs []*raft.Log
	add := func(mt msgType, cmd any) {
		data, err := encodeCmd(mt, cmd)
		require.NoError(t, err)
		logs = append(logs, &raft.Log{Index: uint64(len(logs) + 1), Type: raft.LogCommand, Data: data})
	}
	ids := []string{
		"req-01ARZ3NDEKTSV4RRFFQ69G5FA0", "req-01ARZ3NDEKTSV4RRFFQ69G5FA1", "req-01ARZ3NDEKTSV4RRFFQ69G5FA2",
		"req-01ARZ3NDEKTSV4RRFFQ69G5FA3", "req-01ARZ3NDEKTSV4RRFFQ69G5FA4",
	}
	for _, id := range ids {
		add(msgSubmit, submitCmd{Request: mockRequest(id), MaxPending: 10})
	}
	add(msgApprove, approveCmd{ID: ids[0], Approval: Approval{By: "bob", At: t0, Groups: []string{"approvers"}}})
	add(msgAllocateSerial, allocateSerialCmd{ID: ids[0], At: t0})
	add(msgStoreCertificate, issuedCert{ID: ids[0], Serial: 1, Certificate: "c", IssuedAt: t0, ValidBefore: t0.Add(time.Hour)})
	add(msgRevoke, revokeCmd{ID: ids[0], Decision: Decision{By: "bob", At: t0, Reason: "done"}})
	add(msgDeny, denyCmd{ID: ids[1], Decision: Decision{By: "bob", At: t0, Reason: "no"}, Groups: []string{"approvers"}})
	add(msgCancel, cancelCmd{ID: ids[2], Decision: Decision{By: "alice", At: t0}})
	add(msgExpire, expireCmd{ID: ids[3], At: t0.Add(2 * time.Hour), Reason: "late"})
	add(msgApprove, approveCmd{ID: ids[3], Approval: Approval{By: "bob", At: t0, Groups: []string{"approvers"}}}) // refused
	add(msgOffboard, offboardCmd{People: map[string]string{"alice": "left"}, At: t0})
	return logs
}

func TestFSMReplayIsDeterministic(t *testing.T) {
	logs := fsmLog(t)
	snapshot := func() []byte {
		f, err := newFSM(nil, nil)
		require.NoError(t, err)
		for _, l := range logs {
			f.Apply(l)
		}
		var buf bytes.Buffer
		s, err := f.Snapshot()
		require.NoError(t, err)
		require.NoError(t, s.(*fsmSnapshot).write(&buf))
		return buf.Bytes()
	}
	first := snapshot()
	assert.Equal(t, first, snapshot(), "the same log gives the same state")

	st, err := readSnapshot(bytes.NewReader(first))
	require.NoError(t, err)
	reqs, err := st.listRequests(nil, listQuery{})
	require.NoError(t, err)
	states := map[string]string{}
	for _, r := range reqs {
		states[r.ID[len(r.ID)-1:]] = string(r.State)
		if r.Revoked != nil {
			states[r.ID[len(r.ID)-1:]] += " revoked by " + r.Revoked.By
		}
	}
	assert.Equal(t, map[string]string{
		"0": "approved revoked by bob",
		"1": "denied",
		"2": "cancelled",
		"3": "expired",
		"4": "cancelled", // offboarded
	}, states)
	serial, err := st.counter(metaSerial)
	require.NoError(t, err)
	assert.Equal(t, uint64(1), serial)
	index, err := st.counter(metaIndex)
	require.NoError(t, err)
	assert.Equal(t, uint64(len(logs)), index)
}

func TestFSMRefusesBadEntries(t *testing.T) {
	f, err := newFSM(nil, nil)
	require.NoError(t, err)
	for _, data := range [][]byte{nil, {0xee, '{', '}'}, append([]byte{byte(msgSubmit)}, "not json"...)} {
		res := f.Apply(&raft.Log{Index: 1, Type: raft.LogCommand, Data: data}).(*applyResult)
		assert.Error(t, res.err)
	}
	assert.Nil(t, f.Apply(&raft.Log{Index: 2, Type: raft.LogNoop}), "raft's own entries are not commands")
	reqs, err := f.State().listRequests(nil, listQuery{})
	require.NoError(t, err)
	assert.Empty(t, reqs)
}

func TestFSMRestoreAbandonsOldState(t *testing.T) {
	f, err := newFSM(nil, nil)
	require.NoError(t, err)
	old := f.State()
	ws := memdb.NewWatchSet()
	ws.Add(old.AbandonCh())

	var buf bytes.Buffer
	src := testStateStore(t)
	_, err = src.submitRequest(5, mockRequest(idA), 0)
	require.NoError(t, err)
	require.NoError(t, (&fsmSnapshot{db: src.db.Snapshot()}).write(&buf))
	require.NoError(t, f.Restore(nopCloser{&buf}))

	assert.True(t, watchFired(ws), "readers of the old state are told to move")
	r, err := f.State().requestByID(nil, idA)
	require.NoError(t, err)
	require.NotNil(t, r)
	assert.Equal(t, uint64(5), r.Version)
}

func TestReadSnapshotRefusesDamage(t *testing.T) {
	src := testStateStore(t)
	_, err := src.submitRequest(5, mockRequest(idA), 0)
	require.NoError(t, err)
	var buf bytes.Buffer
	require.NoError(t, (&fsmSnapshot{db: src.db.Snapshot()}).write(&buf))
	good := buf.String()
	header, _, _ := strings.Cut(good, "\n")

	var h snapshotHeader
	require.NoError(t, json.Unmarshal([]byte(header), &h))
	assert.Equal(t, snapshotHeader{Format: snapshotFormat, Index: 5, Requests: 1}, h)

	for name, data := range map[string]string{
		"empty":          "",
		"truncated":      header + "\n",
		"wrong format":   strings.Replace(good, fmt.Sprintf(`"format":%d`, snapshotFormat), fmt.Sprintf(`"format":%d`, snapshotFormat+1), 1),
		"garbled record": header + "\n{\"id\":\n",
	} {
		_, err := readSnapshot(strings.NewReader(data))
		assert.Error(t, err, name)
	}
}

type nopCloser struct{ *bytes.Buffer }

func (nopCloser) Close() error { return nil }

func TestRaftLogLines(t *testing.T) {
	var buf bytes.Buffer
	w := &raftLog{logger: slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	}))}
	_, err := w.Write([]byte("2030-01-02T03:04:05.000Z [WARN]  raft: heartbeat timeout reached: last-leader-addr=\n"))
	require.NoError(t, err)
	_, err = w.Write([]byte("2030-01-02T03:04:05.000Z [ERROR] raft: failed to apply\n"))
	require.NoError(t, err)
	_, err = w.Write([]byte("2030-01-02T03:04:05.000Z [INFO]  snapshot-store: reaping snapshot\n"))
	require.NoError(t, err)
	assert.Equal(t, `level=WARN msg="raft: heartbeat timeout reached: last-leader-addr=" component=raft
level=ERROR msg="raft: failed to apply" component=raft
level=INFO msg="snapshot-store: reaping snapshot" component=raft
`, buf.String())
}
