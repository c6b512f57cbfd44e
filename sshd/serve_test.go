package sshd

import (
	"bufio"
	"bytes"
	"compress/zlib"
	"context"
	"crypto/sha1"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// remote returns the ext:: URL and environment under which real git talks
// to Serve (through this test binary) as a holder of grants.
func (f *fixture) remote(protocol string, grants ...string) (string, []string) {
	env := []string{
		"JITSSH_TEST_SERVE=1",
		"JITSSH_TEST_ROOT=" + f.root,
		"JITSSH_TEST_GRANTS=" + strings.Join(grants, " "),
		"JITSSH_TEST_PROTOCOL=" + protocol,
		"JITSSH_TEST_HOOK=" + strings.Join(hookCommand, " "),
		"GIT_CONFIG_COUNT=1", "GIT_CONFIG_KEY_0=protocol.ext.allow", "GIT_CONFIG_VALUE_0=always",
	}
	return "ext::" + os.Args[0] + " %S demo/app", env
}

func lsRemote(t *testing.T, f *fixture, protocol string, grants ...string) map[string]string {
	t.Helper()
	url, env := f.remote(protocol, grants...)
	out, err := gitErr(f.work, env, "ls-remote", url)
	require.NoError(t, err, out)
	refs := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if id, ref, ok := strings.Cut(line, "\t"); ok {
			refs[ref] = id
		}
	}
	return refs
}

func TestServeAdvertisesOnlyGrantedRefs(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		name   string
		grants []string
		want   []string
	}{
		{"one branch", []string{"git:read:demo/app:refs/heads/main"}, []string{"HEAD", "refs/heads/main"}},
		{"prefix hides HEAD elsewhere", []string{"git:read:demo/app:refs/heads/feature/*"}, []string{"refs/heads/feature/a"}},
		{"write implies read", []string{"git:write:demo/app:refs/heads/secret"}, []string{"refs/heads/secret"}},
		{"every ref", []string{"git:read:demo/app:*"}, []string{"HEAD", "refs/heads/main", "refs/heads/feature/a", "refs/heads/secret"}},
		{"other repo grant shows nothing here", []string{"git:read:demo/app:refs/heads/nope", "git:read:demo/other:*"}, nil},
	}
	for _, tt := range tests {
		for _, proto := range []string{"", "version=1", "version=2"} {
			t.Run(tt.name+"/"+proto, func(t *testing.T) {
				t.Parallel()
				refs := lsRemote(t, f, proto, tt.grants...)
				var got []string
				for ref := range refs {
					got = append(got, ref)
				}
				assert.ElementsMatch(t, tt.want, got)
			})
		}
	}
}

func TestServeFetchCannotReachHiddenObjects(t *testing.T) {
	f := newFixture(t)
	for _, proto := range []string{"", "version=1", "version=2"} {
		t.Run("protocol "+proto, func(t *testing.T) {
			t.Parallel()
			url, env := f.remote(proto, "git:read:demo/app:refs/heads/main")
			clone := t.TempDir()
			out, err := gitErr(clone, env, "clone", "-q", url, "c")
			require.NoError(t, err, out)
			c := filepath.Join(clone, "c")
			assert.Equal(t, f.tips["main"], git(t, c, "rev-parse", "HEAD"))
			for _, want := range []string{f.tips["secret"], f.tips["feature/a"], f.secretBlob, "refs/heads/secret", "secret", "refs/heads/feature/a"} {
				out, err := gitErr(c, env, "-c", "protocol.version=2", "fetch", "-q", url, want)
				require.Error(t, err, "fetching %s should fail: %s", want, out)
			}
			for _, obj := range []string{f.tips["secret"], f.tips["feature/a"], f.secretBlob} {
				_, err := gitErr(c, nil, "cat-file", "-e", obj)
				require.Error(t, err, "object %s reached the client", obj)
			}
		})
	}
}

