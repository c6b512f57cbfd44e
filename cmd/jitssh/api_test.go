package main

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/jitssh/jitssh/audit"
)

// rawAPI calls the daemon's API with the real ssh client, as any person
// could, bypassing the jitssh CLI.
func (d *devSession) rawAPI(t *testing.T, method string, body string, sshOpts ...string) (apiResponse, string) {
	t.Helper()
	env := d.envOf(t, "alice")
	host, port, _ := strings.Cut(env["JITSSH_SERVER"], ":")
	args := []string{"-F", "/dev/null", "-o", "UserKnownHostsFile=" + env["JITSSH_KNOWN_HOSTS"], "-o", "StrictHostKeyChecking=yes",
		"-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none", "-p", port}
	args = append(args, sshOpts...)
	args = append(args, host, method)
	cmd := exec.Command("ssh", args...)
	cmd.Stdin = strings.NewReader(body)
	out, _ := cmd.CombinedOutput()
	var resp apiResponse
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, "{") {
			_ = json.Unmarshal([]byte(line), &resp)
		}
	}
	return resp, string(out)
}

// envOf reads the exported variables of DIR/PERSON.env.
func (d *devSession) envOf(t *testing.T, person string) map[string]string {
	t.Helper()
	cmd := exec.Command("sh", "-c", ". "+filepath.Join(d.dir, person+".env")+" && env")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	out, err := cmd.Output()
	require.NoError(t, err)
	env := map[string]string{}
	for _, line := range strings.Split(string(out), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			env[k] = v
		}
	}
	return env
}

// TestAPIIdentityIsTheSigningKey has alice's ssh client offer bob's
// public key first (it holds no private half for it), then sign with her
// own. The daemon accepts the offer, but she must act as alice: her
// approval of her own request is refused as self-approval, and nothing is
// recorded as bob's.
func TestAPIIdentityIsTheSigningKey(t *testing.T) {
	needTool(t, "ssh-agent")
	dir := t.TempDir()
	d := startDev(t, dir)
	alice := newAgent(t)
	id := d.requestID("alice", alice, "--repo", "demo/app", "--ref", "refs/heads/feature/*", "--access", "write", "--ttl", "10m")

	bobPubOnly := filepath.Join(t.TempDir(), "bob")
	pub, err := os.ReadFile(filepath.Join(dir, "keys", "bob.pub"))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(bobPubOnly+".pub", pub, 0o644))
	aliceKey := filepath.Join(dir, "keys", "alice")

	who, out := d.rawAPI(t, methodWhoami, "{}", "-v", "-o", "IdentityFile="+bobPubOnly+".pub", "-o", "IdentityFile="+aliceKey)
	require.True(t, who.OK, out)
	assert.Contains(t, out, "Server accepts key: "+bobPubOnly+".pub", "the client did not offer bob's key first")
	assert.Equal(t, "alice", who.Person)

	resp, out := d.rawAPI(t, methodApprove, `{"id":"`+id+`","reason":"as bob?"}`, "-o", "IdentityFile="+bobPubOnly+".pub", "-o", "IdentityFile="+aliceKey)
	assert.False(t, resp.OK, out)
	got := d.ok("bob", newAgent(t), d.dir, "jitssh", "requests", "show", id, "--json")
	assert.NotContains(t, got, `"by": "bob"`)
	assert.Contains(t, got, `"state": "pending"`)
}

// TestAPIBadInput sends what no jitssh client would: the daemon answers
// each with a clear error and keeps serving.
func TestAPIBadInput(t *testing.T) {
	dir := t.TempDir()
	d := startDev(t, dir)
	aliceKey := filepath.Join(dir, "keys", "alice")
	for _, tt := range []struct {
		name, method, body, want string
	}{
		{"malformed JSON", methodSubmit, "{not json", "malformed request"},
		{"unknown field", methodSubmit, `{"repo":"demo/app","admin":true}`, "malformed request"},
		{"oversized", methodSubmit, `{"reason":"` + strings.Repeat("x", maxAPIBody) + `"}`, "larger than"},
		{"unknown method", "rm -rf /", "{}", "unknown method"},
		{"unsigned request", methodSubmit, `{"repo":"demo/app","ref":"*","access":"read","public_key":"` + strings.TrimSpace(readFile(t, aliceKey+".pub")) + `"}`, "signed"},
		{"bad ref", methodSubmit, `{"repo":"demo/app","ref":"refs/heads/../x","access":"read","dry_run":true}`, ""},
		{"unknown request", methodApprove, `{"id":"req-nope"}`, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			resp, out := d.rawAPI(t, tt.method, tt.body, "-i", aliceKey)
			assert.False(t, resp.OK, out)
			assert.NotEmpty(t, resp.Error, out)
			if tt.want != "" {
				assert.Contains(t, resp.Error, tt.want)
			}
		})
	}
	who, out := d.rawAPI(t, methodWhoami, "{}", "-i", aliceKey)
	require.True(t, who.OK, "the daemon stopped serving: %s", out)
	// A plain key nobody listed gets nothing.
	stranger := filepath.Join(t.TempDir(), "stranger")
	require.NoError(t, exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", stranger).Run())
	resp, _ := d.rawAPI(t, methodWhoami, "{}", "-i", stranger)
	assert.False(t, resp.OK)
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return string(b)
}

