package main

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/jitssh/jitssh/approvals"
	"github.com/jitssh/jitssh/principals"
	"github.com/jitssh/jitssh/sshd"
)

func TestOnDenyFromArgs(t *testing.T) {
	tests := []struct {
		name    string
		env     string
		args    []string
		want    onDeny
		rest    []string
		wantErr string
	}{
		{name: "hint by default", args: []string{"h", "cmd"}, want: onDenyHint, rest: []string{"h", "cmd"}},
		{name: "from the environment", env: "auto", args: []string{"h"}, want: onDenyAuto, rest: []string{"h"}},
		{name: "the flag wins", env: "auto", args: []string{"--on-deny", "off", "-p", "22", "h"}, want: onDenyOff, rest: []string{"-p", "22", "h"}},
		{name: "flag with =", args: []string{"--on-deny=auto", "h"}, want: onDenyAuto, rest: []string{"h"}},
		{name: "only in front: after ssh options it is ssh's", args: []string{"-p", "22", "--on-deny=auto"}, want: onDenyHint, rest: []string{"-p", "22", "--on-deny=auto"}},
		{name: "a bad mode", env: "always", args: []string{"h"}, wantErr: `"always" (or JITSSH_ON_DENY): want off, hint or auto`},
		{name: "a flag without its mode", args: []string{"--on-deny"}, wantErr: "needs a mode"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("JITSSH_ON_DENY", tt.env)
			got, rest, err := onDenyFromArgs(tt.args)
			if tt.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
			assert.Equal(t, tt.rest, rest)
		})
	}
}

func TestPushNeed(t *testing.T) {
	op := func(ref string, o sshd.RefOp) refOpOf { return refOpOf{cmd: refCmd{ref: ref}, op: o} }
	tests := []struct {
		name  string
		ops   []refOpOf
		grant string
		what  string
	}{
		{"a new branch", []refOpOf{op("refs/heads/feature/x", sshd.RefCreate)},
			"git:write:demo/app:refs/heads/feature/x", "git push: create refs/heads/feature/x"},
		{"a fast-forward", []refOpOf{op("refs/heads/main", sshd.RefFastForward)},
			"git:write:demo/app:refs/heads/main", "git push: update refs/heads/main"},
		{"a forced update", []refOpOf{op("refs/heads/main", sshd.RefRewrite)},
			"git:force:demo/app:refs/heads/main", "git push: force-update refs/heads/main"},
		{"a deletion", []refOpOf{op("refs/heads/old", sshd.RefDelete)},
			"git:force:demo/app:refs/heads/old", "git push: delete refs/heads/old"},
		{"two branches in one directory: its pattern, the most access", []refOpOf{op("refs/heads/feature/a", sshd.RefCreate), op("refs/heads/feature/b", sshd.RefRewrite)},
			"git:force:demo/app:refs/heads/feature/*", "git push: create refs/heads/feature/a, force-update refs/heads/feature/b"},
		{"deeper directories share the shallower", []refOpOf{op("refs/heads/feature/a/x", sshd.RefCreate), op("refs/heads/feature/b", sshd.RefCreate)},
			"git:write:demo/app:refs/heads/feature/*", "git push: create refs/heads/feature/a/x, create refs/heads/feature/b"},
		{"a branch and a tag", []refOpOf{op("refs/heads/main", sshd.RefFastForward), op("refs/tags/v1", sshd.RefCreate)},
			"git:write:demo/app:refs/*", "git push: update refs/heads/main, create refs/tags/v1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := pushNeed("demo/app", tt.ops)
			assert.Equal(t, tt.grant, n.grant())
			assert.Equal(t, tt.what, n.what)
			// The grant asked for covers every update.
			g, err := principals.Parse(n.grant())
			require.NoError(t, err)
			for _, o := range tt.ops {
				assert.True(t, sshd.DecideRef(principals.Set{g}, "demo/app", o.cmd.ref, o.op).Allowed, o.cmd.ref)
			}
		})
	}
}

