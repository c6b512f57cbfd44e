package sshd

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"golang.org/x/crypto/ssh"
)

// push relays a push to the Git host, holding it to the grant. The client
// gets the host's advertisement cut down to the refs it may read, and is
// asked for a pack without deltas against objects it did not send
// (no-thin). The proxy then reads every ref update and the whole pack
// before anything goes upstream, decides each update with DecideRef, and
// sends the host only the allowed updates and the objects they need; an
// atomic push with one refused ref sends nothing. It writes the client's
// report itself, with the host's answer for what it sent.
func (u *Upstream) push(ctx context.Context, client *ssh.Client, d Decision, stdio Stdio, beforeUpdate func([]RefUpdate) error) (Result, error) {
	res := Result{Protocol: "0"}
	sess, err := client.NewSession()
	if err != nil {
		fmt.Fprintln(stdio.Err, upstreamClientMessage(err))
		return res, fmt.Errorf("%w: open session: %w", ErrUpstream, err)
	}
	defer sess.Close()
	upIn, upOut, err := startUpstream(sess, upstreamCommand(ReceivePack, d.Command.Repo), stdio.Err)
	if err != nil {
		fmt.Fprintln(stdio.Err, upstreamClientMessage(err))
		return res, err
	}
	defer upIn.Close()
	upR := bufio.NewReaderSize(upOut, 64<<10)
	adv, err := readAdvert(upR)
	if err != nil {
		var said errHostSaid
		if errors.As(err, &said) {
			_ = writePkt(stdio.Out, []byte("ERR "+said.msg+"\n"))
		}
		return res, err
	}
	scoped := !DecideRef(d.Grants, d.Command.Repo, "", RefListAll).Allowed
	shown := adv
	if scoped {
		shown = adv.forHolder(d)
	}
	shown = &advertisement{version1: shown.version1, refs: shown.refs, haves: shown.haves, idLen: adv.idLen, caps: pushCaps(adv.caps)}
	if err := shown.write(stdio.Out); err != nil {
		return res, fmt.Errorf("send ref advertisement: %w", err)
	}

	in := bufio.NewReaderSize(stdio.In, 64<<10)
	req, err := readPushRequest(in, adv.idLen)
	if err != nil {
		return res, err
	}
	if len(req.cmds) == 0 {
		// Nothing to do: tell the host so, as the client told us.
		_ = writeFlush(upIn)
		upIn.Close()
		_, copyErr := io.Copy(io.Discard, upR)
		return res, upstreamDone(sess, copyErr)
	}
	p := &pushCheck{u: u, ctx: ctx, client: client, d: d, adv: adv, shown: shown, req: req}
	defer p.close()
	if err := p.receivePack(in); err != nil {
		p.writeReport(stdio, "unpack "+reportWord(err), nil, func(int) string { return "unpacker error" })
		return res, err
	}
	reasons, err := p.decide()
	if err != nil {
		p.writeReport(stdio, "unpack ok", nil, func(int) string { return "jitssh could not check this push" })
		return res, err
	}
	decided := make([]RefUpdate, len(req.cmds))
	for i, c := range req.cmds {
		decided[i] = RefUpdate{Ref: c.ref, Old: c.old, New: c.new, Result: "allowed"}
		if reasons[i] != "" {
			decided[i].Result, decided[i].Reason = "refused", reasons[i]
		}
	}
	if slices.ContainsFunc(decided, func(u RefUpdate) bool { return u.Result == "allowed" }) && beforeUpdate != nil {
		if err := beforeUpdate(decided); err != nil {
			for i := range reasons {
				if reasons[i] == "" {
					reasons[i] = ErrAuditUnavailable.Error()
				}
			}
		}
	}

	var hostReport map[string]string // ref -> "" (ok) or the host's reason
	unpack := "unpack ok"
	if slices.Contains(reasons, "") {
		unpack, hostReport, err = p.forward(upIn, upR, reasons, stdio)
		if err != nil {
			hostReport = nil
			unpack = "unpack ok"
			for i := range reasons {
				if reasons[i] == "" {
					reasons[i] = "the Git host did not answer; it may or may not have taken this update"
				}
			}
			u.opts.Logger.Error("push to the Git host failed", "repo", d.Command.Repo, "err", err)
		}
	} else {
		// Nothing allowed: the host is told of no update at all.
		_ = writeFlush(upIn)
	}
	upIn.Close()
	_, _ = io.Copy(io.Discard, upR)
	hostErr := upstreamDone(sess, nil)

	res.Updates = make([]RefUpdate, len(req.cmds))
	for i, c := range req.cmds {
		up := RefUpdate{Ref: c.ref, Old: c.old, New: c.new, Result: "refused", Reason: reasons[i]}
		if reasons[i] == "" {
			if why, ok := hostReport[c.ref]; !ok {
				up.Reason = "the Git host did not report on this ref"
			} else if why != "" {
				up.Reason = why
			} else {
				up.Result = "updated"
			}
		}
		res.Updates[i] = up
	}
	p.writeReport(stdio, unpack, res.Updates, nil)
	if err == nil && hostErr != nil && hostReport == nil {
		err = hostErr
	}
	return res, err
}

