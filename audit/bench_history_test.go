package audit

import (
	"bufio"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// BenchmarkHistory measures a daemon's audit log of a year through its
// persistent index: building the index, the lookups of `jitssh audit show
// SERIAL` and of an archived `jitssh requests show ID` for records a year
// old (warm, and cold: the log's and the index's pages dropped from the
// page cache and the index opened afresh, as a new process does), `audit
// list --since 24h`, and verifying the whole chain.
//
// The log is generated: JITSSH_BENCH_HISTORY_REQUESTS requests (default
// 20,000) spread over 365 days, shaped like the daemon's entries (signed
// statements, signatures, keys and certificates of realistic size, not
// real ones): 70 in 100 reads approved by the policy (request, issue), 20
// approved by a person (request, approve, issue), 5 denied, 3 expired, 2
// cancelled, 1 in 100 certificates revoked, and an hourly state.pruned.
// JITSSH_BENCH_HISTORY_DAYS spreads them over that many days instead (the
// same rate over fewer days shows what depends on the log's length).
// JITSSH_BENCH_HISTORY_DIR keeps the log and its index there between runs
// (they are large) instead of a temporary directory.
func BenchmarkHistory(b *testing.B) {
	n := benchEnvInt(b, "JITSSH_BENCH_HISTORY_REQUESTS", 20_000)
	days := benchEnvInt(b, "JITSSH_BENCH_HISTORY_DAYS", 365)
	dir := os.Getenv("JITSSH_BENCH_HISTORY_DIR")
	if dir == "" {
		dir = b.TempDir()
	}
	logPath := filepath.Join(dir, fmt.Sprintf("history-%d-%dd.log", n, days))
	ixPath := logPath + ".index"
	var last time.Time
	var entries uint64
	if fi, err := os.Stat(logPath); err == nil && fi.Size() > 0 {
		b.Logf("reusing %s (%d MB)", logPath, fi.Size()>>20)
	} else {
		start := time.Now()
		os.Remove(ixPath)
		entries, last = writeHistoryLog(b, logPath, n, days)
		fi, err := os.Stat(logPath)
		if err != nil {
			b.Fatal(err)
		}
		b.Logf("wrote %d requests, %d entries, %d MB, in %v", n, entries, fi.Size()>>20, time.Since(start).Round(time.Second))
	}
	yearOld := func(rng *rand.Rand) int { return rng.IntN(max(n*30/days, 1)) } // the first month

	b.Run("build", func(b *testing.B) {
		cpu := cpuTime()
		for b.Loop() {
			os.Remove(ixPath)
			ix, err := OpenIndexFile(ixPath, logPath)
			if err != nil {
				b.Fatal(err)
			}
			entries = ix.Len()
			ix.Close()
		}
		fi, _ := os.Stat(ixPath)
		b.ReportMetric(float64(entries)*float64(b.N)/b.Elapsed().Seconds(), "entries/s")
		b.ReportMetric(float64(entries)*float64(b.N)/(cpuTime()-cpu).Seconds(), "entries/cpu-s")
		b.ReportMetric(float64(fi.Size())/(1<<20), "index-MB")
	})
	ix, err := OpenIndexFile(ixPath, logPath)
	if err != nil {
		b.Fatal(err)
	}
	entries = ix.Len()
	if e, ok, err := ix.Get(entries); err != nil || !ok {
		b.Fatal(err)
	} else {
		last = e.Time
	}
	showSerial := func(b *testing.B, ix *IndexFile, i int) {
		serial := historySerial(i)
		got, err := ix.List(Filter{Serial: &serial})
		if err != nil || len(got) == 0 {
			b.Fatalf("serial %d: %d entries, %v", serial, len(got), err)
		}
		var d IssueData
		if err := json.Unmarshal(got[0].Data, &d); err != nil {
			b.Fatal(err)
		}
		story, err := ix.RequestEntries(d.ID)
		if err != nil || len(story) < 2 {
			b.Fatalf("request %s: %d entries, %v", d.ID, len(story), err)
		}
	}
	showID := func(b *testing.B, ix *IndexFile, i int) {
		story, err := ix.RequestEntries(historyID(i))
		if err != nil || len(story) < 2 {
			b.Fatalf("request %s: %d entries, %v", historyID(i), len(story), err)
		}
	}
	for _, lookup := range []struct {
		name string
		fn   func(*testing.B, *IndexFile, int)
	}{{"show-serial", showSerial}, {"show-id", showID}} {
		b.Run(lookup.name+"-warm", func(b *testing.B) {
			rng := rand.New(rand.NewPCG(1, 2))
			for b.Loop() {
				lookup.fn(b, ix, issuedRequest(yearOld(rng)))
			}
		})
		b.Run(lookup.name+"-cold", func(b *testing.B) {
			rng := rand.New(rand.NewPCG(3, 4))
			var total time.Duration
			for b.Loop() {
				b.StopTimer()
				ix.Close()
				for _, p := range []string{logPath, ixPath} {
					if err := dropCache(p); err != nil {
						b.Fatal(err)
					}
				}
				i := issuedRequest(yearOld(rng))
				b.StartTimer()
				start := time.Now()
				ix, err = OpenIndexFile(ixPath, logPath)
				if err != nil {
					b.Fatal(err)
				}
				lookup.fn(b, ix, i)
				total += time.Since(start)
			}
			b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N), "ms/lookup")
		})
	}
	b.Run("list-since-24h", func(b *testing.B) {
		var got []Entry
		cpu := cpuTime()
		for b.Loop() {
			if got, err = ix.List(Filter{Since: last.Add(-24 * time.Hour)}); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(len(got)), "entries")
		b.ReportMetric(float64((cpuTime()-cpu).Microseconds())/1000/float64(b.N), "cpu-ms/op")
	})
	ix.Close()
	b.Run("verify", func(b *testing.B) {
		var peak uint64
		cpu := cpuTime()
		for b.Loop() {
			f, err := os.Open(logPath)
			if err != nil {
				b.Fatal(err)
			}
			stop := sampleHeap()
			sum, err := Verify(bufio.NewReaderSize(f, 1<<20))
			peak = max(peak, stop())
			f.Close()
			if err != nil || sum.Entries != entries {
				b.Fatalf("verified %d of %d entries: %v", sum.Entries, entries, err)
			}
		}
		b.ReportMetric(float64(entries)*float64(b.N)/b.Elapsed().Seconds(), "entries/s")
		b.ReportMetric(float64(entries)*float64(b.N)/(cpuTime()-cpu).Seconds(), "entries/cpu-s")
		b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MB")
	})
}

