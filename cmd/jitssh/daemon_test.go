package main

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"

	"github.com/jitssh/jitssh/approvals"
	"github.com/jitssh/jitssh/audit"
	"github.com/jitssh/jitssh/ca"
	"github.com/jitssh/jitssh/ca/krl"
)

// inProcessDaemon runs runDaemon with people alice (dev) and bob
// (approvers) and a policy that auto-approves reads and needs bob for
// writes.
type inProcessDaemon struct {
	dir        string
	addrs      daemonAddrs
	knownHosts string
	stop       func() // stops the daemon; safe to call more than once
}

func startInProcessDaemon(t testing.TB, extra string) *inProcessDaemon {
	t.Helper()
	return startInProcessDaemonIn(t, t.TempDir(), extra)
}

// startInProcessDaemonIn is startInProcessDaemon in dir, which may hold
// files extra refers to.
func startInProcessDaemonIn(t testing.TB, dir, extra string) *inProcessDaemon {
	t.Helper()
	d := &inProcessDaemon{dir: dir}
	_, err := ca.Init(filepath.Join(d.dir, "ca"), ca.Ed25519)
	require.NoError(t, err)
	var people strings.Builder
	for _, p := range []struct{ name, groups string }{{"alice", "dev"}, {"bob", "dev, approvers"}} {
		key := filepath.Join(d.dir, p.name)
		require.NoError(t, ensureKey(key))
		pub, err := os.ReadFile(key + ".pub")
		require.NoError(t, err)
		fmt.Fprintf(&people, "  - name: %s\n    keys: [%q]\n    groups: [%s]\n", p.name, strings.TrimSpace(string(pub)), p.groups)
	}
	cfg := fmt.Sprintf(`listen: 127.0.0.1:0
http_listen: 127.0.0.1:0
host_key: host_key
data_dir: data
ca_dir: ca
audit_log: audit.log
people:
%srules:
  - name: read
    groups: [dev]
    repos: ["demo/*"]
    refs: ["*"]
    access: [read]
    auto_approve: true
    min_ttl: 5s
    max_ttl: 8h
  - name: write
    groups: [dev]
    repos: ["demo/*"]
    refs: ["refs/heads/*"]
    access: [write]
    approvals: [{group: approvers, count: 1}]
    min_ttl: 5s
    max_ttl: 8h
%s`, people.String(), extra)
	path := filepath.Join(d.dir, "server.yaml")
	require.NoError(t, os.WriteFile(path, []byte(cfg), 0o600))
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan daemonAddrs, 1)
	done := make(chan error, 1)
	go func() { done <- runDaemon(ctx, path, slog.New(slog.NewTextHandler(io.Discard, nil)), ready) }()
	select {
	case d.addrs = <-ready:
	case err := <-done:
		t.Fatalf("daemon did not start: %v", err)
	}
	d.stop = sync.OnceFunc(func() { cancel(); <-done })
	t.Cleanup(d.stop)
	d.knownHosts = filepath.Join(d.dir, "known_hosts")
	line := fmt.Sprintf("[127.0.0.1]:%d %s", d.addrs.API.(*net.TCPAddr).Port, ssh.MarshalAuthorizedKey(d.addrs.HostKey))
	require.NoError(t, os.WriteFile(d.knownHosts, []byte(line), 0o644))
	return d
}

func (d *inProcessDaemon) env(person string) []string {
	return []string{"JITSSH_SERVER=" + d.addrs.API.String(), "JITSSH_IDENTITY=" + filepath.Join(d.dir, person),
		"JITSSH_KNOWN_HOSTS=" + d.knownHosts, "JITSSH_STATE_DIR=" + filepath.Join(d.dir, "state", person)}
}

func (d *inProcessDaemon) client(t testing.TB, person string) *apiClient {
	t.Helper()
	c, err := connectAPI(d.addrs.API.String(), filepath.Join(d.dir, person), d.knownHosts)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}

// submit sends a signed request for a fresh key, as jitssh request does.
func (d *inProcessDaemon) submit(t testing.TB, c *apiClient, person string, req apiRequest) *apiResponse {
	t.Helper()
	resp, err := d.trySubmit(t, c, person, req)
	require.NoError(t, err)
	return resp
}

