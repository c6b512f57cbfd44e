package approvals

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/go-memdb"
)

// msgEnvelope marks a command wrapped in an envelope: the JSON after the
// type byte is an envelope whose Cmd is the command. Entries without it
// were logged before envelopes existed and mean what they always meant.
const msgEnvelope msgType = 0x80

// envelope carries what every command needs besides its own fields: the
// key that makes applying it idempotent, and the policy it was decided
// under.
type envelope struct {
	// Op is random, made by the node that built the command. The state
	// machine applies a command with a given Op once: a node that does not
	// know whether its command was committed (its leader went away
	// mid-apply, the connection broke) sends the same bytes again, and the
	// repeat changes nothing and writes no audit entry.
	Op string `json:"op"`
	// Policy is the digest of the policy the command was decided under;
	// empty for commands that decide nothing (issue, expiry, policy
	// changes). The state machine refuses it when the cluster's policy is
	// another, so two nodes with different policy files cannot decide
	// differently unnoticed.
	Policy string `json:"policy,omitempty"`
	// At is the building node's clock; it ages applied keys out.
	At  time.Time       `json:"at"`
	Cmd json.RawMessage `json:"cmd"`
}

// opsKeep is how long, by command time, the state remembers an applied
// key. A node retries a command for at most applyTimeout, so an hour
// covers any retry with room for clocks that disagree.
const opsKeep = time.Hour

// opsPrunePerCommand bounds the keys one command ages out, so that no
// command's apply does unbounded work.
const opsPrunePerCommand = 64

// ErrPolicyChanged: the command was decided under a policy that is not the
// cluster's. The node's policy file differs from the one the cluster last
// loaded; reload it.
var ErrPolicyChanged = errors.New("this node's policy differs from the cluster's; reload it")

// opEntry is an applied key and what its command did, so that a repeat
// answers as the first application did.
type opEntry struct {
	Key      string    `json:"key"`
	Index    uint64    `json:"index"`              // the raft index of the first application
	At       time.Time `json:"at"`                 // the command's envelope time
	IDs      []string  `json:"ids,omitempty"`      // the requests it changed
	Complete bool      `json:"complete,omitempty"` // an approval that met the last step
	// Refused is the refusal the command recorded rather than made (see
	// applyResult.refused), so that a repeat is refused alike.
	Refused *wireError `json:"refused,omitempty"`
}

const (
	tableOps  = "ops"
	indexAt   = "at"
	metaEpoch = "epoch" // how many snapshot restores the serials have moved past
)

func opsTableSchema() *memdb.TableSchema {
	return &memdb.TableSchema{
		Name: tableOps,
		Indexes: map[string]*memdb.IndexSchema{
			indexID: {
				Name:    indexID,
				Unique:  true,
				Indexer: &memdb.StringFieldIndex{Field: "Key"},
			},
			indexAt: {
				Name:    indexAt,
				Indexer: timeIndex{},
			},
		},
	}
}

// timeIndex indexes ops by At, as 8 bytes that sort like the times.
type timeIndex struct{}

func timeKey(t time.Time) []byte {
	return binary.BigEndian.AppendUint64(nil, uint64(t.UnixNano())^(1<<63))
}

func (timeIndex) FromObject(obj any) (bool, []byte, error) {
	o, ok := obj.(*opEntry)
	if !ok {
		return false, nil, fmt.Errorf("time index: %T is not an *opEntry", obj)
	}
	return true, timeKey(o.At), nil
}

func (timeIndex) FromArgs(args ...any) ([]byte, error) {
	if len(args) != 1 {
		return nil, fmt.Errorf("time index: want one argument, got %d", len(args))
	}
	t, ok := args[0].(time.Time)
	if !ok {
		return nil, fmt.Errorf("time index: argument is %T, want time.Time", args[0])
	}
	return timeKey(t), nil
}

