package approvals

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// limitedPolicy: alice and dan develop, bob approves; reads are
// auto-approved; the limits are the given YAML.
func limitedPolicy(tb testing.TB, limits string) *Policy {
	tb.Helper()
	return policyFrom(tb, limits+`
people:
  - {name: alice, groups: [dev], keys: ["KEY(alice)"]}
  - {name: dan, groups: [dev], keys: ["KEY(dan)"]}
  - {name: bob, groups: [approvers], keys: ["KEY(bob)"]}
rules:
  - {name: r, groups: [dev], repos: ["*"], refs: ["*"], access: [read], auto_approve: true, max_ttl: 1h}
  - {name: w, groups: [dev], repos: ["*"], refs: ["*"], access: [write], approvals: [{group: approvers, count: 1}]}
`)
}

func readAny(tb testing.TB) SubmitInput {
	return SubmitInput{Repo: "x", Ref: "*", Access: "read", TTL: time.Hour, PublicKey: freshKey(tb)}
}

// TestRequestRate: a person gets request_burst requests at once and then
// requests_per_hour on average; another person's requests are not touched
// by the first one's flood.
func TestRequestRate(t *testing.T) {
	env := newTestService(t, limitedPolicy(t, "limits: {request_burst: 3, requests_per_hour: 6, max_live_certificates: 1000}"))
	for range 3 {
		env.submit(t, "alice", readAny(t))
	}
	refused := 0
	for range 10 {
		_, err := env.Submit(ctx, "alice", readAny(t))
		if errors.Is(err, ErrRateLimited) {
			refused++
			assert.Contains(t, err.Error(), "try again in 10m0s")
		}
	}
	assert.Equal(t, 10, refused, "alice's flood after her burst")

	// dan is untouched, and a dry run takes no token.
	dry := readAny(t)
	dry.DryRun = true
	_, err := env.Submit(ctx, "alice", dry)
	require.NoError(t, err, "a dry run stores nothing and is not counted")
	for range 3 {
		env.submit(t, "dan", readAny(t))
	}

	// Six an hour: one more every ten minutes.
	env.clock.Advance(10 * time.Minute)
	env.submit(t, "alice", readAny(t))
	_, err = env.Submit(ctx, "alice", readAny(t))
	require.ErrorIs(t, err, ErrRateLimited)
}

// TestLiveCertificateLimit: a person may make a request only while they
// hold fewer than max_live_certificates live certificates; one released or
// expired makes room.
func TestLiveCertificateLimit(t *testing.T) {
	env := newTestService(t, limitedPolicy(t, "limits: {max_live_certificates: 2}"))
	first := env.submit(t, "alice", readAny(t))
	env.submit(t, "alice", readAny(t))
	for _, in := range []SubmitInput{readAny(t), {Repo: "x", Ref: "*", Access: "write", PublicKey: freshKey(t)}} {
		_, err := env.Submit(ctx, "alice", in)
		require.ErrorIs(t, err, ErrRateLimited)
		assert.Contains(t, err.Error(), "alice has 2 live certificates")
	}
	env.submit(t, "dan", readAny(t))

	_, err := env.Release(ctx, "alice", first.ID)
	require.NoError(t, err)
	pending := env.submit(t, "alice", SubmitInput{Repo: "x", Ref: "*", Access: "write", PublicKey: freshKey(t)})
	env.approve(t, "bob", pending.ID)
	_, err = env.Submit(ctx, "alice", readAny(t))
	require.ErrorIs(t, err, ErrRateLimited, "the approved one took the released one's place")

	env.clock.Advance(time.Hour + time.Minute) // every certificate has expired
	env.submit(t, "alice", readAny(t))
}

// TestCallsPerPerson: a person has at most max_calls_per_person calls in
// flight; ending one makes room, and others are not counted with them.
func TestCallsPerPerson(t *testing.T) {
	env := newTestService(t, limitedPolicy(t, "limits: {max_calls_per_person: 2}"))
	alice := env.as("alice")
	_, end1, err := env.BeginCall(alice)
	require.NoError(t, err)
	_, end2, err := env.BeginCall(alice)
	require.NoError(t, err)
	_, _, err = env.BeginCall(alice)
	require.ErrorIs(t, err, ErrRateLimited)
	assert.Contains(t, err.Error(), "2 calls in progress")

	_, endDan, err := env.BeginCall(env.as("dan"))
	require.NoError(t, err, "another person's calls are counted apart")
	endDan()

	end1()
	end1() // ending twice frees one place, not two
	got, end3, err := env.BeginCall(alice)
	require.NoError(t, err)
	assert.Equal(t, []string{"dev"}, got.Groups)
	_, _, err = env.BeginCall(alice)
	require.ErrorIs(t, err, ErrRateLimited)
	end2()
	end3()
}

