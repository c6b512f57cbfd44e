package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// installDevBinary puts the running jitssh at DIR/bin/jitssh, the path the
// env files name. `go run` runs a binary from a temporary directory that
// is gone once it stops; a shell that sourced an env file must keep
// working across a restart of jitssh dev, so the files never name that
// binary. Each start refreshes the copy, so a rebuilt jitssh takes over.
// The copy is a hard link where the file system allows, else a copy, put
// in place by rename: a jitssh running from the old copy keeps it.
func installDevBinary(dir string) (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("find the jitssh binary: %w", err)
	}
	if exe, err = filepath.EvalSymlinks(exe); err != nil {
		return "", fmt.Errorf("find the jitssh binary: %w", err)
	}
	bin := filepath.Join(dir, "bin")
	dst := filepath.Join(bin, "jitssh")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		return "", fmt.Errorf("create %s: %w", bin, err)
	}
	src, err := os.Stat(exe)
	if err != nil {
		return "", fmt.Errorf("find the jitssh binary: %w", err)
	}
	if cur, err := os.Stat(dst); err == nil && os.SameFile(src, cur) {
		return dst, nil
	}
	tmp := filepath.Join(bin, ".jitssh.new")
	os.Remove(tmp)
	if err := os.Link(exe, tmp); err != nil {
		if err := copyExecutable(exe, tmp); err != nil {
			os.Remove(tmp)
			return "", fmt.Errorf("copy jitssh to %s: %w", dst, err)
		}
	}
	if err := os.Rename(tmp, dst); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("copy jitssh to %s: %w", dst, err)
	}
	return dst, nil
}

func copyExecutable(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	if err != nil {
		return err
	}
	_, cerr := io.Copy(out, in)
	return errors.Join(cerr, out.Sync(), out.Close())
}
