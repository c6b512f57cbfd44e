package approvals

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-memdb"
	"github.com/hashicorp/raft"

	"github.com/jitssh/jitssh/audit"
)

// msgType is the first byte of every raft log entry the Service writes;
// the rest is the command as JSON. The numbers are stored in the log, so
// they never change meaning: new commands get new numbers.
type msgType uint8

const (
	msgSubmit msgType = iota + 1
	msgApprove
	msgDeny
	msgCancel
	msgExpire
	msgAllocateSerial
	msgStoreCertificate
	msgRevoke
	msgOffboard
	msgAuditAnchor
	msgSetPolicy
)

// msgAudited marks a command whose audit entries the state machine writes
// itself (see journal). Commands logged before it existed are applied
// without entries: their writers audited them directly.
const msgAudited msgType = 0x40

func (t msgType) String() string {
	switch t &^ (msgAudited | msgEnvelope) {
	case msgSubmit:
		return "submit"
	case msgApprove:
		return "approve"
	case msgDeny:
		return "deny"
	case msgCancel:
		return "cancel"
	case msgExpire:
		return "expire"
	case msgAllocateSerial:
		return "allocate-serial"
	case msgStoreCertificate:
		return "store-certificate"
	case msgRevoke:
		return "revoke"
	case msgOffboard:
		return "offboard"
	case msgAuditAnchor:
		return "audit-anchor"
	case msgSetPolicy:
		return "set-policy"
	case msgRestore:
		return "restore"
	case msgPrune:
		return "prune"
	}
	return fmt.Sprintf("msgType(%d)", uint8(t))
}

// Commands. Each carries everything its change depends on, times
// included, so that applying the log gives the same state anywhere, any
// number of times; the policy is not part of the log, so what a command
// needs from it (limits, the actor's groups) travels in the command.
type (
	submitCmd struct {
		Request    *Request `json:"request"`
		MaxPending int      `json:"max_pending"`
		// Refusal, instead of Request, records a CI/CD job refused a
		// certificate (see workloadRefusal); it changes no state.
		Refusal *workloadRefusal `json:"refusal,omitempty"`
		// Token is a workload request's token, for its audit entry only.
		Token string `json:"token,omitempty"`
	}
	approveCmd struct {
		ID       string   `json:"id"`
		Approval Approval `json:"approval"`
	}
	denyCmd struct {
		ID       string   `json:"id"`
		Decision Decision `json:"decision"`
		Groups   []string `json:"groups"`
	}
	cancelCmd struct {
		ID       string   `json:"id"`
		Decision Decision `json:"decision"`
	}
	expireCmd struct {
		ID     string    `json:"id"`
		At     time.Time `json:"at"`
		Reason string    `json:"reason"`
	}
	allocateSerialCmd struct {
		ID string    `json:"id"`
		At time.Time `json:"at"`
	}
	revokeCmd struct {
		ID       string   `json:"id"`
		Decision Decision `json:"decision"`
		// Kind is AuditRevoke or AuditRelease; empty in commands logged
		// before it was recorded.
		Kind string `json:"kind,omitempty"`
	}
	// auditAnchorCmd sets the audit chain position the state continues
	// from, once: the end of the existing log when the state has none yet.
	auditAnchorCmd struct {
		Chain audit.Chain `json:"chain"`
	}
	// setPolicyCmd records a new policy and offboards, in the same change,
	// the people it drops or whose keys it removed.
	setPolicyCmd struct {
		Digest   string            `json:"digest"`
		People   int               `json:"people"`
		Rules    int               `json:"rules"`
		Offboard map[string]string `json:"offboard,omitempty"` // person → why
		At       time.Time         `json:"at"`
	}
	offboardCmd struct {
		People map[string]string `json:"people"` // person → why they were offboarded
		At     time.Time         `json:"at"`
	}
)

func encodeCmd(t msgType, cmd any) ([]byte, error) {
	body, err := json.Marshal(cmd)
	if err != nil {
		return nil, fmt.Errorf("encode %s command: %w", t, err)
	}
	return append([]byte{byte(t)}, body...), nil
}

// applyResult is what fsm.Apply returns for a command: the changed
// request(s), or the error that refused the command. A refusal is a
// result, not a failure of raft: every replica refuses the same command
// the same way.
type applyResult struct {
	index    uint64 // the raft index the command was applied at
	request  *Request
	requests []*Request // offboarding changes many
	complete bool       // an approval met the last step
	err      error
	// repeat: the command's idempotency key was applied before, at index;
	// this application changed nothing.
	repeat bool
	// pruned is how many requests a prune command dropped, compacted
	// how many it compacted.
	pruned, compacted int
	// refused is a refusal that is recorded on the audit log all the
	// same, such as a CI/CD token presented again: the command commits
	// its entry, and the caller is refused.
	refused error
}

