package audit

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"
)

var chainT0 = time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)

// chainLines makes n lines after c, one entry a second from chainT0.
func chainLines(t *testing.T, c Chain, n int) (Chain, [][]byte) {
	t.Helper()
	var lines [][]byte
	for i := range n {
		next, line, err := c.Next("request", "alice", chainT0.Add(time.Duration(i)*time.Second), map[string]any{"id": i})
		require.NoError(t, err)
		lines = append(lines, line)
		c = next
	}
	return c, lines
}

func TestChainNextIsDeterministic(t *testing.T) {
	a, linesA := chainLines(t, GenesisChain, 3)
	b, linesB := chainLines(t, GenesisChain, 3)
	assert.Equal(t, a, b)
	assert.Equal(t, linesA, linesB, "the same inputs give the same bytes")
	assert.Equal(t, uint64(3), a.Seq)

	// The lines are a log that verifies, ending at the chain position.
	var buf bytes.Buffer
	for _, l := range linesA {
		buf.Write(l)
		buf.WriteByte('\n')
	}
	sum, err := Verify(&buf)
	require.NoError(t, err)
	assert.Equal(t, a.Seq, sum.Entries)
	assert.Equal(t, a.Hash, sum.Head)
}

func TestChainNextRefuses(t *testing.T) {
	for name, tc := range map[string]struct {
		c    Chain
		kind string
		data any
	}{
		"empty kind":      {GenesisChain, "", nil},
		"checkpoint kind": {GenesisChain, KindCheckpoint, nil},
		"repair kind":     {GenesisChain, KindRepair, nil},
		"no position":     {Chain{}, "request", nil},
		"data not object": {GenesisChain, "request", []int{1}},
	} {
		_, _, err := tc.c.Next(tc.kind, "alice", chainT0, tc.data)
		assert.ErrorIs(t, err, ErrInvalidEntry, name)
	}
}

func TestAppendLinesContinuesOnly(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l, err := Open(path, Options{Journal: true})
	require.NoError(t, err)
	defer l.Close()

	end, lines := chainLines(t, GenesisChain, 4)
	require.NoError(t, l.AppendLines(lines[:2]))

	// A gap, a repeat and a foreign chain are refused, and nothing of the
	// batch is written.
	for name, batch := range map[string][][]byte{
		"gap":             lines[3:],
		"repeat":          lines[1:3],
		"good then a gap": {lines[2], lines[2]},
	} {
		err := l.AppendLines(batch)
		assert.ErrorIs(t, err, ErrNotContinuation, name)
	}
	head, err := l.Head()
	require.NoError(t, err)
	assert.Equal(t, uint64(2), head.Seq)

	require.NoError(t, l.AppendLines(lines[2:]))
	head, err = l.Head()
	require.NoError(t, err)
	assert.Equal(t, end, head)
}

func TestJournalRefusesOtherWriters(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l, err := Open(path, Options{Journal: true})
	require.NoError(t, err)
	defer l.Close()
	_, err = l.Append("request", "alice", nil)
	assert.ErrorIs(t, err, ErrInvalidEntry)
	_, err = l.Checkpoint(chainTestSigner(t))
	assert.ErrorIs(t, err, ErrInvalidEntry)

	// Another process cannot open it for appending either, while the
	// journal runs or after.
	_, err = Open(path, Options{})
	assert.ErrorIs(t, err, ErrJournal)
	require.NoError(t, l.Close())
	_, err = Open(path, Options{})
	assert.ErrorIs(t, err, ErrJournal)
}

func TestJournalTornTailMovedWithoutEntry(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	end, lines := chainLines(t, GenesisChain, 3)
	var data []byte
	for _, l := range lines[:2] {
		data = append(append(data, l...), '\n')
	}
	data = append(data, lines[2][:10]...) // a write cut by a crash
	require.NoError(t, os.WriteFile(path, data, 0o600))

	l, err := Open(path, Options{Journal: true, RepairTornTail: true})
	require.NoError(t, err)
	defer l.Close()
	require.NotNil(t, l.Repaired())
	head, err := l.Head()
	require.NoError(t, err)
	assert.Equal(t, uint64(2), head.Seq, "no repair entry: the writer writes the lost line again")

	require.NoError(t, l.AppendLines(lines[2:]))
	head, err = l.Head()
	require.NoError(t, err)
	assert.Equal(t, end, head)
	_, err = os.Stat(l.Repaired().Sidecar)
	assert.NoError(t, err, "the torn bytes are kept aside")
}

func TestSignHeadWritesNoEntry(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l, err := Open(path, Options{Journal: true})
	require.NoError(t, err)
	defer l.Close()
	_, lines := chainLines(t, GenesisChain, 2)
	require.NoError(t, l.AppendLines(lines))

	signer := chainTestSigner(t)
	h, err := l.SignHead(signer)
	require.NoError(t, err)
	assert.Equal(t, uint64(2), h.Seq)
	head, err := l.Head()
	require.NoError(t, err)
	assert.Equal(t, uint64(2), head.Seq, "signing the head adds no entry")

	headFile, err := os.ReadFile(path + HeadSuffix)
	require.NoError(t, err)
	log, err := os.ReadFile(path)
	require.NoError(t, err)
	_, err = VerifyCheckpoint(bytes.NewReader(log), headFile, signer.PublicKey())
	require.NoError(t, err)

	// Cutting the last entry off is caught against the signed head.
	cut := log[:bytes.LastIndexByte(log[:len(log)-1], '\n')+1]
	_, err = VerifyCheckpoint(bytes.NewReader(cut), headFile, signer.PublicKey())
	assert.True(t, errors.Is(err, ErrTruncated), "got %v", err)
}

func chainTestSigner(t *testing.T) ssh.Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	s, err := ssh.NewSignerFromKey(priv)
	require.NoError(t, err)
	return s
}
