package sshd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	gliderssh "github.com/gliderlabs/ssh"
	"golang.org/x/crypto/ssh"
)

// Defaults for ServerOptions' limits.
const (
	DefaultHandshakeTimeout       = 10 * time.Second
	DefaultIdleTimeout            = 2 * time.Minute // well above git's 5 s keepalives
	DefaultMaxConnections         = 1024
	DefaultMaxPerSource           = 128
	DefaultMaxSessionsPerConn     = 4
	DefaultMaxHandshakes          = 64
	DefaultMaxHandshakesPerSource = 16
	DefaultRecheckInterval        = 2 * time.Second

	maxAuthTries = 32
)

// ServerOptions configure the native Git SSH front-end.
type ServerOptions struct {
	// HostKeys identify the server to clients.
	HostKeys []ssh.Signer
	// Verifier returns the current certificate verifier; it is called per
	// connection so a reload takes effect for new connections at once.
	Verifier func() *Verifier
	Repos    *Repos
	Git      *Git
	// Upstream, instead of Repos and Git, serves every repository from a
	// Git host.
	Upstream *Upstream
	Recorder Recorder
	Logger   *slog.Logger
	Metrics  *Metrics

	HandshakeTimeout   time.Duration
	IdleTimeout        time.Duration
	MaxConnections     int
	MaxPerSource       int
	MaxSessionsPerConn int
	// MaxHandshakes bounds the handshakes in progress at once, and
	// MaxHandshakesPerSource those from one address; further connections
	// wait, their handshake timeout not yet running.
	MaxHandshakes          int
	MaxHandshakesPerSource int
	// KeepExpired leaves a connection open past its certificate's
	// expiry or revocation. By default such a connection is closed.
	KeepExpired bool
	// RecheckInterval is how often an open connection's certificate is
	// verified again, with the Verifier of the moment.
	RecheckInterval time.Duration
}

// Server is the native Git SSH front-end: certificates only, the same
// authorization core as git-shell.
type Server struct {
	opts     ServerOptions
	srv      *gliderssh.Server
	pipeline *pipeline

	handshakes *handshakeGate

	mu        sync.Mutex
	perSource map[string]int
	total     int
	recheck   chan struct{} // closed, and replaced, by Recheck
}

type ctxKey string

const identityKey ctxKey = "jitssh-identity"

var errNoAuth = errors.New("server options need a verifier, host keys, and repositories and git or an upstream")

// NewServer builds a server; Serve starts it.
func NewServer(opts ServerOptions) (*Server, error) {
	if opts.Verifier == nil || len(opts.HostKeys) == 0 || (opts.Upstream == nil && (opts.Repos == nil || opts.Git == nil)) {
		return nil, errNoAuth
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewJSONHandler(io.Discard, nil))
	}
	if opts.Recorder == nil {
		opts.Recorder = SlogRecorder{Logger: opts.Logger}
	}
	setDefault(&opts.HandshakeTimeout, DefaultHandshakeTimeout)
	setDefault(&opts.IdleTimeout, DefaultIdleTimeout)
	setDefault(&opts.RecheckInterval, DefaultRecheckInterval)
	setDefaultInt(&opts.MaxConnections, DefaultMaxConnections)
	setDefaultInt(&opts.MaxPerSource, DefaultMaxPerSource)
	setDefaultInt(&opts.MaxSessionsPerConn, DefaultMaxSessionsPerConn)
	setDefaultInt(&opts.MaxHandshakes, DefaultMaxHandshakes)
	setDefaultInt(&opts.MaxHandshakesPerSource, DefaultMaxHandshakesPerSource)

	s := &Server{opts: opts, perSource: map[string]int{}, recheck: make(chan struct{}),
		handshakes: newHandshakeGate(opts.MaxHandshakes, opts.MaxHandshakesPerSource)}
	s.pipeline = &pipeline{repos: opts.Repos, git: opts.Git, upstream: opts.Upstream, recorder: opts.Recorder, logger: opts.Logger, metrics: opts.Metrics}
	s.srv = &gliderssh.Server{
		Handler:              s.handleSession,
		PublicKeyHandler:     s.offeredKey,
		ServerConfigCallback: s.serverConfig,
		ConnCallback:         s.admit,
		PtyCallback:          func(gliderssh.Context, gliderssh.Pty) bool { return false },
		IdleTimeout:          opts.IdleTimeout,
		Version:              "jitssh",
		ChannelHandlers: map[string]gliderssh.ChannelHandler{
			"session": s.limitSessions(gliderssh.DefaultSessionHandler),
		},
		RequestHandlers:   map[string]gliderssh.RequestHandler{},
		SubsystemHandlers: map[string]gliderssh.SubsystemHandler{},
	}
	for _, k := range opts.HostKeys {
		s.srv.AddHostKey(k)
	}
	// gliderlabs/ssh turns "no auth handler" into "no client auth". The
	// handler above is never nil, and handleSession refuses any session
	// without a verified identity, so that can never open a door.
	if s.srv.PublicKeyHandler == nil || s.srv.PasswordHandler != nil || s.srv.KeyboardInteractiveHandler != nil {
		return nil, errNoAuth
	}
	return s, nil
}