// trySubmit is submit, for a request the daemon may refuse.
func (d *inProcessDaemon) trySubmit(t testing.TB, c *apiClient, person string, req apiRequest) (*apiResponse, error) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	pub, err := ssh.NewPublicKey(priv.Public())
	require.NoError(t, err)
	req.PublicKey = strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub)))
	req.Signature, err = c.sign(audit.NamespaceRequest, requestStatement(person, req).Message())
	require.NoError(t, err)
	return c.call(methodSubmit, req)
}

func httpGet(t *testing.T, url string) []byte {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, url)
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return b
}

func TestDaemonPublicEndpoints(t *testing.T) {
	d := startInProcessDaemon(t, "")
	base := "http://" + d.addrs.HTTP.String()
	pub := string(httpGet(t, base+"/v1/ca.pub"))
	key, _, _, _, err := ssh.ParseAuthorizedKey([]byte(pub))
	require.NoError(t, err)
	assert.Equal(t, d.addrs.CA.Marshal(), key.Marshal())
	assert.Equal(t, "ok\n", string(httpGet(t, base+"/healthz")))

	alice := d.client(t, "alice")
	resp := d.submit(t, alice, "alice", apiRequest{Repo: "demo/app", Ref: "*", Access: "read", TTL: "10m"})
	require.NotZero(t, resp.Request.Serial)
	_, err = alice.call(methodRelease, apiRequest{ID: resp.Request.ID})
	require.NoError(t, err)

	list, err := krl.Parse(httpGet(t, base+"/v1/krl"))
	require.NoError(t, err)
	cert, err := parseCert(resp.Request.Certificate)
	require.NoError(t, err)
	assert.True(t, list.IsRevoked(cert), "released certificate missing from the KRL")
	var revoked struct {
		Serials []uint64 `json:"serials"`
	}
	require.NoError(t, json.Unmarshal(httpGet(t, base+"/v1/revoked"), &revoked))
	assert.Contains(t, revoked.Serials, resp.Request.Serial)
	metrics := string(httpGet(t, base+"/metrics"))
	assert.Contains(t, metrics, "jitssh_certificates_issued_total 1")
	assert.Contains(t, metrics, `jitssh_requests{state="approved"} 1`)
}

// TestDaemonWebhook: each delivery is signed over a body that names it
// and says when it was sent, with both repeated in headers, so a receiver
// can refuse a replay; a retry is the same delivery.
func TestDaemonWebhook(t *testing.T) {
	const secret = "s3cret"
	type delivery struct {
		body              webhookEvent
		id, stamp, signed string
		raw               string
	}
	var mu sync.Mutex
	var got []delivery
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, _ := io.ReadAll(r.Body)
		mac := hmac.New(sha256.New, []byte(secret))
		mac.Write(raw)
		d := delivery{id: r.Header.Get("X-Jitssh-Delivery"), stamp: r.Header.Get("X-Jitssh-Timestamp"), raw: string(raw)}
		if r.Header.Get("X-Jitssh-Signature") == "sha256="+hex.EncodeToString(mac.Sum(nil)) {
			d.signed = "yes"
		}
		_ = json.Unmarshal(raw, &d.body)
		mu.Lock()
		defer mu.Unlock()
		got = append(got, d)
		if len(got) == 1 {
			http.Error(w, "try again", http.StatusServiceUnavailable)
		}
	}))
	defer hook.Close()
	d := startInProcessDaemon(t, fmt.Sprintf("webhooks:\n  - url: %s\n    secret: %s\n", hook.URL, secret))
	alice := d.client(t, "alice")
	before := time.Now().Add(-time.Second)
	resp := d.submit(t, alice, "alice", apiRequest{Repo: "demo/app", Ref: "refs/heads/main", Access: "write", TTL: "10m", Reason: "fix"})
	var pending []delivery
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		pending = nil
		for _, g := range got {
			if g.body.Request != nil && g.body.Request.ID == resp.Request.ID && g.body.Event == "request.pending" {
				pending = append(pending, g)
			}
		}
		return len(pending) == 2
	}, 10*time.Second, 50*time.Millisecond, "no retried webhook for the pending request")
	first, retry := pending[0], pending[1]
	for _, g := range pending {
		assert.Equal(t, "yes", g.signed, "signature over the body")
		assert.Len(t, g.body.Delivery, 32)
		assert.Equal(t, g.body.Delivery, g.id, "the header repeats the signed delivery ID")
		assert.Equal(t, strconv.FormatInt(g.body.Timestamp.Unix(), 10), g.stamp, "the header repeats the signed timestamp")
		assert.False(t, g.body.Timestamp.Before(before.Truncate(time.Second)), g.body.Timestamp)
	}
	assert.Equal(t, first.raw, retry.raw, "a retry is the same delivery, byte for byte")

	// The next event is a new delivery.
	mu.Lock()
	n := len(got)
	mu.Unlock()
	_, err := alice.call(methodCancel, apiRequest{ID: resp.Request.ID})
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) > n
	}, 10*time.Second, 50*time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	assert.NotEqual(t, first.body.Delivery, got[n].body.Delivery)
}

