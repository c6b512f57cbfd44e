package sshd

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jitssh/jitssh/principals"
)

// Environment variables that carry a push's authorization from Serve to
// the hooks git runs. They are set by jitssh, never taken from a client.
const (
	envHookRepo   = "JITSSH_HOOK_REPO"
	envHookGrants = "JITSSH_HOOK_GRANTS"
	envHookFence  = "JITSSH_HOOK_FENCE"
	envHookReport = "JITSSH_HOOK_REPORT"
	envHookPushed = "JITSSH_HOOK_PUSHED"
	envHookErrors = "JITSSH_HOOK_ERRORS"
)

// hookNames are the hooks jitssh installs. pre-receive and proc-receive
// enforce grants; the others only record and chain to the repository's own
// hook of the same name, so an operator's hooks keep running.
var hookNames = []string{"pre-receive", "proc-receive", "update", "post-receive", "post-update"}

// GitOptions configure how git is run.
type GitOptions struct {
	// Git is the git binary; empty means "git" on PATH.
	Git string
	// HookCommand is the argv prefix that runs RunHook, to which the hook
	// name and its arguments are appended; empty means this executable
	// with the argument "hook" (the jitssh binary's hidden hook command).
	HookCommand []string
	// Env is the environment git starts from; nil means PATH and HOME of
	// this process. Nothing of the client's environment is added except a
	// validated GIT_PROTOCOL.
	Env []string
}

// Git runs git for authorized decisions. Create it once with NewGit and
// Close it when done: it owns a private hooks directory, made on the first
// push so that fetches never pay for it.
type Git struct {
	git     string
	env     []string
	hookCmd []string

	hooksOnce sync.Once
	hooksDir  string
	hooksErr  error
}

// NewGit returns a runner.
func NewGit(opts GitOptions) (*Git, error) {
	g := &Git{git: opts.Git, env: opts.Env, hookCmd: opts.HookCommand}
	if g.git == "" {
		g.git = "git"
	}
	if g.env == nil {
		g.env = baseEnv()
	}
	if len(g.hookCmd) == 0 {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("find own executable for git hooks: %w", err)
		}
		g.hookCmd = []string{exe, "hook"}
	}
	return g, nil
}

// hooks returns the hooks directory, creating it the first time.
func (g *Git) hooks() (string, error) {
	g.hooksOnce.Do(func() {
		dir, err := os.MkdirTemp("", "jitssh-hooks-")
		if err != nil {
			g.hooksErr = fmt.Errorf("create hooks directory: %w", err)
			return
		}
		for _, name := range hookNames {
			// A hook command that cannot start (126, 127) or dies by a
			// signal cannot say so itself; the script does.
			script := "#!/bin/sh\n" + shellQuoteArgs(g.hookCmd) + " " + name + " \"$@\"\n" +
				"rc=$?\n" +
				"if [ $rc -ge 126 ] && [ -n \"$" + envHookErrors + "\" ]; then\n" +
				"\tprintf '{\"hook\":\"" + name + "\",\"err\":\"the hook command did not run to its end (exit status %d)\"}\\n' $rc >>\"$" + envHookErrors + "\"\n" +
				"fi\n" +
				"exit $rc\n"
			if err := os.WriteFile(filepath.Join(dir, name), []byte(script), 0o700); err != nil {
				os.RemoveAll(dir)
				g.hooksErr = fmt.Errorf("write %s hook: %w", name, err)
				return
			}
		}
		g.hooksDir = dir
	})
	return g.hooksDir, g.hooksErr
}

// Close removes the hooks directory, if a push made one.
func (g *Git) Close() error {
	g.hooksOnce.Do(func() {}) // no directory after Close
	if g.hooksDir == "" {
		return nil
	}
	return os.RemoveAll(g.hooksDir)
}

