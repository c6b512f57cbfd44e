package ca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/jitssh/jitssh/internal/atomicfile"
	"golang.org/x/crypto/ssh"
)

// KeyType names a kind of CA key that jitssh creates and accepts.
type KeyType string

// The CA key types. Ed25519 is the default.
const (
	Ed25519   KeyType = "ed25519"
	ECDSAP256 KeyType = "ecdsa-p256"
	ECDSAP384 KeyType = "ecdsa-p384"
	RSA3072   KeyType = "rsa-3072"
	RSA4096   KeyType = "rsa-4096"
)

// KeyTypes lists every CA key type, default first.
var KeyTypes = []KeyType{Ed25519, ECDSAP256, ECDSAP384, RSA3072, RSA4096}

// File names inside a CA directory.
const (
	PrivateKeyFile = "ca_key"
	PublicKeyFile  = "ca_key.pub"
	// PublicKeyComment ends the CA's authorized_keys line.
	PublicKeyComment = "jitssh-ca"
)

// minRSABits is the smallest RSA modulus accepted for a CA key.
const minRSABits = 3072

// maxKeyFileSize bounds what Load reads; an RSA-4096 key is about 3.4 KB.
const maxKeyFileSize = 64 << 10

// Errors returned by the key functions; callers branch on them with errors.Is.
var (
	ErrBadKeyType   = errors.New("unknown CA key type")
	ErrBadCAKey     = errors.New("CA key type not accepted")
	ErrCAExists     = errors.New("CA key already exists")
	ErrInsecureFile = errors.New("CA key file is accessible by group or others")
	ErrNoKeys       = errors.New("no public keys")
)

// ParseKeyType parses a key type name such as "ed25519" or "rsa-4096".
func ParseKeyType(s string) (KeyType, error) {
	for _, kt := range KeyTypes {
		if string(kt) == s {
			return kt, nil
		}
	}
	return "", fmt.Errorf("%w %q (want one of %s)", ErrBadKeyType, s, keyTypeList())
}

func keyTypeList() string {
	names := make([]string, len(KeyTypes))
	for i, kt := range KeyTypes {
		names[i] = string(kt)
	}
	return strings.Join(names, ", ")
}

// newPrivateKey makes a new private key of type kt.
func newPrivateKey(kt KeyType) (crypto.Signer, error) {
	switch kt {
	case Ed25519:
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		return priv, err
	case ECDSAP256:
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case ECDSAP384:
		return ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case RSA3072:
		return rsa.GenerateKey(rand.Reader, 3072)
	case RSA4096:
		return rsa.GenerateKey(rand.Reader, 4096)
	}
	return nil, fmt.Errorf("%w %q", ErrBadKeyType, kt)
}

// checkCAKey reports whether pub is a key type jitssh accepts for a CA.
func checkCAKey(pub crypto.PublicKey) error {
	switch k := pub.(type) {
	case ed25519.PublicKey:
		return nil
	case *ecdsa.PublicKey:
		if k.Curve == elliptic.P256() || k.Curve == elliptic.P384() {
			return nil
		}
		return fmt.Errorf("%w: ECDSA curve %s (want P-256 or P-384)", ErrBadCAKey, k.Curve.Params().Name)
	case *rsa.PublicKey:
		if bits := k.N.BitLen(); bits < minRSABits {
			return fmt.Errorf("%w: RSA key of %d bits (want at least %d)", ErrBadCAKey, bits, minRSABits)
		}
		return nil
	}
	return fmt.Errorf("%w: %T", ErrBadCAKey, pub)
}

// checkCAPublicKey is checkCAKey for a key in SSH form.
func checkCAPublicKey(pub ssh.PublicKey) error {
	if _, ok := pub.(*ssh.Certificate); ok {
		return fmt.Errorf("%w: a certificate cannot be a CA key", ErrBadCAKey)
	}
	cpk, ok := pub.(ssh.CryptoPublicKey)
	if !ok {
		return fmt.Errorf("%w: %s", ErrBadCAKey, pub.Type())
	}
	return checkCAKey(cpk.CryptoPublicKey())
}

