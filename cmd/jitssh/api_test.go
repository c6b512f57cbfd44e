package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
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
