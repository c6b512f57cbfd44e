package approvals

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"

	"github.com/jitssh/jitssh/audit"
)

// actorOf is the actor a front-end would get for person's first key in p;
// someone p does not list gets an actor with their name and no key.
func actorOf(p *Policy, person string) Actor {
	m, ok := p.people[person]
	if !ok {
		return Actor{Person: person}
	}
	return Actor{Person: person, Key: m.keys[0]}
}

// The lifecycle tests name people. These methods of testEnv call the
// Service as the person's first key, the way a front-end calls it; the
// reads see every request. The tests of the actor model below call the
// Service's own methods.

func (env *testEnv) as(person string) Actor { return actorOf(env.Policy(), person) }

func (env *testEnv) Submit(ctx context.Context, person string, in SubmitInput) (*Request, error) {
	return env.Service.Submit(ctx, env.as(person), in)
}

func (env *testEnv) Approve(ctx context.Context, person, id string, in DecisionInput) (*Request, error) {
	return env.Service.Approve(ctx, env.as(person), id, in)
}

func (env *testEnv) Deny(ctx context.Context, person, id string, in DecisionInput) (*Request, error) {
	return env.Service.Deny(ctx, env.as(person), id, in)
}

func (env *testEnv) Cancel(ctx context.Context, person, id string) (*Request, error) {
	return env.Service.Cancel(ctx, env.as(person), id)
}

func (env *testEnv) Revoke(ctx context.Context, person, id string, serial uint64, reason string) (*Request, error) {
	return env.Service.Revoke(ctx, env.as(person), id, serial, reason)
}

func (env *testEnv) Release(ctx context.Context, person, id string) (*Request, error) {
	return env.Service.Release(ctx, env.as(person), id)
}

func (env *testEnv) Get(id string) (*Request, error) { return env.Service.getAny(id) }

func (env *testEnv) List(f ListFilter) []*Request { return env.Service.listAny(f) }

func (env *testEnv) Wait(ctx context.Context, id string, after uint64) (*Request, error) {
	return env.Service.wait(ctx, id, after, func(*Request) error { return nil })
}

func (env *testEnv) Events(ctx context.Context) <-chan *Request { return env.AllEvents(ctx) }

// getAny and listAny read without the visibility rule, for tests that
// check the state itself; like every read, they leave out a certificate
// whose issue entry is not durable yet.
func (s *Service) getAny(id string) (*Request, error) {
	r, err := s.lookup(id)
	if err != nil {
		return nil, err
	}
	r, _ = s.visible(r)
	return r.clone(), nil
}

func (s *Service) listAny(f ListFilter) []*Request {
	reqs, err := s.list(f, max(f.Limit, 0), nil)
	if err != nil {
		panic(err)
	}
	return reqs
}

// otherID returns a well-formed request ID nobody holds, next to id.
func otherID(id string) string {
	last := "0"
	if strings.HasSuffix(id, last) {
		last = "1"
	}
	return id[:len(id)-1] + last
}

// newSigner returns a new ed25519 key that can sign.
func newSigner(tb testing.TB) ssh.Signer {
	tb.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(tb, err)
	s, err := ssh.NewSignerFromKey(priv)
	require.NoError(tb, err)
	return s
}

// keyText is key in authorized_keys form, without the newline.
func keyText(key ssh.PublicKey) string {
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(key)))
}

// withoutLimits returns c with per-person limits no test reaches, for
// tests that make many requests as one person.
func withoutLimits(c *Config) *Config {
	c.Limits.RequestsPerHour = 1 << 30
	c.Limits.RequestBurst = 1 << 30
	c.Limits.MaxLiveCertificates = 1 << 30
	c.Limits.MaxCallsPerPerson = 1 << 30
	return c
}

