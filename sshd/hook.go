package sshd

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"github.com/jitssh/jitssh/principals"
)

// zeroID matches git's all-zero object id of either hash length.
func isZeroID(id string) bool { return strings.Trim(id, "0") == "" }

// RunHook is the body of the hooks Serve installs; the jitssh binary runs
// it as its hidden "hook" command. It reads its authorization from the
// JITSSH_HOOK_* environment Serve set, and returns the exit code. When the
// hook itself fails, the client is told so in a line and the serving
// process, whose log gets the detail, through the file JITSSH_HOOK_ERRORS
// names.
func RunHook(name string, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	h, err := hookEnvFromOS()
	if err != nil {
		return hookFailed(name, stderr, err)
	}
	switch name {
	case "pre-receive":
		return h.preReceive(stdin, stdout, stderr)
	case "proc-receive":
		if err := h.procReceive(stdin, stdout); err != nil {
			return hookFailed(name, stderr, err)
		}
		return 0
	case "post-receive":
		return h.postReceive(stdin, stdout, stderr)
	case "update", "post-update":
		return chainRepoHook(name, args, stdin, stdout, stderr)
	}
	return hookFailed(name, stderr, fmt.Errorf("unknown hook %q", truncate(name)))
}

// HookError is a failure of one of jitssh's hooks while serving a push.
type HookError struct {
	Hook string `json:"hook"`
	Err  string `json:"err"`
}

// hookFailed reports err and returns the hook's exit code: the client gets
// one line, the serving process the detail. Should the detail have nowhere
// to go, the client gets it rather than nobody.
func hookFailed(name string, stderr io.Writer, err error) int {
	if reportHookError(os.Getenv(envHookErrors), name, err) != nil {
		fmt.Fprintf(stderr, "jitssh: %s hook failed: %v\n", name, err)
		return 1
	}
	fmt.Fprintf(stderr, "jitssh: %s hook failed; the server's log has the detail\n", name)
	return 1
}

func reportHookError(path, name string, err error) error {
	if path == "" {
		return errors.New("no hook error file")
	}
	f, ferr := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if ferr != nil {
		return ferr
	}
	werr := json.NewEncoder(f).Encode(HookError{Hook: name, Err: err.Error()})
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	return werr
}

// readHookErrors reads what the hooks reported to path.
func readHookErrors(path string) ([]HookError, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read hook errors: %w", err)
	}
	var out []HookError
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		if line == "" {
			continue
		}
		var e HookError
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			// Not JSON (the hooks script's own line): keep it whole.
			e = HookError{Hook: "hook", Err: truncate(line)}
		}
		out = append(out, e)
	}
	return out, nil
}

type hookEnv struct {
	repo   string
	grants principals.Set
	fence  bool
	report string
	pushed string
	gate   string
}

func hookEnvFromOS() (*hookEnv, error) {
	h := &hookEnv{
		repo:   os.Getenv(envHookRepo),
		fence:  os.Getenv(envHookFence) == "1",
		report: os.Getenv(envHookReport),
		pushed: os.Getenv(envHookPushed),
		gate:   os.Getenv(envHookGate),
	}
	if h.repo == "" {
		return nil, errors.New("not started by jitssh (no repository in environment)")
	}
	grants, errs := principals.ParseSet(strings.Fields(os.Getenv(envHookGrants)))
	if len(errs) > 0 {
		return nil, fmt.Errorf("bad grants in environment: %w", errs[0])
	}
	h.grants = grants
	return h, nil
}

type refCommand struct{ old, new, ref string }

func parseRefCommand(line string) (refCommand, error) {
	f := strings.Fields(line)
	if len(f) != 3 {
		return refCommand{}, fmt.Errorf("bad ref update line %q", truncate(line))
	}
	return refCommand{old: f[0], new: f[1], ref: f[2]}, nil
}

