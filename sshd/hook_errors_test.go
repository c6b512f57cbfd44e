package sshd

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// logBuffer collects a server's JSON log lines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// lines returns the log lines whose msg is msg, decoded.
func (b *logBuffer) lines(t *testing.T, msg string) []map[string]any {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(b.buf.String()), "\n") {
		var m map[string]any
		if l == "" || json.Unmarshal([]byte(l), &m) != nil {
			continue
		}
		if m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

// TestNativeLogsHookFailures: when jitssh's hook fails during a push, the
// server's log says which hook and why, under "err"; the client is told
// only that it failed, and no ref changes.
func TestNativeLogsHookFailures(t *testing.T) {
	for _, tt := range []struct {
		name    string
		hookCmd []string
		want    string
	}{
		{"hook command cannot start", []string{"/nonexistent/jitssh", "hook"}, "exit status 127"},
		{"hook fails inside", append([]string{"env", envHookRepo + "="}, hookCommand...), "not started by jitssh"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var logs logBuffer
			n := startNative(t, func(o *ServerOptions) {
				g, err := NewGit(GitOptions{HookCommand: tt.hookCmd})
				require.NoError(t, err)
				t.Cleanup(func() { g.Close() })
				o.Git = g
				o.Logger = slog.New(slog.NewJSONHandler(&logs, nil))
			})
			bob := n.newUser("bob", time.Hour, "git:write:demo/app:refs/heads/feature/*")
			n.startAgent(bob)
			before := git(t, n.bare, "for-each-ref")
			out, err := n.gitAs(bob, n.work, "push", n.url("demo/app"), "feature/a:refs/heads/feature/new")
			require.Error(t, err, out)
			assert.Contains(t, out, "pre-receive")
			assert.NotContains(t, out, tt.want, "the client saw the detail")
			assert.Equal(t, before, git(t, n.bare, "for-each-ref"))
			require.Eventually(t, func() bool { return len(logs.lines(t, "git hook failed")) > 0 }, 10*time.Second, 20*time.Millisecond)
			line := logs.lines(t, "git hook failed")[0]
			assert.Equal(t, "pre-receive", line["hook"])
			assert.Contains(t, line["err"], tt.want)
			assert.Equal(t, "bob/req-1", line["key_id"])
			// The audit record carries the failure too.
			require.Eventually(t, func() bool {
				for _, e := range n.events.all() {
					if e.Stage == "" && strings.Contains(e.Error, tt.want) {
						return true
					}
				}
				return false
			}, 10*time.Second, 20*time.Millisecond, "%+v", n.events.all())
		})
	}
}
