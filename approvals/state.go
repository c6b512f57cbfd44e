package approvals

import (
	"fmt"
	"slices"
	"time"

	"github.com/hashicorp/go-memdb"

	"github.com/jitssh/jitssh/audit"
)

// stateStore holds the daemon's state in go-memdb: every request ever made
// and the counters of the meta table.
//
// Only the FSM writes to it, each write at the raft index of the command it
// applies, so every replica that applies the same log holds the same state.
// Writes check the lifecycle rules inside their transaction, which is what
// makes them hold under concurrency: of two approvals racing to complete a
// request, the FSM applies one first and the other finds the request no
// longer pending.
//
// Objects are never modified once inserted: a change is made on a clone
// that replaces the original. Readers may therefore keep what they read,
// but must not modify it.
type stateStore struct {
	db        *memdb.MemDB
	abandonCh chan struct{}
}

func newStateStore() (*stateStore, error) {
	db, err := memdb.NewMemDB(stateSchema())
	if err != nil {
		return nil, fmt.Errorf("new state store: %w", err)
	}
	return &stateStore{db: db, abandonCh: make(chan struct{})}, nil
}

// AbandonCh is closed when a snapshot restore replaces this store.
// Blocking reads add it to their watch set, so that they wake and start
// over on the new store instead of waiting on one nobody writes any more.
func (s *stateStore) AbandonCh() <-chan struct{} { return s.abandonCh }

func (s *stateStore) abandon() { close(s.abandonCh) }

// txn is a write transaction at one raft index. Commit records the index
// in the meta table, so the store always knows the last index it reflects.
type txn struct {
	*memdb.Txn
	index uint64
}

func (s *stateStore) writeTxn(index uint64) *txn {
	return &txn{Txn: s.db.Txn(true), index: index}
}

// Commit records the transaction's index and commits. After Commit, the
// deferred Abort is a no-op.
func (t *txn) Commit() error {
	if err := setCounterTxn(t, metaIndex, t.index); err != nil {
		return err
	}
	t.Txn.Commit()
	return nil
}

// --- reads ---

// requestByID returns the request with that ID, or nil.
func (s *stateStore) requestByID(ws memdb.WatchSet, id string) (*Request, error) {
	return requestByIDTxn(s.db.Txn(false), ws, id)
}

func requestByIDTxn(tx *memdb.Txn, ws memdb.WatchSet, id string) (*Request, error) {
	ch, obj, err := tx.FirstWatch(tableRequests, indexID, id)
	if err != nil {
		return nil, fmt.Errorf("request lookup: %w", err)
	}
	ws.Add(ch)
	if obj == nil {
		return nil, nil
	}
	return obj.(*Request), nil
}

// requestBySerial returns the request whose certificate has that serial,
// or nil; nil too for a compacted request, whose certificate has expired
// or been revoked (see serialIndex).
func (s *stateStore) requestBySerial(ws memdb.WatchSet, serial uint64) (*Request, error) {
	ch, obj, err := s.db.Txn(false).FirstWatch(tableRequests, indexSerial, serial)
	if err != nil {
		return nil, fmt.Errorf("serial lookup: %w", err)
	}
	ws.Add(ch)
	if obj == nil {
		return nil, nil
	}
	return obj.(*Request), nil
}

// listQuery selects requests for listRequests.
type listQuery struct {
	requester string                // only this requester's; empty for all
	states    []State               // only these states; empty for all
	keep      func(r *Request) bool // a further filter, or nil
	limit     int                   // at most this many; 0 for all
}

// listRequests returns the requests q selects, newest first.
func (s *stateStore) listRequests(ws memdb.WatchSet, q listQuery) ([]*Request, error) {
	tx := s.db.Txn(false)
	var (
		it  memdb.ResultIterator
		err error
	)
	// IDs sort by creation time, and non-unique indexes order rows by ID
	// within a value, so every index here iterates in creation order.
	// The state and requester indexes leave compacted requests out, and
	// only pending ones are never compacted: other listings read the
	// requests in ID order.
	if len(q.states) == 1 && q.states[0] == StatePending {
		it, err = tx.GetReverse(tableRequests, indexState, string(q.states[0]))
	} else {
		it, err = tx.GetReverse(tableRequests, indexID)
	}
	if err != nil {
		return nil, fmt.Errorf("list requests: %w", err)
	}
	ws.Add(it.WatchCh())
	var out []*Request
	for obj := it.Next(); obj != nil; obj = it.Next() {
		r := obj.(*Request)
		if len(q.states) > 0 && !slices.Contains(q.states, r.State) || q.requester != "" && r.Requester != q.requester {
			continue
		}
		if q.keep != nil && !q.keep(r) {
			continue
		}
		out = append(out, r)
		if q.limit > 0 && len(out) == q.limit {
			break
		}
	}
	return out, nil
}

