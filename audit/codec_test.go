package audit

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var update = flag.Bool("update", false, "rewrite testdata/golden.jsonl")

const goldenPath = "testdata/golden.jsonl"

// goldenEntries is the content of testdata/golden.jsonl: a short day of a
// jitssh deployment, with the odd corners of the format (escaped HTML,
// non-ASCII, a serial above 2^63, no actor, no data, trimmed nanoseconds).
func goldenEntries() []struct {
	kind, actor string
	data        any
	time        time.Time
} {
	at := func(s string) time.Time {
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			panic(err)
		}
		return t
	}
	type m = map[string]any
	return []struct {
		kind, actor string
		data        any
		time        time.Time
	}{
		{KindPolicyReload, "jitssh", m{"policy": "/etc/jitssh/policy.yaml", "rules": 3}, at("2025-06-01T09:00:00Z")},
		{KindRequest, "alice", m{"id": "req-01", "repo": "demo/app", "ref": "refs/heads/feature/login", "access": "write", "ttl": "1h0m0s", "reason": "fix <login> & tests"}, at("2025-06-01T09:01:02.5Z")},
		{KindApprove, "bob", m{"id": "req-01", "reason": "looks good"}, at("2025-06-01T09:03:00.123456789Z")},
		{KindIssue, "jitssh", m{"id": "req-01", "serial": 1001, "key_id": "alice/req-01", "principals": []string{"git:write:demo/app:refs/heads/feature/*"}}, at("2025-06-01T09:03:00.2Z")},
		{KindGit, "alice", m{"serial": 1001, "key_id": "alice/req-01", "repo": "demo/app", "op": "git-receive-pack", "decision": "allow"}, at("2025-06-01T09:10:11Z")},
		{KindGit, "alice", m{"serial": 1001, "key_id": "alice/req-01", "repo": "demo/app", "op": "git-receive-pack", "decision": "deny", "reason": "refs/heads/main not granted"}, at("2025-06-01T09:12:00Z")},
		{KindRequest, "carol", m{"id": "req-02", "repo": "demo/ops", "ref": "refs/heads/main", "access": "force", "reason": "rewrite history"}, at("2025-06-01T10:00:00Z")},
		{KindDeny, "bob", m{"id": "req-02", "reason": "no ticket"}, at("2025-06-01T10:05:00Z")},
		{KindCASign, "root", m{"serial": uint64(1<<63 | 7), "key_id": "break-glass/zoë"}, at("2025-06-01T11:00:00Z")},
		{KindRevoke, "bob", m{"serial": 1001, "reason": "task done"}, at("2025-06-01T11:30:00Z")},
		{KindExpire, "", m{"serial": 1001}, at("2025-06-01T12:03:00.2Z")},
		{KindPolicyReload, "jitssh", nil, at("2025-06-01T12:30:00Z")},
	}
}

// goldenLog encodes goldenEntries with the log's own encoder.
func goldenLog(t *testing.T) []byte {
	t.Helper()
	var out bytes.Buffer
	h := genesis
	for _, g := range goldenEntries() {
		data, err := encodeData(g.data)
		require.NoError(t, err)
		e, line, err := h.next(g.kind, g.actor, data, g.time)
		require.NoError(t, err)
		out.Write(line)
		out.WriteByte('\n')
		h = advance(e.Seq, line)
	}
	return out.Bytes()
}

// TestGoldenLog pins the line format: a change that alters how entries are
// written would make every existing log unverifiable.
func TestGoldenLog(t *testing.T) {
	got := goldenLog(t)
	if *update {
		require.NoError(t, os.MkdirAll(filepath.Dir(goldenPath), 0o755))
		require.NoError(t, os.WriteFile(goldenPath, got, 0o644))
	}
	want, err := os.ReadFile(goldenPath)
	require.NoError(t, err)
	require.Equal(t, string(want), string(got), "encoding changed; if on purpose, rerun with -update")

	sum, err := Verify(bytes.NewReader(want))
	require.NoError(t, err)
	lines := bytes.Split(bytes.TrimSuffix(want, []byte("\n")), []byte("\n"))
	assert.Equal(t, uint64(len(lines)), sum.Entries)
	assert.Equal(t, lineHash(lines[len(lines)-1]), sum.Head)
	assert.Equal(t, goldenEntries()[len(lines)-1].time, sum.LastTime)
}

