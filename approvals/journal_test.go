package approvals

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/jitssh/jitssh/audit"
)

// journalEnv is a Service on a real audit log, as the daemon runs it.
type journalEnv struct {
	*testEnv
	path string
	log  *audit.Log
}

func newJournalEnv(t *testing.T) *journalEnv {
	t.Helper()
	env := newTestService(t, nil)
	require.NoError(t, env.Close())
	je := &journalEnv{testEnv: env, path: filepath.Join(t.TempDir(), "audit.log")}
	je.openLog(t)
	require.NoError(t, je.tryOpen())
	return je
}

func (je *journalEnv) openLog(t *testing.T) {
	t.Helper()
	log, err := audit.Open(je.path, audit.Options{Journal: true, RepairTornTail: true, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	je.log = log
	t.Cleanup(func() { log.Close() })
	je.opts.Audit = log
}

func (je *journalEnv) tryOpen() error {
	s, err := Open(je.opts)
	if err != nil {
		return err
	}
	je.Service = s
	return nil
}

// stop closes the Service and its log.
func (je *journalEnv) stop(t *testing.T) {
	t.Helper()
	require.NoError(t, je.Close())
	require.NoError(t, je.log.Close())
}

func TestJournalLogMatchesState(t *testing.T) {
	je := newJournalEnv(t)
	r := je.submit(t, "alice", featureReq(t))
	je.approve(t, "bob", r.ID)
	je.stop(t)

	data, err := os.ReadFile(je.path)
	require.NoError(t, err)
	sum, err := audit.Verify(bytes.NewReader(data))
	require.NoError(t, err)

	// A restart writes nothing twice.
	je.openLog(t)
	require.NoError(t, je.tryOpen())
	je.stop(t)
	again, err := os.ReadFile(je.path)
	require.NoError(t, err)
	assert.Equal(t, data, again)
	chain, err := je.fsm.State().auditChain()
	require.NoError(t, err)
	assert.Equal(t, audit.Chain{Seq: sum.Entries, Hash: sum.Head}, chain)
}

func TestJournalRestoresLostEntriesFromRaft(t *testing.T) {
	for name, cut := range map[string]func(data []byte) []byte{
		"truncated": func(data []byte) []byte { return data[:bytes.LastIndexByte(data[:len(data)-1], '\n')+1] },
		"emptied":   func([]byte) []byte { return nil },
	} {
		t.Run(name, func(t *testing.T) {
			je := newJournalEnv(t)
			r := je.submit(t, "alice", featureReq(t))
			je.approve(t, "bob", r.ID)
			je.stop(t)
			data, err := os.ReadFile(je.path)
			require.NoError(t, err)
			require.NoError(t, os.WriteFile(je.path, cut(data), 0o600))

			// The raft log still holds every command, so the entries are
			// written again, byte for byte.
			je.openLog(t)
			require.NoError(t, je.tryOpen())
			je.stop(t)
			again, err := os.ReadFile(je.path)
			require.NoError(t, err)
			assert.Equal(t, string(data), string(again))
		})
	}
}

func TestJournalOpenRefusesAlteredLog(t *testing.T) {
	for name, tc := range map[string]struct {
		alter    func(data []byte) []byte
		snapshot bool // compact the raft log first, so nothing can be written again
	}{
		"truncated after a snapshot": {
			alter:    func(data []byte) []byte { return data[:bytes.LastIndexByte(data[:len(data)-1], '\n')+1] },
			snapshot: true,
		},
		"emptied after a snapshot": {alter: func([]byte) []byte { return nil }, snapshot: true},
		"last entry rewritten": {
			alter: func(data []byte) []byte {
				return bytes.Replace(data, []byte(`"fix login"`), []byte(`"fix LOGIN"`), 1)
			},
		},
	} {
		t.Run(name, func(t *testing.T) {
			je := newJournalEnv(t)
			je.submit(t, "alice", featureReq(t))
			if tc.snapshot {
				require.NoError(t, je.node.raft.Snapshot().Error())
			}
			je.stop(t)
			data, err := os.ReadFile(je.path)
			require.NoError(t, err)
			require.NoError(t, os.WriteFile(je.path, tc.alter(data), 0o600))

			je.openLog(t)
			err = je.tryOpen()
			require.Error(t, err, "a log that is not the state's must not be written on")
			assert.Contains(t, err.Error(), "audit log")
		})
	}
}

func TestJournalOpenRefusesForeignEntries(t *testing.T) {
	je := newJournalEnv(t)
	je.submit(t, "alice", featureReq(t))
	je.stop(t)

	// Another writer is refused the daemon's log, even while it is down...
	_, err := audit.Open(je.path, audit.Options{})
	require.ErrorIs(t, err, audit.ErrJournal)
	// ...but one that ignores the marker (an older binary, a hand edit)
	// appends to it, and the daemon will not write on after it.
	require.NoError(t, os.Remove(je.path+audit.JournalSuffix))
	other, err := audit.Open(je.path, audit.Options{})
	require.NoError(t, err)
	_, err = other.Append("ca.sign", "root", map[string]any{"serial": 1})
	require.NoError(t, err)
	require.NoError(t, other.Close())

	je.openLog(t)
	err = je.tryOpen()
	require.Error(t, err)
	assert.Contains(t, err.Error(), "another writer")
}
