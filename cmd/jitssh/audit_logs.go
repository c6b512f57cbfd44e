package main

import (
	"bufio"
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"slices"

	"github.com/urfave/cli/v2"

	"github.com/jitssh/jitssh/audit"
)

// The audit commands read several logs at once: the daemon's and each Git
// server's (`git-server` and `git-shell` may keep their own). Each log is
// verified on its own chain and indexed on its own; what the commands
// print from several is merged by time, each log keeping its own order.

func auditLogFlag() cli.Flag {
	return newFilesFlag("log", "JITSSH_AUDIT_LOG", "an audit log file (required); repeat it to read the daemon's and the Git servers' logs together")
}

// auditLogs are the logs an audit command reads, each with its index.
type auditLogs struct {
	paths []string
	names []string // how tables name each log
	ix    []*audit.IndexFile
}

// close closes the logs' indexes.
func (l *auditLogs) close() {
	for _, ix := range l.ix {
		ix.Close()
	}
}

// logPaths returns the --log files, refusing none and the same file twice.
func logPaths(c *cli.Context) ([]string, error) {
	paths := files(c, "log")
	if len(paths) == 0 {
		return nil, usageError("missing --log")
	}
	seen := make(map[string]bool, len(paths))
	for _, p := range paths {
		if p == "" {
			return nil, usageError("--log: empty file name")
		}
		abs, err := filepath.Abs(p)
		if err != nil {
			abs = filepath.Clean(p)
		}
		if seen[abs] {
			return nil, usageError("--log %s given twice", p)
		}
		seen[abs] = true
	}
	return paths, nil
}

// loadAuditLogs opens each --log with its persistent index, catching the
// index up with what was appended since it was last read (and verifying
// those entries' chain), and refuses a log that does not verify. The
// caller closes them.
func loadAuditLogs(c *cli.Context) (*auditLogs, error) {
	paths, err := logPaths(c)
	if err != nil {
		return nil, err
	}
	l := &auditLogs{paths: paths, names: logNames(paths)}
	for _, p := range paths {
		ix, err := openLogIndex(c, p)
		if err != nil {
			l.close()
			return nil, err
		}
		l.ix = append(l.ix, ix)
	}
	return l, nil
}

// logNames names logs by file name, or by path where two share a name.
func logNames(paths []string) []string {
	names := make([]string, len(paths))
	count := map[string]int{}
	for _, p := range paths {
		count[filepath.Base(p)]++
	}
	for i, p := range paths {
		names[i] = filepath.Base(p)
		if count[names[i]] > 1 {
			names[i] = p
		}
	}
	return names
}

// several reports whether more than one log is read: only then do outputs
// say which log an entry is from.
func (l *auditLogs) several() bool { return len(l.paths) > 1 }

// logEntry is an entry with the log it is from. In JSON, Log (the path) is
// there only when several logs are read, so the output for one log is
// that log's entries as they are.
type logEntry struct {
	audit.Entry
	Log string `json:"log,omitempty"`
	log int
}

// collect runs fn on every log's index and merges what it returns, each
// list in seq order, by time.
func (l *auditLogs) collect(fn func(ix *audit.IndexFile) ([]audit.Entry, error)) ([]logEntry, error) {
	lists := make([][]audit.Entry, len(l.ix))
	for i, ix := range l.ix {
		list, err := fn(ix)
		if err != nil {
			return nil, fmt.Errorf("audit log %s: %w", l.paths[i], err)
		}
		lists[i] = sortUnique(list)
	}
	out := mergeByTime(lists)
	if l.several() {
		for i := range out {
			out[i].Log = l.paths[out[i].log]
		}
	}
	return out, nil
}

