package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
)

// This file reads and writes the parts of Git's pack protocol that
// git-ssh sees on a push: the server's ref advertisement (protocol v0 and
// v1; push has no v2), git's ref-update commands, and the report git waits
// for at the end. Nothing here changes bytes it passes on.

// pktMaxLen is the largest pkt-line, its four-digit header included.
const pktMaxLen = 65520

// errPktFlush marks a flush packet ("0000").
var errPktFlush = errors.New("flush packet")

// readPktLine reads one pkt-line from r and returns its payload and the
// bytes read, header included. A flush packet returns errPktFlush (with
// raw set); a delimiter or response-end packet, which push never sends,
// is an error. On any error raw still holds every byte consumed, so that
// a caller passing the stream on loses nothing.
func readPktLine(r io.Reader) (payload, raw []byte, err error) {
	var hdr [4]byte
	if m, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, hdr[:m], err
	}
	n, err := strconv.ParseUint(string(hdr[:]), 16, 16)
	if err != nil {
		return nil, hdr[:], fmt.Errorf("bad pkt-line length %q", hdr[:])
	}
	switch {
	case n == 0:
		return nil, hdr[:], errPktFlush
	case n < 4 || n > pktMaxLen:
		return nil, hdr[:], fmt.Errorf("bad pkt-line length %d", n)
	}
	raw = make([]byte, n)
	copy(raw, hdr[:])
	if m, err := io.ReadFull(r, raw[4:]); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, raw[:4+m], err
	}
	return raw[4:], raw, nil
}

// pkt frames payload as one pkt-line.
func pkt(payload string) []byte {
	return fmt.Appendf(nil, "%04x%s", len(payload)+4, payload)
}

const pktFlushBytes = "0000"

// zeroOID is git's "no object" in SHA-1 and SHA-256 lengths alike.
func isZeroOID(id string) bool { return strings.Trim(id, "0") == "" }