func baseEnv() []string {
	var env []string
	for _, k := range []string{"PATH", "HOME", "LANG", "LC_ALL", "TMPDIR"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	return env
}

// Stdio are the client's streams.
type Stdio struct {
	In  io.Reader
	Out io.Writer
	Err io.Writer
}

// RefUpdate is one ref a push asked to change, and what became of it.
type RefUpdate struct {
	Ref    string `json:"ref"`
	Old    string `json:"old"`
	New    string `json:"new"`
	Result string `json:"result"` // "updated" or "refused"
	Reason string `json:"reason,omitempty"`
}

// Result is what a served operation did.
type Result struct {
	// Updates are the refs a push changed or was refused, in order.
	Updates  []RefUpdate
	BytesIn  int64
	BytesOut int64
	// Protocol is the Git protocol version spoken ("0", "1" or "2").
	Protocol string
	// HookErrors are failures of jitssh's own hooks during a push, for
	// the server's log; the client was told only that a hook failed.
	HookErrors []HookError
}

// Serve runs the decided operation with the client's streams. gitProtocol
// is the client's GIT_PROTOCOL value, "" when none was sent. For a push,
// beforeUpdate is called with every update the push asked for, each
// "allowed" or "refused" with its reason, before git changes any ref; an
// error from it refuses them all. It is not called when nothing would
// change; nil lets the allowed ones happen. The returned error is non-nil
// when git failed or the operation was refused part-way (an archive of a
// ref outside the grant, for instance).
func (g *Git) Serve(ctx context.Context, d Decision, gitProtocol string, stdio Stdio, beforeUpdate func([]RefUpdate) error) (Result, error) {
	if !d.Allowed() {
		return Result{}, fmt.Errorf("serve refused decision: %w", d.Err)
	}
	in := &countingReader{r: stdio.In}
	out := &countingWriter{w: stdio.Out}
	stdio.In, stdio.Out = in, out
	var res Result
	var err error
	switch d.Command.Service {
	case UploadPack:
		res, err = g.uploadPack(ctx, d, gitProtocol, stdio)
	case ReceivePack:
		res, err = g.receivePack(ctx, d, gitProtocol, stdio, beforeUpdate)
	case UploadArchive:
		err = g.uploadArchive(ctx, d, stdio)
	default:
		err = fmt.Errorf("%w: %s", ErrCommand, d.Command.Service)
	}
	res.BytesIn, res.BytesOut = in.n.Load(), out.count()
	return res, err
}

// protocolVersion validates a client's GIT_PROTOCOL value. Only the
// version key is understood; anything else is dropped, never passed on.
func protocolVersion(v string) string {
	switch v {
	case "version=0", "version=1", "version=2":
		return v[len("version="):]
	}
	return ""
}

// safeConfig pins every setting that decides what a client may obtain, so
// no repository config can widen it.
var safeConfig = []string{
	"uploadpack.allowAnySHA1InWant=false",
	"uploadpack.allowReachableSHA1InWant=false",
	"uploadpack.allowTipSHA1InWant=false",
	"uploadpack.allowRefInWant=false",
	"uploadArchive.allowUnreachable=false",
}

func (g *Git) uploadPack(ctx context.Context, d Decision, gitProtocol string, stdio Stdio) (Result, error) {
	version := protocolVersion(gitProtocol)
	cfg := append([]string(nil), safeConfig...)
	may := func(op RefOp) bool { return DecideRef(d.Grants, d.Command.Repo, "", op).Allowed }
	listAll, includeTag := may(RefListAll), may(RefIncludeTag)
	// Protocol v2 serves any object by id to anyone who can connect,
	// whatever is hidden, so a holder who may not fetch by id is answered
	// in v0.
	if version == "2" && !may(RefFetchByID) {
		version = ""
	}
	if !listAll {
		hidden, err := hideRefsConfig("uploadpack.hideRefs", d, true)
		if err != nil {
			return Result{}, err
		}
		cfg = append(cfg, hidden...)
	}
	// A partial clone fetches missing objects by id later; without the
	// filter capability the client fetches whole instead of failing at
	// checkout.
	if !may(RefFilter) {
		cfg = append(cfg, "uploadpack.allowFilter=false")
	}
	if !listAll || !includeTag {
		// Serve's writer serialises writes; the guard below writes to it
		// directly, never through the advertisement editor.
		clientOut := stdio.Out
		// git names HEAD's target in the capabilities even when both
		// are hidden, and include-tag would bring hidden annotated tags
		// along (the request guard also drops it should a client send
		// it anyway).
		stdio.Out = &advertWriter{w: stdio.Out, edit: func(caps []string) []string {
			return slices.DeleteFunc(caps, func(c string) bool {
				if c == "include-tag" {
					return !includeTag
				}
				target, ok := strings.CutPrefix(c, "symref=HEAD:")
				return ok && !DecideRef(d.Grants, d.Command.Repo, target, RefRead).Allowed
			})
		}}
		stdio.In = &requestGuard{r: stdio.In, out: clientOut, vet: fetchVetter(d)}
	}
	env := g.env
	if version != "" {
		env = append(env[:len(env):len(env)], "GIT_PROTOCOL=version="+version)
	}
	err := g.run(ctx, cfg, []string{"upload-pack", "--strict", d.Path}, env, stdio)
	return Result{Protocol: orZero(version)}, err
}

func orZero(v string) string {
	if v == "" {
		return "0"
	}
	return v
}

func (g *Git) receivePack(ctx context.Context, d Decision, gitProtocol string, stdio Stdio, beforeUpdate func([]RefUpdate) error) (Result, error) {
	version := protocolVersion(gitProtocol)
	if version == "2" {
		version = "" // push has no v2; git would fall back anyway
	}
	report, err := os.CreateTemp("", "jitssh-push-")
	if err != nil {
		return Result{}, fmt.Errorf("create push report: %w", err)
	}
	defer os.Remove(report.Name())
	defer report.Close()
	// pre-receive writes here every update the client asked for, so that
	// proc-receive and the audit record can tell which ones git refused
	// on its own.
	pushed, err := os.CreateTemp("", "jitssh-pushed-")
	if err != nil {
		return Result{}, fmt.Errorf("create push list: %w", err)
	}
	defer os.Remove(pushed.Name())
	pushed.Close()
	hookErrors, err := os.CreateTemp("", "jitssh-hook-errors-")
	if err != nil {
		return Result{}, fmt.Errorf("create hook error file: %w", err)
	}
	defer os.Remove(hookErrors.Name())
	hookErrors.Close()

	hooksDir, err := g.hooks()
	if err != nil {
		return Result{}, err
	}
	if beforeUpdate == nil {
		beforeUpdate = func([]RefUpdate) error { return nil }
	}
	gate, err := openPushGate(beforeUpdate)
	if err != nil {
		return Result{}, err
	}
	defer gate.close()
	cfg := append([]string(nil), safeConfig...)
	cfg = append(cfg,
		"core.hooksPath="+hooksDir,
		"receive.procReceiveRefs=refs/",
		"receive.advertisePushOptions=false",
	)
	args := []string{"receive-pack"}
	env := append(g.env[:len(g.env):len(g.env)],
		envHookRepo+"="+d.Command.Repo,
		envHookGrants+"="+grantsString(d.Grants),
		envHookReport+"="+report.Name(),
		envHookPushed+"="+pushed.Name(),
		envHookGate+"="+gate.path(),
		envHookErrors+"="+hookErrors.Name(),
	)
	var hr *hiddenReport
	if !DecideRef(d.Grants, d.Command.Repo, "", RefListAll).Allowed {
		hidden, err := hideRefsConfig("receive.hideRefs", d, false)
		if err != nil {
			return Result{}, err
		}
		cfg = append(cfg, hidden...)
		// git refuses a hidden ref in its own words; the client gets
		// jitssh's, as for any other ref, from the update it sent.
		hr = &hiddenReport{w: stdio.Out, reason: func(ref string, deleting bool) string {
			return hiddenRefReason(d, pushed.Name(), ref, deleting)
		}}
		stdio.Out = hr
	}
	if !DecideRef(d.Grants, d.Command.Repo, "", RefBuildOnAny).Allowed {
		// A ref-scoped writer could otherwise make the server resolve a
		// delta against, or link history to, an object it cannot read,
		// then fetch the result back. No thin packs, and a reachability
		// fence in pre-receive, close both.
		//
		// Thin packs are refused (index-pack always runs, without
		// --fix-thin) and clients are told so with the no-thin
		// capability; then the push quarantine holds exactly the objects
		// the client sent, which is what the fence checks against.
		args = append(args, "--reject-thin-pack-for-testing")
		cfg = append(cfg, "receive.unpackLimit=1")
		env = append(env, envHookFence+"=1")
		stdio.Out = &advertWriter{w: stdio.Out, edit: func(caps []string) []string { return append(caps, "no-thin") }}
	}
	if version != "" {
		env = append(env, "GIT_PROTOCOL=version="+version)
	}
	args = append(args, d.Path)
	runErr := g.run(ctx, cfg, args, env, stdio)
	if hr != nil {
		if err := hr.flush(); err != nil && runErr == nil {
			runErr = err
		}
	}
	updates, err := readReport(report)
	if err != nil && runErr == nil {
		runErr = err
	}
	updates, err = addUnreported(updates, pushed.Name(), d)
	if err != nil && runErr == nil {
		runErr = err
	}
	hookErrs, err := readHookErrors(hookErrors.Name())
	if err != nil && runErr == nil {
		runErr = err
	}
	// git reports a failed hook to the client and carries on, exiting 0.
	if len(hookErrs) > 0 && runErr == nil {
		runErr = fmt.Errorf("%s hook failed: %s", hookErrs[0].Hook, hookErrs[0].Err)
	}
	return Result{Updates: updates, Protocol: orZero(version), HookErrors: hookErrs}, runErr
}

// addUnreported adds to updates, as refused, what the client asked for
// that no hook reported: refs git refused before jitssh's hooks saw them
// (a hidden ref), or all of them when the push was declined as a whole.
func addUnreported(updates []RefUpdate, pushedFile string, d Decision) ([]RefUpdate, error) {
	pushed, err := readPushList(pushedFile)
	if err != nil {
		return updates, err
	}
	reported := make(map[string]bool, len(updates))
	for _, u := range updates {
		reported[u.Ref] = true
	}
	for _, c := range pushed {
		if reported[c.ref] {
			continue
		}
		reason := "push declined"
		if r := refusalOf(d, c); r != "" {
			reason = r
		}
		updates = append(updates, RefUpdate{Ref: c.ref, Old: c.old, New: c.new, Result: "refused", Reason: reason})
	}
	return updates, nil
}

// refusalOf is why the grants refuse c, an update git refused before
// jitssh's hooks saw it (a hidden ref), or "" when they would allow it.
// It is worded from the update the client sent alone: whether it was a
// fast-forward of what is there is not asked of the repository, and it is
// taken as the least it could need, so that a hidden ref that exists and
// one that does not read the same.
func refusalOf(d Decision, c refCommand) string {
	op := pushOp(c.old, c.new, func() bool { return true })
	return DecideRef(d.Grants, d.Command.Repo, c.ref, op).Reason()
}

// hiddenRefReason is jitssh's reason for an update of ref that git
// refused as hidden, from the update the client sent as pre-receive
// recorded it in pushedFile.
func hiddenRefReason(d Decision, pushedFile, ref string, deleting bool) string {
	pushed, _ := readPushList(pushedFile)
	for _, c := range pushed {
		if c.ref == ref {
			return refusalOf(d, c)
		}
	}
	// Not recorded (no pre-receive ran): what git said it was.
	op := RefCreate
	if deleting {
		op = RefDelete
	}
	return DecideRef(d.Grants, d.Command.Repo, ref, op).Reason()
}

func readReport(f *os.File) ([]RefUpdate, error) {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("read push report: %w", err)
	}
	var updates []RefUpdate
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var u RefUpdate
		if err := json.Unmarshal(sc.Bytes(), &u); err != nil {
			return updates, fmt.Errorf("read push report: %w", err)
		}
		updates = append(updates, u)
	}
	return updates, sc.Err()
}

