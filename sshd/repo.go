package sshd

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// ErrRepoNotFound is returned for a repository that does not exist under
// the root. Clients get the same message for it as for a repository they
// have no grant on, so neither reveals the other.
var ErrRepoNotFound = errors.New("repository not found")

// Repos resolves repository names to bare repositories under one root
// directory: the name "org/app" is the directory ROOT/org/app.git.
type Repos struct {
	root string // absolute, symlinks resolved
}

// NewRepos returns a resolver for the bare repositories under root.
func NewRepos(root string) (*Repos, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("repository root %s: %w", root, err)
	}
	real, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return nil, fmt.Errorf("repository root %s: %w", root, err)
	}
	fi, err := os.Stat(real)
	if err != nil {
		return nil, fmt.Errorf("repository root %s: %w", root, err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("repository root %s is not a directory", root)
	}
	return &Repos{root: real}, nil
}

// Root is the resolved repository root.
func (r *Repos) Root() string { return r.root }

// Resolve returns the on-disk path of the bare repository named name, a
// canonical repository name (see principals.NormalizeRepo). The path has
// its symlinks resolved and is guaranteed to lie inside the root: a
// symlink that leaves the root resolves to ErrRepoNotFound.
func (r *Repos) Resolve(name string) (string, error) {
	candidate := filepath.Join(r.root, filepath.FromSlash(name)+".git")
	real, err := filepath.EvalSymlinks(candidate)
	if err != nil {
		return "", fmt.Errorf("%w: %s", ErrRepoNotFound, name)
	}
	rel, err := filepath.Rel(r.root, real)
	if err != nil || !filepath.IsLocal(rel) {
		return "", fmt.Errorf("%w: %s resolves outside the root", ErrRepoNotFound, name)
	}
	if !isBareRepo(real) {
		return "", fmt.Errorf("%w: %s is not a bare repository", ErrRepoNotFound, name)
	}
	return real, nil
}

// isBareRepo applies git's own quick test: HEAD, objects/ and refs/.
func isBareRepo(dir string) bool {
	head, err := os.Stat(filepath.Join(dir, "HEAD"))
	if err != nil || !head.Mode().IsRegular() {
		return false
	}
	for _, sub := range []string{"objects", "refs"} {
		fi, err := os.Stat(filepath.Join(dir, sub))
		if err != nil || !fi.IsDir() {
			return false
		}
	}
	return true
}
