package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

	"github.com/jitssh/jitssh/approvals"
	"github.com/jitssh/jitssh/audit"
	"github.com/jitssh/jitssh/internal/atomicfile"
)

// Exit codes of jitssh request and jitssh request wait.
const (
	exitDenied  = 3 // an approver denied the request
	exitExpired = 4 // nobody acted in time, or it was cancelled
	// exitStillPending: request wait was interrupted; the request is still
	// open on the daemon and another request wait picks it up.
	exitStillPending = 5
)

func requestCommand() *cli.Command {
	flags := append(clientFlags(),
		&cli.StringFlag{Name: "repo", Usage: "repository `REPO`, e.g. demo/app", DefaultText: "from --remote's URL, in a Git checkout", EnvVars: []string{"JITSSH_REPO"}},
		&cli.StringFlag{Name: "branch", Usage: "branch `NAME`, meaning refs/heads/NAME", DefaultText: "the current branch, in a Git checkout", EnvVars: []string{"JITSSH_BRANCH"}},
		&cli.StringFlag{Name: "remote", Usage: "in a Git checkout, the `REMOTE` whose URL names the repository when --repo is not given", Value: "origin", EnvVars: []string{"JITSSH_REMOTE"}},
		&cli.StringFlag{Name: "ref", Usage: "full `REF` or pattern, e.g. refs/heads/feature/* or *", EnvVars: []string{"JITSSH_REF"}},
		&cli.StringFlag{Name: "access", Usage: "`ACCESS`: read, write or force", Value: "read", EnvVars: []string{"JITSSH_ACCESS"}},
		&cli.DurationFlag{Name: "ttl", Usage: "how long the grant should last, a `DURATION` such as 30m or 2h", DefaultText: "the policy's", EnvVars: []string{"JITSSH_TTL"}},
		&cli.StringFlag{Name: "reason", Usage: "`TEXT`: why you need it", EnvVars: []string{"JITSSH_REASON"}},
		&cli.DurationFlag{Name: "request-ttl", Usage: "how long the request may wait for approval, a `DURATION`; it expires after", DefaultText: "the daemon's request_timeout", EnvVars: []string{"JITSSH_REQUEST_TTL"}},
		&cli.BoolFlag{Name: "no-wait", Usage: "print the request ID and exit; pick it up with 'jitssh request wait ID'"},
		&cli.BoolFlag{Name: "dry-run", Usage: "only say whether the request would be allowed, and under which rule"},
		&cli.StringFlag{Name: "out", Usage: "write the key to `FILE` (0600) and the certificate to FILE-cert.pub instead of using ssh-agent"},
		&cli.StringFlag{Name: "oidc-token", Usage: "request as a CI/CD job with the OIDC ID token in `FILE` (- reads stdin); needs no listed key", TakesFile: true},
		&cli.BoolFlag{Name: "oidc", Usage: "request as a CI/CD job: the token from JITSSH_OIDC_TOKEN, else from GitHub Actions (permissions: id-token: write)", EnvVars: []string{"JITSSH_OIDC"}},
		&cli.StringFlag{Name: "oidc-audience", Usage: "`AUDIENCE` to ask GitHub Actions' token for; the daemon's oidc: audience", Value: "jitssh", EnvVars: []string{"JITSSH_OIDC_AUDIENCE"}},
		jsonOutFlag(),
	)
	return &cli.Command{
		Name:  "request",
		Usage: "ask for access to one repository and ref for a while",
		UsageText: "jitssh request [--repo REPO] [--branch NAME|--ref REF] [--access ACCESS] [--ttl DURATION] --reason TEXT [--no-wait] [--dry-run] [--out FILE]\n" +
			"jitssh request --oidc-token FILE|--oidc --repo REPO --branch NAME|--ref REF [--access ACCESS] [--ttl DURATION] --out FILE",
		Description: "Generates a fresh ed25519 key, asks the daemon for a certificate, waits for\n" +
			"approval and loads key and certificate into ssh-agent for exactly the grant's\n" +
			"lifetime. Grants add up: your other grants stay there, each until its own end.\n" +
			"Use 'jitssh git-ssh' as GIT_SSH_COMMAND so that each Git operation is offered\n" +
			"the grant that covers it.\n" +
			"Ctrl-C cancels the request.\n\n" +
			"In a Git checkout, --repo defaults to the repository the URL of the remote\n" +
			"--remote (origin) names, and --branch to the branch checked out.\n\n" +
			"A CI/CD job requests with its platform's OIDC ID token instead of a listed key:\n" +
			"--oidc-token FILE, JITSSH_OIDC_TOKEN (GitLab CI's id_tokens), or --oidc in GitHub\n" +
			"Actions. It authenticates with the fresh key, which is what gets certified.\n\n" +
			"Exit status: 0 issued, 3 denied, 4 expired or cancelled, 5 still pending\n" +
			"(request wait interrupted), 1 error, 2 bad usage.",
		Flags:  flags,
		Action: runRequest,
		Subcommands: []*cli.Command{{
			Name:   "allowed",
			Usage:  "what the policy lets you request, and who must approve it",
			Flags:  append(clientFlags(), jsonOutFlag()),
			Action: runRequestAllowed,
		}, {
			Name:      "cancel",
			Usage:     "withdraw a pending request (one made with --no-wait, say)",
			ArgsUsage: "ID",
			Flags:     append(clientFlags(), jsonOutFlag()),
			Action:    runRequestCancel,
		}, {
			Name:  "wait",
			Usage: "wait for a request made with --no-wait and load its certificate",
			Description: "Ctrl-C stops waiting and leaves the request pending (exit status 5); run\n" +
				"request wait again to pick it up, or request cancel to withdraw it.",
			ArgsUsage: "ID",
			Flags:     append(clientFlags(), &cli.StringFlag{Name: "out", Usage: "write the key to `FILE` (0600) and the certificate to FILE-cert.pub instead of using ssh-agent"}, jsonOutFlag()),
			Action:    runRequestWait,
		}},
	}
}

