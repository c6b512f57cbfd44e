package approvals

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/crypto/ssh"

	"github.com/jitssh/jitssh/audit"
	"github.com/jitssh/jitssh/ca"
)

// Limits on what callers pass in.
const (
	MaxReasonLen    = 1024     // bytes of a reason
	MaxSignatureLen = 16 << 10 // bytes of an armored SSHSIG signature
)

// applyTimeout bounds the wait for raft to accept a command.
const applyTimeout = 10 * time.Second

// Options configure a Service.
type Options struct {
	DataDir   string        // raft log, snapshots and node ID; created if missing
	Policy    *Policy       // the policy to start with
	Authority *ca.Authority // signs certificates; their validity follows its clock
	Now       func() time.Time
	Logger    *slog.Logger
	// Audit is the daemon's audit log, opened with audit.Options.Journal;
	// nil writes none (tests). The Service is its only writer.
	Audit AuditLog
	// RaftTimeout is raft's heartbeat and election timeout; zero means
	// DefaultRaftTimeout.
	RaftTimeout time.Duration
	// Cluster makes the Service one node of a raft cluster; nil runs it
	// on its own, on an in-memory transport.
	Cluster *ClusterOptions
	// HostKey is the daemon's own SSH host key, which is never certified
	// as a person's key; nil when there is none.
	HostKey ssh.PublicKey
	// Retention is how long after it ended a request stays in the state
	// (see prune.go); zero keeps every request.
	Retention time.Duration
	// Archive answers for requests that left the state; nil: none.
	Archive Archive

	// noBackground leaves expiry and issue retries to the caller, for
	// tests that move a fake clock.
	noBackground bool
	// applyWait bounds how long a write waits for a leader; zero means
	// applyTimeout. Tests of lost quorum shorten it.
	applyWait time.Duration
	// auditGrace, when set, replaces how long a call waits for a failing
	// audit log, for tests of a log that stays failed.
	auditGrace time.Duration
	// pruneInterval, when set, replaces how often the leader looks for
	// state to prune.
	pruneInterval time.Duration
}

// Service is the approval daemon's engine: it takes requests, applies the
// policy, collects approvals and issues certificates, keeping every change
// in raft. Its methods are safe for concurrent use.
type Service struct {
	authority *ca.Authority
	now       func() time.Time
	logger    *slog.Logger
	journal   *journal
	ids       *idSource
	fsm       *fsm
	node      *raftNode
	events    *broker
	guard     guard // what the per-person limits count (limits.go)

	cluster     *cluster // nil for a node on its own
	dataDir     string
	digest      atomic.Pointer[policyDigest] // of the last policy asked for
	raftTimeout time.Duration                // raft's heartbeat and election timeout
	applyWait   time.Duration                // how long a write waits for a leader
	ready       chan struct{}                // closed once the Service takes calls
	// applyGate is held for reading by every raft.Apply on this node and
	// for writing by a snapshot restore, which must see no command
	// between reading the state's position and replacing the state.
	applyGate sync.RWMutex

	// policyMu orders a policy reload against the calls that decide
	// under the policy: a call holds it for reading from its decision
	// until its commands are applied, and SetPolicy holds it for writing
	// while it offboards and swaps, so no decision made under an old
	// policy lands after the offboarding that replaced it.
	policyMu sync.RWMutex
	policy   *Policy

	mu        sync.Mutex
	issueMu   sync.Mutex            // one signature at a time: each takes the next serial
	issueNext uint64                // guarded by issueMu: the last serial handed to raft (maybe not applied yet); 0 after a refusal
	issuing   map[string]bool       // requests being signed right now
	retry     map[string]retryState // requests whose certificate could not be issued yet
	wake      chan struct{}         // tells the background loop a retry was scheduled

	retention     time.Duration
	pruneInterval time.Duration
	nextPrune     time.Time // guarded by the background loop, its only user
	archive       Archive

	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
	closeErr  error
}

