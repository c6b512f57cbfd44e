package sshd

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/jitssh/jitssh/ca"
)

// A Git host proxy (git-server's upstream block) serves every repository
// from one Git host over SSH. It authenticates people exactly as the
// native server does, decides repositories and refs with the same rule
// (DecideRef), and holds the host to the grant: nothing outside the grant
// is sent upstream, and only what the grant lets the holder read comes
// back. Upstream it presents, per operation, a short-lived certificate of
// the host's profile for the person's account on the host.

// Errors of the Git host proxy. Clients see ClientMessage's wording, or a
// line the proxy writes itself; the log sees the detail.
var (
	// ErrNoHostAccount: the person has no account mapped on the Git host.
	ErrNoHostAccount = errors.New("no account on the Git host")
	// ErrUpstream: the Git host could not be reached or refused the
	// connection.
	ErrUpstream = errors.New("Git host unavailable")
	// ErrUpstreamHostKey: the Git host presented a key that is not pinned.
	ErrUpstreamHostKey = errors.New("Git host key not pinned")
	// ErrArchiveUpstream: git archive --remote through a Git host.
	ErrArchiveUpstream = errors.New("git archive --remote is not served through a Git host")
)

// UpstreamOptions configure an Upstream.
type UpstreamOptions struct {
	// Address is the Git host's SSH address, host:port.
	Address string
	// User is the SSH user; DefaultUpstreamUser when empty.
	User string
	// HostKeys are the only keys the Git host may present.
	HostKeys []ssh.PublicKey
	// Authority signs the certificates presented upstream; the Git host
	// trusts its key.
	Authority *ca.Authority
	// Profile is the Git host's certificate profile, and Host the GitHub
	// Enterprise Server host name for the github profile.
	Profile ca.Profile
	Host    string
	// TTL is each upstream certificate's life, never more than the grant
	// has left; DefaultUpstreamTTL when zero.
	TTL time.Duration
	// DialTimeout bounds connecting and authenticating upstream;
	// DefaultUpstreamDialTimeout when zero.
	DialTimeout time.Duration
	// Accounts maps a person (see PersonOf) to their Git host account.
	Accounts map[string]string
	// ServiceAccount is the Git host account of people Accounts does not
	// list; when empty they are refused.
	ServiceAccount string
	// Git is the git binary that checks pushes; "git" when empty.
	Git string
	// Logger is the server's log; nil logs nothing.
	Logger *slog.Logger
	// Now is the clock for the upstream certificate's life; nil means
	// time.Now.
	Now func() time.Time
}

// Upstream is a Git host behind the proxy. It is safe for concurrent use.
type Upstream struct {
	opts     UpstreamOptions
	accounts atomic.Pointer[hostAccounts]
	algos    []string
}

// hostAccounts is who is who on the Git host: people's own accounts, and
// the service account of everyone else ("" for none).
type hostAccounts struct {
	people  map[string]string
	service string
}

