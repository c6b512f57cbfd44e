package audit

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var indexBase = time.Date(2025, 6, 1, 8, 0, 0, 0, time.UTC)

// indexTestLog makes a log of n entries spread over several hours, big
// enough to span many blocks and posting chunks, with the awkward cases of
// data an index meets: serials that are not uint64s, a nested serial, a
// repeated key, a repo that is not a string, an actor with a NUL, and a
// clock that steps back.
func indexTestLog(t *testing.T, n int) ([]byte, []Entry) {
	t.Helper()
	var out bytes.Buffer
	var entries []Entry
	h := genesis
	for i := 1; i <= n; i++ {
		kind := []string{KindGit, KindGit, KindRequest, KindApprove, KindIssue, KindRevoke}[i%6]
		actor := "user" + strconv.Itoa(i%13)
		ts := indexBase.Add(time.Duration(i) * 7 * time.Second)
		var data string
		switch {
		case i%97 == 0:
			data = `{"serial":"` + strconv.Itoa(i%50) + `","repo":7}`
		case i%89 == 0:
			data = `{"serial":-1,"repo":"demo/app1"}`
		case i%83 == 0:
			data = `{"serial":1.5}`
		case i%79 == 0:
			data = `{"nested":{"serial":` + strconv.Itoa(i%50) + `},"repo":"demo/app2"}`
		case i%73 == 0:
			data = `{"serial":3,"serial":` + strconv.Itoa(i%50) + `}`
		case i%71 == 0:
			data = `{"serial":18446744073709551615,"repo":"demo/app\u0000x"}`
		case i%11 == 0:
			data = ""
		default:
			data = `{"repo":"demo/app` + strconv.Itoa(i%5) + `","serial":` + strconv.Itoa(i%50) + `}`
		}
		if i%67 == 0 {
			actor = "nul\x00actor"
		}
		if i%61 == 0 {
			ts = ts.Add(-2 * time.Hour) // the clock stepped back
		}
		var raw json.RawMessage
		if data != "" {
			var err error
			raw, err = encodeData(json.RawMessage(data))
			require.NoError(t, err)
		}
		e, line, err := h.next(kind, actor, raw, ts)
		require.NoError(t, err)
		out.Write(line)
		out.WriteByte('\n')
		h = advance(e.Seq, line)
		entries = append(entries, e)
	}
	return out.Bytes(), entries
}

// listNaive is the reference for Index.List: a scan that decodes every
// entry's data with encoding/json.
func listNaive(entries []Entry, f Filter) []Entry {
	var out []Entry
	for _, e := range entries {
		var fields map[string]json.RawMessage
		json.Unmarshal(e.Data, &fields)
		serial, serr := strconv.ParseUint(string(fields["serial"]), 10, 64)
		var repo string
		json.Unmarshal(fields["repo"], &repo)
		switch {
		case f.Kind != "" && e.Kind != f.Kind,
			f.Actor != "" && e.Actor != f.Actor,
			f.Serial != nil && (serr != nil || serial != *f.Serial),
			f.Repo != "" && repo != f.Repo,
			!f.Since.IsZero() && e.Time.Before(f.Since),
			!f.Until.IsZero() && !e.Time.Before(f.Until):
			continue
		}
		out = append(out, e)
		if f.Limit > 0 && len(out) == f.Limit {
			break
		}
	}
	return out
}

func indexFilters() []Filter {
	u := func(v uint64) *uint64 { return &v }
	hour := func(h int) time.Time { return indexBase.Add(time.Duration(h) * time.Hour) }
	return []Filter{
		{},
		{Limit: 10},
		{Kind: KindGit},
		{Kind: KindIssue, Limit: 7},
		{Kind: "nothing"},
		{Actor: "user7"},
		{Actor: "nul\x00actor"},
		{Actor: "user7", Kind: KindRequest},
		{Serial: u(5)},
		{Serial: u(3)},
		{Serial: u(0)},
		{Serial: u(18446744073709551615)},
		{Serial: u(12), Kind: KindRevoke},
		{Serial: u(12), Repo: "demo/app2"},
		{Serial: u(1 << 40)},
		{Repo: "demo/app3"},
		{Repo: "demo/app1", Actor: "user3"},
		{Repo: "demo/app\x00x"},
		{Repo: "nowhere"},
		{Since: hour(1), Until: hour(2)},
		{Since: hour(2).Add(30 * time.Minute)},
		{Until: hour(1).Add(time.Second)},
		{Since: hour(1), Until: hour(3), Limit: 25},
		{Since: hour(1), Until: hour(1)},
		{Since: hour(-10), Until: hour(-9)},
		{Kind: KindGit, Since: hour(1), Until: hour(2), Limit: 3},
		{Actor: "user2", Repo: "demo/app2", Since: hour(1), Kind: KindGit},
	}
}

