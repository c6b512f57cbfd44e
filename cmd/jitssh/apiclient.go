package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/jitssh/jitssh/approvals"
	"github.com/jitssh/jitssh/audit"
)

// clientFlags are shared by every command that talks to the daemon.
func clientFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "server", Usage: "approval daemon address HOST:PORT", EnvVars: []string{"JITSSH_SERVER"}},
		&cli.StringFlag{Name: "identity", Usage: "your SSH private key file (default: the keys in ssh-agent)", EnvVars: []string{"JITSSH_IDENTITY"}},
		&cli.StringFlag{Name: "known-hosts", Usage: "known_hosts file holding the daemon's host key", EnvVars: []string{"JITSSH_KNOWN_HOSTS"}},
	}
}

func jsonOutFlag() cli.Flag {
	return &cli.BoolFlag{Name: "json", Usage: "print JSON instead of text", EnvVars: []string{"JITSSH_JSON"}}
}

// apiClient is one authenticated SSH connection to the daemon.
type apiClient struct {
	conn *ssh.Client
	// signers are the keys that may have authenticated; identity is the
	// one that did, found on first use.
	signers  []ssh.Signer
	identity ssh.Signer
	stop     chan struct{} // closed by Close: ends the keepalives
	stopOnce sync.Once
}

// apiKeepalive is how often a client tells the daemon it is still there.
// The daemon closes a connection with no traffic for its idle_timeout
// (5 minutes by default); a waiting `jitssh request` or a `requests watch`
// is quiet by design and may wait for hours, so its connection carries
// keepalives well inside any sensible idle timeout.
var apiKeepalive = 30 * time.Second

// dialAPI connects as the person whose key is --identity, or one of the
// plain keys in ssh-agent. The daemon's host key must be in the
// known_hosts file: nothing is trusted on first use.
func dialAPI(c *cli.Context) (*apiClient, error) {
	return connectAPI(c.String("server"), c.String("identity"), c.String("known-hosts"))
}

func connectAPI(server, identity, knownHostsFile string) (*apiClient, error) {
	if server == "" {
		return nil, cli.Exit("no daemon address: set --server or JITSSH_SERVER", exitUsage)
	}
	hostKeys, err := hostKeyCallback(knownHostsFile)
	if err != nil {
		return nil, err
	}
	signers, err := identitySigners(identity)
	if err != nil {
		return nil, err
	}
	return connectWith(server, signers, hostKeys)
}

// connectWith connects authenticating with one of signers.
func connectWith(server string, signers []ssh.Signer, hostKeys ssh.HostKeyCallback) (*apiClient, error) {
	if server == "" {
		return nil, cli.Exit("no daemon address: set --server or JITSSH_SERVER", exitUsage)
	}
	user := os.Getenv("USER")
	if user == "" {
		user = "jitssh"
	}
	conn, err := ssh.Dial("tcp", server, &ssh.ClientConfig{
		User:            user,
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(signers...)},
		HostKeyCallback: hostKeys,
		Timeout:         10 * time.Second,
	})
	if err != nil {
		var keyErr *knownhosts.KeyError
		if errors.As(err, &keyErr) {
			if len(keyErr.Want) == 0 {
				return nil, fmt.Errorf("the daemon's host key for %s is not in the known_hosts file; refusing to trust it", server)
			}
			return nil, fmt.Errorf("the daemon at %s presented a host key that does not match the known_hosts file: refusing to connect", server)
		}
		return nil, fmt.Errorf("connect to daemon %s: %w", server, err)
	}
	c := &apiClient{conn: conn, signers: signers, stop: make(chan struct{})}
	go c.keepalive(apiKeepalive)
	return c, nil
}

// keepalive sends keepalive@openssh.com every interval until the client
// is closed or the connection fails.
func (a *apiClient) keepalive(interval time.Duration) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-a.stop:
			return
		case <-tick.C:
			if _, _, err := a.conn.SendRequest(keepaliveRequest, true, nil); err != nil {
				return
			}
		}
	}
}

// signer returns the key the daemon knows this person by, to sign
// statements with.
func (a *apiClient) signer() (ssh.Signer, error) {
	if a.identity != nil {
		return a.identity, nil
	}
	resp, err := a.call(methodWhoami, apiRequest{})
	if err != nil {
		return nil, err
	}
	for _, s := range a.signers {
		if ssh.FingerprintSHA256(s.PublicKey()) == resp.Key {
			a.identity = s
			return s, nil
		}
	}
	return nil, errors.New("cannot find the key the daemon identified you by")
}

// sign signs a statement message with the person's own key.
func (a *apiClient) sign(namespace string, msg []byte) (string, error) {
	s, err := a.signer()
	if err != nil {
		return "", err
	}
	return audit.SignStatement(s, namespace, msg)
}

func hostKeyCallback(file string) (ssh.HostKeyCallback, error) {
	if file == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return nil, cli.Exit("no known_hosts file: set --known-hosts or JITSSH_KNOWN_HOSTS", exitUsage)
		}
		file = filepath.Join(home, ".ssh", "known_hosts")
	}
	cb, err := knownhosts.New(file)
	if err != nil {
		return nil, fmt.Errorf("read known_hosts %s: %w", file, err)
	}
	return acceptPinnedUnderCertificate(cb), nil
}

