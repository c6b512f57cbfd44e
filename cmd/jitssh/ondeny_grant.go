package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/jitssh/jitssh/approvals"
	"github.com/jitssh/jitssh/internal/atomicfile"
	"github.com/jitssh/jitssh/principals"
	"github.com/jitssh/jitssh/sshd"
)

// grantNeed is the one grant an operation git-ssh saw refused needs.
type grantNeed struct {
	repo   string
	ref    string // a full ref, a pattern or "*"
	access principals.Access
	// what names the Git operation, for the request's default reason.
	what string
}

// pushNeed is the grant that covers every update of a push: one
// connection carries one certificate, so one grant must cover them all.
// Several refs ask for the pattern of the directory they share.
func pushNeed(repo string, ops []refOpOf) grantNeed {
	need := grantNeed{repo: repo}
	var refs, words []string
	for _, o := range ops {
		if a := sshd.DecideRef(nil, repo, o.cmd.ref, o.op).Need; a > need.access {
			need.access = a
		}
		refs = append(refs, o.cmd.ref)
		words = append(words, opWord(o.op)+" "+o.cmd.ref)
	}
	need.ref = commonRefPattern(refs)
	need.what = "git push: " + strings.Join(words, ", ")
	return need
}

// readNeed is the grant a fetch, clone or archive of a repository no
// grant names asks for: read on all of it.
func readNeed(repo string, svc sshd.Service) grantNeed {
	what := "git fetch"
	if svc == sshd.UploadArchive {
		what = "git archive"
	}
	return grantNeed{repo: repo, ref: "*", access: principals.Read, what: what}
}

func opWord(op sshd.RefOp) string {
	switch op {
	case sshd.RefCreate:
		return "create"
	case sshd.RefFastForward:
		return "update"
	case sshd.RefRewrite:
		return "force-update"
	case sshd.RefDelete:
		return "delete"
	}
	return "change"
}

// commonRefPattern is refs' one ref, or the pattern of the deepest
// directory they share ("refs/heads/feature/*"), or "*".
func commonRefPattern(refs []string) string {
	first := refs[0]
	same := true
	for _, r := range refs[1:] {
		same = same && r == first
	}
	if same {
		return first
	}
	dir := strings.Split(first, "/")
	dir = dir[:len(dir)-1]
	for _, r := range refs[1:] {
		parts := strings.Split(r, "/")
		n := 0
		for n < len(dir) && n < len(parts)-1 && dir[n] == parts[n] {
			n++
		}
		dir = dir[:n]
	}
	if len(dir) == 0 {
		return "*"
	}
	return strings.Join(dir, "/") + "/*"
}

// reason is the request's reason: JITSSH_REASON, else the operation.
func (n grantNeed) reason() string {
	if r := os.Getenv("JITSSH_REASON"); r != "" {
		return r
	}
	return cutLine(n.what)
}

// apiRequest is the request for n with key.
func (n grantNeed) apiRequest(key string, dryRun bool) (apiRequest, error) {
	req := apiRequest{Repo: n.repo, Ref: n.ref, Access: n.access.String(), Reason: n.reason(), PublicKey: key, DryRun: dryRun}
	if v := os.Getenv("JITSSH_TTL"); v != "" {
		ttl, err := time.ParseDuration(v)
		if err != nil || ttl <= 0 {
			return req, fmt.Errorf("JITSSH_TTL=%s is not a duration such as 30m", v)
		}
		req.TTL = ttl.String()
	}
	return req, nil
}

// command is the jitssh request line that asks for n, to paste as it is.
func (n grantNeed) command() string {
	words := []string{"jitssh", "request", "--repo", shWord(n.repo)}
	if b, ok := strings.CutPrefix(n.ref, "refs/heads/"); ok && !strings.Contains(b, "*") {
		words = append(words, "--branch", shWord(b))
	} else {
		words = append(words, "--ref", shq(n.ref))
	}
	words = append(words, "--access", n.access.String())
	if v := os.Getenv("JITSSH_TTL"); v != "" {
		words = append(words, "--ttl", shWord(v))
	}
	words = append(words, "--reason", shq(n.reason()))
	return strings.Join(words, " ")
}

// grant is n as a principal would spell it, for messages.
func (n grantNeed) grant() string {
	return principals.Grant{Access: n.access, Repo: n.repo, Ref: n.ref}.String()
}

// dialDaemonFromEnv connects to the approval daemon as jitssh request
// would, from JITSSH_SERVER, JITSSH_IDENTITY and JITSSH_KNOWN_HOSTS.
func dialDaemonFromEnv() (*apiClient, error) {
	server := os.Getenv("JITSSH_SERVER")
	if server == "" {
		return nil, errors.New("JITSSH_SERVER is not set")
	}
	return connectAPI(server, os.Getenv("JITSSH_IDENTITY"), os.Getenv("JITSSH_KNOWN_HOSTS"))
}

// The request git-ssh files for an operation is remembered until it
// ends, so that another refused attempt while it is pending waits for it
// instead of filing a second one. The record is a file under
// $JITSSH_STATE_DIR/on-deny named after the grant, holding the request ID;
// the request's key waits beside --no-wait keys.

