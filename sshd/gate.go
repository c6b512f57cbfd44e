package sshd

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"time"
)

// envHookGate names the socket of the push gate.
const envHookGate = "JITSSH_HOOK_GATE"

// Bounds of one conversation with the gate.
const (
	gateTimeout = 2 * time.Minute // an audit fsync can be slow; a hung one is not waited for
	maxGateSize = 64 << 20
)

// ErrAuditUnavailable is returned when an operation is refused because its
// record could not be written.
var ErrAuditUnavailable = errors.New("the audit record could not be written")

// pushGate is how the proc-receive hook asks the serving process whether a
// push's decided updates may happen, so that the serving process, which
// holds the Recorder, records them before git changes any ref. It answers
// one question per connection on a socket in a directory only this user
// can enter.
type pushGate struct {
	dir  string
	l    net.Listener
	done chan struct{}
}

// openPushGate starts a gate that answers with allow: nil lets the updates
// happen, an error refuses them all.
func openPushGate(allow func([]RefUpdate) error) (*pushGate, error) {
	dir, err := os.MkdirTemp("", "jitssh-gate-")
	if err != nil {
		return nil, fmt.Errorf("create push gate: %w", err)
	}
	l, err := net.Listen("unix", filepath.Join(dir, "gate"))
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("create push gate: %w", err)
	}
	g := &pushGate{dir: dir, l: l, done: make(chan struct{})}
	go func() {
		defer close(g.done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			g.answer(c, allow)
		}
	}()
	return g, nil
}

func (g *pushGate) path() string { return g.l.Addr().String() }

func (g *pushGate) answer(c net.Conn, allow func([]RefUpdate) error) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(gateTimeout))
	var updates []RefUpdate
	if err := json.NewDecoder(io.LimitReader(c, maxGateSize)).Decode(&updates); err != nil {
		fmt.Fprintf(c, "refused bad request\n")
		return
	}
	if err := allow(updates); err != nil {
		// The hook gives the client this line; the detail is for the log.
		fmt.Fprintf(c, "refused %s\n", ErrAuditUnavailable)
		return
	}
	fmt.Fprintf(c, "ok\n")
}

// close stops the gate once its conversation, if any, is over.
func (g *pushGate) close() {
	g.l.Close()
	<-g.done
	os.RemoveAll(g.dir)
}

// askGate is the hook's side: it returns nil only when the gate at path
// answered that updates may happen. Anything else, a missing gate
// included, refuses them: ErrAuditUnavailable itself when the gate said
// no, wrapped with the detail when it could not be asked.
func askGate(path string, updates []RefUpdate) error {
	if path == "" {
		return fmt.Errorf("%w: no push gate (not started by jitssh)", ErrAuditUnavailable)
	}
	c, err := net.DialTimeout("unix", path, 10*time.Second)
	if err != nil {
		return fmt.Errorf("%w: push gate: %w", ErrAuditUnavailable, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(gateTimeout))
	if err := json.NewEncoder(c).Encode(updates); err != nil {
		return fmt.Errorf("%w: push gate: %w", ErrAuditUnavailable, err)
	}
	answer, err := bufio.NewReader(io.LimitReader(c, 4096)).ReadString('\n')
	if err != nil {
		return fmt.Errorf("%w: push gate: %w", ErrAuditUnavailable, err)
	}
	if answer != "ok\n" {
		// The serving process refused; it logged why.
		return ErrAuditUnavailable
	}
	return nil
}