// preReceive runs the reachability fence for ref-scoped writers: every
// object the pushed tips reach, and that the holder cannot already read,
// must have arrived in this push. Otherwise a writer could push a commit
// on top of history it cannot see and then fetch that history back.
func (h *hookEnv) preReceive(stdin io.Reader, stdout, stderr io.Writer) int {
	const name = "pre-receive"
	input, err := io.ReadAll(stdin)
	if err != nil {
		return hookFailed(name, stderr, fmt.Errorf("read updates: %w", err))
	}
	if h.pushed != "" {
		if err := os.WriteFile(h.pushed, input, 0o600); err != nil {
			return hookFailed(name, stderr, fmt.Errorf("write push list: %w", err))
		}
	}
	if h.fence {
		var cmds []refCommand
		var tips []string
		for _, line := range strings.Split(strings.TrimSpace(string(input)), "\n") {
			if line == "" {
				continue
			}
			c, err := parseRefCommand(line)
			if err != nil {
				return hookFailed(name, stderr, err)
			}
			cmds = append(cmds, c)
			if !isZeroID(c.new) {
				tips = append(tips, c.new)
			}
		}
		if len(tips) > 0 {
			err := h.fenceObjects(tips)
			if errors.Is(err, errOutsideGrant) {
				fmt.Fprintf(stderr, "jitssh: push refused: %v\n", err)
				var refused []RefUpdate
				for _, c := range cmds {
					refused = append(refused, RefUpdate{Ref: c.ref, Old: c.old, New: c.new, Result: "refused", Reason: err.Error()})
				}
				if err := h.appendReport(refused); err != nil {
					return hookFailed(name, stderr, err)
				}
				return 1
			}
			if err != nil {
				return hookFailed(name, stderr, fmt.Errorf("check pushed objects: %w", err))
			}
		}
	}
	return chainRepoHook(name, nil, bytes.NewReader(input), stdout, stderr)
}

var errOutsideGrant = errors.New("the pushed history reaches objects outside your grant")

func (h *hookEnv) fenceObjects(tips []string) error {
	readable, err := h.readableTips()
	if err != nil {
		return err
	}
	revArgs := []string{"rev-list", "--objects", "--no-object-names", "--stdin"}
	rev := exec.Command("git", revArgs...)
	var in strings.Builder
	for _, t := range tips {
		in.WriteString(t + "\n")
	}
	for _, t := range readable {
		in.WriteString("^" + t + "\n")
	}
	rev.Stdin = strings.NewReader(in.String())
	rev.Stderr = os.Stderr
	revOut, err := rev.StdoutPipe()
	if err != nil {
		return err
	}
	// The quarantine holds exactly what this push brought. Checking the
	// listed objects against it alone (no alternates) finds any that came
	// from the repository instead.
	quarantine := os.Getenv("GIT_QUARANTINE_PATH")
	if quarantine == "" {
		return errors.New("no push quarantine; refusing to guess")
	}
	check := exec.Command("git", "cat-file", "--batch-check=%(objectname)")
	check.Env = withoutEnv(os.Environ(), "GIT_ALTERNATE_OBJECT_DIRECTORIES", "GIT_OBJECT_DIRECTORY")
	check.Env = append(check.Env, "GIT_OBJECT_DIRECTORY="+quarantine)
	check.Stdin = revOut
	var checkOut bytes.Buffer
	check.Stdout = &checkOut
	check.Stderr = os.Stderr
	if err := rev.Start(); err != nil {
		return fmt.Errorf("list pushed objects: %w", err)
	}
	if err := check.Run(); err != nil {
		_ = rev.Wait()
		return fmt.Errorf("check pushed objects: %w", err)
	}
	if err := rev.Wait(); err != nil {
		return fmt.Errorf("list pushed objects: %w", err)
	}
	if bytes.Contains(checkOut.Bytes(), []byte(" missing")) {
		return errOutsideGrant
	}
	return nil
}

