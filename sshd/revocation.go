package sshd

import (
	"fmt"
	"os"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/jitssh/jitssh/ca/krl"
)

// KRLFile is a RevocationChecker backed by an OpenSSH KRL file. It rereads
// the file when its size or modification time changes. It fails closed: a
// KRL that is missing or does not parse makes every certificate's status
// unknown, and so refused, until a good one is in place.
type KRLFile struct {
	path string

	mu      sync.Mutex
	krl     *krl.List
	err     error
	modTime time.Time
	size    int64
}

// OpenKRLFile loads the KRL at path. An error is returned for a file that
// cannot be read or parsed, so a misconfigured server fails at start.
func OpenKRLFile(path string) (*KRLFile, error) {
	k := &KRLFile{path: path}
	if err := k.refresh(); err != nil {
		return nil, err
	}
	return k, nil
}

// Revoked reports whether cert is revoked by the current KRL.
func (k *KRLFile) Revoked(cert *ssh.Certificate) (bool, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	_ = k.refreshLocked()
	if k.err != nil {
		return false, k.err
	}
	return k.krl.IsRevoked(cert), nil
}

func (k *KRLFile) refresh() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.refreshLocked()
}

func (k *KRLFile) refreshLocked() error {
	fi, err := os.Stat(k.path)
	if err != nil {
		k.err = fmt.Errorf("KRL %s: %w", k.path, err)
		return k.err
	}
	if k.krl != nil && k.err == nil && fi.ModTime().Equal(k.modTime) && fi.Size() == k.size {
		return nil
	}
	data, err := os.ReadFile(k.path)
	if err != nil {
		k.err = fmt.Errorf("KRL %s: %w", k.path, err)
		return k.err
	}
	list, err := krl.Parse(data)
	if err != nil {
		k.err = fmt.Errorf("KRL %s: %w", k.path, err)
		return k.err
	}
	k.krl, k.err, k.modTime, k.size = list, nil, fi.ModTime(), fi.Size()
	return nil
}

// SerialSet is a RevocationChecker holding revoked serials per CA, as the
// approval daemon publishes them. It is safe for concurrent use.
type SerialSet struct {
	mu      sync.RWMutex
	revoked map[string]map[uint64]struct{} // CA key blob -> serials
}

// Revoke adds serials issued by caKey.
func (s *SerialSet) Revoke(caKey ssh.PublicKey, serials ...uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.revoked == nil {
		s.revoked = make(map[string]map[uint64]struct{})
	}
	blob := string(caKey.Marshal())
	m := s.revoked[blob]
	if m == nil {
		m = make(map[uint64]struct{})
		s.revoked[blob] = m
	}
	for _, n := range serials {
		m[n] = struct{}{}
	}
}

// Revoked reports whether cert's serial is revoked for its CA.
func (s *SerialSet) Revoked(cert *ssh.Certificate) (bool, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	_, revoked := s.revoked[string(cert.SignatureKey.Marshal())][cert.Serial]
	return revoked, nil
}
