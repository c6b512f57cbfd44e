package audit

import (
	"errors"
	"fmt"
	"maps"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"
)

// version makes a policy version of the grants fixture: the people named,
// with their fixture groups unless overridden, under two rules: "auto"
// for reads, approved automatically, and "reviewed" for the rest, needing
// steps.
func (f *grantsFixture) version(digest string, steps []Step, people map[string][]string) PolicyVersion {
	v := PolicyVersion{Digest: digest, Source: digest + ".yaml", People: map[string]Person{},
		Rules: map[string]PolicyRule{
			"auto":     {MinTTL: time.Minute, MaxTTL: 8 * time.Hour},
			"reviewed": {Steps: steps, MinTTL: time.Minute, MaxTTL: 8 * time.Hour},
		},
		Match: func(requester, repo, ref, access string) (string, error) {
			if access == "read" {
				return "auto", nil
			}
			return "reviewed", nil
		},
	}
	for name, groups := range people {
		v.People[name] = Person{Keys: []ssh.PublicKey{f.signers[name].PublicKey()}, Groups: groups}
	}
	return v
}

// union is what the auditor passes as CheckOptions.People: everyone of
// every version.
func union(vs ...PolicyVersion) map[string]Person {
	out := map[string]Person{}
	for _, v := range vs {
		for name, p := range v.People {
			q := out[name]
			q.Keys = append(q.Keys, p.Keys...)
			q.Groups = append(q.Groups, p.Groups...)
			out[name] = q
		}
	}
	return out
}

func versioned(d RequestData, digest string) RequestData {
	d.PolicySHA256 = digest
	return d
}

func TestCheckerPolicyVersions(t *testing.T) {
	f := newGrantsFixture(t)
	leads := []Step{{Group: "leads", Count: 1}}
	const d1, d2 = "sha256:1111111111111111111111111111111111111111111111111111111111111111", "sha256:2222222222222222222222222222222222222222222222222222222222222222"
	everyone := maps.Clone(fixturePeople)
	v1 := f.version(d1, leads, everyone)
	// In v2, bob is gone, and frank became a lead.
	newer := maps.Clone(fixturePeople)
	delete(newer, "bob")
	newer["frank"] = []string{"dev", "leads"}
	v2 := f.version(d2, leads, newer)

	r1 := f.request("r1", "alice", "write", "demo/app", "refs/heads/feature/*", "1h0m0s", "login form", leads...)
	r2 := f.request("r2", "dave", "write", "demo/app", "refs/heads/main", "1h0m0s", "fix", leads...)
	r3 := f.request("r3", "alice", "write", "demo/app", "refs/heads/feature/x", "1h0m0s", "after the reload", leads...)
	history := story{
		{"request r1", KindRequest, "alice", versioned(r1, d1)},
		{"approve r1", KindApprove, "bob", f.decide(KindApprove, r1, "bob", "", "ok")},
		{"issue r1", KindIssue, "jitssh", later(func(now time.Time) IssueData { return f.issue(r1, 1, time.Hour, now, "bob") })},
		{"request r2", KindRequest, "dave", versioned(r2, d1)},
		{"reload", KindPolicyReload, "jitssh", PolicyReloadData{PolicySHA256: d2, People: 6, Rules: 2, Offboarded: map[string]string{"bob": "removed from the policy"}}},
		// r2 was asked under v1 and approved under v2, by a lead of v2.
		{"approve r2", KindApprove, "frank", f.decide(KindApprove, r2, "frank", "", "ok")},
		{"issue r2", KindIssue, "jitssh", later(func(now time.Time) IssueData { return f.issue(r2, 2, time.Hour, now, "frank") })},
		{"request r3", KindRequest, "alice", versioned(r3, d2)},
		{"approve r3", KindApprove, "carol", f.decide(KindApprove, r3, "carol", "", "ok")},
		{"issue r3", KindIssue, "jitssh", later(func(now time.Time) IssueData { return f.issue(r3, 3, time.Hour, now, "carol") })},
	}
	// The same history, written before versions were recorded.
	unversioned := history.set("request r1", r1).set("request r2", r2).set("request r3", r3)
	// A request recorded with no steps and its approval taken out, the
	// chain written anew: the entries agree with each other.
	stripped := history.set("request r1", func() RequestData { d := versioned(r1, d1); d.Steps = nil; return d }()).
		remove("approve r1").
		set("issue r1", later(func(now time.Time) IssueData { return f.issue(r1, 1, time.Hour, now) }))

	tests := []struct {
		name  string
		story story
		opts  CheckOptions
		want  []found
		check func(t *testing.T, sum CheckSummary)
	}{
		{name: "every version supplied", story: history, opts: CheckOptions{Policies: []PolicyVersion{v1, v2}, People: union(v1, v2)},
			check: func(t *testing.T, sum CheckSummary) {
				assert.Equal(t, 3, sum.PolicyChecked)
				assert.Equal(t, map[string]int{d1: 2, d2: 1}, sum.PolicyRequests)
				assert.Zero(t, sum.NotChecked)
			}},
		{name: "the older version missing", story: history, opts: CheckOptions{Policies: []PolicyVersion{v2}, People: union(v2)},
			want: []found{{int(history.seq("request r1")), history.seq("request r1"), ErrPolicyUnknown},
				{int(history.seq("request r2")), history.seq("request r2"), ErrPolicyUnknown}},
			check: func(t *testing.T, sum CheckSummary) {
				assert.Equal(t, 2, sum.UnknownPolicy)
				assert.Equal(t, 1, sum.NotChecked, "bob, whom no version supplied knows")
			}},
		{name: "the older version missing, and allowed to be", story: history,
			opts: CheckOptions{Policies: []PolicyVersion{v2}, People: union(v2), AllowUnknownPolicy: true},
			check: func(t *testing.T, sum CheckSummary) {
				assert.Equal(t, 2, sum.UnknownPolicy)
				assert.Equal(t, 1, sum.PolicyChecked)
			}},
		{name: "written before versions, today's people", story: unversioned, opts: CheckOptions{People: union(v2)},
			want: []found{{int(history.seq("approve r1")), history.seq("approve r1"), ErrUnknownPerson},
				{int(history.seq("issue r1")), history.seq("issue r1"), ErrUnapprovedIssue}}},
		{name: "written before versions, everyone", story: unversioned, opts: CheckOptions{People: union(v1, v2)}},
		{name: "steps stripped and approval removed", story: stripped, opts: CheckOptions{Policies: []PolicyVersion{v1, v2}, People: union(v1, v2)},
			want: []found{{int(stripped.seq("request r1")), stripped.seq("request r1"), ErrPolicy},
				{int(stripped.seq("issue r1")), stripped.seq("issue r1"), ErrUnapprovedIssue}}},
		{name: "rule not the one the version picks", opts: CheckOptions{Policies: []PolicyVersion{v1}, People: union(v1)},
			story: history[:3].set("request r1", func() RequestData { d := versioned(r1, d1); d.Rule, d.Steps = "auto", nil; return d }()),
			want:  []found{{1, 1, ErrPolicy}}},
		{name: "rule the version does not have", opts: CheckOptions{Policies: []PolicyVersion{func() PolicyVersion { v := v1; v.Match = nil; return v }()}, People: union(v1)},
			story: history[:3].set("request r1", func() RequestData { d := versioned(r1, d1); d.Rule = "yolo"; return d }()),
			want:  []found{{1, 1, ErrPolicy}}},
		{name: "TTL beyond the rule's", story: history[:3], opts: CheckOptions{People: union(v1), Policies: []PolicyVersion{func() PolicyVersion {
			v := f.version(d1, leads, everyone)
			v.Rules["reviewed"] = PolicyRule{Steps: leads, MinTTL: time.Minute, MaxTTL: 30 * time.Minute}
			return v
		}()}}, want: []found{{1, 1, ErrPolicy}}},
		{name: "approver outside the group in the deciding versions", opts: CheckOptions{People: union(v1, v2), Policies: []PolicyVersion{v1, v2}},
			story: history.set("approve r3", f.decide(KindApprove, r3, "dave", "", "ok")).
				set("issue r3", later(func(now time.Time) IssueData { return f.issue(r3, 3, time.Hour, now, "dave") })),
			want: []found{{int(history.seq("issue r3")), history.seq("issue r3"), ErrUnapprovedIssue}}},
		{name: "no people: nothing about versions is judged", story: stripped, opts: CheckOptions{}},
		// A restored state decides under the version it recorded, as after
		// a reload.
		{name: "restore puts its version in force", opts: CheckOptions{Policies: []PolicyVersion{v1, v2}, People: union(v1, v2)},
			story: history.remove("reload").insertBefore("approve r2", rec{"restore", KindRestore, "jitssh",
				RestoreData{Reason: "state restored from a snapshot", PolicySHA256: d2}})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := tt.opts
			opts.CAKeys = []ssh.PublicKey{f.ca.PublicKey()}
			path := tt.story.write(t)
			got, _ := checkAll(t, path, opts)
			assert.Equal(t, tt.want, got)
			if tt.check != nil {
				k := NewChecker(opts)
				_, err := k.Check(mustOpen(t, path), nil, func(error) {})
				require.NoError(t, err)
				tt.check(t, k.Summary())
			}
		})
	}
}

