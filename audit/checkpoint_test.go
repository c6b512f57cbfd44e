package audit

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hiddeco/sshsig"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"
)

func newSigner(t *testing.T) ssh.Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	s, err := ssh.NewSignerFromKey(priv)
	require.NoError(t, err)
	return s
}

// checkpointedLog writes 10 entries, a checkpoint of seq 10 (entry 11), and
// 5 more entries, and returns the log's path.
func checkpointedLog(t *testing.T, signer ssh.Signer) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "audit.log")
	l, err := Open(path, Options{})
	require.NoError(t, err)
	for i := range 10 {
		_, err := l.Append(KindGit, "alice", map[string]int{"i": i})
		require.NoError(t, err)
	}
	cp, err := l.Checkpoint(signer)
	require.NoError(t, err)
	require.Equal(t, uint64(11), cp.Seq)
	for i := range 5 {
		_, err := l.Append(KindGit, "bob", map[string]int{"i": i})
		require.NoError(t, err)
	}
	require.NoError(t, l.Close())
	return path
}

// rechain writes a valid chain of n entries that differs from the original
// from seq `from` on.
func rechain(t *testing.T, lines [][]byte, from, n int) []byte {
	t.Helper()
	out := joinLines(lines[:from-1])
	h := genesis
	if from > 1 {
		prev, err := parseLine(lines[from-2])
		require.NoError(t, err)
		h = advance(prev.Seq, lines[from-2])
	}
	for i := from; i <= n; i++ {
		e, line, err := h.next(KindGit, "mallory", json.RawMessage(`{"forged":true}`), time.Now())
		require.NoError(t, err)
		out = append(append(out, line...), '\n')
		h = advance(e.Seq, line)
	}
	return out
}

func TestVerifyCheckpoint(t *testing.T) {
	signer := newSigner(t)
	path := checkpointedLog(t, signer)
	original, err := os.ReadFile(path)
	require.NoError(t, err)
	headFile, err := os.ReadFile(path + HeadSuffix)
	require.NoError(t, err)
	head, err := ParseHead(headFile)
	require.NoError(t, err)
	require.Equal(t, uint64(10), head.Seq)

	otherSigner := newSigner(t)
	resign := func(h Head, s ssh.Signer, namespace string) []byte {
		sig, err := sshsig.Sign(bytes.NewReader(h.Message()), s, sshsig.HashSHA512, namespace)
		require.NoError(t, err)
		h.Signature = string(sshsig.Armor(sig))
		b, err := json.Marshal(h)
		require.NoError(t, err)
		return b
	}
	lines := func() [][]byte { return bytes.Split(bytes.TrimSuffix(original, []byte("\n")), []byte("\n")) }

	tests := []struct {
		name     string
		log      []byte
		head     []byte
		trusted  ssh.PublicKey
		wantErr  error
		wantLine int
	}{
		{name: "intact", log: original, head: headFile, trusted: signer.PublicKey()},
		{name: "cut after the signed seq", log: joinLines(lines()[:12]), head: headFile, trusted: signer.PublicKey()},
		{name: "cut at the signed seq", log: joinLines(lines()[:10]), head: headFile, trusted: signer.PublicKey()},
		{name: "cut before the signed seq", log: joinLines(lines()[:9]), head: headFile, trusted: signer.PublicKey(), wantErr: ErrTruncated, wantLine: 10},
		{name: "cut to nothing", log: nil, head: headFile, trusted: signer.PublicKey(), wantErr: ErrTruncated, wantLine: 1},
		{name: "whole chain rewritten", log: rechain(t, lines(), 1, 16), head: headFile, trusted: signer.PublicKey(), wantErr: ErrTruncated, wantLine: 10},
		{name: "chain rewritten from seq 8", log: rechain(t, lines(), 8, 16), head: headFile, trusted: signer.PublicKey(), wantErr: ErrTruncated, wantLine: 10},
		{name: "cut and regrown past the signed seq", log: rechain(t, lines(), 10, 30), head: headFile, trusted: signer.PublicKey(), wantErr: ErrTruncated, wantLine: 10},
		{name: "chain rewritten after the signed seq", log: rechain(t, lines(), 11, 16), head: headFile, trusted: signer.PublicKey()},
		{name: "line deleted before the signed seq", log: joinLines(append(lines()[:3:3], lines()[4:]...)), head: headFile, trusted: signer.PublicKey(), wantErr: ErrSeq, wantLine: 4},
		{name: "torn tail", log: original[:len(original)-5], head: headFile, trusted: signer.PublicKey(), wantErr: ErrTornTail, wantLine: 16},
		{name: "head signed by another key", log: original, head: resign(head, otherSigner, CheckpointNamespace), trusted: signer.PublicKey(), wantErr: ErrBadSignature},
		{name: "head checked against another key", log: original, head: headFile, trusted: otherSigner.PublicKey(), wantErr: ErrBadSignature},
		{name: "head signed for another namespace", log: original, head: resign(head, signer, "file"), trusted: signer.PublicKey(), wantErr: ErrBadSignature},
		{
			name: "head seq altered after signing",
			log:  joinLines(lines()[:5]),
			head: func() []byte {
				h := head
				h.Seq = 5
				b, _ := json.Marshal(h)
				return b
			}(),
			trusted: signer.PublicKey(), wantErr: ErrBadSignature,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sum, err := VerifyCheckpoint(bytes.NewReader(tt.log), tt.head, tt.trusted)
			if tt.wantErr == nil {
				require.NoError(t, err)
				assert.Equal(t, uint64(bytes.Count(tt.log, []byte("\n"))), sum.Entries)
				return
			}
			require.ErrorIs(t, err, tt.wantErr)
			if tt.wantLine != 0 {
				var verr *VerifyError
				require.ErrorAs(t, err, &verr)
				assert.Equal(t, tt.wantLine, verr.Line, "error: %v", err)
			}
		})
	}

	for _, bad := range []string{"", "{}", "not json", `{"seq":1,"hash":"x","signature":"y"}`} {
		_, err := VerifyCheckpoint(bytes.NewReader(original), []byte(bad), signer.PublicKey())
		assert.Error(t, err, "head file %q", bad)
	}
}

