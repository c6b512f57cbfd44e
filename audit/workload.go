package audit

import (
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
