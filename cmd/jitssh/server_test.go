package main

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/jitssh/jitssh/approvals"
	"github.com/jitssh/jitssh/audit"
)

// TestServerReloadOffboards runs the real `jitssh server` binary: a bad
// policy on SIGHUP keeps the running one; a policy without alice cancels
// her pending request and revokes her live certificate.
func TestServerReloadOffboards(t *testing.T) {
	d := startInProcessDaemon(t, "") // only to write a valid config, CA and keys
	cfgPath := filepath.Join(d.dir, "server.yaml")
	good, err := os.ReadFile(cfgPath)
	require.NoError(t, err)
	// A second daemon, as a process, on the same files but its own state.
	dir := t.TempDir()
	for _, f := range []string{"ca", "alice", "alice.pub", "bob", "bob.pub"} {
		require.NoError(t, exec.Command("cp", "-a", filepath.Join(d.dir, f), dir).Run())
	}
	api, httpAddr := freeAddr(t), freeAddr(t)
	cfg := strings.Replace(string(good), "listen: 127.0.0.1:0\nhttp_listen: 127.0.0.1:0", "listen: "+api+"\nhttp_listen: "+httpAddr, 1)
	path := filepath.Join(dir, "server.yaml")
	require.NoError(t, os.WriteFile(path, []byte(cfg), 0o600))

	cmd := exec.Command(jitsshBin, "server", "--config", path)
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	waitFor := func(want string) {
		t.Helper()
		deadline := time.After(15 * time.Second)
		for {
			select {
			case l, ok := <-lines:
				require.True(t, ok, "server exited before logging %q", want)
				if strings.Contains(l, want) {
					return
				}
			case <-deadline:
				t.Fatalf("server did not log %q", want)
			}
		}
	}
	waitFor("approval daemon listening")
	hostPub, err := sshdHostPubFile(filepath.Join(dir, "host_key"))
	require.NoError(t, err)
	_, port, _ := strings.Cut(api, ":")
	known := filepath.Join(dir, "known_hosts")
	require.NoError(t, os.WriteFile(known, []byte("[127.0.0.1]:"+port+" "+hostPub), 0o644))
	proc := &inProcessDaemon{dir: dir, knownHosts: known}
	alice, err := connectAPI(api, filepath.Join(dir, "alice"), known)
	require.NoError(t, err)
	defer alice.Close()
	live := proc.submit(t, alice, "alice", apiRequest{Repo: "demo/app", Ref: "*", Access: "read", TTL: "10m"})
	pending := proc.submit(t, alice, "alice", apiRequest{Repo: "demo/app", Ref: "refs/heads/main", Access: "write", TTL: "10m"})
	require.Equal(t, approvals.StatePending, pending.Request.State)

	require.NoError(t, os.WriteFile(path, []byte("people: [broken"), 0o600))
	require.NoError(t, cmd.Process.Signal(syscall.SIGHUP))
	waitFor("policy reload failed")
	_, err = alice.call(methodWhoami, apiRequest{})
	require.NoError(t, err, "a bad reload changed the running policy")

	// Offboard alice: drop her from people.
	var kept []string
	skip := false
	for _, l := range strings.Split(cfg, "\n") {
		if strings.HasPrefix(l, "  - name: alice") {
			skip = true
			continue
		}
		if skip && strings.HasPrefix(l, "    ") {
			continue
		}
		skip = false
		kept = append(kept, l)
	}
	require.NoError(t, os.WriteFile(path, []byte(strings.Join(kept, "\n")), 0o600))
	require.NoError(t, cmd.Process.Signal(syscall.SIGHUP))
	waitFor("policy reloaded")

	bob, err := connectAPI(api, filepath.Join(dir, "bob"), known)
	require.NoError(t, err)
	defer bob.Close()
	got, err := bob.call(methodGet, apiRequest{ID: pending.Request.ID})
	require.NoError(t, err)
	assert.Equal(t, approvals.StateCancelled, got.Request.State)
	got, err = bob.call(methodGet, apiRequest{ID: live.Request.ID})
	require.NoError(t, err)
	assert.Equal(t, approvals.CertRevoked, got.Request.CertState(time.Now()))
	_, err = connectAPI(api, filepath.Join(dir, "alice"), known)
	require.Error(t, err, "an offboarded key still gets in")
}

// TestReloadCutsRemovedKeys: a reload that removes bob's key ends the
// connections opened with it, and the watch running on one, at once and
// with nothing more to see; an approval on such a connection is refused.
// Alice, whose key stays, keeps her connection.
func TestReloadCutsRemovedKeys(t *testing.T) {
	d := startInProcessDaemon(t, "")
	alice, bob := d.client(t, "alice"), d.client(t, "bob")
	r := d.submit(t, alice, "alice", apiRequest{Repo: "demo/app", Ref: "refs/heads/main", Access: "write", TTL: "10m", Reason: "x"}).Request
	got, err := bob.call(methodGet, apiRequest{ID: r.ID})
	require.NoError(t, err)
	approval := apiRequest{ID: r.ID, Reason: "ok"}
	approval.Signature, err = bob.sign(audit.NamespaceApprove, decisionStatement(methodApprove, "bob", got.Request, approval).Message())
	require.NoError(t, err)

	seen := make(chan string, 10)
	watched := make(chan error, 1)
	go func() {
		watched <- bob.stream(t.Context(), methodWatch, apiRequest{}, func(resp *apiResponse) (bool, error) {
			seen <- resp.Request.ID
			return true, nil
		})
	}()
	require.Equal(t, r.ID, <-seen, "bob's watch is running")

	// bob gets a new key; his old one goes.
	newKey := filepath.Join(t.TempDir(), "bob2")
	require.NoError(t, ensureKey(newKey))
	oldPub, newPub := readFile(t, filepath.Join(d.dir, "bob.pub")), readFile(t, newKey+".pub")
	cfgPath := filepath.Join(d.dir, "server.yaml")
	cfg := readFile(t, cfgPath)
	require.Contains(t, cfg, strings.TrimSpace(oldPub))
	require.NoError(t, os.WriteFile(cfgPath, []byte(strings.Replace(cfg, strings.TrimSpace(oldPub), strings.TrimSpace(newPub), 1)), 0o600))
	require.True(t, d.addrs.Reload())

	select {
	case <-watched:
	case <-time.After(time.Minute):
		t.Fatal("the removed key's watch did not end")
	}
	next := d.submit(t, alice, "alice", apiRequest{Repo: "demo/app", Ref: "refs/heads/main", Access: "write", TTL: "10m", Reason: "y"}).Request
	assert.Empty(t, seen, "the removed key's watch saw more")
	_, err = bob.call(methodApprove, approval)
	require.Error(t, err, "an approval on the removed key's connection")
	after, err := alice.call(methodGet, apiRequest{ID: r.ID})
	require.NoError(t, err, "alice's connection stays")
	assert.Equal(t, approvals.StatePending, after.Request.State)
	assert.Empty(t, after.Request.Approvals)

	// bob's new key works, and sees the new request.
	bob2, err := connectAPI(d.addrs.API.String(), newKey, d.knownHosts)
	require.NoError(t, err)
	defer bob2.Close()
	_, err = bob2.call(methodGet, apiRequest{ID: next.ID})
	require.NoError(t, err)
}