// NewUpstream checks opts and returns the Git host they describe.
func NewUpstream(opts UpstreamOptions) (*Upstream, error) {
	switch {
	case opts.Address == "":
		return nil, errors.New("upstream: no address")
	case len(opts.HostKeys) == 0:
		return nil, errors.New("upstream: no pinned host key")
	case opts.Authority == nil:
		return nil, errors.New("upstream: no CA to sign with")
	case !opts.Profile.IsHost():
		return nil, fmt.Errorf("upstream: %w: %q", ca.ErrBadProfile, opts.Profile)
	}
	if err := ca.CheckHost(opts.Profile, opts.Host); err != nil {
		return nil, fmt.Errorf("upstream: %w", err)
	}
	if opts.User == "" {
		opts.User = DefaultUpstreamUser
	}
	setDefault(&opts.TTL, DefaultUpstreamTTL)
	if opts.TTL < MinUpstreamTTL || opts.TTL > MaxUpstreamTTL {
		return nil, fmt.Errorf("upstream: ttl %v: want %v to %v", opts.TTL, MinUpstreamTTL, MaxUpstreamTTL)
	}
	setDefault(&opts.DialTimeout, DefaultUpstreamDialTimeout)
	if opts.Git == "" {
		opts.Git = "git"
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	u := &Upstream{opts: opts}
	if err := u.SetAccounts(opts.Accounts, opts.ServiceAccount); err != nil {
		return nil, err
	}
	// Ask the host for the pinned keys' algorithms only, so that a host
	// with several keys presents one that is pinned.
	for _, k := range opts.HostKeys {
		if k.Type() == ssh.KeyAlgoRSA {
			u.algos = append(u.algos, ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256)
			continue
		}
		u.algos = append(u.algos, k.Type())
	}
	return u, nil
}

// UpstreamOptions builds the options the upstream block describes, loading
// the CA from its directory. logger is the server's log.
func (c *UpstreamConfig) UpstreamOptions(logger *slog.Logger) (UpstreamOptions, error) {
	keys, err := parseHostKeys(c.HostKeys)
	if err != nil {
		return UpstreamOptions{}, fmt.Errorf("upstream host_keys: %w", err)
	}
	profile, err := ca.ParseHostProfile(c.Profile)
	if err != nil {
		return UpstreamOptions{}, fmt.Errorf("upstream profile: %w", err)
	}
	authority, err := ca.Load(c.CADir)
	if err != nil {
		return UpstreamOptions{}, fmt.Errorf("upstream ca_dir: %w", err)
	}
	return UpstreamOptions{
		Address:        c.Address,
		User:           c.User,
		HostKeys:       keys,
		Authority:      authority,
		Profile:        profile,
		Host:           c.Host,
		TTL:            time.Duration(c.TTL),
		DialTimeout:    time.Duration(c.DialTimeout),
		Accounts:       c.Accounts,
		ServiceAccount: c.ServiceAccount,
		Logger:         logger,
	}, nil
}

// SetAccounts replaces the person-to-account map and the service account
// ("" for none), as a reload does; operations already running keep the
// account they started with.
func (u *Upstream) SetAccounts(accounts map[string]string, service string) error {
	m := make(map[string]string, len(accounts))
	for person, account := range accounts {
		if err := ca.CheckAccount(u.opts.Profile, account); err != nil {
			return fmt.Errorf("upstream accounts: %s: %w", person, err)
		}
		m[person] = account
	}
	if service != "" {
		if err := ca.CheckAccount(u.opts.Profile, service); err != nil {
			return fmt.Errorf("upstream service_account: %w", err)
		}
	}
	u.accounts.Store(&hostAccounts{people: m, service: service})
	return nil
}

// PersonOf returns the person a grant certificate's key ID names: the key
// ID up to its last "/" ("alice" of "alice/req-01J..."), or the whole key
// ID when it has none (see ca.ParseKeyID).
func PersonOf(keyID string) string {
	person, _ := ca.ParseKeyID(keyID)
	return person
}

// account returns the Git host account of the identity's person: their
// own, else the service account.
func (u *Upstream) account(id *Identity) (string, error) {
	person := PersonOf(id.KeyID)
	accounts := u.accounts.Load()
	if account, ok := accounts.people[person]; ok {
		return account, nil
	}
	if accounts.service != "" {
		return accounts.service, nil
	}
	return "", fmt.Errorf("%w: %q (key ID %q) is not in upstream accounts, and there is no service_account", ErrNoHostAccount, person, id.KeyID)
}

// Decide is the proxy's Decide: the same decision on the grant, with no
// repository on disk, and the person's Git host account looked up before
// anything is recorded as allowed.
func (u *Upstream) Decide(id *Identity, exec string) Decision {
	d := decideGrants(id, exec)
	if d.Err != nil {
		return d
	}
	if d.Command.Service == UploadArchive {
		d.Err = ErrArchiveUpstream
		return d
	}
	if _, err := u.account(id); err != nil {
		d.Err = err
	}
	return d
}

// Serve runs the decided operation against the Git host, as Git.Serve
// runs it against a repository on disk.
func (u *Upstream) Serve(ctx context.Context, d Decision, gitProtocol string, stdio Stdio, beforeUpdate func([]RefUpdate) error) (Result, error) {
	if !d.Allowed() {
		return Result{}, fmt.Errorf("serve refused decision: %w", d.Err)
	}
	in := &countingReader{r: stdio.In}
	out := &countingWriter{w: stdio.Out}
	stdio.In, stdio.Out = in, out
	stdio.Err = &lockedWriter{w: stdio.Err}
	var res Result
	client, err := u.connect(ctx, d.Identity)
	if err == nil {
		defer client.Close()
		switch d.Command.Service {
		case UploadPack:
			res, err = u.fetch(ctx, client, d, gitProtocol, stdio)
		case ReceivePack:
			res, err = u.push(ctx, client, d, stdio, beforeUpdate)
		default:
			err = fmt.Errorf("%w: %s", ErrCommand, d.Command.Service)
		}
	} else {
		fmt.Fprintln(stdio.Err, upstreamClientMessage(err))
	}
	res.BytesIn, res.BytesOut = in.n.Load(), out.count()
	return res, err
}

// upstreamClientMessage is what a client is told when the Git host cannot
// be used; the log has the detail.
func upstreamClientMessage(err error) string {
	switch {
	case errors.Is(err, ErrUpstreamHostKey):
		return "jitssh: the Git host presented a key that is not pinned here; nothing was sent to it"
	case errors.Is(err, ErrNoHostAccount):
		return ClientMessage(err)
	}
	return "jitssh: the Git host is unreachable or refused jitssh; nothing was sent, try again later"
}

// connect signs a certificate for the identity's Git host account and
// opens an SSH connection to the host, checking its key against the pinned
// ones. The connection closes when ctx is done.
func (u *Upstream) connect(ctx context.Context, id *Identity) (*ssh.Client, error) {
	account, err := u.account(id)
	if err != nil {
		return nil, err
	}
	signer, err := u.certSigner(id, account)
	if err != nil {
		return nil, err
	}
	cfg := &ssh.ClientConfig{
		User:              u.opts.User,
		Auth:              []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback:   u.checkHostKey,
		HostKeyAlgorithms: u.algos,
		ClientVersion:     "SSH-2.0-jitssh",
		Timeout:           u.opts.DialTimeout,
	}
	dialer := net.Dialer{Timeout: u.opts.DialTimeout}
	conn, err := dialer.DialContext(ctx, "tcp", u.opts.Address)
	if err != nil {
		return nil, fmt.Errorf("%w: connect to %s: %w", ErrUpstream, u.opts.Address, err)
	}
	_ = conn.SetDeadline(u.opts.Now().Add(u.opts.DialTimeout))
	c, chans, reqs, err := ssh.NewClientConn(conn, u.opts.Address, cfg)
	if err != nil {
		conn.Close()
		if errors.Is(err, ErrUpstreamHostKey) {
			return nil, err
		}
		return nil, fmt.Errorf("%w: SSH to %s as %s (account %s): %w", ErrUpstream, u.opts.Address, u.opts.User, account, err)
	}
	_ = conn.SetDeadline(time.Time{})
	client := ssh.NewClient(c, chans, reqs)
	stop := context.AfterFunc(ctx, func() { client.Close() })
	go func() {
		_ = client.Wait()
		stop()
	}()
	return client, nil
}

// checkHostKey accepts only a pinned key.
func (u *Upstream) checkHostKey(_ string, _ net.Addr, key ssh.PublicKey) error {
	for _, k := range u.opts.HostKeys {
		if sameKey(k, key) {
			return nil
		}
	}
	return fmt.Errorf("%w: %s presented %s %s", ErrUpstreamHostKey, u.opts.Address, key.Type(), ssh.FingerprintSHA256(key))
}

func sameKey(a, b ssh.PublicKey) bool { return string(a.Marshal()) == string(b.Marshal()) }

// certSigner makes a fresh key and certifies it for account, in the
// host's profile, for the upstream TTL or what is left of the grant if
// that is less. The certificate carries the grant's serial, and, unless
// the host reads the key ID as the account, the grant's key ID (person
// and request), so the host's own log names the grant.
func (u *Upstream) certSigner(id *Identity, account string) (ssh.Signer, error) {
	ttl := min(u.opts.TTL, id.ValidBefore.Sub(u.opts.Now())).Truncate(time.Second)
	if ttl < ca.MinTTL {
		return nil, fmt.Errorf("%w: the grant ends in under a second", ErrExpired)
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("upstream key: %w", err)
	}
	keySigner, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return nil, fmt.Errorf("upstream key: %w", err)
	}
	keyID := id.KeyID
	if u.opts.Profile.KeyIDIsAccount() {
		keyID = ""
	}
	cert, err := u.opts.Authority.Sign(ca.CertRequest{
		Profile:   u.opts.Profile,
		PublicKey: keySigner.PublicKey(),
		KeyID:     keyID,
		Account:   account,
		Host:      u.opts.Host,
		TTL:       ttl,
	}, grantSerial(id.Serial))
	if err != nil {
		return nil, fmt.Errorf("upstream certificate for %s: %w", account, err)
	}
	signer, err := ssh.NewCertSigner(cert, keySigner)
	if err != nil {
		return nil, fmt.Errorf("upstream certificate for %s: %w", account, err)
	}
	return signer, nil
}

// grantSerial gives the upstream certificate its grant's serial.
type grantSerial uint64

func (g grantSerial) NextSerial() (uint64, error) { return uint64(g), nil }

// lockedWriter serialises writes to the client's stderr, which the host's
// stderr and the proxy's own lines share.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
