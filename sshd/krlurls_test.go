package sshd

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"

	"github.com/jitssh/jitssh/ca/krl"
)

// fakeDaemon serves /v1/krl as the approval daemon does: the list with its
// generation in KRLGenerationHeader, held on ?wait=G until the generation
// changes or ?timeout= passes. Revoke makes a new generation; down makes
// it answer 503; noHold makes it answer long-polls with 500, as a daemon
// whose long-polls fail would.
type fakeDaemon struct {
	t   *testing.T
	srv *httptest.Server
	ca  ssh.PublicKey

	mu      sync.Mutex
	krl     krl.List
	changed chan struct{} // closed and replaced by each change
	down    bool
	noHold  bool
	waits   int // long-polls received
}

func newFakeDaemon(t *testing.T, caKey ssh.PublicKey) *fakeDaemon {
	d := &fakeDaemon{t: t, ca: caKey, changed: make(chan struct{})}
	d.srv = httptest.NewServer(http.HandlerFunc(d.serve))
	t.Cleanup(d.srv.Close)
	return d
}

func (d *fakeDaemon) url() string { return d.srv.URL + "/v1/krl" }

func (d *fakeDaemon) serve(w http.ResponseWriter, r *http.Request) {
	d.mu.Lock()
	waiting := r.URL.Query().Has("wait")
	if waiting {
		d.waits++
	}
	if d.down || waiting && d.noHold {
		d.mu.Unlock()
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	}
	if waiting {
		wait, err := strconv.ParseUint(r.URL.Query().Get("wait"), 10, 64)
		require.NoError(d.t, err)
		hold, err := time.ParseDuration(r.URL.Query().Get("timeout"))
		require.NoError(d.t, err)
		if wait == d.krl.Version {
			changed := d.changed
			d.mu.Unlock()
			select {
			case <-changed:
			case <-time.After(hold):
			case <-r.Context().Done():
				return
			}
			d.mu.Lock()
		}
	}
	data, err := d.krl.Marshal()
	gen := d.krl.Version
	d.mu.Unlock()
	require.NoError(d.t, err)
	w.Header().Set(KRLGenerationHeader, strconv.FormatUint(gen, 10))
	w.Write(data)
}

// revoke adds serials under a new generation.
func (d *fakeDaemon) revoke(serials ...uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.krl.Version += uint64(len(serials))
	d.krl.RevokeSerial(d.ca, serials...)
	close(d.changed)
	d.changed = make(chan struct{})
}

func (d *fakeDaemon) set(f func(d *fakeDaemon)) {
	d.mu.Lock()
	defer d.mu.Unlock()
	f(d)
}

// changes returns a channel told of each change OnChange reports.
func changes(k *KRLURL) <-chan struct{} {
	ch := make(chan struct{}, 16)
	k.OnChange(func() { ch <- struct{}{} })
	return ch
}

func awaitChange(t *testing.T, ch <-chan struct{}) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatal("the revocation list never changed")
	}
}

// TestKRLURLsStaleness: several URLs count as one source. The list is
// fresh while any of them answers, and stale only when none has for
// max_stale; the error then names them all.
func TestKRLURLsStaleness(t *testing.T) {
	caKey := newCA(t)
	one, two := newFakeDaemon(t, caKey.PublicKey()), newFakeDaemon(t, caKey.PublicKey())
	clock := &testClock{t: time.Unix(1_700_000_000, 0)}
	k := NewKRLURL([]string{one.url(), two.url()}, time.Second, time.Minute, nil)
	k.now = clock.now
	cert := signCert(t, caKey, certOpts{serial: 7})
	ctx := context.Background()

	for _, step := range []struct {
		name      string
		oneDown   bool
		twoDown   bool
		advance   time.Duration
		wantFetch bool
		wantStale bool
	}{
		{name: "both up", wantFetch: true},
		{name: "first down: the second answers", oneDown: true, advance: 50 * time.Second, wantFetch: true},
		{name: "second down, first back", twoDown: true, advance: 50 * time.Second, wantFetch: true},
		{name: "both down, within max_stale", oneDown: true, twoDown: true, advance: 60 * time.Second},
		{name: "both down, past max_stale", oneDown: true, twoDown: true, advance: time.Second, wantStale: true},
		{name: "one back", twoDown: true, wantFetch: true},
	} {
		one.set(func(d *fakeDaemon) { d.down = step.oneDown })
		two.set(func(d *fakeDaemon) { d.down = step.twoDown })
		clock.advance(step.advance)
		err := k.Fetch(ctx)
		if step.wantFetch {
			require.NoError(t, err, step.name)
		} else {
			require.Error(t, err, step.name)
		}
		_, err = k.Revoked(cert)
		if !step.wantStale {
			require.NoError(t, err, step.name)
			continue
		}
		require.ErrorIs(t, err, ErrRevocationStale, step.name)
		assert.Contains(t, err.Error(), fmt.Sprintf("no fetch of any of %s, %s has succeeded for 1m1s", one.url(), two.url()))
		assert.Contains(t, err.Error(), one.url()+": GET "+one.url()+": 503")
		assert.Contains(t, err.Error(), two.url()+": GET "+two.url()+": 503")
	}
}

