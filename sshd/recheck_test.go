package sshd

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestNativeRecheckClosesAtOnce: Recheck, which the revocation source
// calls when its list changes, closes a revoked certificate's open
// connection at once, however long the periodic recheck's interval.
func TestNativeRecheckClosesAtOnce(t *testing.T) {
	n := startNative(t, func(o *ServerOptions) { o.RecheckInterval = time.Hour })
	u := n.newUser("revokee", time.Hour, "git:read:demo/app:*")
	n.startAgent(u)
	done, stop := n.holdUploadPack(u)
	defer stop()
	n.revoked.Revoke(n.ca.PublicKey(), u.cert.Serial)
	n.srv.Recheck()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("connection still open 10s after a recheck found its certificate revoked")
	}
}

// TestNativeEachOperationIsVerified: a new operation on a connection that
// stays open (an OpenSSH ControlMaster, with keep_expired_connections so
// nothing closes it) is refused once the certificate is revoked: each
// session is verified against the revocations of the moment.
func TestNativeEachOperationIsVerified(t *testing.T) {
	n := startNative(t, func(o *ServerOptions) { o.RecheckInterval = time.Hour; o.KeepExpired = true })
	u := n.newUser("muxed", time.Hour, "git:read:demo/app:*")
	n.startAgent(u)
	dir, err := os.MkdirTemp("", "mux") // short: a socket path has a length limit
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	ctl := filepath.Join(dir, "ctl")
	master := strings.Fields(n.sshCommand(u, "-o", "ControlMaster=yes", "-o", "ControlPath="+ctl, "-o", "ControlPersist=yes", "-f", "-N"))
	master = append(master, "-p", fmt.Sprint(n.addr.Port), "git@127.0.0.1")
	out, err := exec.Command(master[0], master[1:]...).CombinedOutput()
	require.NoError(t, err, "%s", out)
	control := func(op string) error {
		args := strings.Fields(n.sshCommand(u, "-o", "ControlPath="+ctl, "-O", op))
		return exec.Command(args[0], append(args[1:], "-p", fmt.Sprint(n.addr.Port), "git@127.0.0.1")...).Run()
	}
	t.Cleanup(func() { _ = control("exit") })
	muxed := []string{"GIT_SSH_COMMAND=" + n.sshCommand(u, "-o", "ControlMaster=no", "-o", "ControlPath="+ctl), "SSH_AUTH_SOCK=" + u.agent}

	got, err := gitErr(t.TempDir(), muxed, "ls-remote", n.url("demo/app"))
	require.NoError(t, err, got)
	n.revoked.Revoke(n.ca.PublicKey(), u.cert.Serial)
	got, err = gitErr(t.TempDir(), muxed, "ls-remote", n.url("demo/app"))
	require.Error(t, err, "an operation on the open connection after the revocation: %s", got)
	require.NoError(t, control("check"), "the operation went over the connection opened before the revocation")

	var reasons []string
	for _, e := range n.events.all() {
		if e.Serial == u.cert.Serial && e.Decision == Deny {
			reasons = append(reasons, e.Reason)
		}
	}
	require.Len(t, reasons, 1, "%+v", n.events.all())
	assert.Contains(t, reasons[0], "revoked")
}
