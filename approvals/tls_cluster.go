package approvals

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
)

// ErrNotNode: a peer did not present a certificate of the cluster CA, so it
// is not a node of this cluster.
var ErrNotNode = errors.New("not a cluster node")

// ClusterTLS is a node's identity in the cluster: the cluster CA, which
// only nodes hold, and this node's certificate signed by it. Every
// connection between nodes, and from `jitssh operator`, is TLS 1.3 with a
// certificate of that CA on both ends; anything else is refused at the
// handshake, before a byte of raft or of a forwarded command is read.
type ClusterTLS struct {
	roots  *x509.CertPool
	cert   tls.Certificate
	nodeID string // the name in this node's certificate
}

// LoadClusterTLS reads the cluster CA certificate and this node's
// certificate and key, and checks that the certificate is a node
// certificate of that CA.
func LoadClusterTLS(f ClusterTLSFiles) (*ClusterTLS, error) {
	caPEM, err := os.ReadFile(f.CA)
	if err != nil {
		return nil, fmt.Errorf("load cluster CA: %w", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("load cluster CA %s: no PEM certificate in it", f.CA)
	}
	cert, err := tls.LoadX509KeyPair(f.Cert, f.Key)
	if err != nil {
		return nil, fmt.Errorf("load node certificate %s: %w", f.Cert, err)
	}
	return newClusterTLS(roots, cert)
}

func newClusterTLS(roots *x509.CertPool, cert tls.Certificate) (*ClusterTLS, error) {
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("node certificate: %w", err)
	}
	cert.Leaf = leaf
	var chain []*x509.Certificate
	for _, b := range cert.Certificate[1:] {
		c, err := x509.ParseCertificate(b)
		if err != nil {
			return nil, fmt.Errorf("node certificate chain: %w", err)
		}
		chain = append(chain, c)
	}
	id, err := verifyNodeCert(roots, leaf, chain)
	if err != nil {
		return nil, fmt.Errorf("node certificate: %w", err)
	}
	return &ClusterTLS{roots: roots, cert: cert, nodeID: id}, nil
}

// NodeID returns the node name in this node's certificate.
func (t *ClusterTLS) NodeID() string { return t.nodeID }

// serverConfig is the TLS config of the cluster listener: a client
// certificate of the cluster CA is required.
func (t *ClusterTLS) serverConfig() *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{t.cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    t.roots,
		// Connections are long-lived and pooled; resuming sessions would
		// only add tickets to protect.
		SessionTicketsDisabled: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			_, err := verifyNodeCert(t.roots, cs.PeerCertificates[0], cs.PeerCertificates[1:])
			return err
		},
	}
}

// clientConfig is the TLS config of connections to peers. Peers are dialed
// by address, and any node of the cluster may answer at any address, so
// the server's certificate is checked against the cluster CA, not against
// a host name.
func (t *ClusterTLS) clientConfig() *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{t.cert},
		// The chain is checked in VerifyConnection instead, without a
		// host name: the cluster CA is the whole of the trust.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return fmt.Errorf("%w: the peer sent no certificate", ErrNotNode)
			}
			_, err := verifyNodeCert(t.roots, cs.PeerCertificates[0], cs.PeerCertificates[1:])
			return err
		},
	}
}

// verifyNodeCert checks that leaf chains to the cluster CA and may serve
// both ends of a node connection, and returns the node name it carries.
func verifyNodeCert(roots *x509.CertPool, leaf *x509.Certificate, rest []*x509.Certificate) (string, error) {
	inter := x509.NewCertPool()
	for _, c := range rest {
		inter.AddCert(c)
	}
	_, err := leaf.Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: inter,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrNotNode, err)
	}
	id := leaf.Subject.CommonName
	if !nameRE().MatchString(id) {
		return "", fmt.Errorf("%w: certificate names node %q", ErrNotNode, id)
	}
	return id, nil
}
