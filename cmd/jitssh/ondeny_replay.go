package main

import (
	"fmt"
	"io"
	"strings"

	"golang.org/x/crypto/ssh"
)

// replay sends git's push over a new connection offering cert, while git
// waits for the result: git's ref-update commands as git sent them, and a
// pack git-ssh makes from the local repository against what this
// connection advertises (git's own pack was made against another
// advertisement, and is dropped). seen is the advertisement git was shown.
// The server's answer goes back to git as it comes.
func (s *gitSSHSession) replay(cert *ssh.Certificate, req pushRequest, drained <-chan struct{}, seen map[string]string) int {
	if !req.replayable() {
		return s.refuse(req, drained, "the grant is in ssh-agent now: run git push again (a push from a shallow clone is not sent again for you)")
	}
	conn, err := s.start(cert)
	if err != nil {
		return s.refuse(req, drained, err.Error())
	}
	if !conn.advertised() {
		conn.wait()
		return s.refuse(req, drained, "the server refused the connection with the grant too (see above)")
	}
	adv, err := readRefAdvert(conn.out, nil)
	if err != nil {
		conn.in.Close()
		_, _ = io.Copy(io.Discard, conn.out)
		conn.wait()
		return s.refuse(req, drained, err.Error())
	}
	for _, c := range req.caps {
		if !strings.HasPrefix(c, "agent=") && !adv.has(c) {
			conn.abandon()
			return s.refuse(req, drained, fmt.Sprintf("the server does not offer %s on this connection; the grant is in ssh-agent now: run git push again", c))
		}
	}
	cmds, refused := s.rebase(req.cmds, seen, adv.refs)
	if refused != nil {
		conn.abandon()
		return s.report(req, drained, refused)
	}
	copied := make(chan struct{})
	go func() {
		_, _ = io.Copy(s.stdout, conn.out)
		close(copied)
	}()
	werr := s.sendPush(conn, req, cmds, adv)
	conn.in.Close()
	<-copied
	code := conn.wait()
	if werr != nil {
		s.say("jitssh: " + werr.Error())
		if code == 0 {
			code = 1
		}
	}
	waitDrained(drained)
	return code
}

// sendPush writes the commands and, unless the push only deletes, the
// pack.
func (s *gitSSHSession) sendPush(conn *sshConn, req pushRequest, cmds []refCmd, adv refAdvert) error {
	if _, err := conn.in.Write(encodePushRequest(cmds, req.caps, req.options)); err != nil {
		return fmt.Errorf("send the push: %w", err)
	}
	if !req.needsPack() {
		return nil
	}
	var tips, ids []string
	for _, c := range cmds {
		if !isZeroOID(c.new) {
			tips = append(tips, c.new)
		}
	}
	for _, id := range adv.refs {
		ids = append(ids, id)
	}
	have, err := s.local.present(ids)
	if err != nil {
		return err
	}
	exclude := make([]string, 0, len(have))
	for id := range have {
		exclude = append(exclude, id)
	}
	return s.local.packObjects(conn.in, tips, exclude, !adv.has("no-thin"), adv.has("ofs-delta"))
}

// rebase checks git's commands against the refs the new connection
// advertises. A ref where git saw what is there now goes as git sent it.
// A ref git was not shown (hidden from the grant it had, or never
// fetched) that the push fast-forwards goes from where it is: git would
// have pushed that without --force. Anything else changed on the server
// since git looked, and nothing is pushed: refused says why, ref by ref.
func (s *gitSSHSession) rebase(cmds []refCmd, seen, now map[string]string) (out []refCmd, refused []refResult) {
	out = make([]refCmd, len(cmds))
	problems := make([]string, len(cmds))
	first := -1
	for i, c := range cmds {
		cur, exists := now[c.ref]
		_, wasShown := seen[c.ref]
		switch {
		case exists && cur == c.old, !exists && isZeroOID(c.old):
		case !wasShown && isZeroOID(c.old) && exists && !isZeroOID(c.new) && s.local.isAncestor(cur, c.new):
			c.old = cur
		case !wasShown:
			problems[i] = fmt.Sprintf("%s is at %s on the server, which what you push does not contain: fetch and merge, then push again (the grant stays in ssh-agent)", c.ref, orNone(cur))
		default:
			problems[i] = fmt.Sprintf("%s changed on the server since git last saw it (%s, not %s): fetch, then push again (the grant stays in ssh-agent)", c.ref, orNone(cur), orNone(c.old))
		}
		if problems[i] != "" && first < 0 {
			first = i
		}
		out[i] = c
	}
	if first < 0 {
		return out, nil
	}
	refused = make([]refResult, len(cmds))
	for i, c := range cmds {
		refused[i] = refResult{ref: c.ref, reason: problems[i]}
		if problems[i] == "" {
			refused[i].reason = "not pushed, as " + cmds[first].ref + " could not be"
		}
	}
	return nil, refused
}

func shortOID(id string) string {
	if len(id) > 10 {
		return id[:10]
	}
	return id
}

func orNone(id string) string {
	if id == "" || isZeroOID(id) {
		return "no such ref"
	}
	return shortOID(id)
}

// refuse answers every command of req with reason, as the server would
// refuse them, and ends the push.
func (s *gitSSHSession) refuse(req pushRequest, drained <-chan struct{}, reason string) int {
	results := make([]refResult, len(req.cmds))
	for i, c := range req.cmds {
		results[i] = refResult{ref: c.ref, reason: reason}
	}
	return s.report(req, drained, results)
}

// report gives git the report it waits for after its pack and ends the
// push unsuccessfully.
func (s *gitSSHSession) report(req pushRequest, drained <-chan struct{}, results []refResult) int {
	rep := encodeReport(req, results)
	if len(rep) == 0 {
		for _, r := range results {
			s.say(fmt.Sprintf("jitssh: %s: %s", r.ref, r.reason))
		}
	}
	_, _ = s.stdout.Write(rep)
	waitDrained(drained)
	return 1
}
