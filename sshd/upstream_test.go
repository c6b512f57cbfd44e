package sshd

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"

	"github.com/jitssh/jitssh/ca"
	"github.com/jitssh/jitssh/principals"
)

// proxy is a native git-server whose repositories are a forge's.
type proxy struct {
	*native
	forge *forge
	fx    *fixture // the forge's repositories
	up    *Upstream
}

// startProxy runs a forge that knows the accounts people map to, and a
// proxy in front of it that maps people to them; mod changes the proxy's
// upstream options.
func startProxy(t *testing.T, profile ca.Profile, people map[string]string, mod func(*UpstreamOptions)) *proxy {
	t.Helper()
	return startProxySpec(t, proxySpec{profile: profile, people: people, mod: mod})
}

// proxySpec is a forge and the proxy in front of it.
type proxySpec struct {
	profile ca.Profile
	host    string            // the github profile's Enterprise Server name, for both
	people  map[string]string // the proxy's accounts
	service string            // the proxy's service account
	// forgeAccounts are the accounts the forge knows; nil means those of
	// people and the service account.
	forgeAccounts []string
	mod           func(*UpstreamOptions)
}

func startProxySpec(t *testing.T, spec proxySpec) *proxy {
	t.Helper()
	fx := newFixture(t)
	accounts := spec.forgeAccounts
	if accounts == nil {
		for _, a := range spec.people {
			accounts = append(accounts, a)
		}
		if spec.service != "" {
			accounts = append(accounts, spec.service)
		}
	}
	fg := startForge(t, fx.root, spec.profile, spec.host, accounts...)
	up := fg.upstream(t, spec.profile, spec.people, func(o *UpstreamOptions) {
		o.Host, o.ServiceAccount = spec.host, spec.service
		if spec.mod != nil {
			spec.mod(o)
		}
	})
	n := startNative(t, func(o *ServerOptions) {
		o.Repos, o.Git, o.Upstream = nil, nil, up
	})
	return &proxy{native: n, forge: fg, fx: fx, up: up}
}

// upstreamIdentity is a verified grant holder as the proxy sees one.
func upstreamIdentity(t testing.TB, keyID string, grants ...string) *Identity {
	t.Helper()
	set, errs := principals.ParseSet(grants)
	require.Empty(t, errs)
	return &Identity{Cert: &ssh.Certificate{ValidPrincipals: grants}, Grants: set, KeyID: keyID, Serial: 77, ValidBefore: time.Now().Add(time.Hour)}
}

func TestUpstreamPushInsideTheGrantArrives(t *testing.T) {
	t.Parallel()
	p := startProxy(t, ca.ProfileGitLab, map[string]string{"alice": "alice.gl"}, nil)
	alice := p.newUser("alice", time.Hour, "git:write:demo/app:refs/heads/feature/*", "git:read:demo/app:refs/heads/main")
	p.startAgent(alice)

	dir := t.TempDir()
	out, err := p.gitAs(alice, dir, "clone", "-q", p.url("demo/app"), "c")
	require.NoError(t, err, out)
	c := filepath.Join(dir, "c")
	assert.Equal(t, p.fx.tips["main"], git(t, c, "rev-parse", "HEAD"))

	// A new file beside unchanged ones: the pack names blobs it does not
	// carry, which the proxy checks against the tip it builds on.
	git(t, c, "checkout", "-q", "feature/a")
	writeFile(t, filepath.Join(c, "more.txt"), []byte("more\n"))
	git(t, c, "add", "more.txt")
	git(t, c, "commit", "-q", "-m", "more")
	git(t, c, "checkout", "-q", "-b", "feature/new")
	git(t, c, "commit", "-q", "--allow-empty", "-m", "new branch")
	out, err = p.gitAs(alice, c, "push", "origin", "feature/a", "feature/new")
	require.NoError(t, err, out)

	assert.Equal(t, git(t, c, "rev-parse", "feature/a"), git(t, p.fx.bare, "rev-parse", "refs/heads/feature/a"), "the fast-forward arrived")
	assert.Equal(t, git(t, c, "rev-parse", "feature/new"), git(t, p.fx.bare, "rev-parse", "refs/heads/feature/new"), "the new branch arrived")
	assert.Contains(t, p.forge.hookRuns(t), "refs/heads/feature/a")
	assert.Equal(t, "more\n", git(t, p.fx.bare, "show", "refs/heads/feature/a:more.txt")+"\n")

	// Every operation is on the proxy's record, the push with its updates.
	var updated []string
	for _, e := range p.events.all() {
		assert.Equal(t, alice.cert.Serial, e.Serial)
		for _, up := range e.Updates {
			if up.Result == "updated" {
				updated = append(updated, up.Ref)
			}
		}
	}
	assert.ElementsMatch(t, []string{"refs/heads/feature/a", "refs/heads/feature/new"}, updated)
}

