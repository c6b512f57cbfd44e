package ca_test

import (
	"crypto/rand"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/jitssh/jitssh/ca"
	"github.com/jitssh/jitssh/principals"
)

// BenchmarkSign measures a whole Sign per CA key type; BenchmarkRawSignCert
// beside it signs the same certificate with bare x/crypto, so the
// difference is the cost of jitssh's checks.
func BenchmarkSign(b *testing.B) {
	for _, kt := range ca.KeyTypes {
		b.Run(string(kt), func(b *testing.B) {
			a := newCA(b, kt, issued)
			req := ca.CertRequest{
				PublicKey: userKey(b),
				KeyID:     "alice/req-01J0000000000000000000",
				Grants: []principals.Grant{
					grant(b, "git:write:demo/app:refs/heads/feature/*"),
					grant(b, "git:read:demo/app:refs/heads/main"),
				},
				TTL:           time.Hour,
				SourceAddress: "10.0.0.0/8,192.168.1.0/24",
			}
			serials := &counter{}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := a.Sign(req, serials); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkRawSignCert(b *testing.B) {
	for _, kt := range ca.KeyTypes {
		b.Run(string(kt), func(b *testing.B) {
			s, err := ssh.NewSignerFromSigner(caKey(b, kt))
			if err != nil {
				b.Fatal(err)
			}
			if s.PublicKey().Type() == ssh.KeyAlgoRSA {
				s, err = ssh.NewSignerWithAlgorithms(s.(ssh.AlgorithmSigner), []string{ssh.KeyAlgoRSASHA512})
				if err != nil {
					b.Fatal(err)
				}
			}
			key := userKey(b)
			serial := uint64(0)
			b.ReportAllocs()
			for b.Loop() {
				serial++
				cert := &ssh.Certificate{
					Key:      key,
					Serial:   serial,
					CertType: ssh.UserCert,
					KeyId:    "alice/req-01J0000000000000000000",
					ValidPrincipals: []string{
						"git:write:demo/app:refs/heads/feature/*",
						"git:read:demo/app:refs/heads/main",
					},
					ValidAfter:  uint64(issued.Unix() - 60),
					ValidBefore: uint64(issued.Unix() + 3600),
					Permissions: ssh.Permissions{
						CriticalOptions: map[string]string{"source-address": "10.0.0.0/8,192.168.1.0/24"},
						Extensions:      map[string]string{},
					},
				}
				if err := cert.SignCert(rand.Reader, s); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