func requestedRef(c *cli.Context, local localRepo) (string, error) {
	branch, ref := c.String("branch"), c.String("ref")
	switch {
	case branch != "" && ref != "":
		return "", cli.Exit("give --branch or --ref, not both", exitUsage)
	case branch != "":
		return "refs/heads/" + strings.TrimPrefix(branch, "refs/heads/"), nil
	case ref != "":
		return ref, nil
	}
	if b, ok := local.currentBranch(); ok {
		fmt.Fprintf(c.App.ErrWriter, "branch %s (checked out here)\n", b)
		return "refs/heads/" + b, nil
	}
	return "", cli.Exit("say which ref: --branch B or --ref REF", exitUsage)
}

// requestedRepo is --repo, else, in a Git checkout, the repository the
// URL of --remote names: ssh://host[:port]/org/repo(.git) or
// [user@]host:org/repo(.git), as jitssh dev's URLs are.
func requestedRepo(c *cli.Context, local localRepo) (string, error) {
	if repo := c.String("repo"); repo != "" {
		return repo, nil
	}
	remote := c.String("remote")
	url, err := local.remoteURL(remote)
	if err != nil {
		return "", cli.Exit("say which repository: --repo R (or run this in a Git checkout whose remote "+remote+" is the repository's SSH URL)", exitUsage)
	}
	u, ok := parseGitRemoteURL(url)
	if !ok {
		return "", cli.Exit(fmt.Sprintf("say which repository: --repo R (remote %s is %s, not an SSH URL)", remote, url), exitUsage)
	}
	repo, err := u.repo()
	if err != nil {
		return "", cli.Exit(fmt.Sprintf("say which repository: --repo R (remote %s, %s, names none: %v)", remote, url, err), exitUsage)
	}
	fmt.Fprintf(c.App.ErrWriter, "repository %s (from remote %s)\n", repo, remote)
	return repo, nil
}

