package sshd

import (
	"fmt"

	"github.com/jitssh/jitssh/principals"
)

// RefOp is one thing a client asks of the refs of a repository.
type RefOp uint8

// Operations on one ref. The ref is the full name it has in the
// repository: a symbolic ref such as HEAD is decided by its target.
const (
	// RefRead is seeing the ref advertised, fetching or archiving it,
	// and being told that HEAD points to it.
	RefRead RefOp = iota + 1
	// RefCreate is pushing a ref that does not exist yet.
	RefCreate
	// RefFastForward is pushing a descendant of the ref's value.
	RefFastForward
	// RefRewrite is pushing anything else over the ref: a
	// non-fast-forward update.
	RefRewrite
	// RefDelete is pushing the ref's deletion.
	RefDelete
)

// Operations on the whole repository. git answers them from every ref and
// object, hidden ones included, so each needs read access on every ref; the
// ref passed with them, if any, does not change the answer, so naming a
// hidden ref and naming a missing one get the same refusal.
const (
	// RefListAll is advertising every ref as it is, nothing hidden.
	RefListAll RefOp = iota + 16
	// RefFetchByID is protocol v2, which serves any object by id.
	RefFetchByID
	// RefDeepenNot is fetch --shallow-exclude: git resolves the name
	// among all refs.
	RefDeepenNot
	// RefIncludeTag is being sent the annotated tags that point into
	// fetched history, whichever refs hold them.
	RefIncludeTag
	// RefFilter is a partial clone, whose missing objects are fetched
	// later by id.
	RefFilter
	// RefBuildOnAny is pushing a thin pack (deltas against objects
	// already there) or objects that link to any existing object.
	RefBuildOnAny
)

// need is the access op needs on its ref, or on every ref.
func (op RefOp) need() principals.Access {
	switch op {
	case RefCreate, RefFastForward:
		return principals.Write
	case RefRewrite, RefDelete:
		return principals.Force
	}
	return principals.Read
}

func (op RefOp) wholeRepo() bool { return op >= RefListAll }

// action words op for a refusal; ref is put where the operation names it.
func (op RefOp) action(ref string) string {
	switch op {
	case RefRead:
		return "reading " + ref
	case RefCreate:
		return "creating " + ref
	case RefFastForward:
		return "updating " + ref
	case RefRewrite:
		return "a non-fast-forward update of " + ref
	case RefDelete:
		return "deleting " + ref
	case RefListAll:
		return "listing every ref"
	case RefFetchByID:
		return "fetching objects by id (protocol v2)"
	case RefDeepenNot:
		return "--shallow-exclude (deepen-not) is not available with a grant on some refs only: it"
	case RefIncludeTag:
		return "following annotated tags (include-tag)"
	case RefFilter:
		return "a partial clone (--filter)"
	case RefBuildOnAny:
		return "a thin pack, or objects built on history outside your grant,"
	}
	return fmt.Sprintf("operation %d on %s", op, ref)
}

// RefDecision is the answer to one RefOp.
type RefDecision struct {
	Allowed bool
	// Need is the access the operation needs, on the ref or, for a
	// whole-repository operation, on every ref.
	Need principals.Access
	// Have is the strongest access the grants give on the ref; zero when
	// they give none. For a whole-repository operation it is Read when
	// the grants cover every ref, else zero.
	Have principals.Access

	op   RefOp
	repo string
	ref  string
}

// Reason says why the operation is refused, or "" when it is allowed. It
// names the access that was missing, the ref the client asked about and the
// repository, and nothing else: never a ref the client did not name.
func (d RefDecision) Reason() string { return d.ReasonAs(d.ref) }

// ReasonAs is Reason with name standing for the ref: for a name the client
// gave that jitssh resolved itself (archive's "main" for refs/heads/main),
// so the refusal does not tell what a hidden name resolves to.
func (d RefDecision) ReasonAs(name string) string {
	if d.Allowed {
		return ""
	}
	what := d.op.action(truncate(name))
	switch {
	case d.op.wholeRepo():
		return fmt.Sprintf("%s needs %s access on every ref of %s", what, d.Need, d.repo)
	case d.Have == 0:
		return fmt.Sprintf("not in your grant: %s needs %s access on %s", what, d.Need, d.repo)
	}
	return fmt.Sprintf("%s needs %s access on %s; your grant gives %s", what, d.Need, d.repo, d.Have)
}

// DecideRef is the one rule for what the holder of grants may do with the
// refs of repo; every place that shows, serves or changes a ref asks it. It
// is pure: deciding whether an update is a fast-forward, and what a
// symbolic ref points to, is the caller's work.
//
// A ref is covered as principals.Grant.MatchRef says: an exact grant
// covers its ref and nothing below it, a prefix grant P/* covers refs
// strictly below P/ and not P itself, and a malformed name (HEAD
// included) is covered by nothing.
func DecideRef(grants principals.Set, repo, ref string, op RefOp) RefDecision {
	d := RefDecision{Need: op.need(), op: op, repo: repo, ref: ref}
	if op.wholeRepo() {
		if readsEveryRef(grants, repo) {
			d.Have = principals.Read
		}
	} else if have, ok := grants.Max(repo, ref); ok {
		d.Have = have
	}
	d.Allowed = d.Have.Includes(d.Need)
	return d
}

// readsEveryRef reports whether some grant lets the holder read every ref
// of repo: "*", or "refs/*", since every ref name starts with "refs/".
func readsEveryRef(grants principals.Set, repo string) bool {
	for _, g := range grants {
		if g.Repo == repo && g.Access.Includes(principals.Read) && (g.Ref == "*" || g.Ref == "refs/*") {
			return true
		}
	}
	return false
}

// pushOp is the operation an update from old to new is. fastForward is
// asked only for an update of an existing ref to another existing object.
func pushOp(old, new string, fastForward func() bool) RefOp {
	switch {
	case isZeroID(new):
		return RefDelete
	case isZeroID(old):
		return RefCreate
	case fastForward():
		return RefFastForward
	}
	return RefRewrite
}