// TestGrantNeedCommand: the printed line, run by a shell, gives jitssh
// request exactly the words meant, whatever the reason holds.
func TestGrantNeedCommand(t *testing.T) {
	needTool(t, "sh")
	tests := []struct {
		name   string
		need   grantNeed
		reason string
		ttl    string
		want   []string
	}{
		{"a branch", grantNeed{repo: "demo/app", ref: "refs/heads/feature/x", access: principals.Write, what: "git push: create refs/heads/feature/x"}, "", "",
			[]string{"request", "--repo", "demo/app", "--branch", "feature/x", "--access", "write", "--reason", "git push: create refs/heads/feature/x"}},
		{"a pattern", grantNeed{repo: "demo/app", ref: "refs/heads/feature/*", access: principals.Force, what: "w"}, "", "",
			[]string{"request", "--repo", "demo/app", "--ref", "refs/heads/feature/*", "--access", "force", "--reason", "w"}},
		{"a whole repository, a reason with quotes, a TTL", grantNeed{repo: "demo/app", ref: "*", access: principals.Read, what: "git fetch"}, `it's "urgent"; $(id)`, "45m",
			[]string{"request", "--repo", "demo/app", "--ref", "*", "--access", "read", "--ttl", "45m", "--reason", `it's "urgent"; $(id)`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("JITSSH_REASON", tt.reason)
			t.Setenv("JITSSH_TTL", tt.ttl)
			line := tt.need.command()
			require.True(t, strings.HasPrefix(line, "jitssh request "), line)
			// The shell runs a jitssh that prints its arguments.
			out, err := exec.Command("sh", "-c", "jitssh() { printf '%s\\n' \"$@\"; }; "+line).Output()
			require.NoError(t, err, line)
			assert.Equal(t, tt.want, strings.Split(strings.TrimSuffix(string(out), "\n"), "\n"))
		})
	}
}

// TestRefReason: a push whose request ended without a grant fails every
// ref with how it ended.
func TestRefReason(t *testing.T) {
	tests := []struct {
		name string
		r    approvals.Request
		want string
	}{
		{"denied", approvals.Request{ID: "req-1", State: approvals.StateDenied, Decision: &approvals.Decision{By: "carol", Reason: "not now"}},
			"request req-1 denied by carol: not now"},
		{"expired", approvals.Request{ID: "req-2", State: approvals.StateExpired}, "request req-2 expired"},
		{"cancelled", approvals.Request{ID: "req-3", State: approvals.StateCancelled}, "request req-3 cancelled"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := endedWithoutGrant(&tt.r)
			require.Error(t, err)
			assert.Equal(t, "jitssh: "+tt.want, err.Error())
			assert.Equal(t, tt.want, refReason(err))
		})
	}
	assert.NoError(t, endedWithoutGrant(&approvals.Request{State: approvals.StateApproved}))
	n := grantNeed{repo: "demo/app", ref: "refs/heads/release/1", access: principals.Write}
	noRule := &errNotObtained{msg: "long", short: shortRefusal(n, &apiError{Code: "no_rule", Message: "no rule"})}
	assert.Equal(t, "no rule of the policy allows git:write:demo/app:refs/heads/release/1", refReason(noRule))
}

func TestParseGitRemoteURL(t *testing.T) {
	tests := []struct {
		in   string
		host gitHost
		repo string
		ok   bool
	}{
		{"ssh://git@127.0.0.1:2222/demo/app.git", gitHost{"127.0.0.1", 2222}, "demo/app", true},
		{"ssh://git.example.com/demo/app", gitHost{"git.example.com", 22}, "demo/app", true},
		{"git+ssh://[::1]:22/demo/app.git", gitHost{"::1", 22}, "demo/app", true},
		{"git@git.example.com:demo/app.git", gitHost{"git.example.com", 22}, "demo/app", true},
		{"git.example.com:/demo/app", gitHost{"git.example.com", 22}, "demo/app", true},
		{"https://git.example.com/demo/app.git", gitHost{}, "", false},
		{"file:///srv/demo/app.git", gitHost{}, "", false},
		{"/srv/demo/app.git", gitHost{}, "", false},
		{"./a:b", gitHost{}, "", false},
		{"ssh://h:99999/demo/app", gitHost{}, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			u, ok := parseGitRemoteURL(tt.in)
			require.Equal(t, tt.ok, ok)
			if !ok {
				return
			}
			assert.Equal(t, tt.host, u.host)
			repo, err := u.repo()
			require.NoError(t, err)
			assert.Equal(t, tt.repo, repo)
		})
	}
}

func TestParseSSHCommandLine(t *testing.T) {
	tests := []struct {
		name string
		args []string
		host gitHost
	}{
		{"git's own", []string{"-o", "SendEnv=GIT_PROTOCOL", "-p", "2222", "git@127.0.0.1", "git-receive-pack '/demo/app.git'"}, gitHost{"127.0.0.1", 2222}},
		{"no port", []string{"git@h", "git-upload-pack 'demo/app'"}, gitHost{"h", 22}},
		{"an ssh:// destination", []string{"ssh://git@h:2200", "git-upload-pack 'demo/app'"}, gitHost{"h", 2200}},
		{"-p wins over the URL", []string{"-p", "2300", "ssh://git@h:2200", "x"}, gitHost{"h", 2300}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			target, ok := parseSSHCommandLine(tt.args)
			require.True(t, ok)
			assert.Equal(t, tt.host, target.host)
		})
	}
}