// Init creates a new CA of type kt in dir: the private key in DIR/ca_key
// (OpenSSH format, mode 0600) and its authorized_keys line in
// DIR/ca_key.pub. dir is created with mode 0700 if it does not exist. Init
// never replaces an existing private key: it fails with ErrCAExists.
func Init(dir string, kt KeyType) (ssh.PublicKey, error) {
	priv, err := newPrivateKey(kt)
	if err != nil {
		return nil, fmt.Errorf("init CA in %s: %w", dir, err)
	}
	a, err := New(priv)
	if err != nil {
		return nil, fmt.Errorf("init CA in %s: %w", dir, err)
	}
	block, err := ssh.MarshalPrivateKey(priv, PublicKeyComment)
	if err != nil {
		return nil, fmt.Errorf("init CA in %s: encode private key: %w", dir, err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("init CA: %w", err)
	}
	keyPath := filepath.Join(dir, PrivateKeyFile)
	pubPath := filepath.Join(dir, PublicKeyFile)

	// O_EXCL makes creating the private key the one step that claims the
	// directory: two concurrent inits cannot both succeed.
	f, err := os.OpenFile(keyPath, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("init CA: %w: %s", ErrCAExists, keyPath)
	}
	if err != nil {
		return nil, fmt.Errorf("init CA: %w", err)
	}
	if err := writeSync(f, pem.EncodeToMemory(block)); err != nil {
		os.Remove(keyPath)
		return nil, fmt.Errorf("init CA: write %s: %w", keyPath, err)
	}
	if err := atomicfile.WriteFile(pubPath, []byte(a.AuthorizedKey()+"\n"), 0o644); err != nil {
		os.Remove(keyPath)
		return nil, fmt.Errorf("init CA: %w", err)
	}
	if err := atomicfile.SyncDir(dir); err != nil {
		return nil, fmt.Errorf("init CA: %w", err)
	}
	return a.PublicKey(), nil
}

// writeSync writes data to f, flushes it to stable storage and closes f.
func writeSync(f *os.File, data []byte) error {
	_, err := f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// Load opens the CA kept in dir by Init. It refuses a private key file that
// group or others may read or write, an encrypted key, a key of a type not
// listed in KeyTypes, and a DIR/ca_key.pub that names a different key.
func Load(dir string) (*Authority, error) {
	keyPath := filepath.Join(dir, PrivateKeyFile)
	f, err := os.Open(keyPath)
	if err != nil {
		return nil, fmt.Errorf("load CA key: %w", err)
	}
	defer f.Close()
	// Check the mode of the file actually opened, not of whatever the path
	// names a moment later.
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("load CA key: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("load CA key %s: not a regular file", keyPath)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("load CA key %s: %w: mode %#o (want 0600, fix with chmod 600 %s)",
			keyPath, ErrInsecureFile, perm, keyPath)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("load CA key %s: %w", keyPath, err)
	}
	if len(data) > maxKeyFileSize {
		return nil, fmt.Errorf("load CA key %s: file larger than %d bytes", keyPath, maxKeyFileSize)
	}
	raw, err := ssh.ParseRawPrivateKey(data)
	var missing *ssh.PassphraseMissingError
	if errors.As(err, &missing) {
		return nil, fmt.Errorf("load CA key %s: encrypted keys are not supported", keyPath)
	}
	if err != nil {
		return nil, fmt.Errorf("load CA key %s: %w", keyPath, err)
	}
	signer, ok := raw.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("load CA key %s: %w: %T", keyPath, ErrBadCAKey, raw)
	}
	a, err := New(signer)
	if err != nil {
		return nil, fmt.Errorf("load CA key %s: %w", keyPath, err)
	}
	if err := a.checkPublicKeyFile(filepath.Join(dir, PublicKeyFile)); err != nil {
		return nil, fmt.Errorf("load CA key %s: %w", keyPath, err)
	}
	return a, nil
}

// checkPublicKeyFile catches a ca_key.pub left from another CA, which would
// otherwise be handed to Git servers as the key to trust. A missing file is
// fine: only the private key is needed to sign.
func (a *Authority) checkPublicKeyFile(path string) error {
	keys, err := LoadPublicKeys(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if len(keys) != 1 || !sameKey(keys[0], a.pub) {
		return fmt.Errorf("%s does not hold this CA's public key", path)
	}
	return nil
}

// LoadPublicKeys reads a file in TrustedUserCAKeys form: one public key per
// line in authorized_keys format without options; blank lines and lines
// starting with '#' are skipped. Git servers use it to trust several CAs,
// for example the old and the new one during a rotation. Certificates,
// keys of a type not accepted for a CA, and a file with no key are refused.
func LoadPublicKeys(path string) ([]ssh.PublicKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load CA public keys: %w", err)
	}
	var keys []ssh.PublicKey
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		pub, _, opts, _, err := ssh.ParseAuthorizedKey([]byte(line))
		if err != nil {
			return nil, fmt.Errorf("load CA public keys %s:%d: %w", path, i+1, err)
		}
		if len(opts) > 0 {
			return nil, fmt.Errorf("load CA public keys %s:%d: options are not allowed", path, i+1)
		}
		if err := checkCAPublicKey(pub); err != nil {
			return nil, fmt.Errorf("load CA public keys %s:%d: %w", path, i+1, err)
		}
		keys = append(keys, pub)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("load CA public keys %s: %w", path, ErrNoKeys)
	}
	return keys, nil
}
