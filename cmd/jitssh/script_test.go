package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
)

// TestScripts runs the end-to-end scripts in testdata/script, one per story
// and one per attack. Each script gets its own `jitssh dev` under
// $WORK/dev (with the flags in the script's file dev.args, if it has one)
// and talks to it only as a person would: the env files, the jitssh CLI,
// and the real git, ssh, ssh-agent and ssh-keygen.
//
// Besides testscript's own commands the scripts have:
//
//	become PERSON          act as PERSON from now on (source DEV/PERSON.env)
//	capture VAR            set VAR to the first line of the last stdout
//	[!] eventually CMD...  run CMD until it succeeds (with !: fails), 20s at most
//
// and these variables: DEV (the jitssh dev directory), GITPORT (the Git
// front-end's port), SSH_PINNED (ssh with both host keys pinned, no agent
// and no default keys, for scripts that bring their own key).
func TestScripts(t *testing.T) {
	for _, tool := range []string{"git", "ssh", "ssh-agent", "ssh-keygen"} {
		needTool(t, tool)
	}
	testscript.Run(t, testscript.Params{
		Dir:                 "testdata/script",
		RequireExplicitExec: true,
		RequireUniqueNames:  true,
		Setup:               setupDevScript,
		Cmds: map[string]func(*testscript.TestScript, bool, []string){
			"become":     cmdBecome,
			"capture":    cmdCapture,
			"eventually": cmdEventually,
		},
	})
}

func setupDevScript(env *testscript.Env) error {
	dev := filepath.Join(env.WorkDir, "dev")
	env.Setenv("PATH", filepath.Dir(jitsshBin)+string(os.PathListSeparator)+os.Getenv("PATH"))
	for k, v := range map[string]string{
		"DEV": dev, "SSH_AUTH_SOCK": "", "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null",
		"GIT_AUTHOR_NAME": "a", "GIT_AUTHOR_EMAIL": "a@example.com", "GIT_COMMITTER_NAME": "a", "GIT_COMMITTER_EMAIL": "a@example.com",
	} {
		env.Setenv(k, v)
	}

	log, err := os.Create(filepath.Join(env.WorkDir, "dev.log"))
	if err != nil {
		return err
	}
	args := []string{"dev", "--dir", dev}
	if extra, err := os.ReadFile(filepath.Join(env.WorkDir, "dev.args")); err == nil {
		args = append(args, strings.Fields(string(extra))...)
	}
	cmd := exec.Command(jitsshBin, args...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.Env = env.Vars
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		log.Close()
		return fmt.Errorf("start jitssh dev: %w", err)
	}
	env.Defer(func() {
		defer log.Close()
		cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
			env.T().Fatal("jitssh dev did not stop on Ctrl-C")
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		if _, err := os.Stat(filepath.Join(dev, "auditor.env")); err == nil {
			break
		}
		if time.Now().After(deadline) {
			out, _ := os.ReadFile(log.Name())
			return fmt.Errorf("jitssh dev wrote no env files:\n%s", out)
		}
		time.Sleep(50 * time.Millisecond)
	}

	data, err := os.ReadFile(filepath.Join(dev, "dev.json"))
	if err != nil {
		return err
	}
	var st devState
	if err := json.Unmarshal(data, &st); err != nil {
		return err
	}
	env.Setenv("GITPORT", strconv.Itoa(st.GitPort))
	env.Setenv("SSH_PINNED", "ssh -F /dev/null -o UserKnownHostsFile="+filepath.Join(dev, "known_hosts")+
		" -o GlobalKnownHostsFile=/dev/null -o StrictHostKeyChecking=yes -o BatchMode=yes -o IdentityAgent=none -o IdentitiesOnly=yes")
	return nil
}

// cmdBecome sets the variables DEV/PERSON.env exports, as a shell that
// sources it would see them.
func cmdBecome(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: become PERSON")
	}
	file := filepath.Join(ts.Getenv("DEV"), args[0]+".env")
	sh := exec.Command("sh", "-c", `. "$1" && env -0`, "sh", file)
	sh.Env = []string{"PATH=" + ts.Getenv("PATH"), "HOME=" + ts.Getenv("HOME")}
	out, err := sh.Output()
	ts.Check(err)
	for _, kv := range bytes.Split(out, []byte{0}) {
		k, v, ok := strings.Cut(string(kv), "=")
		if !ok || k == "PATH" || k == "HOME" || k == "PWD" || k == "SHLVL" || k == "_" {
			continue
		}
		ts.Setenv(k, v)
	}
}

func cmdCapture(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: capture VAR")
	}
	first, _, _ := strings.Cut(strings.TrimSpace(ts.ReadFile("stdout")), "\n")
	if first == "" {
		ts.Fatalf("capture %s: the last command printed nothing", args[0])
	}
	ts.Setenv(args[0], first)
}

// cmdEventually retries a command whose outcome changes with time, such as
// a push after a revocation reaches the Git server.
func cmdEventually(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) == 0 {
		ts.Fatalf("usage: [!] eventually CMD [ARGS...]")
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := ts.Exec(args[0], args[1:]...)
		if (err == nil) != neg {
			return
		}
		if time.Now().After(deadline) {
			if neg {
				ts.Fatalf("%s still succeeds after 20s", strings.Join(args, " "))
			}
			ts.Fatalf("%s still fails after 20s: %v", strings.Join(args, " "), err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}
