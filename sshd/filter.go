package sshd

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
)

// advertWriter passes git's ref advertisement through, letting edit change
// the capability list of its first ref line (the one after "version 1",
// if any). Everything after that line passes untouched.
type advertWriter struct {
	w    io.Writer
	edit func(caps []string) []string
	buf  []byte
	done bool
}

func (a *advertWriter) Write(p []byte) (int, error) {
	if a.done {
		return a.w.Write(p)
	}
	a.buf = append(a.buf, p...)
	for !a.done {
		if len(a.buf) < pktHeaderLen {
			return len(p), nil
		}
		size, err := strconv.ParseUint(string(a.buf[:pktHeaderLen]), 16, 16)
		if err != nil || (size != 0 && size < pktHeaderLen) {
			return 0, fmt.Errorf("ref advertisement: bad pkt-line length %q", a.buf[:pktHeaderLen])
		}
		if size == 0 { // flush before any ref line: nothing to amend
			a.done = true
			break
		}
		if len(a.buf) < int(size) {
			return len(p), nil
		}
		line, rest := a.buf[pktHeaderLen:size], a.buf[size:]
		if string(line) == "version 1\n" {
			if _, err := a.w.Write(a.buf[:size]); err != nil {
				return 0, err
			}
			a.buf = rest
			continue
		}
		if i := bytes.IndexByte(line, 0); i >= 0 {
			caps := a.edit(strings.Fields(string(line[i+1:])))
			amended := append(line[:i+1:i+1], strings.Join(caps, " ")+"\n"...)
			var out bytes.Buffer
			if err := writePkt(&out, amended); err != nil {
				return 0, err
			}
			if _, err := a.w.Write(out.Bytes()); err != nil {
				return 0, err
			}
			a.buf = rest
		}
		a.done = true
	}
	if len(a.buf) > 0 {
		if _, err := a.w.Write(a.buf); err != nil {
			return 0, err
		}
	}
	a.buf = nil
	return len(p), nil
}

// errRequestRefused ends a client's input to git after requestGuard has
// told the client why.
var errRequestRefused = errors.New("fetch request refused")

// requestGuard passes a fetch request to git, letting vet check and
// rewrite each line of its first section (the wants, up to the first
// flush). At the first line vet gives a reason for, the client gets that
// reason as git's "ERR" packet and git gets the end of its input. Later
// sections pass untouched.
type requestGuard struct {
	r    io.Reader
	out  io.Writer
	vet  func(line []byte) (kept []byte, refusal string)
	buf  []byte // a checked pkt-line not yet handed on
	done bool   // past the first section
}

func (g *requestGuard) Read(p []byte) (int, error) {
	for len(g.buf) == 0 {
		if g.done {
			return g.r.Read(p)
		}
		var hdr [pktHeaderLen]byte
		if _, err := io.ReadFull(g.r, hdr[:]); err != nil {
			return 0, err
		}
		size, err := strconv.ParseUint(string(hdr[:]), 16, 16)
		if err != nil || (size != 0 && size < pktHeaderLen) {
			return 0, fmt.Errorf("fetch request: bad pkt-line length %q", hdr[:])
		}
		if size == 0 {
			g.done = true
			g.buf = append(g.buf, hdr[:]...)
			break
		}
		pkt := make([]byte, size)
		copy(pkt, hdr[:])
		if _, err := io.ReadFull(g.r, pkt[pktHeaderLen:]); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF // the header promised more
			}
			return 0, err
		}
		kept, reason := g.vet(pkt[pktHeaderLen:])
		if reason != "" {
			_ = writePkt(g.out, []byte("ERR "+reason+"\n"))
			return 0, fmt.Errorf("%w: %s", errRequestRefused, reason)
		}
		if !bytes.Equal(kept, pkt[pktHeaderLen:]) {
			var b bytes.Buffer
			if err := writePkt(&b, kept); err != nil {
				return 0, err
			}
			pkt = b.Bytes()
		}
		g.buf = pkt
	}
	n := copy(p, g.buf)
	g.buf = g.buf[n:]
	return n, nil
}

// fetchVetter returns the check of a fetch request's first section for
// the holder of d, or nil when there is nothing to check. Each line is
// put to DecideRef: deepen-not (git fetch --shallow-exclude) is refused
// when the holder may not use it, the same way whatever ref it names, and
// include-tag is dropped from the capabilities of a holder who may not
// follow tags (git would send every annotated tag pointing into the
// fetched history, hidden ones too; tags the grant covers are advertised
// and fetched as refs).
func fetchVetter(d Decision) func(line []byte) ([]byte, string) {
	deepenNot := DecideRef(d.Grants, d.Command.Repo, "", RefDeepenNot)
	includeTag := DecideRef(d.Grants, d.Command.Repo, "", RefIncludeTag)
	if deepenNot.Allowed && includeTag.Allowed {
		return nil
	}
	return func(line []byte) ([]byte, string) {
		if bytes.HasPrefix(line, []byte("deepen-not ")) && !deepenNot.Allowed {
			return nil, "jitssh: " + deepenNot.Reason()
		}
		if bytes.HasPrefix(line, []byte("want ")) && bytes.Contains(line, []byte("include-tag")) && !includeTag.Allowed {
			fields := strings.Fields(string(line))
			kept := slices.DeleteFunc(fields, func(f string) bool { return f == "include-tag" })
			return []byte(strings.Join(kept, " ") + "\n"), ""
		}
		return line, ""
	}
}
