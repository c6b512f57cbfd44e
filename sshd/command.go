package sshd

import (
	"errors"
	"fmt"
	"strings"

	"github.com/jitssh/jitssh/principals"
)

// Service is one of the three Git programs a client may run.
type Service string

const (
	UploadPack    Service = "git-upload-pack"
	ReceivePack   Service = "git-receive-pack"
	UploadArchive Service = "git-upload-archive"
)

// Access is the least access a grant must give for the service to run at
// all. Which refs it then reaches is decided ref by ref.
func (s Service) Access() principals.Access {
	if s == ReceivePack {
		return principals.Write
	}
	return principals.Read
}

// ErrCommand is returned for any exec request that is not exactly one Git
// service and one repository path.
var ErrCommand = errors.New("unsupported command")

// Command is a parsed SSH exec request.
type Command struct {
	Service Service
	// Repo is the canonical repository name (no leading '/', no '.git').
	Repo string
}

// ParseCommand parses what a Git client sends as the SSH exec request:
//
//	git-upload-pack '/org/repo.git'
//	git-receive-pack 'org/repo'
//
// The service may also be spelled with a space ("git upload-pack"), as old
// clients do. The path may be single-quoted (as git quotes it) or bare. No
// shell ever sees the string: anything beyond one service and one path —
// extra arguments, other quoting, ';', '$(', newlines — is refused, and the
// path must be a repository name of the grant grammar.
func ParseCommand(s string) (Command, error) {
	rest, svc, ok := cutService(s)
	if !ok {
		return Command{}, fmt.Errorf("%w: %q", ErrCommand, truncate(s))
	}
	if len(rest) == 0 || rest[0] != ' ' {
		return Command{}, fmt.Errorf("%w: %s needs one repository argument", ErrCommand, svc)
	}
	arg := rest[1:]
	if len(arg) >= 2 && arg[0] == '\'' && arg[len(arg)-1] == '\'' {
		arg = arg[1 : len(arg)-1]
	}
	// The grant grammar is far narrower than this, but checking the byte
	// set first keeps quoting tricks out of the error messages too.
	for i := 0; i < len(arg); i++ {
		if !isPathByte(arg[i]) {
			return Command{}, fmt.Errorf("%w: repository argument has a forbidden character", ErrCommand)
		}
	}
	repo, err := principals.NormalizeRepo(arg)
	if err != nil {
		// A path no repository can have is answered like an unknown one.
		return Command{}, fmt.Errorf("%w: %w: %w", ErrCommand, ErrRepoNotFound, err)
	}
	return Command{Service: svc, Repo: repo}, nil
}

func cutService(s string) (rest string, svc Service, ok bool) {
	for _, c := range []Service{UploadPack, ReceivePack, UploadArchive} {
		if r, found := strings.CutPrefix(s, string(c)); found {
			return r, c, true
		}
		spaced := "git " + strings.TrimPrefix(string(c), "git-")
		if r, found := strings.CutPrefix(s, spaced); found {
			return r, c, true
		}
	}
	return "", "", false
}

func isPathByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '/' || c == '.' || c == '_' || c == '-'
}

// truncate keeps hostile input from flooding a log line.
func truncate(s string) string {
	const max = 80
	if len(s) > max {
		return s[:max] + "..."
	}
	return s
}