func pendingRecordPath(n grantNeed) (string, error) {
	dir, err := stateDir()
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256([]byte(n.grant()))
	return filepath.Join(dir, "on-deny", hex.EncodeToString(sum[:12])), nil
}

func writePendingRecord(n grantNeed, id string) error {
	path, err := pendingRecordPath(n)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("remember pending request: %w", err)
	}
	return atomicfile.WriteFile(path, []byte(id+"\n"), 0o600)
}

func readPendingRecord(n grantNeed) string {
	path, err := pendingRecordPath(n)
	if err != nil {
		return ""
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(data))
}

func removePendingRecord(n grantNeed) {
	if path, err := pendingRecordPath(n); err == nil {
		os.Remove(path)
	}
}

// pendingFor returns the request filed earlier for n that may still bring
// its certificate, with the key it certifies, or nil. A record of a
// request that ended without one is removed.
func pendingFor(client *apiClient, n grantNeed) (*apiResponse, ed25519.PrivateKey) {
	id := readPendingRecord(n)
	if id == "" {
		return nil, nil
	}
	resp, err := client.call(methodGet, apiRequest{ID: id})
	if err != nil {
		var api *apiError
		if errors.As(err, &api) {
			removePendingRecord(n) // unknown to the daemon: nothing to wait for
		}
		return nil, nil
	}
	r := resp.Request
	live := r.State == approvals.StatePending ||
		r.State == approvals.StateApproved && r.Revoked == nil && (!r.HasCertificate() || time.Now().Before(r.ValidBefore))
	if !live {
		removePendingRecord(n)
		removeStashedKey(id)
		return nil, nil
	}
	priv, err := loadStashedKey(id)
	if err != nil {
		removePendingRecord(n)
		return nil, nil
	}
	return resp, priv
}

// hintLines says what to run to get n: the jitssh request line the
// policy would accept, or why there is none. It never files anything.
func hintLines(n grantNeed) []string {
	client, err := dialDaemonFromEnv()
	if err != nil {
		return []string{fmt.Sprintf("jitssh: could not ask the approval daemon what to request (%s)", cutLine(err.Error())),
			"jitssh: to ask for it: " + n.command()}
	}
	defer client.Close()
	if resp, _ := pendingFor(client, n); resp != nil {
		return []string{fmt.Sprintf("jitssh: %s, filed earlier for this, is still %s; to wait for it and load its certificate:", resp.Request.ID, resp.Request.State),
			"jitssh request wait " + resp.Request.ID}
	}
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return []string{"jitssh: " + err.Error()}
	}
	key, err := ssh.NewPublicKey(pub)
	if err != nil {
		return []string{"jitssh: " + err.Error()}
	}
	req, err := n.apiRequest(strings.TrimSpace(string(ssh.MarshalAuthorizedKey(key))), true)
	if err != nil {
		return []string{"jitssh: " + err.Error()}
	}
	resp, err := client.call(methodSubmit, req)
	if err != nil {
		return []string{refusalLine(n, err)}
	}
	r := resp.Request
	how := "approved automatically"
	if r.State != approvals.StateApproved {
		how = "needs " + describeSteps(r.Steps) + canApproveNote(resp.CanApprove)
	}
	return []string{fmt.Sprintf("jitssh: the policy allows %s under rule %q, %s; ask for it with:", n.grant(), r.Rule, how), n.command()}
}

// shortRefusal is refusalLine in a few words.
func shortRefusal(n grantNeed, err error) string {
	var api *apiError
	if errors.As(err, &api) && api.Code == "no_rule" {
		return "no rule of the policy allows " + n.grant()
	}
	return "no request for " + n.grant() + ": see above"
}

// refusalLine words the daemon's refusal of a request for n.
func refusalLine(n grantNeed, err error) string {
	var api *apiError
	if errors.As(err, &api) && api.Code == "no_rule" {
		return fmt.Sprintf("jitssh: no rule of the policy lets you request %s, so there is nothing to ask for (%s)", n.grant(), cutLine(api.Message))
	}
	if errors.As(err, &api) {
		return fmt.Sprintf("jitssh: the approval daemon refuses a request for %s: %s", n.grant(), cutLine(api.Message))
	}
	return fmt.Sprintf("jitssh: could not ask the approval daemon for %s (%s)", n.grant(), cutLine(err.Error()))
}

// errNotObtained ends an automatic request without a certificate: msg
// is the line for stderr, short (when set) the reason git is given for
// each ref.
type errNotObtained struct{ msg, short string }

func (e *errNotObtained) Error() string { return e.msg }

// refReason is the reason git is given for each ref of a push that did
// not get its grant.
func refReason(err error) string {
	var e *errNotObtained
	if errors.As(err, &e) && e.short != "" {
		return e.short
	}
	return strings.TrimPrefix(err.Error(), "jitssh: ")
}

