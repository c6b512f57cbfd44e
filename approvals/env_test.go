package approvals

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-memdb"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"

	"github.com/jitssh/jitssh/audit"
	"github.com/jitssh/jitssh/ca"
)

func TestMain(m *testing.M) {
	if dir := os.Getenv(crashChildEnv); dir != "" {
		os.Exit(crashChild(dir))
	}
	if cfg := os.Getenv(clusterChildEnv); cfg != "" {
		os.Exit(clusterChild(cfg))
	}
	os.Exit(m.Run())
}

// ctx is the context of calls that are not about contexts.
var ctx = context.Background()

// testRaftTimeout keeps a single test node's first election short.
const testRaftTimeout = 20 * time.Millisecond

// t0 is when every fake clock starts.
var t0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

// fakeClock is a clock that moves only when told to.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: t0} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// recordedData holds the fields the tests read of any entry's data.
type recordedData struct {
	ID          string            `json:"id"`
	State       State             `json:"state"`
	Serial      uint64            `json:"serial"`
	Repo        string            `json:"repo"`
	Principals  []string          `json:"principals"`
	ValidBefore time.Time         `json:"valid_before"`
	Approvers   []string          `json:"approvers"`
	Offboarded  map[string]string `json:"offboarded"`
}

// auditEntry is one entry a recordingAuditor took.
type auditEntry struct {
	Kind, Actor string
	Data        recordedData
}

// recordingAuditor is an AuditLog in memory that keeps each entry decoded;
// failKind makes a write holding an entry of that kind fail, as a full disk
// would.
type recordingAuditor struct {
	mu       sync.Mutex
	head     audit.Chain
	lines    [][]byte
	entries  []auditEntry
	failKind string
	fails    int // writes refused so far
	start    int // entries before this are the Service's start-up entries
}

// mark makes kinds and of leave out every entry so far: what opening the
// Service wrote (its policy record).
func (a *recordingAuditor) mark() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.start = len(a.entries)
}

func (a *recordingAuditor) Head() (audit.Chain, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.head.IsZero() {
		return audit.GenesisChain, nil
	}
	return a.head, nil
}

func (a *recordingAuditor) AppendLines(lines [][]byte) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	var batch []auditEntry
	head := a.head
	for _, line := range lines {
		var e audit.Entry
		if err := json.Unmarshal(line, &e); err != nil {
			return err
		}
		if e.Kind == a.failKind {
			a.fails++
			return io.ErrShortWrite
		}
		var rec recordedData
		if len(e.Data) > 0 {
			if err := json.Unmarshal(e.Data, &rec); err != nil {
				return err
			}
		}
		batch = append(batch, auditEntry{e.Kind, e.Actor, rec})
		head = audit.Chain{Seq: e.Seq, Hash: hashLine(line)}
	}
	a.head = head
	a.lines = append(a.lines, lines...)
	a.entries = append(a.entries, batch...)
	return nil
}

func hashLine(line []byte) string {
	sum := sha256.Sum256(line)
	return hex.EncodeToString(sum[:])
}

func (a *recordingAuditor) kinds() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []string
	for _, e := range a.entries[a.start:] {
		out = append(out, e.Kind)
	}
	return out
}

func (a *recordingAuditor) of(kind string) []auditEntry {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []auditEntry
	for _, e := range a.entries[a.start:] {
		if e.Kind == kind {
			out = append(out, e)
		}
	}
	return out
}

func (a *recordingAuditor) setFail(kind string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.failKind = kind
}

// testEnv is a Service under test with what it was built from.
type testEnv struct {
	*Service
	dir   string
	clock *fakeClock
	audit *recordingAuditor
	ca    *ca.Authority
	opts  Options
}

// newCAKey returns a new CA signing key.
func newCAKey(tb testing.TB) *ca.Authority {
	tb.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(tb, err)
	a, err := ca.New(priv)
	require.NoError(tb, err)
	return a
}

// devPolicy is the policy of testdata/dev-policy.yaml.
func devPolicy(tb testing.TB) *Policy {
	tb.Helper()
	c, err := LoadConfig("testdata/dev-policy.yaml")
	require.NoError(tb, err)
	p, err := NewPolicy(c)
	require.NoError(tb, err)
	return p
}

// policyFrom builds a policy from YAML holding people and rules only,
// where each "KEY(name)" stands for a new key of that name.
func policyFrom(tb testing.TB, yml string) *Policy {
	tb.Helper()
	c, err := parsePolicyYAML(withKeys(tb, yml))
	require.NoError(tb, err)
	p, err := NewPolicy(c)
	require.NoError(tb, err)
	return p
}

func parsePolicyYAML(yml string) (*Config, error) {
	return parseConfig("test.yaml", []byte(serverYAML+yml))
}

// serverYAML is the daemon part of a test config.
const serverYAML = `listen: 127.0.0.1:2200
host_key: host_key
data_dir: data
ca_dir: ca
audit_log: audit.log
`

