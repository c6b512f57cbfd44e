package krl

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/crypto/ssh"
)

// FuzzParseKRL feeds arbitrary bytes to Parse. It must never panic, must
// wrap ErrInvalid in every error, and whatever it accepts must survive
// Marshal and Parse again: same bytes on a second round, and the same
// answer from IsRevoked for certificates and keys aimed at what the KRL
// lists. Seeds are in testdata/fuzz/FuzzParseKRL (go test -run TestKRLGolden
// -update rewrites them).
func FuzzParseKRL(f *testing.F) {
	for _, name := range []string{"jitssh.krl", "ssh-keygen.krl"} {
		if data, err := os.ReadFile(filepath.Join("testdata", name)); err == nil {
			f.Add(data)
		}
	}
	f.Add(krlHandMade(f))
	_, user := krlTestKey(f, "fuzz-user")
	_, otherCA := krlTestKey(f, "fuzz-other-ca")

	f.Fuzz(func(t *testing.T, data []byte) {
		k, err := Parse(data)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Parse error does not wrap ErrInvalid: %v", err)
			}
			if k != nil {
				t.Fatalf("Parse returned a KRL with error %v", err)
			}
			return
		}
		out, err := k.Marshal()
		if err != nil {
			t.Fatalf("Marshal of a parsed KRL: %v", err)
		}
		k2, err := Parse(out)
		if err != nil {
			t.Fatalf("Parse of Marshal output: %v", err)
		}
		out2, err := k2.Marshal()
		if err != nil {
			t.Fatalf("second Marshal: %v", err)
		}
		if !bytes.Equal(out, out2) {
			t.Fatalf("Marshal is not stable:\n%x\n%x", out, out2)
		}
		for _, probe := range append(krlFuzzProbes(k, user, otherCA), krlFuzzProbes(k2, user, otherCA)...) {
			if a, b := k.IsRevoked(probe), k2.IsRevoked(probe); a != b {
				t.Fatalf("IsRevoked(%s) = %v before Marshal, %v after", krlProbeName(probe), a, b)
			}
		}
	})
}

// krlFuzzProbes returns certificates and keys aimed at the edges of what k
// revokes: each CA with serials on and next to every listed serial and
// range bound, its key IDs, and the listed plain keys. Certificates are not
// signed; IsRevoked does not look at signatures.
func krlFuzzProbes(k *List, user, otherCA ssh.PublicKey) []ssh.PublicKey {
	const limit = 8 // entries looked at per list, to bound the work
	var probes []ssh.PublicKey
	cert := func(ca ssh.PublicKey, id string, serial uint64) {
		probes = append(probes, &ssh.Certificate{Key: user, SignatureKey: ca, CertType: ssh.UserCert, KeyId: id, Serial: serial})
	}
	near := func(n uint64) []uint64 {
		out := []uint64{n}
		if n > 0 {
			out = append(out, n-1)
		}
		if n < math.MaxUint64 {
			out = append(out, n+1)
		}
		return out
	}
	for _, s := range k.Certs[:min(len(k.Certs), limit)] {
		ca := s.CA
		if ca == nil {
			ca = otherCA
		}
		var serials []uint64
		for _, n := range s.Serials[:min(len(s.Serials), limit)] {
			serials = append(serials, near(n)...)
		}
		for _, r := range s.Ranges[:min(len(s.Ranges), limit)] {
			serials = append(serials, near(r.First)...)
			serials = append(serials, near(r.Last)...)
		}
		for _, n := range append(serials, 0) {
			cert(ca, "nobody", n)
		}
		for _, id := range s.KeyIDs[:min(len(s.KeyIDs), limit)] {
			cert(ca, id, 0)
			cert(otherCA, id, 1)
		}
		probes = append(probes, ca)
	}
	for _, key := range k.Keys[:min(len(k.Keys), limit)] {
		probes = append(probes, key)
		cert(key, "nobody", 1)
		probes = append(probes, &ssh.Certificate{Key: key, SignatureKey: otherCA, CertType: ssh.UserCert, Serial: 1})
	}
	return append(probes, user, otherCA)
}

func krlProbeName(key ssh.PublicKey) string {
	if c, ok := key.(*ssh.Certificate); ok {
		return fmt.Sprintf("certificate of %s by %s, key ID %q, serial %d",
			ssh.FingerprintSHA256(c.Key), ssh.FingerprintSHA256(c.SignatureKey), c.KeyId, c.Serial)
	}
	return "key " + ssh.FingerprintSHA256(key)
}
