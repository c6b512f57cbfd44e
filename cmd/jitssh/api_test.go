package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"

	"github.com/jitssh/jitssh/approvals"
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
		{"bidi override in a ref", methodSubmit, `{"repo":"demo/app","ref":"refs/heads/\u202egnp.exe","access":"read","dry_run":true}`, "does not print as itself"},
		{"unknown request", methodApprove, `{"id":"req-nope"}`, ""},
		{"duplicate key", methodSubmit, `{"repo":"demo/app","repo":"other/app","ref":"*","access":"read","dry_run":true}`, `field "repo" given twice`},
		{"key in another case", methodSubmit, `{"Repo":"demo/app","ref":"*","access":"read","dry_run":true}`, `unknown field "Repo"`},
		{"trailing data", methodSubmit, `{"repo":"demo/app","ref":"*","access":"read","dry_run":true} {"repo":"x"}`, "data after the JSON object"},
		{"the daemon's host key", methodSubmit, `{"repo":"demo/app","ref":"*","access":"read","dry_run":true,"public_key":"` + hostKeyLine(t, dir) + `"}`, "host key"},
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
	resp, out := d.rawAPI(t, methodWhoami, "{}", "-i", stranger)
	assert.False(t, resp.OK)
	// The refusal names the key, so the person can hand it to an admin.
	pub, err := os.ReadFile(stranger + ".pub")
	require.NoError(t, err)
	strangerKey, _, _, _, err := ssh.ParseAuthorizedKey(pub)
	require.NoError(t, err)
	assert.Contains(t, resp.Error, "the key "+ssh.FingerprintSHA256(strangerKey)+" is not listed for anyone", out)
	assert.Contains(t, resp.Error, "ask its admin to add it", out)
}