func TestUpstreamPushOutsideTheGrantNeverReachesTheHost(t *testing.T) {
	t.Parallel()
	p := startProxy(t, ca.ProfileGitLab, map[string]string{"alice": "alice.gl"}, nil)
	alice := p.newUser("alice", time.Hour, "git:write:demo/app:refs/heads/feature/*", "git:read:demo/app:refs/heads/main")
	p.startAgent(alice)
	dir := t.TempDir()
	out, err := p.gitAs(alice, dir, "clone", "-q", p.url("demo/app"), "c")
	require.NoError(t, err, out)
	c := filepath.Join(dir, "c")
	git(t, c, "commit", "-q", "--allow-empty", "-m", "on main")
	git(t, c, "branch", "feature/side", "HEAD")
	git(t, c, "checkout", "-q", "-B", "feature/rewrite", "origin/feature/a")
	git(t, c, "commit", "-q", "--amend", "--allow-empty", "-m", "rewritten")

	refsBefore, objectsBefore := refsOf(t, p.fx.bare), objects(t, p.fx.bare)
	// Each push is refused whole, ref by ref, with the reason the client
	// reads; a ref is named as git shows it.
	tests := []struct {
		name    string
		args    []string
		rejects map[string]string // ref -> reason the client reads
	}{
		{"refs outside the grant", []string{"push", "origin", "main", "main:refs/tags/v1", "main:refs/heads/secret", ":feature/a"},
			map[string]string{
				"main":      "updating refs/heads/main needs write access on demo/app; your grant gives read",
				"v1":        "not in your grant: creating refs/tags/v1 needs write access on demo/app",
				"secret":    "not in your grant: creating refs/heads/secret needs write access on demo/app",
				"feature/a": "deleting refs/heads/feature/a needs force access on demo/app; your grant gives write",
			}},
		{"non-fast-forward with write", []string{"push", "--force", "origin", "feature/rewrite:feature/a"},
			map[string]string{"feature/a": "a non-fast-forward update of refs/heads/feature/a needs force access on demo/app; your grant gives write"}},
		{"atomic push with one refused ref", []string{"push", "--atomic", "origin", "main", "feature/side"},
			map[string]string{"main": "updating refs/heads/main needs write access", "feature/side": "atomic push refused because refs/heads/main was refused"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := p.gitAs(alice, c, tt.args...)
			require.Error(t, err, out)
			assert.Equal(t, len(tt.rejects), strings.Count(out, "! [remote rejected]"), out)
			for ref, reason := range tt.rejects {
				assert.Regexp(t, `(-> |\] )`+regexp.QuoteMeta(ref+" ("+reason), out)
			}
			assert.Empty(t, p.forge.hookRuns(t), "the host's receive hooks saw nothing")
			assert.Equal(t, refsBefore, refsOf(t, p.fx.bare), "no ref changed upstream")
			assert.Equal(t, objectsBefore, objects(t, p.fx.bare), "no object reached upstream")
		})
	}

	// A push of one allowed and one refused ref sends the allowed one and
	// none of the refused one's objects.
	mainTip := git(t, c, "rev-parse", "main")
	out, err = p.gitAs(alice, c, "push", "origin", "main", "feature/rewrite:refs/heads/feature/fresh")
	require.Error(t, err, out)
	assert.Contains(t, out, "main (updating refs/heads/main needs write access")
	assert.Equal(t, git(t, c, "rev-parse", "feature/rewrite"), git(t, p.fx.bare, "rev-parse", "refs/heads/feature/fresh"))
	_, err = gitErr(p.fx.bare, nil, "cat-file", "-e", mainTip)
	assert.Error(t, err, "the refused update's commit was sent upstream")

	// The refusals are on the proxy's record with jitssh's reasons.
	var refused []string
	for _, e := range p.events.all() {
		for _, up := range e.Updates {
			if up.Result == "refused" && e.Stage == "" {
				refused = append(refused, up.Ref+": "+up.Reason)
			}
		}
	}
	assert.Contains(t, refused, "refs/heads/secret: not in your grant: creating refs/heads/secret needs write access on demo/app")
	assert.Contains(t, refused, "refs/heads/main: updating refs/heads/main needs write access on demo/app; your grant gives read")
}

