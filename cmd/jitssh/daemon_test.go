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
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"

	"github.com/jitssh/jitssh/audit"
	"github.com/jitssh/jitssh/ca"
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
	d := &inProcessDaemon{dir: t.TempDir()}
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
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	pub, err := ssh.NewPublicKey(priv.Public())
	require.NoError(t, err)
	req.PublicKey = strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub)))
	req.Signature, err = c.sign(audit.NamespaceRequest, requestStatement(person, req).Message())
	require.NoError(t, err)
	resp, err := c.call(methodSubmit, req)
	require.NoError(t, err)
	return resp
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

	krl, err := ca.ParseKRL(httpGet(t, base+"/v1/krl"))
	require.NoError(t, err)
	cert, err := parseCert(resp.Request.Certificate)
	require.NoError(t, err)
	assert.True(t, krl.IsRevoked(cert), "released certificate missing from the KRL")
	var revoked struct {
		Serials []uint64 `json:"serials"`
	}
	require.NoError(t, json.Unmarshal(httpGet(t, base+"/v1/revoked"), &revoked))
	assert.Contains(t, revoked.Serials, resp.Request.Serial)
	metrics := string(httpGet(t, base+"/metrics"))
	assert.Contains(t, metrics, "jitssh_certificates_issued_total 1")
	assert.Contains(t, metrics, `jitssh_requests{state="approved"} 1`)
}

func TestDaemonWebhook(t *testing.T) {
	const secret = "s3cret"
	var mu sync.Mutex
	var bodies []string
	attempts := 0
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		attempts++
		if attempts == 1 {
			http.Error(w, "try again", http.StatusServiceUnavailable)
			return
		}
		mac := hmac.New(sha256.New, []byte(secret))
		mac.Write(body)
		if r.Header.Get("X-Jitssh-Signature") != "sha256="+hex.EncodeToString(mac.Sum(nil)) {
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		bodies = append(bodies, string(body))
	}))
	defer hook.Close()
	d := startInProcessDaemon(t, fmt.Sprintf("webhooks:\n  - url: %s\n    secret: %s\n", hook.URL, secret))
	alice := d.client(t, "alice")
	resp := d.submit(t, alice, "alice", apiRequest{Repo: "demo/app", Ref: "refs/heads/main", Access: "write", TTL: "10m", Reason: "fix"})
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, b := range bodies {
			if strings.Contains(b, resp.Request.ID) && strings.Contains(b, `"event":"request.pending"`) {
				return true
			}
		}
		return false
	}, 10*time.Second, 50*time.Millisecond, "no signed webhook for the pending request after a retry")
}

// BenchmarkAPISubmitAutoApprove is issued certificates per second on the
// auto-approved path, end to end over the SSH API: sign the request, send
// it, the daemon verifies, matches policy, applies durably, signs, audits.
func BenchmarkAPISubmitAutoApprove(b *testing.B) {
	d := startInProcessDaemon(b, "")
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

func TestRequestsWatch(t *testing.T) {
	d := startInProcessDaemon(t, "")
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
	time.Sleep(300 * time.Millisecond) // let the watch subscribe
	resp := d.submit(t, d.client(t, "alice"), "alice", apiRequest{Repo: "demo/app", Ref: "refs/heads/main", Access: "write", TTL: "10m", Reason: "x"})
	deadline := time.After(5 * time.Second)
	for {
		select {
		case l := <-lines:
			if strings.Contains(l, resp.Request.ID) && strings.Contains(l, "pending") {
				return
			}
		case <-deadline:
			t.Fatal("requests watch did not show the new request within 5s")
		}
	}
}