// TestKRLURLsNeverForgetARevocation: a node that trails the others may
// answer with a list older than one already fetched; what the newer list
// revoked stays revoked until a list at least as new arrives.
func TestKRLURLsNeverForgetARevocation(t *testing.T) {
	caKey := newCA(t)
	ahead, behind := newFakeDaemon(t, caKey.PublicKey()), newFakeDaemon(t, caKey.PublicKey())
	k := NewKRLURL([]string{ahead.url(), behind.url()}, time.Second, time.Minute, nil)
	revoked := signCert(t, caKey, certOpts{serial: 7})
	later := signCert(t, caKey, certOpts{serial: 8})
	ctx := context.Background()

	ahead.revoke(5, 7, 9)
	behind.revoke(5)
	require.NoError(t, k.Fetch(ctx))
	ahead.set(func(d *fakeDaemon) { d.down = true })
	require.NoError(t, k.Fetch(ctx), "the trailing node answers")
	got, err := k.Revoked(revoked)
	require.NoError(t, err)
	assert.True(t, got, "a revocation seen on one node is kept while another trails")

	behind.revoke(8)
	require.NoError(t, k.Fetch(ctx))
	got, err = k.Revoked(later)
	require.NoError(t, err)
	assert.True(t, got, "the trailing node's own revocations apply too")
	got, err = k.Revoked(revoked)
	require.NoError(t, err)
	assert.True(t, got)

	behind.revoke(7) // caught up: its list is now as new as the kept one
	require.NoError(t, k.Fetch(ctx))
	k.mu.RLock()
	defer k.mu.RUnlock()
	assert.Nil(t, k.newest, "a list as new as the kept one replaces it")
}

// TestKRLURLFollowsRevocations: with a refresh of an hour, a revocation
// still arrives at once, through the long-poll; when long-polls fail, the
// list is polled every refresh instead.
func TestKRLURLFollowsRevocations(t *testing.T) {
	caKey := newCA(t)
	for _, tt := range []struct {
		name    string
		noHold  bool
		refresh time.Duration
	}{
		{name: "followed", refresh: time.Hour},
		{name: "polled when long-polls fail", noHold: true, refresh: 20 * time.Millisecond},
	} {
		t.Run(tt.name, func(t *testing.T) {
			d := newFakeDaemon(t, caKey.PublicKey())
			d.set(func(d *fakeDaemon) { d.noHold = tt.noHold })
			k := NewKRLURL([]string{d.url()}, tt.refresh, time.Hour, nil)
			changed := changes(k)
			cert := signCert(t, caKey, certOpts{serial: 7})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			require.NoError(t, k.Fetch(ctx))
			go k.Run(ctx)
			if !tt.noHold {
				// The long-poll is held before the revocation.
				require.Eventually(t, func() bool {
					d.mu.Lock()
					defer d.mu.Unlock()
					return d.waits > 0
				}, 10*time.Second, 5*time.Millisecond)
			}
			d.revoke(7)
			awaitChange(t, changed)
			got, err := k.Revoked(cert)
			require.NoError(t, err)
			assert.True(t, got)
		})
	}
}

// TestKRLURLsConfig: krl_url and krl_urls both configure the source; each
// must be an http(s) URL, given once, and not both keys at once.
func TestKRLURLsConfig(t *testing.T) {
	for _, tt := range []struct {
		name, revocation string
		want             []string
		wantErr          string
	}{
		{name: "one", revocation: "krl_url: http://a:8080/v1/krl", want: []string{"http://a:8080/v1/krl"}},
		{name: "several", revocation: "krl_urls: [http://a:8080/v1/krl, https://b/v1/krl]", want: []string{"http://a:8080/v1/krl", "https://b/v1/krl"}},
		{name: "none", revocation: "refresh: 5s"},
		{name: "both", revocation: "krl_url: http://a/v1/krl\n  krl_urls: [http://b/v1/krl]", wantErr: "give one of them"},
		{name: "twice", revocation: "krl_urls: [http://a/v1/krl, http://a/v1/krl]", wantErr: "listed twice"},
		{name: "not http", revocation: "krl_urls: [file:///etc/krl]", wantErr: "want http:// or https://"},
		{name: "no host", revocation: "krl_url: http:///v1/krl", wantErr: "want http:// or https://"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "git-server.yaml")
			cfg := "listen: 127.0.0.1:0\nhost_key: k\ntrusted_ca_keys: [ca.pub]\nrepos: r\nrevocation:\n  " + tt.revocation + "\n"
			require.NoError(t, os.WriteFile(path, []byte(cfg), 0o600))
			c, err := LoadServerConfig(path)
			if tt.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, c.Revocation.URLs())
		})
	}
}