func TestIndexList(t *testing.T) {
	log, entries := indexTestLog(t, 3000)
	built, err := BuildIndex(bytes.NewReader(log))
	require.NoError(t, err)
	assert.Equal(t, len(entries), built.Len())

	// The same entries added one by one in random order must make an
	// index that answers the same: splits, chunks whose first seq changes.
	added, err := NewIndex()
	require.NoError(t, err)
	shuffled := append([]Entry(nil), entries...)
	rand.New(rand.NewPCG(1, 2)).Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	for _, e := range shuffled {
		require.NoError(t, added.Add(e))
	}
	assert.Equal(t, len(entries), added.Len())

	for _, f := range indexFilters() {
		want := listNaive(entries, f)
		name := fmt.Sprintf("%+v", f)
		assert.Equal(t, want, built.List(f), "built: List(%s)", name)
		assert.Equal(t, want, added.List(f), "added: List(%s)", name)
	}
	for _, f := range []Filter{{Kind: KindGit}, {Serial: new(uint64)}, {Repo: "demo/app3"}, {Actor: "user7"}, {Since: indexBase.Add(time.Hour), Until: indexBase.Add(2 * time.Hour)}} {
		assert.NotEmpty(t, built.List(f), "the test data must exercise %+v", f)
	}

	for _, ix := range []*Index{built, added} {
		for _, e := range entries {
			got, ok := ix.Get(e.Seq)
			require.True(t, ok, "Get(%d)", e.Seq)
			require.Equal(t, e, got)
		}
		_, ok := ix.Get(0)
		assert.False(t, ok)
		_, ok = ix.Get(uint64(len(entries) + 1))
		assert.False(t, ok)
	}
}

// TestIndexGolden reads the golden log the way an auditor asks about it.
func TestIndexGolden(t *testing.T) {
	f, err := os.Open(goldenPath)
	require.NoError(t, err)
	defer f.Close()
	ix, err := BuildIndex(f)
	require.NoError(t, err)

	kinds := func(es []Entry) []string {
		var k []string
		for _, e := range es {
			k = append(k, e.Kind)
		}
		return k
	}
	serial := uint64(1001)
	assert.Equal(t, []string{KindIssue, KindGit, KindGit, KindRevoke, KindExpire}, kinds(ix.List(Filter{Serial: &serial})), "the life of certificate 1001")
	breakGlass := uint64(1<<63 | 7)
	assert.Equal(t, []string{KindCASign}, kinds(ix.List(Filter{Serial: &breakGlass})))
	assert.Equal(t, []string{KindApprove, KindDeny, KindRevoke}, kinds(ix.List(Filter{Actor: "bob"})))
	assert.Equal(t, []string{KindRequest}, kinds(ix.List(Filter{Repo: "demo/ops"})))
	assert.Equal(t, []string{KindGit}, kinds(ix.List(Filter{Repo: "demo/app", Kind: KindGit, Limit: 1})))
	morning := ix.List(Filter{Until: time.Date(2025, 6, 1, 10, 0, 0, 0, time.UTC)})
	assert.Len(t, morning, 6)
}

func TestIndexRefuses(t *testing.T) {
	lines := goldenLines(t)
	lines[3], lines[4] = lines[4], lines[3]
	_, err := BuildIndex(bytes.NewReader(joinLines(lines)))
	require.ErrorIs(t, err, ErrSeq, "an index is only built over a log that verifies")

	ix, err := NewIndex()
	require.NoError(t, err)
	e, err := parseLine(goldenLines(t)[0])
	require.NoError(t, err)
	require.NoError(t, ix.Add(e))
	require.ErrorIs(t, ix.Add(e), ErrInvalidEntry, "a seq is indexed once")
	for name, bad := range map[string]Entry{
		"seq 0":        {Kind: "k", Prev: GenesisHash},
		"bad prev":     {Seq: 9, Kind: "k", Prev: "zz"},
		"data invalid": {Seq: 9, Kind: "k", Prev: GenesisHash, Data: json.RawMessage(`{"serial":`)},
		"data array":   {Seq: 9, Kind: "k", Prev: GenesisHash, Data: json.RawMessage(`[1]`)},
	} {
		assert.ErrorIs(t, ix.Add(bad), ErrInvalidEntry, name)
	}
	assert.Equal(t, 1, ix.Len())
}

