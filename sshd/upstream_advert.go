package sshd

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
)

// advertisement is a Git host's ref advertisement in protocol v0 or v1,
// as upload-pack and receive-pack send it before anything else.
type advertisement struct {
	version1 bool
	refs     []advertRef
	caps     []string
	// shallow are upload-pack's "shallow <oid>" lines (the host's
	// repository is shallow); haves are receive-pack's ".have" lines.
	shallow []string
	haves   []string
	// idLen is the length of an object id in hex: 40 (SHA-1) or 64.
	idLen int
}

// advertRef is one advertised ref and, for an annotated tag, the object
// it peels to ("" when not advertised).
type advertRef struct {
	oid, name, peeled string
}

// errHostSaid is the host's own refusal (an "ERR" packet), passed on to
// the client as it is.
type errHostSaid struct{ msg string }

func (e errHostSaid) Error() string { return "the Git host said: " + e.msg }

// maxAdvertRefs bounds what the proxy holds of one advertisement.
const maxAdvertRefs = 1 << 20

// readAdvert reads one advertisement, up to and including its flush.
func readAdvert(r io.Reader) (*advertisement, error) {
	a := &advertisement{}
	first := true
	for {
		line, err := readPkt(r)
		if errors.Is(err, errFlush) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read the Git host's ref advertisement: %w", err)
		}
		text := strings.TrimSuffix(string(line), "\n")
		if msg, ok := strings.CutPrefix(text, "ERR "); ok {
			return nil, errHostSaid{msg: msg}
		}
		if first && text == "version 1" {
			a.version1 = true
			continue
		}
		if oid, ok := strings.CutPrefix(text, "shallow "); ok {
			a.shallow = append(a.shallow, oid)
			continue
		}
		if first {
			first = false
			var caps string
			text, caps, _ = strings.Cut(text, "\x00")
			a.caps = strings.Fields(caps)
		}
		oid, name, ok := strings.Cut(text, " ")
		if !ok || !isObjectID(oid) {
			return nil, fmt.Errorf("read the Git host's ref advertisement: bad line %q", truncate(text))
		}
		if a.idLen == 0 {
			a.idLen = len(oid)
		}
		switch {
		case name == "capabilities^{}":
			// An empty repository: the line only carries capabilities.
		case name == ".have":
			a.haves = append(a.haves, oid)
		case strings.HasSuffix(name, "^{}"):
			if n := len(a.refs); n > 0 && a.refs[n-1].name == strings.TrimSuffix(name, "^{}") {
				a.refs[n-1].peeled = oid
			}
		default:
			if len(a.refs) >= maxAdvertRefs {
				return nil, fmt.Errorf("read the Git host's ref advertisement: more than %d refs", maxAdvertRefs)
			}
			a.refs = append(a.refs, advertRef{oid: oid, name: name})
		}
	}
	if a.idLen == 0 {
		a.idLen = 40
	}
	return a, nil
}

// isObjectID reports whether s is a hex object id of either length.
func isObjectID(s string) bool {
	if len(s) != 40 && len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// write sends the advertisement in git's own layout: capabilities on the
// first line, a capabilities^{} line for a repository with nothing to
// show, then the flush.
func (a *advertisement) write(w io.Writer) error {
	var b bytes.Buffer
	if a.version1 {
		if err := writePkt(&b, []byte("version 1\n")); err != nil {
			return err
		}
	}
	caps := "\x00" + strings.Join(a.caps, " ")
	line := func(oid, name string) error {
		err := writePkt(&b, []byte(oid+" "+name+caps+"\n"))
		caps = ""
		return err
	}
	for _, r := range a.refs {
		if err := line(r.oid, r.name); err != nil {
			return err
		}
		if r.peeled != "" {
			if err := line(r.peeled, r.name+"^{}"); err != nil {
				return err
			}
		}
	}
	for _, h := range a.haves {
		if err := line(h, ".have"); err != nil {
			return err
		}
	}
	if caps != "" {
		if err := line(strings.Repeat("0", a.idLen), "capabilities^{}"); err != nil {
			return err
		}
	}
	for _, s := range a.shallow {
		if err := writePkt(&b, []byte("shallow "+s+"\n")); err != nil {
			return err
		}
	}
	if err := writeFlush(&b); err != nil {
		return err
	}
	_, err := w.Write(b.Bytes())
	return err
}

// has reports whether the advertisement lists capability name (a bare
// name, or name=value).
func (a *advertisement) has(name string) bool {
	return slices.ContainsFunc(a.caps, func(c string) bool { return c == name || strings.HasPrefix(c, name+"=") })
}

// capValue returns the value of capability name=value, "" when absent.
func (a *advertisement) capValue(name string) string {
	for _, c := range a.caps {
		if v, ok := strings.CutPrefix(c, name+"="); ok {
			return v
		}
	}
	return ""
}

// forHolder returns what the holder of d may be shown: the refs DecideRef
// lets them read, HEAD only when it points into them, and none of the
// host's shallow boundaries or alternates' objects. The capabilities are
// left to the caller.
func (a *advertisement) forHolder(d Decision) *advertisement {
	readable := func(ref string) bool { return DecideRef(d.Grants, d.Command.Repo, ref, RefRead).Allowed }
	out := &advertisement{version1: a.version1, idLen: a.idLen, caps: slices.Clone(a.caps)}
	headTarget := a.capValue("symref") // "HEAD:refs/heads/main"
	headTarget, headIsSym := strings.CutPrefix(headTarget, "HEAD:")
	for _, r := range a.refs {
		switch {
		case r.name == "HEAD":
			if headIsSym && readable(headTarget) {
				out.refs = append(out.refs, r)
			}
		case readable(r.name):
			out.refs = append(out.refs, r)
		}
	}
	return out
}

// tips returns the object ids the advertisement offers: each ref's and
// each tag's peeled object.
func (a *advertisement) tips() map[string]bool {
	tips := make(map[string]bool, 2*len(a.refs))
	for _, r := range a.refs {
		tips[r.oid] = true
		if r.peeled != "" {
			tips[r.peeled] = true
		}
	}
	return tips
}
