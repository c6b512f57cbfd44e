package main

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"

	"github.com/jitssh/jitssh/ca"
	"github.com/jitssh/jitssh/ca/krl"
	"github.com/jitssh/jitssh/principals"
	"github.com/jitssh/jitssh/sshd/opensshtest"
)

// jitsshBin is the jitssh binary built once by TestMain, so that tests see
// exactly what a user sees: stdout, stderr and the exit code.
var jitsshBin string

func TestMain(m *testing.M) {
	os.Exit(buildJitsshAndRun(m))
}

func buildJitsshAndRun(m *testing.M) int {
	dir, err := os.MkdirTemp("", "jitssh-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	jitsshBin = filepath.Join(dir, "jitssh")
	// The audit commands keep their indexes in the user's cache: the
	// tests' go in a cache of their own, removed after. It stays beside
	// the real one, whose directories sshd accepts (see opensshtest).
	if base, err := os.UserCacheDir(); err == nil {
		if cache, err := os.MkdirTemp(base, "jitssh-test-cache-"); err == nil && os.Chmod(cache, 0o755) == nil {
			defer os.RemoveAll(cache)
			os.Setenv("XDG_CACHE_HOME", cache)
		}
	}
	build := exec.Command("go", "build", "-o", jitsshBin, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build jitssh:", err)
		return 1
	}
	return m.Run()
}

// cliResult is what one run of the binary produced.
type cliResult struct {
	code           int
	stdout, stderr string
}

// jitssh runs the binary with args and extra environment variables. The
// JITSSH_* variables of the caller's environment are dropped so that only
// the test decides them.
func runJitssh(t *testing.T, env []string, args ...string) cliResult {
	t.Helper()
	cmd := exec.Command(jitsshBin, args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "JITSSH_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("run jitssh %q: %v", args, err)
	}
	return cliResult{code: cmd.ProcessState.ExitCode(), stdout: stdout.String(), stderr: stderr.String()}
}

// assertJSONError checks the shape of a failure under --json or JITSSH_JSON:
// one JSON object on stderr, its exit field the real one. Stdout is the
// caller's to check: some commands answer there even when they fail.
func assertJSONError(t *testing.T, r cliResult) jsonError {
	t.Helper()
	require.Equal(t, 1, strings.Count(r.stderr, "\n"), "one line: %q", r.stderr)
	var e jsonError
	require.NoError(t, json.Unmarshal([]byte(r.stderr), &e), r.stderr)
	assert.Equal(t, r.code, e.Exit)
	return e
}

// assertOneLineError checks the shape every failure must have.
func assertOneLineError(t *testing.T, r cliResult, wantCode int, wantMsg string) {
	t.Helper()
	assert.Equal(t, wantCode, r.code, "exit code; stderr: %s", r.stderr)
	assert.Empty(t, r.stdout, "stdout on failure")
	assert.True(t, strings.HasPrefix(r.stderr, "jitssh: "), "stderr %q", r.stderr)
	assert.Equal(t, 1, strings.Count(r.stderr, "\n"), "one line on stderr: %q", r.stderr)
	assert.True(t, strings.HasSuffix(r.stderr, "\n"), "stderr %q", r.stderr)
	assert.Contains(t, r.stderr, wantMsg)
}

// caWorkspace is a directory holding a CA that has already issued one
// break-glass serial, and the files the sign tests point at.
type caWorkspace struct {
	root, ca, userPub, certPub string
}

// caTestKey is one CA for the whole test binary, copied into each caWorkspace.
var caTestKey = struct {
	key, pub []byte
}{}

func newCAWorkspace(t *testing.T) caWorkspace {
	t.Helper()
	root := t.TempDir()
	w := caWorkspace{
		root:    root,
		ca:      filepath.Join(root, "ca"),
		userPub: filepath.Join(root, "id_ed25519.pub"),
		certPub: filepath.Join(root, "other-cert.pub"),
	}
	if caTestKey.key == nil {
		dir := filepath.Join(t.TempDir(), "ca")
		_, err := ca.Init(dir, ca.Ed25519)
		require.NoError(t, err)
		caTestKey.key, err = os.ReadFile(filepath.Join(dir, ca.PrivateKeyFile))
		require.NoError(t, err)
		caTestKey.pub, err = os.ReadFile(filepath.Join(dir, ca.PublicKeyFile))
		require.NoError(t, err)
	}
	require.NoError(t, os.Mkdir(w.ca, 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(w.ca, ca.PrivateKeyFile), caTestKey.key, 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(w.ca, ca.PublicKeyFile), caTestKey.pub, 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(w.ca, "serial"), []byte("1\n"), 0o600))
	require.NoError(t, os.WriteFile(w.userPub, ssh.MarshalAuthorizedKey(newCAUserKey(t)), 0o644))

	// A certificate line, to be refused where a plain key is wanted.
	a, err := ca.Load(w.ca)
	require.NoError(t, err)
	cert, err := a.Sign(ca.CertRequest{
		PublicKey: newCAUserKey(t), KeyID: "bob/1", TTL: time.Hour,
		Grants: []principals.Grant{caGrant(t, "git:read:demo/app:*")},
	}, caFixedSerial(7))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(w.certPub, ssh.MarshalAuthorizedKey(cert), 0o644))
	return w
}