func TestServeArchive(t *testing.T) {
	f := newFixture(t)
	url, env := f.remote("", "git:read:demo/app:refs/heads/main", "git:read:demo/app:refs/heads/feature/*")
	tests := []struct {
		args []string
		ok   bool
		file string
	}{
		{[]string{"main"}, true, "main.txt"},
		{[]string{"refs/heads/main"}, true, "main.txt"},
		{[]string{"HEAD"}, true, "main.txt"},
		{[]string{"--prefix=p/", "feature/a"}, true, "p/feature.txt"},
		{[]string{"main:", "README"}, true, "README"},
		{[]string{"secret"}, false, ""},
		{[]string{"refs/heads/secret"}, false, ""},
		{[]string{f.tips["secret"]}, false, ""},
		{[]string{f.tips["main"]}, false, ""},
		{[]string{"main~0"}, false, ""},
		{[]string{"secret:secret.txt"}, false, ""},
		{[]string{"--add-file=/etc/passwd", "main"}, false, ""},
		{[]string{"--worktree-attributes", "main"}, false, ""},
	}
	for _, tt := range tests {
		args := append([]string{"archive", "--format=tar", "--remote=" + url}, tt.args...)
		cmd := gitCmd(f.work, env, args...)
		var out, errOut bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errOut
		err := cmd.Run()
		if !tt.ok {
			require.Error(t, err, "archive %v: %s", tt.args, errOut.String())
			assert.NotContains(t, out.String(), "secret payload")
			continue
		}
		require.NoError(t, err, "archive %v: %s", tt.args, errOut.String())
		assert.Contains(t, out.String(), tt.file)
	}
}

func TestServeArchiveRawRequests(t *testing.T) {
	f := newFixture(t)
	repos, err := NewRepos(f.root)
	require.NoError(t, err)
	d := Decide(repos, testIdentity(t, "git:read:demo/app:refs/heads/main"), "git-upload-archive 'demo/app'")
	require.True(t, d.Allowed())
	g := newTestGit(t)
	for _, args := range [][]string{
		{"--output=/tmp/x", "main"},
		{"--remote=x", "main"},
		{"--exec=sh", "main"},
		{"--format=../../x", "main"},
		{"-l"},
		{},
		{"--", "secret"},
	} {
		var req bytes.Buffer
		for _, a := range args {
			require.NoError(t, writePkt(&req, []byte("argument "+a+"\n")))
		}
		require.NoError(t, writeFlush(&req))
		var out bytes.Buffer
		_, err := g.Serve(context.Background(), d, "", Stdio{In: &req, Out: &out, Err: io.Discard}, nil)
		require.ErrorIs(t, err, ErrArchiveRefused, "args %q", args)
		assert.Contains(t, out.String(), "NACK jitssh:", "args %q", args)
	}
}

func newTestGit(t testing.TB) *Git {
	t.Helper()
	g, err := NewGit(GitOptions{HookCommand: hookCommand})
	require.NoError(t, err)
	t.Cleanup(func() { g.Close() })
	return g
}

type pushCase struct {
	name     string
	grants   []string
	refspecs []string
	atomic   bool
	rejected map[string]string // remote ref -> reason
}