func setDefault(d *time.Duration, v time.Duration) {
	if *d <= 0 {
		*d = v
	}
}

func setDefaultInt(d *int, v int) {
	if *d <= 0 {
		*d = v
	}
}

// Serve accepts connections on l until Shutdown or Close.
func (s *Server) Serve(l net.Listener) error {
	err := s.srv.Serve(l)
	if errors.Is(err, gliderssh.ErrServerClosed) {
		return nil
	}
	return err
}

// Shutdown stops accepting and waits for open connections to finish
// until ctx is done; then it closes them.
func (s *Server) Shutdown(ctx context.Context) error {
	s.handshakes.close()
	err := s.srv.Shutdown(ctx)
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return s.srv.Close()
	}
	return err
}

// Close closes the listener and every connection now.
func (s *Server) Close() error {
	s.handshakes.close()
	return s.srv.Close()
}

// serverConfig adds the callback that sees only the key that completed
// authentication. The identity every later decision uses comes from it.
func (s *Server) serverConfig(ctx gliderssh.Context) *ssh.ServerConfig {
	// An ssh-agent often holds several keys and jitssh certificates; each
	// refused offer counts as an attempt, and OpenSSH's default of 6 would
	// turn a valid certificate late in the list away.
	cfg := &ssh.ServerConfig{MaxAuthTries: maxAuthTries, PreAuthConnCallback: keepPreAuthConn(ctx)}
	cfg.VerifiedPublicKeyCallback = func(conn ssh.ConnMetadata, key ssh.PublicKey, _ *ssh.Permissions, _ string) (*ssh.Permissions, error) {
		id, err := s.opts.Verifier().Verify(key, conn.RemoteAddr())
		if err != nil {
			// Accepted when offered, refused now that it signed: the
			// verifier changed in between.
			if tc, ok := ctx.Value(connKey).(*trackedConn); ok {
				tc.refused(key, err)
			}
			explainRefusal(ctx, key, err)
			return nil, err
		}
		// The handshake timeout may have ended the connection a moment
		// ago; then this key must not get in either.
		if tc, ok := ctx.Value(connKey).(*trackedConn); ok && !tc.authenticated() {
			return nil, errHandshakeTimeout
		}
		perms := &ssh.Permissions{ExtraData: map[any]any{identityKey: id}}
		if sa, ok := id.Cert.CriticalOptions[sourceAddressOption]; ok {
			// x/crypto enforces this too; both must agree.
			perms.CriticalOptions = map[string]string{sourceAddressOption: sa}
		}
		return perms, nil
	}
	return cfg
}

// offeredKey answers the client's "would you accept this key?" queries.
// Nothing it learns is kept: a key that is offered is not yet a key that
// signed. Refusals are remembered, to be recorded when the connection
// ends.
func (s *Server) offeredKey(ctx gliderssh.Context, key gliderssh.PublicKey) bool {
	_, err := s.opts.Verifier().Verify(key, ctx.RemoteAddr())
	if err != nil {
		if tc, ok := ctx.Value(connKey).(*trackedConn); ok {
			tc.refused(key, err)
		}
		explainRefusal(ctx, key, err)
		return false
	}
	return true
}

// identity returns the identity the completed handshake verified, or nil.
func identity(ctx gliderssh.Context) *Identity {
	conn, ok := ctx.Value(gliderssh.ContextKeyConn).(*ssh.ServerConn)
	if !ok || conn.Permissions == nil {
		return nil
	}
	id, _ := conn.Permissions.ExtraData[identityKey].(*Identity)
	return id
}