// hostKeyLine is the public half of the dev daemon's host key.
func hostKeyLine(t *testing.T, dir string) string {
	t.Helper()
	known := readFile(t, filepath.Join(dir, "known_hosts"))
	f := strings.Fields(known)
	require.GreaterOrEqual(t, len(f), 3, known)
	return f[1] + " " + f[2]
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

// TestDecodeAPIRequest: a body is empty or exactly one JSON object whose
// keys are apiRequest's, spelled exactly, each once.
func TestDecodeAPIRequest(t *testing.T) {
	for _, tt := range []struct {
		name, body string
		want       apiRequest
		err        string
	}{
		{"empty", "", apiRequest{}, ""},
		{"blank", " \n", apiRequest{}, ""},
		{"object", `{"id":"req-1","states":["pending"],"limit":3}` + "\n", apiRequest{ID: "req-1", States: []string{"pending"}, Limit: 3}, ""},
		{"escaped key", `{"\u0069d":"req-1"}`, apiRequest{ID: "req-1"}, ""},
		{"duplicate", `{"id":"a","id":"b"}`, apiRequest{}, `field "id" given twice`},
		{"other case", `{"ID":"a"}`, apiRequest{}, `unknown field "ID"`},
		{"folded case", `{"ſerial":1}`, apiRequest{}, `unknown field "ſerial"`}, // encoding/json folds ſ to s
		{"unknown", `{"admin":true}`, apiRequest{}, `unknown field "admin"`},
		{"trailing object", `{"id":"a"}{"id":"b"}`, apiRequest{}, "data after the JSON object"},
		{"trailing garbage", `{"id":"a"} x`, apiRequest{}, "data after the JSON object"},
		{"array", `[{"id":"a"}]`, apiRequest{}, "want a JSON object"},
		{"string", `"id"`, apiRequest{}, "want a JSON object"},
		{"truncated", `{"id":"a"`, apiRequest{}, "malformed request"},
		{"wrong type", `{"limit":"3"}`, apiRequest{}, "malformed request"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeAPIRequest([]byte(tt.body))
			if tt.err != "" {
				require.Error(t, err)
				assert.ErrorIs(t, err, approvals.ErrBadRequest)
				assert.Contains(t, err.Error(), tt.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

// FuzzDecodeAPIRequest: whatever decodeAPIRequest accepts, a reader that
// keeps every key it finds, exactly spelled, reads the same way.
func FuzzDecodeAPIRequest(f *testing.F) {
	for _, seed := range []string{`{"id":"req-1"}`, `{"repo":"a","ref":"*","access":"read","dry_run":true}`, `{"states":["pending"],"mine":true}`, ``} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := decodeAPIRequest(body)
		if err != nil {
			return
		}
		var raw map[string]json.RawMessage
		if len(strings.TrimSpace(string(body))) == 0 {
			return
		}
		require.NoError(t, json.Unmarshal(body, &raw))
		for key := range raw {
			require.True(t, apiRequestFields[key], "accepted key %q", key)
		}
		again, err := json.Marshal(req)
		require.NoError(t, err)
		back, err := decodeAPIRequest(again)
		require.NoError(t, err)
		assert.Equal(t, req, back)
	})
}

// TestAPIInternalErrorsStayInTheLog: a failure that is not a refusal of
// the call reaches the client as an ID, and the log has the detail under
// that ID; a refusal reaches the client as it is.
func TestAPIInternalErrorsStayInTheLog(t *testing.T) {
	var log strings.Builder
	a := &apiServer{logger: slog.New(slog.NewJSONHandler(&log, nil)), metrics: newDaemonMetrics(prometheus.NewRegistry(), nil, nil)}
	for _, tt := range []struct {
		name    string
		err     error
		code    string
		public  string
		private string
	}{
		{"storage", fmt.Errorf("list requests: open /var/lib/jitssh/data/raft.db: %w", os.ErrPermission), "internal", "internal error (id ", "/var/lib/jitssh/data/raft.db"},
		{"not issued", fmt.Errorf("%w: req-1 is approved, but its certificate is not issued yet (retrying): raft: leadership lost", approvals.ErrIssue),
			"not_issued", "its certificate is not issued yet", "leadership lost"},
		{"audit log unavailable", fmt.Errorf("approve: %w: the change is applied and will be recorded when the log takes writes again: write /var/log/jitssh/audit.log: %w", approvals.ErrAudit, os.ErrPermission),
			"audit_unavailable", "audit log unavailable: your change is held", "/var/log/jitssh/audit.log"},
		{"policy differs from the cluster's", fmt.Errorf("approve: %w (the cluster runs sha256:0123456789ab, this node decided under sha256:ba9876543210)", approvals.ErrPolicyChanged),
			"policy_changed", "this node's policy differs from the cluster's", "sha256:0123456789ab"},
		{"no leader", fmt.Errorf("submit: %w: dial 10.0.0.3:2201: connection refused", approvals.ErrNoLeader),
			"no_leader", "the cluster has no leader this node can reach", "10.0.0.3:2201"},
		{"peer not a node", fmt.Errorf("submit: call 10.0.0.3:2201: %w: certificate names node %q", approvals.ErrNotNode, "mallory"),
			"not_node", "this node cannot reach the cluster's leader", "mallory"},
		{"refusal", fmt.Errorf("%w: no request %q", approvals.ErrNotFound, "req-1"), "not_found", `not found: no request "req-1"`, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			log.Reset()
			var out strings.Builder
			a.refuse(json.NewEncoder(&out), "alice", methodList, tt.err)
			var resp apiResponse
			require.NoError(t, json.Unmarshal([]byte(out.String()), &resp))
			assert.Equal(t, tt.code, resp.Code)
			assert.Contains(t, resp.Error, tt.public)
			if tt.private == "" {
				assert.Equal(t, tt.err.Error(), resp.Error)
				assert.Contains(t, log.String(), `"level":"INFO"`)
				return
			}
			assert.NotContains(t, resp.Error, tt.private)
			_, id, ok := strings.Cut(resp.Error, "(id ")
			require.True(t, ok, resp.Error)
			id = strings.TrimSuffix(id, ")")
			var entry map[string]any
			require.NoError(t, json.Unmarshal([]byte(log.String()), &entry))
			assert.Equal(t, "ERROR", entry["level"])
			assert.Equal(t, id, entry["id"])
			assert.Contains(t, entry["err"], tt.private)
		})
	}
}