func TestServePush(t *testing.T) {
	tests := []pushCase{
		{name: "write creates under prefix", grants: []string{"git:write:demo/app:refs/heads/feature/*"}, refspecs: []string{"new:refs/heads/feature/b"}},
		{name: "write fast-forward", grants: []string{"git:write:demo/app:refs/heads/feature/*"}, refspecs: []string{"ff:refs/heads/feature/a"}},
		{name: "write non-fast-forward refused", grants: []string{"git:write:demo/app:refs/heads/feature/*"}, refspecs: []string{"+new:refs/heads/feature/a"},
			rejected: map[string]string{"refs/heads/feature/a": "a non-fast-forward update of refs/heads/feature/a needs force access on demo/app; your grant gives write"}},
		{name: "write delete refused", grants: []string{"git:write:demo/app:refs/heads/feature/*"}, refspecs: []string{":refs/heads/feature/a"},
			rejected: map[string]string{"refs/heads/feature/a": "deleting refs/heads/feature/a needs force access on demo/app; your grant gives write"}},
		{name: "force non-fast-forward", grants: []string{"git:force:demo/app:refs/heads/feature/*"}, refspecs: []string{"+new:refs/heads/feature/a"}},
		{name: "force delete", grants: []string{"git:force:demo/app:refs/heads/feature/*"}, refspecs: []string{":refs/heads/feature/a"}},
		{name: "read-only ref refused", grants: []string{"git:write:demo/app:refs/heads/feature/*", "git:read:demo/app:refs/heads/main"}, refspecs: []string{"ff-main:refs/heads/main"},
			rejected: map[string]string{"refs/heads/main": "updating refs/heads/main needs write access on demo/app; your grant gives read"}},
		{name: "ungranted ref refused", grants: []string{"git:write:demo/app:refs/heads/feature/*"}, refspecs: []string{"new:refs/heads/other"},
			rejected: map[string]string{"refs/heads/other": "not in your grant: creating refs/heads/other needs write access on demo/app"}},
		{name: "prefix itself refused", grants: []string{"git:write:demo/app:refs/heads/feature/*"}, refspecs: []string{"new:refs/tags/x"},
			rejected: map[string]string{"refs/tags/x": "not in your grant: creating refs/tags/x needs write access on demo/app"}},
		{name: "exact grant not below", grants: []string{"git:write:demo/app:refs/heads/feature/a", "git:read:demo/app:*"}, refspecs: []string{"new:refs/heads/feature/a/b"},
			rejected: map[string]string{"refs/heads/feature/a/b": "creating refs/heads/feature/a/b needs write access on demo/app; your grant gives read"}},
		{name: "ungranted repo-wide ref", grants: []string{"git:write:demo/app:refs/heads/feature/a", "git:read:demo/app:*"}, refspecs: []string{"new:refs/tags/v1"},
			rejected: map[string]string{"refs/tags/v1": "creating refs/tags/v1 needs write access on demo/app; your grant gives read"}},
		{name: "mixed push keeps the good ref", grants: []string{"git:write:demo/app:refs/heads/feature/*", "git:read:demo/app:refs/heads/main"}, refspecs: []string{"new:refs/heads/feature/c", "ff-main:refs/heads/main"},
			rejected: map[string]string{"refs/heads/main": "updating refs/heads/main needs write access on demo/app; your grant gives read"}},
		{name: "atomic push changes nothing", grants: []string{"git:write:demo/app:refs/heads/feature/*", "git:read:demo/app:refs/heads/main"}, refspecs: []string{"new:refs/heads/feature/c", "ff-main:refs/heads/main"}, atomic: true,
			rejected: map[string]string{"refs/heads/main": "updating refs/heads/main needs write access on demo/app; your grant gives read", "refs/heads/feature/c": "atomic push refused because refs/heads/main was refused"}},
		// git refuses a hidden ref itself, before jitssh's hooks see the
		// push, and then goes on with the rest even under --atomic. The
		// client gets jitssh's reason all the same, worded from what it
		// sent: main exists, but the pusher was not shown it and pushed
		// it as new.
		{name: "atomic push with a hidden ref changes nothing", grants: []string{"git:write:demo/app:refs/heads/feature/*"}, refspecs: []string{"new:refs/heads/feature/c", "ff-main:refs/heads/main"}, atomic: true,
			rejected: map[string]string{"refs/heads/main": "not in your grant: creating refs/heads/main needs write access on demo/app", "refs/heads/feature/c": "atomic push refused because refs/heads/main was refused"}},
		{name: "non-atomic push with a hidden ref keeps the good ref", grants: []string{"git:write:demo/app:refs/heads/feature/*"}, refspecs: []string{"new:refs/heads/feature/c", "ff-main:refs/heads/main"},
			rejected: map[string]string{"refs/heads/main": "not in your grant: creating refs/heads/main needs write access on demo/app"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			runPushCase(t, tt)
		})
	}
}

func runPushCase(t *testing.T, tt pushCase) {
	f := newFixture(t)
	// Local branches the refspecs name: ff (feature/a + 1), new (unrelated
	// to feature/a: main + 1), ff-main (main + 1).
	git(t, f.work, "checkout", "-q", "-b", "ff", f.tips["feature/a"])
	git(t, f.work, "commit", "-q", "--allow-empty", "-m", "ff")
	git(t, f.work, "checkout", "-q", "-b", "new", f.tips["main"])
	git(t, f.work, "commit", "-q", "--allow-empty", "-m", "new")
	git(t, f.work, "branch", "ff-main", "new")
	before := git(t, f.bare, "for-each-ref")

	url, env := f.remote("", tt.grants...)
	args := []string{"push", "--porcelain"}
	if tt.atomic {
		args = append(args, "--atomic")
	}
	args = append(args, url)
	args = append(args, tt.refspecs...)
	out, err := gitErr(f.work, env, args...)
	if len(tt.rejected) == 0 {
		require.NoError(t, err, out)
	} else {
		require.Error(t, err, out)
	}
	for ref, reason := range tt.rejected {
		assert.Regexp(t, `(?m)^!\t[^\t]*:`+ref+`\t\[remote rejected\] \(`+regexp.QuoteMeta(reason)+`\)$`, out)
	}
	after := git(t, f.bare, "for-each-ref")
	if tt.atomic {
		assert.Equal(t, before, after, "an atomic push with a refused ref changed refs")
	}
	for ref := range tt.rejected {
		assert.Equal(t, refLine(before, ref), refLine(after, ref), "refused ref %s changed", ref)
	}
}

