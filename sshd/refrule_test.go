package sshd

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/jitssh/jitssh/principals"
)

func grantSet(t *testing.T, grants ...string) principals.Set {
	t.Helper()
	set, errs := principals.ParseSet(grants)
	require.Empty(t, errs)
	return set
}

// TestDecideRefMatrix: every access, on every kind of ref pattern, against
// every per-ref operation, on a ref the pattern covers and on one it does
// not.
func TestDecideRefMatrix(t *testing.T) {
	ops := []RefOp{RefRead, RefCreate, RefFastForward, RefRewrite, RefDelete}
	// What each access allows, in the order of ops.
	allowed := map[string][5]bool{
		"read":  {true, false, false, false, false},
		"write": {true, true, true, false, false},
		"force": {true, true, true, true, true},
	}
	// What each op needs, for the refusal's wording.
	need := [5]string{"read", "write", "write", "force", "force"}
	action := [5]string{"reading", "creating", "updating", "a non-fast-forward update of", "deleting"}
	patterns := []struct {
		kind, pattern, covered, uncovered string
	}{
		{"exact", "refs/heads/main", "refs/heads/main", "refs/heads/other"},
		{"prefix", "refs/heads/feature/*", "refs/heads/feature/a", "refs/heads/other"},
		{"every ref", "*", "refs/tags/v1", ""},
	}
	for _, access := range []string{"read", "write", "force"} {
		for _, p := range patterns {
			grants := grantSet(t, "git:"+access+":demo/app:"+p.pattern)
			for i, op := range ops {
				t.Run(fmt.Sprintf("%s %s %s", access, p.kind, action[i]), func(t *testing.T) {
					d := DecideRef(grants, "demo/app", p.covered, op)
					assert.Equal(t, allowed[access][i], d.Allowed)
					if d.Allowed {
						assert.Empty(t, d.Reason())
					} else {
						assert.Equal(t, fmt.Sprintf("%s %s needs %s access on demo/app; your grant gives %s", action[i], p.covered, need[i], access), d.Reason())
					}
					if p.uncovered == "" {
						return
					}
					d = DecideRef(grants, "demo/app", p.uncovered, op)
					assert.False(t, d.Allowed)
					assert.Equal(t, fmt.Sprintf("not in your grant: %s %s needs %s access on demo/app", action[i], p.uncovered, need[i]), d.Reason())
				})
			}
		}
	}
}

// TestDecideRefLeakPaths are the places where git's own notion of a ref
// name is wider than a grant, or where git answers from refs it hides.
func TestDecideRefLeakPaths(t *testing.T) {
	tests := []struct {
		name    string
		grants  []string
		ref     string
		op      RefOp
		allowed bool
	}{
		// hideRefs would show refs below an exact grant.
		{"below an exact grant", []string{"git:force:demo/app:refs/heads/rel"}, "refs/heads/rel/x", RefRead, false},
		{"created below an exact grant", []string{"git:force:demo/app:refs/heads/rel"}, "refs/heads/rel/x", RefCreate, false},
		// hideRefs would show a ref named like the prefix itself.
		{"named like a prefix grant", []string{"git:force:demo/app:refs/heads/feature/*"}, "refs/heads/feature", RefRead, false},
		{"pushed under the prefix's name", []string{"git:force:demo/app:refs/heads/feature/*"}, "refs/heads/feature", RefCreate, false},
		{"sharing the prefix's first letters", []string{"git:read:demo/app:refs/heads/feature/*"}, "refs/heads/featureX", RefRead, false},
		{"deep below a prefix grant", []string{"git:read:demo/app:refs/heads/feature/*"}, "refs/heads/feature/a/b", RefRead, true},
		// HEAD is decided by its target, and is no ref of its own.
		{"HEAD's hidden target", []string{"git:read:demo/app:refs/heads/feature/*"}, "refs/heads/main", RefRead, false},
		{"HEAD's granted target", []string{"git:read:demo/app:refs/heads/main"}, "refs/heads/main", RefRead, true},
		{"HEAD itself", []string{"git:read:demo/app:*"}, "HEAD", RefRead, false},
		// A tag outside the grant stays out, by name or riding along.
		{"hidden tag", []string{"git:read:demo/app:refs/heads/*"}, "refs/tags/v1", RefRead, false},
		{"include-tag for a scoped reader", []string{"git:force:demo/app:refs/heads/*"}, "", RefIncludeTag, false},
		{"include-tag for a reader of all", []string{"git:read:demo/app:*"}, "", RefIncludeTag, true},
		{"include-tag with refs/*", []string{"git:read:demo/app:refs/*"}, "", RefIncludeTag, true},
		// git resolves deepen-not among all refs.
		{"deepen-not naming a granted ref", []string{"git:force:demo/app:refs/heads/main"}, "refs/heads/main", RefDeepenNot, false},
		{"deepen-not for a reader of all", []string{"git:read:demo/app:*"}, "refs/heads/main", RefDeepenNot, true},
		// The other requests git answers from the whole repository.
		{"v2 for a scoped reader", []string{"git:force:demo/app:refs/heads/main"}, "", RefFetchByID, false},
		{"v2 for a reader of all", []string{"git:read:demo/app:*"}, "", RefFetchByID, true},
		{"filter for a scoped reader", []string{"git:read:demo/app:refs/heads/main"}, "", RefFilter, false},
		{"list all for a scoped reader", []string{"git:read:demo/app:refs/heads/main"}, "", RefListAll, false},
		{"thin pack for a scoped writer", []string{"git:force:demo/app:refs/heads/*"}, "", RefBuildOnAny, false},
		{"thin pack for a writer who reads all", []string{"git:write:demo/app:refs/heads/*", "git:read:demo/app:*"}, "", RefBuildOnAny, true},
		// A grant is for one repository.
		{"another repository's grant", []string{"git:force:demo/other:*"}, "refs/heads/main", RefRead, false},
		{"another repository's every ref", []string{"git:force:demo/other:*"}, "", RefListAll, false},
		// The strongest grant covering the ref counts.
		{"write beside read of all", []string{"git:read:demo/app:*", "git:write:demo/app:refs/heads/feature/*"}, "refs/heads/feature/a", RefFastForward, true},
		{"write elsewhere beside read of all", []string{"git:read:demo/app:*", "git:write:demo/app:refs/heads/feature/*"}, "refs/heads/main", RefFastForward, false},
		// Malformed names are covered by nothing.
		{"dot-dot", []string{"git:force:demo/app:*"}, "refs/heads/../x", RefCreate, false},
		{"empty", []string{"git:force:demo/app:*"}, "", RefRead, false},
		{"outside refs/", []string{"git:force:demo/app:*"}, "heads/main", RefRead, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := DecideRef(grantSet(t, tt.grants...), "demo/app", tt.ref, tt.op)
			assert.Equal(t, tt.allowed, d.Allowed, d.Reason())
			assert.Equal(t, tt.allowed, d.Reason() == "")
		})
	}
}

