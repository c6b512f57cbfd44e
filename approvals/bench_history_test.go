package approvals

import (
	"bufio"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"

	"github.com/jitssh/jitssh/audit"
	"github.com/jitssh/jitssh/ca"
	"github.com/jitssh/jitssh/principals"
)

// BenchmarkStateYear drives the state machine through a year of requests,
// as its raft log would: the commands a leader proposes, applied in
// batches, with their audit lines computed (and dropped: no audit log) and
// the leader's hourly prunes. Time is the commands' own, a year spread
// over the requests. 70 in 100 requests are reads approved by the policy,
// 20 are approved by a person, 5 denied, 3 expire and 2 are cancelled; 1
// in 100 certificates is revoked. Each request carries a signed statement,
// a signature and a key of realistic size; certificates are one real
// certificate's text (signing ten million would measure the CA).
//
// JITSSH_BENCH_YEAR_REQUESTS sets how many requests (default 20,000; the
// figures in BENCHMARKS.md are for 10,000,000), JITSSH_BENCH_RETENTION the
// retention (default DefaultRetention); JITSSH_BENCH_HEAP_PROFILE, a file
// to write a heap profile to while the state is still held (the
// benchmark's -memprofile is written after it is gone). It reports the heap in use and the
// process's RSS after the last prune, the size of a raft snapshot of the
// state then, the requests left in it, and requests per second applied.
func BenchmarkStateYear(b *testing.B) {
	n := envInt(b, "JITSSH_BENCH_YEAR_REQUESTS", 20_000)
	retention := DefaultRetention
	if v := os.Getenv("JITSSH_BENCH_RETENTION"); v != "" {
		d, err := time.ParseDuration(v)
		require.NoError(b, err)
		retention = d
	}
	for b.Loop() {
		y := newYearRun(b, retention)
		start := time.Now()
		y.run(n)
		elapsed := time.Since(start)
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		if path := os.Getenv("JITSSH_BENCH_HEAP_PROFILE"); path != "" {
			writeHeapProfile(b, path)
		}
		snap, err := y.f.Snapshot()
		require.NoError(b, err)
		var size countingWriter
		require.NoError(b, snap.(*fsmSnapshot).write(&size))
		live, err := y.f.State().all(nil, indexID)
		require.NoError(b, err)
		pruned, err := y.f.State().pruned()
		require.NoError(b, err)
		b.ReportMetric(float64(m.HeapInuse)/(1<<20), "heap-MB")
		b.ReportMetric(float64(procStatus(b, "VmRSS"))/(1<<20), "rss-MB")
		b.ReportMetric(float64(procStatus(b, "VmHWM"))/(1<<20), "peak-rss-MB")
		b.ReportMetric(float64(size)/(1<<20), "snapshot-MB")
		b.ReportMetric(float64(len(live)), "live-requests")
		b.ReportMetric(float64(pruned.Requests), "pruned-requests")
		b.ReportMetric(float64(n)/elapsed.Seconds(), "requests/s")
	}
}

// yearRun is the state machine and the leader's bookkeeping of a
// BenchmarkStateYear run.
type yearRun struct {
	tb        testing.TB
	f         *fsm
	index     uint64
	serial    uint64
	batch     []*raft.Log
	retention time.Duration
	ids       *idSource
	// logs, when not nil, keeps every entry applied, for a replay.
	logs *[]*raft.Log

	cert, key, statement, signature string
}

func newYearRun(tb testing.TB, retention time.Duration) *yearRun {
	f, err := newFSM(nil, nil)
	require.NoError(tb, err)
	y := &yearRun{tb: tb, f: f, retention: retention, ids: newIDSource()}
	a := newCAKey(tb)
	c, err := a.Sign(ca.CertRequest{PublicKey: freshKey(tb), KeyID: "alice/req-01ARZ3NDEKTSV4RRFFQ69G5FAV",
		Grants: []principals.Grant{{Access: principals.Read, Repo: "demo/app", Ref: "refs/heads/main"}}, TTL: time.Hour}, &counterSerials{})
	require.NoError(tb, err)
	y.cert = strings.TrimSpace(string(ssh.MarshalAuthorizedKey(c)))
	y.key = strings.TrimSpace(string(ssh.MarshalAuthorizedKey(freshKey(tb))))
	raw := make([]byte, 300)
	_, _ = rand.Read(raw)
	y.statement = `{"kind":"request","requester":"alice","repo":"demo/app","ref":"refs/heads/feature/x","access":"write","reason":"fix the login form","public_key":"` + y.key + `"}`
	y.signature = "-----BEGIN SSH SIGNATURE-----\n" + base64.StdEncoding.EncodeToString(raw) + "\n-----END SSH SIGNATURE-----"
	y.apply(msgAuditAnchor, auditAnchorCmd{Chain: audit.GenesisChain}, t0)
	y.flush()
	return y
}

// apply queues one command; flush applies the queue as one raft batch.
func (y *yearRun) apply(t msgType, cmd any, at time.Time) {
	y.index++
	data, err := encodeEnvelope(t|msgAudited, cmd, "", at)
	require.NoError(y.tb, err)
	y.batch = append(y.batch, &raft.Log{Index: y.index, Type: raft.LogCommand, Data: data})
	if len(y.batch) == 64 {
		y.flush()
	}
}

func (y *yearRun) flush() {
	if len(y.batch) == 0 {
		return
	}
	y.keep(y.batch)
	for _, res := range y.f.ApplyBatch(y.batch) {
		if r, ok := res.(*applyResult); ok && r.err != nil {
			y.tb.Fatalf("apply: %v", r.err)
		}
	}
	y.batch = y.batch[:0]
}