// fsm applies commands from the raft log to the state store.
type fsm struct {
	state  atomic.Pointer[stateStore]
	logger *slog.Logger
	// journal takes every applied command's audit lines and changed
	// requests, in raft order, and publishes the requests once the lines
	// are durable.
	journal *journal

	// applied is the last raft index applied; appliedCh is closed and
	// replaced whenever it moves, for those waiting on an index.
	appliedMu sync.Mutex
	applied   uint64
	appliedCh chan struct{}
}

func newFSM(logger *slog.Logger, j *journal) (*fsm, error) {
	st, err := newStateStore()
	if err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if j == nil { // no audit log, nobody to tell: tests of the state alone
		j = &journal{logger: logger, changed: make(chan struct{})}
	}
	f := &fsm{logger: logger, journal: j, appliedCh: make(chan struct{})}
	f.state.Store(st)
	return f, nil
}

// State returns the current state store. A snapshot restore replaces it,
// so callers fetch it again for every read rather than keeping it.
func (f *fsm) State() *stateStore { return f.state.Load() }

// Apply implements raft.FSM.
func (f *fsm) Apply(l *raft.Log) any {
	res := f.applyOne(l)
	f.journal.flush()
	f.noteApplied(l.Index)
	return res
}

// ApplyBatch implements raft.BatchingFSM: the audit lines of a whole batch
// go to the log with one write and one fsync.
func (f *fsm) ApplyBatch(logs []*raft.Log) []any {
	out := make([]any, len(logs))
	for i, l := range logs {
		out[i] = f.applyOne(l)
	}
	f.journal.flush()
	if len(logs) > 0 {
		f.noteApplied(logs[len(logs)-1].Index)
	}
	return out
}

func (f *fsm) applyOne(l *raft.Log) any {
	if l.Type != raft.LogCommand {
		f.journal.add(l.Index, nil, nil)
		return nil
	}
	if len(l.Data) == 0 {
		f.journal.add(l.Index, nil, nil)
		return &applyResult{index: l.Index, err: errors.New("empty raft log command")}
	}
	t := msgType(l.Data[0])
	body := l.Data[1:]
	var env *envelope
	var res *applyResult
	var lines []auditLine
	if t&msgEnvelope != 0 {
		var err error
		if env, t, body, err = openEnvelope(t, body); err != nil {
			res = &applyResult{err: err}
		}
	}
	switch {
	case res != nil:
	case t&msgAudited != 0:
		res, lines = f.applyAudited(l.Index, t&^msgAudited, body, env)
	default:
		res = f.apply(l.Index, t, body)
	}
	if res.index == 0 {
		res.index = l.Index
	}
	if res.repeat {
		f.journal.add(l.Index, nil, nil)
		return res
	}
	if res.err != nil {
		var decodeErr *decodeError
		if errors.As(res.err, &decodeErr) {
			f.logger.Error("raft log entry not applied", "index", l.Index, "type", t.String(), "err", res.err)
		}
		f.journal.add(l.Index, nil, nil)
		return res
	}
	changed := res.requests
	if res.request != nil {
		changed = []*Request{res.request}
	}
	f.journal.add(l.Index, lines, changed)
	return res
}

type decodeError struct{ err error }

func (e *decodeError) Error() string { return e.err.Error() }
func (e *decodeError) Unwrap() error { return e.err }

func decode[T any](t msgType, body []byte) (T, error) {
	var cmd T
	if err := json.Unmarshal(body, &cmd); err != nil {
		return cmd, &decodeError{fmt.Errorf("decode %s command: %w", t, err)}
	}
	return cmd, nil
}