func TestAuthenticate(t *testing.T) {
	env := newTestService(t, nil)
	alice := env.as("alice")
	got, err := env.Authenticate(alice.Key)
	require.NoError(t, err)
	assert.Equal(t, "alice", got.Person)
	assert.Equal(t, []string{"dev"}, got.Groups)

	stranger := freshKey(t)
	_, err = env.Authenticate(stranger)
	require.ErrorIs(t, err, ErrForbidden)
	assert.ErrorContains(t, err, "the key "+ssh.FingerprintSHA256(stranger)+" is not listed for anyone", "the refusal names the key to hand to an admin")
	_, err = env.Authenticate(nil)
	require.ErrorIs(t, err, ErrForbidden)
}

// TestVisibility: who sees a request is one rule for every read and every
// write, and a request someone may not see reads, word for word, as an
// unknown one.
func TestVisibility(t *testing.T) {
	yml := `auditor_groups: [compliance]
people:
  - {name: alice, groups: [dev], keys: ["KEY(alice)"]}
  - {name: dan, groups: [dev], keys: ["KEY(dan)"]}
  - {name: bob, groups: [approvers], keys: ["KEY(bob)"]}
  - {name: ann, groups: [compliance], keys: ["KEY(ann)"]}
  - {name: old, groups: [auditors], keys: ["KEY(old)"]}
rules:
  - {name: w, groups: [dev], repos: ["*"], refs: ["*"], access: [write], approvals: [{group: approvers, count: 1}]}
  - {name: r, groups: [dev], repos: ["*"], refs: ["*"], access: [read], auto_approve: true}
`
	env := newTestService(t, policyFrom(t, yml))
	r := env.submit(t, "alice", SubmitInput{Repo: "x", Ref: "*", Access: "write", PublicKey: freshKey(t)})
	issued := env.submit(t, "alice", SubmitInput{Repo: "x", Ref: "*", Access: "read", PublicKey: freshKey(t)})
	unknown := otherID(r.ID)

	for _, tt := range []struct {
		person string
		sees   bool
	}{
		{"alice", true}, // her own
		{"bob", true},   // an approver
		{"ann", true},   // an auditor group from the config
		{"dan", false},  // another developer
		{"old", false},  // "auditors" is no longer an auditor group here
	} {
		t.Run(tt.person, func(t *testing.T) {
			who := env.as(tt.person)
			got, err := env.Service.Get(who, r.ID)
			page, lerr := env.Service.List(who, ListFilter{})
			require.NoError(t, lerr)
			if tt.sees {
				require.NoError(t, err)
				assert.Equal(t, r.ID, got.ID)
				assert.Contains(t, ids(page.Requests), r.ID)
				return
			}
			_, errNone := env.Service.Get(who, unknown)
			require.ErrorIs(t, err, ErrNotFound)
			assert.Equal(t, strings.ReplaceAll(errNone.Error(), unknown, "ID"), strings.ReplaceAll(err.Error(), r.ID, "ID"))
			assert.NotContains(t, ids(page.Requests), r.ID)

			wctx, cancel := context.WithTimeout(ctx, time.Minute)
			defer cancel()
			_, err = env.Service.Wait(wctx, who, r.ID, 0)
			require.ErrorIs(t, err, ErrNotFound)

			// Every write refuses it before anything else, as unknown.
			for name, call := range map[string]func(id string) error{
				"approve": func(id string) error {
					_, err := env.Service.Approve(ctx, who, id, DecisionInput{Reason: "x"})
					return err
				},
				"deny": func(id string) error {
					_, err := env.Service.Deny(ctx, who, id, DecisionInput{Reason: "x"})
					return err
				},
				"cancel": func(id string) error { _, err := env.Service.Cancel(ctx, who, id); return err },
				"release": func(id string) error {
					_, err := env.Service.Release(ctx, who, id)
					return err
				},
				"revoke": func(id string) error {
					_, err := env.Service.Revoke(ctx, who, id, 0, "x")
					return err
				},
			} {
				theirs, none := call(r.ID), call(unknown)
				require.ErrorIs(t, theirs, ErrNotFound, name)
				assert.Equal(t, strings.ReplaceAll(none.Error(), unknown, "ID"), strings.ReplaceAll(theirs.Error(), r.ID, "ID"), name)
			}
			_, theirs := env.Service.Revoke(ctx, who, "", issued.Serial, "x")
			_, none := env.Service.Revoke(ctx, who, "", issued.Serial+1000, "x")
			require.ErrorIs(t, theirs, ErrNotFound)
			assert.Equal(t, strings.ReplaceAll(none.Error(), strconv.FormatUint(issued.Serial+1000, 10), "N"),
				strings.ReplaceAll(theirs.Error(), strconv.FormatUint(issued.Serial, 10), "N"))
		})
	}
	got, err := env.Get(r.ID)
	require.NoError(t, err)
	assert.Equal(t, StatePending, got.State, "no refused call changed the request")
}

