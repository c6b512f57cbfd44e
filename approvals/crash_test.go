package approvals

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mathrand "math/rand/v2"
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
	"golang.org/x/crypto/ssh"

	"github.com/jitssh/jitssh/audit"
	"github.com/jitssh/jitssh/ca"
)

// crashChildEnv, when set to a directory, turns the test binary into the
// crash test's child: it runs a stream of requests on that directory and
// prints each acknowledged result, until it is killed.
const crashChildEnv = "JITSSH_APPROVALS_CRASH_CHILD"

const (
	crashKillAfter = 60     // lines the parent reads before it kills the child
	crashMaxOps    = 100000 // the child stops by itself after this many
)

// crashChild is the child's main. Each line it prints is a result the
// Service returned, so the parent may expect to find it after the crash:
//
//	submit ID           a pending request
//	approve ID SERIAL   bob's approval, and the certificate it issued
//	issue ID SERIAL     an auto-approved request and its certificate
//	revoke ID SERIAL    carol's revocation
func crashChild(dir string) int {
	fail := func(err error) int {
		fmt.Fprintln(os.Stderr, "crash child:", err)
		return 1
	}
	authority, err := ca.Load(filepath.Join(dir, "ca"))
	if err != nil {
		return fail(err)
	}
	c, err := LoadConfig("testdata/dev-policy.yaml")
	if err != nil {
		return fail(err)
	}
	p, err := NewPolicy(withoutLimits(c))
	if err != nil {
		return fail(err)
	}
	log, err := openCrashAudit(dir)
	if err != nil {
		return fail(err)
	}
	defer log.Close()
	s, err := Open(Options{
		DataDir:     filepath.Join(dir, "data"),
		Policy:      p,
		Authority:   authority,
		Logger:      slog.New(slog.DiscardHandler),
		RaftTimeout: testRaftTimeout,
		Audit:       log,
	})
	if err != nil {
		return fail(err)
	}
	defer s.Close()
	ctx := context.Background()
	newKey := func() (ssh.PublicKey, error) {
		pub, _, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, err
		}
		return ssh.NewPublicKey(pub)
	}
	var toRevoke []*Request
	for i := range crashMaxOps {
		key, err := newKey()
		if err != nil {
			return fail(err)
		}
		switch i % 3 {
		case 0:
			r, err := s.Submit(ctx, actorOf(p, "alice"), SubmitInput{Repo: "demo/app", Ref: "*", Access: "read", PublicKey: key})
			if err != nil {
				return fail(err)
			}
			fmt.Printf("issue %s %d\n", r.ID, r.Serial)
			toRevoke = append(toRevoke, r)
		case 1:
			r, err := s.Submit(ctx, actorOf(p, "alice"), SubmitInput{
				Repo: "demo/app", Ref: "refs/heads/feature/x", Access: "write", PublicKey: key, Reason: "crash test",
			})
			if err != nil {
				return fail(err)
			}
			fmt.Printf("submit %s\n", r.ID)
			if r, err = s.Approve(ctx, actorOf(p, "bob"), r.ID, DecisionInput{Reason: "ok"}); err != nil {
				return fail(err)
			}
			fmt.Printf("approve %s %d\n", r.ID, r.Serial)
		case 2:
			r := toRevoke[0]
			toRevoke = toRevoke[1:]
			if r, err = s.Revoke(ctx, actorOf(p, "carol"), r.ID, 0, "crash test"); err != nil {
				return fail(err)
			}
			fmt.Printf("revoke %s %d\n", r.ID, r.Serial)
		}
	}
	return 0
}

// openCrashAudit opens the crash test's audit log as the daemon does.
func openCrashAudit(dir string) (*audit.Log, error) {
	return audit.Open(filepath.Join(dir, "audit.log"), audit.Options{Journal: true, RepairTornTail: true,
		Logger: slog.New(slog.DiscardHandler)})
}

// crashCycles is how many times the crash test kills the daemon.
const crashCycles = 3

// TestCrashKeepsAcknowledged kills the daemon with SIGKILL in the middle of
// a stream of requests, approvals, issues and revocations, several times
// over on the same data, and after each restart checks that everything
// acknowledged is there, no serial repeats, and the audit log verifies and
// says exactly what the state holds.
func TestCrashKeepsAcknowledged(t *testing.T) {
	dir := t.TempDir()
	_, err := ca.Init(filepath.Join(dir, "ca"), ca.Ed25519)
	require.NoError(t, err)
	var acked []string
	for cycle := range crashCycles {
		acked = append(acked, crashOnce(t, dir)...)
		checkAfterCrash(t, dir, acked, cycle)
	}
}