// TestSubmitRefusesKeysAndRefs: the daemon's own host key is never
// certified, and a ref that would not print as itself is refused.
func TestSubmitRefusesKeysAndRefs(t *testing.T) {
	host := newSigner(t)
	env := newTestService(t, limitedPolicy(t, ""))
	env.opts.HostKey = host.PublicKey()
	env.reopen(t)

	in := readAny(t)
	in.PublicKey = host.PublicKey()
	_, err := env.Submit(ctx, "alice", in)
	require.ErrorIs(t, err, ErrBadRequest)
	assert.Contains(t, err.Error(), "host key")

	for _, ref := range []string{
		"refs/heads/\u202egnp.exe",    // right-to-left override
		"refs/heads/a\u2066b",         // left-to-right isolate
		"refs/heads/zero\u200bwidth",  // zero-width space
		"refs/heads/c1\u0085control",  // NEL, a C1 control
		"refs/heads/soft\u00adhyphen", // soft hyphen, invisible
	} {
		in := readAny(t)
		in.Ref = ref
		_, err := env.Submit(ctx, "alice", in)
		require.ErrorIs(t, err, ErrBadRequest, "%q", ref)
		assert.Contains(t, err.Error(), "does not print as itself", "%q", ref)
	}
	in = readAny(t)
	in.Ref = "refs/heads/café"
	env.submit(t, "alice", in)
	assert.Len(t, env.listAny(ListFilter{}), 1, "only the printable ref was stored")
}

func TestLimitsConfig(t *testing.T) {
	p := limitedPolicy(t, "")
	assert.Equal(t, Limits{}.withDefaults(), p.Limits())
	assert.Equal(t, DefaultRequestBurst, p.Limits().RequestBurst)
	assert.Equal(t, []string{"auditors"}, p.AuditorGroups(), "the default, as before it was configurable")

	p = limitedPolicy(t, "auditor_groups: []\nlimits: {request_burst: 7, idle_timeout: 90s}")
	assert.Equal(t, 7, p.Limits().RequestBurst)
	assert.Equal(t, Duration(90*time.Second), p.Limits().IdleTimeout)
	assert.Equal(t, DefaultMaxCallsPerPerson, p.Limits().MaxCallsPerPerson)
	assert.Empty(t, p.AuditorGroups())

	for _, tt := range []struct{ yml, want string }{
		{"limits: {max_connections: -1}", "limits: max_connections: -1 is negative"},
		{"limits: {idle_timeout: -1s}", "limits: idle_timeout: -1s is negative"},
		{"limits: {bogus: 1}", "field bogus not found"},
		{"auditor_groups: [a b]", `auditor_groups: "a b"`},
		{"auditor_groups: [x, x]", `auditor_groups: "x" listed twice`},
		{"metrics_listen: nowhere", "metrics_listen"},
	} {
		t.Run(tt.yml, func(t *testing.T) {
			_, err := parsePolicyYAML(withKeys(t, tt.yml+"\n"+minimalPolicy))
			require.ErrorIs(t, err, ErrInvalidConfig)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
}

// TestListPages: List returns at most MaxListPage requests at a time, and
// the pages, followed by their cursor, hold each request once.
func TestListPages(t *testing.T) {
	env := newTestService(t, mustPolicy(t, withoutLimits(limitedPolicy(t, "").Config())))
	const n = MaxListPage + 5
	var want []string
	for range n {
		want = append(want, env.submit(t, "alice", readAny(t)).ID)
	}
	for i, j := 0, len(want)-1; i < j; i, j = i+1, j-1 {
		want[i], want[j] = want[j], want[i]
	}
	for _, limit := range []int{0, 7, MaxListPage + 100} {
		t.Run(fmt.Sprint("limit ", limit), func(t *testing.T) {
			var got []string
			f := ListFilter{Limit: limit}
			for pages := 0; ; pages++ {
				require.Less(t, pages, n, "the pages do not end")
				page, err := env.Service.List(env.as("alice"), f)
				require.NoError(t, err)
				assert.LessOrEqual(t, len(page.Requests), MaxListPage)
				if limit > 0 {
					assert.LessOrEqual(t, len(page.Requests), limit)
				}
				got = append(got, ids(page.Requests)...)
				if page.Next == "" {
					break
				}
				f.After = page.Next
			}
			assert.Equal(t, strings.Join(want, " "), strings.Join(got, " "))
		})
	}
	page, err := env.Service.List(env.as("dan"), ListFilter{})
	require.NoError(t, err)
	assert.Empty(t, page.Requests, "dan sees none of alice's")
	assert.Empty(t, page.Next)
}

// mustPolicy is NewPolicy, which must succeed.
func mustPolicy(tb testing.TB, c *Config) *Policy {
	tb.Helper()
	p, err := NewPolicy(c)
	require.NoError(tb, err)
	return p
}