// TestServePushHiddenRefReadsLikeMissing: a push to a ref the grants hide
// says what was missing, and says it alike whether the ref exists or not,
// whatever the pusher claims it holds.
func TestServePushHiddenRefReadsLikeMissing(t *testing.T) {
	f := newFixture(t)
	git(t, f.work, "checkout", "-q", "-b", "new", f.tips["main"])
	git(t, f.work, "commit", "-q", "--allow-empty", "-m", "new")
	url, env := f.remote("", "git:write:demo/app:refs/heads/feature/*")
	before := git(t, f.bare, "for-each-ref")
	push := func(args ...string) string {
		out, err := gitErr(f.work, env, append([]string{"push", "--porcelain", url}, args...)...)
		require.Error(t, err, out)
		return out
	}
	for _, tt := range []struct{ name, force string }{{"a plain push", ""}, {"a forced push", "+"}} {
		t.Run(tt.name, func(t *testing.T) {
			hidden := push(tt.force + "new:refs/heads/secret")
			missing := push(tt.force + "new:refs/heads/nosuch")
			assert.Contains(t, hidden, "[remote rejected] (not in your grant: creating refs/heads/secret needs write access on demo/app)")
			assert.NotContains(t, hidden, "hidden")
			assert.Equal(t, hidden, strings.ReplaceAll(missing, "nosuch", "secret"))
		})
	}
	assert.Equal(t, before, git(t, f.bare, "for-each-ref"), "a refused push changed refs")
}

func refLine(forEachRef, ref string) string {
	for _, line := range strings.Split(forEachRef, "\n") {
		if strings.HasSuffix(line, "\t"+ref) {
			return line
		}
	}
	return ""
}

// TestServePushCannotLinkHiddenHistory pushes, by hand, packs a normal git
// client would never send: a commit whose parent is a hidden commit the
// pusher cannot read, a tree naming a hidden blob, and a thin delta
// against a hidden blob. Each would let the pusher fetch the hidden
// content back through its own branch.
func TestServePushCannotLinkHiddenHistory(t *testing.T) {
	f := newFixture(t)
	repos, err := NewRepos(f.root)
	require.NoError(t, err)
	g := newTestGit(t)
	id := testIdentity(t, "git:write:demo/app:refs/heads/feature/*")

	emptyTree := gitObject("tree", nil)
	treeWithSecret := gitObject("tree", treeEntry("100644", "leak.txt", f.secretBlob))
	copySecret := []byte{}
	copySecret = binary.AppendUvarint(copySecret, uint64(f.secretBlobSize))
	copySecret = binary.AppendUvarint(copySecret, uint64(f.secretBlobSize))
	copySecret = append(copySecret, 0x80|0x10, byte(f.secretBlobSize)) // copy size bytes from offset 0

	// A delta that copies the hidden blob and appends one byte makes a
	// new object the repository does not have yet.
	extended := gitObject("blob", []byte("the secret payload\nx"))
	appendX := []byte{}
	appendX = binary.AppendUvarint(appendX, uint64(f.secretBlobSize))
	appendX = binary.AppendUvarint(appendX, uint64(f.secretBlobSize+1))
	appendX = append(appendX, 0x80|0x10, byte(f.secretBlobSize), 1, 'x')
	treeWithExtended := gitObject("tree", treeEntry("100644", "leak.txt", extended.id))

	tests := []struct {
		name string
		objs []packObject
	}{
		{
			name: "commit on hidden parent",
			objs: []packObject{
				emptyTree,
				gitObject("commit", []byte("tree "+emptyTree.id+"\nparent "+f.tips["secret"]+"\nauthor a <a@b> 1 +0000\ncommitter a <a@b> 1 +0000\n\nx\n")),
			},
		},
		{
			name: "tree naming hidden blob",
			objs: []packObject{
				treeWithSecret,
				gitObject("commit", []byte("tree "+treeWithSecret.id+"\nauthor a <a@b> 1 +0000\ncommitter a <a@b> 1 +0000\n\nx\n")),
			},
		},
		{
			name: "thin delta against hidden blob",
			objs: []packObject{
				{kind: 7, base: f.secretBlob, data: copySecret},
				treeWithSecret,
				gitObject("commit", []byte("tree "+treeWithSecret.id+"\nauthor a <a@b> 1 +0000\ncommitter a <a@b> 1 +0000\n\nx\n")),
			},
		},
		{
			name: "thin delta making a new blob from a hidden one",
			objs: []packObject{
				{kind: 7, base: f.secretBlob, data: appendX},
				treeWithExtended,
				gitObject("commit", []byte("tree "+treeWithExtended.id+"\nauthor a <a@b> 1 +0000\ncommitter a <a@b> 1 +0000\n\nx\n")),
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := Decide(repos, id, "git-receive-pack 'demo/app'")
			require.True(t, d.Allowed())
			tip := tt.objs[len(tt.objs)-1].id
			report := rawPush(t, g, d, zeroOID+" "+tip+" refs/heads/feature/leak", buildPack(t, tt.objs))
			assert.NotContains(t, report, "ok refs/heads/feature/leak")
			_, err := gitErr(f.bare, nil, "rev-parse", "--verify", "refs/heads/feature/leak")
			require.Error(t, err, "the leaking ref was created; report: %s", report)
		})
	}
}