func TestUpstreamForcePushWithForceGrant(t *testing.T) {
	t.Parallel()
	p := startProxy(t, ca.ProfileGitLab, map[string]string{"alice": "alice.gl"}, nil)
	alice := p.newUser("alice", time.Hour, "git:force:demo/app:refs/heads/feature/*")
	p.startAgent(alice)
	dir := t.TempDir()
	out, err := p.gitAs(alice, dir, "clone", "-q", "-b", "feature/a", p.url("demo/app"), "c")
	require.NoError(t, err, out)
	c := filepath.Join(dir, "c")
	git(t, c, "commit", "-q", "--amend", "--allow-empty", "-m", "rewritten")
	out, err = p.gitAs(alice, c, "push", "--force", "origin", "feature/a")
	require.NoError(t, err, out)
	assert.Equal(t, git(t, c, "rev-parse", "HEAD"), git(t, p.fx.bare, "rev-parse", "refs/heads/feature/a"))
	out, err = p.gitAs(alice, c, "push", "origin", ":feature/a")
	require.NoError(t, err, out)
	_, err = gitErr(p.fx.bare, nil, "rev-parse", "--verify", "refs/heads/feature/a")
	assert.Error(t, err, "the deletion arrived")
}

func TestUpstreamNarrowReadSeesOnlyGrantedRefs(t *testing.T) {
	t.Parallel()
	p := startProxy(t, ca.ProfileGitLab, map[string]string{"alice": "alice.gl"}, nil)
	alice := p.newUser("alice", time.Hour, "git:read:demo/app:refs/heads/feature/*")
	p.startAgent(alice)
	for _, proto := range []string{"0", "1", "2"} {
		t.Run("protocol v"+proto, func(t *testing.T) {
			dir := t.TempDir()
			out, err := p.gitAs(alice, dir, "-c", "protocol.version="+proto, "ls-remote", p.url("demo/app"))
			require.NoError(t, err, out)
			assert.Equal(t, p.fx.tips["feature/a"]+"\trefs/heads/feature/a", out, "HEAD points to main, which is hidden")

			out, err = p.gitAs(alice, dir, "-c", "protocol.version="+proto, "clone", "-q", "--no-checkout", p.url("demo/app"), "c")
			require.NoError(t, err, out)
			c := filepath.Join(dir, "c")
			assert.Equal(t, p.fx.tips["feature/a"], git(t, c, "rev-parse", "origin/feature/a"))
			for _, want := range []string{p.fx.tips["secret"], p.fx.tips["main"], p.fx.secretBlob, "refs/heads/secret", "main"} {
				out, err := p.gitAs(alice, c, "-c", "protocol.version="+proto, "fetch", "-q", "origin", want)
				require.Error(t, err, "fetching %s should fail: %s", want, out)
			}
			for _, obj := range []string{p.fx.tips["secret"], p.fx.tips["main"], p.fx.secretBlob} {
				_, err := gitErr(c, nil, "cat-file", "-e", obj)
				require.Error(t, err, "object %s reached the client", obj)
			}
			out, err = p.gitAs(alice, c, "-c", "protocol.version="+proto, "fetch", "--shallow-exclude=secret", "origin", "feature/a")
			require.Error(t, err, out)
			assert.Contains(t, out, "--shallow-exclude")
		})
	}
	// A reader of every ref gets the host's answer as it is.
	bob := p.newUser("bob", time.Hour, "git:read:demo/app:*")
	p.startAgent(bob)
	require.NoError(t, p.up.SetAccounts(map[string]string{"alice": "alice.gl", "bob": "alice.gl"}, ""))
	out, err := p.gitAs(bob, t.TempDir(), "ls-remote", p.url("demo/app"))
	require.NoError(t, err, out)
	for _, ref := range []string{"HEAD", "refs/heads/main", "refs/heads/secret", "refs/heads/feature/a"} {
		assert.Contains(t, out, "\t"+ref)
	}
}