// TestDaemonMetricLabelsAreBounded: calls to methods that do not exist
// count under one label, whatever their names.
func TestDaemonMetricLabelsAreBounded(t *testing.T) {
	d := startInProcessDaemon(t, "")
	alice := d.client(t, "alice")
	for i := range 30 {
		_, err := alice.call(fmt.Sprintf("bogus-%d", i), apiRequest{})
		require.Error(t, err)
	}
	_, err := alice.call(methodGet, apiRequest{ID: "req-nope"})
	require.Error(t, err)
	metrics := string(httpGet(t, "http://"+d.addrs.HTTP.String()+"/metrics"))
	assert.Contains(t, metrics, `jitssh_api_errors_total{method="other"} 30`)
	assert.Contains(t, metrics, `jitssh_api_errors_total{method="get"} 1`)
	assert.NotContains(t, metrics, "bogus")
	assert.Equal(t, len(apiMethods)+1, strings.Count(metrics, "jitssh_api_errors_total{"), "one series per known method and one for the rest")
}

// TestDaemonMetricsListen: with metrics_listen, /metrics is served there
// and not beside the revocation list.
func TestDaemonMetricsListen(t *testing.T) {
	d := startInProcessDaemon(t, "metrics_listen: 127.0.0.1:0\n")
	require.NotNil(t, d.addrs.Metrics)
	assert.Contains(t, string(httpGet(t, "http://"+d.addrs.Metrics.String()+"/metrics")), "jitssh_requests{")
	assert.Equal(t, "ok\n", string(httpGet(t, "http://"+d.addrs.Metrics.String()+"/healthz")))
	resp, err := http.Get("http://" + d.addrs.HTTP.String() + "/metrics")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusNotFound, resp.StatusCode)
	httpGet(t, "http://"+d.addrs.HTTP.String()+"/v1/krl")

	d2 := startInProcessDaemon(t, "")
	assert.Nil(t, d2.addrs.Metrics)
	assert.Contains(t, string(httpGet(t, "http://"+d2.addrs.HTTP.String()+"/metrics")), "jitssh_requests{", "without metrics_listen, beside the rest")
}

// brokenRevocations is a Service whose state cannot be read.
type brokenRevocations struct{}

func (brokenRevocations) KRL() ([]byte, error) {
	return nil, errors.New("build KRL: read revoked index: /var/lib/jitssh/data")
}

func (brokenRevocations) AllEvents(context.Context) <-chan *approvals.Request { return nil }

func (brokenRevocations) Revoked() ([]uint64, error) {
	return nil, errors.New("read revoked serials: /var/lib/jitssh/data")
}

func (brokenRevocations) Status() approvals.NodeStatus {
	return approvals.NodeStatus{Problems: []string{"state unreadable"}}
}

