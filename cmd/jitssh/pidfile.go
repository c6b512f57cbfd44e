package main

import (
	"bytes"
	"fmt"
	"os"
	"strconv"

	"github.com/jitssh/jitssh/internal/atomicfile"
)

// writePIDFile writes this process's ID to path, for whoever signals the
// daemon (a node of `jitssh dev --nodes` is stopped, or killed, through
// it), and returns a function that removes it again if it still names
// this process: a daemon started since owns it then.
func writePIDFile(path string) (func(), error) {
	pid := []byte(strconv.Itoa(os.Getpid()) + "\n")
	if err := atomicfile.WriteFile(path, pid, 0o644); err != nil {
		return nil, fmt.Errorf("write pid file %s: %w", path, err)
	}
	return func() {
		if data, err := os.ReadFile(path); err == nil && bytes.Equal(data, pid) {
			os.Remove(path)
		}
	}, nil
}