func caGrant(t *testing.T, s string) principals.Grant {
	t.Helper()
	g, err := principals.Parse(s)
	require.NoError(t, err)
	return g
}

func newCAUserKey(t *testing.T) ssh.PublicKey {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	k, err := ssh.NewPublicKey(pub)
	require.NoError(t, err)
	return k
}

type caFixedSerial uint64

func (f caFixedSerial) NextSerial() (uint64, error) { return uint64(f), nil }

// snapshot records every file under dir with its mode and content, to show
// that a failed command wrote nothing.
func caSnapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	files := map[string]string{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		entry := info.Mode().String()
		if d.Type().IsRegular() {
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			entry += " " + string(data)
		}
		files[path] = entry
		return nil
	})
	require.NoError(t, err)
	return files
}

func TestCASignFailures(t *testing.T) {
	grant := "git:read:demo/app:refs/heads/main"
	tests := []struct {
		name     string
		args     func(w caWorkspace) []string
		env      func(w caWorkspace) []string
		prepare  func(t *testing.T, w caWorkspace)
		wantCode int
		wantMsg  string
	}{
		{name: "missing --dir", args: func(w caWorkspace) []string {
			return []string{"--pubkey", w.userPub, "--grant", grant, "--ttl", "1h", "--key-id", "a/1"}
		}, wantCode: 2, wantMsg: "missing --dir"},
		{name: "missing --pubkey", args: func(w caWorkspace) []string {
			return []string{"--dir", w.ca, "--grant", grant, "--ttl", "1h", "--key-id", "a/1"}
		}, wantCode: 2, wantMsg: "missing --pubkey"},
		{name: "missing --grant", args: func(w caWorkspace) []string {
			return []string{"--dir", w.ca, "--pubkey", w.userPub, "--ttl", "1h", "--key-id", "a/1"}
		}, wantCode: 2, wantMsg: "missing --grant"},
		{name: "missing --ttl", args: func(w caWorkspace) []string {
			return []string{"--dir", w.ca, "--pubkey", w.userPub, "--grant", grant, "--key-id", "a/1"}
		}, wantCode: 2, wantMsg: "missing --ttl"},
		{name: "missing --key-id", args: func(w caWorkspace) []string {
			return []string{"--dir", w.ca, "--pubkey", w.userPub, "--grant", grant, "--ttl", "1h"}
		}, wantCode: 2, wantMsg: "missing --key-id"},
		{name: "unparsable TTL", args: caSignArgs("--ttl", "soon"), wantCode: 2, wantMsg: `--ttl "soon"`},
		{name: "zero TTL", args: caSignArgs("--ttl", "0"), wantCode: 2, wantMsg: `--ttl "0"`},
		{name: "negative TTL", args: caSignArgs("--ttl", "-1h"), wantCode: 2, wantMsg: `--ttl "-1h"`},
		{name: "TTL under a second", args: caSignArgs("--ttl", "500ms"), wantCode: 2, wantMsg: "bad TTL"},
		{name: "TTL over the cap", args: caSignArgs("--ttl", "10000h"), wantCode: 2, wantMsg: "bad TTL"},
		{name: "malformed grant", args: caSignArgs("--grant", "git:read:demo/app.git:*"), wantCode: 2, wantMsg: "--grant"},
		{name: "bare user name as grant", args: caSignArgs("--grant", "alice"), wantCode: 2, wantMsg: "--grant"},
		{name: "one bad grant among good", args: caSignArgs("--grant", grant, "--grant", "git:push:demo/app:*"), wantCode: 2, wantMsg: "invalid access"},
		{name: "key ID with space", args: caSignArgs("--key-id", "alice bob"), wantCode: 2, wantMsg: "bad key ID"},
		{name: "key ID with newline", args: caSignArgs("--key-id", "alice\nroot"), wantCode: 2, wantMsg: "bad key ID"},
		{name: "bad source address", args: caSignArgs("--source-address", "10.0.0.1/8"), wantCode: 2, wantMsg: "bad source address"},
		{name: "unknown flag", args: caSignArgs("--bogus"), wantCode: 2, wantMsg: "bogus"},
		{name: "extra argument", args: caSignArgs("extra"), wantCode: 2, wantMsg: `unexpected argument "extra"`},
		{name: "bad TTL from env", args: func(w caWorkspace) []string {
			return []string{"--dir", w.ca, "--pubkey", w.userPub, "--grant", grant, "--key-id", "a/1"}
		}, env: func(caWorkspace) []string { return []string{"JITSSH_CA_SIGN_TTL=forever"} }, wantCode: 2, wantMsg: `--ttl "forever"`},
		{name: "unreadable pubkey", args: func(w caWorkspace) []string {
			return caWithFlag(caSignArgs()(w), "--pubkey", filepath.Join(w.root, "missing.pub"))
		}, wantCode: 1, wantMsg: "missing.pub"},
		{name: "pubkey not a key", args: caSignArgs(), prepare: func(t *testing.T, w caWorkspace) {
			require.NoError(t, os.WriteFile(w.userPub, []byte("hello\n"), 0o644))
		}, wantCode: 1, wantMsg: "read public key"},
		{name: "pubkey is a certificate", args: func(w caWorkspace) []string {
			return caWithFlag(caSignArgs()(w), "--pubkey", w.certPub)
		}, wantCode: 1, wantMsg: "public key not accepted"},
		{name: "pubkey is the CA key", args: func(w caWorkspace) []string {
			return caWithFlag(caSignArgs()(w), "--pubkey", filepath.Join(w.ca, ca.PublicKeyFile))
		}, wantCode: 1, wantMsg: "it is the CA key"},
		{name: "CA dir missing", args: func(w caWorkspace) []string {
			return caWithFlag(caSignArgs()(w), "--dir", filepath.Join(w.root, "nowhere"))
		}, wantCode: 1, wantMsg: "load CA key"},
		{name: "CA key readable by group", args: caSignArgs(), prepare: func(t *testing.T, w caWorkspace) {
			require.NoError(t, os.Chmod(filepath.Join(w.ca, ca.PrivateKeyFile), 0o640))
		}, wantCode: 1, wantMsg: "0640"},
		{name: "CA key readable by others", args: caSignArgs(), prepare: func(t *testing.T, w caWorkspace) {
			require.NoError(t, os.Chmod(filepath.Join(w.ca, ca.PrivateKeyFile), 0o604))
		}, wantCode: 1, wantMsg: "0604"},
		{name: "damaged serial file", args: caSignArgs(), prepare: func(t *testing.T, w caWorkspace) {
			require.NoError(t, os.WriteFile(filepath.Join(w.ca, "serial"), []byte("x\n"), 0o600))
		}, wantCode: 1, wantMsg: "serial file"},
		{name: "--out in a missing directory", args: func(w caWorkspace) []string {
			return append(caSignArgs()(w), "--out", filepath.Join(w.root, "no", "cert.pub"))
		}, wantCode: 1, wantMsg: "cert.pub"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newCAWorkspace(t)
			if tt.prepare != nil {
				tt.prepare(t, w)
			}
			var env []string
			if tt.env != nil {
				env = tt.env(w)
			}
			before := caSnapshot(t, w.root)
			r := runJitssh(t, env, append([]string{"ca", "sign"}, tt.args(w)...)...)
			assertOneLineError(t, r, tt.wantCode, tt.wantMsg)
			assert.Equal(t, before, caSnapshot(t, w.root), "nothing written, serial file untouched")
		})
	}
}