// pushCaps are the capabilities a pusher is offered: those jitssh relays
// as they are, and no-thin, so that the pack holds every object it
// refers to by delta. Push options and signed pushes are not relayed.
func pushCaps(caps []string) []string {
	var out []string
	for _, c := range caps {
		name, _, _ := strings.Cut(c, "=")
		switch name {
		case "report-status", "delete-refs", "side-band-64k", "quiet", "atomic", "ofs-delta", "object-format", "agent":
			out = append(out, c)
		}
	}
	return append(out, "no-thin")
}

// pushRequest is what a pusher sends before its pack.
type pushRequest struct {
	cmds    []refCommand
	caps    []string
	shallow []string
}

func (r *pushRequest) has(name string) bool { return slices.Contains(r.caps, name) }

// maxPushCommands bounds the ref updates of one push.
const maxPushCommands = 1 << 16

// readPushRequest reads the shallow lines and ref updates, up to the
// flush that ends them.
func readPushRequest(r io.Reader, idLen int) (*pushRequest, error) {
	req := &pushRequest{}
	for {
		line, err := readPkt(r)
		if errors.Is(err, errFlush) {
			return req, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read push commands: %w", err)
		}
		text := strings.TrimSuffix(string(line), "\n")
		if oid, ok := strings.CutPrefix(text, "shallow "); ok && isObjectID(oid) {
			req.shallow = append(req.shallow, oid)
			continue
		}
		if len(req.cmds) == 0 {
			var caps string
			text, caps, _ = strings.Cut(text, "\x00")
			req.caps = strings.Fields(caps)
		}
		c, err := parseRefCommand(text)
		if err != nil {
			return nil, fmt.Errorf("read push commands: %w", err)
		}
		if len(c.old) != idLen || len(c.new) != idLen || !isObjectID(c.old) || !isObjectID(c.new) {
			return nil, fmt.Errorf("read push commands: bad object id in %q", truncate(text))
		}
		if len(req.cmds) >= maxPushCommands {
			return nil, fmt.Errorf("read push commands: more than %d", maxPushCommands)
		}
		req.cmds = append(req.cmds, c)
	}
}

// pushCheck is one push being checked.
type pushCheck struct {
	u      *Upstream
	ctx    context.Context
	client *ssh.Client
	d      Decision
	adv    *advertisement // what the host advertised
	shown  *advertisement // what the client was shown
	req    *pushRequest
	store  *objectStore
	pack   *os.File        // the pushed pack, nil when the push has none
	pushed map[string]bool // the objects in it
}

func (p *pushCheck) close() {
	if p.store != nil {
		p.store.close()
	}
	if p.pack != nil {
		p.pack.Close()
		os.Remove(p.pack.Name())
	}
}

// receivePack reads the client's pack, if the push has one, and indexes
// it in a private repository.
func (p *pushCheck) receivePack(in *bufio.Reader) error {
	var err error
	if p.store, err = newObjectStore(p.ctx, p.u.opts.Git, p.adv.capValue("object-format")); err != nil {
		return err
	}
	if !slices.ContainsFunc(p.req.cmds, func(c refCommand) bool { return !isZeroID(c.new) }) {
		p.pushed = map[string]bool{}
		return nil // deletions only: git sends no pack
	}
	if p.pack, err = os.CreateTemp("", "jitssh-push-*.pack"); err != nil {
		return fmt.Errorf("push pack file: %w", err)
	}
	if _, err = copyPack(in, p.pack, p.adv.idLen); err != nil {
		return err
	}
	if _, err := p.pack.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("push pack file: %w", err)
	}
	if err := p.store.addPack(p.ctx, p.pack); err != nil {
		return err
	}
	p.pushed, err = p.store.objects(p.ctx)
	return err
}

