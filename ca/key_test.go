package ca_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"

	"github.com/jitssh/jitssh/ca"
)

func TestParseKeyType(t *testing.T) {
	for _, kt := range ca.KeyTypes {
		got, err := ca.ParseKeyType(string(kt))
		require.NoError(t, err)
		assert.Equal(t, kt, got)
	}
	for _, bad := range []string{"", "rsa", "rsa-2048", "ED25519", "dsa", "ecdsa-p521", " ed25519"} {
		_, err := ca.ParseKeyType(bad)
		assert.ErrorIs(t, err, ca.ErrBadKeyType, "ParseKeyType(%q)", bad)
	}
}

// lookPath finds an external program; without it the test is skipped,
// unless CI is set, where a missing peer is a failure.
func lookPath(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s not found, and CI is set: %v", name, err)
		}
		t.Skipf("%s not found: %v", name, err)
	}
	return p
}

func TestInitWritesAKeyOpenSSHReads(t *testing.T) {
	keygen := lookPath(t, "ssh-keygen")
	wantType := map[ca.KeyType]string{
		ca.Ed25519:   "ssh-ed25519",
		ca.ECDSAP256: "ecdsa-sha2-nistp256",
		ca.ECDSAP384: "ecdsa-sha2-nistp384",
		ca.RSA3072:   "ssh-rsa",
		ca.RSA4096:   "ssh-rsa",
	}
	for _, kt := range ca.KeyTypes {
		t.Run(string(kt), func(t *testing.T) {
			// Init itself is exercised by caKey; here the files it wrote
			// are checked, from a fresh directory that Init creates.
			dir := filepath.Join(t.TempDir(), "new", "ca")
			var pub ssh.PublicKey
			if kt == ca.Ed25519 {
				var err error
				pub, err = ca.Init(dir, kt)
				require.NoError(t, err)
			} else {
				// Reuse the cached key: RSA generation is slow.
				a, err := ca.New(caKey(t, kt))
				require.NoError(t, err)
				writeCA(t, dir, a, caKeyPEM(t, kt))
				pub = a.PublicKey()
			}
			assert.Equal(t, wantType[kt], pub.Type())

			a, err := ca.Load(dir)
			require.NoError(t, err)
			assert.Equal(t, pub.Marshal(), a.PublicKey().Marshal())

			keyFile := filepath.Join(dir, ca.PrivateKeyFile)
			pubFile := filepath.Join(dir, ca.PublicKeyFile)
			assertMode(t, keyFile, 0o600)
			assertMode(t, pubFile, 0o644)

			line, err := os.ReadFile(pubFile)
			require.NoError(t, err)
			assert.Equal(t, a.AuthorizedKey()+"\n", string(line))
			assert.True(t, strings.HasPrefix(string(line), wantType[kt]+" AAAA"), "%q", line)
			assert.True(t, strings.HasSuffix(string(line), " jitssh-ca\n"), "%q", line)

			// OpenSSH derives the same public key from the private key file.
			out, err := exec.Command(keygen, "-y", "-f", keyFile).CombinedOutput()
			require.NoError(t, err, "%s", out)
			derived, _, _, _, err := ssh.ParseAuthorizedKey(out)
			require.NoError(t, err)
			assert.Equal(t, pub.Marshal(), derived.Marshal())
		})
	}
}

// caKeyPEM returns the cached CA key of type kt in OpenSSH format.
func caKeyPEM(t *testing.T, kt ca.KeyType) []byte {
	t.Helper()
	block, err := ssh.MarshalPrivateKey(caKey(t, kt), ca.PublicKeyComment)
	require.NoError(t, err)
	return pem.EncodeToMemory(block)
}

// writeCA lays out a CA directory as Init does, from an existing key.
func writeCA(t *testing.T, dir string, a *ca.Authority, keyPEM []byte) {
	t.Helper()
	require.NoError(t, os.MkdirAll(dir, 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(dir, ca.PrivateKeyFile), keyPEM, 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, ca.PublicKeyFile), []byte(a.AuthorizedKey()+"\n"), 0o644))
}

func assertMode(t *testing.T, path string, want fs.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, want, fi.Mode().Perm(), "mode of %s", path)
}

func TestInitCreatesPrivateDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	_, err := ca.Init(dir, ca.Ed25519)
	require.NoError(t, err)
	fi, err := os.Stat(dir)
	require.NoError(t, err)
	assert.Equal(t, fs.FileMode(0o700), fi.Mode().Perm())
}