const zeroOID = "0000000000000000000000000000000000000000"

// rawPush speaks receive-pack's protocol to Serve directly and returns the
// report-status text.
func rawPush(t *testing.T, g *Git, d Decision, command string, pack []byte) string {
	t.Helper()
	clientIn, serverOut := io.Pipe()
	serverIn, clientOut := io.Pipe()
	done := make(chan error, 1)
	go func() {
		_, err := g.Serve(context.Background(), d, "", Stdio{In: serverIn, Out: serverOut, Err: io.Discard}, nil)
		serverOut.CloseWithError(err)
		done <- err
	}()
	r := bufio.NewReader(clientIn)
	for {
		if _, err := readPkt(r); err != nil {
			require.ErrorIs(t, err, errFlush)
			break
		}
	}
	var req bytes.Buffer
	require.NoError(t, writePkt(&req, []byte(command+"\x00report-status\n")))
	require.NoError(t, writeFlush(&req))
	req.Write(pack)
	go func() {
		clientOut.Write(req.Bytes())
		clientOut.Close()
	}()
	var report strings.Builder
	for {
		p, err := readPkt(r)
		if err != nil {
			break
		}
		report.Write(p)
	}
	<-done
	return report.String()
}

type packObject struct {
	kind int // 1 commit, 2 tree, 3 blob, 7 ref-delta
	id   string
	base string
	data []byte
}

func gitObject(kind string, data []byte) packObject {
	codes := map[string]int{"commit": 1, "tree": 2, "blob": 3}
	h := sha1.New()
	fmt.Fprintf(h, "%s %d\x00", kind, len(data))
	h.Write(data)
	return packObject{kind: codes[kind], id: hex.EncodeToString(h.Sum(nil)), data: data}
}

func treeEntry(mode, name, id string) []byte {
	raw, _ := hex.DecodeString(id)
	return append([]byte(mode+" "+name+"\x00"), raw...)
}

func buildPack(t *testing.T, objs []packObject) []byte {
	t.Helper()
	var b bytes.Buffer
	b.WriteString("PACK")
	binary.Write(&b, binary.BigEndian, uint32(2))
	binary.Write(&b, binary.BigEndian, uint32(len(objs)))
	for _, o := range objs {
		size := len(o.data)
		c := byte(o.kind<<4) | byte(size&0x0f)
		size >>= 4
		for size > 0 {
			b.WriteByte(c | 0x80)
			c = byte(size & 0x7f)
			size >>= 7
		}
		b.WriteByte(c)
		if o.kind == 7 {
			raw, err := hex.DecodeString(o.base)
			require.NoError(t, err)
			b.Write(raw)
		}
		zw := zlib.NewWriter(&b)
		zw.Write(o.data)
		require.NoError(t, zw.Close())
	}
	sum := sha1.Sum(b.Bytes())
	b.Write(sum[:])
	return b.Bytes()
}

