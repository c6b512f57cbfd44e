package audit

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
)

// Parsing a line and hashing it is nearly all the work of verifying a log,
// and each line can be parsed and hashed on its own: a scanner reads lines
// into batches, which a few workers parse and hash while the scanner
// follows the chain through the batches before them, in order. At most a
// few batches are in flight, so memory stays flat however long the log.

const (
	// defaultBatchBytes and defaultBatchLines bound a batch: a batch ends
	// after the line that reaches either (a line longer than the bytes
	// still goes whole into one batch).
	defaultBatchBytes = 256 << 10
	defaultBatchLines = 4096
	// maxWorkers bounds the workers, and so the batches in flight.
	maxWorkers = 8
)

// batching is how a scanner batches lines and how many workers parse
// them.
type batching struct {
	workers int // 0: the scanner parses every batch itself
	bytes   int
	lines   int
}

// scanBatching returns the batching of new scanners: a worker per CPU, none
// on a single CPU. Tests vary it to show that what a scan reports does not
// depend on it.
var scanBatching = func() batching {
	n := min(runtime.GOMAXPROCS(0), maxWorkers)
	if n < 2 {
		n = 0
	}
	return batching{workers: n, bytes: defaultBatchBytes, lines: defaultBatchLines}
}

// frame is where a line lies in its batch, as the reader found it.
type frame struct {
	start, end int  // the line in batch.buf, without its newline
	tooLong    bool // longer than MaxLineSize; its bytes were skipped
	terminated bool // it ends with a newline
}

// parsed is what a worker made of a line.
type parsed struct {
	e    Entry
	err  error             // the line does not parse
	sum  [sha256.Size]byte // the line's hash, when it parses
	prev [sha256.Size]byte // e.Prev decoded, when it parses
}

// batch is a run of lines, the frames written by the reader before the
// batch goes to a worker and the results by the worker alone.
type batch struct {
	buf    []byte
	frames []frame
	eof    bool  // the log ends after these lines
	err    error // reading failed after these lines
	out    []parsed
	queued bool          // a worker parses it and signals done
	done   chan struct{} // one signal per batch queued
}

// parse parses and hashes the lines of b.
func (b *batch) parse(p *parser) {
	b.out = slices.Grow(b.out[:0], len(b.frames))[:len(b.frames)]
	for i, f := range b.frames {
		r := &b.out[i]
		*r = parsed{}
		if f.tooLong || !f.terminated {
			continue
		}
		line := b.buf[f.start:f.end]
		if r.e, r.err = p.parse(line); r.err != nil {
			continue
		}
		r.sum = sha256.Sum256(line)
		// A line that parses ends with a prev of 64 lower-case hex digits
		// and `"}`.
		if _, err := hex.Decode(r.prev[:], line[len(line)-2-2*sha256.Size:len(line)-2]); err != nil {
			r.err = err
		}
	}
}

// readLine returns the next line with its newline, if it has one. It
// returns tooLong, and skips the rest of the line, for a line longer than
// MaxLineSize. The line is valid until the next call.
func (s *scanner) readLine() (line []byte, tooLong bool, err error) {
	s.long = s.long[:0]
	for {
		frag, err := s.br.ReadSlice('\n')
		if err == nil && len(s.long) == 0 && !tooLong {
			if len(frag) > MaxLineSize+1 {
				return nil, true, nil
			}
			return frag, false, nil
		}
		if !tooLong {
			s.long = append(s.long, frag...)
			if len(s.long) > MaxLineSize+1 {
				tooLong, s.long = true, s.long[:0]
			}
		}
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case err == nil:
			if tooLong {
				return nil, true, nil
			}
			return s.long, false, nil
		case errors.Is(err, io.EOF):
			if tooLong {
				return nil, true, nil
			}
			if len(s.long) == 0 {
				return nil, false, io.EOF
			}
			return s.long, false, nil
		default:
			return nil, false, err
		}
	}
}

