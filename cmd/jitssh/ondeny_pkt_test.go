package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const (
	oidA = "1111111111111111111111111111111111111111"
	oidB = "2222222222222222222222222222222222222222"
	oidZ = "0000000000000000000000000000000000000000"
)

func pkts(lines ...string) string {
	var b strings.Builder
	for _, l := range lines {
		if l == "" {
			b.WriteString("0000")
			continue
		}
		b.Write(pkt(l))
	}
	return b.String()
}

func TestReadRefAdvert(t *testing.T) {
	caps := "report-status report-status-v2 delete-refs side-band-64k quiet atomic ofs-delta object-format=sha1 agent=git/2.39.5 no-thin"
	tests := []struct {
		name    string
		in      string
		refs    map[string]string
		caps    []string
		wantErr string
	}{
		{"protocol v0",
			pkts(oidA+" refs/heads/main\x00"+caps+"\n", oidB+" refs/heads/feature/x\n", ""),
			map[string]string{"refs/heads/main": oidA, "refs/heads/feature/x": oidB}, strings.Fields(caps), ""},
		{"protocol v1",
			pkts("version 1\n", oidA+" refs/heads/main\x00"+caps+"\n", ""),
			map[string]string{"refs/heads/main": oidA}, strings.Fields(caps), ""},
		{"an empty repository, or every ref hidden",
			pkts(oidZ+" capabilities^{}\x00"+caps+"\n", ""),
			map[string]string{}, strings.Fields(caps), ""},
		{"an alternate's objects are no ref",
			pkts(oidA+" refs/heads/main\x00"+caps+"\n", oidB+" .have\n", ""),
			map[string]string{"refs/heads/main": oidA}, strings.Fields(caps), ""},
		{"the server's error", pkts("ERR access denied\n"), nil, nil, "the server says: access denied"},
		{"not an object name", pkts("xyz refs/heads/main\x00"+caps+"\n", ""), nil, nil, "bad line"},
		{"cut short", pkts(oidA + " refs/heads/main\x00" + caps + "\n")[:30], nil, nil, "unexpected EOF"},
		{"bad length", "zzzz", nil, nil, "bad pkt-line length"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var tee bytes.Buffer
			adv, err := readRefAdvert(strings.NewReader(tt.in), &tee)
			if tt.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.refs, adv.refs)
			assert.Equal(t, tt.caps, adv.caps)
			assert.Equal(t, tt.in, tee.String(), "passed on byte for byte")
		})
	}
}

func TestReadPushRequest(t *testing.T) {
	first := oidA + " " + oidB + " refs/heads/main\x00 report-status-v2 side-band-64k quiet object-format=sha1 agent=git/2.39.5\n"
	tests := []struct {
		name       string
		in         string
		cmds       []refCmd
		options    []string
		replayable bool
		signed     bool
		rest       string // what is left for the pack
		wantErr    string
	}{
		{"one update, then the pack", pkts(first, "") + "PACK...",
			[]refCmd{{oidA, oidB, "refs/heads/main"}}, nil, true, false, "PACK...", ""},
		{"several, a creation and a deletion", pkts(first, oidZ+" "+oidA+" refs/heads/new\n", oidB+" "+oidZ+" refs/heads/old\n", ""),
			[]refCmd{{oidA, oidB, "refs/heads/main"}, {oidZ, oidA, "refs/heads/new"}, {oidB, oidZ, "refs/heads/old"}}, nil, true, false, "", ""},
		{"nothing to push", pkts(""), nil, nil, true, false, "", ""},
		{"push options", pkts(oidA+" "+oidB+" refs/heads/main\x00report-status push-options\n", "", "ci.skip\n", "") + "PACK",
			[]refCmd{{oidA, oidB, "refs/heads/main"}}, []string{"ci.skip"}, true, false, "PACK", ""},
		{"from a shallow clone", pkts("shallow "+oidA+"\n", first, ""),
			[]refCmd{{oidA, oidB, "refs/heads/main"}}, nil, false, false, "", ""},
		{"a signed push", pkts("push-cert\x00 report-status\n", "certificate version 0.1\n"),
			nil, nil, false, true, pkts("certificate version 0.1\n"), ""},
		{"a line that is no update", pkts(oidA+" refs/heads/main\n", ""), nil, nil, true, false, "", "bad line"},
		{"git went away", pkts(first), nil, nil, true, false, "", "EOF"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := strings.NewReader(tt.in)
			req, err := readPushRequest(r)
			if tt.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.wantErr)
				assert.True(t, strings.HasPrefix(tt.in, string(req.raw)), "raw is what was read")
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.cmds, req.cmds)
			assert.Equal(t, tt.options, req.options)
			assert.Equal(t, tt.replayable, req.replayable())
			assert.Equal(t, tt.signed, req.signed)
			assert.Equal(t, tt.in, string(req.raw)+tt.rest, "raw is every byte read, and only those")
		})
	}
}

