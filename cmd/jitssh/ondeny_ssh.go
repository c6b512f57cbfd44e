package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"sync"
	"syscall"

	"golang.org/x/crypto/ssh"
)

// sshConn is one ssh process git-ssh talks to the server through, with
// its own pipes, so that git-ssh sees what passes and can open another
// connection in its place.
type sshConn struct {
	cmd      *exec.Cmd
	in       *os.File      // ssh's stdin
	out      *bufio.Reader // ssh's stdout
	outFile  *os.File
	tail     *tailWriter // the end of what ssh said on stderr
	certFile string
	sigs     *signalRouter
}

// startSSH runs prog with args, offering cert first when it is not nil.
// ssh's stderr goes to stderr as it comes.
func startSSH(prog string, args []string, cert *ssh.Certificate, stderr io.Writer, sigs *signalRouter) (*sshConn, error) {
	c := &sshConn{tail: &tailWriter{}, sigs: sigs}
	if cert != nil {
		file, err := writeTempCert(cert)
		if err != nil {
			return nil, err
		}
		c.certFile = file
		args = append([]string{"-o", "IdentityFile=" + file}, args...)
	}
	inR, inW, err := os.Pipe()
	if err != nil {
		c.cleanup()
		return nil, fmt.Errorf("run %s: %w", prog, err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		c.cleanup()
		return nil, fmt.Errorf("run %s: %w", prog, err)
	}
	c.cmd = exec.Command(prog, args...)
	c.cmd.Stdin, c.cmd.Stdout = inR, outW
	c.cmd.Stderr = io.MultiWriter(stderr, c.tail)
	err = c.cmd.Start()
	inR.Close()
	outW.Close()
	if err != nil {
		inW.Close()
		outR.Close()
		c.cleanup()
		return nil, fmt.Errorf("run %s: %w", prog, err)
	}
	c.in, c.outFile, c.out = inW, outR, bufio.NewReaderSize(outR, 64<<10)
	sigs.forwardTo(c.cmd.Process)
	return c, nil
}

// advertised waits for the server's first word: false when ssh ended
// without the server saying anything, as when it refuses the connection.
func (c *sshConn) advertised() bool {
	_, err := c.out.Peek(1)
	return err == nil
}

// wait closes what is left of the pipes and returns ssh's exit status;
// 255, as ssh's own failures, when it died of a signal.
func (c *sshConn) wait() int {
	c.in.Close()
	err := c.cmd.Wait()
	c.outFile.Close()
	c.sigs.forwardTo(nil)
	c.cleanup()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		if code := exit.ExitCode(); code >= 0 {
			return code
		}
		return 255
	case err != nil:
		return 255
	}
	return 0
}

// abandon ends a connection git-ssh will not use: the server gets the
// empty command list that ends a push without doing anything.
func (c *sshConn) abandon() {
	_, _ = io.WriteString(c.in, pktFlushBytes)
	c.in.Close()
	_, _ = io.Copy(io.Discard, c.out)
	c.wait()
}

func (c *sshConn) cleanup() {
	if c.certFile != "" {
		os.Remove(c.certFile)
		c.certFile = ""
	}
}

// tailWriter keeps the last few KiB written to it.
type tailWriter struct {
	mu  sync.Mutex
	buf []byte
}

const tailSize = 4 << 10

func (t *tailWriter) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > tailSize {
		t.buf = append(t.buf[:0:0], t.buf[len(t.buf)-tailSize:]...)
	}
	return len(p), nil
}

func (t *tailWriter) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}

// signalRouter sends the signals that would have reached ssh directly
// (git's Ctrl-C, its SIGTERM when it gives up) to the ssh running now,
// and while no ssh runs, to whoever waits: a pending request is
// cancelled.
type signalRouter struct {
	ch     chan os.Signal
	mu     sync.Mutex
	proc   *os.Process
	waiter chan os.Signal
	got    os.Signal // a signal that came with nobody to take it
}

func newSignalRouter() *signalRouter {
	r := &signalRouter{ch: make(chan os.Signal, 4)}
	signal.Notify(r.ch, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		for s := range r.ch {
			r.mu.Lock()
			switch {
			case r.proc != nil:
				_ = r.proc.Signal(s)
			case r.waiter != nil:
				select {
				case r.waiter <- s:
				default:
				}
			default:
				r.got = s
			}
			r.mu.Unlock()
		}
	}()
	return r
}

func (r *signalRouter) stop() {
	signal.Stop(r.ch)
}

func (r *signalRouter) forwardTo(p *os.Process) {
	r.mu.Lock()
	r.proc = p
	r.mu.Unlock()
}

// waitFor returns a channel that receives the next signal, one that came
// while nothing ran included, until done is called.
func (r *signalRouter) waitFor() (sigs <-chan os.Signal, done func()) {
	ch := make(chan os.Signal, 1)
	r.mu.Lock()
	r.waiter = ch
	if r.got != nil {
		ch <- r.got
		r.got = nil
	}
	r.mu.Unlock()
	return ch, func() {
		r.mu.Lock()
		r.waiter = nil
		r.mu.Unlock()
	}
}