// obtainGrant gets a certificate for n into ssh-agent: it files the
// request (or picks up the one filed earlier for n), says who can approve
// it, waits while showing where it stands on stderr, and loads the
// certificate when it comes. A signal on sigs cancels the request, as does
// ctx ending (the git that ran git-ssh went away).
func obtainGrant(ctx context.Context, n grantNeed, sigs <-chan os.Signal, w *os.File) (*ssh.Certificate, error) {
	ag, err := connectAgent()
	if err != nil {
		return nil, &errNotObtained{msg: fmt.Sprintf("jitssh: no ssh-agent to load a grant into (%s)", cutLine(err.Error()))}
	}
	client, err := dialDaemonFromEnv()
	if err != nil {
		return nil, &errNotObtained{msg: fmt.Sprintf("jitssh: could not reach the approval daemon to request %s (%s)", n.grant(), cutLine(err.Error()))}
	}
	defer client.Close()

	resp, priv := pendingFor(client, n)
	if resp != nil {
		fmt.Fprintf(w, "jitssh: %s, filed earlier for %s, is still %s; waiting for it (Ctrl-C cancels it)\n", resp.Request.ID, n.grant(), resp.Request.State)
	} else {
		if resp, priv, err = fileRequest(client, n); err != nil {
			return nil, err
		}
		r := resp.Request
		who := ""
		if len(resp.CanApprove) > 0 {
			who = "; " + strings.Join(resp.CanApprove, ", ") + " can approve it"
		}
		if r.State == approvals.StatePending {
			fmt.Fprintf(w, "jitssh: requested %s as %s under rule %q: needs %s%s; waiting (Ctrl-C cancels it)\n", n.grant(), r.ID, r.Rule, describeSteps(r.Steps), who)
		} else {
			fmt.Fprintf(w, "jitssh: requested %s as %s under rule %q: approved automatically\n", n.grant(), r.ID, r.Rule)
		}
	}
	r := resp.Request

	waitCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	interrupted := make(chan os.Signal, 1)
	go func() {
		select {
		case s := <-sigs:
			interrupted <- s
			cancel()
		case <-waitCtx.Done():
		}
	}()
	final, err := awaitRequest(waitCtx, client, r, resp.CanApprove, w)
	switch {
	case errors.Is(err, errDaemonLost):
		return nil, &errNotObtained{msg: fmt.Sprintf("jitssh: lost the approval daemon while %s is pending; it stays open there, and the next git command that needs it waits for it", r.ID)}
	case waitCtx.Err() != nil:
		why := "git went away"
		select {
		case s := <-interrupted:
			why = "interrupted (" + s.String() + ")"
		default:
		}
		_, cerr := client.call(methodCancel, apiRequest{ID: r.ID})
		removePendingRecord(n)
		removeStashedKey(r.ID)
		if cerr != nil {
			return nil, &errNotObtained{msg: fmt.Sprintf("jitssh: %s; cancelling %s failed: %s", why, r.ID, cutLine(cerr.Error()))}
		}
		return nil, &errNotObtained{msg: fmt.Sprintf("jitssh: %s: request %s cancelled", why, r.ID)}
	case err != nil:
		return nil, &errNotObtained{msg: "jitssh: " + cutLine(err.Error())}
	}
	removePendingRecord(n)
	removeStashedKey(r.ID)
	if err := endedWithoutGrant(final); err != nil {
		return nil, err
	}
	cert, err := parseCert(final.Certificate)
	if err != nil {
		return nil, err
	}
	if err := installInAgent(ag, priv, cert); err != nil {
		return nil, err
	}
	left := time.Until(time.Unix(int64(cert.ValidBefore), 0)).Round(time.Second)
	fmt.Fprintf(w, "jitssh: %s approved: %s for %s, in ssh-agent now; going on with git\n", final.ID, final.Grant, left)
	return cert, nil
}

// endedWithoutGrant says how a settled request ended without a
// certificate, for stderr and, through refReason, for each ref of the
// push; nil when it was approved.
func endedWithoutGrant(r *approvals.Request) error {
	if err := unissued(r); err != nil {
		return &errNotObtained{msg: "jitssh: " + err.Error()}
	}
	return nil
}

// fileRequest submits a signed request for n with a fresh key, and
// remembers it, key included, until it ends.
func fileRequest(client *apiClient, n grantNeed) (*apiResponse, ed25519.PrivateKey, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate key: %w", err)
	}
	pub, err := ssh.NewPublicKey(priv.Public())
	if err != nil {
		return nil, nil, err
	}
	req, err := n.apiRequest(strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub))), false)
	if err != nil {
		return nil, nil, &errNotObtained{msg: "jitssh: " + err.Error()}
	}
	resp, err := submitRequest(client, req)
	if err != nil {
		return nil, nil, &errNotObtained{msg: refusalLine(n, err), short: shortRefusal(n, err)}
	}
	id := resp.Request.ID
	if err := stashKey(id, priv); err != nil {
		return nil, nil, err
	}
	if err := writePendingRecord(n, id); err != nil {
		return nil, nil, err
	}
	return resp, priv, nil
}
