package main

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// holdWait opens a wait on request id and returns once the daemon has
// answered it, so the call is counted; stop ends it.
func holdWait(t *testing.T, c *apiClient, id string) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	first := make(chan error, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		var once sync.Once
		err := c.stream(ctx, methodWait, apiRequest{ID: id}, func(*apiResponse) (bool, error) {
			once.Do(func() { first <- nil })
			return true, nil
		})
		once.Do(func() { first <- err })
	}()
	require.NoError(t, <-first)
	return func() { cancel(); <-done }
}

func apiCode(err error) string {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae.Code
	}
	return ""
}

// TestAPIFloodLeavesOthersServed: one person flooding the daemon with
// requests and with calls is refused beyond their limits, while another
// person's calls, made at the same time, all go through.
func TestAPIFloodLeavesOthersServed(t *testing.T) {
	d := startInProcessDaemon(t, "limits: {request_burst: 5, requests_per_hour: 5, max_calls_per_person: 4, max_sessions_per_connection: 2}\n")
	alice, bob := d.client(t, "alice"), d.client(t, "bob")
	write := apiRequest{Repo: "demo/app", Ref: "refs/heads/main", Access: "write", TTL: "10m", Reason: "x"}
	read := apiRequest{Repo: "demo/app", Ref: "*", Access: "read", TTL: "10m"}
	pending := []string{d.submit(t, alice, "alice", write).Request.ID, d.submit(t, alice, "alice", write).Request.ID}

	// Requests: alice sends 20 as fast as the daemon answers, while bob
	// makes 5 requests and 20 other calls.
	const flood = 20
	var aliceOK, aliceRate int
	var bobErrs []error
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for range flood {
			_, err := d.trySubmit(t, alice, "alice", read)
			switch {
			case err == nil:
				aliceOK++
			case apiCode(err) == "rate_limited":
				aliceRate++
			default:
				t.Errorf("alice: %v", err)
			}
		}
	}()
	go func() {
		defer wg.Done()
		for i := range 25 {
			var err error
			switch {
			case i%5 == 0:
				_, err = d.trySubmit(t, bob, "bob", read)
			case i%2 == 0:
				_, err = bob.call(methodGet, apiRequest{ID: pending[0]})
			default:
				_, err = bob.call(methodList, apiRequest{})
			}
			if err != nil {
				bobErrs = append(bobErrs, err)
			}
		}
	}()
	wg.Wait()
	assert.Equal(t, 3, aliceOK, "alice's burst of 5, less her 2 pending requests")
	assert.Equal(t, flood-3, aliceRate)
	assert.Empty(t, bobErrs, "bob's 25 calls")

	// Calls: alice holds four waits on two connections, her limit.
	alice2 := d.client(t, "alice")
	var stops []func()
	for _, c := range []*apiClient{alice, alice2} {
		for _, id := range pending {
			stops = append(stops, holdWait(t, c, id))
		}
	}
	_, err := alice.conn.NewSession()
	require.Error(t, err, "a third session on one connection")
	assert.Contains(t, err.Error(), "too many calls at once on this connection")
	_, err = d.client(t, "alice").call(methodWhoami, apiRequest{})
	require.Error(t, err)
	assert.Equal(t, "rate_limited", apiCode(err), err.Error())
	assert.Contains(t, err.Error(), "4 calls in progress")
	for range 10 {
		_, err := bob.call(methodWhoami, apiRequest{})
		require.NoError(t, err, "bob, while alice holds all of hers")
	}

	// A wait the client gives up on frees its place at once.
	stops[0]()
	require.Eventually(t, func() bool {
		_, err := d.client(t, "alice").call(methodWhoami, apiRequest{})
		return err == nil
	}, 10*time.Second, 20*time.Millisecond, "alice's place did not come back when she ended a wait")
	for _, stop := range stops[1:] {
		stop()
	}
}

// rawConn opens a TCP connection to addr from the loopback address
// local, sending nothing.
func rawConn(t *testing.T, local, addr string) net.Conn {
	t.Helper()
	dialer := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}, Timeout: 10 * time.Second}
	c, err := dialer.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}

// readAll reads what the server sends until it closes the connection,
// failing the test if that takes more than a minute.
func readUntilClosed(t *testing.T, c net.Conn) string {
	t.Helper()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(time.Minute)))
	b, err := io.ReadAll(c)
	require.NoError(t, err, "the server did not close the connection")
	return string(b)
}

// readBanner reads the server's version line: the connection was
// admitted.
func readBanner(t *testing.T, c net.Conn) {
	t.Helper()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(10*time.Second)))
	buf := make([]byte, len("SSH-2.0-jitssh-daemon"))
	_, err := io.ReadFull(c, buf)
	require.NoError(t, err)
	assert.Equal(t, "SSH-2.0-jitssh-daemon", string(buf))
}