// TestRevocationListsFailClosed: when the state cannot be read, both
// revocation lists answer 503 rather than an empty list, and say no more;
// /healthz says the node is unhealthy.
func TestRevocationListsFailClosed(t *testing.T) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	authority, err := ca.New(priv)
	require.NoError(t, err)
	var log strings.Builder
	srv := httptest.NewServer(publicHandler(brokenRevocations{}, authority, prometheus.NewRegistry(), true, slog.New(slog.NewJSONHandler(&log, nil))))
	defer srv.Close()
	for _, path := range []string{"/v1/krl", "/v1/revoked"} {
		resp, err := http.Get(srv.URL + path)
		require.NoError(t, err)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, path)
		assert.Equal(t, "revocation list unavailable\n", string(body), path)
	}
	assert.Equal(t, 2, strings.Count(log.String(), "/var/lib/jitssh/data"), "the log has the detail")

	resp, err := http.Get(srv.URL + "/healthz")
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, "/healthz follows the node's status")
	assert.Equal(t, "unhealthy: state unreadable\n", string(body))
}

// BenchmarkAPISubmitAutoApprove is issued certificates per second on the
// auto-approved path, end to end over the SSH API: sign the request, send
// it, the daemon verifies, matches policy, applies durably, signs, audits.
func BenchmarkAPISubmitAutoApprove(b *testing.B) {
	// One person requesting as fast as they can is what the limits stop;
	// here they are out of reach.
	d := startInProcessDaemon(b, "limits: {requests_per_hour: 1000000000, request_burst: 1000000000, max_live_certificates: 1000000000}\n")
	alice := d.client(b, "alice")
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		resp := d.submit(b, alice, "alice", apiRequest{Repo: "demo/app", Ref: "*", Access: "read", TTL: "10m"})
		if resp.Request.Serial == 0 {
			b.Fatal("no certificate")
		}
	}
}

func TestDaemonHostKeyIsVerified(t *testing.T) {
	d := startInProcessDaemon(t, "")
	other := filepath.Join(t.TempDir(), "other")
	require.NoError(t, ensureKey(other))
	otherPub, err := os.ReadFile(other + ".pub")
	require.NoError(t, err)
	wrong := filepath.Join(t.TempDir(), "known_hosts")
	line := fmt.Sprintf("[127.0.0.1]:%d %s", d.addrs.API.(*net.TCPAddr).Port, otherPub)
	require.NoError(t, os.WriteFile(wrong, []byte(line), 0o644))
	_, err = connectAPI(d.addrs.API.String(), filepath.Join(d.dir, "alice"), wrong)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "does not match")

	empty := filepath.Join(t.TempDir(), "empty")
	require.NoError(t, os.WriteFile(empty, nil, 0o644))
	_, err = connectAPI(d.addrs.API.String(), filepath.Join(d.dir, "alice"), empty)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "not in the known_hosts file")
}

// TestRequestsWatch: a watch lists what is pending, then shows each change
// as it happens. The first request is made before the watch starts, so it
// can only come from the listing; the second and the approval only from
// the stream of events.
func TestRequestsWatch(t *testing.T) {
	d := startInProcessDaemon(t, "")
	alice := d.client(t, "alice")
	first := d.submit(t, alice, "alice", apiRequest{Repo: "demo/app", Ref: "refs/heads/main", Access: "write", TTL: "10m", Reason: "first"})
	cmd := exec.Command(jitsshBin, "requests", "watch")
	cmd.Env = append(os.Environ(), d.env("bob")...)
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	lines := make(chan string, 10)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	// expect reads lines until one names id in state, failing after 10s.
	expect := func(id, state, why string) {
		t.Helper()
		deadline := time.After(10 * time.Second)
		for {
			select {
			case l := <-lines:
				if strings.Contains(l, id) && strings.Contains(l, state) {
					return
				}
			case <-deadline:
				t.Fatalf("requests watch did not show %s %s (%s) within 10s", id, state, why)
			}
		}
	}
	// The watch subscribes before it lists, so once the listing is out,
	// every later change reaches it.
	expect(first.Request.ID, "pending", "the listing")
	second := d.submit(t, alice, "alice", apiRequest{Repo: "demo/app", Ref: "refs/heads/feature/x", Access: "write", TTL: "10m", Reason: "second"})
	expect(second.Request.ID, "pending", "a new request")
	deny(t, d, d.client(t, "bob"), second.Request.ID)
	expect(second.Request.ID, "denied", "a decision")
}