// run starts git with -c settings and waits for it. Cancelling ctx kills it.
func (g *Git) run(ctx context.Context, cfg, args, env []string, stdio Stdio) error {
	argv := make([]string, 0, 2*len(cfg)+len(args))
	for _, c := range cfg {
		argv = append(argv, "-c", c)
	}
	argv = append(argv, args...)
	cmd := exec.CommandContext(ctx, g.git, argv...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = stdio.Out, stdio.Err
	cmd.WaitDelay = waitDelay
	// The client's input is copied by hand: exec would wait for its copy
	// to end, and it ends only when the client sends more or hangs up,
	// while a client whose request git refused waits for the answer. So
	// once git exits the copy is abandoned; it ends when the session does.
	pr, pw, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("git %s: stdin pipe: %w", args[0], err)
	}
	cmd.Stdin = pr
	if err := cmd.Start(); err != nil {
		pr.Close()
		pw.Close()
		return fmt.Errorf("git %s: %w", args[0], err)
	}
	pr.Close()
	go func() {
		_, _ = io.Copy(pw, stdio.In)
		pw.Close()
	}()
	err = cmd.Wait()
	pw.Close()
	if err != nil {
		return fmt.Errorf("git %s: %w", args[0], err)
	}
	return nil
}

// hideRefsConfig hides every ref, then shows the names the grants let the
// holder read. hideRefs matches a name and everything below it, which is
// wider than a grant in two places: an exact grant R would show refs below
// R/, and a prefix grant P/* would show a ref named P itself. So a grant's
// name is shown only when DecideRef lets the holder read every ref that
// exists under it. (git keeps a ref and refs below it from existing
// together, so this hides nothing the holder may read.) With withHead,
// HEAD is hidden unless the holder may read the ref it points to.
func hideRefsConfig(key string, d Decision, withHead bool) ([]string, error) {
	cfg := []string{key + "=refs/"}
	readable := func(ref string) bool { return DecideRef(d.Grants, d.Command.Repo, ref, RefRead).Allowed }
	if withHead {
		target, err := headTarget(d.Path)
		if err != nil {
			return nil, err
		}
		if target == "" || !readable(target) {
			cfg = append(cfg, key+"=HEAD")
		}
	}
	for _, gr := range d.Grants {
		if !gr.Access.Includes(principals.Read) {
			continue
		}
		name := strings.TrimSuffix(gr.Ref, "/*")
		ok, err := allRefsUnder(d.Path, name, readable)
		if err != nil {
			return nil, err
		}
		if ok {
			cfg = append(cfg, key+"=!"+name)
		}
	}
	return cfg, nil
}