// acceptPinnedUnderCertificate lets a daemon that presents a host
// certificate in by its pinned plain key too. The client asks for
// certificate algorithms first, so a daemon with host_names presents one;
// an "@cert-authority" line accepts it, and without one the key inside the
// certificate, which is what signs the handshake, must be pinned. The
// plain check's error is kept, so its hints still name the key to pin.
func acceptPinnedUnderCertificate(cb ssh.HostKeyCallback) ssh.HostKeyCallback {
	return func(host string, remote net.Addr, key ssh.PublicKey) error {
		err := cb(host, remote, key)
		if cert, ok := key.(*ssh.Certificate); ok && err != nil {
			return cb(host, remote, cert.Key)
		}
		return err
	}
}

// identitySigners prefers an identity file; otherwise the agent's plain
// keys. Certificates in the agent are jitssh grants, not identities: they
// are never offered to the daemon.
func identitySigners(identity string) ([]ssh.Signer, error) {
	if identity != "" {
		data, err := os.ReadFile(identity)
		if err != nil {
			return nil, fmt.Errorf("read identity: %w", err)
		}
		signer, err := ssh.ParsePrivateKey(data)
		if err != nil {
			return nil, fmt.Errorf("parse identity %s: %w", identity, err)
		}
		return []ssh.Signer{signer}, nil
	}
	ag, err := connectAgent()
	if err != nil {
		return nil, fmt.Errorf("no identity: set --identity or JITSSH_IDENTITY, or run ssh-agent (%w)", err)
	}
	signers, err := ag.Signers()
	if err != nil {
		return nil, fmt.Errorf("list ssh-agent keys: %w", err)
	}
	plain := signers[:0]
	for _, s := range signers {
		if _, isCert := s.PublicKey().(*ssh.Certificate); !isCert {
			plain = append(plain, s)
		}
	}
	if len(plain) == 0 {
		return nil, errors.New("no identity: ssh-agent holds no plain key; set --identity or JITSSH_IDENTITY")
	}
	return plain, nil
}

// errNoAgent is returned when SSH_AUTH_SOCK names no running agent.
var errNoAgent = errors.New("no ssh-agent running (SSH_AUTH_SOCK is not set)")

func connectAgent() (agent.ExtendedAgent, error) {
	sock := os.Getenv("SSH_AUTH_SOCK")
	if sock == "" {
		return nil, errNoAgent
	}
	conn, err := net.Dial("unix", sock)
	if err != nil {
		return nil, fmt.Errorf("connect to ssh-agent at %s: %w", sock, err)
	}
	return agent.NewClient(conn), nil
}

func (a *apiClient) Close() error {
	a.stopOnce.Do(func() { close(a.stop) })
	return a.conn.Close()
}

// call runs one method and returns its single response. A list is
// returned whole, up to req.Limit: the daemon answers it a page at a
// time, and call follows the pages.
func (a *apiClient) call(method string, req apiRequest) (*apiResponse, error) {
	if method == methodList {
		return a.listAll(req)
	}
	return a.callOnce(method, req)
}

func (a *apiClient) listAll(req apiRequest) (*apiResponse, error) {
	want := req.Limit
	var all []*approvals.Request
	for {
		resp, err := a.callOnce(methodList, req)
		if err != nil {
			return resp, err
		}
		all = append(all, resp.Requests...)
		if resp.Next == "" || (want > 0 && len(all) >= want) {
			resp.Requests, resp.Next = all, ""
			return resp, nil
		}
		if want > 0 {
			req.Limit = want - len(all)
		}
		req.AfterID = resp.Next
	}
}

func (a *apiClient) callOnce(method string, req apiRequest) (*apiResponse, error) {
	var resp *apiResponse
	err := a.stream(context.Background(), method, req, func(r *apiResponse) (bool, error) {
		resp = r
		return false, nil
	})
	if err != nil {
		return resp, err
	}
	if resp == nil {
		return nil, fmt.Errorf("%s: the daemon closed the call without an answer", method)
	}
	return resp, nil
}

// stream runs a method and hands each response line to fn until fn says
// stop, the daemon ends the call, or ctx is done.
func (a *apiClient) stream(ctx context.Context, method string, req apiRequest, fn func(*apiResponse) (more bool, err error)) error {
	sess, err := a.conn.NewSession()
	if err != nil {
		return fmt.Errorf("%s: open session: %w", method, err)
	}
	defer sess.Close()
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	sess.Stdin = bytes.NewReader(append(body, '\n'))
	out, err := sess.StdoutPipe()
	if err != nil {
		return err
	}
	if err := sess.Start(method); err != nil {
		return fmt.Errorf("%s: %w", method, err)
	}
	stop := context.AfterFunc(ctx, func() { sess.Close() })
	defer stop()
	r := bufio.NewReaderSize(out, 64<<10)
	for {
		line, err := r.ReadBytes('\n')
		if len(bytes.TrimSpace(line)) > 0 {
			resp, derr := decodeResponse(line)
			if derr != nil {
				return derr
			}
			more, ferr := fn(resp)
			if ferr != nil || !more {
				return ferr
			}
		}
		if errors.Is(err, io.EOF) {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return nil
		}
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("%s: %w", method, err)
		}
	}
}