// historyID and historySerial name request i and the certificate of an
// issued request i in a history log.
func historyID(i int) string          { return fmt.Sprintf("req-%026d", i) }
func historySerial(i int) uint64      { return uint64(i) + 1 }
func historyIssued(i int) bool        { return i%100 < 90 }
func issuedRequest(i int) int         { return i - i%100 + (i%100)%90 }
func historyKind(i int) (kind int)    { return i % 100 }
func historyActor(i int) string       { return "user" + strconv.Itoa(i%5000) }
func historyRepo(i int) string        { return "org/repo" + strconv.Itoa(i%300) }
func historyPad(n int, c byte) string { return strings.Repeat(string(c), n) }

// writeHistoryLog writes the history log of n requests and returns how
// many entries it holds and the time of the last.
func writeHistoryLog(tb testing.TB, path string, n, days int) (uint64, time.Time) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		tb.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 4<<20)
	h := genesis
	base := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	step := time.Duration(days) * 24 * time.Hour / time.Duration(n)
	statement := `{"kind":"request","requester":"alice","repo":"org/repo1","ref":"refs/heads/feature/x","access":"write","reason":"fix the login form","public_key":"ssh-ed25519 ` + historyPad(68, 'A') + `"}`
	signature := "-----BEGIN SSH SIGNATURE-----\n" + historyPad(400, 'U') + "\n-----END SSH SIGNATURE-----\n"
	key := "ssh-ed25519 " + historyPad(68, 'K')
	cert := "ssh-ed25519-cert-v01@openssh.com " + historyPad(600, 'C')
	var t time.Time
	put := func(kind, actor string, at time.Time, data any) {
		raw, err := json.Marshal(data)
		if err != nil {
			tb.Fatal(err)
		}
		e, line, err := h.next(kind, actor, raw, at)
		if err != nil {
			tb.Fatal(err)
		}
		w.Write(line)
		w.WriteByte('\n')
		h = advance(e.Seq, line)
		t = at
	}
	nextPrune := base.Add(time.Hour)
	for i := range n {
		at := base.Add(time.Duration(i) * step)
		if !at.Before(nextPrune) {
			put(KindPruned, "jitssh", at, PrunedData{Cutoff: at.Add(-720 * time.Hour), Requests: 0})
			nextPrune = at.Add(time.Hour)
		}
		id, actor, repo := historyID(i), historyActor(i), historyRepo(i)
		kind := historyKind(i)
		put(KindRequest, actor, at, RequestData{ID: id, Requester: actor, Repo: repo, Ref: "refs/heads/feature/x", Access: "write",
			Grant: "git:write:" + repo + ":refs/heads/feature/x", TTL: "1h0m0s", Reason: "fix the login form", Rule: "feature-write",
			Steps: []Step{{Group: "approvers", Count: 1}}, PublicKey: key, Statement: statement, Signature: signature, State: "pending"})
		decided := at.Add(time.Minute)
		subject := Subject{ID: id, Requester: actor, Repo: repo, Grant: "git:write:" + repo + ":refs/heads/feature/x", Rule: "feature-write"}
		switch {
		case kind < 70:
		case kind < 90:
			subject.State = "approved"
			put(KindApprove, "bob", decided, DecisionData{Subject: subject, By: "bob", Reason: "ok", Statement: statement, Signature: signature})
		case kind < 95:
			subject.State = "denied"
			put(KindDeny, "bob", decided, DecisionData{Subject: subject, By: "bob", Reason: "no", Statement: statement, Signature: signature})
		case kind < 98:
			subject.State = "expired"
			put(KindExpire, "jitssh", at.Add(time.Hour), EndData{Subject: subject, Reason: "nobody decided within 1h0m0s"})
		default:
			subject.State = "cancelled"
			put(KindCancel, actor, decided, EndData{Subject: subject, By: actor})
		}
		if !historyIssued(i) {
			continue
		}
		serial := historySerial(i)
		put(KindIssue, "jitssh", decided, IssueData{ID: id, Serial: serial, KeyID: actor + "/" + id, Requester: actor,
			Principals: []string{subject.Grant}, ValidAfter: at, ValidBefore: decided.Add(time.Hour), Approvers: []string{"bob"},
			Rule: "feature-write", Certificate: cert, Repo: repo, Grant: subject.Grant, State: "approved", TTL: "1h0m0s"})
		if kind == 50 {
			subject.State, subject.Serial = "approved", serial
			put(KindRevoke, "bob", decided.Add(time.Minute), EndData{Subject: subject, By: "bob", Reason: "left"})
		}
	}
	if err := w.Flush(); err != nil {
		tb.Fatal(err)
	}
	if err := f.Close(); err != nil {
		tb.Fatal(err)
	}
	return h.seq, t
}

func benchEnvInt(tb testing.TB, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(strings.ReplaceAll(v, "_", ""))
	if err != nil || n <= 0 {
		tb.Fatalf("%s=%q: want a positive number", name, v)
	}
	return n
}
