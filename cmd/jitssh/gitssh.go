package main

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/crypto/ssh"

	"github.com/jitssh/jitssh/principals"
	"github.com/jitssh/jitssh/sshd"
)

// A Git server sees one certificate per connection, the first one the
// client offers that it accepts, and it learns which repository is wanted
// only after authentication. With grants for several repositories in
// ssh-agent, plain ssh offers them in the agent's order and the server may
// settle on one that does not cover the repository. git-ssh reads the
// repository from the command git asks ssh to run and offers the
// certificate that covers it first.
func gitSSHCommand() *cli.Command {
	return &cli.Command{
		Name:      "git-ssh",
		Usage:     "ssh for git: offer first the jitssh certificate that covers the repository (use as GIT_SSH_COMMAND)",
		ArgsUsage: "[--on-deny off|hint|auto] [ssh options] DESTINATION [COMMAND]",
		Description: "Runs ssh with the given arguments. When the command is one git runs on a server\n" +
			"(git-upload-pack, git-receive-pack or git-upload-archive and a repository), it offers\n" +
			"first the live jitssh certificate in ssh-agent that grants that repository the access the\n" +
			"command needs (read, or write for a push), preferring one with a '*' grant, then the\n" +
			"newest. Anything else goes to ssh unchanged. Set it up with\n\n" +
			"   export GIT_SSH_COMMAND='jitssh git-ssh'   GIT_SSH_VARIANT=ssh\n\n" +
			"and add your own ssh options after git-ssh. The ssh program is JITSSH_SSH, or ssh.\n\n" +
			"When the server refuses an operation for want of a grant, --on-deny (or JITSSH_ON_DENY)\n" +
			"says what git-ssh does: off leaves git's failure as it is; hint (the default) adds the\n" +
			"jitssh request line the policy would accept, or says that no rule allows it; auto files\n" +
			"that request (reason JITSSH_REASON, else the operation; TTL JITSSH_TTL), waits for it\n" +
			"(Ctrl-C cancels it), loads the certificate and completes the same git operation.",
		SkipFlagParsing: true,
		HideHelp:        true,
		Action: func(c *cli.Context) error {
			if args := c.Args().Slice(); len(args) == 1 && (args[0] == "--help" || args[0] == "-h") {
				return cli.ShowCommandHelp(c.Lineage()[1], "git-ssh")
			}
			return runGitSSH(c.Args().Slice())
		},
	}
}

// gitSSHArgs returns git-ssh's arguments when args (the whole command
// line) run git-ssh to connect, which every Git connection does, so that
// run can skip building the command tree. Help and shell completion are
// left to the command tree.
func gitSSHArgs(args []string) ([]string, bool) {
	if len(args) < 2 || args[1] != "git-ssh" {
		return nil, false
	}
	rest := args[2:]
	if len(rest) == 1 && (rest[0] == "--help" || rest[0] == "-h") {
		return nil, false
	}
	if len(rest) > 0 && rest[len(rest)-1] == "--generate-bash-completion" {
		return nil, false
	}
	return rest, true
}

func runGitSSH(args []string) error {
	mode, args, err := onDenyFromArgs(args)
	if err != nil {
		return cli.Exit(err.Error(), exitUsage)
	}
	sshProg := os.Getenv("JITSSH_SSH")
	if sshProg == "" {
		sshProg = "ssh"
	}
	target, _ := parseSSHCommandLine(args)
	cmd, ok := parseGitCommand(target.command)
	if !ok {
		return runForwardingSignals(sshProg, args)
	}
	now := time.Now()
	certs := agentCerts()
	cert := certForCommand(certs, cmd, now)
	if mode != onDenyOff && cmd.Service == sshd.ReceivePack {
		cert = certForPush(certs, cmd.Repo, cert, localRepo{}, now)
	}
	// A push is watched whenever a refusal could be acted on, to see its
	// refs; a fetch only when no grant names the repository, as a grant
	// that names it reads it.
	if mode != onDenyOff && (cmd.Service == sshd.ReceivePack || cert == nil) {
		s := &gitSSHSession{mode: mode, prog: sshProg, args: args, cmd: cmd, target: target, certs: certs, now: now,
			stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr}
		if code := s.run(cert); code != 0 {
			return cli.Exit("", code)
		}
		return nil
	}
	if cert != nil {
		file, err := writeTempCert(cert)
		if err != nil {
			return err
		}
		defer os.Remove(file)
		// Offered first, not only: ssh goes on to the agent's other
		// keys if this server does not take it, so the same
		// repository path on another host still gets the user's
		// usual key.
		args = append([]string{"-o", "IdentityFile=" + file}, args...)
	}
	return runForwardingSignals(sshProg, args)
}

// sshOptsWithArg are the OpenSSH client options that take an argument
// (ssh.c's getopt string).
const sshOptsWithArg = "BbcDEeFIiJLlmOoPpQRSWw"

// remoteGitCommand finds the command in an ssh command line, as ssh itself
// does: options, the destination, more options, then the command words
// joined by spaces. It reports false when there is no command or it is not
// a Git service on one repository.
func remoteGitCommand(args []string) (sshd.Command, bool) {
	t, ok := parseSSHCommandLine(args)
	if !ok {
		return sshd.Command{}, false
	}
	return parseGitCommand(t.command)
}

func parseGitCommand(words []string) (sshd.Command, bool) {
	if len(words) == 0 {
		return sshd.Command{}, false
	}
	cmd, err := sshd.ParseCommand(strings.Join(words, " "))
	return cmd, err == nil
}