// headTarget returns the ref HEAD points to, or "" for a detached HEAD.
func headTarget(repo string) (string, error) {
	b, err := os.ReadFile(filepath.Join(repo, "HEAD"))
	if err != nil {
		return "", fmt.Errorf("read HEAD: %w", err)
	}
	if ref, ok := strings.CutPrefix(strings.TrimSpace(string(b)), "ref: "); ok {
		return ref, nil
	}
	return "", nil
}

var errStop = errors.New("stop")

// allRefsUnder reports whether ok holds for every ref that exists in repo
// and is name or lies below name + "/", loose or packed: the refs that
// hideRefs matches with name.
func allRefsUnder(repo, name string, ok func(ref string) bool) (bool, error) {
	all := true
	check := func(ref string) error {
		if !ok(ref) {
			all = false
			return errStop
		}
		return nil
	}
	root := filepath.Join(repo, filepath.FromSlash(name))
	err := filepath.WalkDir(root, func(path string, e fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if !e.Type().IsRegular() {
			return nil
		}
		rel, err := filepath.Rel(repo, path)
		if err != nil {
			return err
		}
		return check(filepath.ToSlash(rel))
	})
	if errors.Is(err, errStop) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("list refs under %s: %w", name, err)
	}
	err = scanPackedRefs(repo, func(ref string) error {
		if ref == name || strings.HasPrefix(ref, name+"/") {
			return check(ref)
		}
		return nil
	})
	return all, err
}

func scanPackedRefs(repo string, fn func(name string) error) error {
	f, err := os.Open(filepath.Join(repo, "packed-refs"))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read packed-refs: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' || line[0] == '^' {
			continue
		}
		_, name, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		if err := fn(name); err != nil {
			if errors.Is(err, errStop) {
				return nil
			}
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read packed-refs: %w", err)
	}
	return nil
}

func shellQuoteArgs(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return strings.Join(q, " ")
}

// countingReader counts what passes; the count may be read while a copy
// abandoned after git exited still reads.
type countingReader struct {
	r io.Reader
	n atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// countingWriter counts what passes and serialises writes: git's output
// and a refusal jitssh writes itself share the stream.
type countingWriter struct {
	mu sync.Mutex
	w  io.Writer
	n  int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

func (c *countingWriter) count() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

// waitDelay bounds how long git's output may linger after it is killed.
const waitDelay = 5 * time.Second

// grantsString joins grants into the one-line form hooks read back.
func grantsString(set principals.Set) string {
	s := make([]string, len(set))
	for i, g := range set {
		s[i] = g.String()
	}
	return strings.Join(s, " ")
}
