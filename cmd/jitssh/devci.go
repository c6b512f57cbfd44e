package main

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/jitssh/jitssh/internal/atomicfile"
	"github.com/urfave/cli/v2"
)

// jitssh dev plays a CI platform too: it holds an issuer key, publishes
// its key set in a file the daemon trusts, and mints ID tokens shaped
// like GitHub Actions' for the playground's CI job.
const (
	devCIIssuer   = "https://ci.jitssh.example"
	devCIAudience = "jitssh"
	devCIKeyID    = "dev-ci"
	devCIName     = "dev" // the oidc: entry's name
)

// devCIKeyFile and devCIJWKSFile are under DIR/ci.
const (
	devCIKeyFile  = "issuer.pem"
	devCIJWKSFile = "jwks.json"
)

// ensureDevCI creates, on the first run, the CI issuer's RSA key and its
// key set.
func ensureDevCI(dir string) error {
	ciDir := filepath.Join(dir, "ci")
	keyPath := filepath.Join(ciDir, devCIKeyFile)
	if _, err := os.Stat(keyPath); err == nil {
		return nil
	}
	if err := os.MkdirAll(ciDir, 0o700); err != nil {
		return err
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return fmt.Errorf("generate the CI issuer's key: %w", err)
	}
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: devCIKeyID, Algorithm: string(jose.RS256), Use: "sig"}}}
	data, err := json.MarshalIndent(set, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(filepath.Join(ciDir, devCIJWKSFile), append(data, '\n'), 0o644); err != nil {
		return err
	}
	block := &pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}
	return atomicfile.WriteFile(keyPath, pem.EncodeToMemory(block), 0o600)
}

// devCIConfig is the server.yaml part that trusts the playground's CI
// issuer, for a config in DIR.
var devCIConfig = devCIConfigFor(filepath.Join("ci", devCIJWKSFile))

// devCIConfigFor is devCIConfig with the issuer's key set at jwks.
func devCIConfigFor(jwks string) string {
	return fmt.Sprintf("oidc:\n  - {name: %s, issuer: %q, audience: %s, jwks_file: %q}\n",
		devCIName, devCIIssuer, devCIAudience, jwks)
}

// devCIRule lets the CI job of demo/app's main branch write
// refs/heads/ci/* of demo/app, approved automatically, for 10 minutes at
// most.
const devCIRule = `  - name: ci-demo
    workload: {issuer: ` + devCIName + `, claims: {repository: demo/app, ref: refs/heads/main}}
    repos: [demo/app]
    refs: ["refs/heads/ci/*"]
    access: [write]
    auto_approve: true
    min_ttl: 5s
    default_ttl: 10m
    max_ttl: 10m
`

func devCITokenCommand() *cli.Command {
	return &cli.Command{
		Name:  "ci-token",
		Usage: "mint an OIDC ID token as the playground's CI platform (a push to demo/app's main)",
		Description: "Prints a token signed with DIR/ci/issuer.pem, shaped like GitHub Actions': issuer\n" +
			devCIIssuer + ", audience " + devCIAudience + ", repository demo/app, ref refs/heads/main,\n" +
			"a fresh jti, valid for --ttl. --claims k=v replaces a claim (k= removes it; a value\n" +
			"that reads as JSON, like true or 42, is put as JSON). Use it with\n" +
			"`jitssh request --oidc-token FILE`.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "dir", Usage: "the playground's `DIR`", EnvVars: []string{"JITSSH_DEV_DIR"}, Required: true},
			&cli.StringSliceFlag{Name: "claims", Usage: "`K=V`: set claim K (repeatable)"},
			&cli.DurationFlag{Name: "ttl", Value: 5 * time.Minute, Usage: "how long the token is valid"},
			&cli.StringFlag{Name: "out", Usage: "write the token to `FILE` instead of stdout"},
		},
		Action: runDevCIToken,
	}
}

