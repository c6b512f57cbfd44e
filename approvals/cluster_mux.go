package approvals

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// A node has one listener for its peers. Every connection is TLS first
// (see ClusterTLS); its first byte after the handshake says what it
// carries.
const (
	connRaft byte = 'R' // hashicorp/raft's NetworkTransport
	connRPC  byte = 'C' // forwarded commands and cluster calls (see rpcRequest)
)

// handshakeTimeout bounds a TLS handshake and the byte after it, so a
// peer that connects and says nothing holds no goroutine for long.
const handshakeTimeout = 10 * time.Second

// dialFunc opens a connection to addr; TCP in the daemon, an in-memory
// network in tests.
type dialFunc func(ctx context.Context, addr string) (net.Conn, error)

func dialTCP(ctx context.Context, addr string) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, "tcp", addr)
}

// clusterMux accepts peers on the node's listener and hands each
// connection to raft or to the RPC server.
type clusterMux struct {
	ln        net.Listener
	tls       *ClusterTLS
	dial      dialFunc
	advertise string
	logger    *slog.Logger

	raftCh chan net.Conn
	rpc    func(conn net.Conn, peer string) // serves one RPC connection

	mu     sync.Mutex
	conns  map[net.Conn]bool // RPC connections being served
	closed bool
	done   chan struct{}
	wg     sync.WaitGroup
}

func newClusterMux(ln net.Listener, t *ClusterTLS, dial dialFunc, advertise string, logger *slog.Logger) *clusterMux {
	if dial == nil {
		dial = dialTCP
	}
	return &clusterMux{
		ln: ln, tls: t, dial: dial, advertise: advertise, logger: logger,
		raftCh: make(chan net.Conn),
		conns:  map[net.Conn]bool{},
		done:   make(chan struct{}),
	}
}

// serve accepts connections until close; rpc serves the RPC ones.
func (m *clusterMux) serve(rpc func(conn net.Conn, peer string)) {
	m.rpc = rpc
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		var delay time.Duration
		for {
			conn, err := m.ln.Accept()
			if err != nil {
				select {
				case <-m.done:
					return
				default:
				}
				if errors.Is(err, net.ErrClosed) {
					return
				}
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				m.logger.Warn("cluster listener: accept failed", "err", err, "retry_in", delay)
				time.Sleep(delay)
				continue
			}
			delay = 0
			m.wg.Add(1)
			go func() {
				defer m.wg.Done()
				m.handle(conn)
			}()
		}
	}()
}

// handle completes the TLS handshake and routes the connection.
func (m *clusterMux) handle(raw net.Conn) {
	conn := tls.Server(raw, m.tls.serverConfig())
	_ = conn.SetDeadline(time.Now().Add(handshakeTimeout))
	if err := conn.Handshake(); err != nil {
		m.logger.Warn("cluster connection refused", "remote", raw.RemoteAddr().String(), "err", err)
		raw.Close()
		return
	}
	peer := conn.ConnectionState().PeerCertificates[0].Subject.CommonName
	var kind [1]byte
	if _, err := conn.Read(kind[:]); err != nil {
		conn.Close()
		return
	}
	_ = conn.SetDeadline(time.Time{})
	switch kind[0] {
	case connRaft:
		select {
		case m.raftCh <- conn:
		case <-m.done:
			conn.Close()
		}
	case connRPC:
		if !m.track(conn, true) {
			conn.Close()
			return
		}
		defer m.track(conn, false)
		m.rpc(conn, peer)
	default:
		m.logger.Warn("cluster connection of unknown kind", "remote", raw.RemoteAddr().String(), "peer", peer, "kind", kind[0])
		conn.Close()
	}
}

func (m *clusterMux) track(c net.Conn, add bool) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if add {
		if m.closed {
			return false
		}
		m.conns[c] = true
		return true
	}
	delete(m.conns, c)
	return true
}

// close stops accepting, closes the RPC connections being served and waits
// for their handlers.
func (m *clusterMux) close() {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return
	}
	m.closed = true
	close(m.done)
	for c := range m.conns {
		c.Close()
	}
	m.mu.Unlock()
	m.ln.Close()
	m.wg.Wait()
}

// dialNode opens a TLS connection of kind to the node at addr. The
// handshake has completed, both ways verified, when it returns.
func dialNode(ctx context.Context, dial dialFunc, t *ClusterTLS, addr string, kind byte) (*tls.Conn, error) {
	raw, err := dial(ctx, addr)
	if err != nil {
		return nil, err
	}
	conn := tls.Client(raw, t.clientConfig())
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	} else {
		_ = conn.SetDeadline(time.Now().Add(handshakeTimeout))
	}
	if err := conn.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, fmt.Errorf("tls handshake with %s: %w", addr, err)
	}
	if _, err := conn.Write([]byte{kind}); err != nil {
		conn.Close()
		return nil, fmt.Errorf("connect to %s: %w", addr, err)
	}
	_ = conn.SetDeadline(time.Time{})
	return conn, nil
}

// raftStream is the raft.StreamLayer of the node's listener.
type raftStream struct {
	m *clusterMux
}

var _ raft.StreamLayer = raftStream{}

func (s raftStream) Accept() (net.Conn, error) {
	select {
	case c := <-s.m.raftCh:
		return c, nil
	case <-s.m.done:
		return nil, net.ErrClosed
	}
}

// Close is a no-op: the mux, which raft does not own, is closed by the
// Service after raft has shut down.
func (s raftStream) Close() error { return nil }

func (s raftStream) Addr() net.Addr { return advertiseAddr(s.m.advertise) }

func (s raftStream) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return dialNode(ctx, s.m.dial, s.m.tls, string(address), connRaft)
}

// advertiseAddr is a net.Addr whose String is the advertised address, as
// NetworkTransport reports it to peers.
type advertiseAddr string

func (a advertiseAddr) Network() string { return "tcp" }
func (a advertiseAddr) String() string  { return string(a) }
