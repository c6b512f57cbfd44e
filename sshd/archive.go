package sshd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"

	"github.com/jitssh/jitssh/principals"
)

// ErrArchiveRefused is returned when an archive request names something
// the grants do not cover, or uses an option jitssh does not allow.
var ErrArchiveRefused = errors.New("archive refused")

// maxArchiveArgs mirrors git's own limit on upload-archive arguments.
const maxArchiveArgs = 64

// uploadArchive serves git archive --remote. git upload-archive ignores
// hidden refs and serves any ref by name, so jitssh reads the client's
// arguments itself, resolves the tree-ish to a full ref name, checks the
// grants, and hands git the rewritten arguments. A refusal reaches the
// client as git's own "NACK <reason>".
func (g *Git) uploadArchive(ctx context.Context, d Decision, stdio Stdio) error {
	args, err := readArchiveArgs(stdio.In)
	if err != nil {
		return fmt.Errorf("read archive request: %w", err)
	}
	rewritten, err := g.checkArchiveArgs(ctx, d, args)
	if err != nil {
		nack(stdio.Out, err)
		return err
	}
	var req bytes.Buffer
	for _, a := range rewritten {
		if err := writePkt(&req, []byte("argument "+a)); err != nil {
			return err
		}
	}
	if err := writeFlush(&req); err != nil {
		return err
	}
	in := io.MultiReader(&req, stdio.In)
	cfg := append([]string(nil), safeConfig...)
	return g.run(ctx, cfg, []string{"upload-archive", d.Path}, g.env, Stdio{In: in, Out: stdio.Out, Err: stdio.Err})
}

func nack(w io.Writer, err error) {
	msg := "not allowed"
	var refusal *archiveRefusal
	if errors.As(err, &refusal) {
		msg = refusal.msg
	}
	_ = writePkt(w, []byte("NACK jitssh: "+msg+"\n"))
	_ = writeFlush(w)
}

type archiveRefusal struct{ msg string }

func (e *archiveRefusal) Error() string { return ErrArchiveRefused.Error() + ": " + e.msg }
func (e *archiveRefusal) Unwrap() error { return ErrArchiveRefused }

func refuseArchive(format string, a ...any) error {
	return &archiveRefusal{msg: fmt.Sprintf(format, a...)}
}

func readArchiveArgs(r io.Reader) ([]string, error) {
	var args []string
	for {
		p, err := readPkt(r)
		if errors.Is(err, errFlush) {
			return args, nil
		}
		if err != nil {
			return nil, err
		}
		a, ok := strings.CutPrefix(strings.TrimSuffix(string(p), "\n"), "argument ")
		if !ok {
			return nil, fmt.Errorf("unexpected archive packet %q", truncate(string(p)))
		}
		if len(args) == maxArchiveArgs {
			return nil, fmt.Errorf("more than %d archive arguments", maxArchiveArgs)
		}
		args = append(args, a)
	}
}

// checkArchiveArgs allows only options that shape the output, exactly one
// tree-ish that names a granted ref, and paths inside it. It returns the
// arguments with the tree-ish replaced by the full ref name it resolved
// to, so git cannot resolve it differently.
func (g *Git) checkArchiveArgs(ctx context.Context, d Decision, args []string) ([]string, error) {
	out := make([]string, 0, len(args))
	i := 0
	for ; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			out = append(out, a)
			i++
			break
		}
		if !strings.HasPrefix(a, "-") {
			break
		}
		if !allowedArchiveOption(a) {
			return nil, refuseArchive("option %q is not allowed", truncate(a))
		}
		out = append(out, a)
	}
	if i >= len(args) {
		return nil, refuseArchive("no tree-ish given")
	}
	treeish := args[i]
	name, path, hasPath := strings.Cut(treeish, ":")
	ref, err := g.resolveArchiveRef(ctx, d, name)
	if err != nil {
		return nil, err
	}
	// The refusal names what the client gave, not what it resolved to.
	if dec := DecideRef(d.Grants, d.Command.Repo, ref, RefRead); !dec.Allowed {
		return nil, refuseArchive("%s", dec.ReasonAs(name))
	}
	if hasPath {
		ref += ":" + path
	}
	out = append(out, ref)
	out = append(out, args[i+1:]...)
	return out, nil
}

func allowedArchiveOption(a string) bool {
	if len(a) == 2 && a[0] == '-' && '0' <= a[1] && a[1] <= '9' {
		return true
	}
	if f, ok := strings.CutPrefix(a, "--format="); ok {
		switch f {
		case "tar", "zip", "tar.gz", "tgz":
			return true
		}
		return false
	}
	return strings.HasPrefix(a, "--prefix=") || a == "-v" || a == "--verbose"
}

// resolveArchiveRef turns the name a client gave (short like "main", or
// full, or HEAD) into the full ref it names, the way git itself would.
// Object ids and revision expressions are refused: only refs are served. A
// name that resolves to nothing is refused as a hidden one is.
func (g *Git) resolveArchiveRef(ctx context.Context, d Decision, name string) (string, error) {
	if name != "HEAD" && (strings.HasPrefix(name, "-") || principals.CheckRefName("refs/"+name) != nil) {
		return "", refuseArchive("%q is not a ref name", truncate(name))
	}
	cmd := exec.CommandContext(ctx, g.git, "rev-parse", "--verify", "--quiet", "--symbolic-full-name", name)
	cmd.Dir = d.Path
	cmd.Env = append(g.env[:len(g.env):len(g.env)], "GIT_DIR="+d.Path)
	b, err := cmd.Output()
	full := strings.TrimSpace(string(b))
	if err != nil || !strings.HasPrefix(full, "refs/") || principals.CheckRefName(full) != nil {
		// No ref at all: the same words as a ref outside the grant.
		return "", refuseArchive("%s", DecideRef(nil, d.Command.Repo, "", RefRead).ReasonAs(name))
	}
	return full, nil
}
