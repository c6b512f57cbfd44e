package approvals

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// Lifetimes of what InitClusterTLS makes. A node whose certificate expires
// can no longer talk to its peers, so they are long; replace them with
// IssueNodeCert before they run out.
const (
	clusterCALifetime   = 10 * 365 * 24 * time.Hour
	clusterNodeLifetime = 5 * 365 * 24 * time.Hour
	// certBackdate covers clocks that run a little behind the issuer's.
	certBackdate = time.Hour
)

// File names InitClusterTLS writes into its directory.
const (
	ClusterCAFile    = "ca.pem"
	ClusterCAKeyFile = "ca-key.pem"
)

// ClusterNodeFiles returns the certificate and key file names of node id
// in a directory InitClusterTLS wrote.
func ClusterNodeFiles(dir, id string) (cert, key string) {
	return filepath.Join(dir, id+".pem"), filepath.Join(dir, id+"-key.pem")
}

// InitClusterTLS makes a new cluster CA in dir and a certificate for each of
// n nodes named node1 ... nodeN, valid for hosts besides the node name. It
// refuses a directory that already holds a CA: a second CA would split the
// cluster.
func InitClusterTLS(dir string, n int, hosts []string, now time.Time) error {
	if n < 1 || n > maxClusterSize {
		return fmt.Errorf("cluster tls: %d nodes; want 1 to %d", n, maxClusterSize)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("cluster tls: %w", err)
	}
	caFile := filepath.Join(dir, ClusterCAFile)
	if _, err := os.Stat(caFile); err == nil {
		return fmt.Errorf("cluster tls: %s exists; use a new directory, or issue more node certificates from it", caFile)
	}
	caCert, caKey, err := NewClusterCA(now)
	if err != nil {
		return err
	}
	if err := writeNew(filepath.Join(dir, ClusterCAKeyFile), caKey, 0o600); err != nil {
		return err
	}
	if err := writeNew(caFile, caCert, 0o644); err != nil {
		return err
	}
	for i := 1; i <= n; i++ {
		if err := IssueNodeFiles(dir, "node"+strconv.Itoa(i), hosts, now); err != nil {
			return err
		}
	}
	return nil
}

// IssueNodeFiles signs a certificate for node id with the CA in dir and
// writes it with its key next to the CA.
func IssueNodeFiles(dir, id string, hosts []string, now time.Time) error {
	caCert, err := os.ReadFile(filepath.Join(dir, ClusterCAFile))
	if err != nil {
		return fmt.Errorf("cluster tls: %w", err)
	}
	caKey, err := os.ReadFile(filepath.Join(dir, ClusterCAKeyFile))
	if err != nil {
		return fmt.Errorf("cluster tls: %w", err)
	}
	cert, key, err := IssueNodeCert(caCert, caKey, id, hosts, now)
	if err != nil {
		return err
	}
	certFile, keyFile := ClusterNodeFiles(dir, id)
	if err := writeNew(keyFile, key, 0o600); err != nil {
		return err
	}
	return writeNew(certFile, cert, 0o644)
}

// writeNew writes a file that must not exist yet.
func writeNew(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return fmt.Errorf("cluster tls: %w", err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("cluster tls: write %s: %w", path, err)
	}
	return nil
}

// NewClusterCA makes a cluster CA: an ECDSA P-256 key and a self-signed
// certificate, both PEM.
func NewClusterCA(now time.Time) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("cluster CA key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          randomSerial(),
		Subject:               pkix.Name{CommonName: "jitssh cluster CA", Organization: []string{"jitssh"}},
		NotBefore:             now.Add(-certBackdate),
		NotAfter:              now.Add(clusterCALifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("cluster CA certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("cluster CA key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), nil
}

// IssueNodeCert signs a certificate for node id with the cluster CA. The
// node name is its subject and first DNS name; hosts (names or addresses
// peers reach it at) are added as further names.
func IssueNodeCert(caCertPEM, caKeyPEM []byte, id string, hosts []string, now time.Time) (certPEM, keyPEM []byte, err error) {
	if !nameRE().MatchString(id) {
		return nil, nil, fmt.Errorf("node certificate: node name %q: use letters, digits, '.', '_' and '-' (at most 64)", id)
	}
	caCert, caKey, err := parseCA(caCertPEM, caKeyPEM)
	if err != nil {
		return nil, nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("node key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: randomSerial(),
		Subject:      pkix.Name{CommonName: id, Organization: []string{"jitssh"}},
		DNSNames:     []string{id},
		NotBefore:    now.Add(-certBackdate),
		NotAfter:     now.Add(clusterNodeLifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != "" && h != id {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		return nil, nil, fmt.Errorf("node certificate %s: %w", id, err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("node key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), nil
}

func parseCA(certPEM, keyPEM []byte) (*x509.Certificate, any, error) {
	cb, _ := pem.Decode(certPEM)
	if cb == nil || cb.Type != "CERTIFICATE" {
		return nil, nil, errors.New("cluster CA: no PEM certificate")
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("cluster CA: %w", err)
	}
	kb, _ := pem.Decode(keyPEM)
	if kb == nil {
		return nil, nil, errors.New("cluster CA key: no PEM key")
	}
	key, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("cluster CA key: %w", err)
	}
	if !cert.IsCA {
		return nil, nil, errors.New("cluster CA: the certificate is not a CA")
	}
	return cert, key, nil
}

func randomSerial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(fmt.Sprintf("crypto/rand: %v", err)) // rand.Reader does not fail
	}
	return n
}
