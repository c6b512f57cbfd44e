package sshd

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/jitssh/jitssh/principals"
)

func pkts(t testing.TB, lines ...string) []byte {
	t.Helper()
	var b bytes.Buffer
	for _, l := range lines {
		if l == "" {
			require.NoError(t, writeFlush(&b))
			continue
		}
		require.NoError(t, writePkt(&b, []byte(l)))
	}
	return b.Bytes()
}

// writeInChunks feeds data to w in pieces of n bytes, as a pipe might.
func writeInChunks(w io.Writer, data []byte, n int) error {
	for len(data) > 0 {
		k := min(n, len(data))
		if _, err := w.Write(data[:k]); err != nil {
			return err
		}
		data = data[k:]
	}
	return nil
}

func TestAdvertWriter(t *testing.T) {
	dropSymref := func(caps []string) []string {
		var out []string
		for _, c := range caps {
			if !strings.HasPrefix(c, "symref=") {
				out = append(out, c)
			}
		}
		return out
	}
	tests := []struct {
		name     string
		in, want []byte
	}{
		{"v0: first ref line edited, the rest untouched",
			pkts(t, "1111 HEAD\x00multi_ack symref=HEAD:refs/heads/main agent=git/2\n", "2222 refs/heads/main\n", ""),
			pkts(t, "1111 HEAD\x00multi_ack agent=git/2\n", "2222 refs/heads/main\n", "")},
		{"v1: the version line passes first",
			pkts(t, "version 1\n", "1111 refs/heads/a\x00symref=HEAD:refs/heads/main ofs-delta\n", ""),
			pkts(t, "version 1\n", "1111 refs/heads/a\x00ofs-delta\n", "")},
		{"no refs: the capabilities line",
			pkts(t, "0000 capabilities^{}\x00symref=HEAD:refs/heads/main\n", ""),
			pkts(t, "0000 capabilities^{}\x00\n", "")},
		{"flush first: nothing to edit", pkts(t, "", "1111 x\x00symref=HEAD:y\n"), pkts(t, "", "1111 x\x00symref=HEAD:y\n")},
	}
	for _, tt := range tests {
		for _, chunk := range []int{1, 3, 7, 1 << 16} {
			var out bytes.Buffer
			w := &advertWriter{w: &out, edit: dropSymref}
			require.NoError(t, writeInChunks(w, tt.in, chunk), tt.name)
			assert.Equal(t, string(tt.want), out.String(), "%s, chunks of %d", tt.name, chunk)
		}
	}
	var out bytes.Buffer
	_, err := (&advertWriter{w: &out, edit: dropSymref}).Write([]byte("zzzz"))
	assert.Error(t, err, "a bad pkt-line length")
}

// scopedVet is the request check of a reader of one branch.
var scopedVet = fetchVetter(Decision{
	Command: Command{Service: UploadPack, Repo: "demo/app"},
	Grants:  principals.Set{{Access: principals.Read, Repo: "demo/app", Ref: "refs/heads/main"}},
})