func TestRemoteName(t *testing.T) {
	tests := []struct {
		spec, local, want string
		ok                bool
	}{
		{"+refs/heads/*:refs/remotes/origin/*", "refs/remotes/origin/main", "refs/heads/main", true},
		{"+refs/heads/*:refs/remotes/origin/*", "refs/remotes/origin/feature/x", "refs/heads/feature/x", true},
		{"+refs/heads/*:refs/remotes/origin/*", "refs/remotes/upstream/main", "", false},
		{"refs/heads/main:refs/remotes/origin/main", "refs/remotes/origin/main", "refs/heads/main", true},
		{"refs/heads/main:refs/remotes/origin/main", "refs/remotes/origin/other", "", false},
		{"+refs/heads/*:refs/remotes/o/*-mirror", "refs/remotes/o/x-mirror", "refs/heads/x", true},
		{"^refs/heads/secret", "refs/heads/secret", "", false},
		{"refs/heads/*:refs/remotes/o/main", "refs/remotes/o/main", "", false},
	}
	for _, tt := range tests {
		got, ok := remoteName(tt.spec, tt.local)
		assert.Equal(t, tt.ok, ok, "%s %s", tt.spec, tt.local)
		if ok {
			assert.Equal(t, tt.want, got, "%s %s", tt.spec, tt.local)
		}
	}
}

// TestRefOps decides each update as the server would, from the local
// repository's history.
func TestRefOps(t *testing.T) {
	needTool(t, "git")
	dir := t.TempDir()
	gitIn(t, dir, "init", "-q", "-b", "main")
	gitIn(t, dir, "commit", "-q", "--allow-empty", "-m", "one")
	one := gitIn(t, dir, "rev-parse", "HEAD")
	gitIn(t, dir, "commit", "-q", "--allow-empty", "-m", "two")
	two := gitIn(t, dir, "rev-parse", "HEAD")
	gitIn(t, dir, "checkout", "-q", "-b", "side", one)
	gitIn(t, dir, "commit", "-q", "--allow-empty", "-m", "side")
	side := gitIn(t, dir, "rev-parse", "HEAD")
	missing := strings.Repeat("ab", 20)

	s := &gitSSHSession{local: localRepo{dir: dir}}
	tests := []struct {
		name   string
		cmd    refCmd
		hidden map[string]string
		want   sshd.RefOp
	}{
		{"create", refCmd{oidZ, two, "refs/heads/new"}, nil, sshd.RefCreate},
		{"fast-forward", refCmd{one, two, "refs/heads/main"}, nil, sshd.RefFastForward},
		{"rewrite", refCmd{two, side, "refs/heads/main"}, nil, sshd.RefRewrite},
		{"an old object this repository lacks is no fast-forward", refCmd{missing, two, "refs/heads/main"}, nil, sshd.RefRewrite},
		{"delete", refCmd{two, oidZ, "refs/heads/main"}, nil, sshd.RefDelete},
		{"a hidden ref it fast-forwards", refCmd{oidZ, two, "refs/heads/main"}, map[string]string{"refs/heads/main": one}, sshd.RefFastForward},
		{"a hidden ref it does not", refCmd{oidZ, side, "refs/heads/main"}, map[string]string{"refs/heads/main": two}, sshd.RefCreate},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ops := s.refOps([]refCmd{tt.cmd}, tt.hidden)
			require.Len(t, ops, 1)
			assert.Equal(t, tt.want, ops[0].op)
		})
	}
}

// TestLastFetched reads what a checkout last fetched from the repository
// at a host, as the server names the refs.
func TestLastFetched(t *testing.T) {
	needTool(t, "git")
	dir := t.TempDir()
	gitIn(t, dir, "init", "-q", "-b", "main")
	gitIn(t, dir, "commit", "-q", "--allow-empty", "-m", "one")
	head := gitIn(t, dir, "rev-parse", "HEAD")
	gitIn(t, dir, "remote", "add", "origin", "ssh://git@127.0.0.1:2222/demo/app.git")
	gitIn(t, dir, "remote", "add", "other", "ssh://git@127.0.0.1:2222/demo/other.git")
	gitIn(t, dir, "update-ref", "refs/remotes/origin/main", head)
	gitIn(t, dir, "update-ref", "refs/remotes/origin/feature/x", head)
	gitIn(t, dir, "update-ref", "refs/remotes/other/main", head)
	gitIn(t, dir, "symbolic-ref", "refs/remotes/origin/HEAD", "refs/remotes/origin/main")

	l := localRepo{dir: dir}
	assert.Equal(t, map[string]string{"refs/heads/main": head, "refs/heads/feature/x": head},
		l.lastFetched(gitHost{"127.0.0.1", 2222}, "demo/app"))
	assert.Empty(t, l.lastFetched(gitHost{"127.0.0.1", 2200}, "demo/app"), "another port is another server")
	assert.Empty(t, l.lastFetched(gitHost{"127.0.0.1", 2222}, "demo/nope"))
}