// TestEventsFollowVisibility: a watch sees only the changes its actor may
// see, and ends when a reload takes the actor's key away.
func TestEventsFollowVisibility(t *testing.T) {
	yml := `people:
  - {name: alice, groups: [dev], keys: ["KEY(alice)"]}
  - {name: dan, groups: [dev], keys: ["KEY(dan)"]}
  - {name: bob, groups: [approvers], keys: ["KEY(bob)"]}
  - {name: carol, groups: [approvers], keys: ["KEY(carol)"]}
rules:
  - {name: w, groups: [dev], repos: ["*"], refs: ["*"], access: [write], approvals: [{group: approvers, count: 1}]}
`
	env := newTestService(t, policyFrom(t, yml))
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	danSees := env.Service.Events(wctx, env.as("dan"))
	bobSees := env.Service.Events(wctx, env.as("bob"))

	r := env.submit(t, "alice", SubmitInput{Repo: "x", Ref: "*", Access: "write", PublicKey: freshKey(t)})
	mine := env.submit(t, "dan", SubmitInput{Repo: "x", Ref: "*", Access: "write", PublicKey: freshKey(t)})
	next := func(ch <-chan *Request) *Request {
		t.Helper()
		select {
		case got, ok := <-ch:
			require.True(t, ok, "the watch ended")
			return got
		case <-time.After(10 * time.Second):
			t.Fatal("no event within 10s")
			return nil
		}
	}
	assert.Equal(t, r.ID, next(bobSees).ID)
	assert.Equal(t, mine.ID, next(bobSees).ID)
	assert.Equal(t, mine.ID, next(danSees).ID, "dan sees his own request, not alice's")

	// Offboard bob: his watch ends, whatever comes after.
	c := env.Policy().Config()
	var kept []Person
	for _, p := range c.People {
		if p.Name != "bob" {
			kept = append(kept, p)
		}
	}
	c.People = kept
	p, err := NewPolicy(c)
	require.NoError(t, err)
	require.NoError(t, env.SetPolicy(p))
	env.submit(t, "alice", SubmitInput{Repo: "x", Ref: "*", Access: "write", PublicKey: freshKey(t)})
	for {
		select {
		case got, ok := <-bobSees:
			if !ok {
				return
			}
			require.NotEqual(t, "alice", got.Requester, "an offboarded approver still sees new requests")
		case <-time.After(10 * time.Second):
			t.Fatal("the offboarded approver's watch did not end")
		}
	}
}

