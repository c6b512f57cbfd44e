package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/jitssh/jitssh/ca"
	"github.com/jitssh/jitssh/ca/krl"
	"github.com/jitssh/jitssh/sshd"
)

// TestRevocationReachesGitServerAtOnce runs the daemon and the git-server
// binary with a refresh of an hour, the first of its krl_urls dead: a
// revocation still reaches it at once, through the long-poll on the
// second, and a push is refused both over a connection opened before the
// revocation and over a new one.
func TestRevocationReachesGitServerAtOnce(t *testing.T) {
	needTool(t, "ssh")
	d := startInProcessDaemon(t, "")
	krlURL := "http://" + d.addrs.HTTP.String() + "/v1/krl"
	g := launchGitServer(t, []string{filepath.Join(d.dir, "ca", ca.PublicKeyFile)}, &gitServerProc{
		revocation: fmt.Sprintf("  krl_urls: [http://%s/v1/krl, %s]\n  refresh: 1h\n  max_stale: 2h\n", deadAddr(t), krlURL),
	})

	// alice's write grant on main, as files.
	key := filepath.Join(t.TempDir(), "key")
	id := noWait(t, d.env("alice"), "--repo", "demo/app", "--branch", "main", "--access", "write", "--ttl", "10m", "--reason", "x", "--out", key)
	r := runJitssh(t, d.env("bob"), "approve", id, "--reason", "ok")
	require.Equal(t, 0, r.code, r.stderr)
	r = runJitssh(t, d.env("alice"), "request", "wait", id, "--out", key)
	require.Equal(t, 0, r.code, r.stderr)

	// A connection opened before the revocation, kept by an OpenSSH
	// ControlMaster, and a clone over it.
	sockDir, err := os.MkdirTemp("", "mux") // short: a socket path has a length limit
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	host, port, _ := net.SplitHostPort(g.addr)
	sshArgs := fmt.Sprintf("ssh -F /dev/null -o UserKnownHostsFile=%s -o StrictHostKeyChecking=yes -o BatchMode=yes -o IdentitiesOnly=yes -o IdentityAgent=none -i %s -o CertificateFile=%s-cert.pub -o ControlPath=%s",
		g.knownHosts, key, key, filepath.Join(sockDir, "ctl"))
	master := exec.Command("sh", "-c", sshArgs+" -o ControlMaster=yes -o ControlPersist=yes -f -N -p "+port+" git@"+host)
	out, err := master.CombinedOutput()
	require.NoError(t, err, "%s", out)
	t.Cleanup(func() { exec.Command("sh", "-c", sshArgs+" -O exit -p "+port+" git@"+host).Run() })
	muxed := []string{"GIT_SSH_COMMAND=" + sshArgs + " -o ControlMaster=no"}
	fresh := []string{"GIT_SSH_COMMAND=" + sshArgs + " -o ControlMaster=no -o ControlPath=none"}
	work := t.TempDir()
	url := fmt.Sprintf("ssh://git@%s/demo/app", g.addr)
	got, err := gitRun(work, muxed, "clone", "-q", url, "app")
	require.NoError(t, err, got)
	app := filepath.Join(work, "app")
	mustGit(t, app, "commit", "-q", "--allow-empty", "-m", "before")
	got, err = gitRun(app, muxed, "push", "-q", "origin", "main")
	require.NoError(t, err, got)

	r = runJitssh(t, d.env("bob"), "revoke", id, "--reason", "done")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, "revoked\nin force: within about a second on git servers following the daemon's KRL")
	// The generation the revocation made reaches the git-server now, an
	// hour before its next poll would.
	g.waitLog(t, `"msg":"revocation list updated","url":"`+krlURL+`","generation":1`)

	mustGit(t, app, "commit", "-q", "--allow-empty", "-m", "after")
	for _, tt := range []struct {
		name string
		env  []string
	}{{"the connection opened before", muxed}, {"a new connection", fresh}} {
		got, err = gitRun(app, tt.env, "push", "origin", "main")
		assert.Error(t, err, "%s: %s", tt.name, got)
	}
}