func runRequest(c *cli.Context) error {
	var local localRepo
	repo, err := requestedRepo(c, local)
	if err != nil {
		return err
	}
	ref, err := requestedRef(c, local)
	if err != nil {
		return err
	}
	if token, isWorkload, err := workloadToken(c); err != nil {
		return err
	} else if isWorkload {
		return runWorkloadRequest(c, token, repo, ref)
	}
	dryRun, noWait, out := c.Bool("dry-run"), c.Bool("no-wait"), c.String("out")
	var ag agent.ExtendedAgent
	if !dryRun && out == "" {
		if ag, err = connectAgent(); err != nil {
			return fmt.Errorf("%w; start one with `eval $(ssh-agent)`, or use --out FILE", err)
		}
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return fmt.Errorf("generate key: %w", err)
	}
	pub, err := ssh.NewPublicKey(priv.Public())
	if err != nil {
		return err
	}
	client, err := dialDaemon(c)
	if err != nil {
		return err
	}
	defer client.Close()
	req := apiRequest{
		Repo: repo, Ref: ref, Access: c.String("access"), Reason: c.String("reason"),
		PublicKey: strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub))), DryRun: dryRun,
	}
	if c.IsSet("ttl") {
		ttl := c.Duration("ttl")
		if ttl <= 0 {
			return usageError("--ttl %s: a grant needs a positive duration (leave --ttl out for the policy's default)", ttl)
		}
		req.TTL = ttl.String()
	}
	if c.IsSet("request-ttl") {
		wait := c.Duration("request-ttl")
		if wait <= 0 {
			return usageError("--request-ttl %s: a request needs a positive time to wait (leave it out for the daemon's request_timeout)", wait)
		}
		req.RequestTTL = wait.String()
	}
	resp, err := submitRequest(client, req)
	if err != nil && dryRun {
		return printDryRunRefusal(c, err)
	}
	if err != nil {
		return err
	}
	r := resp.Request
	if dryRun {
		return printDryRun(c, r)
	}
	if noWait {
		if err := stashKey(r.ID, priv); err != nil {
			return err
		}
		if c.Bool("json") {
			return writeJSON(c.App.Writer, r)
		}
		fmt.Fprintln(c.App.Writer, r.ID)
		if len(resp.CanApprove) > 0 {
			fmt.Fprintf(c.App.ErrWriter, "waiting for %s; can approve: %s\n", describeSteps(r.Steps), strings.Join(resp.CanApprove, ", "))
		}
		return nil
	}
	return waitAndInstall(c, client, r, resp.CanApprove, priv, ag, out, true)
}

// dryRunAnswer is `request --dry-run --json`: whether the policy would
// take the request, under which rule, and what it would take.
type dryRunAnswer struct {
	Allowed     bool             `json:"allowed"`
	Rule        string           `json:"rule,omitempty"`
	Repo        string           `json:"repo,omitempty"`
	Ref         string           `json:"ref,omitempty"`
	Access      string           `json:"access,omitempty"`
	Grant       string           `json:"grant,omitempty"`
	TTL         string           `json:"ttl,omitempty"`
	AutoApprove bool             `json:"auto_approve"`
	Approvals   []approvals.Step `json:"approvals"`
	// Reason says why not, when not allowed.
	Reason string `json:"reason,omitempty"`
}

// printDryRunRefusal answers a dry run the policy refuses: as JSON on
// stdout under --json (exit 1 all the same), else as the error it is.
func printDryRunRefusal(c *cli.Context, err error) error {
	var ae *apiError
	if !c.Bool("json") || !errors.As(err, &ae) || ae.Code == codeInternal {
		return err
	}
	if werr := writeJSON(c.App.Writer, dryRunAnswer{Reason: ae.Message, Approvals: []approvals.Step{}}); werr != nil {
		return werr
	}
	return cli.Exit("", exitError)
}

// submitRequest submits req, signed with the person's own key unless it
// is a dry run, which needs no signature.
func submitRequest(client *apiClient, req apiRequest) (*apiResponse, error) {
	if !req.DryRun {
		who, err := client.call(methodWhoami, apiRequest{})
		if err != nil {
			return nil, err
		}
		stmt := requestStatement(who.Person, req)
		if req.Signature, err = client.sign(audit.NamespaceRequest, stmt.Message()); err != nil {
			return nil, err
		}
	}
	return client.call(methodSubmit, req)
}

func printDryRun(c *cli.Context, r *approvals.Request) error {
	if c.Bool("json") {
		steps := r.Steps
		if steps == nil {
			steps = []approvals.Step{}
		}
		return writeJSON(c.App.Writer, dryRunAnswer{Allowed: true, Rule: r.Rule, Repo: r.Repo, Ref: r.Ref, Access: r.Access, Grant: r.Grant,
			TTL: time.Duration(r.TTL).String(), AutoApprove: r.State == approvals.StateApproved, Approvals: steps})
	}
	w := c.App.Writer
	fmt.Fprintf(w, "allowed under rule %q: %s for %s\n", r.Rule, r.Grant, time.Duration(r.TTL))
	if r.State == approvals.StateApproved {
		fmt.Fprintln(w, "it would be approved automatically")
	} else {
		fmt.Fprintf(w, "it needs approval: %s\n", describeSteps(r.Steps))
	}
	return nil
}