// TestEncodeMatchesEncodingJSON checks the hand-written encoder against
// encoding/json, and the parser against json.Unmarshal, on awkward values.
func TestEncodeMatchesEncodingJSON(t *testing.T) {
	strs := []string{
		"git", "", "alice", "zoë", "日本", "<script>&", `quote " back \ slash`,
		"tab\tnew\nline\r", "\x00\x01\x1f\x7f", "bad utf-8 \xff\xfe", "sep \u2028 \u2029",
		"emoji 🙂", "\u00e9\u0301",
	}
	datas := []any{
		nil,
		map[string]any{},
		map[string]any{"serial": uint64(18446744073709551615), "repo": "a/b"},
		map[string]any{"html": "<a href='x'>&amp;</a>", "nested": map[string]any{"list": []any{1, "two", nil, true, 2.5}}},
		json.RawMessage(`{ "spaced" : [ 1 , 2 ] , "u" : "\u2028<" }`),
	}
	times := []time.Time{
		time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC),
		time.Date(2025, 1, 2, 3, 4, 5, 100, time.UTC),
		time.Date(2025, 1, 2, 3, 4, 5, 120000000, time.UTC),
		time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC),
		time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC),
	}
	h := head{seq: 7918, hash: GenesisHash}
	for i, s := range strs {
		for j, d := range datas {
			data, err := encodeData(d)
			require.NoError(t, err)
			kind := s
			if kind == "" {
				kind = "k"
			}
			e, got, err := h.next(kind, strs[(i+j)%len(strs)], data, times[(i+j)%len(times)])
			require.NoError(t, err)
			h = advance(e.Seq, got)
			want, err := json.Marshal(&e)
			require.NoError(t, err)
			require.Equal(t, string(want), string(got))

			parsed, err := parseLine(got)
			require.NoError(t, err, "line %s", got)
			assert.Equal(t, e, parsed, "the entry Append returns is the one read back")
			var std Entry
			require.NoError(t, json.Unmarshal(got, &std))
			assert.Equal(t, std.Kind, parsed.Kind)
			assert.Equal(t, std.Actor, parsed.Actor)
			assert.Equal(t, string(std.Data), string(parsed.Data))
			assert.True(t, std.Time.Equal(parsed.Time))
		}
	}
}

func TestParseLineRejects(t *testing.T) {
	base := Entry{Seq: 5, Time: time.Date(2025, 6, 1, 9, 0, 0, 500000000, time.UTC), Kind: "git", Actor: "alice", Data: json.RawMessage(`{"repo":"demo/app","serial":7}`), Prev: GenesisHash}
	good, err := appendEntry(nil, &base)
	require.NoError(t, err)
	_, err = parseLine(good)
	require.NoError(t, err, "the base line must parse")

	prev := `"prev":"` + GenesisHash + `"`
	tests := []struct {
		name string
		line string
	}{
		{"empty", ``},
		{"not json", `hello`},
		{"space after colon", strings.Replace(string(good), `"seq":5`, `"seq": 5`, 1)},
		{"fields reordered", `{"time":"2025-06-01T09:00:00.5Z","seq":5,"kind":"git","actor":"alice","data":{"repo":"demo/app","serial":7},` + prev + `}`},
		{"duplicate seq", `{"seq":5,"seq":6,"time":"2025-06-01T09:00:00.5Z","kind":"git",` + prev + `}`},
		{"unknown field", `{"seq":5,"time":"2025-06-01T09:00:00.5Z","kind":"git","extra":1,` + prev + `}`},
		{"leading zero seq", strings.Replace(string(good), `"seq":5`, `"seq":05`, 1)},
		{"seq zero", strings.Replace(string(good), `"seq":5`, `"seq":0`, 1)},
		{"negative seq", strings.Replace(string(good), `"seq":5`, `"seq":-5`, 1)},
		{"seq overflows", strings.Replace(string(good), `"seq":5`, `"seq":18446744073709551616`, 1)},
		{"time with offset", strings.Replace(string(good), `09:00:00.5Z`, `11:00:00.5+02:00`, 1)},
		{"time with +00:00", strings.Replace(string(good), `09:00:00.5Z`, `09:00:00.5+00:00`, 1)},
		{"time trailing zeros", strings.Replace(string(good), `09:00:00.5Z`, `09:00:00.500Z`, 1)},
		{"time not a time", strings.Replace(string(good), `2025-06-01T09:00:00.5Z`, `yesterday`, 1)},
		{"kind escaped needlessly", strings.Replace(string(good), `"kind":"git"`, `"kind":"\u0067it"`, 1)},
		{"kind empty", strings.Replace(string(good), `"kind":"git"`, `"kind":""`, 1)},
		{"kind not a string", strings.Replace(string(good), `"kind":"git"`, `"kind":7`, 1)},
		{"actor empty but present", strings.Replace(string(good), `"actor":"alice"`, `"actor":""`, 1)},
		{"raw html in actor", strings.Replace(string(good), `"actor":"alice"`, `"actor":"<alice>"`, 1)},
		{"raw control byte in actor", strings.Replace(string(good), `"actor":"alice"`, "\"actor\":\"al\tice\"", 1)},
		{"invalid utf-8 in actor", strings.Replace(string(good), `"actor":"alice"`, "\"actor\":\"al\xffice\"", 1)},
		{"data null", strings.Replace(string(good), `{"repo":"demo/app","serial":7}`, `null`, 1)},
		{"data array", strings.Replace(string(good), `{"repo":"demo/app","serial":7}`, `[1,2]`, 1)},
		{"data not compact", strings.Replace(string(good), `{"repo":"demo/app","serial":7}`, `{"repo": "demo/app","serial":7}`, 1)},
		{"data invalid", strings.Replace(string(good), `{"repo":"demo/app","serial":7}`, `{"repo":"demo/app","serial":}`, 1)},
		{"data two values", strings.Replace(string(good), `{"repo":"demo/app","serial":7}`, `{"repo":"demo/app"}{"serial":7}`, 1)},
		{"data raw html", strings.Replace(string(good), `{"repo":"demo/app","serial":7}`, `{"repo":"<demo>/app","serial":7}`, 1)},
		{"data raw U+2028", strings.Replace(string(good), `{"repo":"demo/app","serial":7}`, "{\"repo\":\"demo\u2028app\",\"serial\":7}", 1)},
		{"prev uppercase", strings.Replace(string(good), GenesisHash, strings.ToUpper(GenesisHash), 1)},
		{"prev short", strings.Replace(string(good), GenesisHash, GenesisHash[:63], 1)},
		{"prev missing", strings.Replace(string(good), `,`+prev, ``, 1)},
		{"trailing garbage", string(good) + ` `},
		{"two entries on a line", string(good) + string(good)},
		{"carriage return", string(good) + "\r"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := parseLine([]byte(tt.line))
			require.Error(t, err, "parseLine(%q) = %+v, want an error", tt.line, e)
		})
	}
}

