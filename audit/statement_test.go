package audit

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

func TestStatementSignatures(t *testing.T) {
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	_, otherPriv, _ := ed25519.GenerateKey(rand.Reader)
	other, _ := ssh.NewSignerFromKey(otherPriv)

	req := RequestStatement{Kind: "request", Requester: "alice", Repo: "demo/app", Ref: "refs/heads/main",
		Access: "write", TTL: "1h0m0s", Reason: "fix <the> bug & more", PublicKey: "ssh-ed25519 AAAA"}
	sig, err := SignStatement(signer, NamespaceRequest, req.Message())
	if err != nil {
		t.Fatal(err)
	}
	if err := VerifyStatement(signer.PublicKey(), NamespaceRequest, req.Message(), sig); err != nil {
		t.Fatalf("VerifyStatement(own signature) = %v", err)
	}
	changed := req
	changed.Ref = "refs/heads/release"
	dec := DecisionStatement{Kind: "approve", Request: "req-1", RequestSHA256: StatementHash(req.Message()), By: "bob"}
	for _, tt := range []struct {
		name      string
		pub       ssh.PublicKey
		namespace string
		msg       []byte
		sig       string
	}{
		{"other key", other.PublicKey(), NamespaceRequest, req.Message(), sig},
		{"other namespace", signer.PublicKey(), NamespaceApprove, req.Message(), sig},
		{"changed statement", signer.PublicKey(), NamespaceRequest, changed.Message(), sig},
		{"other statement", signer.PublicKey(), NamespaceRequest, dec.Message(), sig},
		{"missing", signer.PublicKey(), NamespaceRequest, req.Message(), ""},
		{"garbage", signer.PublicKey(), NamespaceRequest, req.Message(), "-----BEGIN SSH SIGNATURE-----\nAAAA\n-----END SSH SIGNATURE-----\n"},
	} {
		err := VerifyStatement(tt.pub, tt.namespace, tt.msg, tt.sig)
		if !errors.Is(err, ErrStatementSignature) {
			t.Errorf("VerifyStatement(%s) = %v, want ErrStatementSignature", tt.name, err)
		}
	}
	if got := string(req.Message()); !strings.Contains(got, "<the> bug & more") || !strings.HasSuffix(got, "\n") {
		t.Errorf("Message() = %q: want unescaped text and a final newline", got)
	}
}

// TestStatementSignatureInterop checks a stored signature with the real
// ssh-keygen -Y verify, as an auditor without jitssh would.
func TestStatementSignatureInterop(t *testing.T) {
	keygen, err := exec.LookPath("ssh-keygen")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("ssh-keygen is required under CI")
		}
		t.Skip("ssh-keygen not installed; set CI to make this a failure")
	}
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	signer, _ := ssh.NewSignerFromKey(priv)
	dec := DecisionStatement{Kind: "approve", Request: "req-01", RequestSHA256: strings.Repeat("ab", 32), By: "bob", Reason: "ok"}
	sig, err := SignStatement(signer, NamespaceApprove, dec.Message())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	allowed := filepath.Join(dir, "allowed_signers")
	os.WriteFile(allowed, []byte("bob "+string(ssh.MarshalAuthorizedKey(signer.PublicKey()))), 0o644)
	sigFile := filepath.Join(dir, "approve.sig")
	os.WriteFile(sigFile, []byte(sig), 0o644)
	for _, tt := range []struct {
		namespace string
		msg       []byte
		ok        bool
	}{
		{NamespaceApprove, dec.Message(), true},
		{NamespaceDeny, dec.Message(), false},
		{NamespaceApprove, append(dec.Message(), ' '), false},
	} {
		cmd := exec.Command(keygen, "-Y", "verify", "-f", allowed, "-I", "bob", "-n", tt.namespace, "-s", sigFile)
		cmd.Stdin = strings.NewReader(string(tt.msg))
		out, err := cmd.CombinedOutput()
		if (err == nil) != tt.ok {
			t.Errorf("ssh-keygen -Y verify -n %s: err=%v want ok=%v: %s", tt.namespace, err, tt.ok, out)
		}
	}
}
