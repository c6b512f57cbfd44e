package audit

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/hiddeco/sshsig"
	"golang.org/x/crypto/ssh"
)

// People sign what they ask for and what they decide with their own SSH
// keys, in the SSHSIG format of `ssh-keygen -Y sign`, one namespace per
// kind of statement. The daemon checks the signatures and stores them; an
// auditor checks them again without trusting the daemon, so a compromised
// daemon cannot invent a request or an approval.
const (
	NamespaceRequest = "jitssh-request@jitssh"
	NamespaceApprove = "jitssh-approve@jitssh"
	NamespaceDeny    = "jitssh-deny@jitssh"
)

// ErrStatementSignature is returned for a missing or bad signature.
var ErrStatementSignature = errors.New("bad statement signature")

// RequestStatement is what a requester signs. Its JSON encoding, with
// fields in this order and a final newline, is the signed message.
type RequestStatement struct {
	Kind      string `json:"kind"` // "request"
	Requester string `json:"requester"`
	Repo      string `json:"repo"`
	Ref       string `json:"ref"`
	Access    string `json:"access"`
	TTL       string `json:"ttl"` // as asked; "" means the policy's default
	Reason    string `json:"reason"`
	PublicKey string `json:"public_key"` // the fresh key, authorized_keys form
}

// DecisionStatement is what an approver signs to approve or deny: it
// names the request by ID and by the hash of the requester's statement,
// so it cannot be moved to another request.
type DecisionStatement struct {
	Kind          string `json:"kind"` // "approve" or "deny"
	Request       string `json:"request"`
	RequestSHA256 string `json:"request_sha256"`
	By            string `json:"by"`
	TTL           string `json:"ttl,omitempty"` // an approver's shorter TTL
	Reason        string `json:"reason"`
}

// Message is the exact byte string that is signed.
func (s RequestStatement) Message() []byte { return statementBytes(s) }

// Message is the exact byte string that is signed.
func (s DecisionStatement) Message() []byte { return statementBytes(s) }

func statementBytes(v any) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v) // fixed structs of strings: cannot fail
	return b.Bytes()
}

// StatementHash is the hex SHA-256 of a statement message.
func StatementHash(msg []byte) string {
	sum := sha256.Sum256(msg)
	return hex.EncodeToString(sum[:])
}

// SignStatement signs msg in namespace and returns the armored signature.
func SignStatement(signer ssh.Signer, namespace string, msg []byte) (string, error) {
	sig, err := sshsig.SignWithRand(bytes.NewReader(msg), rand.Reader, signer, sshsig.HashSHA512, namespace)
	if err != nil {
		return "", fmt.Errorf("sign %s statement: %w", namespace, err)
	}
	return string(sshsig.Armor(sig)), nil
}

// VerifyStatement checks an armored signature over msg by pub in
// namespace.
func VerifyStatement(pub ssh.PublicKey, namespace string, msg []byte, armored string) error {
	if armored == "" {
		return fmt.Errorf("%w: missing", ErrStatementSignature)
	}
	sig, err := sshsig.Unarmor([]byte(armored))
	if err != nil {
		return fmt.Errorf("%w: %v", ErrStatementSignature, err)
	}
	if err := sshsig.Verify(bytes.NewReader(msg), sig, pub, sig.HashAlgorithm, namespace); err != nil {
		return fmt.Errorf("%w: %v", ErrStatementSignature, err)
	}
	return nil
}
