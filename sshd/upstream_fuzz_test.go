package sshd

import (
	"bufio"
	"bytes"
	"compress/zlib"
	"crypto/sha1"
	"strings"
	"testing"

	"github.com/jitssh/jitssh/principals"
)

const fuzzOID = "1111111111111111111111111111111111111111"

// FuzzReadAdvert: whatever a Git host sends as its advertisement, the
// proxy never panics, and what it would show a ref-scoped reader holds
// only refs the grant covers, with HEAD only when its target is covered.
func FuzzReadAdvert(f *testing.F) {
	for _, s := range []string{
		"0000",
		"003f" + fuzzOID + " HEAD\x00multi_ack symref=HEAD:refs/heads/main\n0000",
		"0010version 1\n0000",
		"004a" + fuzzOID + " capabilities^{}\x00report-status delete-refs side-band-64k\n0000",
		"003d" + fuzzOID + " refs/heads/secret\x00a\n003f" + fuzzOID + " refs/heads/feature/a^{}\n0000",
		"000dERR nope\n",
		"zzzz",
	} {
		f.Add([]byte(s))
	}
	grants, _ := principals.ParseSet([]string{"git:read:demo/app:refs/heads/feature/*"})
	d := Decision{Grants: grants, Command: Command{Service: UploadPack, Repo: "demo/app"}}
	f.Fuzz(func(t *testing.T, data []byte) {
		adv, err := readAdvert(bytes.NewReader(data))
		if err != nil {
			return
		}
		shown := adv.forHolder(d)
		for _, r := range shown.refs {
			if r.name == "HEAD" {
				target, _ := strings.CutPrefix(adv.capValue("symref"), "HEAD:")
				if !DecideRef(grants, "demo/app", target, RefRead).Allowed {
					t.Fatalf("HEAD shown, pointing at %q", target)
				}
				continue
			}
			if !DecideRef(grants, "demo/app", r.name, RefRead).Allowed {
				t.Fatalf("ref %q shown", r.name)
			}
		}
		if len(shown.haves) > 0 || len(shown.shallow) > 0 {
			t.Fatalf("host's .have or shallow lines shown: %v %v", shown.haves, shown.shallow)
		}
		var out bytes.Buffer
		if err := shown.write(&out); err != nil {
			return
		}
		back, err := readAdvert(&out)
		if err != nil {
			t.Fatalf("the advertisement written does not read back: %v", err)
		}
		if len(back.refs) != len(shown.refs) {
			t.Fatalf("%d refs written, %d read back", len(shown.refs), len(back.refs))
		}
	})
}

// FuzzReadPushRequest: whatever a pusher sends as its commands, the proxy
// never panics, and every command it accepts has object ids of the
// host's length and a ref name.
func FuzzReadPushRequest(f *testing.F) {
	for _, s := range []string{
		"0000",
		"0068" + fuzzOID + " " + fuzzOID + " refs/heads/main\x00report-status side-band-64k atomic\n0000",
		"0031shallow " + fuzzOID + "\n0000",
		"0020a b c\n0000",
		"zzzz",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		req, err := readPushRequest(bytes.NewReader(data), 40)
		if err != nil {
			return
		}
		for _, c := range req.cmds {
			if !isObjectID(c.old) || !isObjectID(c.new) || len(c.old) != 40 || c.ref == "" {
				t.Fatalf("accepted command %+v", c)
			}
		}
	})
}

// FuzzCopyPack: whatever a pusher sends as its pack, copyPack never
// panics, and what it accepts is exactly a prefix of what was sent.
func FuzzCopyPack(f *testing.F) {
	f.Add([]byte("PACK\x00\x00\x00\x02\x00\x00\x00\x00" + strings.Repeat("\x00", 20)))
	f.Add(append(buildFuzzPack(), "trailing"...))
	f.Add([]byte("PACK\x00\x00\x00\x02\xff\xff\xff\xff"))
	f.Add([]byte("nope"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var out bytes.Buffer
		if _, err := copyPack(bufio.NewReader(bytes.NewReader(data)), &out, 40); err != nil {
			return
		}
		if !bytes.HasPrefix(data, out.Bytes()) {
			t.Fatalf("copied %d bytes that are not a prefix of the input", out.Len())
		}
	})
}

// FuzzParseLinks: whatever an object holds, parseLinks never panics, and
// every link it finds is typed.
func FuzzParseLinks(f *testing.F) {
	f.Add("commit", []byte("tree "+fuzzOID+"\nparent "+fuzzOID+"\n\nmsg\n"))
	f.Add("tree", append([]byte("100644 a\x00"), bytes.Repeat([]byte{1}, 20)...))
	f.Add("tree", []byte("40000 d\x00short"))
	f.Add("tag", []byte("object "+fuzzOID+"\ntype commit\n\n"))
	f.Fuzz(func(t *testing.T, typ string, data []byte) {
		links, err := parseLinks(typ, data, 40)
		if err != nil {
			return
		}
		for _, l := range links {
			if typ != "tag" && l.typ == "" {
				t.Fatalf("untyped link %+v from a %s", l, typ)
			}
		}
	})
}

// buildFuzzPack is a valid one-blob pack, the seed copyPack must accept.
func buildFuzzPack() []byte {
	var b bytes.Buffer
	b.WriteString("PACK\x00\x00\x00\x02\x00\x00\x00\x01")
	b.WriteByte(3<<4 | 6) // a blob of 6 bytes
	z := zlib.NewWriter(&b)
	z.Write([]byte("hello\n"))
	z.Close()
	sum := sha1.Sum(b.Bytes())
	b.Write(sum[:])
	return b.Bytes()
}