// TestUpstreamPushCannotLinkHiddenHistory is the reachability fence: a
// ref-scoped writer's pack may build only on what they may read.
func TestUpstreamPushCannotLinkHiddenHistory(t *testing.T) {
	t.Parallel()
	fx := newFixture(t)
	fg := startForge(t, fx.root, ca.ProfileGitLab, "", "alice.gl")
	u := fg.upstream(t, ca.ProfileGitLab, map[string]string{"alice": "alice.gl"}, nil)
	id := upstreamIdentity(t, "alice/req-1", "git:write:demo/app:refs/heads/feature/*")
	d := u.Decide(id, "git-receive-pack 'demo/app'")
	require.NoError(t, d.Err)

	emptyTree := gitObject("tree", nil)
	treeWithSecret := gitObject("tree", treeEntry("100644", "leak.txt", fx.secretBlob))
	readme := git(t, fx.work, "rev-parse", fx.tips["feature/a"]+":README")
	treeWithReadme := gitObject("tree", treeEntry("100644", "README", readme))
	commit := func(tree string, parents ...string) packObject {
		body := "tree " + tree + "\n"
		for _, p := range parents {
			body += "parent " + p + "\n"
		}
		return gitObject("commit", []byte(body+"author a <a@b> 1 +0000\ncommitter a <a@b> 1 +0000\n\nx\n"))
	}
	tests := []struct {
		name string
		objs []packObject
		tip  string // when not the last object
		ok   bool
	}{
		{name: "commit on hidden parent", objs: []packObject{emptyTree, commit(emptyTree.id, fx.tips["secret"])}},
		{name: "tree naming hidden blob", objs: []packObject{treeWithSecret, commit(treeWithSecret.id, fx.tips["feature/a"])}},
		{name: "branch at a hidden commit", objs: []packObject{}, tip: fx.tips["secret"]},
		{name: "tree naming a blob of a readable tip", objs: []packObject{treeWithReadme, commit(treeWithReadme.id, fx.tips["feature/a"])}, ok: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			objectsBefore := objects(t, fx.bare)
			tip := tt.tip
			if tip == "" {
				tip = tt.objs[len(tt.objs)-1].id
			}
			pack := buildPack(t, tt.objs)
			report, res, err := rawUpstreamPush(t, u, d, zeroOID+" "+tip+" refs/heads/feature/leak\x00report-status", pack)
			require.NoError(t, err, report)
			_, verr := gitErr(fx.bare, nil, "rev-parse", "--verify", "refs/heads/feature/leak")
			if tt.ok {
				assert.Contains(t, report, "ok refs/heads/feature/leak")
				require.NoError(t, verr)
				git(t, fx.bare, "update-ref", "-d", "refs/heads/feature/leak")
				return
			}
			assert.Contains(t, report, "ng refs/heads/feature/leak "+errOutsideGrant.Error())
			require.Error(t, verr, "the leaking ref was created; report: %s", report)
			assert.Equal(t, objectsBefore, objects(t, fx.bare), "nothing of the push reached the host")
			require.Len(t, res.Updates, 1)
			assert.Equal(t, "refused", res.Updates[0].Result)
		})
	}
}

