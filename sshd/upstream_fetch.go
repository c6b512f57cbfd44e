package sshd

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"golang.org/x/crypto/ssh"
)

// upstreamCommand is the exec request that runs service on repo at a Git
// host: the path every host takes ("org/repo.git"), quoted as git quotes
// it. Repository names hold no quote (see ParseCommand).
func upstreamCommand(service Service, repo string) string {
	return string(service) + " '" + repo + ".git'"
}

// fetch relays a fetch (or ls-remote, or clone) from the Git host. A
// holder who may read every ref gets the host's answer as it is; anyone
// else gets an advertisement cut down to the refs the grant lets them
// read, in protocol v0, and only those tips may be asked for.
func (u *Upstream) fetch(ctx context.Context, client *ssh.Client, d Decision, gitProtocol string, stdio Stdio) (Result, error) {
	sess, err := client.NewSession()
	if err != nil {
		fmt.Fprintln(stdio.Err, upstreamClientMessage(err))
		return Result{}, fmt.Errorf("%w: open session: %w", ErrUpstream, err)
	}
	defer sess.Close()
	whole := DecideRef(d.Grants, d.Command.Repo, "", RefListAll).Allowed
	version := protocolVersion(gitProtocol)
	if !whole || version != "2" {
		version = "0"
	} else if sess.Setenv("GIT_PROTOCOL", "version=2") != nil {
		// A host that takes no environment answers in v0, and the client
		// follows.
		version = "0"
	}
	upIn, upOut, err := startUpstream(sess, upstreamCommand(UploadPack, d.Command.Repo), stdio.Err)
	if err != nil {
		fmt.Fprintln(stdio.Err, upstreamClientMessage(err))
		return Result{}, err
	}
	res := Result{Protocol: version}
	if whole {
		go copyThenClose(upIn, stdio.In)
		_, copyErr := io.Copy(stdio.Out, upOut)
		return res, upstreamDone(sess, copyErr)
	}

	br := bufio.NewReaderSize(upOut, 64<<10)
	adv, err := readAdvert(br)
	if err != nil {
		var said errHostSaid
		if errors.As(err, &said) {
			_ = writePkt(stdio.Out, []byte("ERR "+said.msg+"\n"))
		}
		return res, err
	}
	shown := adv.forHolder(d)
	shown.caps = fetchCaps(d, adv.caps)
	if err := shown.write(stdio.Out); err != nil {
		return res, fmt.Errorf("send ref advertisement: %w", err)
	}
	guard := &requestGuard{r: stdio.In, out: stdio.Out, vet: upstreamFetchVetter(d, shown.tips())}
	refused := make(chan error, 1)
	go func() {
		_, err := io.Copy(upIn, guard)
		upIn.Close()
		if errors.Is(err, errRequestRefused) {
			refused <- err
			// Nothing of the refused request reaches the host, and its
			// complaint about the cut-off request would only confuse.
			sess.Close()
		}
		close(refused)
	}()
	_, copyErr := io.Copy(stdio.Out, br)
	err = upstreamDone(sess, copyErr)
	select {
	case r := <-refused:
		if r != nil {
			return res, r
		}
	default:
	}
	return res, err
}

// fetchCaps are the capabilities a ref-scoped reader is offered: none that
// would fetch by object id, follow tags the grant does not cover, filter
// (missing objects are fetched later by id), or resolve --shallow-exclude
// among hidden refs; HEAD's target only when the grant covers it.
func fetchCaps(d Decision, caps []string) []string {
	may := func(op RefOp) bool { return DecideRef(d.Grants, d.Command.Repo, "", op).Allowed }
	return slices.DeleteFunc(slices.Clone(caps), func(c string) bool {
		switch c {
		case "allow-tip-sha1-in-want", "allow-reachable-sha1-in-want":
			return !may(RefFetchByID)
		case "include-tag":
			return !may(RefIncludeTag)
		case "filter":
			return !may(RefFilter)
		case "deepen-not":
			return !may(RefDeepenNot)
		}
		if target, ok := strings.CutPrefix(c, "symref=HEAD:"); ok {
			return !DecideRef(d.Grants, d.Command.Repo, target, RefRead).Allowed
		}
		return false
	})
}

// upstreamFetchVetter checks each line of a ref-scoped reader's wants: a
// want must name a tip the reader was shown, a filter is refused, and
// deepen-not and include-tag are handled as on disk (fetchVetter).
func upstreamFetchVetter(d Decision, tips map[string]bool) func(line []byte) ([]byte, string) {
	onDisk := fetchVetter(d)
	filter := DecideRef(d.Grants, d.Command.Repo, "", RefFilter)
	return func(line []byte) ([]byte, string) {
		if rest, ok := bytes.CutPrefix(line, []byte("want ")); ok {
			oid, _, _ := bytes.Cut(bytes.TrimSuffix(rest, []byte("\n")), []byte(" "))
			if !tips[string(oid)] {
				return nil, "jitssh: " + DecideRef(d.Grants, d.Command.Repo, "", RefFetchByID).Reason() +
					": want " + truncate(string(oid)) + " is not a tip you were shown"
			}
		}
		if bytes.HasPrefix(line, []byte("filter ")) && !filter.Allowed {
			return nil, "jitssh: " + filter.Reason()
		}
		if onDisk != nil {
			return onDisk(line)
		}
		return line, ""
	}
}

// startUpstream starts command on sess with pipes for its input and
// output; its stderr goes to the client's.
func startUpstream(sess *ssh.Session, command string, stderr io.Writer) (io.WriteCloser, io.Reader, error) {
	in, err := sess.StdinPipe()
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrUpstream, err)
	}
	out, err := sess.StdoutPipe()
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrUpstream, err)
	}
	sess.Stderr = stderr
	if err := sess.Start(command); err != nil {
		return nil, nil, fmt.Errorf("%w: start %s: %w", ErrUpstream, command, err)
	}
	return in, out, nil
}

// copyThenClose copies the client's input upstream, then ends it. Like
// Git.run it is abandoned, not waited for, once the host is done.
func copyThenClose(dst io.WriteCloser, src io.Reader) {
	_, _ = io.Copy(dst, src)
	dst.Close()
}

// upstreamDone waits for the host's command and reports how it ended.
func upstreamDone(sess *ssh.Session, copyErr error) error {
	err := sess.Wait()
	var exit *ssh.ExitError
	switch {
	case errors.As(err, &exit):
		return fmt.Errorf("the Git host's command exited with status %d", exit.ExitStatus())
	case err != nil:
		return fmt.Errorf("%w: %w", ErrUpstream, err)
	case copyErr != nil:
		return fmt.Errorf("relay from the Git host: %w", copyErr)
	}
	return nil
}