// caSignArgs returns a good `ca sign` command line with extra appended.
func caSignArgs(extra ...string) func(w caWorkspace) []string {
	return func(w caWorkspace) []string {
		return append([]string{
			"--dir", w.ca, "--pubkey", w.userPub,
			"--grant", "git:read:demo/app:refs/heads/main",
			"--ttl", "1h", "--key-id", "alice/bg-1",
		}, extra...)
	}
}

// caWithFlag replaces the value of flag in args.
func caWithFlag(args []string, flag, value string) []string {
	i := slices.Index(args, flag)
	out := slices.Clone(args)
	out[i+1] = value
	return out
}

func TestCASign(t *testing.T) {
	keygen := needTool(t, "ssh-keygen")
	tests := []struct {
		name       string
		args       func(w caWorkspace) []string
		env        func(w caWorkspace) []string
		out        string // --out file name, relative to the caWorkspace
		json       bool
		keyID      string
		principals []string
		ttl        time.Duration
		source     string
	}{
		{
			name: "stdout", args: caSignArgs(),
			keyID: "alice/bg-1", principals: []string{"git:read:demo/app:refs/heads/main"}, ttl: time.Hour,
		},
		{
			name: "out file", args: func(w caWorkspace) []string {
				return append(caSignArgs()(w), "--out", filepath.Join(w.root, "id_ed25519-cert.pub"))
			},
			out:   "id_ed25519-cert.pub",
			keyID: "alice/bg-1", principals: []string{"git:read:demo/app:refs/heads/main"}, ttl: time.Hour,
		},
		{
			name: "several grants and a source address", args: func(w caWorkspace) []string {
				return []string{
					"--dir", w.ca, "--pubkey", w.userPub, "--key-id", "carol/incident-42", "--ttl", "90m",
					"--grant", "git:force:demo/app:refs/heads/main",
					"--grant", "git:read:infra/tools:*",
					"--grant", "git:force:demo/app:refs/heads/main",
					"--source-address", "127.0.0.1,10.0.0.0/8",
				}
			},
			keyID:      "carol/incident-42",
			principals: []string{"git:force:demo/app:refs/heads/main", "git:read:infra/tools:*"},
			ttl:        90 * time.Minute, source: "127.0.0.1,10.0.0.0/8",
		},
		{
			name: "everything from the environment",
			args: func(caWorkspace) []string { return nil },
			env: func(w caWorkspace) []string {
				return []string{
					"JITSSH_CA_DIR=" + w.ca, "JITSSH_CA_SIGN_PUBKEY=" + w.userPub,
					"JITSSH_CA_SIGN_GRANT=git:write:demo/app:refs/heads/feature/*,git:read:demo/app:refs/heads/main",
					"JITSSH_CA_SIGN_TTL=5m", "JITSSH_CA_SIGN_KEY_ID=dave/bg-7",
					"JITSSH_CA_SIGN_OUT=" + filepath.Join(w.root, "env-cert.pub"),
				}
			},
			out:        "env-cert.pub",
			keyID:      "dave/bg-7",
			principals: []string{"git:write:demo/app:refs/heads/feature/*", "git:read:demo/app:refs/heads/main"},
			ttl:        5 * time.Minute,
		},
		{
			name: "json", args: caSignArgs("--json"), json: true,
			keyID: "alice/bg-1", principals: []string{"git:read:demo/app:refs/heads/main"}, ttl: time.Hour,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newCAWorkspace(t)
			var env []string
			if tt.env != nil {
				env = tt.env(w)
			}
			start := time.Now().Unix()
			r := runJitssh(t, env, append([]string{"ca", "sign"}, tt.args(w)...)...)
			end := time.Now().Unix()
			require.Equal(t, 0, r.code, "stderr: %s", r.stderr)

			var line string
			switch {
			case tt.json:
				var got struct {
					Certificate string   `json:"certificate"`
					Serial      uint64   `json:"serial"`
					KeyID       string   `json:"key_id"`
					Principals  []string `json:"principals"`
				}
				require.NoError(t, json.Unmarshal([]byte(r.stdout), &got), r.stdout)
				assert.Equal(t, ca.BreakGlassBit|2, got.Serial)
				assert.Equal(t, tt.keyID, got.KeyID)
				assert.Equal(t, tt.principals, got.Principals)
				line = got.Certificate + "\n"
			case tt.out != "":
				assert.Empty(t, r.stdout)
				path := filepath.Join(w.root, tt.out)
				data, err := os.ReadFile(path)
				require.NoError(t, err)
				fi, err := os.Stat(path)
				require.NoError(t, err)
				assert.Equal(t, fs.FileMode(0o644), fi.Mode().Perm())
				line = string(data)
				entries, err := os.ReadDir(w.root)
				require.NoError(t, err)
				for _, e := range entries {
					assert.False(t, strings.Contains(e.Name(), ".tmp-"), "temporary file %s left", e.Name())
				}
			default:
				line = r.stdout
			}
			assert.Regexp(t, `^ssh-ed25519-cert-v01@openssh\.com AAAA[A-Za-z0-9+/=]+ `+regexp.QuoteMeta(tt.keyID)+"\n$", line)

			key, comment, _, _, err := ssh.ParseAuthorizedKey([]byte(line))
			require.NoError(t, err)
			assert.Equal(t, tt.keyID, comment)
			cert := key.(*ssh.Certificate)
			assert.Equal(t, ca.BreakGlassBit|2, cert.Serial, "serial 1 was taken already")
			assert.Equal(t, uint64(tt.ttl/time.Second)+60, cert.ValidBefore-cert.ValidAfter, "window is skew + TTL")
			assert.GreaterOrEqual(t, int64(cert.ValidAfter), start-60)
			assert.LessOrEqual(t, int64(cert.ValidAfter), end-60)
			serial, err := os.ReadFile(filepath.Join(w.ca, "serial"))
			require.NoError(t, err)
			assert.Equal(t, "2\n", string(serial))

			// The audit record: one JSON line on stderr.
			assert.Equal(t, 1, strings.Count(r.stderr, "\n"), "stderr: %s", r.stderr)
			var rec map[string]any
			dec := json.NewDecoder(strings.NewReader(r.stderr))
			dec.UseNumber() // serials above 2^53 do not survive float64
			require.NoError(t, dec.Decode(&rec), r.stderr)
			assert.Equal(t, "break-glass certificate signed", rec["msg"])
			assert.Equal(t, json.Number(strconv.FormatUint(cert.Serial, 10)), rec["serial"])
			assert.Equal(t, fmt.Sprintf("%#x", cert.Serial), rec["serial_hex"])
			assert.Equal(t, tt.keyID, rec["key_id"])
			assert.Equal(t, caAnySlice(tt.principals), rec["principals"])
			assert.Equal(t, time.Unix(int64(cert.ValidBefore), 0).UTC().Format(time.RFC3339), rec["valid_before"])

			// OpenSSH reads it back as the certificate we meant.
			certFile := filepath.Join(w.root, "read-back-cert.pub")
			require.NoError(t, os.WriteFile(certFile, []byte(line), 0o644))
			cmd := exec.Command(keygen, "-L", "-f", certFile)
			cmd.Env = append(os.Environ(), "TZ=UTC")
			out, err := cmd.CombinedOutput()
			require.NoError(t, err, "%s", out)
			assertCAKeygenListing(t, string(out), cert, tt.keyID, tt.principals, tt.source)
		})
	}
}

