package audit

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"testing"
)

// The multi-process test runs this test binary again as the appending
// processes; these variables tell a child what to do.
const (
	envRole  = "JITSSH_AUDIT_TEST_ROLE" // open-once or open-each
	envLog   = "JITSSH_AUDIT_TEST_LOG"
	envCount = "JITSSH_AUDIT_TEST_COUNT"
	envActor = "JITSSH_AUDIT_TEST_ACTOR"
)

func TestMain(m *testing.M) {
	if mode := os.Getenv(envRole); mode != "" {
		if err := appendProcess(mode); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// appendProcess appends COUNT entries to LOG as ACTOR: with one Open for
// all of them, like the daemon, or one Open per entry, like git-shell.
func appendProcess(mode string) error {
	path, actor := os.Getenv(envLog), os.Getenv(envActor)
	n, err := strconv.Atoi(os.Getenv(envCount))
	if err != nil {
		return err
	}
	var l *Log
	for i := range n {
		if l == nil {
			if l, err = Open(path, Options{}); err != nil {
				return err
			}
		}
		if _, err := l.Append(KindGit, actor, map[string]any{"i": i, "repo": "demo/app"}); err != nil {
			return err
		}
		if mode == "open-each" {
			if err := l.Close(); err != nil {
				return err
			}
			l = nil
		}
	}
	if l != nil {
		return l.Close()
	}
	return nil
}

// openLog opens a log that the test closes at its end.
func openLog(t *testing.T, path string, opts Options) *Log {
	t.Helper()
	l, err := Open(path, opts)
	if err != nil {
		t.Fatalf("Open(%s): %v", path, err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// verifyFile runs Verify on the file at path.
func verifyFile(t *testing.T, path string) (Summary, error) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	return Verify(f)
}

// fileLines returns the lines of a file, without their newlines.
func fileLines(t *testing.T, path string) [][]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Split(bytes.TrimSuffix(b, []byte("\n")), []byte("\n"))
}

// needBinary finds an external program; without it the test is skipped,
// unless running in CI, where a missing peer is a failure.
func needBinary(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s is required in CI: %v", name, err)
	}
	t.Skipf("%s not installed: %v", name, err)
	return ""
}

// appendFile appends raw bytes to a file, as a crashed writer would leave
// them.
func appendFile(t *testing.T, path string, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
}
