package approvals

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"time"
	"unicode"

	"golang.org/x/crypto/ssh"

	"github.com/jitssh/jitssh/ca"
)

// ErrRateLimited: the caller has used up what the limits allow one person
// (requests per hour, live certificates, calls in flight); the message
// says which limit and when to try again.
var ErrRateLimited = errors.New("rate limited")

// Defaults for Limits. The connection limits bound what anyone who can
// reach the port can make the daemon hold before authenticating; the
// per-person limits bound what a listed person can make it store.
const (
	DefaultHandshakeTimeout         = 10 * time.Second
	DefaultIdleTimeout              = 5 * time.Minute // clients send keepalives every 30 s
	DefaultMaxConnections           = 256
	DefaultMaxConnectionsPerSource  = 32
	DefaultMaxSessionsPerConnection = 4
	DefaultMaxCallsPerPerson        = 16
	DefaultRequestsPerHour          = 120
	DefaultRequestBurst             = 20
	DefaultMaxLiveCertificates      = 50
)

// MaxListPage is the most requests one List call returns; a caller who
// wants more follows ListPage.Next.
const MaxListPage = 200

// Limits bound what one source address, one connection and one person can
// make the daemon hold. Zero means the default. The connection limits are
// read when the daemon starts; the per-person ones follow a reload.
type Limits struct {
	HandshakeTimeout         Duration `yaml:"handshake_timeout" json:"handshake_timeout"`                     // to finish authenticating
	IdleTimeout              Duration `yaml:"idle_timeout" json:"idle_timeout"`                               // a connection with no traffic, keepalives included
	MaxConnections           int      `yaml:"max_connections" json:"max_connections"`                         // open at once, in all
	MaxConnectionsPerSource  int      `yaml:"max_connections_per_source" json:"max_connections_per_source"`   // open at once from one IP address
	MaxSessionsPerConnection int      `yaml:"max_sessions_per_connection" json:"max_sessions_per_connection"` // calls at once on one connection
	MaxCallsPerPerson        int      `yaml:"max_calls_per_person" json:"max_calls_per_person"`               // calls at once by one person, waits included
	RequestsPerHour          int      `yaml:"requests_per_hour" json:"requests_per_hour"`                     // requests one person may make, on average
	RequestBurst             int      `yaml:"request_burst" json:"request_burst"`                             // requests one person may make at once
	MaxLiveCertificates      int      `yaml:"max_live_certificates" json:"max_live_certificates"`             // a person requests only while holding fewer live certificates
}

func (l Limits) withDefaults() Limits {
	setDefault := func(d *Duration, v time.Duration) {
		if *d == 0 {
			*d = Duration(v)
		}
	}
	setDefaultInt := func(n *int, v int) {
		if *n == 0 {
			*n = v
		}
	}
	setDefault(&l.HandshakeTimeout, DefaultHandshakeTimeout)
	setDefault(&l.IdleTimeout, DefaultIdleTimeout)
	setDefaultInt(&l.MaxConnections, DefaultMaxConnections)
	setDefaultInt(&l.MaxConnectionsPerSource, DefaultMaxConnectionsPerSource)
	setDefaultInt(&l.MaxSessionsPerConnection, DefaultMaxSessionsPerConnection)
	setDefaultInt(&l.MaxCallsPerPerson, DefaultMaxCallsPerPerson)
	setDefaultInt(&l.RequestsPerHour, DefaultRequestsPerHour)
	setDefaultInt(&l.RequestBurst, DefaultRequestBurst)
	setDefaultInt(&l.MaxLiveCertificates, DefaultMaxLiveCertificates)
	return l
}

// check reports the limits that are out of range; a config has its
// defaults filled in, so only a negative value is.
func (l Limits) check(c *checker) {
	for _, d := range []struct {
		key string
		val Duration
	}{{"handshake_timeout", l.HandshakeTimeout}, {"idle_timeout", l.IdleTimeout}} {
		if d.val < 0 {
			c.bad(at("limits", d.key), "limits: %s: %v is negative", d.key, d.val)
		}
	}
	for _, n := range []struct {
		key string
		val int
	}{
		{"max_connections", l.MaxConnections}, {"max_connections_per_source", l.MaxConnectionsPerSource},
		{"max_sessions_per_connection", l.MaxSessionsPerConnection}, {"max_calls_per_person", l.MaxCallsPerPerson},
		{"requests_per_hour", l.RequestsPerHour}, {"request_burst", l.RequestBurst},
		{"max_live_certificates", l.MaxLiveCertificates},
	} {
		if n.val < 0 {
			c.bad(at("limits", n.key), "limits: %s: %d is negative", n.key, n.val)
		}
	}
}

// Limits returns the limits, with defaults filled in.
func (p *Policy) Limits() Limits { return p.cfg.Limits }

// guard keeps what the per-person limits count, and the keys that are
// never certified. Its zero value is ready; it forgets nothing a person
// could grow, since people are the policy's.
type guard struct {
	hostKey ssh.PublicKey // the daemon's own host key, or nil

	mu      sync.Mutex
	buckets map[string]*bucket // person → their request schedule
	calls   map[string]int     // person → calls in flight
}

