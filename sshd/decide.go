package sshd

import (
	"errors"
	"fmt"

	"github.com/jitssh/jitssh/principals"
)

// ErrNotGranted is returned when the certificate's grants do not cover the
// repository, or not with the access the service needs.
var ErrNotGranted = errors.New("not granted")

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
	if len(d.Grants) == 0 {
		d.Err = fmt.Errorf("%w: no grant names %s", ErrNotGranted, cmd.Repo)
		return d
	}
	if !anyAccess(d.Grants, cmd.Service.Access()) {
		d.Err = fmt.Errorf("%w: %s needs %s access on %s", ErrNotGranted, cmd.Service, cmd.Service.Access(), cmd.Repo)
	}
	return d
}

func anyAccess(grants principals.Set, need principals.Access) bool {
	for _, g := range grants {
		if g.Access.Includes(need) {
			return true
		}
	}
	return false
}

// ClientMessage is the short text a refused client sees. It never says
// whether a repository exists that the client may not see.
func ClientMessage(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, ErrRepoNotFound), errors.Is(err, ErrNotGranted):
		return "jitssh: repository not found, or your grants do not allow this"
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