// isOID reports whether s is a hex object name of either hash length.
func isOID(s string) bool {
	if len(s) != 40 && len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// refAdvert is a receive-pack ref advertisement.
type refAdvert struct {
	refs map[string]string // ref name -> object name
	caps []string
}

// has reports whether the advertisement offers capability c (a name, or
// name=value).
func (a refAdvert) has(c string) bool { return slices.Contains(a.caps, c) }

// readRefAdvert reads a receive-pack advertisement up to its flush,
// writing every packet it reads to tee as soon as it is read (nil: to
// nobody). An "ERR" packet ends it with the server's message.
func readRefAdvert(r io.Reader, tee io.Writer) (refAdvert, error) {
	adv := refAdvert{refs: map[string]string{}}
	first := true
	for {
		line, raw, err := readPktLine(r)
		if tee != nil && raw != nil {
			if _, werr := tee.Write(raw); werr != nil {
				return adv, werr
			}
		}
		if errors.Is(err, errPktFlush) {
			return adv, nil
		}
		if err != nil {
			return adv, fmt.Errorf("read the ref advertisement: %w", err)
		}
		text := strings.TrimSuffix(string(line), "\n")
		if msg, ok := strings.CutPrefix(text, "ERR "); ok {
			return adv, fmt.Errorf("the server says: %s", msg)
		}
		if first && text == "version 1" {
			continue
		}
		if first {
			if ref, caps, ok := strings.Cut(text, "\x00"); ok {
				text, adv.caps = ref, strings.Fields(caps)
			}
			first = false
		}
		id, name, ok := strings.Cut(text, " ")
		if !ok || !isOID(id) {
			return adv, fmt.Errorf("read the ref advertisement: bad line %q", cutLine(text))
		}
		// "capabilities^{}" names no ref (an empty repository), ".have"
		// an object of an alternate.
		if name == "capabilities^{}" || name == ".have" {
			continue
		}
		adv.refs[name] = id
	}
}

// refCmd is one ref update git asks for.
type refCmd struct{ old, new, ref string }

func (c refCmd) line() string { return c.old + " " + c.new + " " + c.ref }

// pushRequest is what git sends after the advertisement, before the pack.
type pushRequest struct {
	cmds []refCmd
	caps []string
	// options are push options (-o), sent when git and the server agree
	// on push-options.
	options []string
	// shallow: git pushes from a shallow clone and named its boundaries,
	// which git-ssh does not send again itself.
	shallow bool
	// signed: a signed push (push-cert), passed on untouched; its
	// commands are inside the certificate and cmds is empty.
	signed bool
	// raw is every byte read, to pass on unchanged.
	raw []byte
}

func (p pushRequest) wants(c string) bool { return slices.Contains(p.caps, c) }

// replayable reports whether git-ssh can send the request again itself.
func (p pushRequest) replayable() bool { return !p.shallow && !p.signed }

// needsPack reports whether git sends a pack after the commands: it does
// unless every command is a deletion.
func (p pushRequest) needsPack() bool {
	for _, c := range p.cmds {
		if !isZeroOID(c.new) {
			return true
		}
	}
	return false
}

// readPushRequest reads git's ref-update commands, and its push options
// when it sends any, up to where the pack would start.
func readPushRequest(r io.Reader) (pushRequest, error) {
	var req pushRequest
	add := func(raw []byte) { req.raw = append(req.raw, raw...) }
	for {
		line, raw, err := readPktLine(r)
		add(raw)
		if errors.Is(err, errPktFlush) {
			break
		}
		if err != nil {
			return req, fmt.Errorf("read git's ref updates: %w", err)
		}
		text := strings.TrimSuffix(string(line), "\n")
		switch {
		case strings.HasPrefix(text, "shallow "):
			req.shallow = true
			continue
		case strings.HasPrefix(text, "push-cert"):
			// A signed push: the commands come inside the certificate.
			// It is passed on untouched, never replayed.
			req.signed = true
			return req, nil
		}
		if len(req.cmds) == 0 {
			if cmd, caps, ok := strings.Cut(text, "\x00"); ok {
				text, req.caps = cmd, strings.Fields(caps)
			}
		}
		f := strings.Fields(text)
		if len(f) != 3 || !isOID(f[0]) || !isOID(f[1]) {
			return req, fmt.Errorf("read git's ref updates: bad line %q", cutLine(text))
		}
		req.cmds = append(req.cmds, refCmd{old: f[0], new: f[1], ref: f[2]})
	}
	if len(req.cmds) > 0 && req.wants("push-options") {
		for {
			line, raw, err := readPktLine(r)
			add(raw)
			if errors.Is(err, errPktFlush) {
				break
			}
			if err != nil {
				return req, fmt.Errorf("read git's push options: %w", err)
			}
			req.options = append(req.options, strings.TrimSuffix(string(line), "\n"))
		}
	}
	return req, nil
}

// encodePushRequest writes a request as git would: cmds with caps on the
// first, then the push options section when caps has push-options.
func encodePushRequest(cmds []refCmd, caps []string, options []string) []byte {
	var b bytes.Buffer
	for i, c := range cmds {
		line := c.line()
		if i == 0 {
			line += "\x00" + strings.Join(caps, " ")
		}
		b.Write(pkt(line + "\n"))
	}
	b.WriteString(pktFlushBytes)
	if slices.Contains(caps, "push-options") {
		for _, o := range options {
			b.Write(pkt(o + "\n"))
		}
		b.WriteString(pktFlushBytes)
	}
	return b.Bytes()
}

// synthAdvert is a receive-pack advertisement of refs with the
// capabilities a jitssh Git server offers (push options, signed pushes
// and protocol extras are left out), in objectFormat.
func synthAdvert(refs map[string]string, objectFormat string) []byte {
	caps := "report-status report-status-v2 delete-refs side-band-64k quiet atomic ofs-delta object-format=" + objectFormat + " agent=jitssh-git-ssh"
	names := make([]string, 0, len(refs))
	for n := range refs {
		names = append(names, n)
	}
	slices.Sort(names)
	var b bytes.Buffer
	if len(names) == 0 {
		zero := strings.Repeat("0", 40)
		if objectFormat == "sha256" {
			zero = strings.Repeat("0", 64)
		}
		b.Write(pkt(zero + " capabilities^{}\x00" + caps + "\n"))
	}
	for i, n := range names {
		line := refs[n] + " " + n
		if i == 0 {
			line += "\x00" + caps
		}
		b.Write(pkt(line + "\n"))
	}
	b.WriteString(pktFlushBytes)
	return b.Bytes()
}

// refResult is the server's word on one ref: ok, or a reason it was not
// updated.
type refResult struct {
	ref    string
	reason string // "" for ok
}

// encodeReport is the report-status git waits for after its pack, in the
// framing the request asked for: inside side-band channel 1 when git asked
// for a side band. A request without report-status expects no report.
func encodeReport(req pushRequest, results []refResult) []byte {
	if !req.wants("report-status") && !req.wants("report-status-v2") {
		return nil
	}
	var rep bytes.Buffer
	rep.Write(pkt("unpack ok\n"))
	for _, r := range results {
		if r.reason == "" {
			rep.Write(pkt("ok " + r.ref + "\n"))
			continue
		}
		rep.Write(pkt("ng " + r.ref + " " + reportReason(r.reason) + "\n"))
	}
	rep.WriteString(pktFlushBytes)
	if !req.wants("side-band-64k") && !req.wants("side-band") {
		return rep.Bytes()
	}
	max := pktMaxLen - 5
	if !req.wants("side-band-64k") {
		max = 1000 - 5
	}
	var out bytes.Buffer
	for data := rep.Bytes(); len(data) > 0; {
		n := min(len(data), max)
		out.Write(pkt("\x01" + string(data[:n])))
		data = data[n:]
	}
	out.WriteString(pktFlushBytes)
	return out.Bytes()
}

// reportReason keeps a reason to one printable line, as a report line must be.
func reportReason(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	return cutLine(s)
}

// cutLine shortens hostile or huge input before it reaches a message.
func cutLine(s string) string {
	const max = 200
	if len(s) > max {
		return s[:max] + "..."
	}
	return s
}