func TestRequestGuard(t *testing.T) {
	require.Nil(t, fetchVetter(Decision{
		Command: Command{Service: UploadPack, Repo: "demo/app"},
		Grants:  principals.Set{{Access: principals.Read, Repo: "demo/app", Ref: "*"}},
	}), "a reader of every ref has nothing to vet")
	wants := pkts(t, "want 1111 multi_ack\n", "deepen 1\n", "")
	haves := pkts(t, "have 2222\n", "deepen-not late\n", "done\n")
	tests := []struct {
		name    string
		in      []byte
		refused bool
	}{
		{"plain fetch", append(append([]byte{}, wants...), haves...), false},
		{"ls-remote: a flush only", pkts(t, ""), false},
		{"deepen-not in the wants", pkts(t, "want 1111\n", "deepen-not refs/heads/secret\n", ""), true},
		{"deepen-not as the first line", pkts(t, "deepen-not x\n", "want 1111\n", ""), true},
	}
	for _, tt := range tests {
		var client bytes.Buffer
		g := &requestGuard{r: iotestOneByte(tt.in), out: &client, vet: scopedVet}
		got, err := io.ReadAll(g)
		if tt.refused {
			require.ErrorIs(t, err, errRequestRefused, tt.name)
			assert.NotContains(t, string(got), "deepen-not", "%s: the refused line reached git", tt.name)
			assert.Contains(t, client.String(), "ERR jitssh: --shallow-exclude", tt.name)
			continue
		}
		require.NoError(t, err, tt.name)
		assert.Equal(t, tt.in, got, "%s: the request changed on its way", tt.name)
		assert.Empty(t, client.String(), tt.name)
	}

	// include-tag is dropped, even when the client asks for it unasked.
	in := pkts(t, "want 1111 multi_ack include-tag ofs-delta\n", "want 2222\n", "", "done\n")
	got, err := io.ReadAll(&requestGuard{r: iotestOneByte(in), out: io.Discard, vet: scopedVet})
	require.NoError(t, err)
	assert.Equal(t, string(pkts(t, "want 1111 multi_ack ofs-delta\n", "want 2222\n", "", "done\n")), string(got))
}

// iotestOneByte reads data one byte at a time.
func iotestOneByte(data []byte) io.Reader { return &oneByte{data} }

type oneByte struct{ b []byte }

func (o *oneByte) Read(p []byte) (int, error) {
	if len(o.b) == 0 {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	p[0] = o.b[0]
	o.b = o.b[1:]
	return 1, nil
}

// FuzzRequestGuard: whatever a client sends, the guard never panics, and
// it either hands git exactly what was sent or refuses with ERR, never a
// changed request.
func FuzzRequestGuard(f *testing.F) {
	for _, s := range []string{"0000", "0011want 1111\n0000", "0014deepen-not x\n0000", "000ahave 1\n0014deepen-not x\n", "zzzz", "0003"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var client bytes.Buffer
		// A vet that only refuses, so the framing is what is tested.
		vet := func(line []byte) ([]byte, string) {
			if _, reason := scopedVet(line); reason != "" {
				return nil, reason
			}
			return line, ""
		}
		got, err := io.ReadAll(&requestGuard{r: bytes.NewReader(data), out: &client, vet: vet})
		if errors.Is(err, errRequestRefused) {
			if !strings.HasPrefix(client.String()[4:], "ERR ") {
				t.Fatalf("refused without telling the client: %q", client.String())
			}
			return
		}
		if !bytes.HasPrefix(data, got) {
			t.Fatalf("handed git %q, not a prefix of %q", got, data)
		}
		if err == nil && !bytes.Equal(got, data) {
			t.Fatalf("handed git %q of %q", got, data)
		}
	})
}

// FuzzAdvertWriter: with an edit that keeps the capabilities, any
// well-framed output passes through with the same pkt-lines, however git
// splits its writes.
func FuzzAdvertWriter(f *testing.F) {
	for _, s := range []string{"0000", "0010version 1\n0000", "0020abcd HEAD\x00a b symref=HEAD:x\n0000", "zzzz", "0003abc"} {
		f.Add([]byte(s), uint8(3))
	}
	f.Fuzz(func(t *testing.T, data []byte, chunk uint8) {
		var out bytes.Buffer
		w := &advertWriter{w: &out, edit: func(caps []string) []string { return caps }}
		if err := writeInChunks(w, data, int(chunk)+1); err != nil {
			return
		}
		in, got := bytes.NewReader(data), bytes.NewReader(out.Bytes())
		for {
			a, errA := readPkt(in)
			b, errB := readPkt(got)
			if errA != nil || errB != nil {
				return
			}
			if i := bytes.IndexByte(a, 0); i >= 0 {
				// The capability list is re-spaced, nothing else.
				a = append(a[:i+1:i+1], strings.Join(strings.Fields(string(a[i+1:])), " ")+"\n"...)
			}
			if !bytes.Equal(a, b) {
				t.Fatalf("pkt-line %q came out as %q", a, b)
			}
		}
	})
}
