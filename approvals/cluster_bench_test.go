package approvals

import (
	"context"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jitssh/jitssh/audit"
)

// benchClients is how many callers issue certificates at once in the
// cluster benchmarks: enough to keep raft's batching busy.
const benchClients = 8

// issueOn issues b.N auto-approved certificates from benchClients callers,
// spread over nodes round robin, and reports the rate and the latencies.
// The nodes' policy must lift the per-person limits, which one person
// requesting as fast as they can would meet.
func issueOn(b *testing.B, nodes []*Service) {
	keys := make(chan SubmitInput, benchClients)
	go func() {
		for {
			in := SubmitInput{Repo: "demo/app", Ref: "refs/heads/main", Access: "read", PublicKey: freshKey(b)}
			select {
			case keys <- in:
			case <-b.Context().Done():
				return
			}
		}
	}()
	var next atomic.Int64
	lat := make([][]time.Duration, benchClients)
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for c := range benchClients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > int64(b.N) {
					return
				}
				s := nodes[int(i)%len(nodes)]
				in := <-keys
				t := time.Now()
				r, err := s.Submit(context.Background(), actorOf(s.Policy(), "alice"), in)
				if err != nil || r.Certificate == "" {
					b.Error(r, err)
					return
				}
				lat[c] = append(lat[c], time.Since(t))
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	all := slices.Concat(lat...)
	slices.Sort(all)
	if len(all) == 0 {
		return
	}
	b.ReportMetric(float64(len(all))/elapsed.Seconds(), "certs/s")
	b.ReportMetric(float64(all[len(all)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(all[len(all)*99/100].Microseconds())/1000, "p99-ms")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkClusterIssue issues certificates, auto-approved, through the
// whole durable path with audit logs on disk, from benchClients callers at
// once: on one node on its own (in-memory raft transport, as without a
// cluster block), and on three nodes over loopback TCP and mutual TLS,
// the callers spread over all three as clients trying each address would.
// Both use the default raft timeout.
func BenchmarkClusterIssue(b *testing.B) {
	b.Run("nodes=1", func(b *testing.B) {
		dir := b.TempDir()
		log, err := audit.Open(filepath.Join(dir, "audit.log"), audit.Options{Journal: true, Logger: slog.New(slog.DiscardHandler)})
		require.NoError(b, err)
		b.Cleanup(func() { log.Close() })
		s, err := Open(Options{
			DataDir: filepath.Join(dir, "data"), Policy: unlimitedDevPolicy(b), Authority: newCAKey(b),
			Logger: slog.New(slog.DiscardHandler), Audit: log,
		})
		require.NoError(b, err)
		b.Cleanup(func() { s.Close() })
		issueOn(b, []*Service{s})
	})
	b.Run("nodes=3", func(b *testing.B) {
		c := newTestClusterTimed(b, 3, unlimitedDevPolicy(b), nil, DefaultRaftTimeout, applyTimeout)
		var nodes []*Service
		for _, nd := range c.nodes {
			nodes = append(nodes, nd.Service)
		}
		issueOn(b, nodes)
	})
}

// BenchmarkClusterFailover measures, on three processes with the default
// raft timeout, the time from SIGKILL of the leader to the first write
// acknowledged by a surviving node that was already trying.
func BenchmarkClusterFailover(b *testing.B) {
	nodes := startProcessCluster(b, 3, DefaultRaftTimeout)
	var worst, total time.Duration
	for range b.N {
		lead := childLeader(b, nodes)
		other := nodes[(lead+1)%3]
		_, err := other.ask(b, "issue", 30*time.Second)
		require.NoError(b, err)
		nodes[lead].kill()
		killed := time.Now()
		l, err := other.ask(b, "issue", 30*time.Second)
		require.NoError(b, err)
		took := time.Since(killed)
		require.True(b, strings.HasPrefix(l, "ok "), l)
		worst, total = max(worst, took), total+took
		b.StopTimer()
		nodes[lead].start(b)
		awaitChildReady(b, nodes[lead])
		b.StartTimer()
	}
	b.ReportMetric(total.Seconds()/float64(b.N), "failover-s")
	b.ReportMetric(worst.Seconds(), "worst-s")
	b.ReportMetric(0, "ns/op")
}