// TestUpstreamHiddenRefsReadAsAbsent: a push to a ref the pusher may not
// read is refused in words taken from the update alone, so a ref the host
// has and one it has not read the same, whatever old value the pusher
// guesses.
func TestUpstreamHiddenRefsReadAsAbsent(t *testing.T) {
	t.Parallel()
	fx := newFixture(t)
	fg := startForge(t, fx.root, ca.ProfileGitLab, "", "alice.gl")
	u := fg.upstream(t, ca.ProfileGitLab, map[string]string{"alice": "alice.gl"}, nil)
	id := upstreamIdentity(t, "alice/req-1", "git:write:demo/app:refs/heads/feature/*")
	d := u.Decide(id, "git-receive-pack 'demo/app'")
	require.NoError(t, d.Err)
	empty := buildPack(t, []packObject{})
	newTip := fx.tips["feature/a"]
	for _, old := range []string{zeroOID, fx.tips["secret"]} {
		var reports []string
		for _, ref := range []string{"refs/heads/secret", "refs/heads/absent"} {
			report, res, err := rawUpstreamPush(t, u, d, old+" "+newTip+" "+ref+"\x00report-status", empty)
			require.NoError(t, err, report)
			require.Len(t, res.Updates, 1)
			assert.Equal(t, "refused", res.Updates[0].Result)
			reports = append(reports, strings.ReplaceAll(report, ref, "REF"))
		}
		assert.Equal(t, reports[0], reports[1], "old %s: the existing hidden ref and the absent one read the same", old)
		assert.Contains(t, reports[0], "ng REF not in your grant:")
	}
	assert.Empty(t, fg.hookRuns(t), "the host's receive hooks saw nothing")
	assert.Equal(t, fx.tips["secret"], git(t, fx.bare, "rev-parse", "refs/heads/secret"))
}

// TestUpstreamCertificateShapes reads the certificate the forge was shown,
// per profile, with ssh-keygen -L; the forge logs it into the account its
// host would (see opensshtest.Forge), so a certificate of the wrong shape
// fails the ls-remote.
func TestUpstreamCertificateShapes(t *testing.T) {
	t.Parallel()
	keygen := requireTool(t, "ssh-keygen")
	tests := []struct {
		name    string
		profile ca.Profile
		host    string
		people  map[string]string
		service string
		account string // the account the forge logs in
		keyID   string // as ssh-keygen -L prints it
		ext     string // the extension line ssh-keygen -L prints
	}{
		{"github", ca.ProfileGitHub, "", map[string]string{"alice": "alice-gh"}, "", "alice-gh", `"alice/req-1"`, "login@github.com UNKNOWN OPTION"},
		{"github enterprise server", ca.ProfileGitHub, "ghe.example.com", map[string]string{"alice": "alice-gh"}, "", "alice-gh", `"alice/req-1"`, "login@ghe.example.com UNKNOWN OPTION"},
		{"gitlab", ca.ProfileGitLab, "", map[string]string{"alice": "alice.smith"}, "", "alice.smith", `"alice.smith"`, "(none)"},
		{"gitea", ca.ProfileGitea, "", map[string]string{"alice": "alice-gitea"}, "", "alice-gitea", `"alice/req-1"`, "(none)"},
		{"github person's own account before the service account", ca.ProfileGitHub, "", map[string]string{"alice": "alice-gh"}, "jitssh-bot", "alice-gh", `"alice/req-1"`, "login@github.com UNKNOWN OPTION"},
		{"github service account", ca.ProfileGitHub, "", map[string]string{"bob": "bob-gh"}, "jitssh-bot", "jitssh-bot", `"alice/req-1"`, "login@github.com UNKNOWN OPTION"},
		{"gitlab service account", ca.ProfileGitLab, "", nil, "jitssh-bot", "jitssh-bot", `"jitssh-bot"`, "(none)"},
		{"gitea service account", ca.ProfileGitea, "", nil, "jitssh-bot", "jitssh-bot", `"alice/req-1"`, "(none)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := startProxySpec(t, proxySpec{profile: tt.profile, host: tt.host, people: tt.people, service: tt.service})
			alice := p.newUser("alice", time.Hour, "git:read:demo/app:*")
			p.startAgent(alice)
			out, err := p.gitAs(alice, t.TempDir(), "ls-remote", p.url("demo/app"))
			require.NoError(t, err, out)
			assert.Contains(t, out, "refs/heads/secret")
			assert.Equal(t, []string{tt.account + "\tgit-upload-pack 'demo/app.git'"}, p.forge.loginsSoFar(t))

			files := p.forge.presented(t)
			require.Len(t, files, 1)
			cert := presentedCert(t, files[0])
			assert.Equal(t, alice.cert.Serial, cert.Serial, "the grant's serial, for the host's log")
			assert.Equal(t, []string{tt.account}, cert.ValidPrincipals)
			life := time.Duration(cert.ValidBefore-cert.ValidAfter) * time.Second
			assert.Equal(t, time.Minute+ca.DefaultBackdate, life, "the upstream TTL, with the CA's backdating")

			certFile := filepath.Join(t.TempDir(), "up-cert.pub")
			require.NoError(t, os.WriteFile(certFile, ssh.MarshalAuthorizedKey(cert), 0o644))
			list, err := exec.Command(keygen, "-L", "-f", certFile).CombinedOutput()
			require.NoError(t, err, "%s", list)
			assert.Contains(t, string(list), "Key ID: "+tt.keyID)
			assert.Contains(t, string(list), "Principals: \n                "+tt.account+"\n")
			assert.Contains(t, string(list), "Critical Options: (none)")
			if tt.ext == "(none)" {
				assert.Contains(t, string(list), "Extensions: (none)")
			} else {
				assert.Contains(t, string(list), tt.ext)
				assert.Equal(t, map[string]string{ca.GitHubLoginExtension(tt.host): tt.account}, cert.Extensions)
				assert.NotContains(t, string(list), "permit-")
			}
			assert.Contains(t, string(list), "Signing CA: ED25519 "+ssh.FingerprintSHA256(p.forge.ca.PublicKey()))
		})
	}
}