// bucket spaces one person's requests: burst at once, then one every
// hour/perHour. It keeps the theoretical time at which the next request
// would be on schedule (the generic cell rate algorithm), which needs no
// background refill and no floating point.
type bucket struct {
	tat time.Time
}

// take admits a request at now, or says how long until one would be.
func (b *bucket) take(now time.Time, perHour, burst int) (bool, time.Duration) {
	interval := time.Hour / time.Duration(perHour)
	tolerance := interval * time.Duration(burst-1)
	tat := b.tat
	if tat.Before(now) {
		tat = now
	}
	if ahead := tat.Sub(now); ahead > tolerance {
		return false, ahead - tolerance
	}
	b.tat = tat.Add(interval)
	return true, 0
}

// BeginCall checks who against the policy in force, as every call does,
// and counts the call against the calls they may have in flight; it
// returns who as the policy knows them now, and end, which the front-end
// calls when the call is over. Long calls (waits, watches) count for as
// long as they last.
func (s *Service) BeginCall(who Actor) (Actor, func(), error) {
	p := s.Policy()
	a, err := p.resolve(who)
	if err != nil {
		return Actor{}, nil, err
	}
	limit := p.Limits().MaxCallsPerPerson
	g := &s.guard
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.calls == nil {
		g.calls = map[string]int{}
	}
	if n := g.calls[a.Person]; n >= limit {
		return Actor{}, nil, fmt.Errorf("%w: %s has %d calls in progress, the most the limits allow; wait for one to end",
			ErrRateLimited, a.Person, n)
	}
	g.calls[a.Person]++
	var once sync.Once
	return a, func() {
		once.Do(func() {
			g.mu.Lock()
			defer g.mu.Unlock()
			if g.calls[a.Person]--; g.calls[a.Person] <= 0 {
				delete(g.calls, a.Person)
			}
		})
	}, nil
}

// admitSubmit is what Submit checks before the request itself: that who
// is still who the policy says, that the input holds nothing the request
// may not carry, and that who is within their limits. It returns the
// requester's name.
func (s *Service) admitSubmit(p *Policy, who Actor, in SubmitInput, now time.Time) (string, error) {
	a, err := p.resolve(who)
	if err != nil {
		return "", err
	}
	if err := checkRefText(in.Ref); err != nil {
		return "", err
	}
	if k := s.guard.hostKey; k != nil && in.PublicKey != nil && bytes.Equal(in.PublicKey.Marshal(), k.Marshal()) {
		return "", fmt.Errorf("%w: the key to certify is the daemon's own host key; use a fresh key", ErrBadRequest)
	}
	lim := p.Limits()
	n, err := s.liveCertificates(p, a.Person, now, lim.MaxLiveCertificates)
	if err != nil {
		return "", err
	}
	if n >= lim.MaxLiveCertificates {
		return "", fmt.Errorf("%w: %s has %d live %s, the most the limits allow; release one or wait for one to expire",
			ErrRateLimited, a.Person, n, plural(n, "certificate", "certificates"))
	}
	if in.DryRun {
		return a.Person, nil
	}
	g := &s.guard
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.buckets == nil {
		g.buckets = map[string]*bucket{}
	}
	b, ok := g.buckets[a.Person]
	if !ok {
		b = &bucket{}
		g.buckets[a.Person] = b
	}
	if ok, wait := b.take(now, lim.RequestsPerHour, lim.RequestBurst); !ok {
		return "", fmt.Errorf("%w: %s has made as many requests as the limits allow (%d at once, %d an hour); try again in %v",
			ErrRateLimited, a.Person, lim.RequestBurst, lim.RequestsPerHour, wait.Round(time.Second))
	}
	return a.Person, nil
}

// liveCertificates counts the person's certificates that are issued, or
// being issued, and neither expired nor revoked at now, up to limit. It
// reads their requests newest first and stops at limit, or where none
// could still be live: a request waits at most the request timeout and a
// certificate lasts at most the CA's longest TTL. The requests it reads
// are thus bounded by the person's request rate.
func (s *Service) liveCertificates(p *Policy, person string, now time.Time, limit int) (int, error) {
	horizon := now.Add(-p.RequestTimeout() - ca.DefaultMaxTTL)
	it, err := s.fsm.State().db.Txn(false).GetReverse(tableRequests, indexRequester, person)
	if err != nil {
		return 0, fmt.Errorf("count live certificates: %w", err)
	}
	n := 0
	for obj := it.Next(); obj != nil; obj = it.Next() {
		r := obj.(*Request)
		if r.CreatedAt.Before(horizon) {
			break
		}
		if r.Issuing() || r.CertState(now) == CertActive {
			if n++; n >= limit {
				break
			}
		}
	}
	return n, nil
}

// checkRefText refuses a ref that would print as something else on an
// approver's terminal: git allows any UTF-8 beyond ASCII in ref names,
// bidirectional overrides and invisible format characters included.
func checkRefText(ref string) error {
	for _, r := range ref {
		if !unicode.IsGraphic(r) || unicode.Is(unicode.Bidi_Control, r) {
			return fmt.Errorf("%w: ref contains the character %U, which does not print as itself", ErrBadRequest, r)
		}
	}
	return nil
}