func TestInitRefusesToOverwrite(t *testing.T) {
	dir := t.TempDir()
	first, err := ca.Init(dir, ca.Ed25519)
	require.NoError(t, err)
	keyBefore, err := os.ReadFile(filepath.Join(dir, ca.PrivateKeyFile))
	require.NoError(t, err)
	pubBefore, err := os.ReadFile(filepath.Join(dir, ca.PublicKeyFile))
	require.NoError(t, err)

	_, err = ca.Init(dir, ca.ECDSAP256)
	require.ErrorIs(t, err, ca.ErrCAExists)
	assert.Contains(t, err.Error(), filepath.Join(dir, ca.PrivateKeyFile))

	keyAfter, err := os.ReadFile(filepath.Join(dir, ca.PrivateKeyFile))
	require.NoError(t, err)
	pubAfter, err := os.ReadFile(filepath.Join(dir, ca.PublicKeyFile))
	require.NoError(t, err)
	assert.Equal(t, keyBefore, keyAfter)
	assert.Equal(t, pubBefore, pubAfter)
	a, err := ca.Load(dir)
	require.NoError(t, err)
	assert.Equal(t, first.Marshal(), a.PublicKey().Marshal())
}

func TestInitRefusesUnknownType(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	_, err := ca.Init(dir, "rsa-2048")
	require.ErrorIs(t, err, ca.ErrBadKeyType)
	_, err = os.Stat(dir)
	assert.ErrorIs(t, err, fs.ErrNotExist, "nothing is created for a refused type")
}

func TestLoadRefusesLooseModes(t *testing.T) {
	for _, mode := range []fs.FileMode{0o640, 0o604, 0o660, 0o602, 0o620, 0o644, 0o666, 0o610} {
		t.Run(fmt.Sprintf("%#o", mode), func(t *testing.T) {
			dir := t.TempDir()
			_, err := ca.Init(dir, ca.Ed25519)
			require.NoError(t, err)
			keyFile := filepath.Join(dir, ca.PrivateKeyFile)
			require.NoError(t, os.Chmod(keyFile, mode))

			_, err = ca.Load(dir)
			require.ErrorIs(t, err, ca.ErrInsecureFile)
			assert.Contains(t, err.Error(), keyFile)
			assert.Contains(t, err.Error(), fmt.Sprintf("%#o", mode))
		})
	}
	t.Run("0400", func(t *testing.T) {
		dir := t.TempDir()
		_, err := ca.Init(dir, ca.Ed25519)
		require.NoError(t, err)
		require.NoError(t, os.Chmod(filepath.Join(dir, ca.PrivateKeyFile), 0o400))
		_, err = ca.Load(dir)
		assert.NoError(t, err, "a read-only key is fine")
	})
}

func TestLoadRefusesKeys(t *testing.T) {
	p521, err := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	require.NoError(t, err)
	rsa2048 := rsaKey(t, 2048)
	dsaKey, err := os.ReadFile("testdata/dsa_key")
	require.NoError(t, err)
	encrypted, err := ssh.MarshalPrivateKeyWithPassphrase(caKey(t, ca.Ed25519), "", []byte("secret"))
	require.NoError(t, err)
	other, err := ca.New(caKey(t, ca.ECDSAP256))
	require.NoError(t, err)

	marshal := func(key any) []byte {
		block, err := ssh.MarshalPrivateKey(key, "")
		require.NoError(t, err)
		return pem.EncodeToMemory(block)
	}
	tests := []struct {
		name    string
		key     []byte
		pub     string // ca_key.pub content; "" means no file
		wantErr error  // nil: only an error is required
		wantMsg string
	}{
		{name: "ecdsa-p521", key: marshal(p521), wantErr: ca.ErrBadCAKey, wantMsg: "P-521"},
		{name: "rsa-2048", key: marshal(rsa2048), wantErr: ca.ErrBadCAKey, wantMsg: "2048 bits"},
		{name: "dsa", key: dsaKey},
		{name: "encrypted", key: pem.EncodeToMemory(encrypted), wantMsg: "encrypted"},
		{name: "garbage", key: []byte("not a key\n")},
		{name: "empty", key: []byte{}},
		{name: "other CA's pub file", key: caKeyPEM(t, ca.Ed25519), pub: other.AuthorizedKey() + "\n", wantMsg: "does not hold this CA's public key"},
		{name: "empty pub file", key: caKeyPEM(t, ca.Ed25519), pub: "\n", wantErr: ca.ErrNoKeys},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			require.NoError(t, os.WriteFile(filepath.Join(dir, ca.PrivateKeyFile), tt.key, 0o600))
			if tt.pub != "" {
				require.NoError(t, os.WriteFile(filepath.Join(dir, ca.PublicKeyFile), []byte(tt.pub), 0o644))
			}
			a, err := ca.Load(dir)
			require.Error(t, err)
			assert.Nil(t, a)
			if tt.wantErr != nil {
				assert.ErrorIs(t, err, tt.wantErr)
			}
			assert.Contains(t, err.Error(), tt.wantMsg)
		})
	}
}

func TestLoadMissing(t *testing.T) {
	_, err := ca.Load(filepath.Join(t.TempDir(), "nowhere"))
	require.ErrorIs(t, err, fs.ErrNotExist)
}

