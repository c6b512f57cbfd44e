package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"
)

// devAgents are the ssh-agents jitssh dev runs, one per person, for
// shells that have none of their own. Each runs under a small supervisor
// (jitssh dev-agent) that ends it as soon as jitssh dev's end of a pipe
// closes, which the kernel does however jitssh dev dies: ssh-agent is
// often set-group-ID, so a parent-death signal would not reach it, and an
// agent left behind would hold live grant keys.
type devAgents struct {
	sups  []*exec.Cmd
	pipes []io.Closer
	socks []string
}

func startDevAgents(dir string) (*devAgents, error) {
	a := &devAgents{}
	if _, err := exec.LookPath("ssh-agent"); err != nil {
		return a, nil // env files then rely on the shell's own agent
	}
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find the jitssh binary: %w", err)
	}
	agentDir := filepath.Join(dir, "agents")
	if err := os.MkdirAll(agentDir, 0o700); err != nil {
		return nil, err
	}
	for _, p := range devPeople {
		sock := filepath.Join(agentDir, p.name+".sock")
		os.Remove(sock)
		sup := exec.Command(self, "dev-agent", sock)
		sup.Stdout, sup.Stderr = io.Discard, io.Discard
		sup.SysProcAttr = dieWithParent()
		pipe, err := sup.StdinPipe()
		if err != nil {
			a.stop()
			return nil, err
		}
		if err := sup.Start(); err != nil {
			a.stop()
			return nil, fmt.Errorf("start ssh-agent: %w", err)
		}
		a.sups, a.pipes, a.socks = append(a.sups, sup), append(a.pipes, pipe), append(a.socks, sock)
		for i := 0; i < 200; i++ {
			if _, err := os.Stat(sock); err == nil {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	return a, nil
}

// stop ends the agents and removes their sockets: a stale socket would
// only mislead whoever sources an env file next.
func (a *devAgents) stop() {
	for _, p := range a.pipes {
		p.Close()
	}
	for _, s := range a.sups {
		done := make(chan struct{})
		go func() { s.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			s.Process.Kill()
			<-done
		}
	}
	for _, sock := range a.socks {
		os.Remove(sock)
	}
}

// devAgentCommand is the supervisor: it runs ssh-agent on SOCK until its
// standard input ends, then stops it.
func devAgentCommand() *cli.Command {
	return &cli.Command{
		Name:      "dev-agent",
		Hidden:    true,
		Usage:     "internal: one of jitssh dev's ssh-agents, ended when jitssh dev goes",
		ArgsUsage: "SOCK",
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return cli.Exit("dev-agent needs the socket path", exitUsage)
			}
			// jitssh dev decides when its agents stop; a Ctrl-C on the
			// terminal reaches it too.
			signal.Ignore(syscall.SIGINT)
			sock := c.Args().First()
			agent := exec.Command("ssh-agent", "-D", "-a", sock)
			agent.Stdout, agent.Stderr = io.Discard, io.Discard
			if err := agent.Start(); err != nil {
				return fmt.Errorf("start ssh-agent: %w", err)
			}
			exited := make(chan error, 1)
			go func() { exited <- agent.Wait() }()
			stdinDone := make(chan struct{})
			go func() { io.Copy(io.Discard, os.Stdin); close(stdinDone) }()
			terminated := make(chan os.Signal, 1)
			signal.Notify(terminated, syscall.SIGTERM, syscall.SIGHUP)
			var err error
			gone := false
			select {
			case err = <-exited:
				gone = true
			case <-stdinDone:
			case <-terminated:
			}
			if !gone {
				agent.Process.Signal(syscall.SIGTERM)
				select {
				case err = <-exited:
				case <-time.After(2 * time.Second):
					agent.Process.Kill()
					err = <-exited
				}
			}
			os.Remove(sock)
			var exit *exec.ExitError
			if err != nil && !errors.As(err, &exit) {
				return err
			}
			return nil
		},
	}
}
