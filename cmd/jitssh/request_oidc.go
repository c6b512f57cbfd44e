package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

	"github.com/jitssh/jitssh/approvals"
)

// maxTokenFile bounds a token read from a file, stdin or GitHub.
const maxTokenFile = 64 << 10

// workloadToken returns the CI/CD job's OIDC token when the request is a
// job's: --oidc-token FILE, JITSSH_OIDC_TOKEN, or --oidc in GitHub
// Actions, which hands out tokens on request.
func workloadToken(c *cli.Context) (string, bool, error) {
	file, env, gh := c.String("oidc-token"), os.Getenv("JITSSH_OIDC_TOKEN"), c.Bool("oidc")
	if file == "" && env == "" && !gh {
		return "", false, nil
	}
	for _, f := range []string{"dry-run", "no-wait"} {
		if c.Bool(f) {
			return "", true, usageError("--%s is for people; a CI/CD job's request is answered at once", f)
		}
	}
	switch {
	case file != "":
		tok, err := readToken(file)
		return tok, true, err
	case env != "":
		return strings.TrimSpace(env), true, nil
	}
	tok, err := githubToken(c.Context, c.String("oidc-audience"))
	return tok, true, err
}

func readToken(file string) (string, error) {
	var r io.Reader = os.Stdin
	if file != "-" {
		f, err := os.Open(file)
		if err != nil {
			return "", fmt.Errorf("read OIDC token: %w", err)
		}
		defer f.Close()
		r = f
	}
	data, err := io.ReadAll(io.LimitReader(r, maxTokenFile+1))
	if err != nil {
		return "", fmt.Errorf("read OIDC token %s: %w", file, err)
	}
	if len(data) > maxTokenFile {
		return "", fmt.Errorf("read OIDC token %s: larger than %d bytes", file, maxTokenFile)
	}
	tok := strings.TrimSpace(string(data))
	if tok == "" {
		return "", fmt.Errorf("read OIDC token %s: the file is empty", file)
	}
	return tok, nil
}

// githubToken asks GitHub Actions for an ID token with audience: the
// runner sets ACTIONS_ID_TOKEN_REQUEST_URL and ..._TOKEN for jobs with
// `permissions: id-token: write`.
func githubToken(ctx context.Context, audience string) (string, error) {
	endpoint, bearer := os.Getenv("ACTIONS_ID_TOKEN_REQUEST_URL"), os.Getenv("ACTIONS_ID_TOKEN_REQUEST_TOKEN")
	if endpoint == "" || bearer == "" {
		return "", cli.Exit("--oidc: no token: set JITSSH_OIDC_TOKEN (GitLab CI: id_tokens), give --oidc-token FILE, "+
			"or run in GitHub Actions with `permissions: id-token: write`", exitUsage)
	}
	u, err := url.Parse(endpoint)
	if err != nil {
		return "", fmt.Errorf("ACTIONS_ID_TOKEN_REQUEST_URL: %w", err)
	}
	q := u.Query()
	q.Set("audience", audience)
	u.RawQuery = q.Encode()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("Authorization", "bearer "+bearer)
	req.Header.Set("Accept", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("ask GitHub Actions for an OIDC token: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxTokenFile))
	if err != nil {
		return "", fmt.Errorf("ask GitHub Actions for an OIDC token: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("ask GitHub Actions for an OIDC token: %s (does the job have `permissions: id-token: write`?)", resp.Status)
	}
	var out struct {
		Value string `json:"value"`
	}
	if err := json.Unmarshal(body, &out); err != nil || out.Value == "" {
		return "", fmt.Errorf("ask GitHub Actions for an OIDC token: no token in the answer")
	}
	return out.Value, nil
}

// runWorkloadRequest requests as a CI/CD job: it generates the fresh key,
// authenticates to the daemon with it, sends the token, and follows the
// request until it is settled.
func runWorkloadRequest(c *cli.Context, token, repo, ref string) error {
	out := c.String("out")
	var ag agent.ExtendedAgent
	if out == "" {
		var err error
		if ag, err = connectAgent(); err != nil {
			return fmt.Errorf("%w; a CI/CD job usually writes key and certificate with --out FILE", err)
		}
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return fmt.Errorf("generate key: %w", err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return err
	}
	hostKeys, err := hostKeyCallback(c.String("known-hosts"))
	if err != nil {
		return err
	}
	client, err := newAPIClient(serverFlag(c), []ssh.Signer{signer}, hostKeys, c.App.ErrWriter)
	if err != nil {
		return err
	}
	defer client.Close()
	req := apiRequest{Token: token, Repo: repo, Ref: ref, Access: c.String("access"), Reason: c.String("reason")}
	if c.IsSet("ttl") {
		ttl := c.Duration("ttl")
		if ttl <= 0 {
			return usageError("--ttl %s: a grant needs a positive duration (leave --ttl out for the policy's default)", ttl)
		}
		req.TTL = ttl.String()
	}
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	progress := newProgress(c.App.ErrWriter)
	var final *approvals.Request
	err = client.stream(ctx, methodWorkloadSubmit, req, func(resp *apiResponse) (bool, error) {
		final = resp.Request
		progress.update(final, resp.CanApprove)
		return !settled(final), nil
	})
	progress.done()
	switch {
	case err != nil:
		return err
	case final == nil:
		return errors.New("the daemon closed the call without an answer")
	case !settled(final):
		return fmt.Errorf("request %s is still %s: the connection ended before it was settled", final.ID, final.State)
	}
	return waitAndInstall(c, client, final, nil, priv, ag, out, false)
}