// TestServeHideRefsEdges: hideRefs matches a name and everything below it,
// which is wider than the grant grammar in two places. An exact grant R
// must not show refs below R/, and a prefix grant P/* must not show a ref
// named P itself.
func TestServeHideRefsEdges(t *testing.T) {
	f := newFixture(t)
	git(t, f.bare, "update-ref", "refs/heads/rel/x", f.tips["secret"])
	git(t, f.bare, "update-ref", "refs/heads/feat", f.tips["secret"])
	for _, tt := range []struct {
		grant string
		want  []string
	}{
		{"git:read:demo/app:refs/heads/rel", nil},
		{"git:read:demo/app:refs/heads/rel/*", []string{"refs/heads/rel/x"}},
		// Refs below an exact grant that another grant covers show.
		{"git:read:demo/app:refs/heads/rel git:read:demo/app:refs/heads/rel/*", []string{"refs/heads/rel/x"}},
		{"git:read:demo/app:refs/heads/feat/*", nil},
		{"git:read:demo/app:refs/heads/feat", []string{"refs/heads/feat"}},
	} {
		refs := lsRemote(t, f, "", strings.Fields(tt.grant)...)
		var got []string
		for ref := range refs {
			got = append(got, ref)
		}
		assert.ElementsMatch(t, tt.want, got, "grant %s", tt.grant)
	}
	// The same holds once the refs are packed.
	git(t, f.bare, "pack-refs", "--all")
	assert.Empty(t, lsRemote(t, f, "", "git:read:demo/app:refs/heads/rel"))
	assert.Empty(t, lsRemote(t, f, "", "git:read:demo/app:refs/heads/feat/*"))
}

// TestServeRefusesDeepenNotForScopedReaders: git resolves a deepen-not ref
// among all refs and answers differently when a hidden one exists, so a
// ref-scoped reader gets one refusal whatever it names. A reader of every
// ref keeps the feature.
func TestServeRefusesDeepenNotForScopedReaders(t *testing.T) {
	f := newFixture(t)
	for _, proto := range []string{"0", "1", "2"} {
		t.Run("protocol v"+proto, func(t *testing.T) {
			answers := map[string]string{}
			for _, exclude := range []string{"secret", "no-such-ref", "main"} {
				dir := t.TempDir()
				git(t, dir, "init", "-q")
				url, env := f.remote(proto, "git:read:demo/app:refs/heads/feature/*")
				out, err := gitErr(dir, env, "-c", "protocol.version="+proto, "fetch", "--shallow-exclude="+exclude, url, "feature/a")
				require.Error(t, err, out)
				assert.Contains(t, out, "remote error: jitssh: --shallow-exclude (deepen-not) is not available")
				// git's own stderr and the refusal may come in either order.
				lines := strings.Split(strings.ReplaceAll(out, exclude, "X"), "\n")
				slices.Sort(lines)
				answers[exclude] = strings.Join(lines, "\n")
			}
			assert.Equal(t, answers["secret"], answers["no-such-ref"], "a hidden ref and a missing one answer differently")

			dir := t.TempDir()
			git(t, dir, "init", "-q")
			url, env := f.remote(proto, "git:read:demo/app:*")
			out, err := gitErr(dir, env, "-c", "protocol.version="+proto, "fetch", "-q", "--shallow-exclude=main", url, "feature/a")
			require.NoError(t, err, out)
		})
	}
}

// TestServeHidesHeadTarget: the symref capability names HEAD's target only
// to a reader of that target.
func TestServeHidesHeadTarget(t *testing.T) {
	f := newFixture(t)
	for _, tt := range []struct {
		grant string
		shown bool
	}{
		{"git:read:demo/app:refs/heads/feature/*", false},
		{"git:read:demo/app:refs/heads/main", true},
		{"git:read:demo/app:*", true},
	} {
		for _, proto := range []string{"0", "1"} {
			t.Run(tt.grant+" v"+proto, func(t *testing.T) {
				url, env := f.remote(proto, tt.grant)
				env = append(env, "GIT_TRACE_PACKET=1")
				out, err := gitErr(f.work, env, "-c", "protocol.version="+proto, "ls-remote", "--symref", url)
				require.NoError(t, err, out)
				// include-tag would bring hidden annotated tags along.
				assert.Equal(t, tt.grant == "git:read:demo/app:*", strings.Contains(out, "include-tag"), "include-tag advertised")
				if tt.shown {
					assert.Contains(t, out, "symref=HEAD:refs/heads/main")
				} else {
					assert.NotContains(t, out, "refs/heads/main")
					assert.Contains(t, out, "refs/heads/feature/a", "the visible ref went missing")
				}
			})
		}
	}
}

