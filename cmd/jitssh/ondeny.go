package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/jitssh/jitssh/principals"
	"github.com/jitssh/jitssh/sshd"
)

// What git-ssh does when a Git server refuses an operation for want of a
// grant (JITSSH_ON_DENY, or --on-deny before the ssh options).
//
// To know what a push needs, git-ssh stands between git and ssh: it reads
// the server's ref advertisement and git's ref-update commands as they
// pass, and decides every update (create, fast-forward, non-fast-forward
// or delete, the last two by asking the local repository whether the old
// object is an ancestor of the new) with the rule the server uses,
// sshd.DecideRef, against the grants in ssh-agent. A jitssh server
// refuses a connection whose certificate gives no write access on the
// repository before it advertises anything; git-ssh then shows git the
// refs it last fetched from there (its remote-tracking refs), so that git
// still says what it would push, and checks that against the server's own
// advertisement once it has a grant to connect with.
//
// When a grant in the agent covers the push, nothing changes. When
// another one does, git-ssh sends git's commands over a new connection
// with it. Otherwise: off leaves it to the server; hint lets the push fail
// and prints the jitssh request line the policy accepts; auto files that
// request, waits, loads the certificate, and sends git's commands over a
// new connection with it, with a pack it makes itself against what that
// connection advertises, while git waits for the result. A fetch is
// refused before anything is advertised, so git has sent nothing and
// simply gets the new connection.
type onDeny int

const (
	onDenyOff onDeny = iota
	onDenyHint
	onDenyAuto
)

func parseOnDeny(s string) (onDeny, error) {
	switch s {
	case "off":
		return onDenyOff, nil
	case "hint", "":
		return onDenyHint, nil
	case "auto":
		return onDenyAuto, nil
	}
	return 0, fmt.Errorf("--on-deny %q (or JITSSH_ON_DENY): want off, hint or auto", cutLine(s))
}

// onDenyFromArgs takes --on-deny MODE or --on-deny=MODE from the front of
// git-ssh's arguments (ssh has no long options), else JITSSH_ON_DENY; the
// default is hint.
func onDenyFromArgs(args []string) (onDeny, []string, error) {
	mode := os.Getenv("JITSSH_ON_DENY")
	if len(args) > 0 {
		if v, ok := strings.CutPrefix(args[0], "--on-deny="); ok {
			mode, args = v, args[1:]
		} else if args[0] == "--on-deny" {
			if len(args) < 2 {
				return 0, nil, fmt.Errorf("--on-deny needs a mode: off, hint or auto")
			}
			mode, args = args[1], args[2:]
		}
	}
	m, err := parseOnDeny(mode)
	return m, args, err
}

// gitSSHSession is one Git operation git-ssh watches over.
type gitSSHSession struct {
	mode   onDeny
	prog   string
	args   []string
	cmd    sshd.Command
	target sshTarget
	certs  []*ssh.Certificate
	now    time.Time
	stdin  io.Reader
	stdout io.Writer
	stderr *os.File
	local  localRepo
	sigs   *signalRouter
}

func (s *gitSSHSession) run(first *ssh.Certificate) int {
	s.sigs = newSignalRouter()
	defer s.sigs.stop()
	if s.cmd.Service == sshd.ReceivePack {
		return s.push(first)
	}
	return s.fetch(first)
}

func (s *gitSSHSession) start(cert *ssh.Certificate) (*sshConn, error) {
	return startSSH(s.prog, s.args, cert, s.stderr, s.sigs)
}

func (s *gitSSHSession) say(lines ...string) {
	if len(lines) > 0 {
		fmt.Fprint(s.stderr, strings.Join(lines, "\n")+"\n")
	}
}

