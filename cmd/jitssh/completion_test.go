package main

import (
	"context"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/urfave/cli/v2"
)

// commandPath is one command of the tree, by the words that name it.
type commandPath struct {
	words []string
	cmd   *cli.Command // nil: the top level
}

// allCommands walks the whole command tree, hidden commands included.
func allCommands() []commandPath {
	out := []commandPath{{}}
	var walk func(prefix []string, cmds []*cli.Command)
	walk = func(prefix []string, cmds []*cli.Command) {
		for _, c := range cmds {
			words := append(slices.Clone(prefix), c.Name)
			out = append(out, commandPath{words: words, cmd: c})
			walk(words, c.Subcommands)
		}
	}
	walk(nil, newApp().Commands)
	return out
}

// sandbox is a place where a command that acted would leave a trace: its
// files, a connection to the daemon address, a connection to ssh-agent.
type sandbox struct {
	root, cwd string
	env       []string
	dials     atomic.Int32
}

func newSandbox(t *testing.T) *sandbox {
	t.Helper()
	s := &sandbox{root: t.TempDir()}
	s.cwd = filepath.Join(s.root, "cwd")
	for _, d := range []string{"cwd", "home", "tmp"} {
		require.NoError(t, os.Mkdir(filepath.Join(s.root, d), 0o700))
	}
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	sock := filepath.Join(s.root, "agent.sock")
	unix, err := net.Listen("unix", sock)
	require.NoError(t, err)
	for _, l := range []net.Listener{tcp, unix} {
		t.Cleanup(func() { l.Close() })
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				s.dials.Add(1)
				c.Close()
			}
		}()
	}
	s.env = []string{
		"HOME=" + filepath.Join(s.root, "home"), "TMPDIR=" + filepath.Join(s.root, "tmp"),
		"XDG_STATE_HOME=" + filepath.Join(s.root, "home", "state"),
		"JITSSH_SERVER=" + tcp.Addr().String(), "JITSSH_DEV_DIR=" + filepath.Join(s.root, "dev"),
		"JITSSH_STATE_DIR=" + filepath.Join(s.root, "state"), "SSH_AUTH_SOCK=" + sock,
		"JITSSH_AUDIT_LOG=" + filepath.Join(s.root, "audit.log"),
	}
	return s
}

// snapshot lists every path under the sandbox with its size and time.
func (s *sandbox) snapshot(t *testing.T) []string {
	t.Helper()
	var out []string
	require.NoError(t, filepath.WalkDir(s.root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		out = append(out, fmt.Sprintf("%s %s %d", path, fi.ModTime(), fi.Size()))
		return nil
	}))
	return out
}

// run runs jitssh in the sandbox; a command still running after 10s has
// hung, and is killed.
func (s *sandbox) run(t *testing.T, args ...string) cliResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, jitsshBin, args...)
	cmd.Dir = s.cwd
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, s.env...)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	require.NoError(t, ctx.Err(), "jitssh %q did not return", args)
	if _, exited := err.(*exec.ExitError); err != nil && !exited {
		t.Fatalf("run jitssh %q: %v", args, err)
	}
	return cliResult{code: cmd.ProcessState.ExitCode(), stdout: stdout.String(), stderr: stderr.String()}
}

var completionWord = regexp.MustCompile(`^-{0,2}[a-z][a-z0-9-]*$`)

// TestCompletionNeverActs asks for completions at every command, with
// and without arguments, the way the shell scripts do, with no daemon:
// each answer comes at once, is names only, and leaves no trace.
func TestCompletionNeverActs(t *testing.T) {
	s := newSandbox(t)
	before := s.snapshot(t)
	for _, cp := range allCommands() {
		for _, tail := range [][]string{{""}, {"--"}, {"-"}, {"x", ""}, {"x", "--"}, {"--", "x", ""}} {
			args := append(append(slices.Clone(cp.words), tail...), completionFlag)
			t.Run(strings.Join(args, " "), func(t *testing.T) {
				r := s.run(t, args...)
				require.Equal(t, 0, r.code, "stderr: %s", r.stderr)
				assert.Empty(t, r.stderr)
				got := strings.Fields(r.stdout)
				for _, w := range got {
					assert.Regexp(t, completionWord, w)
				}
				if len(tail) == 1 {
					want := expectedCompletions(cp.cmd, tail[0])
					if len(want) == 0 {
						assert.Empty(t, got)
					} else {
						assert.Equal(t, want, got)
					}
				}
			})
		}
	}
	assert.Equal(t, before, s.snapshot(t), "completing created or changed files")
	assert.Zero(t, s.dials.Load(), "completing connected to the daemon or to ssh-agent")
}

// expectedCompletions is what completing cur at cmd must offer, read from
// the tree: visible subcommands for a word, visible flags for a dash.
func expectedCompletions(cmd *cli.Command, cur string) []string {
	if cmd != nil && cmd.SkipFlagParsing {
		return nil
	}
	var want []string
	if strings.HasPrefix(cur, "-") {
		if cmd != nil {
			for _, f := range cmd.Flags {
				if v, ok := f.(cli.VisibleFlag); ok && !v.IsVisible() {
					continue
				}
				for _, n := range f.Names() {
					if len(n) > 1 {
						want = append(want, "--"+n)
					} else if cur == "-" {
						want = append(want, "-"+n)
					}
				}
			}
		}
		if cmd == nil || !cmd.HideHelp {
			want = append(want, "--help")
		}
		return want
	}
	subs := newApp().Commands
	if cmd != nil {
		subs = cmd.Subcommands
	}
	for _, c := range subs {
		if !c.Hidden {
			want = append(want, c.Name)
		}
	}
	if cmd != nil && len(subs) == 0 {
		want = argumentChoices(cmd) // "bash|zsh|fish"
	}
	return want
}