// TestCheckpointEntry checks what Checkpoint leaves in the log and in the
// head file.
func TestCheckpointEntry(t *testing.T) {
	signer := newSigner(t)
	path := filepath.Join(t.TempDir(), "audit.log")
	l := openLog(t, path, Options{})

	// A checkpoint of an empty log signs the genesis hash.
	cp0, err := l.Checkpoint(signer)
	require.NoError(t, err)
	h0, err := ParseHead(cp0.Data)
	require.NoError(t, err)
	assert.Equal(t, Head{Seq: 0, Hash: GenesisHash, Time: h0.Time, Signature: h0.Signature}, h0)

	for i := range 3 {
		_, err := l.Append(KindIssue, "jitssh", map[string]int{"serial": i})
		require.NoError(t, err)
	}
	cp, err := l.Checkpoint(signer)
	require.NoError(t, err)
	assert.Equal(t, KindCheckpoint, cp.Kind)
	assert.Equal(t, ssh.FingerprintSHA256(signer.PublicKey()), cp.Actor)

	h, err := ParseHead(cp.Data)
	require.NoError(t, err)
	require.NoError(t, VerifyHead(h, signer.PublicKey()))
	lines := fileLines(t, path)
	assert.Equal(t, cp.Seq-1, h.Seq, "signs the entry before it")
	assert.Equal(t, lineHash(lines[h.Seq-1]), h.Hash)

	headFile, err := os.ReadFile(path + HeadSuffix)
	require.NoError(t, err)
	assert.Equal(t, string(cp.Data)+"\n", string(headFile), "the head file holds the newest checkpoint")
	fi, err := os.Stat(path + HeadSuffix)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())

	sum, err := verifyFile(t, path)
	require.NoError(t, err)
	assert.Equal(t, cp.Seq, sum.Entries)
}

// A slow checkpoint must not put an older head over a newer one.
func TestHeadFileKeepsNewest(t *testing.T) {
	signer := newSigner(t)
	path := filepath.Join(t.TempDir(), "audit.log")
	l := openLog(t, path, Options{})
	_, err := l.Append(KindGit, "alice", nil)
	require.NoError(t, err)
	older, err := l.Checkpoint(signer)
	require.NoError(t, err)
	_, err = l.Append(KindGit, "alice", nil)
	require.NoError(t, err)
	newer, err := l.Checkpoint(signer)
	require.NoError(t, err)

	olderHead, err := ParseHead(older.Data)
	require.NoError(t, err)
	require.NoError(t, writeHeadFile(path+HeadSuffix, append(older.Data, '\n'), olderHead.Seq))
	got, err := os.ReadFile(path + HeadSuffix)
	require.NoError(t, err)
	assert.Equal(t, string(newer.Data)+"\n", string(got))

	leftovers, err := filepath.Glob(filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+HeadSuffix+".tmp-*"))
	require.NoError(t, err)
	assert.Empty(t, leftovers)
}

