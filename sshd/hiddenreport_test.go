package sshd

import (
	"bytes"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func pktStr(payload string) string { return string(pktOf([]byte(payload))) }

// band frames data as one side-band packet.
func band(n byte, data string) string { return pktStr(string([]byte{n}) + data) }

var testAdvert = pktStr("1111111111111111111111111111111111111111 refs/heads/feature/a\x00report-status report-status-v2 delete-refs side-band-64k quiet atomic ofs-delta object-format=sha1 agent=git/2\n") + "0000"

// testReason words a hidden ref's refusal as the tests expect to see it.
func testReason(ref string, deleting bool) string {
	if deleting {
		return "jitssh says no to deleting " + ref
	}
	return "jitssh says no to " + ref
}

// demux splits receive-pack's output after the advertisement into what
// each side band carried, or, without a side band, the packets' payloads.
func demux(t *testing.T, out string) (bands [4]string) {
	t.Helper()
	i := strings.Index(out, "0000")
	require.GreaterOrEqual(t, i, 0, "no advertisement")
	rest := []byte(out[i+4:])
	for len(rest) > 0 {
		size, ok := pktSize(rest)
		require.True(t, ok && size > 0, "bad packet at %q", rest)
		p := rest[pktHeaderLen:size]
		rest = rest[size:]
		if size == pktHeaderLen {
			continue
		}
		if p[0] >= 1 && p[0] <= 3 {
			bands[p[0]] += string(p[1:])
		} else {
			bands[0] += string(p)
		}
	}
	return bands
}

func TestHiddenReport(t *testing.T) {
	report := pktStr("unpack ok\n") +
		pktStr("ng refs/heads/main deny updating a hidden ref\n") +
		pktStr("ng refs/heads/old deny deleting a hidden ref\n") +
		pktStr("ng refs/heads/feature/b pre-receive hook declined\n") +
		pktStr("ok refs/heads/feature/a\n") +
		"0000"
	want := pktStr("unpack ok\n") +
		pktStr("ng refs/heads/main jitssh says no to refs/heads/main\n") +
		pktStr("ng refs/heads/old jitssh says no to deleting refs/heads/old\n") +
		pktStr("ng refs/heads/feature/b pre-receive hook declined\n") +
		pktStr("ok refs/heads/feature/a\n") +
		"0000"
	cut := 20 // inside the line for refs/heads/main
	tests := []struct {
		name    string
		in      string
		band    int    // where the report is: 0 its own packets, 1 side band 1
		band2   string // progress that must pass untouched
		verbose string // the whole expected output, when it is to be checked byte for byte
	}{
		{name: "no side band", in: testAdvert + report, band: 0,
			verbose: testAdvert + want},
		{name: "side band, a line cut across packets, keepalives and progress",
			in:   testAdvert + band(2, "remote: checking\n") + "0005\x01" + band(1, report[:cut]) + band(2, "remote: more\n") + band(1, report[cut:]) + "0000",
			band: 1, band2: "remote: checking\nremote: more\n"},
		{name: "version 1", in: "000eversion 1\n" + testAdvert + band(1, report) + "0000", band: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, chunk := range []int{len(tt.in), 1, 7} {
				var out bytes.Buffer
				h := &hiddenReport{w: &out, reason: testReason}
				for s := tt.in; len(s) > 0; {
					n := min(chunk, len(s))
					written, err := h.Write([]byte(s[:n]))
					require.NoError(t, err)
					require.Equal(t, n, written)
					s = s[n:]
				}
				require.NoError(t, h.flush())
				got := out.String()
				assert.True(t, strings.HasPrefix(got, tt.in[:strings.Index(tt.in, "0000")+4]), "the advertisement passes untouched")
				if tt.verbose != "" {
					assert.Equal(t, tt.verbose, got)
				}
				bands := demux(t, got)
				wantReport := want // as side band 1 carries it
				if tt.band == 0 {
					wantReport = demux(t, testAdvert+want)[0]
				}
				assert.Equal(t, wantReport, bands[tt.band], "the report, in chunks of %d", chunk)
				assert.Equal(t, tt.band2, bands[2])
				assert.True(t, strings.HasSuffix(got, "0000"))
			}
		})
	}
}