func TestCompletionWords(t *testing.T) {
	root := newApp().Commands
	for _, tt := range []struct {
		args []string
		want []string
	}{
		{[]string{"req"}, []string{"request", "requests"}},
		{[]string{"dev", "--"}, []string{"--dir", "--nodes", "--help"}},
		{[]string{"request", "w"}, []string{"wait"}},
		{[]string{"request", "wait", "req-1", "--o"}, []string{"--out"}},
		{[]string{"completion", ""}, []string{"bash", "zsh", "fish"}},
		{[]string{"completion", "bash", ""}, nil},
		{[]string{"request", "--ttl", ""}, nil},                          // the flag's value
		{[]string{"request", "--ttl=1h", "--no"}, []string{"--no-wait"}}, // value inside the word
		{[]string{"approve", "--reason", "wait", ""}, nil},               // "wait" is the reason, not a command
		{[]string{"git-ssh", "-o", ""}, nil},
		{[]string{"dev-agent", ""}, nil},
		{[]string{"nope", ""}, nil},
		{[]string{"status", "--", "--"}, nil},
		{nil, expectedCompletions(nil, "")},
	} {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			assert.Equal(t, tt.want, completions(root, tt.args))
		})
	}
}

// fakeJitssh puts on PATH a jitssh that answers any completion with words
// a shell would run if it expanded them.
func fakeJitssh(t *testing.T) (dir, marker string) {
	t.Helper()
	dir = t.TempDir()
	marker = filepath.Join(dir, "ran")
	script := "#!/bin/sh\nprintf '%s\\n' '$(touch " + marker + ")' '`touch " + marker + "`' '--repo'\n"
	require.NoError(t, os.WriteFile(filepath.Join(dir, "jitssh"), []byte(script), 0o755))
	return dir, marker
}

// TestCompletionScriptsTreatAnswersAsData: the scripts never expand what
// jitssh answers, and with the real binary they offer its flags without
// running the command. fish and zsh are optional shells: their part runs
// where they are installed.
func TestCompletionScriptsTreatAnswersAsData(t *testing.T) {
	type shell struct {
		name, prog string
		// complete prints the candidates for the words after "jitssh".
		complete string
	}
	shells := []shell{
		{"bash", "bash", `eval "$SCRIPT"
COMP_WORDS=(jitssh "$@"); COMP_CWORD=$#
_jitssh_complete
printf '%s\n' "${COMPREPLY[@]}"`},
		{"zsh", "zsh", `compdef() { :; }; _files() { :; }
compadd() { shift 2; print -rl -- "$@"; }
eval "$SCRIPT"
words=(jitssh "$@"); CURRENT=$#words
_jitssh`},
		{"fish", "fish", `echo "$SCRIPT" | source
complete -C "jitssh $argv"`},
	}
	for _, sh := range shells {
		t.Run(sh.name, func(t *testing.T) {
			prog, err := exec.LookPath(sh.prog)
			if err != nil {
				t.Skipf("%s is not installed", sh.prog)
			}
			realDir := filepath.Dir(jitsshBin)
			// The script comes from the real binary; the answers from
			// whichever jitssh is on PATH.
			script := runJitssh(t, nil, "completion", sh.name)
			require.Equal(t, 0, script.code, script.stderr)
			run := func(pathDir string, words ...string) string {
				args := []string{"-c", sh.complete, "sh"}
				if sh.name == "zsh" {
					args = append([]string{"-f"}, args...)
				}
				if sh.name == "fish" {
					args = []string{"-c", sh.complete, "--", strings.Join(words, " ")}
					words = nil
				}
				cmd := exec.Command(prog, append(args, words...)...)
				cmd.Dir = t.TempDir()
				cmd.Env = []string{"PATH=" + pathDir + ":" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "JITSSH_DEV_DIR=" + filepath.Join(cmd.Dir, "dev"), "SCRIPT=" + script.stdout}
				out, err := cmd.CombinedOutput()
				require.NoError(t, err, "%s", out)
				_, statErr := os.Stat(filepath.Join(cmd.Dir, "dev"))
				assert.ErrorIs(t, statErr, fs.ErrNotExist, "completing started jitssh dev")
				return string(out)
			}

			fake, marker := fakeJitssh(t)
			if sh.name != "fish" { // the fake's answer holds spaces, which fish's tokenizer splits
				out := run(fake, "request", "")
				assert.Contains(t, out, "--repo")
			}
			run(fake, "request", "--")
			assert.NoFileExists(t, marker, "the completion script ran a word jitssh answered")

			assert.Equal(t, "--dir\n", run(realDir, "dev", "--d"))
			assert.Equal(t, "--json\n", run(realDir, "status", "--j"))
		})
	}
}