// newOpKey returns a fresh idempotency key.
func newOpKey() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("idempotency key: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// decidesUnderPolicy reports whether commands of type t are decisions made
// under the policy, which the state machine checks against the cluster's.
func decidesUnderPolicy(t msgType) bool {
	switch t &^ msgAudited {
	case msgSubmit, msgApprove, msgDeny, msgCancel, msgRevoke:
		return true
	}
	return false
}

// encodeEnvelope encodes an audited command in an envelope.
func encodeEnvelope(t msgType, cmd any, policy string, at time.Time) ([]byte, error) {
	body, err := json.Marshal(cmd)
	if err != nil {
		return nil, fmt.Errorf("encode %s command: %w", t, err)
	}
	key, err := newOpKey()
	if err != nil {
		return nil, err
	}
	env := envelope{Op: key, At: at, Cmd: body}
	if decidesUnderPolicy(t) {
		env.Policy = policy
	}
	data, err := json.Marshal(env)
	if err != nil {
		return nil, fmt.Errorf("encode %s command: %w", t, err)
	}
	return append([]byte{byte(t | msgAudited | msgEnvelope)}, data...), nil
}

// openEnvelope decodes the envelope of an entry, returning the command's
// type and body.
func openEnvelope(t msgType, body []byte) (*envelope, msgType, []byte, error) {
	var env envelope
	if err := json.Unmarshal(body, &env); err != nil {
		return nil, t, nil, &decodeError{fmt.Errorf("decode %s envelope: %w", t&^msgEnvelope, err)}
	}
	if len(env.Op) != 32 {
		return nil, t, nil, &decodeError{fmt.Errorf("decode %s envelope: idempotency key %q", t&^msgEnvelope, env.Op)}
	}
	return &env, t &^ msgEnvelope, env.Cmd, nil
}

// repeatTxn returns the result of the first application of env's key, or
// nil when the key is new.
func repeatTxn(tx *txn, env *envelope) (*applyResult, error) {
	obj, err := tx.First(tableOps, indexID, env.Op)
	if err != nil {
		return nil, fmt.Errorf("read applied keys: %w", err)
	}
	if obj == nil {
		return nil, nil
	}
	op := obj.(*opEntry)
	res := &applyResult{index: op.Index, complete: op.Complete, repeat: true}
	if op.Refused != nil {
		res.refused = op.Refused.decode()
	}
	for _, id := range op.IDs {
		r, err := requestByIDTxn(tx.Txn, nil, id)
		if err != nil {
			return nil, err
		}
		if r != nil {
			res.requests = append(res.requests, r)
		}
	}
	if len(op.IDs) == 1 && len(res.requests) == 1 {
		res.request, res.requests = res.requests[0], nil
	}
	return res, nil
}

// checkPolicyTxn refuses a decision made under another policy than the
// one the state records.
func checkPolicyTxn(tx *txn, env *envelope) error {
	if env.Policy == "" {
		return nil
	}
	recorded, err := textTxn(tx.Txn, metaPolicy)
	if err != nil {
		return err
	}
	if recorded != "" && recorded != env.Policy {
		return fmt.Errorf("%w (the cluster runs %.19s, this node decided under %.19s)", ErrPolicyChanged, recorded, env.Policy)
	}
	return nil
}

// recordOpTxn remembers env's key with what its command did, and forgets
// keys older than opsKeep by the command's time: every replica applies the
// same commands, so every replica forgets the same keys.
func recordOpTxn(tx *txn, env *envelope, res *applyResult) error {
	op := &opEntry{Key: env.Op, Index: tx.index, At: env.At, Complete: res.complete, Refused: encodeError(res.refused)}
	if res.request != nil {
		op.IDs = []string{res.request.ID}
	}
	for _, r := range res.requests {
		op.IDs = append(op.IDs, r.ID)
	}
	if err := tx.Insert(tableOps, op); err != nil {
		return fmt.Errorf("record applied key: %w", err)
	}
	it, err := tx.Get(tableOps, indexAt)
	if err != nil {
		return fmt.Errorf("age applied keys: %w", err)
	}
	cutoff := env.At.Add(-opsKeep)
	var old []*opEntry
	for obj := it.Next(); obj != nil && len(old) < opsPrunePerCommand; obj = it.Next() {
		o := obj.(*opEntry)
		if !o.At.Before(cutoff) {
			break
		}
		old = append(old, o)
	}
	for _, o := range old {
		if err := tx.Delete(tableOps, o); err != nil {
			return fmt.Errorf("age applied keys: %w", err)
		}
	}
	return nil
}

// allOps returns every remembered key, oldest first, for a snapshot.
func allOps(tx *memdb.Txn) ([]*opEntry, error) {
	it, err := tx.Get(tableOps, indexAt)
	if err != nil {
		return nil, fmt.Errorf("read applied keys: %w", err)
	}
	var out []*opEntry
	for obj := it.Next(); obj != nil; obj = it.Next() {
		out = append(out, obj.(*opEntry))
	}
	return out, nil
}
