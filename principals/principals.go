// Package principals defines the grant principals that jitssh writes into SSH
// user certificates, and answers from them the one question a Git server
// asks: may this certificate do this on this repository at this ref?
//
// A grant principal is
//
//	git:<access>:<repo>:<refpattern>
//
// with this grammar:
//
//	access:
//		"read"          fetch and clone
//		"write"         read, plus creating and fast-forwarding refs
//		"force"         write, plus non-fast-forward updates and deletes
//	repo:
//		segment { "/" segment }    and the whole must not end in ".git"
//	segment:
//		[A-Za-z0-9] { [A-Za-z0-9] | "." | "_" | "-" }
//	refpattern:
//		"*"             every ref
//		refname         exactly that ref
//		prefix "/*"     every ref strictly below prefix + "/", at any depth
//	prefix:
//		"refs" | refname
//	refname:
//		"refs/" followed by more, such that the whole is accepted by
//		git check-ref-format and is valid UTF-8:
//		  - no ".." and no "@{" anywhere;
//		  - no ASCII control character (below 0x20, or 0x7f), no space,
//		    and none of ~ ^ : ? * [ \
//		  - no empty component (no "//"), no trailing "/";
//		  - no component that begins with "." or ends with ".lock";
//		  - no trailing ".".
//
// Git itself accepts ref names that are not UTF-8 and ref names outside
// refs/ (such as HEAD); jitssh does not, so that every grant can be shown to
// an approver as it is and names a ref a server stores under refs/.
// A "*" stands only alone or as the whole last component of a prefix
// pattern: "refs/heads/feat*", "refs/*/main" and "refs/heads/**" are refused.
// Git ref names cannot contain ":", so a principal splits into its four
// fields unambiguously. A principal is at most MaxLen bytes long.
//
// Two promises hold throughout. What does not parse grants nothing: a
// malformed principal is refused whole, never read as a nearby valid one.
// The canonical string is the only accepted spelling: there is no case
// folding, no trimming and no optional ".git", so whenever Parse(s)
// succeeds, its String() is s byte for byte, and the principal an approver
// reads is exactly the one a server enforces. In the same spirit, a repo or
// ref that is itself malformed is covered by no grant.
package principals

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// MaxLen is the longest principal, in bytes, that Parse accepts.
const MaxLen = 1024

// Sentinel errors. Every error this package returns wraps exactly one of
// them, so callers can branch with errors.Is.
var (
	ErrSyntax  = errors.New("not a grant principal")
	ErrAccess  = errors.New("invalid access")
	ErrRepo    = errors.New("invalid repo")
	ErrRef     = errors.New("invalid ref")
	ErrTooLong = errors.New("principal too long")
)

// A ParseError is returned by Parse for a principal that is not a
// well-formed grant. Err wraps one of the sentinel errors and says which
// field is wrong and how.
type ParseError struct {
	Principal string // the principal as given
	Err       error  // the reason, wrapping ErrSyntax, ErrAccess, ErrRepo, ErrRef or ErrTooLong
}

// quoteLimit bounds how much of an overlong principal an error repeats, so
// that a hostile certificate cannot flood a log.
const quoteLimit = 64

func (e *ParseError) Error() string {
	if len(e.Principal) > MaxLen {
		return "principals: parse " + strconv.Quote(e.Principal[:quoteLimit]) + "...: " + e.Err.Error()
	}
	return "principals: parse " + strconv.Quote(e.Principal) + ": " + e.Err.Error()
}

func (e *ParseError) Unwrap() error { return e.Err }

// Access is the kind of Git operation a grant allows. Each level includes
// the ones below it: Force includes Write, which includes Read.
type Access uint8

const (
	Read  Access = iota + 1 // fetch and clone
	Write                   // Read, plus creating refs and fast-forwarding them
	Force                   // Write, plus non-fast-forward updates and deletes
)

// ParseAccess returns the Access named by s, which must be exactly "read",
// "write" or "force".
func ParseAccess(s string) (Access, error) {
	switch s {
	case "read":
		return Read, nil
	case "write":
		return Write, nil
	case "force":
		return Force, nil
	}
	return 0, fmt.Errorf(`%w %q: want "read", "write" or "force"`, ErrAccess, s)
}

func (a Access) valid() bool { return a >= Read && a <= Force }

// String returns "read", "write" or "force", and "Access(N)" for anything
// else.
func (a Access) String() string {
	switch a {
	case Read:
		return "read"
	case Write:
		return "write"
	case Force:
		return "force"
	}
	return "Access(" + strconv.Itoa(int(a)) + ")"
}

// Includes reports whether access a is enough for b. An invalid Access
// includes nothing and is included by nothing.
func (a Access) Includes(b Access) bool {
	return a.valid() && b.valid() && a >= b
}

// A Grant is one parsed grant principal.
type Grant struct {
	Access Access
	Repo   string // canonical repo name, e.g. "demo/app"
	Ref    string // "*", a full ref name, or a prefix pattern "P/*"
}

// Parse parses a grant principal. It accepts only the canonical spelling
// described in the package documentation; on failure it returns a
// *ParseError and the zero Grant.
func Parse(s string) (Grant, error) {
	if len(s) > MaxLen {
		return Grant{}, &ParseError{s, tooLong(len(s))}
	}
	if n := strings.Count(s, ":") + 1; n != 4 {
		return Grant{}, &ParseError{s, fmt.Errorf(`%w: %d colon-separated %s, want 4 ("git:<access>:<repo>:<refpattern>")`,
			ErrSyntax, n, plural(n, "field", "fields"))}
	}
	scheme, rest, _ := strings.Cut(s, ":")
	if scheme != "git" {
		return Grant{}, &ParseError{s, fmt.Errorf(`%w: first field %q is not "git"`, ErrSyntax, scheme)}
	}
	access, rest, _ := strings.Cut(rest, ":")
	repo, ref, _ := strings.Cut(rest, ":")
	a, err := ParseAccess(access)
	if err != nil {
		return Grant{}, &ParseError{s, err}
	}
	g := Grant{Access: a, Repo: repo, Ref: ref}
	if err := g.checkNames(); err != nil {
		return Grant{}, &ParseError{s, err}
	}
	return g, nil
}

// String returns the principal for g. For a valid grant it is the canonical
// spelling that Parse turns back into g; for an invalid one it is only
// something to show in a message.
func (g Grant) String() string {
	return "git:" + g.Access.String() + ":" + g.Repo + ":" + g.Ref
}

// Validate applies to an already-built Grant the checks that Parse applies
// to a principal. It returns nil exactly when Parse(g.String()) would
// succeed and return g.
func (g Grant) Validate() error {
	if err := g.check(); err != nil {
		return fmt.Errorf("principals: invalid grant: %w", err)
	}
	return nil
}

func (g Grant) check() error {
	if !g.Access.valid() {
		return fmt.Errorf(`%w %s: want "read", "write" or "force"`, ErrAccess, g.Access)
	}
	if n := len("git:") + len(g.Access.String()) + len(":") + len(g.Repo) + len(":") + len(g.Ref); n > MaxLen {
		return tooLong(n)
	}
	return g.checkNames()
}

func (g Grant) checkNames() error {
	if err := CheckRepo(g.Repo); err != nil {
		return err
	}
	return CheckRefPattern(g.Ref)
}

func tooLong(n int) error {
	return fmt.Errorf("%w: %d bytes, limit %d", ErrTooLong, n, MaxLen)
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