// decide gives each update the reason it is refused, "" when it may go
// upstream. The rules are the native server's: DecideRef on each update,
// a hidden ref's reason worded from the update alone, the reachability fence for
// ref-scoped writers, and all or nothing for an atomic push. An update
// that is not shown to be a fast-forward by the pushed objects counts as
// a rewrite: it needs force.
func (p *pushCheck) decide() ([]string, error) {
	d := p.d
	reasons := make([]string, len(p.req.cmds))
	// The fence goes first: the history it fetches also shows
	// fast-forwards the pack alone does not.
	if !DecideRef(d.Grants, d.Command.Repo, "", RefBuildOnAny).Allowed {
		err := p.fence()
		if errors.Is(err, errOutsideGrant) {
			for i := range reasons {
				reasons[i] = err.Error()
			}
			return reasons, nil
		}
		if err != nil {
			return nil, err
		}
	}
	for i, c := range p.req.cmds {
		if read := DecideRef(d.Grants, d.Command.Repo, c.ref, RefRead); !read.Allowed {
			// Hidden from the pusher: worded from the update it sent
			// alone, as the native server words it, so that a ref the
			// host has and one it has not read the same.
			if reasons[i] = refusalOf(d, c); reasons[i] == "" {
				reasons[i] = read.Reason()
			}
			continue
		}
		var ffErr error
		op := pushOp(c.old, c.new, func() bool {
			ok, err := p.store.descends(c.new, c.old)
			ffErr = err
			return ok
		})
		if ffErr != nil {
			return nil, ffErr
		}
		reasons[i] = DecideRef(d.Grants, d.Command.Repo, c.ref, op).Reason()
	}
	if p.req.has("atomic") {
		if i := slices.IndexFunc(reasons, func(r string) bool { return r != "" }); i >= 0 {
			for j := range reasons {
				if reasons[j] == "" {
					reasons[j] = "atomic push refused because " + p.req.cmds[i].ref + " was refused"
				}
			}
		}
	}
	return reasons, nil
}

// forward sends the allowed updates and the objects they need to the host
// and returns its unpack status and its word on each ref it was sent.
func (p *pushCheck) forward(upIn io.Writer, upR *bufio.Reader, reasons []string, stdio Stdio) (string, map[string]string, error) {
	sideband := p.adv.has("side-band-64k")
	caps := []string{"report-status"}
	if sideband {
		caps = append(caps, "side-band-64k")
	}
	for _, c := range []string{"atomic", "quiet"} {
		if p.req.has(c) && p.adv.has(c) {
			caps = append(caps, c)
		}
	}
	if f := p.adv.capValue("object-format"); f != "" {
		caps = append(caps, "object-format="+f)
	}
	caps = append(caps, "agent=jitssh")
	var b bytes.Buffer
	for _, s := range p.req.shallow {
		if err := writePkt(&b, []byte("shallow "+s+"\n")); err != nil {
			return "", nil, err
		}
	}
	var tips []string
	first := true
	for i, c := range p.req.cmds {
		if reasons[i] != "" {
			continue
		}
		line := c.old + " " + c.new + " " + c.ref
		if first {
			line += "\x00" + strings.Join(caps, " ")
			first = false
		}
		if err := writePkt(&b, []byte(line+"\n")); err != nil {
			return "", nil, err
		}
		if !isZeroID(c.new) {
			tips = append(tips, c.new)
		}
	}
	if err := writeFlush(&b); err != nil {
		return "", nil, err
	}
	if _, err := upIn.Write(b.Bytes()); err != nil {
		return "", nil, fmt.Errorf("%w: send updates: %w", ErrUpstream, err)
	}
	if len(tips) > 0 {
		if err := p.sendObjects(upIn, tips); err != nil {
			return "", nil, err
		}
	}
	return readHostReport(upR, sideband, p.clientProgress(stdio))
}