func caAnySlice(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

// assertCAKeygenListing checks `ssh-keygen -L` output (run with TZ=UTC).
func assertCAKeygenListing(t *testing.T, out string, cert *ssh.Certificate, keyID string, principals []string, source string) {
	t.Helper()
	ts := func(u uint64) string { return time.Unix(int64(u), 0).UTC().Format("2006-01-02T15:04:05") }
	assert.Contains(t, out, "Type: ssh-ed25519-cert-v01@openssh.com user certificate")
	assert.Contains(t, out, fmt.Sprintf("Key ID: %q", keyID))
	assert.Contains(t, out, fmt.Sprintf("Serial: %d", cert.Serial))
	assert.Contains(t, out, fmt.Sprintf("Valid: from %s to %s", ts(cert.ValidAfter), ts(cert.ValidBefore)))
	assert.Contains(t, out, "Principals: \n                "+strings.Join(principals, "\n                ")+"\n        Critical Options:")
	if source == "" {
		assert.Contains(t, out, "Critical Options: (none)")
	} else {
		assert.Contains(t, out, "Critical Options: \n                source-address "+source+"\n")
	}
	assert.Contains(t, out, "Extensions: (none)")
	assert.Contains(t, out, "(using ssh-ed25519)")
}

func TestCASignSerialsAdvance(t *testing.T) {
	w := newCAWorkspace(t)
	for want := uint64(2); want <= 4; want++ {
		r := runJitssh(t, nil, append([]string{"ca", "sign"}, caSignArgs()(w)...)...)
		require.Equal(t, 0, r.code, r.stderr)
		key, _, _, _, err := ssh.ParseAuthorizedKey([]byte(r.stdout))
		require.NoError(t, err)
		assert.Equal(t, ca.BreakGlassBit|want, key.(*ssh.Certificate).Serial)
	}
}

func TestCAInit(t *testing.T) {
	for _, kt := range []string{"ed25519", "ecdsa-p256", "ecdsa-p384"} {
		t.Run(kt, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "ca")
			r := runJitssh(t, nil, "ca", "init", "--dir", dir, "--type", kt)
			require.Equal(t, 0, r.code, r.stderr)
			assert.Empty(t, r.stderr)
			pub, err := os.ReadFile(filepath.Join(dir, ca.PublicKeyFile))
			require.NoError(t, err)
			assert.Equal(t, string(pub), r.stdout)
			assert.True(t, strings.HasSuffix(r.stdout, " jitssh-ca\n"), r.stdout)

			r = runJitssh(t, nil, "ca", "pubkey", "--dir", dir)
			require.Equal(t, 0, r.code, r.stderr)
			assert.Equal(t, string(pub), r.stdout)

			r = runJitssh(t, []string{"JITSSH_CA_DIR=" + dir}, "ca", "pubkey", "--json")
			require.Equal(t, 0, r.code, r.stderr)
			var got map[string]string
			require.NoError(t, json.Unmarshal([]byte(r.stdout), &got))
			assert.Equal(t, strings.TrimSpace(string(pub)), got["public_key"])
			assert.True(t, strings.HasPrefix(got["fingerprint"], "SHA256:"), got["fingerprint"])
		})
	}
	t.Run("type from the environment", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "ca")
		r := runJitssh(t, []string{"JITSSH_CA_DIR=" + dir, "JITSSH_CA_TYPE=ecdsa-p256"}, "ca", "init")
		require.Equal(t, 0, r.code, r.stderr)
		assert.True(t, strings.HasPrefix(r.stdout, "ecdsa-sha2-nistp256 "), r.stdout)
	})
}

