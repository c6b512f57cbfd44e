// Package atomicfile replaces files so that a reader, or the machine after a
// crash, finds either the old content or the whole new content, never a
// part of it and never an empty file where a key or a counter used to be.
//
// The method is the usual one: write a temporary file in the same
// directory, sync it, rename it over the target and sync the directory, so
// the rename itself survives a power cut. A failure at any step removes the
// temporary file and leaves the target as it was.
package atomicfile

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// WriteFile replaces path with data, readable as perm.
func WriteFile(path string, data []byte, perm os.FileMode) error {
	p, err := Create(path)
	if err != nil {
		return err
	}
	defer p.Abort()
	if _, err := p.Write(data); err != nil {
		return err
	}
	return p.Commit(perm)
}

// Pending is a replacement being written: a temporary file beside its final
// path that becomes the file only on Commit. It suits output produced in
// pieces (a streamed export), where WriteFile needs all of it in memory.
type Pending struct {
	f    *os.File
	path string
	err  error
	done bool
}

// Create starts the replacement of path. The caller must Commit or Abort;
// deferring Abort after Create is always safe.
func Create(path string) (*Pending, error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return nil, fmt.Errorf("write %s: %w", path, err)
	}
	return &Pending{f: f, path: path}, nil
}

// Write appends b to the replacement. The first error is kept and returned
// again by Commit, so a caller that writes through a buffered writer may
// check once at the end.
func (p *Pending) Write(b []byte) (int, error) {
	if p.err != nil {
		return 0, p.err
	}
	n, err := p.f.Write(b)
	if err != nil {
		p.err = fmt.Errorf("write %s: %w", p.path, err)
	}
	return n, p.err
}

// Commit gives the file its mode, makes its content durable and puts it in
// place of path. After Commit the Pending is spent.
func (p *Pending) Commit(perm os.FileMode) error {
	if p.done {
		return fmt.Errorf("write %s: %w", p.path, errSpent)
	}
	p.done = true
	err := p.err
	if err == nil {
		err = p.f.Chmod(perm)
	}
	if err == nil {
		err = p.f.Sync()
	}
	if cerr := p.f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(p.f.Name(), p.path)
	}
	if err == nil {
		err = SyncDir(filepath.Dir(p.path))
	}
	if err != nil {
		os.Remove(p.f.Name())
		if p.err != nil {
			return p.err
		}
		return fmt.Errorf("write %s: %w", p.path, err)
	}
	return nil
}

// Abort removes the temporary file unless Commit ran.
func (p *Pending) Abort() {
	if p.done {
		return
	}
	p.done = true
	p.f.Close()
	os.Remove(p.f.Name())
}

var errSpent = errors.New("already committed or aborted")

// SyncDir makes the creation, rename or removal of an entry of dir durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}
