package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/jitssh/jitssh/ca"
)

// hostCertSigner presents the daemon's host key as a host certificate of
// its own CA, re-signed before it expires: the daemon holds the CA key, so
// its clients can trust one "@cert-authority" line without anyone running
// `jitssh ca sign-host` for it. Each new connection gets the current one.
type hostCertSigner struct {
	key       ssh.Signer
	authority *ca.Authority
	names     []string
	now       func() time.Time
	current   atomic.Pointer[ssh.Certificate]
}

// hostCertValidity is how long each of the daemon's host certificates
// lasts; it is renewed when half of that has passed.
const hostCertValidity = ca.DefaultHostValidity

func newHostCertSigner(key ssh.Signer, authority *ca.Authority, names []string, now func() time.Time) (*hostCertSigner, error) {
	s := &hostCertSigner{key: key, authority: authority, names: names, now: now}
	if err := s.sign(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *hostCertSigner) sign() error {
	cert, err := s.authority.SignHost(s.key.PublicKey(), s.names, hostCertValidity)
	if err != nil {
		return fmt.Errorf("daemon host certificate: %w", err)
	}
	s.current.Store(cert)
	return nil
}

// due is when the current certificate should be replaced.
func (s *hostCertSigner) due() time.Time {
	c := s.current.Load()
	after, before := time.Unix(int64(c.ValidAfter), 0), time.Unix(int64(c.ValidBefore), 0)
	return after.Add(before.Sub(after) / 2)
}

// renew re-signs at half the validity until ctx is done; a failure is
// logged and retried within the hour, well before the old one ends.
func (s *hostCertSigner) renew(ctx context.Context, logger *slog.Logger) {
	for {
		wait := s.due().Sub(s.now())
		if wait > time.Hour || wait < 0 {
			wait = min(max(wait, 0), time.Hour)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		if s.now().Before(s.due()) {
			continue
		}
		if err := s.sign(); err != nil {
			logger.Error("could not renew the daemon's host certificate; retrying", "err", err)
		}
	}
}

func (s *hostCertSigner) PublicKey() ssh.PublicKey { return s.current.Load() }

func (s *hostCertSigner) Sign(rand io.Reader, data []byte) (*ssh.Signature, error) {
	return s.key.Sign(rand, data)
}

// SignWithAlgorithm lets the handshake pick rsa-sha2-* for an RSA host
// key, as a certificate signer must.
func (s *hostCertSigner) SignWithAlgorithm(rand io.Reader, data []byte, algorithm string) (*ssh.Signature, error) {
	if as, ok := s.key.(ssh.AlgorithmSigner); ok {
		return as.SignWithAlgorithm(rand, data, algorithm)
	}
	if algorithm != "" && algorithm != s.key.PublicKey().Type() {
		return nil, fmt.Errorf("host key cannot sign with %s", algorithm)
	}
	return s.key.Sign(rand, data)
}