func describeSteps(steps []approvals.Step) string {
	var parts []string
	for _, s := range steps {
		parts = append(parts, fmt.Sprintf("%d from %s", s.Count, s.Group))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, " and ")
}

func runRequestWait(c *cli.Context) error {
	if c.NArg() != 1 {
		return cli.Exit("jitssh request wait needs the request ID", exitUsage)
	}
	id := c.Args().First()
	priv, err := loadStashedKey(id)
	if err != nil {
		// A request that ended without a certificate took its key along;
		// say how it ended rather than that the key is missing.
		if ended := endedWithoutCertificate(c, id); ended != nil {
			return ended
		}
		return err
	}
	out := c.String("out")
	var ag agent.ExtendedAgent
	if out == "" {
		if ag, err = connectAgent(); err != nil {
			return fmt.Errorf("%w; start one with `eval $(ssh-agent)`, or use --out FILE", err)
		}
	}
	client, err := dialDaemon(c)
	if err != nil {
		return err
	}
	defer client.Close()
	resp, err := client.call(methodGet, apiRequest{ID: id})
	if err != nil {
		return err
	}
	if err := waitAndInstall(c, client, resp.Request, resp.CanApprove, priv, ag, out, false); err != nil {
		return err
	}
	removeStashedKey(id)
	return nil
}

// endedWithoutCertificate returns the exit error for request id when the
// daemon says it was denied, cancelled or expired, and nil otherwise.
func endedWithoutCertificate(c *cli.Context, id string) error {
	client, err := dialAPI(c)
	if err != nil {
		return nil
	}
	defer client.Close()
	resp, err := client.call(methodGet, apiRequest{ID: id})
	if err != nil || !settled(resp.Request) || resp.Request.State == approvals.StateApproved {
		return nil
	}
	if resp.Request.State == approvals.StateDenied {
		return cli.Exit(fmt.Sprintf("request %s denied", id), exitDenied)
	}
	return cli.Exit(fmt.Sprintf("request %s %s", id, resp.Request.State), exitExpired)
}

func runRequestCancel(c *cli.Context) error {
	if c.NArg() != 1 {
		return cli.Exit("jitssh request cancel needs the request ID", exitUsage)
	}
	id := c.Args().First()
	client, err := dialDaemon(c)
	if err != nil {
		return err
	}
	defer client.Close()
	resp, err := client.call(methodCancel, apiRequest{ID: id})
	if err != nil {
		return err
	}
	removeStashedKey(id)
	if c.Bool("json") {
		return writeJSON(c.App.Writer, resp.Request)
	}
	fmt.Fprintf(c.App.Writer, "%s cancelled\n", id)
	return nil
}

// waitAndInstall follows r until it ends; an issued certificate goes into
// the agent (or --out). With cancelOnInterrupt, Ctrl-C cancels r.
func waitAndInstall(c *cli.Context, client *apiClient, r *approvals.Request, canApprove []string, priv ed25519.PrivateKey, ag agent.ExtendedAgent, out string, cancelOnInterrupt bool) error {
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	final, err := awaitRequest(ctx, client, r, canApprove, c.App.ErrWriter)
	switch {
	case errors.Is(err, errDaemonLost):
		// The request is still open there. Keep the key, so the
		// certificate an approval brings is not lost.
		if serr := stashKey(r.ID, priv); serr != nil {
			return fmt.Errorf("%w while %s is pending, and could not keep its key: %w", err, r.ID, serr)
		}
		return fmt.Errorf("%w while %s is pending; the request stays open there, and `jitssh request wait %s` picks it up", err, r.ID, r.ID)
	case ctx.Err() != nil:
		if cancelOnInterrupt {
			if _, cerr := client.call(methodCancel, apiRequest{ID: r.ID}); cerr != nil {
				return fmt.Errorf("interrupted; cancelling %s failed: %w", r.ID, cerr)
			}
			return cli.Exit("interrupted: request "+r.ID+" cancelled", exitExpired)
		}
		return cli.Exit(fmt.Sprintf("stopped waiting; request %s is still pending: `jitssh request wait %s` picks it up, `jitssh request cancel %s` withdraws it", r.ID, r.ID, r.ID), exitStillPending)
	case err != nil:
		return err
	}
	if err := unissued(final); err != nil {
		removeStashedKey(final.ID) // it will never be used
		return err
	}
	cert, err := parseCert(final.Certificate)
	if err != nil {
		return err
	}
	if out != "" {
		if err := writeKeyAndCert(out, priv, cert); err != nil {
			return err
		}
	} else {
		if err := installInAgent(ag, priv, cert); err != nil {
			return err
		}
		if n := len(agentCerts()); n > 1 && !strings.Contains(os.Getenv("GIT_SSH_COMMAND"), "git-ssh") {
			fmt.Fprintf(c.App.ErrWriter, "note: ssh-agent holds %d jitssh certificates; set GIT_SSH_COMMAND='jitssh git-ssh' so git offers each repository its own\n", n)
		}
	}
	if c.Bool("json") {
		return writeJSON(c.App.Writer, final)
	}
	printIssued(c.App.Writer, final, out)
	return nil
}