// TestDecideRefReasons: a refusal says which access was missing, on which
// ref and repository, and reveals nothing the holder cannot see.
func TestDecideRefReasons(t *testing.T) {
	scoped := grantSet(t, "git:write:demo/app:refs/heads/feature/*", "git:read:demo/app:refs/heads/main")

	// Reading a hidden ref and reading a missing one are worded alike.
	hidden := DecideRef(scoped, "demo/app", "refs/heads/secret", RefRead).Reason()
	missing := DecideRef(scoped, "demo/app", "refs/heads/no-such", RefRead).Reason()
	assert.Equal(t, "not in your grant: reading refs/heads/secret needs read access on demo/app", hidden)
	assert.Equal(t, hidden, strings.ReplaceAll(missing, "no-such", "secret"))

	// A name the client gave stands for the ref it resolved to.
	d := DecideRef(scoped, "demo/app", "refs/tags/secret", RefRead)
	assert.Equal(t, "not in your grant: reading secret needs read access on demo/app", d.ReasonAs("secret"))

	// Whole-repository refusals do not depend on the ref named.
	for _, op := range []RefOp{RefDeepenNot, RefIncludeTag, RefFilter, RefFetchByID, RefListAll, RefBuildOnAny} {
		a := DecideRef(scoped, "demo/app", "refs/heads/secret", op).Reason()
		b := DecideRef(scoped, "demo/app", "refs/heads/no-such", op).Reason()
		assert.Equal(t, a, b, "op %d", op)
		assert.Contains(t, a, "needs read access on every ref of demo/app")
		assert.NotContains(t, a, "refs/heads/")
	}
	// The words clients and scripts already look for.
	assert.Contains(t, DecideRef(scoped, "demo/app", "", RefDeepenNot).Reason(),
		"--shallow-exclude (deepen-not) is not available with a grant on some refs only")

	// A refusal names the grants' access, never their patterns.
	for _, op := range []RefOp{RefCreate, RefFastForward, RefRewrite, RefDelete} {
		r := DecideRef(scoped, "demo/app", "refs/heads/main", op).Reason()
		assert.NotContains(t, r, "feature", "op %d: %s", op, r)
	}
}

func TestPushOp(t *testing.T) {
	const a, b = "1111111111111111111111111111111111111111", "2222222222222222222222222222222222222222"
	never := func() bool { t.Fatal("fast-forward asked for a create or delete"); return false }
	assert.Equal(t, RefCreate, pushOp(zeroOID, a, never))
	assert.Equal(t, RefDelete, pushOp(a, zeroOID, never))
	assert.Equal(t, RefFastForward, pushOp(a, b, func() bool { return true }))
	assert.Equal(t, RefRewrite, pushOp(a, b, func() bool { return false }))
}

func BenchmarkDecideRef(b *testing.B) {
	grants, _ := principals.ParseSet([]string{"git:read:demo/app:refs/heads/main", "git:write:demo/app:refs/heads/feature/*"})
	b.ReportAllocs()
	for b.Loop() {
		DecideRef(grants, "demo/app", "refs/heads/feature/x", RefFastForward)
	}
}