func TestCheckerPolicyMessages(t *testing.T) {
	f := newGrantsFixture(t)
	leads := []Step{{Group: "leads", Count: 1}}
	const d1 = "sha256:1111111111111111111111111111111111111111111111111111111111111111"
	v1 := f.version(d1, leads, fixturePeople)
	r1 := f.request("r1", "alice", "write", "demo/app", "refs/heads/feature/*", "1h0m0s", "login form", leads...)
	r1 = versioned(r1, d1)
	r1.Steps = nil
	path := story{{"request r1", KindRequest, "alice", r1}}.write(t)
	var msgs []string
	_, err := NewChecker(CheckOptions{People: union(v1), Policies: []PolicyVersion{v1}}).Check(mustOpen(t, path), nil, func(err error) { msgs = append(msgs, err.Error()) })
	require.NoError(t, err)
	assert.Equal(t, []string{"audit log line 1 (seq 1, request): request r1 records approval steps none (approved automatically), " +
		"but rule reviewed of policy version sha256:111111111111 (" + d1 + ".yaml) requires 1 from leads: record disagrees with its policy version"}, msgs)

	r1.PolicySHA256 = "sha256:9999"
	path = story{{"request r1", KindRequest, "alice", r1}}.write(t)
	msgs = nil
	_, err = NewChecker(CheckOptions{People: union(v1), Policies: []PolicyVersion{v1}}).Check(mustOpen(t, path), nil, func(err error) { msgs = append(msgs, err.Error()) })
	require.NoError(t, err)
	require.Len(t, msgs, 1)
	assert.Contains(t, msgs[0], "request r1: policy version sha256:9999 not supplied: policy version not supplied")
	assert.True(t, errors.Is(fmt.Errorf("x: %w", ErrPolicyUnknown), ErrPolicyUnknown))
}
