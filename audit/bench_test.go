package audit

import (
	"bufio"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// bulkKinds is the mix of kinds in bulk-written logs: most entries are Git
// operations, as on a real server.
var bulkKinds = []string{KindGit, KindGit, KindGit, KindGit, KindRequest, KindApprove, KindIssue, KindRevoke}

// writeBulkLog writes a valid n-entry log to path quickly: one buffered
// write, one fsync at the end, the same encoder as Log. Entry i (from 1) of
// kind issue, git or revoke carries serial i/8, so every serial up to n/8
// appears on a few entries; repos and actors repeat.
func writeBulkLog(tb testing.TB, path string, n int) {
	tb.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		tb.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	h := genesis
	base := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	var data []byte
	for i := 1; i <= n; i++ {
		kind := bulkKinds[i%len(bulkKinds)]
		data = bulkData(data[:0], kind, i)
		e, line, err := h.next(kind, "user"+strconv.Itoa(i%1000), data, base.Add(time.Duration(i)*time.Millisecond))
		if err != nil {
			tb.Fatal(err)
		}
		w.Write(line)
		w.WriteByte('\n')
		h = advance(e.Seq, line)
	}
	if err := w.Flush(); err != nil {
		tb.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		tb.Fatal(err)
	}
	if err := f.Close(); err != nil {
		tb.Fatal(err)
	}
}

// bulkData appends canonical JSON data for entry i of the given kind.
func bulkData(b []byte, kind string, i int) []byte {
	repo := "org" + strconv.Itoa(i%10) + "/repo" + strconv.Itoa(i%100)
	b = append(b, `{"repo":"`...)
	b = append(b, repo...)
	b = append(b, '"')
	switch kind {
	case KindIssue, KindGit, KindRevoke:
		b = append(b, `,"serial":`...)
		b = strconv.AppendInt(b, int64(i/8), 10)
	}
	if kind == KindGit {
		b = append(b, `,"ref":"refs/heads/main","op":"git-upload-pack","decision":"allow"`...)
	}
	return append(b, '}')
}

// millionLog writes the million-entry log for one benchmark.
func millionLog(b *testing.B) string {
	b.Helper()
	path := filepath.Join(b.TempDir(), "audit.log")
	start := time.Now()
	writeBulkLog(b, path, 1_000_000)
	fi, err := os.Stat(path)
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("wrote 1,000,000 entries, %d MB, in %v", fi.Size()>>20, time.Since(start).Round(time.Millisecond))
	return path
}

func BenchmarkAppend(b *testing.B) {
	l, err := Open(filepath.Join(b.TempDir(), "audit.log"), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	data := map[string]any{"serial": 42, "repo": "org/app", "ref": "refs/heads/main"}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := l.Append(KindGit, "alice", data); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "entries/s")
	b.ReportMetric(float64(b.N)/float64(l.syncs.Load()), "entries/fsync")
}

func BenchmarkAppendParallel(b *testing.B) {
	l, err := Open(filepath.Join(b.TempDir(), "audit.log"), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	data := map[string]any{"serial": 42, "repo": "org/app", "ref": "refs/heads/main"}
	b.ReportAllocs()
	b.SetParallelism(32) // 32 appenders per CPU: a busy daemon
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := l.Append(KindGit, "alice", data); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "entries/s")
	b.ReportMetric(float64(b.N)/float64(l.syncs.Load()), "entries/fsync")
}

func BenchmarkVerify(b *testing.B) {
	path := millionLog(b)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		f, err := os.Open(path)
		if err != nil {
			b.Fatal(err)
		}
		peak := sampleHeap()
		sum, err := Verify(f)
		f.Close()
		if err != nil {
			b.Fatal(err)
		}
		if sum.Entries != 1_000_000 {
			b.Fatalf("verified %d entries", sum.Entries)
		}
		b.ReportMetric(float64(peak()>>20), "peak-heap-MB")
	}
	b.ReportMetric(1e6*float64(b.N)/b.Elapsed().Seconds(), "entries/s")
}

func BenchmarkBuildIndex(b *testing.B) {
	path := millionLog(b)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		f, err := os.Open(path)
		if err != nil {
			b.Fatal(err)
		}
		before := heapInuse()
		ix, err := BuildIndex(f)
		f.Close()
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64((heapInuse()-before)>>20), "index-heap-MB")
		runtime.KeepAlive(ix)
	}
	b.ReportMetric(1e6*float64(b.N)/b.Elapsed().Seconds(), "entries/s")
}

func BenchmarkIndexLookupBySerial(b *testing.B) {
	path := millionLog(b)
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	before := heapInuse()
	ix, err := BuildIndex(f)
	f.Close()
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("index of %d entries built in %v, %d MB live heap", ix.Len(), time.Since(start).Round(time.Millisecond), (heapInuse()-before)>>20)
	rng := rand.New(rand.NewPCG(1, 2))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		serial := rng.Uint64N(1_000_000 / 8)
		if got := ix.List(Filter{Serial: &serial}); len(got) == 0 {
			b.Fatalf("no entries for serial %d", serial)
		}
	}
}

// heapInuse returns the live heap after a full collection.
func heapInuse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// sampleHeap samples the heap every few milliseconds until the returned
// function is called, which reports the highest sample. It reads
// runtime/metrics, which unlike ReadMemStats does not stop the world.
func sampleHeap() func() uint64 {
	var peak atomic.Uint64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
		for {
			metrics.Read(s)
			if v := s[0].Value.Uint64(); v > peak.Load() {
				peak.Store(v)
			}
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	}()
	return func() uint64 {
		close(stop)
		<-done
		return peak.Load()
	}
}
