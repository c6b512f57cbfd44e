package sshd

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
)

// fence is the reachability fence of a ref-scoped writer's push through
// the proxy, the same rule as on disk: every object the pushed tips reach
// must either arrive in the push or be reachable from refs the writer may
// read. The proxy holds only the pack, so it fetches from the host the
// history of the refs the writer was shown (commits and trees, no blobs
// where the host can leave them out), deeper each round, up to
// maxFenceDepth commits: every commit the pack builds on must turn up in
// it, and every tree or blob the pack names without carrying must be in
// their trees. Anything else (a commit on a hidden parent, a tree naming a
// hidden blob, a branch set to a hidden commit) is refused, and so is a
// push building on a commit further below the shown refs than that.
func (p *pushCheck) fence() error {
	var tips []string
	for _, c := range p.req.cmds {
		if !isZeroID(c.new) {
			tips = append(tips, c.new)
		}
	}
	_, boundary, err := p.store.reach(tips, p.pushed)
	if err != nil {
		return err
	}
	shownTips := p.shown.tips()
	var bases []string   // commits (or tags) the pack builds on
	var content []string // trees and blobs it names without carrying
	onTips := true
	for oid, typ := range boundary {
		if isContent(typ) {
			content = append(content, oid)
			continue
		}
		bases = append(bases, oid)
		onTips = onTips && shownTips[oid]
	}
	if len(boundary) == 0 || onTips && len(content) == 0 {
		return nil
	}
	var wants []string
	for _, r := range p.shown.refs {
		if !slices.Contains(wants, r.oid) {
			wants = append(wants, r.oid)
		}
	}
	if len(wants) == 0 {
		return errOutsideGrant
	}
	// Most pushes build on a shown tip or a little below it (an amended
	// commit): the first round is shallow, later ones go deeper.
	for depth := 16; ; depth *= 16 {
		complete, err := p.fetchHistory(wants, depth)
		if err != nil {
			return fmt.Errorf("fetch the history the push builds on: %w", err)
		}
		found := true
		for _, b := range bases {
			n, err := p.store.node(b)
			if err != nil {
				return err
			}
			found = found && n.present
		}
		if found {
			break
		}
		if complete || depth >= maxFenceDepth {
			return errOutsideGrant
		}
	}
	known, nameable, err := p.store.reach(bases, nil)
	if err != nil {
		return err
	}
	for _, oid := range content {
		if !known[oid] && !isContent(nameable[oid]) {
			return errOutsideGrant
		}
	}
	return nil
}

// maxFenceDepth is how far below the refs a writer may read a push
// through the proxy may build.
const maxFenceDepth = 4096

func isContent(typ string) bool { return typ == "tree" || typ == "blob" }

// fetchHistory fetches from the host the history of wants (advertised
// tips) down to depth commits, with trees and, where the host can leave
// them out, without blobs. complete reports that the host cut nothing
// off: the whole history is there.
func (p *pushCheck) fetchHistory(wants []string, depth int) (complete bool, err error) {
	sess, err := p.client.NewSession()
	if err != nil {
		return false, fmt.Errorf("%w: open session: %w", ErrUpstream, err)
	}
	defer sess.Close()
	var stderr bytes.Buffer
	upIn, upOut, err := startUpstream(sess, upstreamCommand(UploadPack, p.d.Command.Repo), &stderr)
	if err != nil {
		return false, err
	}
	defer upIn.Close()
	adv, err := readAdvert(upOut)
	if err != nil {
		return false, err
	}
	caps := []string{"side-band-64k", "ofs-delta", "shallow", "no-progress", "agent=jitssh"}
	filter := adv.has("filter")
	if filter {
		caps = append(caps, "filter")
	}
	if f := adv.capValue("object-format"); f != "" {
		caps = append(caps, "object-format="+f)
	}
	var b bytes.Buffer
	for i, w := range wants {
		line := "want " + w
		if i == 0 {
			line += " " + strings.Join(caps, " ")
		}
		_ = writePkt(&b, []byte(line+"\n"))
	}
	_ = writePkt(&b, []byte(fmt.Sprintf("deepen %d\n", depth)))
	if filter {
		_ = writePkt(&b, []byte("filter blob:none\n"))
	}
	_ = writeFlush(&b)
	_ = writePkt(&b, []byte("done\n"))
	if _, err := upIn.Write(b.Bytes()); err != nil {
		return false, fmt.Errorf("%w: send request: %w", ErrUpstream, err)
	}
	// The shallow section, ended by a flush, then NAK, then the pack in
	// the side band.
	complete = true
	for {
		line, err := readPkt(upOut)
		if errors.Is(err, errFlush) {
			break
		} else if err != nil {
			return false, fmt.Errorf("%w: read shallow lines: %w (%s)", ErrUpstream, err, truncate(stderr.String()))
		}
		if bytes.HasPrefix(line, []byte("shallow ")) {
			complete = false
		}
	}
	if nak, err := readPkt(upOut); err != nil || !bytes.HasPrefix(nak, []byte("NAK")) {
		return false, fmt.Errorf("%w: want NAK, got %q: %v (%s)", ErrUpstream, truncate(string(nak)), err, truncate(stderr.String()))
	}
	pr, pw := io.Pipe()
	indexed := make(chan error, 1)
	go func() {
		err := p.store.addPack(p.ctx, pr)
		_, _ = io.Copy(io.Discard, pr) // let the writer finish should git stop early
		indexed <- err
	}()
	err = demuxPack(upOut, pw)
	pw.CloseWithError(err)
	if ierr := <-indexed; err == nil {
		err = ierr
	}
	return complete, err
}

// demuxPack copies side band 1 of a fetch response to w until its flush;
// band 3 is the host's fatal error.
func demuxPack(r io.Reader, w io.Writer) error {
	for {
		pkt, err := readPkt(r)
		if errors.Is(err, errFlush) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%w: read pack: %w", ErrUpstream, err)
		}
		if len(pkt) == 0 {
			continue
		}
		switch pkt[0] {
		case 1:
			if _, err := w.Write(pkt[1:]); err != nil {
				return err
			}
		case 3:
			return fmt.Errorf("%w: %s", ErrUpstream, truncate(strings.TrimSpace(string(pkt[1:]))))
		}
	}
}