// limitSessions caps concurrent sessions on one connection, and starts
// the watch that closes a connection whose certificate stops being valid.
func (s *Server) limitSessions(next gliderssh.ChannelHandler) gliderssh.ChannelHandler {
	type connState struct {
		sessions atomic.Int32
		watching atomic.Bool
	}
	var states sync.Map // *ssh.ServerConn -> *connState
	return func(srv *gliderssh.Server, conn *ssh.ServerConn, newChan ssh.NewChannel, ctx gliderssh.Context) {
		v, _ := states.LoadOrStore(conn, &connState{})
		st := v.(*connState)
		if st.watching.CompareAndSwap(false, true) {
			go func() {
				s.watchConn(ctx, conn)
				states.Delete(conn)
			}()
		}
		if int(st.sessions.Add(1)) > s.opts.MaxSessionsPerConn {
			st.sessions.Add(-1)
			newChan.Reject(ssh.ResourceShortage, "too many sessions on this connection")
			return
		}
		defer st.sessions.Add(-1)
		next(srv, conn, newChan, ctx)
	}
}

// Recheck verifies every open connection's certificate again now, as the
// periodic check does: a revocation source calls it when its list
// changes, so a revoked certificate's connections close at once.
func (s *Server) Recheck() {
	s.mu.Lock()
	defer s.mu.Unlock()
	close(s.recheck)
	s.recheck = make(chan struct{})
}

func (s *Server) recheckSignal() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.recheck
}

// watchConn closes conn when its certificate expires or is revoked,
// unless KeepExpired is set. It returns when the connection ends.
func (s *Server) watchConn(ctx gliderssh.Context, conn *ssh.ServerConn) {
	id := identity(ctx)
	if id == nil || s.opts.KeepExpired {
		<-ctx.Done()
		return
	}
	expiry := time.NewTimer(time.Until(id.ValidBefore))
	defer expiry.Stop()
	tick := time.NewTicker(s.opts.RecheckInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-expiry.C:
			s.opts.Logger.Info("closing connection: certificate expired", "serial", id.Serial, "key_id", id.KeyID)
			conn.Close()
			return
		case <-tick.C:
		case <-s.recheckSignal():
		}
		// The same rule that let the certificate in, with the current CAs
		// and revocations.
		if _, err := s.opts.Verifier().Verify(id.Cert, conn.RemoteAddr()); err != nil {
			s.opts.Logger.Info("closing connection: certificate no longer valid", "serial", id.Serial, "key_id", id.KeyID, "err", err)
			conn.Close()
			return
		}
	}
}

// handleSession runs one exec request through the pipeline git-shell
// runs too.
func (s *Server) handleSession(sess gliderssh.Session) {
	ctx := sess.Context()
	r := execRequest{
		id:          identity(ctx),
		remote:      sess.RemoteAddr().String(),
		command:     sess.RawCommand(),
		gitProtocol: gitProtocolEnv(sess.Environ()),
		stdio:       Stdio{In: sess, Out: sess, Err: sess.Stderr()},
		exit:        func(code int) { _ = sess.Exit(code) },
	}
	switch {
	case r.id == nil:
		r.refused = ErrNoGrants
	case sess.Subsystem() != "":
		r.refused = fmt.Errorf("%w: subsystem %q", ErrCommand, sess.Subsystem())
	default:
		// Each operation on an open connection is a new use of the
		// certificate: it is checked against the revocations and CAs in
		// force now, not those of the handshake.
		if _, err := s.opts.Verifier().Verify(r.id.Cert, sess.RemoteAddr()); err != nil {
			r.refused = err
		}
	}
	s.pipeline.serve(ctx, r)
}

// gitProtocolEnv picks GIT_PROTOCOL out of the client's env requests.
// Nothing else a client sends as environment reaches git.
func gitProtocolEnv(env []string) string {
	v := ""
	for _, kv := range env {
		if val, ok := cutPrefix(kv, "GIT_PROTOCOL="); ok {
			v = val
		}
	}
	return v
}

func cutPrefix(s, prefix string) (string, bool) {
	if len(s) >= len(prefix) && s[:len(prefix)] == prefix {
		return s[len(prefix):], true
	}
	return "", false
}