// TestEncodePushRequestRoundTrip: what git-ssh sends again reads back as
// the same request.
func TestEncodePushRequestRoundTrip(t *testing.T) {
	cmds := []refCmd{{oidA, oidB, "refs/heads/main"}, {oidZ, oidA, "refs/heads/new"}}
	caps := []string{"report-status-v2", "side-band-64k", "push-options", "agent=git/2.39.5"}
	for _, options := range [][]string{nil, {"ci.skip", "x=y"}} {
		enc := encodePushRequest(cmds, caps, options)
		req, err := readPushRequest(bytes.NewReader(enc))
		require.NoError(t, err)
		assert.Equal(t, cmds, req.cmds)
		assert.Equal(t, caps, req.caps)
		assert.Equal(t, options, req.options)
		assert.Equal(t, enc, req.raw)
	}
}

func TestSynthAdvertReadsBack(t *testing.T) {
	for _, refs := range []map[string]string{{}, {"refs/heads/main": oidA, "refs/heads/feature/x": oidB}} {
		adv, err := readRefAdvert(bytes.NewReader(synthAdvert(refs, "sha1")), nil)
		require.NoError(t, err)
		assert.Equal(t, refs, adv.refs)
		for _, c := range []string{"report-status", "side-band-64k", "delete-refs", "atomic", "ofs-delta", "object-format=sha1"} {
			assert.True(t, adv.has(c), c)
		}
		assert.False(t, adv.has("push-options"), "git-ssh would have to send them again")
	}
	adv, err := readRefAdvert(bytes.NewReader(synthAdvert(nil, "sha256")), nil)
	require.NoError(t, err)
	assert.True(t, adv.has("object-format=sha256"))
}

func TestEncodeReport(t *testing.T) {
	results := []refResult{{ref: "refs/heads/main"}, {ref: "refs/heads/x", reason: "request req-1 denied by carol: no\nnot now"}}
	plain := pkts("unpack ok\n", "ok refs/heads/main\n", "ng refs/heads/x request req-1 denied by carol: no not now\n", "")
	tests := []struct {
		name string
		caps string
		want string
	}{
		{"report-status", "report-status", plain},
		{"report-status-v2 in side band 1", "report-status-v2 side-band-64k", pkts("\x01"+plain, "")},
		{"no report asked for", "quiet", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := pushRequest{caps: strings.Fields(tt.caps)}
			assert.Equal(t, tt.want, string(encodeReport(req, results)))
		})
	}
}

// FuzzReadRefAdvert: any server output either fails to parse or gives
// refs with object names, and is passed on exactly as read.
func FuzzReadRefAdvert(f *testing.F) {
	f.Add(pkts(oidA+" refs/heads/main\x00report-status\n", ""))
	f.Add(pkts("version 1\n", oidZ+" capabilities^{}\x00report-status\n", ""))
	f.Add(pkts("ERR no\n"))
	f.Fuzz(func(t *testing.T, in string) {
		var tee bytes.Buffer
		adv, err := readRefAdvert(strings.NewReader(in), &tee)
		if !strings.HasPrefix(in, tee.String()) {
			t.Fatalf("passed on %q, which the input does not start with", tee.String())
		}
		if err != nil {
			return
		}
		for name, id := range adv.refs {
			if !isOID(id) || name == "" {
				t.Fatalf("ref %q = %q", name, id)
			}
		}
	})
}

// FuzzReadPushRequest: any input from git either fails to parse or gives
// well-formed updates, and raw is exactly the bytes consumed.
func FuzzReadPushRequest(f *testing.F) {
	f.Add(pkts(oidA+" "+oidB+" refs/heads/main\x00report-status\n", "") + "PACK")
	f.Add(pkts("shallow "+oidA+"\n", oidZ+" "+oidB+" refs/heads/x\x00push-options\n", "", "o\n", ""))
	f.Add(pkts("push-cert\x00\n"))
	f.Fuzz(func(t *testing.T, in string) {
		r := strings.NewReader(in)
		req, err := readPushRequest(r)
		consumed := len(in) - r.Len()
		if string(req.raw) != in[:consumed] {
			t.Fatalf("raw %q, consumed %q", req.raw, in[:consumed])
		}
		if err != nil {
			return
		}
		for _, c := range req.cmds {
			if !isOID(c.old) || !isOID(c.new) || c.ref == "" || strings.ContainsAny(c.ref, " \x00\n") {
				t.Fatalf("update %+v", c)
			}
		}
	})
}