func (f *fsm) apply(index uint64, t msgType, body []byte) *applyResult {
	st := f.State()
	res := &applyResult{}
	switch t {
	case msgSubmit:
		cmd, err := decode[submitCmd](t, body)
		if res.err = err; err == nil {
			res.request, res.err = st.submitRequest(index, cmd.Request, cmd.MaxPending)
		}
	case msgApprove:
		cmd, err := decode[approveCmd](t, body)
		if res.err = err; err == nil {
			res.request, res.complete, res.err = st.approveRequest(index, cmd.ID, cmd.Approval)
		}
	case msgDeny:
		cmd, err := decode[denyCmd](t, body)
		if res.err = err; err == nil {
			res.request, res.err = st.denyRequest(index, cmd.ID, cmd.Decision, cmd.Groups)
		}
	case msgCancel:
		cmd, err := decode[cancelCmd](t, body)
		if res.err = err; err == nil {
			res.request, res.err = st.cancelRequest(index, cmd.ID, cmd.Decision)
		}
	case msgExpire:
		cmd, err := decode[expireCmd](t, body)
		if res.err = err; err == nil {
			res.request, res.err = st.expireRequest(index, cmd.ID, cmd.At, cmd.Reason)
		}
	case msgAllocateSerial:
		cmd, err := decode[allocateSerialCmd](t, body)
		if res.err = err; err == nil {
			res.request, res.err = st.allocateSerial(index, cmd.ID, cmd.At)
		}
	case msgStoreCertificate:
		cmd, err := decode[issuedCert](t, body)
		if res.err = err; err == nil {
			res.request, res.err = st.storeCertificate(index, cmd)
		}
	case msgRevoke:
		cmd, err := decode[revokeCmd](t, body)
		if res.err = err; err == nil {
			d := cmd.Decision
			d.Release = cmd.Kind == AuditRelease
			res.request, res.err = st.revokeCertificate(index, cmd.ID, d)
		}
	case msgOffboard:
		cmd, err := decode[offboardCmd](t, body)
		if res.err = err; err == nil {
			res.requests, res.err = st.offboard(index, cmd.People, cmd.At)
		}
	default:
		res.err = &decodeError{fmt.Errorf("unknown command type %d", uint8(t))}
	}
	return res
}

// snapshotFormat is the version of the snapshot layout: a header line,
// then one request per line, all JSON.
// Format 2 adds the audit chain position and the policy digest.
// Format 3 adds the serial epoch and, after the requests, one applied
// idempotency key per line, then one used CI/CD token per line. Before
// it, the used tokens were read back from the requests that carry them.
// Format 4 adds what the state keeps of the requests it pruned.
// Format 5 holds compacted requests (Request.Compacted), which a reader of
// an older format would take for requests whose certificate is still to
// be issued; it reads formats 1 to 4 as they are.
const snapshotFormat = 5

type snapshotHeader struct {
	Format     int          `json:"format"`
	Index      uint64       `json:"index"`
	LastSerial uint64       `json:"last_serial"`
	Requests   int          `json:"requests"`
	Audit      *audit.Chain `json:"audit,omitempty"`
	Policy     string       `json:"policy,omitempty"`
	Epoch      uint64       `json:"epoch,omitempty"`
	Ops        int          `json:"ops,omitempty"`
	Tokens     int          `json:"tokens,omitempty"`
	// Applied is the last raft index the state machine had applied, which
	// may be past Index when the last commands were refused.
	Applied uint64 `json:"applied,omitempty"`
	// Pruned is what the state keeps of the requests it dropped.
	Pruned *prunedTotals `json:"pruned,omitempty"`
}

// errAuditBehind refuses a snapshot while audit lines of applied commands
// are not durable: raft would then drop the commands that can write them
// again.
var errAuditBehind = errors.New("audit log behind the state; snapshot postponed")

// Snapshot implements raft.FSM. It captures the state at once (a memdb
// snapshot is an immutable view); the writing happens in Persist, off the
// apply path.
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	if f.journal.behind() {
		return nil, errAuditBehind
	}
	return &fsmSnapshot{db: f.State().db.Snapshot(), applied: f.appliedIndex()}, nil
}

type fsmSnapshot struct {
	db      *memdb.MemDB
	applied uint64
}

func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if err := s.write(sink); err != nil {
		sink.Cancel()
		return fmt.Errorf("persist state snapshot: %w", err)
	}
	return sink.Close()
}

func (s *fsmSnapshot) write(w io.Writer) error {
	tx := s.db.Txn(false)
	index, err := counterTxn(tx, metaIndex)
	if err != nil {
		return err
	}
	serial, err := counterTxn(tx, metaSerial)
	if err != nil {
		return err
	}
	chain, err := auditChainTxn(tx)
	if err != nil {
		return err
	}
	policy, err := textTxn(tx, metaPolicy)
	if err != nil {
		return err
	}
	epoch, err := counterTxn(tx, metaEpoch)
	if err != nil {
		return err
	}
	ops, err := allOps(tx)
	if err != nil {
		return err
	}
	tokens, err := allUsedTokens(tx)
	if err != nil {
		return err
	}
	pruned, err := prunedTxn(tx)
	if err != nil {
		return err
	}
	it, err := tx.Get(tableRequests, indexID)
	if err != nil {
		return err
	}
	var reqs []*Request
	for obj := it.Next(); obj != nil; obj = it.Next() {
		reqs = append(reqs, obj.(*Request))
	}
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	h := snapshotHeader{Format: snapshotFormat, Index: index, LastSerial: serial, Requests: len(reqs), Policy: policy,
		Epoch: epoch, Ops: len(ops), Tokens: len(tokens), Applied: s.applied}
	if !chain.IsZero() {
		h.Audit = &chain
	}
	if pruned.Commands > 0 {
		h.Pruned = &pruned
	}
	if err := enc.Encode(h); err != nil {
		return err
	}
	for _, r := range reqs {
		if err := enc.Encode(r); err != nil {
			return err
		}
	}
	for _, o := range ops {
		if err := enc.Encode(o); err != nil {
			return err
		}
	}
	for _, u := range tokens {
		if err := enc.Encode(u); err != nil {
			return err
		}
	}
	return bw.Flush()
}