// errDaemonLost: the daemon went away while a request was still open
// there.
var errDaemonLost = errors.New("lost the approval daemon")

// awaitRequest follows r until it is settled, showing where it stands on
// w: a live line on a terminal, a line per change otherwise. It returns
// ctx's error when ctx ends first, and errDaemonLost when the daemon goes
// away first.
func awaitRequest(ctx context.Context, client *apiClient, r *approvals.Request, canApprove []string, w io.Writer) (*approvals.Request, error) {
	if settled(r) {
		return r, nil
	}
	progress := newProgress(w)
	progress.update(r, canApprove)
	final := r
	err := client.stream(ctx, methodWait, apiRequest{ID: r.ID, After: r.Version}, func(resp *apiResponse) (bool, error) {
		final = resp.Request
		progress.update(final, resp.CanApprove)
		return !settled(final), nil
	})
	progress.done()
	if ctx.Err() != nil {
		return final, ctx.Err()
	}
	if err != nil || !settled(final) {
		if err == nil {
			err = errors.New("the connection closed")
		}
		return final, fmt.Errorf("%w: %w", errDaemonLost, err)
	}
	return final, nil
}

// unissued says how a settled request ended without a certificate (exit
// status 3 denied, 4 otherwise), or nil when it was approved.
func unissued(r *approvals.Request) error {
	switch r.State {
	case approvals.StateApproved:
		return nil
	case approvals.StateDenied:
		reason := ""
		if r.Decision != nil {
			reason = fmt.Sprintf(" by %s: %s", r.Decision.By, r.Decision.Reason)
		}
		return cli.Exit(fmt.Sprintf("request %s denied%s", r.ID, reason), exitDenied)
	}
	return cli.Exit(fmt.Sprintf("request %s %s", r.ID, r.State), exitExpired)
}

func parseCert(line string) (*ssh.Certificate, error) {
	pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(line))
	if err != nil {
		return nil, fmt.Errorf("the daemon sent an unreadable certificate: %w", err)
	}
	cert, ok := pub.(*ssh.Certificate)
	if !ok {
		return nil, errors.New("the daemon sent a plain key, not a certificate")
	}
	return cert, nil
}

// installInAgent adds key and certificate with the agent lifetime set to
// what is left of the certificate, so the key vanishes with the grant.
// Grants add up: the person's other certificates stay, each until its own
// end, even on the same repository. A newer grant may be narrower or
// shorter than an older one, and replacing would leave nothing once it
// ended; jitssh git-ssh offers each Git operation the certificate that
// covers it.
func installInAgent(ag agent.ExtendedAgent, priv ed25519.PrivateKey, cert *ssh.Certificate) error {
	left := time.Until(time.Unix(int64(cert.ValidBefore), 0))
	if left <= 0 {
		return errors.New("the certificate has already expired")
	}
	secs := uint32(left / time.Second)
	if secs == 0 {
		secs = 1
	}
	if err := ag.Add(agent.AddedKey{PrivateKey: priv, Certificate: cert, Comment: cert.KeyId, LifetimeSecs: secs}); err != nil {
		return fmt.Errorf("add certificate to ssh-agent: %w", err)
	}
	return nil
}

func writeKeyAndCert(path string, priv ed25519.PrivateKey, cert *ssh.Certificate) error {
	block, err := ssh.MarshalPrivateKey(priv, cert.KeyId)
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		return fmt.Errorf("write key: %w", err)
	}
	if err := atomicfile.WriteFile(path+"-cert.pub", ssh.MarshalAuthorizedKey(cert), 0o644); err != nil {
		return fmt.Errorf("write certificate: %w", err)
	}
	return nil
}