// TestHiddenReportPassesOthers: output that is not a report with a
// hidden ref in it reaches the client byte for byte.
func TestHiddenReportPassesOthers(t *testing.T) {
	for _, in := range []string{
		testAdvert,
		"0000",
		testAdvert + pktStr("unpack ok\n") + pktStr("ok refs/heads/feature/a\n") + "0000",
		testAdvert + pktStr("unpack index-pack failed\n") + pktStr("ng refs/heads/main unpacker error\n") + "0000",
		testAdvert + "zzzz" + pktStr("ng refs/heads/main deny updating a hidden ref\n"),
		testAdvert + band(3, "fatal\n"),
		testAdvert + band(1, "zzzz not a report") + band(1, pktStr("ng refs/heads/main deny updating a hidden ref\n")) + "0000",
		testAdvert[:30],
	} {
		var out bytes.Buffer
		h := &hiddenReport{w: &out, reason: testReason}
		_, err := h.Write([]byte(in))
		require.NoError(t, err)
		require.NoError(t, h.flush())
		assert.Equal(t, in, out.String())
	}
	// No reason to give: git's stays.
	var out bytes.Buffer
	h := &hiddenReport{w: &out, reason: func(string, bool) string { return "" }}
	in := testAdvert + pktStr("ng refs/heads/main deny updating a hidden ref\n") + "0000"
	_, err := h.Write([]byte(in))
	require.NoError(t, err)
	assert.Equal(t, in, out.String())
}

// FuzzHiddenReport: whatever receive-pack writes, and however the writes
// are cut, the client gets the same bytes, and with no reason to give
// the same data on every side band.
func FuzzHiddenReport(f *testing.F) {
	f.Add(testAdvert+band(1, pktStr("unpack ok\n")+pktStr("ng refs/heads/main deny updating a hidden ref\n")+"0000")+"0000", 3)
	f.Add(testAdvert+pktStr("unpack ok\n")+pktStr("ng x deny deleting a hidden ref\n")+"0000", 1)
	f.Add(testAdvert+band(1, "00"), 5)
	f.Fuzz(func(t *testing.T, in string, chunk int) {
		if chunk <= 0 {
			chunk = 1
		}
		run := func(step int, reason func(string, bool) string) string {
			var out bytes.Buffer
			h := &hiddenReport{w: &out, reason: reason}
			for s := in; len(s) > 0; {
				n := min(step, len(s))
				if _, err := h.Write([]byte(s[:n])); err != nil {
					t.Fatal(err)
				}
				s = s[n:]
			}
			if err := h.flush(); err != nil {
				t.Fatal(err)
			}
			return out.String()
		}
		whole := run(len(in)+1, testReason)
		if cut := run(chunk, testReason); cut != whole {
			t.Fatalf("cut in %d-byte writes: %q, at once: %q", chunk, cut, whole)
		}
		same := run(len(in)+1, func(string, bool) string { return "" })
		if !sameBands(in, same) {
			t.Fatalf("with nothing to rewrite, %q became %q", in, same)
		}
	})
}

// sameBands reports whether a and b carry the same bytes once side-band
// framing is taken off: band 1 data is framed anew, and may come later
// than progress on band 2 that it came before.
func sameBands(a, b string) bool {
	return a == b || unband(a) == unband(b)
}

// unband is s as what each side band carried, after the packets of no
// band in their order and whatever follows the first malformed packet.
func unband(s string) [5]string {
	var out [5]string
	rest := []byte(s)
	for len(rest) > 0 {
		size, ok := pktSize(rest)
		if !ok || size < 0 {
			break
		}
		p := rest[:size]
		rest = rest[size:]
		if size > pktHeaderLen && p[pktHeaderLen] >= 1 && p[pktHeaderLen] <= 3 {
			out[p[pktHeaderLen]] += string(p[pktHeaderLen+1:])
			continue
		}
		out[0] += string(p)
	}
	out[4] = string(rest)
	return out
}