// fill reads the next lines of the log into b.
func (s *scanner) fill(b *batch) {
	b.buf, b.frames, b.eof, b.err = b.buf[:0], b.frames[:0], false, nil
	for len(b.buf) < s.batching.bytes && len(b.frames) < s.batching.lines {
		tok, tooLong, err := s.readLine()
		switch {
		case errors.Is(err, io.EOF):
			b.eof = true
			return
		case err != nil:
			b.err = err
			return
		}
		f := frame{start: len(b.buf), tooLong: tooLong}
		if !tooLong {
			line, terminated := bytes.CutSuffix(tok, []byte{'\n'})
			b.buf = append(b.buf, line...)
			f.terminated = terminated
		}
		f.end = len(b.buf)
		b.frames = append(b.frames, f)
		if !tooLong && !f.terminated {
			// Only the end of the log leaves a line without its newline.
			b.eof = true
			return
		}
	}
}

// pipeline reads batches ahead of the scanner and has them parsed.
type pipeline struct {
	s      *scanner
	depth  int      // batches in flight at most
	ahead  []*batch // read, oldest first
	free   []*batch
	ended  bool   // the batch that ends the log has been read
	p      parser // for the batches the scanner parses itself
	jobs   chan *batch
	wg     sync.WaitGroup
	closed atomic.Bool
}

func newPipeline(s *scanner) *pipeline {
	return &pipeline{s: s, depth: max(2*s.batching.workers, 1)}
}

// next returns the next batch, parsed. The batch that ends the log has eof
// or err set; next must not be called after it.
func (p *pipeline) next() *batch {
	for !p.ended && len(p.ahead) < p.depth {
		p.read()
	}
	b := p.ahead[0]
	p.ahead = p.ahead[1:]
	if b.queued {
		<-b.done
	}
	return b
}

// release takes back a batch the scanner is done with.
func (p *pipeline) release(b *batch) { p.free = append(p.free, b) }

// read reads one more batch and has it parsed: by a worker, unless there
// are none, or unless it is the first and also the last (a short log, or
// what was appended since an index last read the log), which is not worth
// starting them for.
func (p *pipeline) read() {
	var b *batch
	if n := len(p.free); n > 0 {
		b, p.free = p.free[n-1], p.free[:n-1]
	} else {
		b = &batch{done: make(chan struct{}, 1)}
	}
	p.s.fill(b)
	p.ended = b.eof || b.err != nil
	p.ahead = append(p.ahead, b)
	b.queued = p.s.batching.workers > 0 && !(p.ended && p.jobs == nil)
	if !b.queued {
		b.parse(&p.p)
		return
	}
	if p.jobs == nil {
		p.start()
	}
	p.jobs <- b
}

func (p *pipeline) start() {
	p.jobs = make(chan *batch, p.depth)
	for range p.s.batching.workers {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			var ps parser
			for b := range p.jobs {
				if !p.closed.Load() {
					b.parse(&ps)
				}
				b.done <- struct{}{}
			}
		}()
	}
}

// close stops the workers, once they are done with the batches they hold.
func (p *pipeline) close() {
	if p.jobs == nil {
		return
	}
	p.closed.Store(true)
	close(p.jobs)
	p.wg.Wait()
}

// lastLine reports whether line i of b, which does not parse, is the last
// complete line of the log, perhaps followed by a partial one: only such a
// line can be the remains of an interrupted write, as Open sees it. It
// returns the error that stopped reading right after the line.
func (p *pipeline) lastLine(b *batch, i int) (bool, error) {
	if i+1 < len(b.frames) {
		return b.frames[i+1].last(), nil
	}
	for k := 0; ; k++ {
		switch {
		case b.err != nil:
			return false, b.err
		case b.eof:
			return true, nil
		}
		for k >= len(p.ahead) {
			p.read()
		}
		b = p.ahead[k]
		if len(b.frames) > 0 {
			return b.frames[0].last(), nil
		}
	}
}

// last reports whether f, the line after one that does not parse, shows
// that line to be the last complete one: f is the partial line a torn
// write leaves.
func (f frame) last() bool { return !f.tooLong && !f.terminated }
