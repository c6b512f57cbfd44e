package audit

import (
	"bufio"
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkVerifyHistory measures Verify alone over a generated daemon log
// (the entries of BenchmarkHistory, 1.2 KB each on average):
// JITSSH_BENCH_VERIFY_REQUESTS requests (default 20,000, about 44,000
// entries and 53 MB), read from a file as `jitssh audit verify` does. It
// reports entries per second of wall time and per CPU-second of the whole
// process, and the peak heap sampled every 5 ms.
func BenchmarkVerifyHistory(b *testing.B) {
	n := benchEnvInt(b, "JITSSH_BENCH_VERIFY_REQUESTS", 20_000)
	path := filepath.Join(b.TempDir(), "history.log")
	entries, _ := writeHistoryLog(b, path, n, 365)
	fi, err := os.Stat(path)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(fi.Size())
	b.ReportAllocs()
	var peak uint64
	b.ResetTimer()
	cpu := cpuTime()
	for b.Loop() {
		f, err := os.Open(path)
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
}