// TestIndexConcurrent reads while entries are added; run with -race.
func TestIndexConcurrent(t *testing.T) {
	_, entries := indexTestLog(t, 1500)
	ix, err := NewIndex()
	require.NoError(t, err)
	done := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				got := ix.List(Filter{Kind: KindGit})
				for i := 1; i < len(got); i++ {
					if got[i].Seq <= got[i-1].Seq {
						t.Errorf("List out of order: %d after %d", got[i].Seq, got[i-1].Seq)
						return
					}
				}
			}
		}()
	}
	for _, e := range entries {
		require.NoError(t, ix.Add(e))
	}
	close(done)
	wg.Wait()
	assert.Equal(t, listNaive(entries, Filter{Kind: KindGit}), ix.List(Filter{Kind: KindGit}))
}

func TestDataFields(t *testing.T) {
	tests := []struct {
		data      string
		serial    uint64
		hasSerial bool
		repo      string
	}{
		{`{"serial":42,"repo":"demo/app"}`, 42, true, "demo/app"},
		{`{"repo":"a\/b\u00e9","serial":0}`, 0, true, "a/bé"},
		{` { "serial" : 7 , "repo" : "x" } `, 7, true, "x"},
		{`{"serial":18446744073709551615}`, 18446744073709551615, true, ""},
		{`{"serial":18446744073709551616}`, 0, false, ""},
		{`{"serial":-1}`, 0, false, ""},
		{`{"serial":1.0}`, 0, false, ""},
		{`{"serial":1e3}`, 0, false, ""},
		{`{"serial":"42"}`, 0, false, ""},
		{`{"serial":null,"repo":null}`, 0, false, ""},
		{`{"repo":["a"]}`, 0, false, ""},
		{`{"Serial":42,"REPO":"x"}`, 0, false, ""},
		{`{"s\u0065rial":42}`, 42, true, ""},
		{`{"a":{"serial":1,"repo":"in"},"b":[{"serial":2}],"c":"serial"}`, 0, false, ""},
		{`{"serial":1,"serial":2,"repo":"a","repo":"b"}`, 2, true, "b"},
		{`{"serial":1,"serial":"x"}`, 0, false, ""},
		{`{"k":"a \" quote, {\"serial\":9}","serial":3}`, 3, true, ""},
		{`{}`, 0, false, ""},
		{``, 0, false, ""},
		{`[{"serial":1}]`, 0, false, ""},
		{`{"serial":1`, 0, false, ""},
		{`{"serial":1,}`, 0, false, ""},
	}
	for _, tt := range tests {
		serial, hasSerial, repo := dataFields([]byte(tt.data))
		assert.Equal(t, tt.serial, serial, "serial of %s", tt.data)
		assert.Equal(t, tt.hasSerial, hasSerial, "has serial: %s", tt.data)
		assert.Equal(t, tt.repo, repo, "repo of %s", tt.data)
	}
}

// FuzzDataFields compares dataFields with encoding/json on valid JSON.
func FuzzDataFields(f *testing.F) {
	for _, s := range []string{`{"serial":42,"repo":"demo/app"}`, `{"a":{"serial":1},"serial":2}`, `{"repo":"\u00e9\"","serial":1,"serial":2}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var fields map[string]json.RawMessage
		if !json.Valid(data) || json.Unmarshal(data, &fields) != nil {
			return
		}
		wantSerial, serr := strconv.ParseUint(string(fields["serial"]), 10, 64)
		var wantRepo string
		json.Unmarshal(fields["repo"], &wantRepo)
		serial, hasSerial, repo := dataFields(data)
		if hasSerial != (serr == nil) || serial != wantSerial && serr == nil || repo != wantRepo {
			t.Fatalf("dataFields(%q) = %d, %v, %q; encoding/json reads %d (%v), %q", data, serial, hasSerial, repo, wantSerial, serr, wantRepo)
		}
	})
}
