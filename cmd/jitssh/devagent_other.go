//go:build !linux

package main

import "syscall"

// dieWithParent has no portable equivalent outside Linux; there the
// dev-agent supervisor relies on its standard input closing alone.
func dieWithParent() *syscall.SysProcAttr { return nil }