// crashOnce runs the child on dir and kills it mid-stream; it returns the
// results the child acknowledged.
func crashOnce(t *testing.T, dir string) []string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+dir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())

	// Kill the child in the middle of its stream, then read what it had
	// printed by then: every whole line is an acknowledged result.
	var lines []string
	out := bufio.NewReader(stdout)
	killed := false
	for {
		line, err := out.ReadString('\n')
		if errors.Is(err, io.EOF) {
			break // a fragment without its newline was never acknowledged
		}
		require.NoError(t, err)
		lines = append(lines, strings.TrimSuffix(line, "\n"))
		if len(lines) == crashKillAfter {
			// A moment's jitter lands the kill at a different point of
			// the operation in flight each run.
			time.Sleep(mathrand.N(10 * time.Millisecond))
			require.NoError(t, cmd.Process.Kill()) // SIGKILL
			killed = true
		}
	}
	waitErr := cmd.Wait()
	require.True(t, killed, "the child ended before it was killed: %v\n%s", waitErr, stderr.String())
	require.GreaterOrEqual(t, len(lines), crashKillAfter)
	t.Logf("%d results acknowledged before SIGKILL; last: %s", len(lines), lines[len(lines)-1])
	return lines
}

func checkAfterCrash(t *testing.T, dir string, lines []string, cycle int) {
	t.Helper()
	authority, err := ca.Load(filepath.Join(dir, "ca"))
	require.NoError(t, err)
	log, err := openCrashAudit(dir)
	require.NoError(t, err)
	defer log.Close()
	s, err := Open(Options{
		DataDir:     filepath.Join(dir, "data"),
		Policy:      unlimitedDevPolicy(t),
		Authority:   authority,
		Logger:      slog.New(slog.DiscardHandler),
		RaftTimeout: testRaftTimeout,
		Audit:       log,
	})
	require.NoError(t, err)
	defer s.Close()

	revoked := s.RevokedSerials()
	var maxAcked uint64
	for _, line := range lines {
		f := strings.Fields(line)
		require.NotEmpty(t, f)
		r, err := s.getAny(f[1])
		require.NoError(t, err, "acknowledged %q, lost after the crash", line)
		var serial uint64
		if len(f) > 2 {
			serial, err = strconv.ParseUint(f[2], 10, 64)
			require.NoError(t, err)
			maxAcked = max(maxAcked, serial)
			assert.Equal(t, serial, r.Serial, line)
			assert.Equal(t, serial, parseCert(t, r).Serial, line)
		}
		switch f[0] {
		case "submit":
			assert.Equal(t, "alice", r.Requester, line)
		case "approve":
			assert.Equal(t, StateApproved, r.State, line)
			require.Len(t, r.Approvals, 1, line)
			assert.Equal(t, "bob", r.Approvals[0].By, line)
		case "issue":
			assert.Equal(t, StateApproved, r.State, line)
		case "revoke":
			require.NotNil(t, r.Revoked, line)
			assert.Equal(t, "carol", r.Revoked.By, line)
			assert.Contains(t, revoked, serial, line)
		default:
			t.Fatalf("unexpected line %q", line)
		}
	}

	// No serial went to two requests, and the next one is new.
	var serials []uint64
	for _, r := range s.listAny(ListFilter{}) {
		if r.Serial != 0 {
			assert.NotContains(t, serials, r.Serial, "serial %d reused", r.Serial)
			serials = append(serials, r.Serial)
		}
	}
	next, err := s.Submit(context.Background(), actorOf(s.Policy(), "alice"), SubmitInput{Repo: "demo/app", Ref: "*", Access: "read", PublicKey: freshKey(t)})
	require.NoError(t, err)
	assert.Greater(t, next.Serial, maxAcked)
	assert.Greater(t, next.Serial, slices.Max(serials))

	checkCrashAudit(t, dir, s, cycle)
}

// checkCrashAudit checks the audit log after a crash: the chain verifies,
// its head is the position the state records, every issue follows the
// approval that allowed it, no request is issued twice, and every
// certificate in the state is on the log with its serial.
func checkCrashAudit(t *testing.T, dir string, s *Service, cycle int) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, "audit.log"))
	require.NoError(t, err)
	sum, err := audit.Verify(bytes.NewReader(data))
	require.NoError(t, err, "cycle %d: the audit log does not verify", cycle)
	chain, err := s.fsm.State().auditChain()
	require.NoError(t, err)
	assert.Equal(t, chain.Seq, sum.Entries, "the log holds exactly the entries the state made")

	approved := map[string]bool{}
	issued := map[string]uint64{}
	for line := range bytes.Lines(data) {
		var e audit.Entry
		require.NoError(t, json.Unmarshal(line, &e))
		var rec recordedData
		if len(e.Data) > 0 {
			require.NoError(t, json.Unmarshal(e.Data, &rec))
		}
		switch e.Kind {
		case AuditRequest:
			approved[rec.ID] = rec.State == StateApproved
		case AuditApprove:
			approved[rec.ID] = rec.State == StateApproved
		case AuditIssue:
			assert.True(t, approved[rec.ID], "seq %d: %s issued before its approval is on the log", e.Seq, rec.ID)
			_, twice := issued[rec.ID]
			assert.False(t, twice, "seq %d: %s issued twice", e.Seq, rec.ID)
			issued[rec.ID] = rec.Serial
		}
	}
	for _, r := range s.listAny(ListFilter{}) {
		if r.Certificate != "" {
			assert.Equal(t, r.Serial, issued[r.ID], "%s: certificate not on the log", r.ID)
		}
	}
}