// TestRemovedKeyStopsWorking: an actor resolved before a reload that took
// their key away can do nothing after it, though the person remains.
func TestRemovedKeyStopsWorking(t *testing.T) {
	yml := `people:
  - {name: alice, groups: [dev], keys: ["KEY(alice)"]}
  - {name: bob, groups: [approvers], keys: ["KEY(bob)", "KEY(bob2)"]}
  - {name: carol, groups: [approvers], keys: ["KEY(carol)"]}
rules:
  - {name: w, groups: [dev], repos: ["*"], refs: ["*"], access: [write], approvals: [{group: approvers, count: 1}]}
`
	env := newTestService(t, policyFrom(t, yml))
	bob, err := env.Authenticate(env.as("bob").Key)
	require.NoError(t, err)
	r := env.submit(t, "alice", SubmitInput{Repo: "x", Ref: "*", Access: "write", PublicKey: freshKey(t)})

	require.NoError(t, env.SetPolicy(policyFrom(t, strings.Replace(yml, `"KEY(bob)", `, "", 1))))
	_, err = env.Service.Approve(ctx, bob, r.ID, DecisionInput{Reason: "ok"})
	require.ErrorIs(t, err, ErrForbidden)
	assert.Contains(t, err.Error(), "no longer one of bob's keys")
	_, err = env.Service.Get(bob, r.ID)
	require.ErrorIs(t, err, ErrForbidden)
	_, _, err = env.BeginCall(bob)
	require.ErrorIs(t, err, ErrForbidden)
	got, err := env.Get(r.ID)
	require.NoError(t, err)
	assert.Equal(t, StatePending, got.State)
	assert.Empty(t, got.Approvals)
}

// TestSignedCalls: the Service checks that what a front-end passes on is
// signed by the key that authenticated, for requests and decisions.
func TestSignedCalls(t *testing.T) {
	alice, bob := newSigner(t), newSigner(t)
	yml := `people:
  - {name: alice, groups: [dev], keys: ["` + keyText(alice.PublicKey()) + `"]}
  - {name: bob, groups: [approvers], keys: ["` + keyText(bob.PublicKey()) + `"]}
rules:
  - {name: w, groups: [dev], repos: ["*"], refs: ["*"], access: [write], approvals: [{group: approvers, count: 1}]}
`
	env := newTestService(t, policyFrom(t, yml))
	aliceA, err := env.Authenticate(alice.PublicKey())
	require.NoError(t, err)
	bobA, err := env.Authenticate(bob.PublicKey())
	require.NoError(t, err)

	sr := SignedRequest{Repo: "x", Ref: "*", Access: "write", TTL: "30m", Reason: "fix", PublicKey: keyText(freshKey(t))}
	sign := func(s ssh.Signer, ns string, msg []byte) string {
		sig, err := audit.SignStatement(s, ns, msg)
		require.NoError(t, err)
		return sig
	}
	for _, tt := range []struct {
		name string
		sig  string
	}{
		{"unsigned", ""},
		{"signed by someone else", sign(bob, audit.NamespaceRequest, sr.Statement("alice").Message())},
		{"signed in another namespace", sign(alice, audit.NamespaceApprove, sr.Statement("alice").Message())},
		{"signed for other words", sign(alice, audit.NamespaceRequest, SignedRequest{Repo: "y"}.Statement("alice").Message())},
	} {
		bad := sr
		bad.Signature = tt.sig
		_, err := env.SubmitSigned(ctx, aliceA, bad)
		require.ErrorIs(t, err, ErrBadRequest, tt.name)
		assert.Contains(t, err.Error(), "signed with your own key", tt.name)
	}
	sr.Signature = sign(alice, audit.NamespaceRequest, sr.Statement("alice").Message())
	r, err := env.SubmitSigned(ctx, aliceA, sr)
	require.NoError(t, err)
	assert.Equal(t, string(sr.Statement("alice").Message()), r.Statement, "the exact message signed is stored")
	assert.Equal(t, Duration(30*time.Minute), r.TTL)

	sd := SignedDecision{Reason: "ok"}
	sd.Signature = sign(alice, audit.NamespaceApprove, sd.Statement(KindApprove, "bob", r).Message())
	_, err = env.ApproveSigned(ctx, bobA, r.ID, sd)
	require.ErrorIs(t, err, ErrBadRequest, "bob's approval signed by alice")
	sd.Signature = sign(bob, audit.NamespaceApprove, sd.Statement(KindApprove, "bob", r).Message())
	got, err := env.ApproveSigned(ctx, bobA, r.ID, sd)
	require.NoError(t, err)
	require.NotEmpty(t, got.Certificate)
	assert.Equal(t, string(sd.Statement(KindApprove, "bob", r).Message()), got.Approvals[0].Statement)
}
