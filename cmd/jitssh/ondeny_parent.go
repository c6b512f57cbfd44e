package main

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// watchParent returns a context that ends when the git that started
// git-ssh exits, so that a request filed for a git that is gone is
// cancelled rather than left waiting. git runs a GIT_SSH_COMMAND with
// arguments through a shell, which outlives a git killed under it; so when
// the parent is not git itself, its parent is watched too (where /proc
// tells it). A process whose parent dies is handed to another, so its
// parent ID changes.
func watchParent(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	ppid := os.Getppid()
	gppid := 0
	if comm, ok := procComm(ppid); ok && comm != "git" {
		gppid, _ = procParent(ppid)
	}
	go func() {
		tick := time.NewTicker(500 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			if os.Getppid() != ppid {
				cancel()
				return
			}
			if p, ok := procParent(ppid); gppid > 1 && ok && p != gppid {
				cancel()
				return
			}
		}
	}()
	return ctx, cancel
}

// procComm is the command name of process pid, where /proc has it.
func procComm(pid int) (string, bool) {
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "comm"))
	if err != nil {
		return "", false
	}
	return strings.TrimSpace(string(data)), true
}

// procParent is the parent of process pid, where /proc has it.
func procParent(pid int) (int, bool) {
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0, false
	}
	// pid (comm) state ppid ...: comm may hold spaces and parentheses,
	// so the fields are counted from the last ')'.
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 2 {
		return 0, false
	}
	p, err := strconv.Atoi(f[1])
	return p, err == nil
}
