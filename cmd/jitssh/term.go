package main

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"golang.org/x/term"

	"github.com/jitssh/jitssh/approvals"
)

// isTerminal reports whether w is a terminal: only then are there colours
// and a spinner.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok || os.Getenv("NO_COLOR") != "" || os.Getenv("TERM") == "dumb" {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// progress shows a pending request: a spinner line on a terminal, plain
// lines on each change otherwise.
type progress struct {
	w       io.Writer
	tty     bool
	started time.Time
	mu      sync.Mutex
	last    string
	stop    chan struct{}
	r       *approvals.Request
	who     []string
}

func newProgress(w io.Writer) *progress {
	p := &progress{w: w, tty: isTerminal(w), started: time.Now(), stop: make(chan struct{})}
	if p.tty {
		go p.spin()
	}
	return p
}

func (p *progress) line() string {
	if p.r == nil {
		return ""
	}
	return waitingLine(p.r, p.who, time.Now(), 0)
}

// waitingLine says where a pending request stands, in at most width
// columns when width is positive: the spinner redraws it in place, and a
// line longer than the terminal wraps and leaves a copy behind on every
// redraw. It drops detail before it cuts: who can approve first, then the
// wording.
func waitingLine(r *approvals.Request, who []string, now time.Time, width int) string {
	waited := now.Sub(r.CreatedAt).Round(time.Second)
	needs := describeSteps(r.Steps)
	variants := []string{
		fmt.Sprintf("%s waiting for approval: %d approval(s) so far, needs %s%s; waited %s",
			r.ID, len(r.Approvals), needs, canApproveNote(who), waited),
		fmt.Sprintf("%s waiting for approval: %d so far, needs %s; waited %s", r.ID, len(r.Approvals), needs, waited),
		fmt.Sprintf("%s: %d/%d approvals; %s", r.ID, len(r.Approvals), needed(r.Steps), waited),
	}
	if width <= 0 {
		return variants[0]
	}
	for _, v := range variants {
		if utf8.RuneCountInString(v) <= width {
			return v
		}
	}
	return cutToWidth(variants[len(variants)-1], width)
}

func canApproveNote(who []string) string {
	if len(who) == 0 {
		return ""
	}
	return " (" + strings.Join(who, ", ") + " can approve)"
}

// cutToWidth keeps the first width characters of s, the last of them an
// ellipsis when s was longer.
func cutToWidth(s string, width int) string {
	if width <= 0 {
		return ""
	}
	if utf8.RuneCountInString(s) <= width {
		return s
	}
	runes := []rune(s)
	return string(runes[:width-1]) + "…"
}

// terminalWidth is the width of the terminal w writes to: the terminal's
// own word, else $COLUMNS, else 80.
func terminalWidth(w io.Writer) int {
	if f, ok := w.(*os.File); ok {
		if cols, _, err := term.GetSize(int(f.Fd())); err == nil && cols > 0 {
			return cols
		}
	}
	if cols, err := strconv.Atoi(os.Getenv("COLUMNS")); err == nil && cols > 0 {
		return cols
	}
	return 80
}

func (p *progress) update(r *approvals.Request, canApprove []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.r, p.who = r, canApprove
	if r.State != approvals.StatePending || p.tty {
		return
	}
	key := fmt.Sprintf("%s %d", r.State, len(r.Approvals))
	if key != p.last {
		p.last = key
		fmt.Fprintln(p.w, p.line())
	}
}

func (p *progress) spin() {
	frames := `|/-\`
	t := time.NewTicker(150 * time.Millisecond)
	defer t.Stop()
	for i := 0; ; i++ {
		select {
		case <-p.stop:
			return
		case <-t.C:
		}
		p.mu.Lock()
		if p.r != nil && p.r.State == approvals.StatePending {
			// One column less than the width: a line that fills the last
			// column makes some terminals wrap before the next \r.
			width := terminalWidth(p.w) - 3
			fmt.Fprintf(p.w, "\r\033[K%c %s", frames[i%len(frames)], waitingLine(p.r, p.who, time.Now(), width))
		}
		p.mu.Unlock()
	}
}

func (p *progress) done() {
	close(p.stop)
	if p.tty {
		p.mu.Lock()
		fmt.Fprint(p.w, "\r\033[K")
		p.mu.Unlock()
	}
}