// TestAPIHandshakeTimeout: a connection that never says a word is closed
// once the handshake timeout passes, though the idle timeout is far off.
func TestAPIHandshakeTimeout(t *testing.T) {
	d := startInProcessDaemon(t, "limits: {handshake_timeout: 200ms, idle_timeout: 1h}\n")
	c := rawConn(t, "127.0.0.1", d.addrs.API.String())
	got := readUntilClosed(t, c)
	assert.True(t, strings.HasPrefix(got, "SSH-2.0-jitssh-daemon"), "it was admitted, then closed: %q", got)

	// A client that authenticates is not cut by it.
	alice := d.client(t, "alice")
	d.submit(t, alice, "alice", apiRequest{Repo: "demo/app", Ref: "refs/heads/main", Access: "write", TTL: "10m", Reason: "x"})
	readUntilClosed(t, rawConn(t, "127.0.0.1", d.addrs.API.String())) // the timeout has passed since alice connected
	_, err := alice.call(methodWhoami, apiRequest{})
	require.NoError(t, err)
}

// TestAPIConnectionLimits: beyond max_connections_per_source from one
// address, and beyond max_connections in all, a new connection is closed
// before the server says anything, while /healthz still answers; a closed
// connection makes room.
func TestAPIConnectionLimits(t *testing.T) {
	d := startInProcessDaemon(t, "limits: {max_connections: 3, max_connections_per_source: 2, handshake_timeout: 1h}\n")
	api := d.addrs.API.String()
	first := rawConn(t, "127.0.0.1", api)
	readBanner(t, first)
	readBanner(t, rawConn(t, "127.0.0.1", api))
	assert.Empty(t, readUntilClosed(t, rawConn(t, "127.0.0.1", api)), "a third from one address")
	readBanner(t, rawConn(t, "127.0.0.2", api))
	assert.Empty(t, readUntilClosed(t, rawConn(t, "127.0.0.3", api)), "a fourth in all")
	_, err := connectAPI(api, filepath.Join(d.dir, "alice"), d.knownHosts)
	require.Error(t, err, "even a listed person waits for room")

	resp, err := http.Get("http://" + d.addrs.HTTP.String() + "/healthz")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)

	first.Close()
	require.Eventually(t, func() bool {
		c, err := connectAPI(api, filepath.Join(d.dir, "alice"), d.knownHosts)
		if err != nil {
			return false
		}
		c.Close()
		return true
	}, 10*time.Second, 20*time.Millisecond, "a closed connection did not make room")
}

// TestAPIWaitOutlivesIdleTimeout: a wait keeps its connection open with
// keepalives for as long as it takes; a connection without them is cut at
// the idle timeout.
func TestAPIWaitOutlivesIdleTimeout(t *testing.T) {
	d := startInProcessDaemon(t, "limits: {idle_timeout: 1s}\n")
	defer func(k time.Duration) { apiKeepalive = k }(apiKeepalive)

	apiKeepalive = time.Hour
	quiet := d.client(t, "alice")
	apiKeepalive = 200 * time.Millisecond
	alice := d.client(t, "alice")
	r := d.submit(t, alice, "alice", apiRequest{Repo: "demo/app", Ref: "refs/heads/main", Access: "write", TTL: "10m", Reason: "x"}).Request
	states := make(chan *apiResponse, 10)
	waited := make(chan error, 1)
	go func() {
		waited <- alice.stream(t.Context(), methodWait, apiRequest{ID: r.ID, After: r.Version}, func(resp *apiResponse) (bool, error) {
			states <- resp
			return !settled(resp.Request), nil
		})
	}()

	// The idle timeout has passed once the quiet connection is cut.
	cut := make(chan error, 1)
	go func() { cut <- quiet.conn.Wait() }()
	select {
	case <-cut:
	case <-time.After(time.Minute):
		t.Fatal("a connection with no traffic was not cut at the idle timeout")
	}

	bob := d.client(t, "bob")
	got, err := bob.call(methodGet, apiRequest{ID: r.ID})
	require.NoError(t, err)
	req := apiRequest{ID: r.ID, Reason: "ok"}
	req.Signature, err = bob.sign("jitssh-approve@jitssh", decisionStatement(methodApprove, "bob", got.Request, req).Message())
	require.NoError(t, err)
	_, err = bob.call(methodApprove, req)
	require.NoError(t, err)

	select {
	case err := <-waited:
		require.NoError(t, err)
	case <-time.After(time.Minute):
		t.Fatal("the wait did not end after the approval")
	}
	var last *apiResponse
	for len(states) > 0 {
		last = <-states
	}
	require.NotNil(t, last, "the wait received nothing")
	assert.NotEmpty(t, last.Request.Certificate, "the wait outlived the idle timeout and got the certificate")
}