// sendObjects sends the host the objects the allowed tips need: the
// pushed pack as it is when they need all of it, else a pack of only
// those objects, so that nothing of a refused update goes upstream.
func (p *pushCheck) sendObjects(w io.Writer, tips []string) error {
	reached, _, err := p.store.reach(tips, p.pushed)
	if err != nil {
		return err
	}
	if len(reached) == len(p.pushed) {
		if _, err := p.pack.Seek(0, io.SeekStart); err != nil {
			return err
		}
		if _, err := io.Copy(w, p.pack); err != nil {
			return fmt.Errorf("%w: send pack: %w", ErrUpstream, err)
		}
		return nil
	}
	oids := make([]string, 0, len(reached))
	for oid := range reached {
		oids = append(oids, oid)
	}
	slices.Sort(oids)
	return p.store.packObjects(p.ctx, oids, w)
}

// clientProgress passes the host's progress and error messages on to
// the client: in its side band when it asked for one, else to stderr.
func (p *pushCheck) clientProgress(stdio Stdio) func(band byte, msg []byte) {
	if !p.req.has("side-band-64k") {
		return func(_ byte, msg []byte) { _, _ = stdio.Err.Write(msg) }
	}
	return func(band byte, msg []byte) {
		for len(msg) > 0 {
			n := min(len(msg), pktMaxPayload-1)
			_ = writePkt(stdio.Out, append([]byte{band}, msg[:n]...))
			msg = msg[n:]
		}
	}
}

// readHostReport reads the host's report-status, from its side band when
// it uses one, passing progress on.
func readHostReport(r io.Reader, sideband bool, progress func(band byte, msg []byte)) (string, map[string]string, error) {
	var report io.Reader = r
	if sideband {
		var buf bytes.Buffer
		for {
			pkt, err := readPkt(r)
			if errors.Is(err, errFlush) {
				break
			}
			if err != nil {
				return "", nil, fmt.Errorf("%w: read report: %w", ErrUpstream, err)
			}
			if len(pkt) == 0 {
				continue
			}
			switch pkt[0] {
			case 1:
				buf.Write(pkt[1:])
			case 2, 3:
				progress(pkt[0], pkt[1:])
			}
		}
		report = &buf
	}
	unpack := ""
	refs := map[string]string{}
	for {
		pkt, err := readPkt(report)
		if errors.Is(err, errFlush) {
			break
		}
		if err != nil {
			return "", nil, fmt.Errorf("%w: read report: %w", ErrUpstream, err)
		}
		line := strings.TrimSuffix(string(pkt), "\n")
		switch {
		case strings.HasPrefix(line, "unpack "):
			unpack = line
		case strings.HasPrefix(line, "ok "):
			refs[strings.TrimPrefix(line, "ok ")] = ""
		case strings.HasPrefix(line, "ng "):
			ref, why, _ := strings.Cut(strings.TrimPrefix(line, "ng "), " ")
			if why == "" {
				why = "refused by the Git host"
			}
			refs[ref] = why
		}
	}
	if unpack == "" {
		return "", nil, fmt.Errorf("%w: report without unpack status", ErrUpstream)
	}
	return unpack, refs, nil
}

// writeReport writes the client's report-status, if it asked for one:
// the unpack status, then each update, ok or ng with its reason, in the
// order it was sent. Without updates, every one is refused with
// reason(i).
func (p *pushCheck) writeReport(stdio Stdio, unpack string, updates []RefUpdate, reason func(int) string) {
	if !p.req.has("report-status") {
		return
	}
	var b bytes.Buffer
	_ = writePkt(&b, []byte(unpack+"\n"))
	for i, c := range p.req.cmds {
		switch {
		case updates == nil:
			_ = writePkt(&b, []byte("ng "+c.ref+" "+reason(i)+"\n"))
		case updates[i].Result == "updated":
			_ = writePkt(&b, []byte("ok "+c.ref+"\n"))
		default:
			_ = writePkt(&b, []byte("ng "+c.ref+" "+updates[i].Reason+"\n"))
		}
	}
	_ = writeFlush(&b)
	if p.req.has("side-band-64k") {
		p.clientProgress(stdio)(1, b.Bytes())
		_ = writeFlush(stdio.Out)
		return
	}
	_, _ = stdio.Out.Write(b.Bytes())
}

// reportWord is the one word of an unpack failure.
func reportWord(err error) string {
	if errors.Is(err, errBadPack) {
		return "bad-pack"
	}
	return "error"
}