func TestUpstreamCertificateNeverOutlivesTheGrant(t *testing.T) {
	t.Parallel()
	p := startProxy(t, ca.ProfileGitLab, map[string]string{"alice": "alice.gl"}, func(o *UpstreamOptions) { o.TTL = time.Hour })
	alice := p.newUser("alice", 90*time.Second, "git:read:demo/app:*")
	p.startAgent(alice)
	out, err := p.gitAs(alice, t.TempDir(), "ls-remote", p.url("demo/app"))
	require.NoError(t, err, out)
	files := p.forge.presented(t)
	require.Len(t, files, 1)
	cert := presentedCert(t, files[0])
	assert.LessOrEqual(t, cert.ValidBefore, alice.cert.ValidBefore, "the upstream certificate ends with the grant")
}

// TestUpstreamRefusals: when the Git host cannot be used, or the person
// has no account there, every operation fails with a line that says so,
// and the host's Git sees nothing: no login, no receive hook.
func TestUpstreamRefusals(t *testing.T) {
	t.Parallel()
	const unreachable = "jitssh: the Git host is unreachable or refused jitssh; nothing was sent, try again later"
	tests := []struct {
		name          string
		mod           func(t *testing.T, o *UpstreamOptions)
		people        map[string]string
		forgeAccounts []string
		message       string
	}{
		{
			name: "wrong pinned host key",
			mod: func(t *testing.T, o *UpstreamOptions) {
				other := signCert(t, newCA(t), certOpts{}).Key
				o.HostKeys = []ssh.PublicKey{other}
			},
			message: "jitssh: the Git host presented a key that is not pinned here; nothing was sent to it",
		},
		{
			name: "unreachable host",
			mod: func(t *testing.T, o *UpstreamOptions) {
				o.Address = closedPort(t)
			},
			message: unreachable,
		},
		{
			name:          "host that does not know the account",
			forgeAccounts: []string{"bob.gl"},
			message:       unreachable,
		},
		{
			name:    "person without an account",
			people:  map[string]string{"bob": "bob.gl"},
			message: "jitssh: you have no account on the Git host behind this server; ask its operator to add yours (upstream accounts)",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			people := tt.people
			if people == nil {
				people = map[string]string{"alice": "alice.gl"}
			}
			var mod func(*UpstreamOptions)
			if tt.mod != nil {
				mod = func(o *UpstreamOptions) { tt.mod(t, o) }
			}
			p := startProxySpec(t, proxySpec{profile: ca.ProfileGitLab, people: people, forgeAccounts: tt.forgeAccounts, mod: mod})
			alice := p.newUser("alice", time.Hour, "git:write:demo/app:*")
			p.startAgent(alice)
			local := t.TempDir()
			git(t, local, "init", "-q")
			git(t, local, "commit", "-q", "--allow-empty", "-m", "x")
			for _, args := range [][]string{
				{"ls-remote", p.url("demo/app")},
				{"clone", "-q", p.url("demo/app"), filepath.Join(t.TempDir(), "c")},
				{"push", p.url("demo/app"), "HEAD:refs/heads/feature/x"},
			} {
				out, err := p.gitAs(alice, local, args...)
				require.Error(t, err, out)
				assert.Contains(t, out, tt.message, args[0])
			}
			assert.Empty(t, p.forge.loginsSoFar(t), "nothing reached the host's Git")
			assert.Empty(t, p.forge.hookRuns(t), "the host's receive hooks saw nothing")
			var denied bool
			for _, e := range p.events.all() {
				denied = denied || e.Decision == Deny || e.Error != ""
			}
			assert.True(t, denied, "the failure is on the record")
		})
	}
}