// readableTips lists the object ids of the refs the grants let the holder
// read, before this push.
func (h *hookEnv) readableTips() ([]string, error) {
	cmd := exec.Command("git", "for-each-ref", "--format=%(objectname) %(refname)")
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("list refs: %w", err)
	}
	var tips []string
	for _, line := range strings.Split(string(out), "\n") {
		id, ref, ok := strings.Cut(line, " ")
		if ok && DecideRef(h.grants, h.repo, ref, RefRead).Allowed {
			tips = append(tips, id)
		}
	}
	return tips, nil
}

func withoutEnv(env []string, keys ...string) []string {
	out := env[:0:0]
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		drop := false
		for _, key := range keys {
			if k == key {
				drop = true
			}
		}
		if !drop {
			out = append(out, kv)
		}
	}
	return out
}

// procReceive decides every ref of a push, one by one, and tells git
// which to update: "ok REF" plus "option fall-through" lets git update it
// as usual; "ng REF REASON" reaches the client as
// "! [remote rejected] REF (REASON)".
func (h *hookEnv) procReceive(stdin io.Reader, stdout io.Writer) error {
	r := bufio.NewReader(stdin)
	// Version negotiation: one line of version and capabilities, flush.
	first, err := readPkt(r)
	if err != nil {
		return fmt.Errorf("read version: %w", err)
	}
	atomic := bytes.Contains(first, []byte("atomic"))
	for {
		if _, err := readPkt(r); errors.Is(err, errFlush) {
			break
		} else if err != nil {
			return fmt.Errorf("read version: %w", err)
		}
	}
	if err := writePkt(stdout, []byte("version=1\n")); err != nil {
		return err
	}
	if err := writeFlush(stdout); err != nil {
		return err
	}
	var cmds []refCommand
	for {
		p, err := readPkt(r)
		if errors.Is(err, errFlush) {
			break
		}
		if err != nil {
			return fmt.Errorf("read commands: %w", err)
		}
		c, err := parseRefCommand(string(p))
		if err != nil {
			return err
		}
		cmds = append(cmds, c)
	}
	// git refuses some updates itself before this hook (a hidden ref, say)
	// and leaves them out of cmds; it then goes on with the others even
	// when the push is atomic, so an atomic push ends with them here. The
	// server records them once the push is over (Git.receivePack).
	var log []RefUpdate
	refused := ""
	gitRefused, err := h.refusedByGit(cmds)
	if err != nil {
		return err
	}
	if len(gitRefused) > 0 {
		refused = gitRefused[0].ref
	}
	reasons := make([]string, len(cmds))
	for i, c := range cmds {
		reasons[i] = h.refuseReason(c)
		if reasons[i] != "" && refused == "" {
			refused = c.ref
		}
	}
	if atomic && refused != "" {
		for i := range reasons {
			if reasons[i] == "" {
				reasons[i] = "atomic push refused because " + refused + " was refused"
			}
		}
	}
	// Nothing changes before the serving process has recorded what will.
	if err := h.passGate(cmds, reasons); err != nil {
		if err != ErrAuditUnavailable {
			// Not the serving process's answer: it could not be asked.
			_ = reportHookError(os.Getenv(envHookErrors), "proc-receive", err)
		}
		for i := range reasons {
			if reasons[i] == "" {
				reasons[i] = ErrAuditUnavailable.Error()
			}
		}
	}
	for i, c := range cmds {
		if reasons[i] != "" {
			log = append(log, RefUpdate{Ref: c.ref, Old: c.old, New: c.new, Result: "refused", Reason: reasons[i]})
			if err := writePkt(stdout, []byte("ng "+c.ref+" "+reasons[i]+"\n")); err != nil {
				return err
			}
			continue
		}
		if err := writePkt(stdout, []byte("ok "+c.ref+"\n")); err != nil {
			return err
		}
		if err := writePkt(stdout, []byte("option fall-through\n")); err != nil {
			return err
		}
	}
	if err := h.appendReport(log); err != nil {
		return err
	}
	return writeFlush(stdout)
}