func (y *yearRun) run(n int) {
	step := 365 * 24 * time.Hour / time.Duration(n)
	nextPrune := t0.Add(time.Hour)
	for i := range n {
		now := t0.Add(time.Duration(i) * step)
		if !now.Before(nextPrune) {
			y.prune(now)
			nextPrune = now.Add(time.Hour)
		}
		y.request(i, now)
		if i > 0 && i%500_000 == 0 {
			y.progress(i, now)
		}
	}
	y.prune(t0.Add(time.Duration(n) * step))
}

func (y *yearRun) keep(batch []*raft.Log) {
	if y.logs != nil {
		*y.logs = append(*y.logs, slices.Clone(batch)...)
	}
}

// progress says how far a long run is, on stderr.
func (y *yearRun) progress(i int, now time.Time) {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	live, _ := y.f.State().all(nil, indexID)
	var size countingWriter
	if snap, err := y.f.Snapshot(); err == nil {
		_ = snap.(*fsmSnapshot).write(&size)
	}
	fmt.Fprintf(os.Stderr, "%s: %d requests (day %d), %d live, heap in use %d MB, rss %d MB, snapshot %.1f MB\n", time.Now().Format(time.TimeOnly),
		i, int(now.Sub(t0).Hours()/24), len(live), m.HeapInuse>>20, procStatus(y.tb, "VmRSS")>>20, float64(size)/(1<<20))
}

// prune applies prunes until one drops and compacts less than its limit,
// as the leader does.
func (y *yearRun) prune(now time.Time) {
	for {
		y.apply(msgPrune, newPruneCmd(now, y.retention), now)
		batch := y.batch
		y.batch = nil
		y.keep(batch)
		var last *applyResult
		for _, res := range y.f.ApplyBatch(batch) {
			last = res.(*applyResult)
		}
		if last.err != nil {
			y.tb.Fatalf("prune: %v", last.err)
		}
		if last.pruned < prunePerCommand && last.compacted < prunePerCommand {
			return
		}
	}
}

func (y *yearRun) request(i int, now time.Time) {
	id, err := y.ids.next(now)
	require.NoError(y.tb, err)
	kind := i % 100
	r := &Request{
		ID: id, Requester: "user" + strconv.Itoa(i%5000), Repo: "org/repo" + strconv.Itoa(i%300), Access: "write",
		Ref: "refs/heads/feature/x", Grant: "git:write:org/repo" + strconv.Itoa(i%300) + ":refs/heads/feature/x",
		TTL: Duration(time.Hour), Reason: "fix the login form", PublicKey: y.key, Rule: "feature-write",
		Steps: []Step{{Group: "approvers", Count: 1}}, State: StatePending, CreatedAt: now, UpdatedAt: now,
		ExpiresAt: now.Add(time.Hour), Approvals: []Approval{}, Statement: y.statement, Signature: y.signature,
	}
	if kind < 70 { // a read the policy approves
		r.Access, r.Ref, r.Rule, r.Steps, r.State, r.ExpiresAt = "read", "*", "app-read", nil, StateApproved, time.Time{}
		r.Grant = "git:read:" + r.Repo + ":*"
	}
	y.apply(msgSubmit, submitCmd{Request: r}, now)
	decided := now.Add(time.Minute)
	switch {
	case kind < 70:
	case kind < 90:
		y.apply(msgApprove, approveCmd{ID: id, Approval: Approval{By: "bob", At: decided, Reason: "ok", Groups: []string{"approvers"},
			Statement: y.statement, Signature: y.signature}}, decided)
	case kind < 95:
		y.apply(msgDeny, denyCmd{ID: id, Decision: Decision{By: "bob", At: decided, Reason: "no", Statement: y.statement, Signature: y.signature},
			Groups: []string{"approvers"}}, decided)
		return
	case kind < 98:
		y.apply(msgExpire, expireCmd{ID: id, At: r.ExpiresAt, Reason: "nobody decided within 1h0m0s"}, r.ExpiresAt)
		return
	default:
		y.apply(msgCancel, cancelCmd{ID: id, Decision: Decision{By: r.Requester, At: decided}}, decided)
		return
	}
	y.flush() // the next serial is the state's
	y.serial++
	y.apply(msgStoreCertificate, issuedCert{ID: id, Serial: y.serial, Certificate: y.cert, IssuedAt: decided,
		ValidAfter: decided.Add(-time.Minute), ValidBefore: decided.Add(time.Hour)}, decided)
	if kind == 50 {
		y.apply(msgRevoke, revokeCmd{ID: id, Decision: Decision{By: "bob", At: decided.Add(time.Minute), Reason: "left"}, Kind: AuditRevoke}, decided)
	}
}

// writeHeapProfile writes the heap's profile to path.
func writeHeapProfile(tb testing.TB, path string) {
	f, err := os.Create(path)
	require.NoError(tb, err)
	defer f.Close()
	require.NoError(tb, pprof.WriteHeapProfile(f))
}

// countingWriter counts what is written to it.
type countingWriter int64

func (c *countingWriter) Write(p []byte) (int, error) {
	*c += countingWriter(len(p))
	return len(p), nil
}

var _ io.Writer = (*countingWriter)(nil)

// envInt reads a positive integer from the environment, or def.
func envInt(tb testing.TB, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(strings.ReplaceAll(v, "_", ""))
	require.NoError(tb, err, name)
	require.Positive(tb, n, name)
	return n
}

// procStatus returns a size from /proc/self/status in bytes, 0 where
// there is none.
func procStatus(tb testing.TB, field string) int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			require.NoError(tb, err)
			return kb << 10
		}
	}
	return 0
}