func TestUpstreamRefusesArchive(t *testing.T) {
	t.Parallel()
	p := startProxy(t, ca.ProfileGitLab, map[string]string{"alice": "alice.gl"}, nil)
	alice := p.newUser("alice", time.Hour, "git:read:demo/app:*")
	p.startAgent(alice)
	out, err := p.gitAs(alice, t.TempDir(), "archive", "--remote="+p.url("demo/app"), "main")
	require.Error(t, err)
	assert.Contains(t, out, "git archive --remote is not available here")
	assert.Empty(t, p.forge.loginsSoFar(t))
}

func TestPersonOf(t *testing.T) {
	for keyID, want := range map[string]string{
		"alice/req-01J": "alice",
		"alice":         "alice",
		"ci:github:payments/api@refs/heads/main/req-01J": "ci:github:payments/api@refs/heads/main",
		"/x": "",
	} {
		assert.Equal(t, want, PersonOf(keyID), keyID)
	}
}

// closedPort returns a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := netListen()
	require.NoError(t, err)
	addr := l.Addr().String()
	l.Close()
	return addr
}

func TestUpstreamConfigChecks(t *testing.T) {
	good := UpstreamConfig{
		Address: "gitea.internal:22", HostKeys: []string{"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBZ2v6p4sNDe1QYQ8oD6zg4S1yY9u2W4GSuWqkP6ylK7"},
		Profile: "gitea", CADir: "/var/lib/jitssh/forge-ca", Accounts: map[string]string{"alice": "alice-gitea"},
	}
	require.NoError(t, good.validate())
	serviceOnly := good
	serviceOnly.Accounts, serviceOnly.ServiceAccount = nil, "jitssh-bot"
	require.NoError(t, serviceOnly.validate(), "a service account alone serves everyone")
	tests := []struct {
		name string
		mod  func(*UpstreamConfig)
		want string
	}{
		{"no address", func(c *UpstreamConfig) { c.Address = "" }, "address"},
		{"no port", func(c *UpstreamConfig) { c.Address = "gitea.internal" }, "want host:port"},
		{"no host key", func(c *UpstreamConfig) { c.HostKeys = nil }, "host_keys: none listed"},
		{"bad host key", func(c *UpstreamConfig) { c.HostKeys = []string{"ssh-ed25519 nope"} }, "host_keys"},
		{"grant profile", func(c *UpstreamConfig) { c.Profile = "grant" }, "profile"},
		{"host for gitea", func(c *UpstreamConfig) { c.Host = "x.example.com" }, "host:"},
		{"no CA", func(c *UpstreamConfig) { c.CADir = "" }, "ca_dir"},
		{"TTL too short", func(c *UpstreamConfig) { c.TTL = Duration(time.Second) }, "ttl 1s: want 10s to 1h0m0s"},
		{"TTL of hours", func(c *UpstreamConfig) { c.TTL = Duration(2 * time.Hour) }, "ttl 2h0m0s: want 10s to 1h0m0s"},
		{"no accounts", func(c *UpstreamConfig) { c.Accounts = nil }, "accounts: none listed and no service_account"},
		{"bad account", func(c *UpstreamConfig) { c.Accounts = map[string]string{"alice": "git:read:a/b:*"} }, "reads as a jitssh grant"},
		{"bad service account", func(c *UpstreamConfig) { c.ServiceAccount = "jitssh bot" }, "service_account:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := good
			c.Accounts = map[string]string{"alice": "alice-gitea"}
			tt.mod(&c)
			err := c.validate()
			require.Error(t, err)
			assert.True(t, strings.Contains(err.Error(), tt.want), "%v", err)
		})
	}
}

func netListen() (net.Listener, error) { return net.Listen("tcp", "127.0.0.1:0") }