// requestsInState returns the requests in state that are not compacted,
// oldest first: every pending one, the approved ones whose certificate is
// to come or may still be live, and those that ended too recently to be
// compacted yet.
func (s *stateStore) requestsInState(ws memdb.WatchSet, state State) ([]*Request, error) {
	return s.all(ws, indexState, string(state))
}

// revokedRequests returns every request whose certificate was revoked,
// oldest first.
func (s *stateStore) revokedRequests(ws memdb.WatchSet) ([]*Request, error) {
	return s.all(ws, indexRevoked)
}

// unissuedRequests returns the approved requests whose certificate has not
// been stored and which were not revoked first, oldest first.
func (s *stateStore) unissuedRequests(ws memdb.WatchSet) ([]*Request, error) {
	return s.all(ws, indexUnissued)
}

func (s *stateStore) all(ws memdb.WatchSet, index string, args ...any) ([]*Request, error) {
	it, err := s.db.Txn(false).Get(tableRequests, index, args...)
	if err != nil {
		return nil, fmt.Errorf("read %s index: %w", index, err)
	}
	ws.Add(it.WatchCh())
	var out []*Request
	for obj := it.Next(); obj != nil; obj = it.Next() {
		out = append(out, obj.(*Request))
	}
	return out, nil
}

// counter returns a counter of the meta table; 0 when never set.
func (s *stateStore) counter(key string) (uint64, error) {
	return counterTxn(s.db.Txn(false), key)
}

func counterTxn(tx *memdb.Txn, key string) (uint64, error) {
	obj, err := tx.First(tableMeta, indexID, key)
	if err != nil {
		return 0, fmt.Errorf("read %s counter: %w", key, err)
	}
	if obj == nil {
		return 0, nil
	}
	return obj.(*metaEntry).Value, nil
}

func setCounterTxn(t *txn, key string, v uint64) error {
	if err := t.Insert(tableMeta, &metaEntry{Key: key, Value: v}); err != nil {
		return fmt.Errorf("write %s counter: %w", key, err)
	}
	return nil
}

// pendingCountTxn counts the requests of requester still pending at at.
func pendingCountTxn(tx *memdb.Txn, requester string, at time.Time) (int, error) {
	it, err := tx.Get(tableRequests, indexState, string(StatePending))
	if err != nil {
		return 0, fmt.Errorf("count pending: %w", err)
	}
	n := 0
	for obj := it.Next(); obj != nil; obj = it.Next() {
		if r := obj.(*Request); r.Requester == requester && at.Before(r.ExpiresAt) {
			n++
		}
	}
	return n, nil
}

// textTxn returns a text of the meta table; "" when never set.
func textTxn(tx *memdb.Txn, key string) (string, error) {
	obj, err := tx.First(tableMeta, indexID, key)
	if err != nil {
		return "", fmt.Errorf("read %s: %w", key, err)
	}
	if obj == nil {
		return "", nil
	}
	return obj.(*metaEntry).Text, nil
}

func setTextTxn(t *txn, key, text string) error {
	if err := t.Insert(tableMeta, &metaEntry{Key: key, Text: text}); err != nil {
		return fmt.Errorf("write %s: %w", key, err)
	}
	return nil
}

// auditChainTxn returns the audit chain position after the last entry the
// state made, or the zero Chain when it has none yet.
func auditChainTxn(tx *memdb.Txn) (audit.Chain, error) {
	obj, err := tx.First(tableMeta, indexID, metaAudit)
	if err != nil {
		return audit.Chain{}, fmt.Errorf("read audit chain position: %w", err)
	}
	if obj == nil {
		return audit.Chain{}, nil
	}
	m := obj.(*metaEntry)
	return audit.Chain{Seq: m.Value, Hash: m.Text}, nil
}

func setAuditChainTxn(t *txn, c audit.Chain) error {
	if err := t.Insert(tableMeta, &metaEntry{Key: metaAudit, Value: c.Seq, Text: c.Hash}); err != nil {
		return fmt.Errorf("write audit chain position: %w", err)
	}
	return nil
}

// auditChain returns the audit chain position the state holds.
func (s *stateStore) auditChain() (audit.Chain, error) {
	return auditChainTxn(s.db.Txn(false))
}
