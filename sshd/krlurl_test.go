package sshd

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"

	"github.com/jitssh/jitssh/ca/krl"
)

// testClock is a clock tests move by hand.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// krlServer serves an empty KRL while up is set, and 503 otherwise.
func krlServer(t *testing.T) (*httptest.Server, *atomic.Bool) {
	t.Helper()
	empty, err := (&krl.List{}).Marshal()
	require.NoError(t, err)
	var up atomic.Bool
	up.Store(true)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if !up.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		w.Write(empty)
	}))
	t.Cleanup(srv.Close)
	return srv, &up
}

// TestKRLURLStaleness: a list with no successful fetch for max_stale
// refuses every certificate and says why; the server's log says so at
// Error once per stale spell, however many certificates it refuses, and
// at Info when the list is fresh again.
func TestKRLURLStaleness(t *testing.T) {
	srv, up := krlServer(t)
	var logs logBuffer
	clock := &testClock{t: time.Unix(1_700_000_000, 0)}
	k := NewKRLURL([]string{srv.URL}, time.Second, time.Minute, slog.New(slog.NewJSONHandler(&logs, nil)))
	k.now = clock.now
	cert := signCert(t, newCA(t), certOpts{})
	ctx := context.Background()

	_, err := k.Revoked(cert)
	require.ErrorIs(t, err, ErrRevocationStale, "a list never fetched")
	assert.Contains(t, err.Error(), "has succeeded yet")

	require.NoError(t, k.Fetch(ctx))
	_, err = k.Revoked(cert)
	require.NoError(t, err)

	up.Store(false)
	require.Error(t, k.Fetch(ctx))
	clock.advance(time.Minute)
	_, err = k.Revoked(cert)
	require.NoError(t, err, "stale before max_stale passed")
	clock.advance(time.Second)
	for range 5 {
		_, err = k.Revoked(cert)
		require.ErrorIs(t, err, ErrRevocationStale)
	}
	assert.Contains(t, err.Error(), "has succeeded for 1m1s")
	assert.Contains(t, err.Error(), "every certificate is refused until one does")
	assert.Contains(t, err.Error(), "503")
	stale := logs.lines(t, "revocation list is stale; refusing every certificate until a fetch succeeds")
	require.Len(t, stale, 2, "one Error per stale spell: the first before any fetch, then this one")
	assert.Equal(t, "ERROR", stale[1]["level"])
	assert.Equal(t, srv.URL, stale[1]["url"])

	up.Store(true)
	require.NoError(t, k.Fetch(ctx))
	_, err = k.Revoked(cert)
	require.NoError(t, err)
	assert.Len(t, logs.lines(t, "revocation list is fresh again; certificates are accepted again"), 2)
	assert.Len(t, logs.lines(t, "revocation list is stale; refusing every certificate until a fetch succeeds"), 2)
}

// TestNativeStaleRevocationList: a git-server whose revocation list is
// stale refuses every certificate; each refusal's audit reason says the
// list is stale, and the log says so at Error once, not per connection.
func TestNativeStaleRevocationList(t *testing.T) {
	srv, up := krlServer(t)
	up.Store(false)
	var logs logBuffer
	logger := slog.New(slog.NewJSONHandler(&logs, nil))
	k := NewKRLURL([]string{srv.URL}, time.Second, time.Minute, logger)
	n := startNative(t, func(o *ServerOptions) { o.Logger = logger })
	n.verifier.Store(&Verifier{CAs: []ssh.PublicKey{n.ca.PublicKey()}, Revocations: []RevocationChecker{k}})
	u := n.newUser("alice", time.Hour, "git:read:demo/app:*")
	n.startAgent(u)
	for range 3 {
		out, err := n.gitAs(u, t.TempDir(), "ls-remote", n.url("demo/app"))
		require.Error(t, err, out)
	}
	require.Eventually(t, func() bool {
		refused := 0
		for _, e := range n.events.all() {
			if e.Command == "auth" && e.KeyID == "alice/req-1" {
				assert.Contains(t, e.Reason, "revocation list is stale")
				assert.Contains(t, e.Reason, "every certificate is refused")
				refused++
			}
		}
		return refused == 3
	}, 10*time.Second, 20*time.Millisecond, "%+v", n.events.all())
	assert.Len(t, logs.lines(t, "revocation list is stale; refusing every certificate until a fetch succeeds"), 1)
}