// TestServeKeepsHiddenTagsOut: with include-tag, git sends every annotated
// tag that points into the fetched history, hidden tags too. A ref-scoped
// reader gets neither the capability nor, when it asks anyway, the tags.
func TestServeKeepsHiddenTagsOut(t *testing.T) {
	f := newFixture(t)
	git(t, f.root, "--git-dir", f.bare, "tag", "-a", "hidden-tag", "-m", "the secret tag message", f.tips["feature/a"])
	tag := git(t, f.root, "--git-dir", f.bare, "rev-parse", "refs/tags/hidden-tag")
	scoped, all := "git:read:demo/app:refs/heads/feature/*", "git:read:demo/app:*"

	t.Run("git fetch", func(t *testing.T) {
		for _, proto := range []string{"0", "1", "2"} {
			for grant, leaks := range map[string]bool{scoped: false, all: true} {
				dir := t.TempDir()
				git(t, dir, "init", "-q")
				url, env := f.remote(proto, grant)
				out, err := gitErr(dir, env, "-c", "protocol.version="+proto, "fetch", "-q", url, "refs/heads/feature/a:refs/remotes/x")
				require.NoError(t, err, out)
				_, err = gitErr(dir, nil, "cat-file", "-e", tag)
				assert.Equal(t, leaks, err == nil, "v%s %s: tag object present = %v", proto, grant, err == nil)
			}
		}
	})

	t.Run("a client that asks for include-tag unasked", func(t *testing.T) {
		for grant, leaks := range map[string]bool{scoped: false, all: true} {
			pack := rawFetch(t, f, grant, "want "+f.tips["feature/a"]+" include-tag ofs-delta\n")
			dir := t.TempDir()
			git(t, dir, "init", "-q", "--bare")
			cmd := exec.Command("git", "index-pack", "--stdin")
			cmd.Dir, cmd.Stdin = dir, bytes.NewReader(pack)
			out, err := cmd.CombinedOutput()
			require.NoError(t, err, "%s", out)
			_, err = gitErr(dir, nil, "cat-file", "-e", tag)
			assert.Equal(t, leaks, err == nil, "%s: tag object present = %v", grant, err == nil)
		}
	})
}

// rawFetch speaks protocol v0 to Serve by hand: it reads the ref
// advertisement, sends want, a flush and done, and returns the pack that
// follows the NAK.
func rawFetch(t *testing.T, f *fixture, grant, want string) []byte {
	t.Helper()
	_, env := f.remote("", grant)
	cmd := exec.Command(os.Args[0], "git-upload-pack", "demo/app")
	cmd.Env = append(os.Environ(), env...)
	stdin, err := cmd.StdinPipe()
	require.NoError(t, err)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	r := bufio.NewReader(stdout)
	for {
		if _, err := readPkt(r); errors.Is(err, errFlush) {
			break
		} else {
			require.NoError(t, err, "reading the advertisement")
		}
	}
	require.NoError(t, writePkt(stdin, []byte(want)))
	require.NoError(t, writeFlush(stdin))
	require.NoError(t, writePkt(stdin, []byte("done\n")))
	nak, err := readPkt(r)
	require.NoError(t, err)
	require.Equal(t, "NAK\n", string(nak))
	pack, err := io.ReadAll(r)
	require.NoError(t, err)
	stdin.Close()
	require.NoError(t, cmd.Wait())
	return pack
}

// TestServeNoPartialCloneForScopedReaders: a partial clone fetches missing
// objects by id later, which a ref-scoped reader may not do, so such a
// reader is not offered filters even where the repository allows them,
// and gets a whole clone that works.
func TestServeNoPartialCloneForScopedReaders(t *testing.T) {
	f := newFixture(t)
	git(t, f.root, "--git-dir", f.bare, "config", "uploadpack.allowFilter", "true")
	dir := t.TempDir()
	url, env := f.remote("", "git:read:demo/app:refs/heads/feature/*")
	out, err := gitErr(dir, env, "clone", "-q", "--filter=blob:none", "-b", "feature/a", url, "c")
	require.NoError(t, err, out)
	assert.Contains(t, out, "filtering not recognized")
	assert.FileExists(t, filepath.Join(dir, "c", "feature.txt"))
	out, err = gitErr(filepath.Join(dir, "c"), env, "log", "-p", "-q")
	require.NoError(t, err, "history readable without lazy fetches: %s", out)
}