var (
	testKeysMu sync.Mutex
	testKeys   = map[string]string{} // name → authorized_keys line
)

// keyLine returns the authorized_keys line of the test key called name,
// the same one every time within a test binary.
func keyLine(tb testing.TB, name string) string {
	tb.Helper()
	testKeysMu.Lock()
	defer testKeysMu.Unlock()
	if line, ok := testKeys[name]; ok {
		return line
	}
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(freshKey(tb)))) + " " + name
	testKeys[name] = line
	return line
}

// withKeys replaces every KEY(name) in yml with that test key's line.
func withKeys(tb testing.TB, yml string) string {
	tb.Helper()
	for {
		i := strings.Index(yml, "KEY(")
		if i < 0 {
			return yml
		}
		j := strings.Index(yml[i:], ")")
		name := yml[i+4 : i+j]
		yml = yml[:i] + keyLine(tb, name) + yml[i+j+1:]
	}
}

// freshKey returns a new ed25519 public key, as a requester's fresh key.
func freshKey(tb testing.TB) ssh.PublicKey {
	tb.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(tb, err)
	k, err := ssh.NewPublicKey(pub)
	require.NoError(tb, err)
	return k
}

// newTestService opens a Service on a new data dir, with a fake clock
// shared by the Service and its CA, the given policy (the dev policy when
// nil) and a recording auditor.
func newTestService(tb testing.TB, p *Policy) *testEnv {
	tb.Helper()
	if p == nil {
		p = devPolicy(tb)
	}
	clock := newFakeClock()
	authority := newCAKey(tb)
	authority.Now = clock.Now
	env := &testEnv{dir: tb.TempDir(), clock: clock, audit: &recordingAuditor{}, ca: authority}
	env.opts = Options{
		DataDir:     env.dir,
		Policy:      p,
		Authority:   authority,
		Now:         clock.Now,
		Logger:      slog.New(slog.DiscardHandler),
		Audit:       env.audit,
		RaftTimeout: testRaftTimeout,
		// Expiry is driven by the tests, on the fake clock.
		noBackground: true,
		auditGrace:   10 * time.Millisecond,
	}
	env.open(tb)
	env.audit.mark()
	return env
}

// open (re)opens the Service on the env's data dir.
func (env *testEnv) open(tb testing.TB) {
	tb.Helper()
	s, err := Open(env.opts)
	require.NoError(tb, err)
	env.Service = s
	tb.Cleanup(func() { s.Close() })
}

// reopen closes the Service and opens it again on the same data dir.
func (env *testEnv) reopen(tb testing.TB) {
	tb.Helper()
	require.NoError(tb, env.Close())
	env.open(tb)
}

// Requests the dev policy allows alice.
func readReq(tb testing.TB) SubmitInput {
	return SubmitInput{Repo: "demo/app", Ref: "refs/heads/main", Access: "read", PublicKey: freshKey(tb)}
}

func featureReq(tb testing.TB) SubmitInput {
	return SubmitInput{Repo: "demo/app", Ref: "refs/heads/feature/login", Access: "write", Reason: "fix login", PublicKey: freshKey(tb)}
}

func mainReq(tb testing.TB) SubmitInput {
	return SubmitInput{Repo: "demo/app", Ref: "refs/heads/main", Access: "write", Reason: "release", PublicKey: freshKey(tb)}
}

// submit makes a request that must succeed.
func (env *testEnv) submit(tb testing.TB, person string, in SubmitInput) *Request {
	tb.Helper()
	r, err := env.Submit(context.Background(), person, in)
	require.NoError(tb, err)
	return r
}

// approve approves a request; the approval must succeed.
func (env *testEnv) approve(tb testing.TB, person, id string) *Request {
	tb.Helper()
	r, err := env.Approve(context.Background(), person, id, DecisionInput{Reason: "ok"})
	require.NoError(tb, err)
	return r
}

// issued returns a request that bob approved, with its certificate.
func (env *testEnv) issued(tb testing.TB, person string) *Request {
	tb.Helper()
	r := env.submit(tb, person, featureReq(tb))
	approver := "bob"
	if person == "bob" {
		approver = "carol"
	}
	r = env.approve(tb, approver, r.ID)
	require.NotEmpty(tb, r.Certificate)
	return r
}

// parseCert parses a request's certificate.
func parseCert(tb testing.TB, r *Request) *ssh.Certificate {
	tb.Helper()
	key, _, _, _, err := ssh.ParseAuthorizedKey([]byte(r.Certificate))
	require.NoError(tb, err)
	cert, ok := key.(*ssh.Certificate)
	require.True(tb, ok, "not a certificate: %s", r.Certificate)
	return cert
}

// watchFired reports whether ws has fired, giving it a moment to.
func watchFired(ws memdb.WatchSet) bool {
	return !ws.Watch(time.After(50 * time.Millisecond))
}

// ids returns the IDs of reqs.
func ids(reqs []*Request) []string {
	var out []string
	for _, r := range reqs {
		out = append(out, r.ID)
	}
	return out
}