func printIssued(w io.Writer, r *approvals.Request, out string) {
	left := time.Until(r.ValidBefore).Round(time.Second)
	fmt.Fprintf(w, "issued %s (serial %d): %s for %s\n", r.ID, r.Serial, r.Grant, left)
	if out != "" {
		fmt.Fprintf(w, "key: %s  certificate: %s-cert.pub\n", out, out)
		fmt.Fprintf(w, "use it with: GIT_SSH_COMMAND='ssh -i %s -o CertificateFile=%s-cert.pub'\n", out, out)
	} else {
		fmt.Fprintln(w, "the key and certificate are in ssh-agent until the grant ends")
	}
	url := os.Getenv("JITSSH_GIT_URL")
	if url == "" {
		return
	}
	repoURL := strings.TrimSuffix(url, "/") + "/" + r.Repo + ".git"
	branch, isBranch := strings.CutPrefix(r.Ref, "refs/heads/")
	isBranch = isBranch && !strings.HasSuffix(branch, "*")
	switch {
	case r.Access == "read" && isBranch:
		fmt.Fprintf(w, "next: git clone -b %s %s\n", branch, repoURL)
	case r.Access == "read":
		fmt.Fprintf(w, "next: git clone %s\n", repoURL)
	case isBranch:
		fmt.Fprintf(w, "next: git push %s HEAD:%s\n", repoURL, r.Ref)
	default:
		fmt.Fprintf(w, "next: git push %s HEAD:%s\n", repoURL, strings.Replace(r.Ref, "*", "my-branch", 1))
	}
}

// stateDir is where a --no-wait request's key waits for `request wait`.
func stateDir() (string, error) {
	if d := os.Getenv("JITSSH_STATE_DIR"); d != "" {
		return d, nil
	}
	if d := os.Getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "jitssh"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("no place for pending keys: set JITSSH_STATE_DIR: %w", err)
	}
	return filepath.Join(home, ".local", "state", "jitssh"), nil
}

func pendingKeyPath(id string) (string, error) {
	if strings.ContainsAny(id, "/\\") || id == "" || strings.HasPrefix(id, ".") {
		return "", cli.Exit(fmt.Sprintf("bad request ID %q", id), exitUsage)
	}
	dir, err := stateDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, "pending", id+".key"), nil
}

// stashKey keeps a --no-wait request's private key (0600, in a 0700
// directory) until `request wait` loads it into the agent and removes it.
func stashKey(id string, priv ed25519.PrivateKey) error {
	path, err := pendingKeyPath(id)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("keep pending key: %w", err)
	}
	block, err := ssh.MarshalPrivateKey(priv, id)
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(path, pem.EncodeToMemory(block), 0o600)
}

func loadStashedKey(id string) (ed25519.PrivateKey, error) {
	path, err := pendingKeyPath(id)
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("no key for %s on this machine (%s): was it made here with --no-wait?", id, path)
	}
	raw, err := ssh.ParseRawPrivateKey(data)
	if err != nil {
		return nil, fmt.Errorf("read pending key: %w", err)
	}
	priv, ok := raw.(*ed25519.PrivateKey)
	if !ok {
		return nil, errors.New("pending key is not ed25519")
	}
	return *priv, nil
}

func removeStashedKey(id string) {
	if path, err := pendingKeyPath(id); err == nil {
		os.Remove(path)
	}
}

func runRequestAllowed(c *cli.Context) error {
	client, err := dialDaemon(c)
	if err != nil {
		return err
	}
	defer client.Close()
	resp, err := client.call(methodAllowed, apiRequest{})
	if err != nil {
		return err
	}
	if c.Bool("json") {
		if resp.Rules == nil {
			resp.Rules = []ruleSummary{}
		}
		return writeJSON(c.App.Writer, resp.Rules)
	}
	if len(resp.Rules) == 0 {
		fmt.Fprintln(c.App.Writer, "the policy lets you request nothing")
		return nil
	}
	for _, r := range resp.Rules {
		approval := "approved automatically"
		if !r.AutoApprove {
			approval = "needs " + describeSteps(r.Approvals)
		}
		fmt.Fprintf(c.App.Writer, "%s: %s on %s, refs %s; %s; ttl %s (at most %s)\n", r.Name,
			strings.Join(r.Access, "/"), strings.Join(r.Repos, ", "), strings.Join(r.Refs, ", "), approval, r.DefaultTTL, r.MaxTTL)
	}
	return nil
}
