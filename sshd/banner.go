package sshd

import (
	"errors"
	"fmt"
	"strings"
	"time"

	gliderssh "github.com/gliderlabs/ssh"
	"golang.org/x/crypto/ssh"
)

// A refused key gets only "Permission denied (publickey)" from SSH
// itself. For a certificate the trusted CA signed that is refused for its
// validity or revocation, the native server also says why in an SSH
// authentication banner, which OpenSSH's ssh prints on stderr (unless run
// with -q): the person then knows to ask for a new grant. Only what the
// certificate itself holds is said, and its revocation, which a KRL
// published for anyone to fetch says too; nothing is said of other keys,
// whose refusal says nothing the holder could act on.

const (
	preAuthKey ctxKey = "jitssh-preauth"
	bannersKey ctxKey = "jitssh-banners"
)

// maxBanners caps the banners one connection gets: an agent may hold many
// stale certificates.
const maxBanners = 3

// sentBanners is what a connection has been told, by serial.
type sentBanners map[uint64]bool

// keepPreAuthConn remembers the connection being authenticated, so that
// a refusal can be explained on it.
func keepPreAuthConn(ctx gliderssh.Context) func(ssh.ServerPreAuthConn) {
	return func(c ssh.ServerPreAuthConn) {
		ctx.SetValue(preAuthKey, c)
		ctx.SetValue(bannersKey, sentBanners{})
	}
}

// explainRefusal sends the holder of key, refused with err, the banner
// that says why, once per certificate, if there is one to send.
func explainRefusal(ctx gliderssh.Context, key ssh.PublicKey, err error) {
	cert, ok := key.(*ssh.Certificate)
	if !ok {
		return
	}
	msg := certRefusalBanner(cert, err, time.Now())
	conn, okConn := ctx.Value(preAuthKey).(ssh.ServerPreAuthConn)
	sent, okSent := ctx.Value(bannersKey).(sentBanners)
	if msg == "" || !okConn || !okSent || sent[cert.Serial] || len(sent) >= maxBanners {
		return
	}
	sent[cert.Serial] = true
	// Too late to say it (authentication ended) is nothing to act on.
	_ = conn.SendAuthBanner(msg)
}

// certRefusalBanner is what the holder of cert, refused with err, is told:
// why, for a certificate refused for its validity window or revocation,
// and "" for any other refusal. now dates the message.
func certRefusalBanner(cert *ssh.Certificate, err error, now time.Time) string {
	what := fmt.Sprintf("certificate serial %d (%s)", cert.Serial, grantList(cert.ValidPrincipals))
	switch {
	case errors.Is(err, ErrExpired):
		ended := time.Unix(int64(min(cert.ValidBefore, 1<<62)), 0)
		return fmt.Sprintf("%s%s expired %s ago, at %s; request a new grant\n", GrantRefusal, what, now.Sub(ended).Round(time.Second), ended.UTC().Format(time.RFC3339))
	case errors.Is(err, ErrNotYetValid):
		starts := time.Unix(int64(min(cert.ValidAfter, 1<<62)), 0)
		return fmt.Sprintf("jitssh: refused: %s is valid only from %s; is this machine's clock right?\n", what, starts.UTC().Format(time.RFC3339))
	case errors.Is(err, ErrRevoked):
		return fmt.Sprintf("jitssh: refused: %s has been revoked\n", what)
	}
	return ""
}

// grantList names a certificate's principals for a message, the first
// few of them.
func grantList(principals []string) string {
	const show = 3
	names := make([]string, 0, show)
	for _, p := range principals[:min(len(principals), show)] {
		names = append(names, truncate(strings.Map(printable, p)))
	}
	list := strings.Join(names, ", ")
	if len(principals) > show {
		list += fmt.Sprintf(" and %d more", len(principals)-show)
	}
	return list
}

// printable keeps control characters out of what a terminal shows.
func printable(r rune) rune {
	if r < 0x20 || r == 0x7f {
		return '?'
	}
	return r
}