// passGate asks the serving process to let the updates reasons allow
// happen; it records them first. When none is allowed there is nothing to
// ask.
func (h *hookEnv) passGate(cmds []refCommand, reasons []string) error {
	var decided []RefUpdate
	allowed := false
	for i, c := range cmds {
		u := RefUpdate{Ref: c.ref, Old: c.old, New: c.new, Result: "allowed"}
		if reasons[i] != "" {
			u.Result, u.Reason = "refused", reasons[i]
		} else {
			allowed = true
		}
		decided = append(decided, u)
	}
	if !allowed {
		return nil
	}
	return askGate(h.gate, decided)
}

// refusedByGit returns the updates pre-receive saw that are missing from
// cmds, the ones git handed to this hook.
func (h *hookEnv) refusedByGit(cmds []refCommand) ([]refCommand, error) {
	if h.pushed == "" {
		return nil, nil
	}
	pushed, err := readPushList(h.pushed)
	if err != nil {
		return nil, err
	}
	handed := make(map[string]bool, len(cmds))
	for _, c := range cmds {
		handed[c.ref] = true
	}
	return slices.DeleteFunc(pushed, func(c refCommand) bool { return handed[c.ref] }), nil
}

// readPushList reads the updates pre-receive recorded, one "old new ref"
// line each.
func readPushList(path string) ([]refCommand, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read push list: %w", err)
	}
	var out []refCommand
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		if line == "" {
			continue
		}
		c, err := parseRefCommand(line)
		if err != nil {
			return nil, fmt.Errorf("read push list: %w", err)
		}
		out = append(out, c)
	}
	return out, nil
}

// refuseReason returns why c may not happen, or "" when the grants allow it.
func (h *hookEnv) refuseReason(c refCommand) string {
	op := pushOp(c.old, c.new, func() bool { return isAncestor(c.old, c.new) })
	return DecideRef(h.grants, h.repo, c.ref, op).Reason()
}

func isAncestor(old, new string) bool {
	return exec.Command("git", "merge-base", "--is-ancestor", old, new).Run() == nil
}

// postReceive records the refs git updated, then chains.
func (h *hookEnv) postReceive(stdin io.Reader, stdout, stderr io.Writer) int {
	input, err := io.ReadAll(stdin)
	if err != nil {
		return hookFailed("post-receive", stderr, fmt.Errorf("read updates: %w", err))
	}
	var log []RefUpdate
	for _, line := range strings.Split(strings.TrimSpace(string(input)), "\n") {
		if line == "" {
			continue
		}
		if c, err := parseRefCommand(line); err == nil {
			log = append(log, RefUpdate{Ref: c.ref, Old: c.old, New: c.new, Result: "updated"})
		}
	}
	if err := h.appendReport(log); err != nil {
		// The refs changed all the same; the audit record will miss them.
		hookFailed("post-receive", stderr, err)
	}
	return chainRepoHook("post-receive", nil, bytes.NewReader(input), stdout, stderr)
}

func (h *hookEnv) appendReport(updates []RefUpdate) error {
	if h.report == "" || len(updates) == 0 {
		return nil
	}
	f, err := os.OpenFile(h.report, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return fmt.Errorf("open push report: %w", err)
	}
	defer f.Close()
	enc := json.NewEncoder(f)
	for _, u := range updates {
		if err := enc.Encode(u); err != nil {
			return fmt.Errorf("write push report: %w", err)
		}
	}
	return nil
}

// chainRepoHook runs the repository's own hook of the same name, if it has
// one, so that jitssh's hooks directory does not silence an operator's.
func chainRepoHook(name string, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	gitDir := os.Getenv("GIT_DIR")
	if gitDir == "" {
		gitDir = "."
	}
	path := filepath.Join(gitDir, "hooks", name)
	fi, err := os.Stat(path)
	if err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
		if name == "pre-receive" || name == "post-receive" {
			return 0
		}
		_, _ = io.Copy(io.Discard, stdin)
		return 0
	}
	cmd := exec.Command(path, args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, stdout, stderr
	if err := cmd.Run(); err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			return exit.ExitCode() // the repository's hook said no
		}
		return hookFailed(name, stderr, fmt.Errorf("run the repository's own hook: %w", err))
	}
	return 0
}