// TestKRLLongPoll: /v1/krl?wait=G answers at once when the daemon's
// generation is not G, holds until a revocation otherwise, and answers
// with the same list when its timeout passes; a plain GET is answered at
// once; bad parameters are refused.
func TestKRLLongPoll(t *testing.T) {
	d := startInProcessDaemon(t, "")
	base := "http://" + d.addrs.HTTP.String() + "/v1/krl"
	get := func(query string) (*http.Response, uint64) {
		t.Helper()
		resp, err := http.Get(base + query)
		require.NoError(t, err)
		data, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.NoError(t, err)
		if resp.StatusCode != http.StatusOK {
			return resp, 0
		}
		k, err := krl.Parse(data)
		require.NoError(t, err)
		gen, err := strconv.ParseUint(resp.Header.Get(sshd.KRLGenerationHeader), 10, 64)
		require.NoError(t, err)
		assert.Equal(t, k.Version, gen, "the header is the list's version")
		return resp, gen
	}

	_, gen := get("")
	assert.Zero(t, gen)
	_, gen = get("?wait=5")
	assert.Zero(t, gen, "another generation than the caller's: at once")
	_, gen = get("?wait=0&timeout=10ms")
	assert.Zero(t, gen, "nothing revoked within the timeout: the same list")
	for _, q := range []string{"?wait=x", "?wait=-1", "?wait=0&timeout=soon", "?wait=0&timeout=-1s"} {
		resp, _ := get(q)
		assert.Equal(t, http.StatusBadRequest, resp.StatusCode, q)
	}

	// A held long-poll answers with the revocation that ends it, not with
	// a change that revokes nothing.
	alice, bob := d.client(t, "alice"), d.client(t, "bob")
	sub := d.submit(t, alice, "alice", apiRequest{Repo: "demo/app", Ref: "*", Access: "read", TTL: "10m", Reason: "r"})
	held := make(chan uint64, 1)
	go func() {
		_, gen := get("?wait=0&timeout=1m")
		held <- gen
	}()
	require.Eventually(t, func() bool {
		return strings.Contains(string(httpGet(t, "http://"+d.addrs.HTTP.String()+"/metrics")), "jitssh_krl_followers 1")
	}, 10*time.Second, 10*time.Millisecond, "the long-poll is held")
	d.submit(t, alice, "alice", apiRequest{Repo: "demo/app", Ref: "*", Access: "read", TTL: "10m", Reason: "r2"})
	_, err := bob.call(methodRevoke, apiRequest{ID: sub.Request.ID, Reason: "done"})
	require.NoError(t, err)
	select {
	case gen := <-held:
		assert.Equal(t, uint64(1), gen)
	case <-time.After(10 * time.Second):
		t.Fatal("the long-poll was not answered after a revocation")
	}
}

// BenchmarkRevocationReachesFollower measures a revocation from the call
// to the daemon until a Git server's KRL follower has applied it (ns/op),
// and the part of that after the daemon acknowledged the revocation
// (ms-after-ack).
func BenchmarkRevocationReachesFollower(b *testing.B) {
	d := startInProcessDaemon(b, "limits: {requests_per_hour: 1000000, request_burst: 1000000, max_live_certificates: 1000000}\n")
	k := sshd.NewKRLURL([]string{"http://" + d.addrs.HTTP.String() + "/v1/krl"}, time.Hour, time.Hour, nil)
	changed := make(chan struct{}, 1)
	k.OnChange(func() { changed <- struct{}{} })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	require.NoError(b, k.Fetch(ctx))
	go k.Run(ctx)
	alice, bob := d.client(b, "alice"), d.client(b, "bob")
	var afterAck time.Duration
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		sub := d.submit(b, alice, "alice", apiRequest{Repo: "demo/app", Ref: "*", Access: "read", TTL: "10m", Reason: "r"})
		b.StartTimer()
		_, err := bob.call(methodRevoke, apiRequest{ID: sub.Request.ID, Reason: "done"})
		acked := time.Now()
		require.NoError(b, err)
		<-changed
		afterAck += time.Since(acked)
	}
	b.ReportMetric(float64(afterAck.Microseconds())/1000/float64(b.N), "ms-after-ack")
}
