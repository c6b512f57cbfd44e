package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
)

// localRepo is the repository the git that runs git-ssh works in. git
// starts its ssh in the top of the work tree (or in the git directory of a
// bare repository) and takes GIT_DIR and the like out of its environment,
// so the working directory finds it.
type localRepo struct {
	dir string // "" is the working directory
}

func (l localRepo) command(args ...string) *exec.Cmd {
	cmd := exec.Command("git", args...)
	cmd.Dir = l.dir
	return cmd
}

// output runs git and returns its standard output, or an error with what
// it said on stderr.
func (l localRepo) output(stdin io.Reader, args ...string) ([]byte, error) {
	cmd := l.command(args...)
	cmd.Stdin = stdin
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("git %s: %w: %s", args[0], err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// isAncestor reports whether old is an ancestor of new here: false when
// either object is missing, which makes an update git-ssh cannot show to
// be a fast-forward count as one that is not.
func (l localRepo) isAncestor(old, new string) bool {
	return l.command("merge-base", "--is-ancestor", old, new).Run() == nil
}

// objectFormat is the repository's hash, "sha1" unless it says otherwise.
func (l localRepo) objectFormat() string {
	out, err := l.output(nil, "rev-parse", "--show-object-format")
	if f := strings.TrimSpace(string(out)); err == nil && f != "" {
		return f
	}
	return "sha1"
}

// present returns the objects among ids this repository has.
func (l localRepo) present(ids []string) (map[string]bool, error) {
	have := map[string]bool{}
	if len(ids) == 0 {
		return have, nil
	}
	out, err := l.output(strings.NewReader(strings.Join(ids, "\n")+"\n"), "cat-file", "--batch-check=%(objectname)")
	if err != nil {
		return nil, err
	}
	for _, line := range strings.Split(string(out), "\n") {
		if isOID(line) {
			have[line] = true
		}
	}
	return have, nil
}

// currentBranch is the branch HEAD is on, if it is on one.
func (l localRepo) currentBranch() (string, bool) {
	out, err := l.output(nil, "symbolic-ref", "-q", "HEAD")
	name, ok := strings.CutPrefix(strings.TrimSpace(string(out)), "refs/heads/")
	return name, err == nil && ok && name != ""
}

// remoteURL is the URL of the named remote.
func (l localRepo) remoteURL(name string) (string, error) {
	out, err := l.output(nil, "config", "--get", "remote."+name+".url")
	if err != nil {
		return "", fmt.Errorf("no remote %q here", name)
	}
	return strings.TrimSpace(string(out)), nil
}

// lastFetched is what this repository last saw of the repository repo at
// host: the remote-tracking refs of the remotes whose URL points there,
// named as the server names them (refs/remotes/origin/main is
// refs/heads/main). It is empty when no remote matches.
func (l localRepo) lastFetched(host gitHost, repo string) map[string]string {
	refs := map[string]string{}
	out, err := l.output(nil, "config", "--get-regexp", `^remote\..*\.(url|pushurl)$`)
	if err != nil {
		return refs
	}
	var specs []string
	seen := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		key, value, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		name := strings.TrimPrefix(key, "remote.")
		name = strings.TrimSuffix(strings.TrimSuffix(name, ".url"), ".pushurl")
		u, ok := parseGitRemoteURL(value)
		if !ok || u.host != host || seen[name] {
			continue
		}
		if r, err := u.repo(); err != nil || r != repo {
			continue
		}
		seen[name] = true
		fetch, _ := l.output(nil, "config", "--get-all", "remote."+name+".fetch")
		specs = append(specs, strings.Fields(string(fetch))...)
	}
	if len(specs) == 0 {
		return refs
	}
	list, err := l.output(nil, "for-each-ref", "--format=%(objectname) %(refname) %(symref)")
	if err != nil {
		return refs
	}
	sc := bufio.NewScanner(bytes.NewReader(list))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 2 || !isOID(f[0]) { // a symbolic ref has a third field
			continue
		}
		for _, spec := range specs {
			if name, ok := remoteName(spec, f[1]); ok {
				refs[name] = f[0]
				break
			}
		}
	}
	return refs
}

// remoteName maps a local tracking ref back through a fetch refspec
// ("+refs/heads/*:refs/remotes/origin/*") to the server's name for it.
func remoteName(spec, local string) (string, bool) {
	spec = strings.TrimPrefix(spec, "+")
	src, dst, ok := strings.Cut(spec, ":")
	if !ok || strings.HasPrefix(spec, "^") || src == "" || dst == "" {
		return "", false
	}
	srcPre, srcSuf, srcGlob := strings.Cut(src, "*")
	dstPre, dstSuf, dstGlob := strings.Cut(dst, "*")
	if srcGlob != dstGlob {
		return "", false
	}
	if !dstGlob {
		return src, local == dst
	}
	if len(local) < len(dstPre)+len(dstSuf) || !strings.HasPrefix(local, dstPre) || !strings.HasSuffix(local, dstSuf) {
		return "", false
	}
	return srcPre + local[len(dstPre):len(local)-len(dstSuf)] + srcSuf, true
}

// packObjects writes to w the pack a push of tips needs when the server
// has exclude, as git push makes it: what tips reach and exclude does not.
// exclude must be objects this repository has.
func (l localRepo) packObjects(w io.Writer, tips, exclude []string, thin, ofsDelta bool) error {
	args := []string{"pack-objects", "--all-progress-implied", "--revs", "--stdout"}
	if thin {
		args = append(args, "--thin")
	}
	if ofsDelta {
		args = append(args, "--delta-base-offset")
	}
	if isTerminal(os.Stderr) {
		args = append(args, "--progress")
	} else {
		args = append(args, "-q")
	}
	var in strings.Builder
	for _, t := range tips {
		in.WriteString(t + "\n")
	}
	for _, e := range exclude {
		in.WriteString("^" + e + "\n")
	}
	cmd := l.command(args...)
	cmd.Stdin = strings.NewReader(in.String())
	cmd.Stdout = w
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			return fmt.Errorf("git pack-objects failed (exit status %d)", exit.ExitCode())
		}
		return fmt.Errorf("git pack-objects: %w", err)
	}
	return nil
}