func TestLoadWithoutPublicKeyFile(t *testing.T) {
	dir := t.TempDir()
	pub, err := ca.Init(dir, ca.Ed25519)
	require.NoError(t, err)
	require.NoError(t, os.Remove(filepath.Join(dir, ca.PublicKeyFile)))
	a, err := ca.Load(dir)
	require.NoError(t, err)
	assert.Equal(t, pub.Marshal(), a.PublicKey().Marshal())
}

func TestNew(t *testing.T) {
	for _, kt := range ca.KeyTypes {
		a, err := ca.New(caKey(t, kt))
		require.NoError(t, err, kt)
		assert.Equal(t, ca.DefaultBackdate, a.Backdate)
		assert.Equal(t, ca.DefaultMaxTTL, a.MaxTTL)
		require.NotNil(t, a.Now)
		assert.WithinDuration(t, time.Now(), a.Now(), time.Hour)
	}

	_, err := ca.New(nil)
	assert.ErrorIs(t, err, ca.ErrBadCAKey)
	_, err = ca.New(rsaKey(t, 2048))
	assert.ErrorIs(t, err, ca.ErrBadCAKey)
}

func TestSignatureAlgorithm(t *testing.T) {
	want := map[ca.KeyType]string{
		ca.Ed25519:   ssh.KeyAlgoED25519,
		ca.ECDSAP256: ssh.KeyAlgoECDSA256,
		ca.ECDSAP384: ssh.KeyAlgoECDSA384,
		ca.RSA3072:   ssh.KeyAlgoRSASHA512,
		ca.RSA4096:   ssh.KeyAlgoRSASHA512,
	}
	for _, kt := range ca.KeyTypes {
		a, err := ca.New(caKey(t, kt))
		require.NoError(t, err)
		assert.Equal(t, want[kt], a.SignatureAlgorithm(), kt)
	}
}

func TestLoadPublicKeys(t *testing.T) {
	ed, err := ca.New(caKey(t, ca.Ed25519))
	require.NoError(t, err)
	ec, err := ca.New(caKey(t, ca.ECDSAP384))
	require.NoError(t, err)
	rsa2048 := rsaUserKey(t, 2048)
	cert := &ssh.Certificate{Key: userKey(t), CertType: ssh.UserCert, ValidPrincipals: []string{"x"}, ValidBefore: ssh.CertTimeInfinity}
	signer, err := ssh.NewSignerFromSigner(caKey(t, ca.Ed25519))
	require.NoError(t, err)
	require.NoError(t, cert.SignCert(rand.Reader, signer))
	line := func(k ssh.PublicKey) string { return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k))) }

	tests := []struct {
		name    string
		content string
		want    []ssh.PublicKey
		wantErr error
		wantMsg string
	}{
		{name: "one", content: ed.AuthorizedKey() + "\n", want: []ssh.PublicKey{ed.PublicKey()}},
		{name: "no final newline", content: ed.AuthorizedKey(), want: []ssh.PublicKey{ed.PublicKey()}},
		{
			name:    "rotation with comments and blank lines",
			content: "# old CA\n" + ed.AuthorizedKey() + "\n\n   \n# new CA\n  " + line(ec.PublicKey()) + "\r\n",
			want:    []ssh.PublicKey{ed.PublicKey(), ec.PublicKey()},
		},
		{name: "empty", content: "", wantErr: ca.ErrNoKeys},
		{name: "only comments", content: "# nothing\n\n", wantErr: ca.ErrNoKeys},
		{name: "certificate", content: line(cert) + "\n", wantErr: ca.ErrBadCAKey, wantMsg: ":1:"},
		{name: "weak RSA", content: ed.AuthorizedKey() + "\n" + line(rsa2048) + "\n", wantErr: ca.ErrBadCAKey, wantMsg: ":2:"},
		{name: "options", content: "cert-authority " + ed.AuthorizedKey() + "\n", wantMsg: ":1: options are not allowed"},
		{name: "garbage", content: "ssh-ed25519 AAAAnotbase64\n", wantMsg: ":1:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "ca.pub")
			require.NoError(t, os.WriteFile(path, []byte(tt.content), 0o644))
			got, err := ca.LoadPublicKeys(path)
			if tt.want == nil {
				require.Error(t, err)
				if tt.wantErr != nil {
					assert.ErrorIs(t, err, tt.wantErr)
				}
				assert.Contains(t, err.Error(), path+tt.wantMsg)
				return
			}
			require.NoError(t, err)
			require.Len(t, got, len(tt.want))
			for i := range got {
				assert.Equal(t, tt.want[i].Marshal(), got[i].Marshal())
			}
		})
	}

	_, err = ca.LoadPublicKeys(filepath.Join(t.TempDir(), "missing"))
	assert.True(t, errors.Is(err, fs.ErrNotExist))
}