// mergeByTime merges lists, each in its log's order, by time: the next
// entry is always the earliest at the head of a list, the first log's on a
// tie. Each log's order is kept even where its clock went back.
func mergeByTime(lists [][]audit.Entry) []logEntry {
	n := 0
	for _, l := range lists {
		n += len(l)
	}
	out := make([]logEntry, 0, n)
	next := make([]int, len(lists))
	for len(out) < n {
		best := -1
		for i, l := range lists {
			if next[i] < len(l) && (best < 0 || l[next[i]].Time.Before(lists[best][next[best]].Time)) {
				best = i
			}
		}
		out = append(out, logEntry{Entry: lists[best][next[best]], log: best})
		next[best]++
	}
	return out
}

// entriesOf returns the entries of a merged list, for package audit.
func entriesOf(les []logEntry) []audit.Entry {
	out := make([]audit.Entry, len(les))
	for i := range les {
		out[i] = les[i].Entry
	}
	return out
}

// entriesOfKinds returns the entries of the given kinds in seq order.
func entriesOfKinds(ix *audit.IndexFile, kinds ...string) ([]audit.Entry, error) {
	var out []audit.Entry
	for _, k := range kinds {
		list, err := ix.List(audit.Filter{Kind: k})
		if err != nil {
			return nil, err
		}
		out = append(out, list...)
	}
	return sortUnique(out), nil
}

// sortUnique sorts entries by seq and drops repeats.
func sortUnique(entries []audit.Entry) []audit.Entry {
	slices.SortFunc(entries, func(a, b audit.Entry) int { return cmp.Compare(a.Seq, b.Seq) })
	return slices.CompactFunc(entries, func(a, b audit.Entry) bool { return a.Seq == b.Seq })
}

// logStream reads one verified log line by line, for a merge that holds one
// entry of each log at a time.
type logStream struct {
	path string
	snap *audit.Snapshot
	sc   *bufio.Scanner
	line []byte      // the current line, valid until next
	e    audit.Entry // the current entry
	done bool
}

// openLogStreams verifies each log's chain, then opens it for reading from
// its start.
func openLogStreams(paths []string) ([]*logStream, func(), error) {
	var streams []*logStream
	closeAll := func() {
		for _, s := range streams {
			s.snap.Close()
		}
	}
	for _, p := range paths {
		snap, err := audit.OpenSnapshot(p)
		if err != nil {
			closeAll()
			return nil, nil, err
		}
		streams = append(streams, &logStream{path: p, snap: snap})
		if _, err := audit.Verify(snap); err != nil {
			closeAll()
			return nil, nil, fmt.Errorf("audit log %s: %w", p, err)
		}
		if _, err := snap.Seek(0, io.SeekStart); err != nil {
			closeAll()
			return nil, nil, fmt.Errorf("read audit log %s: %w", p, err)
		}
		s := streams[len(streams)-1]
		s.sc = bufio.NewScanner(snap)
		s.sc.Buffer(make([]byte, 0, 64<<10), audit.MaxLineSize+1)
		if err := s.next(); err != nil {
			closeAll()
			return nil, nil, err
		}
	}
	return streams, closeAll, nil
}

// next reads the stream's next entry.
func (s *logStream) next() error {
	if !s.sc.Scan() {
		if err := s.sc.Err(); err != nil {
			return fmt.Errorf("read audit log %s: %w", s.path, err)
		}
		s.done = true
		return nil
	}
	s.line = s.sc.Bytes()
	s.e = audit.Entry{}
	if err := json.Unmarshal(s.line, &s.e); err != nil {
		return fmt.Errorf("read audit log %s: %w", s.path, err) // verified: only a changing file gets here
	}
	return nil
}

// mergeStreams calls fn with each entry of the streams, merged by time as
// mergeByTime does, until fn fails.
func mergeStreams(streams []*logStream, fn func(s *logStream) error) error {
	for {
		var best *logStream
		for _, s := range streams {
			if !s.done && (best == nil || s.e.Time.Before(best.e.Time)) {
				best = s
			}
		}
		if best == nil {
			return nil
		}
		if err := fn(best); err != nil {
			return err
		}
		if err := best.next(); err != nil {
			return err
		}
	}
}