// fetch runs a fetch, clone or archive of a repository no grant in the
// agent names.
func (s *gitSSHSession) fetch(first *ssh.Certificate) int {
	conn, err := s.start(first)
	if err != nil {
		s.say("jitssh: " + err.Error())
		return 255
	}
	if conn.advertised() {
		return s.passThrough(conn, nil, s.stdin)
	}
	code := conn.wait()
	if !s.refusedForGrant(conn, code) {
		return code
	}
	need := readNeed(s.cmd.Repo, s.cmd.Service)
	why := fmt.Sprintf("jitssh: no grant in ssh-agent lets you read %s", s.cmd.Repo)
	if s.mode == onDenyHint {
		s.say(why)
		s.say(hintLines(need)...)
		return code
	}
	// Another git may have loaded a grant that names the repository since
	// the agent was asked.
	cert := certForCommand(agentCerts(), s.cmd, time.Now())
	if cert == nil {
		s.say(why + "; asking for one")
		cert, err = s.obtain(need)
	}
	if err != nil {
		s.say(err.Error())
		return code
	}
	if conn, err = s.start(cert); err != nil {
		s.say("jitssh: " + err.Error())
		return 255
	}
	return s.passThrough(conn, nil, s.stdin)
}

// push runs a push, offering first first (nil: no jitssh certificate).
func (s *gitSSHSession) push(first *ssh.Certificate) int {
	conn, err := s.start(first)
	if err != nil {
		s.say("jitssh: " + err.Error())
		return 255
	}
	if !conn.advertised() {
		code := conn.wait()
		if !s.refusedForGrant(conn, code) {
			return code
		}
		return s.pushUnadvertised(first, code)
	}
	if first == nil {
		// Not a connection a jitssh grant decides.
		return s.passThrough(conn, nil, s.stdin)
	}
	adv, err := readRefAdvert(conn.out, s.stdout)
	if err != nil {
		return s.passThrough(conn, nil, s.stdin)
	}
	in := bufio.NewReaderSize(s.stdin, 64<<10)
	req, err := readPushRequest(in)
	if err != nil || len(req.cmds) == 0 || req.signed {
		return s.passThrough(conn, req.raw, in)
	}
	ops := s.refOps(req.cmds, s.hiddenRefs(first, req.cmds, adv))
	if grantsCover(first, s.cmd.Repo, ops) {
		return s.passThrough(conn, req.raw, in)
	}
	if other := coveringCert(s.certs, s.cmd.Repo, ops, first, s.now); other != nil {
		drained := drain(in)
		conn.abandon()
		return s.replay(other, req, drained, adv.refs)
	}
	need := pushNeed(s.cmd.Repo, ops)
	if s.mode == onDenyHint {
		s.say(s.whyRefused(first, ops)...)
		s.say(hintLines(need)...)
		return s.passThrough(conn, req.raw, in)
	}
	drained := drain(in)
	conn.abandon()
	return s.pushWithNewGrant(need, first, ops, req, drained, adv.refs)
}

// pushUnadvertised goes on with a push the server refused before
// advertising its refs: git is shown the refs it last fetched from there,
// and says what it would push.
func (s *gitSSHSession) pushUnadvertised(refused *ssh.Certificate, code int) int {
	seen := s.local.lastFetched(s.target.host, s.cmd.Repo)
	if _, err := s.stdout.Write(synthAdvert(seen, s.local.objectFormat())); err != nil {
		return 1
	}
	in := bufio.NewReaderSize(s.stdin, 64<<10)
	req, err := readPushRequest(in)
	drained := drain(in)
	if err != nil {
		s.say("jitssh: " + err.Error())
		return 1
	}
	if len(req.cmds) == 0 {
		// git found nothing to push. The server refused all the same,
		// and git is told so: it fails as it would have.
		waitDrained(drained)
		s.say(s.repoWhy(refused) + "; git found nothing to push")
		return code
	}
	ops := s.refOps(req.cmds, nil)
	if other := coveringCert(s.certs, s.cmd.Repo, ops, refused, s.now); other != nil {
		return s.replay(other, req, drained, seen)
	}
	need := pushNeed(s.cmd.Repo, ops)
	if s.mode == onDenyHint {
		s.say(s.whyRefused(refused, ops)...)
		s.say(hintLines(need)...)
		return s.refuse(req, drained, "no grant in ssh-agent covers this push; see the jitssh lines above")
	}
	return s.pushWithNewGrant(need, refused, ops, req, drained, seen)
}