// Open starts the Service on o.DataDir: it opens or bootstraps raft,
// replays the state, issues the certificates of requests that were approved
// but not yet issued when the process last stopped, and starts expiring
// pending requests.
func Open(o Options) (*Service, error) {
	switch {
	case o.DataDir == "":
		return nil, errors.New("open approvals: no data dir")
	case o.Policy == nil:
		return nil, errors.New("open approvals: no policy")
	case o.Authority == nil:
		return nil, errors.New("open approvals: no certificate authority")
	}
	s := &Service{
		authority: o.Authority,
		now:       o.Now,
		logger:    o.Logger,
		ids:       newIDSource(),
		events:    newBroker(),
		policy:    o.Policy,
		issuing:   map[string]bool{},
		retry:     map[string]retryState{},
		wake:      make(chan struct{}, 1),
		stop:      make(chan struct{}),
		done:      make(chan struct{}),
		ready:     make(chan struct{}),
		dataDir:   o.DataDir,

		retention:     o.Retention,
		pruneInterval: o.pruneInterval,
		archive:       o.Archive,
	}
	s.guard.hostKey = o.HostKey
	if s.now == nil {
		s.now = time.Now
	}
	if s.logger == nil {
		s.logger = slog.Default()
	}
	timeout := o.RaftTimeout
	if timeout <= 0 {
		timeout = DefaultRaftTimeout
	}
	s.raftTimeout = timeout
	s.applyWait = o.applyWait
	if s.applyWait <= 0 {
		s.applyWait = applyTimeout
	}
	if err := os.MkdirAll(o.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("open approvals: %w", err)
	}
	var err error
	s.journal, err = newJournal(o.Audit, s.logger, s.events.publish)
	if err != nil {
		return nil, fmt.Errorf("open approvals: %w", err)
	}
	s.journal.grace = o.auditGrace
	f, err := newFSM(s.logger, s.journal)
	if err != nil {
		return nil, fmt.Errorf("open approvals: %w", err)
	}
	s.fsm = f
	if o.Cluster != nil {
		if err := s.openCluster(o, timeout); err != nil {
			return nil, err
		}
		if o.noBackground {
			close(s.done)
		} else {
			go s.run()
		}
		return s, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second+10*timeout)
	defer cancel()
	s.node, err = openRaft(ctx, o.DataDir, f, timeout, s.logger, nil)
	if err != nil {
		return nil, fmt.Errorf("open approvals in %s: %w", o.DataDir, err)
	}
	if err := s.ids.seed(f.State()); err != nil {
		s.node.close()
		return nil, fmt.Errorf("open approvals: %w", err)
	}
	if err := s.anchorAudit(); err != nil {
		s.node.close()
		return nil, fmt.Errorf("open approvals: %w", err)
	}
	if err := s.startPolicy(); err != nil {
		s.node.close()
		return nil, fmt.Errorf("open approvals: %w", err)
	}
	s.issueUnissued(true)
	close(s.ready)
	if o.noBackground {
		close(s.done)
	} else {
		go s.run()
	}
	return s, nil
}

// Close stops the Service. Calls in flight fail with ErrClosed or finish;
// what was acknowledged is on disk.
func (s *Service) Close() error {
	s.closeOnce.Do(func() {
		close(s.stop)
		<-s.done
		s.closeErr = s.node.close()
		s.closeCluster()
		s.journal.close()
		s.events.close()
	})
	return s.closeErr
}

func (s *Service) closed() bool {
	select {
	case <-s.stop:
		return true
	default:
		return false
	}
}

// clock returns the time to record: UTC, without the monotonic reading,
// so that it survives JSON unchanged.
func (s *Service) clock() time.Time { return s.now().UTC().Round(0) }

// commit applies a command through raft and returns what the FSM made of
// it once the command's audit entries are durable: only then may the
// caller acknowledge the change. A command the FSM refused comes back as
// the refusal's error; one applied whose entries could not be written yet
// as an error wrapping ErrAudit, together with the result.
func (s *Service) commit(t msgType, cmd any) (*applyResult, error) {
	res, err := s.apply(t|msgAudited, cmd)
	if err != nil {
		return nil, err
	}
	// Bounded like the apply itself: a log that takes writes again within
	// it lets the caller's change through.
	ctx, cancel := context.WithTimeout(context.Background(), applyTimeout)
	defer cancel()
	if err := s.journal.await(ctx, res.index); err != nil {
		return res, fmt.Errorf("%s: %w", t, err)
	}
	return res, nil
}

// Policy returns the current policy.
func (s *Service) Policy() *Policy {
	s.policyMu.RLock()
	defer s.policyMu.RUnlock()
	return s.policy
}

// actor returns the groups of a person the policy knows.
func actor(p *Policy, person string) ([]string, error) {
	m, ok := p.people[person]
	if !ok {
		return nil, fmt.Errorf("%w: %q is not a person in the policy", ErrForbidden, person)
	}
	return slices.Clone(m.Groups), nil
}

// checkText refuses free text that could mislead whoever reads it in a
// terminal: control characters (escape sequences, newlines that forge
// lines) and bidirectional overrides.
func checkText(field, s string, maxLen int) error {
	if len(s) > maxLen {
		return fmt.Errorf("%w: %s is %d bytes; at most %d", ErrBadRequest, field, len(s), maxLen)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("%w: %s is not valid UTF-8", ErrBadRequest, field)
	}
	for _, r := range s {
		if unicode.IsControl(r) || unicode.Is(unicode.Bidi_Control, r) {
			return fmt.Errorf("%w: %s contains the control character %U", ErrBadRequest, field, r)
		}
	}
	return nil
}