// FuzzParseLine checks that whatever the parser accepts is exactly what
// encoding/json writes for the entry, and reads back the same, so no two
// parsers can disagree about an accepted line.
func FuzzParseLine(f *testing.F) {
	golden, err := os.ReadFile(goldenPath)
	if err != nil {
		f.Fatal(err)
	}
	for _, line := range bytes.Split(bytes.TrimSpace(golden), []byte("\n")) {
		f.Add(line)
	}
	f.Add([]byte(`{"seq":1,"time":"2025-01-01T00:00:00Z","kind":"k","prev":"` + GenesisHash + `"}`))
	f.Fuzz(func(t *testing.T, line []byte) {
		e, err := parseLine(line)
		if err != nil {
			return
		}
		std, err := json.Marshal(&e)
		if err != nil {
			t.Fatalf("accepted %q but encoding/json cannot encode it: %v", line, err)
		}
		if !bytes.Equal(std, line) {
			t.Fatalf("accepted %q, which encoding/json writes as %q", line, std)
		}
		var back Entry
		if err := json.Unmarshal(line, &back); err != nil {
			t.Fatalf("accepted %q, which encoding/json cannot read: %v", line, err)
		}
		if back.Seq != e.Seq || back.Kind != e.Kind || back.Actor != e.Actor || back.Prev != e.Prev || !back.Time.Equal(e.Time) || !bytes.Equal(back.Data, e.Data) {
			t.Fatalf("accepted %q as %+v, encoding/json reads %+v", line, e, back)
		}
	})
}

func TestEncodeData(t *testing.T) {
	tests := []struct {
		name    string
		data    any
		want    string
		wantErr bool
	}{
		{"nil", nil, "", false},
		{"typed nil map", map[string]any(nil), "", false},
		{"empty object", map[string]any{}, "{}", false},
		{"struct", struct {
			Serial uint64 `json:"serial"`
		}{42}, `{"serial":42}`, false},
		{"raw message compacted", json.RawMessage(`{ "a" : 1 }`), `{"a":1}`, false},
		{"html escaped", map[string]string{"r": "<&>"}, `{"r":"\u003c\u0026\u003e"}`, false},
		{"string", "text", "", true},
		{"array", []int{1}, "", true},
		{"number", 7, "", true},
		{"bytes", []byte("{}"), "", true},
		{"unencodable", map[string]any{"c": make(chan int)}, "", true},
		{"invalid raw", json.RawMessage(`{`), "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := encodeData(tt.data)
			if tt.wantErr {
				require.ErrorIs(t, err, ErrInvalidEntry)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, string(got))
		})
	}
}
