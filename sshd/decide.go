package sshd

import (
	"errors"
	"fmt"
	"strings"

	"github.com/jitssh/jitssh/principals"
)

// ErrNotGranted is returned when the certificate's grants do not cover the
// repository, or not with the access the service needs.
var ErrNotGranted = errors.New("not granted")

// notGranted is the ErrNotGranted of one request: what the grants lack on
// the repository the client named. It is decided from the grants alone,
// before the disk is touched.
type notGranted struct {
	repo    string
	service Service
	// have is the most the grants give on repo; zero when none names it.
	have principals.Access
}

func (e *notGranted) Error() string {
	if e.have == 0 {
		return fmt.Sprintf("%v: no grant names %s", ErrNotGranted, e.repo)
	}
	return fmt.Sprintf("%v: %s needs %s access on %s", ErrNotGranted, e.service, e.service.Access(), e.repo)
}

func (e *notGranted) Unwrap() error { return ErrNotGranted }

// Decision is the outcome of authorizing one exec request. When Err is nil
// the operation may run, limited to Grants.
type Decision struct {
	Identity *Identity
	Command  Command
	// Path is the repository on disk; set only when allowed.
	Path string
	// Grants are the identity's grants on this repository.
	Grants principals.Set
	// Err says why the request was refused, for the log. ClientMessage
	// turns it into what the client may see.
	Err error
}

// Allowed reports whether the operation may run.
func (d Decision) Allowed() bool { return d.Err == nil }

// Decide is the one function from (verified identity, exec request) to a
// decision. The identity must come from Verifier.Verify on the key that
// completed authentication.
func Decide(repos *Repos, id *Identity, exec string) Decision {
	d := decideGrants(id, exec)
	if d.Err != nil {
		return d
	}
	path, err := repos.Resolve(d.Command.Repo)
	if err != nil {
		d.Err = err
		return d
	}
	d.Path = path
	return d
}

// decideGrants is Decide up to the repository on disk: the command, and
// whether a grant names its repository with the access its service needs.
func decideGrants(id *Identity, exec string) Decision {
	d := Decision{Identity: id}
	if id == nil {
		d.Err = ErrNoGrants
		return d
	}
	cmd, err := ParseCommand(exec)
	if err != nil {
		d.Err = err
		return d
	}
	d.Command = cmd
	d.Grants = id.Grants.ForRepo(cmd.Repo)
	// Grants are checked before the disk is touched, so a missing repo and
	// a forbidden one cost the same and answer the same.
	if have := maxAccess(d.Grants); !have.Includes(cmd.Service.Access()) {
		d.Err = &notGranted{repo: cmd.Repo, service: cmd.Service, have: have}
		return d
	}
	return d
}

// maxAccess is the strongest access any of grants gives; zero for none.
func maxAccess(grants principals.Set) principals.Access {
	var have principals.Access
	for _, g := range grants {
		have = max(have, g.Access)
	}
	return have
}

// GrantRefusal starts every refusal a client sees for want of a grant
// (none on the repository, too little access, a certificate that has
// expired), so that a client such as jitssh git-ssh can tell them from
// other failures and offer to request one.
const GrantRefusal = "jitssh: not granted: "

// ClientMessage is the short text a refused client sees: what was missing,
// in terms of what the client itself sent and its own certificate. It
// never says whether a repository the grants do not name exists: that
// refusal is decided before the disk is touched and reads the same either
// way. That a repository the grants name is missing, the holder may know.
func ClientMessage(err error) string {
	var ng *notGranted
	switch {
	case err == nil:
		return ""
	case errors.As(err, &ng) && ng.have == 0:
		return fmt.Sprintf("%syour certificate has no grant on %s", GrantRefusal, truncate(ng.repo))
	case errors.As(err, &ng):
		return fmt.Sprintf("%s%s needs %s access on %s; your grant there gives %s", GrantRefusal, ng.service.what(), ng.service.Access(), truncate(ng.repo), ng.have)
	case errors.Is(err, ErrNotGranted):
		return strings.TrimSuffix(GrantRefusal, ": ")
	case errors.Is(err, ErrRepoNotFound):
		return "jitssh: repository not found"
	case errors.Is(err, ErrExpired):
		return GrantRefusal + "your certificate has expired; request a new grant"
	case errors.Is(err, ErrNotYetValid):
		return "jitssh: refused: your certificate is not valid yet (is this machine's clock right?)"
	case errors.Is(err, ErrRevoked):
		return "jitssh: refused: your certificate has been revoked"
	case errors.Is(err, ErrRevocationUnknown):
		return "jitssh: refused for now: this server cannot check revocations; try again later"
	case errors.Is(err, ErrAuditUnavailable):
		return "jitssh: refused: the audit log cannot be written, so nothing was done"
	case errors.Is(err, ErrCommand):
		return "jitssh: only git-upload-pack, git-receive-pack and git-upload-archive on a repository are allowed"
	case errors.Is(err, ErrNoHostAccount):
		return "jitssh: you have no account on the Git host behind this server; ask its operator to add yours (upstream accounts)"
	case errors.Is(err, ErrArchiveUpstream):
		return "jitssh: git archive --remote is not available here: this server passes repositories through from a Git host"
	default:
		return "jitssh: permission denied"
	}
}

// what names the Git operation the service serves, for messages.
func (s Service) what() string {
	switch s {
	case ReceivePack:
		return "a push"
	case UploadArchive:
		return "git archive"
	}
	return "a fetch"
}
