package audit

import (
	"errors"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// maxRequesterLen bounds a workload's requester name, which, followed by
// "/" and the request ID, is the certificate's key ID.
const maxRequesterLen = 200

// WorkloadRequester is the name a CI/CD job requests under:
// "ci:<issuer>:<repository>@<ref>", with the repository from the
// repository (GitHub) or project_path (GitLab) claim, or the subject when
// the token names neither. Bytes that are not printable ASCII, spaces and
// "%" are percent-encoded, and a long name is cut, so that it can stand in
// a certificate key ID and a log line as it is.
func WorkloadRequester(issuer, subject string, claims map[string]string) string {
	repo := claims["repository"]
	if repo == "" {
		repo = claims["project_path"]
	}
	if repo == "" {
		repo = subject
	}
	name := "ci:" + issuer + ":" + repo
	if ref := claims["ref"]; ref != "" {
		name += "@" + ref
	}
	var b strings.Builder
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c <= ' ' || c > '~' || c == '%' {
			b.WriteString("%" + strings.ToUpper(string("0123456789abcdef"[c>>4])+string("0123456789abcdef"[c&15])))
			continue
		}
		b.WriteByte(c)
	}
	out := b.String()
	if len(out) > maxRequesterLen {
		out = out[:maxRequesterLen-3] + "..."
	}
	return out
}

// CheckWorkloadRecord checks a request entry a CI/CD job made: it carries
// the job's identity and no signed statement, its requester is the name
// that identity gives, and its grant, TTL, key and steps are well formed
// (as CheckRequestRecord checks them). That the issuer signed the token is
// for a WorkloadVerifier to check. The error is a *failure wrapping
// ErrRecord or ErrScope.
func CheckWorkloadRecord(d *RequestData) error {
	_, _, err := checkWorkloadRecord(d)
	return err
}

func checkWorkloadRecord(d *RequestData) (ssh.PublicKey, time.Duration, error) {
	w := d.Workload
	switch {
	case w == nil:
		return nil, 0, fail(ErrRecord, "request %s: no workload identity", d.ID)
	case d.Statement != "" || d.Signature != "":
		return nil, 0, fail(ErrRecord, "request %s: a workload request carries a signed statement too", d.ID)
	case w.Issuer == "" || w.IssuerURL == "" || w.Subject == "" || w.TokenID == "" || w.Expires.IsZero():
		return nil, 0, fail(ErrRecord, "request %s: workload identity lacks its issuer, subject, token ID or expiry", d.ID)
	}
	if want := WorkloadRequester(w.Issuer, w.Subject, w.Claims); d.Requester != want {
		return nil, 0, fail(ErrRecord, "request %s: requester %q is not %q, the name its workload identity gives", d.ID, d.Requester, want)
	}
	return checkRequestScope(d)
}

// Errors about CI/CD job requests.
var (
	// ErrWorkloadToken: a workload request's token does not verify, does
	// not vouch for what the record says, or got another request before.
	ErrWorkloadToken = errors.New("workload token does not vouch for the request")
	// ErrWorkloadUnchecked is what a WorkloadVerifier answers when it has
	// no key set for the token's issuer: a gap in what the auditor holds,
	// not a failure of the log.
	ErrWorkloadUnchecked = errors.New("workload token not checked")
)

// VerifiedWorkload is what a token says once its signature is checked.
type VerifiedWorkload struct {
	IssuerURL string
	Subject   string
	TokenID   string
	Claims    map[string]string // every claim, as WorkloadData records them
}

// WorkloadVerifier checks w.Token offline, as of at (the time of the
// request entry): signed by the issuer w names, for w's audience, valid
// then. It returns what the token says, or ErrWorkloadUnchecked when it
// holds no keys for that issuer.
type WorkloadVerifier func(w *WorkloadData, at time.Time) (*VerifiedWorkload, error)

// checkWorkloadRequest checks a CI/CD job's request entry: its record,
// that its token got no other request, and, when the auditor holds the
// issuer's keys, that the token verifies and says what the record says.
func (c *checker) checkWorkloadRequest(d *RequestData, p *pending) error {
	pub, ttl, err := checkWorkloadRecord(d)
	if err != nil {
		return err
	}
	p.publicKey, p.ttl = pub, ttl
	w := d.Workload
	if prev, dup := c.tokens[w.TokenID]; dup {
		return fail(ErrWorkloadToken, "request %s: its token %s already got request %s", d.ID, w.TokenID, prev)
	}
	c.tokens[w.TokenID] = d.ID
	c.usedToken(w.TokenID, w.Expires)
	if c.opts.VerifyWorkload == nil {
		c.sum.WorkloadUnchecked++
		return nil
	}
	v, err := c.opts.VerifyWorkload(w, p.approved)
	if errors.Is(err, ErrWorkloadUnchecked) {
		c.sum.WorkloadUnchecked++
		return nil
	}
	if err != nil {
		return fail(ErrWorkloadToken, "request %s by %s: token: %v", d.ID, d.Requester, err)
	}
	for _, f := range [...]struct{ name, token, recorded string }{
		{"issuer", v.IssuerURL, w.IssuerURL}, {"subject", v.Subject, w.Subject}, {"token ID", v.TokenID, w.TokenID},
	} {
		if f.token != f.recorded {
			return fail(ErrWorkloadToken, "request %s: %s is %q, but the token says %q", d.ID, f.name, f.recorded, f.token)
		}
	}
	names := make([]string, 0, len(w.Claims))
	for k := range w.Claims {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		if got, ok := v.Claims[k]; !ok || got != w.Claims[k] {
			return fail(ErrWorkloadToken, "request %s: claim %s is %q, but the token says %q", d.ID, k, w.Claims[k], got)
		}
	}
	c.sum.WorkloadChecked++
	return nil
}