// checkSignature bounds an armored signature and keeps it to printable
// ASCII lines.
func checkSignature(sig string) error {
	if len(sig) > MaxSignatureLen {
		return fmt.Errorf("%w: signature is %d bytes; at most %d", ErrBadRequest, len(sig), MaxSignatureLen)
	}
	for i := 0; i < len(sig); i++ {
		if c := sig[i]; (c < ' ' || c > '~') && c != '\n' && c != '\r' {
			return fmt.Errorf("%w: signature holds byte %#x; want an armored SSH signature", ErrBadRequest, c)
		}
	}
	return nil
}

// lookup returns the stored request with that ID.
func (s *Service) lookup(id string) (*Request, error) {
	if !validID(id) {
		return nil, notFound(id)
	}
	r, err := s.fsm.State().requestByID(nil, id)
	if err == nil && r == nil && s.cluster != nil {
		// A follower may not have applied yet a request another node has
		// just made: catch up with the leader once before saying there
		// is no such request.
		ctx, cancel := context.WithTimeout(context.Background(), s.applyWait)
		if s.syncWithLeader(ctx) == nil {
			r, err = s.fsm.State().requestByID(nil, id)
		}
		cancel()
	}
	if err != nil {
		return nil, err
	}
	if r == nil {
		return nil, notFound(id)
	}
	return r, nil
}

// anchorAudit gives the state its audit chain position when it has none
// (a new data directory, or one from before the state kept it): the end of
// the audit log as it is. Then it checks that log and state agree: a log
// that lacks entries the state made cannot be written again, and a log
// with entries beyond the state's was written by someone else.
func (s *Service) anchorAudit() error {
	st := s.fsm.State()
	chain, err := st.auditChain()
	if err != nil {
		return err
	}
	file := s.journal.fileHead()
	if chain.IsZero() {
		at := file
		if at.IsZero() {
			at = audit.GenesisChain
		}
		if _, err := s.commit(msgAuditAnchor, auditAnchorCmd{Chain: at}); err != nil {
			return fmt.Errorf("anchor audit chain: %w", err)
		}
		return nil
	}
	if err := s.journal.health(); err != nil {
		return fmt.Errorf("audit log: %w", err)
	}
	if !file.IsZero() && file.Seq > chain.Seq {
		return fmt.Errorf("audit log has %d entries, but the state made only %d: another writer appended to it, or the state is not the log's", file.Seq, chain.Seq)
	}
	if !file.IsZero() && file.Seq < chain.Seq && s.cluster == nil {
		return fmt.Errorf("audit log ends at entry %d, but the state made %d: restore the log from a backup", file.Seq, chain.Seq)
	}
	// In a cluster, such a log is caught up from a peer (see restored).
	return nil
}

// goneFrom returns the people with pending requests or live certificates
// in st whom p does not have, each with the reason.
func goneFrom(st *stateStore, p *Policy, now time.Time) (map[string]string, error) {
	gone := map[string]string{}
	for _, state := range []State{StatePending, StateApproved} {
		reqs, err := st.requestsInState(nil, state)
		if err != nil {
			return nil, err
		}
		for _, r := range reqs {
			if _, ok := p.people[r.Requester]; ok || r.Workload != nil {
				continue // a CI/CD job is no person of the policy
			}
			if r.State == StatePending || (r.Revoked == nil && (!r.HasCertificate() || now.Before(r.ValidBefore))) {
				gone[r.Requester] = "removed from the policy"
			}
		}
	}
	return gone, nil
}

// startPolicy records the policy the Service starts with when it is not
// the one the state last recorded, offboarding first anyone who has
// pending requests or live certificates and is no longer in it: a person
// removed while the daemon was down is treated as on a reload. (A removed
// key cannot be told from here: the state keeps names, not keys.)
func (s *Service) startPolicy() error {
	st := s.fsm.State()
	recorded, err := textTxn(st.db.Txn(false), metaPolicy)
	if err != nil {
		return err
	}
	p := s.policy
	if recorded == p.Digest() {
		return nil
	}
	if recorded != "" && !s.soleVoter() {
		// In a cluster only a reload changes the cluster's policy: a node
		// started with an older file must not undo a newer one.
		s.logger.Error("policy differs from the cluster's: this node's decisions are refused until its file matches, or a reload makes it the cluster's",
			"policy", p.Digest(), "cluster_policy", recorded)
		return nil
	}
	now := s.clock()
	gone, err := goneFrom(st, p, now)
	if err != nil {
		return err
	}
	cmd := setPolicyCmd{Digest: p.Digest(), People: len(p.cfg.People), Rules: len(p.cfg.Rules), At: now}
	if len(gone) > 0 {
		cmd.Offboard = gone
	}
	res, err := s.commit(msgSetPolicy, cmd)
	if err != nil {
		return fmt.Errorf("record policy: %w", err)
	}
	s.logOffboarded(gone, res)
	return nil
}