// repoWhy says what cert, refused before the server advertised anything,
// lacks for a push.
func (s *gitSSHSession) repoWhy(cert *ssh.Certificate) string {
	var have principals.Access
	if cert != nil {
		grants, _ := principals.ParseSet(cert.ValidPrincipals)
		for _, g := range grants.ForRepo(s.cmd.Repo) {
			have = max(have, g.Access)
		}
	}
	if have == 0 {
		return "jitssh: no grant in ssh-agent names " + s.cmd.Repo
	}
	return fmt.Sprintf("jitssh: the grant offered gives %s on %s, and a push needs write", have, s.cmd.Repo)
}

func (s *gitSSHSession) pushWithNewGrant(need grantNeed, had *ssh.Certificate, ops []refOpOf, req pushRequest, drained <-chan struct{}, seen map[string]string) int {
	// Another git may have loaded a grant that covers this since the
	// agent was asked.
	if c := coveringCert(agentCerts(), s.cmd.Repo, ops, had, time.Now()); c != nil {
		return s.replay(c, req, drained, seen)
	}
	why := s.whyRefused(had, ops)
	why[len(why)-1] += "; asking for " + need.grant()
	s.say(why...)
	cert, err := s.obtain(need)
	if err != nil {
		s.say(err.Error())
		return s.refuse(req, drained, refReason(err))
	}
	return s.replay(cert, req, drained, seen)
}

// obtain gets the grant need into the agent, cancelling the request on a
// signal or when git goes away.
func (s *gitSSHSession) obtain(need grantNeed) (*ssh.Certificate, error) {
	ctx, stop := watchParent(context.Background())
	defer stop()
	sigs, done := s.sigs.waitFor()
	defer done()
	return obtainGrant(ctx, need, sigs, s.stderr)
}

// refusedForGrant reports whether a connection that ended before the
// server said anything was a jitssh server refusing it for want of a
// grant: its own refusal (none on the repository, too little access, a
// certificate that expired), or, at the host JITSSH_GIT_URL names, an
// authentication failure (which is how a jitssh server answers an agent
// with no certificate at all).
func (s *gitSSHSession) refusedForGrant(conn *sshConn, code int) bool {
	if code == 0 {
		return false
	}
	said := conn.tail.String()
	if strings.Contains(said, sshd.GrantRefusal) {
		return true
	}
	if code != 255 || !strings.Contains(said, "Permission denied (publickey") {
		return false
	}
	u, ok := parseGitRemoteURL(os.Getenv("JITSSH_GIT_URL"))
	return ok && u.host == s.target.host
}

// passThrough connects git and ssh and stays out of the way: already (what
// git-ssh read of git's side to look at) goes first.
func (s *gitSSHSession) passThrough(conn *sshConn, already []byte, gitIn io.Reader) int {
	go func() {
		if _, err := conn.in.Write(already); err == nil {
			_, _ = io.Copy(conn.in, gitIn)
		}
		conn.in.Close()
	}()
	_, _ = io.Copy(s.stdout, conn.out)
	return conn.wait()
}

// refOpOf is one update of a push and the operation it is.
type refOpOf struct {
	cmd refCmd
	op  sshd.RefOp
}

