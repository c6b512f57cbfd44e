package sshd

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"

	gliderssh "github.com/gliderlabs/ssh"
	"golang.org/x/crypto/ssh"
)

var errHandshakeTimeout = errors.New("handshake timed out")

// admit applies the connection limits, waits for a handshake slot, and
// starts the handshake timeout. A connection waiting for a slot has not
// begun its handshake: the server has not even sent its banner, the client
// waits for it, and the timeout has not started. So a burst of clients
// beyond what the server can shake hands with at once waits its turn
// instead of sharing the CPU until every one of them times out.
func (s *Server) admit(ctx gliderssh.Context, conn net.Conn) net.Conn {
	source := "?"
	if ip, ok := remoteIP(conn.RemoteAddr()); ok {
		source = ip.String()
	}
	s.mu.Lock()
	if s.total >= s.opts.MaxConnections || s.perSource[source] >= s.opts.MaxPerSource {
		s.mu.Unlock()
		s.opts.Logger.Warn("connection refused: limit reached", "remote", conn.RemoteAddr().String())
		s.opts.Metrics.refusedConn()
		return nil
	}
	s.total++
	s.perSource[source]++
	s.mu.Unlock()
	s.opts.Metrics.connOpened()
	leaveLimits := func() {
		s.mu.Lock()
		s.total--
		if s.perSource[source]--; s.perSource[source] <= 0 {
			delete(s.perSource, source)
		}
		s.mu.Unlock()
		s.opts.Metrics.connClosed()
	}
	if !s.handshakes.enter(source) {
		leaveLimits() // the server is closing
		return nil
	}

	tc := &trackedConn{Conn: conn, remote: conn.RemoteAddr().String()}
	var leaveGate sync.Once
	tc.endHandshake = func() { leaveGate.Do(func() { s.handshakes.leave(source) }) }
	tc.release = func() {
		leaveLimits()
		s.recordRefusals(tc, identity(ctx) != nil)
	}
	ctx.SetValue(connKey, tc)
	// A client that does not finish authenticating in time is dropped,
	// however slowly it trickles bytes.
	tc.handshake = time.AfterFunc(s.opts.HandshakeTimeout, tc.timeout)
	return tc
}

// recordRefusals records, once the connection has ended, every certificate
// it offered that was refused, each with its own reason: a refused
// certificate is on the record whether or not another key got in after
// it. Plain keys are offered routinely (ssh tries every key it has), so
// one is recorded only for a connection that offered no certificate and
// never authenticated.
func (s *Server) recordRefusals(tc *trackedConn, authenticated bool) {
	tc.mu.Lock()
	certs, plain := tc.certRefusals, tc.plainRefusal
	tc.mu.Unlock()
	if len(certs) == 0 && plain != nil && !authenticated {
		certs = append(certs, *plain)
	}
	for _, e := range certs {
		s.opts.Metrics.operation("auth", Deny)
		_ = s.pipeline.record(context.Background(), e)
	}
}

const connKey ctxKey = "jitssh-conn"

// Handshake states of a trackedConn: it ends either authenticated or timed
// out, never both.
const (
	handshakeRunning int32 = iota
	handshakeAuthenticated
	handshakeTimedOut
)

type trackedConn struct {
	net.Conn
	remote       string
	once         sync.Once
	release      func()
	endHandshake func()
	handshake    *time.Timer
	state        atomic.Int32

	mu           sync.Mutex
	certRefusals []Event
	plainRefusal *Event
}

// authenticated ends the handshake as a success, and frees its slot. It
// returns false when the handshake timeout has ended it already: the
// connection is closed, and the key that just signed must not get in.
func (c *trackedConn) authenticated() bool {
	if !c.state.CompareAndSwap(handshakeRunning, handshakeAuthenticated) {
		return false
	}
	c.handshake.Stop()
	c.endHandshake()
	return true
}

// timeout ends the handshake as a failure and closes the connection,
// unless it authenticated first.
func (c *trackedConn) timeout() {
	if c.state.CompareAndSwap(handshakeRunning, handshakeTimedOut) {
		c.Close()
	}
}

// refused notes a refused key offer: every certificate, each once per
// reason, and the last plain key.
func (c *trackedConn) refused(key ssh.PublicKey, err error) {
	e := authEvent(key, err, c.remote, "auth")
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, isCert := key.(*ssh.Certificate); !isCert {
		c.plainRefusal = &e
		return
	}
	for _, seen := range c.certRefusals {
		if seen.Serial == e.Serial && seen.KeyID == e.KeyID && seen.CA == e.CA && seen.Reason == e.Reason {
			return
		}
	}
	// A client may offer any number; beyond maxAuthTries the server has
	// closed the connection anyway.
	if len(c.certRefusals) < maxAuthTries {
		c.certRefusals = append(c.certRefusals, e)
	}
}

func (c *trackedConn) Read(p []byte) (int, error) {
	quickAck(c.Conn)
	return c.Conn.Read(p)
}

func (c *trackedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.handshake.Stop()
		c.endHandshake()
		c.release()
	})
	return err
}

// handshakeGate bounds the handshakes in progress, in all and per source
// address. Waiting is cheap (a goroutine and a socket, within the
// connection limits); a handshake is not, and a source that opens
// connections and never finishes them holds at most perSource of the
// slots, each for the handshake timeout at most.
type handshakeGate struct {
	mu        sync.Mutex
	cond      *sync.Cond
	max       int
	perSource int
	total     int
	bySource  map[string]int
	closed    bool
}

func newHandshakeGate(max, perSource int) *handshakeGate {
	g := &handshakeGate{max: max, perSource: perSource, bySource: map[string]int{}}
	g.cond = sync.NewCond(&g.mu)
	return g
}

// enter waits for a slot for source; false means the gate was closed.
func (g *handshakeGate) enter(source string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	for !g.closed && (g.total >= g.max || g.bySource[source] >= g.perSource) {
		g.cond.Wait()
	}
	if g.closed {
		return false
	}
	g.total++
	g.bySource[source]++
	return true
}

func (g *handshakeGate) leave(source string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.total--
	if g.bySource[source]--; g.bySource[source] <= 0 {
		delete(g.bySource, source)
	}
	g.cond.Broadcast()
}

// close lets every waiter go, with no slot.
func (g *handshakeGate) close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.closed = true
	g.cond.Broadcast()
}
