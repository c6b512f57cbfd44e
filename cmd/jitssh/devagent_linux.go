//go:build linux

package main

import "syscall"

// dieWithParent has the kernel send SIGTERM to a child when jitssh dev
// dies, even by SIGKILL; the dev-agent supervisor then stops its agent.
func dieWithParent() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
}
