package sshd

import (
	"bytes"
	"fmt"
	"os"
	"time"

	"golang.org/x/crypto/ssh"
)

// LoadHostCertificate reads the host certificate at path (as `jitssh ca
// sign-host` writes it) and returns a signer that presents it for key.
// It refuses a file that is not a host certificate, one for another key,
// and one already expired at now: a server must not start presenting what
// every client would refuse.
func LoadHostCertificate(key ssh.Signer, path string, now time.Time) (ssh.Signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read host certificate: %w", err)
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey(data)
	if err != nil {
		return nil, fmt.Errorf("parse host certificate %s: %w", path, err)
	}
	cert, ok := pub.(*ssh.Certificate)
	switch {
	case !ok:
		return nil, fmt.Errorf("host certificate %s: a plain key, not a certificate", path)
	case cert.CertType != ssh.HostCert:
		return nil, fmt.Errorf("host certificate %s: a user certificate, not a host certificate", path)
	case !bytes.Equal(cert.Key.Marshal(), key.PublicKey().Marshal()):
		return nil, fmt.Errorf("host certificate %s certifies %s, not the host key %s",
			path, ssh.FingerprintSHA256(cert.Key), ssh.FingerprintSHA256(key.PublicKey()))
	case uint64(now.Unix()) >= cert.ValidBefore:
		return nil, fmt.Errorf("host certificate %s expired at %s: sign a new one with jitssh ca sign-host",
			path, time.Unix(int64(cert.ValidBefore), 0).UTC().Format(time.RFC3339))
	}
	signer, err := ssh.NewCertSigner(cert, key)
	if err != nil {
		return nil, fmt.Errorf("host certificate %s: %w", path, err)
	}
	return signer, nil
}