func runDevCIToken(c *cli.Context) error {
	if err := noArgs(c); err != nil {
		return err
	}
	key, err := loadDevCIKey(c.String("dir"))
	if err != nil {
		return err
	}
	claims, err := devCIClaims(time.Now(), c.Duration("ttl"), c.StringSlice("claims"))
	if err != nil {
		return err
	}
	tok, err := signDevToken(key, claims)
	if err != nil {
		return err
	}
	if out := c.String("out"); out != "" {
		return atomicfile.WriteFile(out, []byte(tok+"\n"), 0o600)
	}
	fmt.Fprintln(c.App.Writer, tok)
	return nil
}

// devCIClaims are a GitHub Actions token's claims for a push to demo/app's
// main branch, changed by sets ("k=v").
func devCIClaims(now time.Time, ttl time.Duration, sets []string) (map[string]any, error) {
	var nonce [8]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return nil, err
	}
	run := strconv.FormatInt(now.UnixNano()%1_000_000_000, 10)
	claims := map[string]any{
		"iss": devCIIssuer, "aud": devCIAudience, "sub": "repo:demo/app:ref:refs/heads/main",
		"jti": hex.EncodeToString(nonce[:]), "iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(ttl).Unix(),
		"repository": "demo/app", "repository_id": "1", "repository_owner": "demo", "ref": "refs/heads/main",
		"ref_type": "branch", "sha": strings.Repeat("0", 40), "event_name": "push", "run_id": run, "run_attempt": "1",
		"workflow_ref": "demo/app/.github/workflows/ci.yml@refs/heads/main", "actor": "alice",
		"runner_environment": "self-hosted",
	}
	for _, kv := range sets {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, usageError("--claims %q: want K=V", kv)
		}
		var js any
		switch {
		case v == "":
			delete(claims, k)
		case json.Unmarshal([]byte(v), &js) == nil && !isJSONString(v):
			claims[k] = js
		default:
			claims[k] = v
		}
	}
	return claims, nil
}

func isJSONString(v string) bool { return strings.HasPrefix(v, `"`) }

// loadDevCIKey reads the playground CI issuer's key from DIR/ci.
func loadDevCIKey(dir string) (*rsa.PrivateKey, error) {
	data, err := os.ReadFile(filepath.Join(dir, "ci", devCIKeyFile))
	if err != nil {
		return nil, fmt.Errorf("read the CI issuer's key (has jitssh dev run on this --dir?): %w", err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("the CI issuer's key is not PEM")
	}
	key, err := x509.ParsePKCS1PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("the CI issuer's key: %w", err)
	}
	return key, nil
}

func signDevToken(key *rsa.PrivateKey, claims map[string]any) (string, error) {
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: key, KeyID: devCIKeyID}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return "", err
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	obj, err := signer.Sign(payload)
	if err != nil {
		return "", err
	}
	return obj.CompactSerialize()
}

// devNames are the people who get an env file.
func devNames() []string {
	out := make([]string, len(devPeople))
	for i, p := range devPeople {
		out[i] = p.name
	}
	return out
}

// writeDevCIEnv writes DIR/ci.env: a CI job's shell, which knows the
// daemon and the Git server but holds no listed key and no agent.
func writeDevCIEnv(dir, servers, knownHosts, gitURL, bin string) error {
	var b strings.Builder
	fmt.Fprintf(&b, "# jitssh dev: act as a CI job of demo/app, known by the OIDC tokens `jitssh dev ci-token` mints. Source this file: . %s\n", filepath.Join(dir, "ci.env"))
	fmt.Fprintf(&b, "export PATH=%s:\"$PATH\"\n", shq(filepath.Dir(bin)))
	fmt.Fprintf(&b, "export JITSSH_DEV_DIR=%s\n", shq(dir))
	fmt.Fprintf(&b, "export JITSSH_SERVER=%s\n", shq(servers))
	fmt.Fprintf(&b, "export JITSSH_KNOWN_HOSTS=%s\n", shq(knownHosts))
	fmt.Fprintf(&b, "export JITSSH_GIT_URL=%s\n", shq(gitURL))
	fmt.Fprintf(&b, "export JITSSH_DEMO_REPO_URL=%s\n", shq(gitURL+"/demo/app.git"))
	fmt.Fprintf(&b, "unset JITSSH_IDENTITY SSH_AUTH_SOCK\n")
	return atomicfile.WriteFile(filepath.Join(dir, "ci.env"), []byte(b.String()), 0o644)
}
