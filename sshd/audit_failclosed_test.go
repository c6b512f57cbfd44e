package sshd

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// failingRecorder refuses the events fail picks and hands the rest on.
type failingRecorder struct {
	next Recorder
	fail func(Event) bool
}

var errDiskFull = errors.New("no space left on device")

func (r failingRecorder) Record(ctx context.Context, e Event) error {
	if r.fail(e) {
		return errDiskFull
	}
	return r.next.Record(ctx, e)
}

// TestNativeFailsClosedOnAudit: when the record of an allowed operation's
// decision cannot be written, the operation does not happen: a fetch gets
// no object, an archive nothing, a push changes no ref. The record of the
// refusal says why.
func TestNativeFailsClosedOnAudit(t *testing.T) {
	var broken atomic.Bool
	broken.Store(true)
	n := startNative(t, func(o *ServerOptions) {
		o.Recorder = failingRecorder{next: o.Recorder, fail: func(e Event) bool { return broken.Load() && e.Stage == StageDecided }}
	})
	alice := n.newUser("alice", time.Hour, "git:write:demo/app:refs/heads/feature/*", "git:read:demo/app:*")
	n.startAgent(alice)
	refsBefore := git(t, n.bare, "for-each-ref")

	lastEvent := func(t *testing.T, before int) Event {
		t.Helper()
		require.Eventually(t, func() bool { return len(n.events.all()) > before }, 10*time.Second, 20*time.Millisecond)
		events := n.events.all()
		return events[len(events)-1]
	}
	for _, proto := range []string{"0", "2"} {
		t.Run("fetch v"+proto, func(t *testing.T) {
			dir := t.TempDir()
			git(t, dir, "init", "-q")
			before := len(n.events.all())
			out, err := n.gitAs(alice, dir, "-c", "protocol.version="+proto, "fetch", n.url("demo/app"), "main")
			require.Error(t, err, out)
			assert.Contains(t, out, "audit log cannot be written")
			_, err = gitErr(dir, nil, "cat-file", "-e", n.tips["main"])
			assert.Error(t, err, "the fetch brought objects")
			e := lastEvent(t, before)
			assert.Equal(t, Deny, e.Decision)
			assert.Contains(t, e.Reason, "audit record could not be written")
		})
	}
	t.Run("ls-remote", func(t *testing.T) {
		out, err := n.gitAs(alice, t.TempDir(), "ls-remote", n.url("demo/app"))
		require.Error(t, err, out)
		assert.NotContains(t, out, "refs/heads")
	})
	t.Run("archive", func(t *testing.T) {
		out, err := n.gitAs(alice, t.TempDir(), "archive", "--remote="+n.url("demo/app"), "main")
		require.Error(t, err)
		assert.NotContains(t, out, "main.txt")
	})
	t.Run("push", func(t *testing.T) {
		before := len(n.events.all())
		out, err := n.gitAs(alice, n.work, "push", n.url("demo/app"), "feature/a:refs/heads/feature/new", "+main:refs/heads/feature/a")
		require.Error(t, err, out)
		assert.Contains(t, out, "[remote rejected] feature/a -> feature/new (the audit record could not be written)")
		assert.Equal(t, refsBefore, git(t, n.bare, "for-each-ref"), "a push changed refs without its record")
		e := lastEvent(t, before)
		require.Len(t, e.Updates, 2, "%+v", e)
		for _, u := range e.Updates {
			assert.Equal(t, "refused", u.Result, "%+v", u)
		}
		reasons := map[string]string{}
		for _, u := range e.Updates {
			reasons[u.Ref] = u.Reason
		}
		assert.Equal(t, "the audit record could not be written", reasons["refs/heads/feature/new"])
		// A ref the grant refuses keeps its own reason.
		assert.True(t, strings.HasPrefix(reasons["refs/heads/feature/a"], "a non-fast-forward update"), reasons["refs/heads/feature/a"])
	})
	// With the record writable again, the same push lands.
	broken.Store(false)
	out, err := n.gitAs(alice, n.work, "push", n.url("demo/app"), "feature/a:refs/heads/feature/new")
	require.NoError(t, err, out)
	var decided []Event
	for _, e := range n.events.all() {
		if e.Stage == StageDecided {
			decided = append(decided, e)
		}
	}
	require.Len(t, decided, 1)
	assert.Equal(t, []RefUpdate{{Ref: "refs/heads/feature/new", Old: zeroOID, New: n.tips["feature/a"], Result: "allowed"}}, decided[0].Updates)
}

// TestPushGate: the hook's updates pass only when the serving process
// says so; a refusal, a missing gate or a gone one all refuse.
func TestPushGate(t *testing.T) {
	updates := []RefUpdate{{Ref: "refs/heads/x", Old: zeroOID, New: "1111111111111111111111111111111111111111", Result: "allowed"}}
	var got []RefUpdate
	ok, err := openPushGate(func(u []RefUpdate) error { got = u; return nil })
	require.NoError(t, err)
	require.NoError(t, askGate(ok.path(), updates))
	ok.close()
	assert.Equal(t, updates, got, "the gate's caller saw other updates")

	refusing, err := openPushGate(func([]RefUpdate) error { return errDiskFull })
	require.NoError(t, err)
	err = askGate(refusing.path(), updates)
	refusing.close()
	require.Error(t, err)
	assert.Equal(t, "the audit record could not be written", err.Error(), "the detail is for the log, not the client")

	assert.ErrorIs(t, askGate("", updates), ErrAuditUnavailable)
	assert.ErrorIs(t, askGate(ok.path(), updates), ErrAuditUnavailable, "a closed gate let updates through")
}