func TestCAInitAndPubkeyFailures(t *testing.T) {
	tests := []struct {
		name     string
		args     func(w caWorkspace) []string
		prepare  func(t *testing.T, w caWorkspace)
		wantCode int
		wantMsg  string
	}{
		{name: "init without --dir", args: func(caWorkspace) []string { return []string{"init"} }, wantCode: 2, wantMsg: "missing --dir"},
		{name: "init unknown type", args: func(w caWorkspace) []string {
			return []string{"init", "--dir", filepath.Join(w.root, "new"), "--type", "rsa-1024"}
		}, wantCode: 2, wantMsg: "rsa-1024"},
		{name: "init over an existing CA", args: func(w caWorkspace) []string {
			return []string{"init", "--dir", w.ca}
		}, wantCode: 1, wantMsg: "already exists"},
		{name: "pubkey without --dir", args: func(caWorkspace) []string { return []string{"pubkey"} }, wantCode: 2, wantMsg: "missing --dir"},
		{name: "pubkey of a missing CA", args: func(w caWorkspace) []string {
			return []string{"pubkey", "--dir", filepath.Join(w.root, "nowhere")}
		}, wantCode: 1, wantMsg: "load CA key"},
		{name: "pubkey with a loose key", args: func(w caWorkspace) []string {
			return []string{"pubkey", "--dir", w.ca}
		}, prepare: func(t *testing.T, w caWorkspace) {
			require.NoError(t, os.Chmod(filepath.Join(w.ca, ca.PrivateKeyFile), 0o644))
		}, wantCode: 1, wantMsg: "0644"},
		{name: "unknown ca command", args: func(caWorkspace) []string { return []string{"rotate"} }, wantCode: 2, wantMsg: `unknown command "rotate"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newCAWorkspace(t)
			if tt.prepare != nil {
				tt.prepare(t, w)
			}
			before := caSnapshot(t, w.root)
			r := runJitssh(t, nil, append([]string{"ca"}, tt.args(w)...)...)
			assertOneLineError(t, r, tt.wantCode, tt.wantMsg)
			assert.Equal(t, before, caSnapshot(t, w.root))
		})
	}
}

func TestCAKRL(t *testing.T) {
	w := newCAWorkspace(t)
	a, err := ca.Load(w.ca)
	require.NoError(t, err)
	out := filepath.Join(w.root, "revoked.krl")
	start := time.Now().Unix()
	r := runJitssh(t, nil, "ca", "krl", "--dir", w.ca, "--serial", "5", "--serial", "0x8000000000000001",
		"--serial", "010", "--key-id", "mallory/req-9", "--out", out)
	require.Equal(t, 0, r.code, r.stderr)
	assert.Empty(t, r.stdout)

	data, err := os.ReadFile(out)
	require.NoError(t, err)
	fi, err := os.Stat(out)
	require.NoError(t, err)
	assert.Equal(t, fs.FileMode(0o644), fi.Mode().Perm())
	list, err := krl.Parse(data)
	require.NoError(t, err)
	assert.GreaterOrEqual(t, list.Version, uint64(start))
	require.Len(t, list.Certs, 1)
	assert.Equal(t, a.PublicKey().Marshal(), list.Certs[0].CA.Marshal())

	revoked := func(serial uint64, keyID string) bool {
		return list.IsRevoked(&ssh.Certificate{
			Key: newCAUserKey(t), Serial: serial, KeyId: keyID, CertType: ssh.UserCert, SignatureKey: a.PublicKey(),
		})
	}
	assert.True(t, revoked(5, "x"))
	assert.True(t, revoked(10, "x"), "010 is decimal ten")
	assert.True(t, revoked(ca.BreakGlassBit|1, "x"))
	assert.True(t, revoked(99, "mallory/req-9"))
	assert.False(t, revoked(6, "x"))
	assert.False(t, revoked(8, "x"), "010 is not octal")

	// Extending the KRL keeps what it had.
	r = runJitssh(t, nil, "ca", "krl", "--dir", w.ca, "--from", out, "--serial", "6", "--out", out)
	require.Equal(t, 0, r.code, r.stderr)
	data, err = os.ReadFile(out)
	require.NoError(t, err)
	next, err := krl.Parse(data)
	require.NoError(t, err)
	assert.Greater(t, next.Version, list.Version)
	list = next
	assert.True(t, revoked(5, "x"))
	assert.True(t, revoked(6, "x"))
	assert.True(t, revoked(99, "mallory/req-9"))

	// And OpenSSH agrees.
	keygen := needTool(t, "ssh-keygen")
	listing, err := exec.Command(keygen, "-Q", "-l", "-f", out).CombinedOutput()
	require.NoError(t, err, "%s", listing)
	assert.Contains(t, string(listing), "serial: 10\n")
	assert.Contains(t, string(listing), "serial: 9223372036854775809\n")
	assert.Contains(t, string(listing), "serial: 5-6\n")
	assert.Contains(t, string(listing), "id: mallory/req-9")
}

func TestCAKRLFailures(t *testing.T) {
	tests := []struct {
		name     string
		args     func(w caWorkspace) []string
		prepare  func(t *testing.T, w caWorkspace)
		wantCode int
		wantMsg  string
	}{
		{name: "missing --out", args: func(w caWorkspace) []string { return []string{"--dir", w.ca, "--serial", "1"} }, wantCode: 2, wantMsg: "missing --out"},
		{name: "missing --dir", args: func(w caWorkspace) []string { return []string{"--serial", "1", "--out", w.krl()} }, wantCode: 2, wantMsg: "missing --dir"},
		{name: "serial zero", args: caKRLArgs("--serial", "0"), wantCode: 2, wantMsg: "serial 0"},
		{name: "serial hex zero", args: caKRLArgs("--serial", "0x0"), wantCode: 2, wantMsg: "serial 0"},
		{name: "serial not a number", args: caKRLArgs("--serial", "twelve"), wantCode: 2, wantMsg: `--serial "twelve"`},
		{name: "serial negative", args: caKRLArgs("--serial", "-1"), wantCode: 2, wantMsg: `--serial "-1"`},
		{name: "serial too big", args: caKRLArgs("--serial", "18446744073709551616"), wantCode: 2, wantMsg: "--serial"},
		{name: "serial bare 0x", args: caKRLArgs("--serial", "0x"), wantCode: 2, wantMsg: "--serial"},
		{name: "serial octal prefix", args: caKRLArgs("--serial", "0o17"), wantCode: 2, wantMsg: "--serial"},
		{name: "empty key ID", args: caKRLArgs("--key-id", ""), wantCode: 2, wantMsg: "empty key ID"},
		{name: "extra argument", args: caKRLArgs("7"), wantCode: 2, wantMsg: "unexpected argument"},
		{name: "CA missing", args: func(w caWorkspace) []string {
			return []string{"--dir", filepath.Join(w.root, "nowhere"), "--serial", "1", "--out", w.krl()}
		}, wantCode: 1, wantMsg: "load CA key"},
		{name: "CA key loose", args: caKRLArgs("--serial", "1"), prepare: func(t *testing.T, w caWorkspace) {
			require.NoError(t, os.Chmod(filepath.Join(w.ca, ca.PrivateKeyFile), 0o660))
		}, wantCode: 1, wantMsg: "0660"},
		{name: "--from missing", args: func(w caWorkspace) []string {
			return append(caKRLArgs("--serial", "1")(w), "--from", filepath.Join(w.root, "old.krl"))
		}, wantCode: 1, wantMsg: "old.krl"},
		{name: "--from not a KRL", args: func(w caWorkspace) []string {
			return append(caKRLArgs("--serial", "1")(w), "--from", w.userPub)
		}, wantCode: 1, wantMsg: "invalid KRL"},
		{name: "--out in a missing directory", args: func(w caWorkspace) []string {
			return []string{"--dir", w.ca, "--serial", "1", "--out", filepath.Join(w.root, "no", "x.krl")}
		}, wantCode: 1, wantMsg: "x.krl"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newCAWorkspace(t)
			if tt.prepare != nil {
				tt.prepare(t, w)
			}
			before := caSnapshot(t, w.root)
			r := runJitssh(t, nil, append([]string{"ca", "krl"}, tt.args(w)...)...)
			assertOneLineError(t, r, tt.wantCode, tt.wantMsg)
			assert.Equal(t, before, caSnapshot(t, w.root))
		})
	}
}

func (w caWorkspace) krl() string { return filepath.Join(w.root, "revoked.krl") }

func caKRLArgs(extra ...string) func(w caWorkspace) []string {
	return func(w caWorkspace) []string {
		return append([]string{"--dir", w.ca, "--out", w.krl()}, extra...)
	}
}

func TestCAHelp(t *testing.T) {
	for cmd, flags := range map[string][]string{
		"init":   {"--dir", "--type", "--json"},
		"pubkey": {"--dir", "--json"},
		"sign":   {"--dir", "--pubkey", "--grant", "--ttl", "--key-id", "--source-address", "--out", "--json", "JITSSH_CA_SIGN_GRANT"},
		"krl":    {"--dir", "--serial", "--key-id", "--from", "--out", "JITSSH_CA_KRL_SERIAL"},
	} {
		t.Run(cmd, func(t *testing.T) {
			r := runJitssh(t, nil, "ca", cmd, "--help")
			require.Equal(t, 0, r.code, r.stderr)
			assert.Empty(t, r.stderr)
			for _, f := range append(flags, "JITSSH_CA_DIR") {
				assert.Contains(t, r.stdout, f)
			}
		})
	}
}

// lookPath finds an external program; without it the test is skipped,
// unless CI is set, where a missing peer is a failure.
func needTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s not found, and CI is set: %v", name, err)
		}
		t.Skipf("%s not found: %v", name, err)
	}
	return p
}

// TestCertificateLoginOpenSSH proves the CA against a real OpenSSH sshd
// that trusts it the way a Git server would: TrustedUserCAKeys, an
// AuthorizedPrincipalsFile naming one grant, and a KRL from `jitssh ca krl`.
// The grant gets in; every other certificate, and a plain key, does not.
func TestCertificateLoginOpenSSH(t *testing.T) {
	keygen := needTool(t, "ssh-keygen")
	dir := t.TempDir()
	caDir, otherCADir := filepath.Join(dir, "ca"), filepath.Join(dir, "other-ca")
	const grant = "git:read:demo/app:refs/heads/main"

	for _, d := range []string{caDir, otherCADir} {
		r := runJitssh(t, nil, "ca", "init", "--dir", d)
		require.Equal(t, 0, r.code, r.stderr)
	}
	key := filepath.Join(dir, "id_ed25519")
	out, err := exec.Command(keygen, "-q", "-t", "ed25519", "-N", "", "-C", "alice", "-f", key).CombinedOutput()
	require.NoError(t, err, "%s", out)

	// sign issues a certificate for key and returns its file and serial.
	sign := func(name, caDir, ttl string, extra ...string) (string, uint64) {
		t.Helper()
		certFile := filepath.Join(dir, name+".cert")
		args := append([]string{"ca", "sign", "--dir", caDir, "--pubkey", key + ".pub",
			"--key-id", "alice/" + name, "--ttl", ttl, "--out", certFile}, extra...)
		r := runJitssh(t, nil, args...)
		require.Equal(t, 0, r.code, r.stderr)
		data, err := os.ReadFile(certFile)
		require.NoError(t, err)
		pub, _, _, _, err := ssh.ParseAuthorizedKey(data)
		require.NoError(t, err)
		return certFile, pub.(*ssh.Certificate).Serial
	}

	// The expired one is signed by the same CA on a clock two hours
	// back, so that its hour ran out an hour ago.
	expired := filepath.Join(dir, "expired.cert")
	signExpired(t, caDir, key+".pub", expired, "alice/expired", grant)

	good, _ := sign("good", caDir, "1h", "--grant", grant)
	fromHere, _ := sign("from-here", caDir, "1h", "--grant", grant, "--source-address", "127.0.0.1/32")
	fromElsewhere, _ := sign("from-elsewhere", caDir, "1h", "--grant", grant, "--source-address", "10.0.0.0/8")
	otherGrant, _ := sign("other-grant", caDir, "1h", "--grant", "git:read:demo/other:refs/heads/main")
	otherCA, _ := sign("other-ca", otherCADir, "1h", "--grant", grant)
	revoked, revokedSerial := sign("revoked", caDir, "1h", "--grant", grant)

	listing, err := exec.Command(keygen, "-L", "-f", good).CombinedOutput()
	require.NoError(t, err, "%s", listing)
	assert.Contains(t, string(listing), "Principals: \n                "+grant+"\n")
	assert.Contains(t, string(listing), "Extensions: (none)")

	krl := filepath.Join(dir, "revoked.krl")
	r := runJitssh(t, nil, "ca", "krl", "--dir", caDir, "--serial", fmt.Sprintf("%#x", revokedSerial), "--out", krl)
	require.Equal(t, 0, r.code, r.stderr)
	principalsFile := filepath.Join(dir, "principals")
	require.NoError(t, os.WriteFile(principalsFile, []byte(grant+"\n"), 0o644))

	cfg := opensshtest.Config{
		TrustedUserCAKeys:        filepath.Join(caDir, ca.PublicKeyFile),
		AuthorizedPrincipalsFile: principalsFile,
		RevokedKeys:              krl,
	}
	server := opensshtest.Start(t, cfg)
	// The same sshd without the KRL shows that only the KRL keeps the
	// revoked certificate out.
	cfg.RevokedKeys = ""
	noKRL := opensshtest.Start(t, cfg)

	login := func(t *testing.T, s *opensshtest.Server, cert string) (code int, stdout, stderr, log string) {
		t.Helper()
		before := len(s.Log())
		args := []string{"-i", key}
		if cert != "" {
			args = append(args, "-o", "CertificateFile="+cert)
		}
		cmd := s.SSH(t, append(args, "echo", "ok")...)
		var o, e bytes.Buffer
		cmd.Stdout, cmd.Stderr = &o, &e
		err := cmd.Run()
		var exit *exec.ExitError
		if err != nil && !errors.As(err, &exit) {
			t.Fatalf("run ssh: %v", err)
		}
		return cmd.ProcessState.ExitCode(), o.String(), e.String(), s.Log()[before:]
	}
	allowed := func(t *testing.T, s *opensshtest.Server, cert string) {
		t.Helper()
		code, stdout, stderr, log := login(t, s, cert)
		require.Equal(t, 0, code, "ssh stderr: %s\nsshd log:\n%s", stderr, log)
		assert.Equal(t, "ok\n", stdout, "the command ran")
		assert.Contains(t, log, "Accepted publickey for "+s.User)
	}
	refused := func(t *testing.T, s *opensshtest.Server, cert, why string) {
		t.Helper()
		code, stdout, stderr, log := login(t, s, cert)
		assert.Equal(t, 255, code, "ssh stderr: %s\nsshd log:\n%s", stderr, log)
		assert.Empty(t, stdout, "no command ran")
		assert.Contains(t, stderr, "Permission denied (publickey)")
		assert.NotContains(t, log, "Accepted publickey")
		assert.Contains(t, log, "Failed publickey for "+s.User)
		assert.Contains(t, log, why, "sshd's reason")
	}

	t.Run("grant gets in", func(t *testing.T) { allowed(t, server, good) })
	t.Run("source address that matches gets in", func(t *testing.T) { allowed(t, server, fromHere) })
	t.Run("source address elsewhere is refused", func(t *testing.T) {
		refused(t, server, fromElsewhere, "not from a permitted source address (127.0.0.1)")
	})
	t.Run("other principal is refused", func(t *testing.T) {
		refused(t, server, otherGrant, "does not contain an authorized principal")
	})
	t.Run("other CA is refused", func(t *testing.T) {
		// sshd says no more than that the key failed; the CA in the
		// line is the other one.
		refused(t, server, otherCA, "ID alice/other-ca (serial")
	})
	t.Run("revoked serial is refused", func(t *testing.T) {
		refused(t, server, revoked, "revoked")
		allowed(t, noKRL, revoked)
	})
	t.Run("plain key is refused", func(t *testing.T) {
		refused(t, server, "", "ssh2: ED25519 SHA256:")
	})
	t.Run("expired certificate is refused", func(t *testing.T) {
		refused(t, server, expired, "expired")
	})
}