// refOps decides what each update is, as the server would: a
// fast-forward only when the local repository shows the old object to be
// an ancestor of the new. hidden holds what the local repository last
// fetched of refs git was not shown: an update git sent as a creation of
// one of them is a fast-forward when it fast-forwards that.
func (s *gitSSHSession) refOps(cmds []refCmd, hidden map[string]string) []refOpOf {
	ops := make([]refOpOf, len(cmds))
	for i, c := range cmds {
		op := sshd.RefRewrite
		switch {
		case isZeroOID(c.new):
			op = sshd.RefDelete
		case isZeroOID(c.old) && hidden[c.ref] != "" && s.local.isAncestor(hidden[c.ref], c.new):
			op = sshd.RefFastForward
		case isZeroOID(c.old):
			op = sshd.RefCreate
		case s.local.isAncestor(c.old, c.new):
			op = sshd.RefFastForward
		}
		ops[i] = refOpOf{cmd: c, op: op}
	}
	return ops
}

// hiddenRefs returns what the local repository last fetched of the refs
// cmds create that the server did not advertise because cert may not
// read them: they may well exist.
func (s *gitSSHSession) hiddenRefs(cert *ssh.Certificate, cmds []refCmd, adv refAdvert) map[string]string {
	grants, _ := principals.ParseSet(cert.ValidPrincipals)
	var hidden []string
	for _, c := range cmds {
		if _, shown := adv.refs[c.ref]; !shown && isZeroOID(c.old) && !sshd.DecideRef(grants, s.cmd.Repo, c.ref, sshd.RefRead).Allowed {
			hidden = append(hidden, c.ref)
		}
	}
	if len(hidden) == 0 {
		return nil
	}
	fetched := s.local.lastFetched(s.target.host, s.cmd.Repo)
	out := map[string]string{}
	for _, ref := range hidden {
		if id, ok := fetched[ref]; ok {
			out[ref] = id
		}
	}
	return out
}

// whyRefused words what cert (nil: no grant at all) lacks for ops.
func (s *gitSSHSession) whyRefused(cert *ssh.Certificate, ops []refOpOf) []string {
	var grants principals.Set
	if cert != nil {
		grants, _ = principals.ParseSet(cert.ValidPrincipals)
	}
	var out []string
	for _, o := range ops {
		d := sshd.DecideRef(grants, s.cmd.Repo, o.cmd.ref, o.op)
		if !d.Allowed {
			out = append(out, "jitssh: "+d.Reason())
		}
	}
	if len(out) > 3 {
		out = append(out[:3], fmt.Sprintf("jitssh: and %d more", len(out)-3))
	}
	if len(out) == 0 {
		out = []string{"jitssh: no grant in ssh-agent covers this push"}
	}
	return out
}

// grantsCover reports whether cert's grants allow every one of ops.
func grantsCover(cert *ssh.Certificate, repo string, ops []refOpOf) bool {
	if cert == nil {
		return false
	}
	grants, _ := principals.ParseSet(cert.ValidPrincipals)
	for _, o := range ops {
		if !sshd.DecideRef(grants, repo, o.cmd.ref, o.op).Allowed {
			return false
		}
	}
	return true
}

// coveringCert is the newest live certificate other than not whose
// grants allow every one of ops, or nil.
func coveringCert(certs []*ssh.Certificate, repo string, ops []refOpOf, not *ssh.Certificate, now time.Time) *ssh.Certificate {
	var best *ssh.Certificate
	for _, c := range certs {
		if c == not || !certLiveAt(c, now) || !grantsCover(c, repo, ops) {
			continue
		}
		if best == nil || c.ValidAfter > best.ValidAfter || c.ValidAfter == best.ValidAfter && c.Serial > best.Serial {
			best = c
		}
	}
	return best
}

// drain reads and drops the rest of git's side (the pack git made for a
// push git-ssh sends itself); the channel closes when git closes it.
func drain(r io.Reader) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, r)
		close(done)
	}()
	return done
}

// waitDrained waits for git to have sent all it had to send, so that git
// is not cut off while still writing; git closes its side by the time it
// has read the report, so this waits long only for a git that hangs.
func waitDrained(done <-chan struct{}) {
	select {
	case <-done:
	case <-time.After(30 * time.Second):
	}
}