func TestPeriodicCheckpoint(t *testing.T) {
	signer := newSigner(t)
	path := filepath.Join(t.TempDir(), "audit.log")
	l, err := Open(path, Options{CheckpointSigner: signer, CheckpointInterval: 5 * time.Millisecond})
	require.NoError(t, err)
	for i := range 3 {
		_, err := l.Append(KindGit, "alice", map[string]int{"i": i})
		require.NoError(t, err)
	}
	var head Head
	require.Eventually(t, func() bool {
		b, err := os.ReadFile(path + HeadSuffix)
		if err != nil {
			return false
		}
		head, err = ParseHead(b)
		return err == nil && head.Seq >= 3
	}, 20*time.Second, 5*time.Millisecond)
	require.NoError(t, l.Close())

	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	headFile, err := os.ReadFile(path + HeadSuffix)
	require.NoError(t, err)
	_, err = VerifyCheckpoint(f, headFile, signer.PublicKey())
	require.NoError(t, err)
}

// TestCheckpointSSHKeygen checks checkpoint signatures against OpenSSH, both
// ways: ssh-keygen -Y verify accepts what jitssh signs, and VerifyHead
// accepts what ssh-keygen -Y sign makes.
func TestCheckpointSSHKeygen(t *testing.T) {
	keygen := needBinary(t, "ssh-keygen")
	for _, kt := range []struct{ name, flags string }{
		{"ed25519", "-t ed25519"},
		{"ecdsa-p256", "-t ecdsa -b 256"},
		{"rsa-3072", "-t rsa -b 3072"},
	} {
		t.Run(kt.name, func(t *testing.T) {
			dir := t.TempDir()
			keyFile := filepath.Join(dir, "key")
			run(t, "", keygen, append(strings.Fields(kt.flags), "-q", "-N", "", "-C", "checkpoint", "-f", keyFile)...)
			pem, err := os.ReadFile(keyFile)
			require.NoError(t, err)
			signer, err := ssh.ParsePrivateKey(pem)
			require.NoError(t, err)

			path := filepath.Join(dir, "audit.log")
			l := openLog(t, path, Options{})
			_, err = l.Append(KindIssue, "jitssh", map[string]int{"serial": 1})
			require.NoError(t, err)
			cp, err := l.Checkpoint(signer)
			require.NoError(t, err)
			head, err := ParseHead(cp.Data)
			require.NoError(t, err)

			msgFile := filepath.Join(dir, "head.msg")
			sigFile := filepath.Join(dir, "head.sig")
			allowed := filepath.Join(dir, "allowed_signers")
			require.NoError(t, os.WriteFile(msgFile, head.Message(), 0o600))
			require.NoError(t, os.WriteFile(sigFile, []byte(head.Signature), 0o600))
			require.NoError(t, os.WriteFile(allowed, []byte(`checkpoint@jitssh namespaces="`+CheckpointNamespace+`" `+string(ssh.MarshalAuthorizedKey(signer.PublicKey()))), 0o600))

			verify := func(namespace, msg string) error {
				cmd := exec.Command(keygen, "-Y", "verify", "-f", allowed, "-I", "checkpoint@jitssh", "-n", namespace, "-s", sigFile)
				cmd.Stdin = strings.NewReader(msg)
				out, err := cmd.CombinedOutput()
				if err == nil {
					assert.Contains(t, string(out), "Good")
				}
				return err
			}
			require.NoError(t, verify(CheckpointNamespace, string(head.Message())), "ssh-keygen accepts the checkpoint")
			assert.Error(t, verify("file", string(head.Message())), "ssh-keygen refuses another namespace")
			altered := strings.Replace(string(head.Message()), "seq 1\n", "seq 2\n", 1)
			assert.Error(t, verify(CheckpointNamespace, altered), "ssh-keygen refuses an altered head")

			// The other way round: ssh-keygen signs, jitssh verifies.
			require.NoError(t, os.Remove(sigFile))
			run(t, "", keygen, "-Y", "sign", "-q", "-f", keyFile, "-n", CheckpointNamespace, msgFile)
			theirs, err := os.ReadFile(msgFile + ".sig")
			require.NoError(t, err)
			head.Signature = string(theirs)
			require.NoError(t, VerifyHead(head, signer.PublicKey()))
			head.Seq++
			require.ErrorIs(t, VerifyHead(head, signer.PublicKey()), ErrBadSignature)
		})
	}
}

func run(t *testing.T, stdin, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s %s: %s", name, strings.Join(args, " "), out)
}
