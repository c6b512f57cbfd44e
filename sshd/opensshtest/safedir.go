package opensshtest

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// SafeDir returns a new empty directory, removed after the test, in which
// sshd will run programs such as an AuthorizedPrincipalsCommand: it and
// every directory above it are owned by root and writable by nobody else.
// It lies under the user's cache directory (or $HOME), never under /tmp.
//
// sshd demands root ownership of such a program and its directories, so
// SafeDir needs the tests to run as root; otherwise it skips the test
// (fails it when CI is set). The directory is mode 0755, but an
// AuthorizedPrincipalsCommandUser other than root must also be able to
// reach it through the directories above, which $HOME (often 0700) may
// forbid.
func SafeDir(t testing.TB) string {
	t.Helper()
	if os.Geteuid() != 0 {
		missing(t, "sshd runs programs only from root-owned directories, and the tests are not running as root")
		return ""
	}
	var base string
	if d, err := os.UserCacheDir(); err == nil {
		base = d
	} else if d, err := os.UserHomeDir(); err == nil {
		base = d
	} else {
		t.Fatalf("opensshtest: no cache or home directory for SafeDir: %v", err)
	}
	parent := filepath.Join(base, "jitssh-opensshtest")
	if err := os.MkdirAll(parent, 0o755); err != nil {
		t.Fatalf("opensshtest: %v", err)
	}
	dir, err := os.MkdirTemp(parent, "safe-")
	if err != nil {
		t.Fatalf("opensshtest: %v", err)
	}
	// parent stays: tests of other packages may be using it right now.
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatalf("opensshtest: %v", err)
	}
	if err := checkSafePath(dir); err != nil {
		t.Fatalf("opensshtest: SafeDir %s: %v", dir, err)
	}
	return dir
}

// checkSafePath applies sshd's rule for programs it runs (safe_path in
// OpenSSH's misc.c) to dir and every directory above it: owned by root,
// not writable by group or others.
func checkSafePath(dir string) error {
	for p := dir; ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err != nil {
			return err
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return fmt.Errorf("cannot read the owner of %s", p)
		}
		if st.Uid != 0 {
			return fmt.Errorf("%s is owned by uid %d, not root", p, st.Uid)
		}
		if fi.Mode().Perm()&0o022 != 0 {
			return fmt.Errorf("%s is writable by group or others (mode %#o)", p, fi.Mode().Perm())
		}
		if p == filepath.Dir(p) {
			return nil
		}
	}
}
