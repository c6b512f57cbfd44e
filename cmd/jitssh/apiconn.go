package main

import (
	"context"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	gliderssh "github.com/gliderlabs/ssh"
	"golang.org/x/crypto/ssh"

	"github.com/jitssh/jitssh/approvals"
)

// connGate admits connections to the API and keeps them in check: at most
// MaxConnections in all and MaxConnectionsPerSource from one IP address,
// each closed unless it authenticates within HandshakeTimeout, with at
// most MaxSessionsPerConnection calls at once; and after a reload, the
// connections of keys the policy no longer lists are closed.
type connGate struct {
	limits approvals.Limits
	logger *slog.Logger

	mu        sync.Mutex
	total     int
	perSource map[string]int
	open      map[*gatedConn]struct{}
	refused   int       // refusals not logged yet
	lastWarn  time.Time // when refusals were last logged
}

func newConnGate(limits approvals.Limits, logger *slog.Logger) *connGate {
	return &connGate{limits: limits, logger: logger, perSource: map[string]int{}, open: map[*gatedConn]struct{}{}}
}

const gatedConnKey apiCtxKey = "jitssh-gated-conn"

// gatedConn is one admitted connection.
type gatedConn struct {
	net.Conn
	once      sync.Once
	release   func()
	handshake *time.Timer
	actor     atomic.Pointer[approvals.Actor] // set once authenticated
	sessions  atomic.Int32
}

func (c *gatedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.handshake.Stop()
		c.release()
	})
	return err
}

// admit is the server's ConnCallback: nil refuses the connection, which
// the server then closes without a word.
func (g *connGate) admit(ctx gliderssh.Context, conn net.Conn) net.Conn {
	source := "?"
	if tcp, ok := conn.RemoteAddr().(*net.TCPAddr); ok {
		source = tcp.IP.String()
	}
	g.mu.Lock()
	if g.total >= g.limits.MaxConnections || g.perSource[source] >= g.limits.MaxConnectionsPerSource {
		total, fromSource := g.total, g.perSource[source]
		g.refused++
		refused, quiet := g.refused, time.Since(g.lastWarn) < time.Second
		if !quiet {
			g.lastWarn, g.refused = time.Now(), 0
		}
		g.mu.Unlock()
		// A flood of connections must not become a flood of log lines.
		if !quiet {
			g.logger.Warn("api connections refused: limit reached", "remote", conn.RemoteAddr().String(),
				"open", total, "open_from_source", fromSource, "refused", refused)
		}
		return nil
	}
	g.total++
	g.perSource[source]++
	gc := &gatedConn{Conn: conn}
	gc.release = func() {
		g.mu.Lock()
		defer g.mu.Unlock()
		delete(g.open, gc)
		g.total--
		if g.perSource[source]--; g.perSource[source] <= 0 {
			delete(g.perSource, source)
		}
	}
	// A client that has not authenticated in time is dropped, however
	// slowly it trickles bytes: the idle timeout alone would let it stay.
	gc.handshake = time.AfterFunc(g.limits.HandshakeTimeout.D(), func() {
		if gc.actor.Load() == nil {
			g.logger.Info("api connection closed: no authentication within the handshake timeout",
				"remote", conn.RemoteAddr().String(), "timeout", g.limits.HandshakeTimeout.String())
			gc.Close()
		}
	})
	g.open[gc] = struct{}{}
	g.mu.Unlock()
	ctx.SetValue(gatedConnKey, gc)
	return gc
}

// authenticated records who a connection authenticated as.
func authenticated(ctx gliderssh.Context, who approvals.Actor) {
	if gc, ok := ctx.Value(gatedConnKey).(*gatedConn); ok {
		gc.actor.Store(&who)
	}
}

// limitSessions caps the calls at once on one connection.
func (g *connGate) limitSessions(next gliderssh.ChannelHandler) gliderssh.ChannelHandler {
	return func(srv *gliderssh.Server, conn *ssh.ServerConn, newChan ssh.NewChannel, ctx gliderssh.Context) {
		gc, ok := ctx.Value(gatedConnKey).(*gatedConn)
		if !ok {
			newChan.Reject(ssh.Prohibited, "connection not admitted")
			return
		}
		if int(gc.sessions.Add(1)) > g.limits.MaxSessionsPerConnection {
			gc.sessions.Add(-1)
			newChan.Reject(ssh.ResourceShortage, "too many calls at once on this connection")
			return
		}
		defer gc.sessions.Add(-1)
		sctx, cancel := context.WithCancel(ctx)
		defer cancel()
		next(srv, conn, newChan, sessionCtx{Context: ctx, session: sctx})
	}
}

// sessionCtx is the context a call runs in: the connection's, but done
// as soon as the session's channel closes. gliderlabs/ssh hands every
// session the connection's context, so without it a wait the client gave
// up on would hold its place until the connection closed.
type sessionCtx struct {
	gliderssh.Context
	session context.Context
}

func (c sessionCtx) Done() <-chan struct{}       { return c.session.Done() }
func (c sessionCtx) Err() error                  { return c.session.Err() }
func (c sessionCtx) Deadline() (time.Time, bool) { return c.session.Deadline() }

// revalidate closes every connection whose key no longer identifies the
// person it authenticated as, with the calls and watches running on it.
// It runs after a reload; the calls themselves check the caller too, so a
// connection it has not reached yet can do nothing in the meantime.
func (g *connGate) revalidate(svc *approvals.Service) {
	g.mu.Lock()
	conns := make([]*gatedConn, 0, len(g.open))
	for gc := range g.open {
		conns = append(conns, gc)
	}
	g.mu.Unlock()
	for _, gc := range conns {
		who := gc.actor.Load()
		if who == nil {
			continue
		}
		if who.Person == "" { // a CI/CD job's fresh key
			if !svc.Policy().AcceptsWorkloads() {
				g.logger.Info("api connection closed: the policy no longer trusts any CI/CD token issuer",
					"key", ssh.FingerprintSHA256(who.Key), "remote", gc.RemoteAddr().String())
				gc.Close()
			}
			continue
		}
		if now, err := svc.Authenticate(who.Key); err != nil || now.Person != who.Person {
			g.logger.Info("api connection closed: its key was removed from the policy",
				"person", who.Person, "key", ssh.FingerprintSHA256(who.Key), "remote", gc.RemoteAddr().String())
			gc.Close()
		}
	}
}