// agentCerts lists the jitssh certificates in ssh-agent; none when there is
// no agent, in which case ssh runs as it would have anyway.
func agentCerts() []*ssh.Certificate {
	certs, _ := jitsshCertsInAgent()
	return certs
}

// jitsshCertsInAgent lists the jitssh certificates ssh-agent holds, live or
// not.
func jitsshCertsInAgent() ([]*ssh.Certificate, error) {
	ag, err := connectAgent()
	if err != nil {
		return nil, err
	}
	keys, err := ag.List()
	if err != nil {
		return nil, fmt.Errorf("list ssh-agent keys: %w", err)
	}
	var out []*ssh.Certificate
	for _, k := range keys {
		pub, err := ssh.ParsePublicKey(k.Blob)
		if err != nil {
			continue
		}
		if cert, ok := pub.(*ssh.Certificate); ok && isJitsshCert(cert) {
			out = append(out, cert)
		}
	}
	return out, nil
}

// certForCommand picks the certificate to offer for cmd: one inside its
// validity window with a grant on the repository for the access the
// service needs, a '*' grant first, then the newest. When none has that
// access it picks the newest naming the repository at all, so the server's
// answer is about the repository ("read-only grant") and not about some
// unrelated certificate. Nil means none names it.
func certForCommand(certs []*ssh.Certificate, cmd sshd.Command, now time.Time) *ssh.Certificate {
	need := cmd.Service.Access()
	type candidate struct {
		cert          *ssh.Certificate
		access, whole bool
	}
	var cands []candidate
	for _, c := range certs {
		if !certLiveAt(c, now) {
			continue
		}
		var cand candidate
		named := false
		for _, p := range c.ValidPrincipals {
			g, err := principals.Parse(p)
			if err != nil || g.Repo != cmd.Repo {
				continue
			}
			named = true
			if g.Access.Includes(need) {
				cand.access = true
				cand.whole = cand.whole || g.Ref == "*"
			}
		}
		if named {
			cand.cert = c
			cands = append(cands, cand)
		}
	}
	if len(cands) == 0 {
		return nil
	}
	rank := func(c candidate) int {
		switch {
		case c.access && c.whole:
			return 2
		case c.access:
			return 1
		}
		return 0
	}
	best := slices.MaxFunc(cands, func(a, b candidate) int {
		if r := rank(a) - rank(b); r != 0 {
			return r
		}
		// The newest: certificates issued within the same second share
		// ValidAfter, and then the later serial is the newer.
		return cmp.Or(cmp.Compare(a.cert.ValidAfter, b.cert.ValidAfter), cmp.Compare(a.cert.Serial, b.cert.Serial))
	})
	return best.cert
}

// certForPush refines chosen, the certificate offered first for a push:
// of several that give write access on repo, the server advertises only
// the refs the one offered covers, and git cannot tell whether its update
// of a ref it was not shown is a fast-forward. The current branch is what
// a push most often updates, so a certificate covering it goes first.
func certForPush(certs []*ssh.Certificate, repo string, chosen *ssh.Certificate, local localRepo, now time.Time) *ssh.Certificate {
	writers := 0
	for _, c := range certs {
		grants, _ := principals.ParseSet(c.ValidPrincipals)
		if certLiveAt(c, now) && slices.ContainsFunc(grants.ForRepo(repo), func(g principals.Grant) bool { return g.Access.Includes(principals.Write) }) {
			writers++
		}
	}
	if writers < 2 {
		return chosen
	}
	branch, ok := local.currentBranch()
	if !ok {
		return chosen
	}
	ops := []refOpOf{{cmd: refCmd{ref: "refs/heads/" + branch}, op: sshd.RefFastForward}}
	if grantsCover(chosen, repo, ops) {
		return chosen
	}
	if c := coveringCert(certs, repo, ops, nil, now); c != nil {
		return c
	}
	return chosen
}

func certLiveAt(c *ssh.Certificate, now time.Time) bool {
	t := uint64(now.Unix())
	return c.ValidAfter <= t && t < c.ValidBefore
}

// writeTempCert puts cert where ssh can read it as an IdentityFile; ssh
// then asks the agent to sign with the matching key.
func writeTempCert(cert *ssh.Certificate) (string, error) {
	f, err := os.CreateTemp("", "jitssh-*-cert.pub")
	if err != nil {
		return "", fmt.Errorf("write certificate for ssh: %w", err)
	}
	_, werr := f.Write(ssh.MarshalAuthorizedKey(cert))
	if err := errors.Join(werr, f.Close()); err != nil {
		os.Remove(f.Name())
		return "", fmt.Errorf("write certificate for ssh: %w", err)
	}
	return f.Name(), nil
}

// runForwardingSignals runs prog with the caller's stdio, passes on the
// signals that would have reached it directly, and exits with its status.
func runForwardingSignals(prog string, args []string) error {
	cmd := exec.Command(prog, args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("run %s: %w", prog, err)
	}
	done := make(chan struct{})
	defer close(done)
	go func() {
		for {
			select {
			case s := <-sigs:
				_ = cmd.Process.Signal(s)
			case <-done:
				return
			}
		}
	}()
	err := cmd.Wait()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		code := exit.ExitCode()
		if code < 0 { // killed by a signal
			code = 255
		}
		return cli.Exit("", code)
	}
	if err != nil {
		return fmt.Errorf("run %s: %w", prog, err)
	}
	return nil
}
