package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
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
		&cli.StringSliceFlag{Name: "server", Usage: "approval daemon address HOST:PORT; a cluster's nodes, repeated or comma-separated, are tried in order", EnvVars: []string{"JITSSH_SERVER"}},
		&cli.StringFlag{Name: "identity", Usage: "your SSH private key file (default: the keys in ssh-agent)", EnvVars: []string{"JITSSH_IDENTITY"}},
		&cli.StringFlag{Name: "known-hosts", Usage: "known_hosts file holding the daemon's host key (each node's)", EnvVars: []string{"JITSSH_KNOWN_HOSTS"}},
	}
}

func jsonOutFlag() cli.Flag {
	return &cli.BoolFlag{Name: "json", Usage: "print JSON instead of text", EnvVars: []string{"JITSSH_JSON"}}
}

// serverFlag returns the daemon addresses --server (or JITSSH_SERVER)
// gives, comma-separated, in the order they are tried.
func serverFlag(c *cli.Context) string {
	return strings.Join(splitServers(strings.Join(c.StringSlice("server"), ",")), ",")
}

// splitServers splits a comma-separated list of daemon addresses, leaving
// out empty ones.
func splitServers(list string) []string {
	var out []string
	for _, s := range strings.Split(list, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// apiClient is one authenticated SSH connection to a daemon: to the first
// of its addresses that answers, and to the next one when that node goes
// away or cannot have the cluster make a change (see apifailover.go).
type apiClient struct {
	servers  []string
	signers  []ssh.Signer
	hostKeys ssh.HostKeyCallback
	warn     io.Writer // told about nodes passed over for a wrong host key

	mu   sync.Mutex
	conn *ssh.Client // the connection calls use now
	addr string      // the address conn is to

	// identity is the key that authenticated, found on first use.
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
	signers, hostKeys, err := credentials(serverFlag(c), c.String("identity"), c.String("known-hosts"))
	if err != nil {
		return nil, err
	}
	return newAPIClient(serverFlag(c), signers, hostKeys, c.App.ErrWriter)
}

// connectAPI connects to the first of servers (comma-separated) that
// answers.
func connectAPI(servers, identity, knownHostsFile string) (*apiClient, error) {
	signers, hostKeys, err := credentials(servers, identity, knownHostsFile)
	if err != nil {
		return nil, err
	}
	return connectWith(servers, signers, hostKeys)
}

// credentials loads what connecting takes: the person's keys and the
// daemon's pinned host keys.
func credentials(servers, identity, knownHostsFile string) ([]ssh.Signer, ssh.HostKeyCallback, error) {
	if len(splitServers(servers)) == 0 {
		return nil, nil, cli.Exit("no daemon address: set --server or JITSSH_SERVER", exitUsage)
	}
	hostKeys, err := hostKeyCallback(knownHostsFile)
	if err != nil {
		return nil, nil, err
	}
	signers, err := identitySigners(identity)
	if err != nil {
		return nil, nil, err
	}
	return signers, hostKeys, nil
}

// connectWith connects to the first of servers (comma-separated) that
// answers, authenticating with one of signers. A node that cannot be
// reached, or fails the handshake (its host key included), is passed over
// for the next; when none answers, the error names each address and what
// it did.
func connectWith(servers string, signers []ssh.Signer, hostKeys ssh.HostKeyCallback) (*apiClient, error) {
	return newAPIClient(servers, signers, hostKeys, io.Discard)
}

// newAPIClient is connectWith, telling warn about each node whose host
// key did not match known_hosts and was passed over.
func newAPIClient(servers string, signers []ssh.Signer, hostKeys ssh.HostKeyCallback, warn io.Writer) (*apiClient, error) {
	list := splitServers(servers)
	if len(list) == 0 {
		return nil, cli.Exit("no daemon address: set --server or JITSSH_SERVER", exitUsage)
	}
	c := &apiClient{servers: list, signers: signers, hostKeys: hostKeys, warn: warn, stop: make(chan struct{})}
	if err := c.connect(map[string]bool{}); err != nil {
		return nil, err
	}
	return c, nil
}

// connect makes a connection to the first address not in skip, in order,
// and makes it the one calls use. Each address it could not connect to
// is added to skip.
func (a *apiClient) connect(skip map[string]bool) error {
	var tried []dialFailure
	for _, addr := range a.servers {
		if skip[addr] {
			continue
		}
		conn, err := a.dial(addr)
		if err != nil {
			skip[addr] = true
			tried = append(tried, dialFailure{addr, err})
			continue
		}
		for _, f := range tried {
			// Not silently: a wrong host key may be someone in the way.
			var wrong *wrongHostKeyError
			if errors.As(f.err, &wrong) {
				fmt.Fprintf(a.warn, "jitssh: warning: %v; used %s instead\n", f.err, addr)
			}
		}
		a.mu.Lock()
		old := a.conn
		a.conn, a.addr = conn, addr
		a.mu.Unlock()
		if old != nil {
			old.Close()
		}
		go a.keepalive(conn, apiKeepalive)
		return nil
	}
	switch len(tried) {
	case 0:
		return errors.New("no daemon address left to try")
	case 1:
		return tried[0].err
	}
	return &noDaemonError{tried: tried}
}

// dialFailure is one address a client could not connect to.
type dialFailure struct {
	addr string
	err  error
}

// noDaemonError is a client none of whose addresses answered. It names
// each address with what went wrong there, on one line.
type noDaemonError struct{ tried []dialFailure }

func (e *noDaemonError) Error() string {
	addrs := make([]string, len(e.tried))
	why := make([]string, len(e.tried))
	for i, f := range e.tried {
		addrs[i] = f.addr
		why[i] = dialReason(f)
	}
	return fmt.Sprintf("no daemon answered at any of %s: %s", strings.Join(addrs, ", "), strings.Join(why, "; "))
}

func (e *noDaemonError) Unwrap() []error {
	errs := make([]error, len(e.tried))
	for i, f := range e.tried {
		errs[i] = f.err
	}
	return errs
}

// dialReason says in a few words why addr did not answer.
func dialReason(f dialFailure) string {
	var op *net.OpError
	switch {
	case errors.Is(f.err, syscall.ECONNREFUSED):
		return f.addr + " refused the connection"
	case errors.Is(f.err, os.ErrDeadlineExceeded):
		return f.addr + " timed out"
	case errors.As(f.err, &op) && op.Err != nil:
		return f.addr + ": " + op.Err.Error()
	}
	return f.err.Error()
}

// wrongHostKeyError is a node whose host key is not the one known_hosts
// pins for its address.
type wrongHostKeyError struct{ addr string }

func (e *wrongHostKeyError) Error() string {
	return fmt.Sprintf("the daemon at %s presented a host key that does not match the known_hosts file: refusing to connect", e.addr)
}

// dial connects to one daemon address. Its host key is checked against
// known_hosts for that address: each node of a cluster has its own.
func (a *apiClient) dial(server string) (*ssh.Client, error) {
	user := os.Getenv("USER")
	if user == "" {
		user = "jitssh"
	}
	conn, err := ssh.Dial("tcp", server, &ssh.ClientConfig{
		User:            user,
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(a.signers...)},
		HostKeyCallback: a.hostKeys,
		Timeout:         10 * time.Second,
	})
	if err != nil {
		var keyErr *knownhosts.KeyError
		if errors.As(err, &keyErr) {
			if len(keyErr.Want) == 0 {
				return nil, fmt.Errorf("the daemon's host key for %s is not in the known_hosts file; refusing to trust it", server)
			}
			return nil, &wrongHostKeyError{addr: server}
		}
		return nil, fmt.Errorf("connect to daemon %s: %w", server, err)
	}
	return conn, nil
}

// current returns the connection calls use now, and its address.
func (a *apiClient) current() (*ssh.Client, string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.conn, a.addr
}

// keepalive sends keepalive@openssh.com on conn every interval until the
// client is closed or the connection fails (or is replaced, and closed).
func (a *apiClient) keepalive(conn *ssh.Client, interval time.Duration) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-a.stop:
			return
		case <-tick.C:
			if _, _, err := conn.SendRequest(keepaliveRequest, true, nil); err != nil {
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
	conn, _ := a.current()
	return conn.Close()
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