func (s *fsmSnapshot) Release() {}

// Restore implements raft.FSM: it replaces the whole state with the
// snapshot's, and abandons the old store so that blocking reads move over.
func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	st, applied, err := readSnapshotApplied(rc)
	if err != nil {
		return fmt.Errorf("restore state snapshot: %w", err)
	}
	f.state.Swap(st).abandon()
	chain, err := st.auditChain()
	if err != nil {
		return fmt.Errorf("restore state snapshot: %w", err)
	}
	index, err := st.counter(metaIndex)
	if err != nil {
		return fmt.Errorf("restore state snapshot: %w", err)
	}
	f.journal.restored(chain, index)
	f.noteApplied(max(index, applied))
	return nil
}

func readSnapshot(r io.Reader) (*stateStore, error) {
	st, _, err := readSnapshotApplied(r)
	return st, err
}

// readSnapshotApplied is readSnapshot that also returns the raft index
// the state machine had applied when the snapshot was taken.
func readSnapshotApplied(r io.Reader) (*stateStore, uint64, error) {
	dec := json.NewDecoder(bufio.NewReader(r))
	var h snapshotHeader
	if err := dec.Decode(&h); err != nil {
		return nil, 0, fmt.Errorf("header: %w", err)
	}
	if h.Format < 1 || h.Format > snapshotFormat {
		return nil, 0, fmt.Errorf("snapshot format %d, want 1 to %d", h.Format, snapshotFormat)
	}
	reqs := make([]*Request, 0, min(h.Requests, 1<<16))
	for h.Format < 3 || len(reqs) < h.Requests {
		var req Request
		err := dec.Decode(&req)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, 0, fmt.Errorf("request %d: %w", len(reqs)+1, err)
		}
		reqs = append(reqs, &req)
	}
	if len(reqs) != h.Requests {
		return nil, 0, fmt.Errorf("holds %d requests, header says %d", len(reqs), h.Requests)
	}
	var ops []*opEntry
	var tokens []*usedToken
	if h.Format >= 3 {
		var err error
		if ops, err = decodeLines[opEntry](dec, h.Ops, "applied key"); err != nil {
			return nil, 0, err
		}
		if tokens, err = decodeLines[usedToken](dec, h.Tokens, "used token"); err != nil {
			return nil, 0, err
		}
		if dec.More() {
			return nil, 0, fmt.Errorf("more lines than the header counts (%d requests, %d applied keys, %d used tokens)", h.Requests, h.Ops, h.Tokens)
		}
	} else {
		tokens = tokensOf(reqs)
	}
	st, err := newStateStore()
	if err != nil {
		return nil, 0, err
	}
	var chain audit.Chain
	if h.Audit != nil {
		chain = *h.Audit
	}
	if err := st.restore(h.Index, h.LastSerial, chain, h.Policy, reqs, tokens); err != nil {
		return nil, 0, err
	}
	if err := st.restoreCluster(h.Index, h.Epoch, ops); err != nil {
		return nil, 0, err
	}
	if h.Pruned != nil {
		if err := st.restorePruned(h.Index, *h.Pruned); err != nil {
			return nil, 0, err
		}
	}
	return st, h.Applied, nil
}

// decodeLines reads the n lines of one kind that a snapshot header counts.
func decodeLines[T any](dec *json.Decoder, n int, what string) ([]*T, error) {
	out := make([]*T, 0, min(n, 1<<16))
	for len(out) < n {
		v := new(T)
		if err := dec.Decode(v); errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("holds %d %ss, header says %d", len(out), what, n)
		} else if err != nil {
			return nil, fmt.Errorf("%s %d: %w", what, len(out)+1, err)
		}
		out = append(out, v)
	}
	return out, nil
}