// TestAPIHidesOthersRequests: to a plain developer, someone else's request
// or certificate is refused word for word as an unknown one is, whatever
// the command, so the answer tells neither that it exists nor whose it is.
func TestAPIHidesOthersRequests(t *testing.T) {
	d := startInProcessDaemon(t, "")
	bob := d.client(t, "bob")
	issued := d.submit(t, bob, "bob", apiRequest{Repo: "demo/app", Ref: "*", Access: "read", TTL: "10m", Reason: "x"}).Request
	require.NotZero(t, issued.Serial)
	unknown := func(id string) string { // a well-formed ID nobody holds
		last := "0"
		if strings.HasSuffix(id, last) {
			last = "1"
		}
		return id[:len(id)-1] + last
	}
	env := d.env("alice")

	serial := strconv.FormatUint(issued.Serial, 10)
	for _, tt := range []struct {
		name          string
		target, other string // bob's ID or serial, and one nobody holds
		args          []string
	}{
		{"show", issued.ID, unknown(issued.ID), []string{"requests", "show", "TARGET"}},
		{"approve", issued.ID, unknown(issued.ID), []string{"approve", "TARGET"}},
		{"deny", issued.ID, unknown(issued.ID), []string{"deny", "TARGET", "--reason", "x"}},
		{"release", issued.ID, unknown(issued.ID), []string{"release", "TARGET"}},
		{"revoke by ID", issued.ID, unknown(issued.ID), []string{"revoke", "TARGET", "--reason", "x"}},
		{"revoke by ID with a reason the daemon refuses", issued.ID, unknown(issued.ID), []string{"revoke", "TARGET", "--reason", "x\x01y"}},
		{"revoke by serial", serial, serial + "000", []string{"revoke", "--serial", "TARGET", "--reason", "x"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			with := func(target string) []string {
				args := slices.Clone(tt.args)
				args[slices.Index(args, "TARGET")] = target
				return args
			}
			theirs := runJitssh(t, env, with(tt.target)...)
			none := runJitssh(t, env, with(tt.other)...)
			assert.Equal(t, none.code, theirs.code)
			assert.Equal(t, strings.ReplaceAll(none.stderr, tt.other, "TARGET"), strings.ReplaceAll(theirs.stderr, tt.target, "TARGET"))
			assert.Contains(t, theirs.stderr, "not found")
			assert.NotContains(t, theirs.stderr, "bob")
		})
	}

	// The same over the API, for the calls the CLI makes on its own.
	alice := d.client(t, "alice")
	for _, method := range []string{methodApprove, methodDeny, methodCancel, methodRelease, methodRevoke, methodGet, methodWait} {
		t.Run("api "+method, func(t *testing.T) {
			var theirs, none error
			if method == methodWait {
				theirs = alice.stream(t.Context(), method, apiRequest{ID: issued.ID}, func(*apiResponse) (bool, error) { return false, nil })
				none = alice.stream(t.Context(), method, apiRequest{ID: unknown(issued.ID)}, func(*apiResponse) (bool, error) { return false, nil })
			} else {
				_, theirs = alice.call(method, apiRequest{ID: issued.ID, Reason: "x"})
				_, none = alice.call(method, apiRequest{ID: unknown(issued.ID), Reason: "x"})
			}
			require.Error(t, theirs)
			require.Error(t, none)
			assert.Equal(t, strings.ReplaceAll(none.Error(), unknown(issued.ID), "ID"), strings.ReplaceAll(theirs.Error(), issued.ID, "ID"))
		})
	}

	// An approver sees every request and keeps the real reason.
	_, err := d.client(t, "bob").call(methodRelease, apiRequest{ID: d.submit(t, alice, "alice", apiRequest{Repo: "demo/app", Ref: "*", Access: "read", TTL: "10m"}).Request.ID})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "forbidden: only alice")
}

// TestRequestsWatchEachStateOnce: an approval takes several changes on
// the daemon (approved, serial taken, certificate stored); the watch
// shows each state the request passes through once.
func TestRequestsWatchEachStateOnce(t *testing.T) {
	d := startInProcessDaemon(t, "")
	id := d.submit(t, d.client(t, "alice"), "alice", apiRequest{Repo: "demo/app", Ref: "refs/heads/main", Access: "write", TTL: "10m", Reason: "x"}).Request.ID
	cmd := exec.Command(jitsshBin, "requests", "watch")
	cmd.Env = append(os.Environ(), d.env("bob")...)
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	states := make(chan string, 10)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if f := strings.Fields(sc.Text()); len(f) == 5 && f[1] == id {
				states <- f[4]
			}
		}
	}()
	next := func() string {
		select {
		case s := <-states:
			return s
		case <-time.After(10 * time.Second):
			t.Fatal("requests watch printed nothing more within 10s")
			return ""
		}
	}
	require.Equal(t, "pending", next())

	bob := d.client(t, "bob")
	got, err := bob.call(methodGet, apiRequest{ID: id})
	require.NoError(t, err)
	req := apiRequest{ID: id, Reason: "ok"}
	req.Signature, err = bob.sign(audit.NamespaceApprove, decisionStatement(methodApprove, "bob", got.Request, req).Message())
	require.NoError(t, err)
	_, err = bob.call(methodApprove, req)
	require.NoError(t, err)

	var seen []string
	for len(seen) == 0 || seen[len(seen)-1] != "approved/active" {
		seen = append(seen, next())
		require.Less(t, len(seen), 5, "states: %v", seen)
	}
	assert.Equal(t, []string{"approved", "approved/active"}, seen)
}
