package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	"github.com/urfave/cli/v2"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/jitssh/jitssh/ca"
	"github.com/jitssh/jitssh/internal/atomicfile"
)

// devPeople are the playground's people: alice develops, bob and carol
// approve, auditor audits.
var devPeople = []struct {
	name, role string
	groups     []string
}{
	{"alice", "developer", []string{"dev"}},
	{"bob", "approver", []string{"dev", "approvers"}},
	{"carol", "approver", []string{"dev", "approvers"}},
	{"auditor", "auditor", []string{"auditors"}},
}

// devState is what a restart on the same --dir reuses.
type devState struct {
	APIPort  int `json:"api_port"`
	HTTPPort int `json:"http_port"`
	GitPort  int `json:"git_port"`
	// Nodes are the approval daemons of a cluster (--nodes); none when
	// one daemon runs in this process.
	Nodes []devNode `json:"nodes,omitempty"`
}

func devCommand() *cli.Command {
	return &cli.Command{
		Name:  "dev",
		Usage: "run every role on loopback with a generated CA, people and a sample repository",
		Description: "Runs the approval daemon, the CA and the native Git front-end in one process,\n" +
			"with everything under --dir (a temporary directory when omitted). Once all\n" +
			"listeners are up it writes DIR/alice.env, bob.env, carol.env and auditor.env:\n" +
			"sourcing one makes jitssh and git act as that person, with DIR/bin/jitssh (a copy\n" +
			"of this binary, refreshed at each start) first on PATH and in GIT_SSH_COMMAND, so\n" +
			"shells keep working across restarts, even of `go run`. Restarting on the same\n" +
			"--dir keeps all state. Ctrl-C, or the end of the process that started it, stops\n" +
			"everything.\n\n" +
			"It plays a CI platform too: DIR/ci holds its issuer key and key set, the daemon\n" +
			"trusts its tokens, and DIR/ci.env acts as a CI job of demo/app's main branch,\n" +
			"which may write refs/heads/ci/* with a token from `jitssh dev ci-token`.\n\n" +
			"With --nodes 3 the approval daemon is a raft cluster of three `jitssh server`\n" +
			"processes, each under DIR/nodes/<id> (config, data, audit log, pid file, log);\n" +
			"clients and the Git front-end know every node and go on when one stops.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "dir", Usage: "keep everything in `DIR` (kept across restarts)", EnvVars: []string{"JITSSH_DEV_DIR"}},
			&cli.IntFlag{Name: "nodes", Usage: "run the approval daemon as a cluster of `N` processes (3 to 9)", DefaultText: "1, in this process; a later run keeps the first run's"},
		},
		Action:      runDev,
		Subcommands: []*cli.Command{devCITokenCommand()},
	}
}

func runDev(c *cli.Context) error {
	dir := c.String("dir")
	temporary := dir == ""
	if temporary {
		d, err := os.MkdirTemp("", "jitssh-dev-")
		if err != nil {
			return err
		}
		dir = d
		defer os.RemoveAll(dir)
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	logFile, err := os.OpenFile(filepath.Join(dir, "jitssh.log"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	defer logFile.Close()
	logger := slog.New(slog.NewJSONHandler(logFile, nil))

	if err := checkNoDevNodeRuns(dir); err != nil {
		return err
	}
	// The env files announce that every listener is up: old ones from a
	// previous run go first, so nobody mistakes them for this run's.
	for _, name := range append(devNames(), "ci") {
		if err := os.Remove(filepath.Join(dir, name+".env")); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	st, err := prepareDev(dir, c.Int("nodes"), c.IsSet("nodes"))
	if err != nil {
		return err
	}
	bin, err := installDevBinary(dir)
	if err != nil {
		return err
	}
	// A closed terminal sends SIGHUP: stop as cleanly as on Ctrl-C.
	sigCtx, stopSignals := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stopSignals()
	ctx, stopWatch, parentGone := untilParentGoes(sigCtx)
	defer stopWatch()
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()

	var wg sync.WaitGroup
	errs := make(chan error, 2)
	var daemons []devDaemon
	if len(st.Nodes) > 0 {
		cluster, ds, err := startDevNodes(runCtx, dir, st.Nodes, bin, c.App.Writer, logger)
		if err != nil {
			return err
		}
		defer cluster.stop()
		daemons = ds
	} else {
		daemonReady := make(chan daemonAddrs, 1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := runDaemon(runCtx, filepath.Join(dir, "server.yaml"), logger, daemonReady); err != nil {
				errs <- fmt.Errorf("approval daemon: %w", err)
			}
		}()
		var daemon daemonAddrs
		select {
		case daemon = <-daemonReady:
		case err := <-errs:
			return err
		}
		pub := filepath.Join(dir, "daemon_host_key.pub")
		if err := atomicfile.WriteFile(pub, ssh.MarshalAuthorizedKey(daemon.HostKey), 0o644); err != nil {
			cancel()
			wg.Wait()
			return err
		}
		daemons = []devDaemon{{API: daemon.API.String(), HostKey: daemon.HostKey, HeadKey: pub,
			AuditLog: filepath.Join(dir, "audit.log"), Config: filepath.Join(dir, "server.yaml")}}
	}
	gitReady := make(chan net.Addr, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := runGitServer(runCtx, filepath.Join(dir, "git-server.yaml"), logger, gitReady); err != nil {
			errs <- fmt.Errorf("git server: %w", err)
		}
	}()
	select {
	case <-gitReady:
	case err := <-errs:
		cancel()
		wg.Wait()
		return err
	}
	agents, err := startDevAgents(dir)
	if err != nil {
		cancel()
		wg.Wait()
		return err
	}
	defer agents.stop()
	if err := writeDevEnv(dir, st, daemons, bin); err != nil {
		cancel()
		wg.Wait()
		return err
	}
	printDevStory(c.App.Writer, dir, st.Nodes, bin)
	select {
	case <-ctx.Done():
	case err := <-errs:
		cancel()
		wg.Wait()
		return err
	}
	if parentGone() {
		// Whoever watched the output went with the parent.
		logger.Info("jitssh dev: the process that started it is gone; stopping")
	} else {
		fmt.Fprintln(c.App.Writer, "\njitssh dev: stopping")
	}
	cancel()
	wg.Wait()
	return nil
}

// prepareDev creates, on the first run, the CA, the people's keys, the
// sample repository and both configuration files; later runs reuse them,
// choosing new ports only if the old ones are taken.
func prepareDev(dir string, nodes int, nodesSet bool) (devState, error) {
	var st devState
	statePath := filepath.Join(dir, "dev.json")
	if data, err := os.ReadFile(statePath); err == nil {
		if err := json.Unmarshal(data, &st); err != nil {
			return st, fmt.Errorf("read %s: %w", statePath, err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return st, err
	}
	n, err := checkDevNodes(dir, nodes, nodesSet, st)
	if err != nil {
		return st, err
	}
	caDir := filepath.Join(dir, "ca")
	if _, err := os.Stat(filepath.Join(caDir, ca.PrivateKeyFile)); errors.Is(err, os.ErrNotExist) {
		if _, err := ca.Init(caDir, ca.Ed25519); err != nil {
			return st, err
		}
	}
	keyDir := filepath.Join(dir, "keys")
	if err := os.MkdirAll(keyDir, 0o700); err != nil {
		return st, err
	}
	for _, p := range devPeople {
		if err := ensureKey(filepath.Join(keyDir, p.name)); err != nil {
			return st, err
		}
	}
	if err := ensureDemoRepo(filepath.Join(dir, "repos", "demo", "app.git")); err != nil {
		return st, err
	}
	if err := ensureDevCI(dir); err != nil {
		return st, err
	}
	ports := []*int{&st.GitPort}
	if n > 1 {
		if err := prepareDevNodes(dir, n, &st); err != nil {
			return st, err
		}
	} else {
		ports = append(ports, &st.APIPort, &st.HTTPPort)
	}
	for _, port := range ports {
		if *port == 0 || !portFree(*port) {
			p, err := freePort()
			if err != nil {
				return st, err
			}
			*port = p
		}
	}
	data, _ := json.MarshalIndent(st, "", "  ")
	if err := atomicfile.WriteFile(statePath, append(data, '\n'), 0o600); err != nil {
		return st, err
	}
	if n == 1 {
		if err := writeDevServerConfig(dir, st); err != nil {
			return st, err
		}
	}
	return st, writeDevGitConfig(dir, st)
}

func ensureKey(path string) error {
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	block, err := ssh.MarshalPrivateKey(priv, filepath.Base(path)+"@jitssh-dev")
	if err != nil {
		return err
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(path+".pub", ssh.MarshalAuthorizedKey(sshPub), 0o644); err != nil {
		return err
	}
	return atomicfile.WriteFile(path, pem.EncodeToMemory(block), 0o600)
}

// ensureDemoRepo makes the bare repository demo/app with branches main
// and feature/login.
func ensureDemoRepo(bare string) error {
	if _, err := os.Stat(filepath.Join(bare, "HEAD")); err == nil {
		return nil
	}
	if _, err := exec.LookPath("git"); err != nil {
		return errors.New("jitssh dev needs git on PATH")
	}
	work, err := os.MkdirTemp("", "jitssh-dev-seed-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	env := append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null",
		"GIT_AUTHOR_NAME=jitssh dev", "GIT_AUTHOR_EMAIL=dev@jitssh.invalid",
		"GIT_COMMITTER_NAME=jitssh dev", "GIT_COMMITTER_EMAIL=dev@jitssh.invalid")
	run := func(dir string, args ...string) error {
		cmd := exec.Command("git", args...)
		cmd.Dir, cmd.Env = dir, env
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("git %s: %v: %s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	files := map[string]string{
		"README.md": "# demo/app\n\nThe sample repository of `jitssh dev`.\n",
		"main.go":   "package main\n\nfunc main() { println(\"hello\") }\n",
	}
	if err := run(work, "init", "-q", "-b", "main"); err != nil {
		return err
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(work, name), []byte(content), 0o644); err != nil {
			return err
		}
	}
	steps := [][]string{
		{"add", "."}, {"commit", "-q", "-m", "Start demo/app"},
		{"checkout", "-q", "-b", "feature/login"},
	}
	for _, s := range steps {
		if err := run(work, s...); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(work, "login.go"), []byte("package main\n\nfunc login() bool { return false }\n"), 0o644); err != nil {
		return err
	}
	for _, s := range [][]string{{"add", "."}, {"commit", "-q", "-m", "Sketch the login"}} {
		if err := run(work, s...); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(filepath.Dir(bare), 0o755); err != nil {
		return err
	}
	if err := run(filepath.Dir(bare), "init", "-q", "--bare", "-b", "main", bare); err != nil {
		return err
	}
	return run(work, "push", "-q", bare, "main", "feature/login")
}

func writeDevServerConfig(dir string, st devState) error {
	var b strings.Builder
	fmt.Fprintf(&b, "# jitssh dev: the approval daemon and its policy\n")
	fmt.Fprintf(&b, "listen: 127.0.0.1:%d\nhttp_listen: 127.0.0.1:%d\n", st.APIPort, st.HTTPPort)
	fmt.Fprintf(&b, "host_key: daemon_host_key\ndata_dir: data\nca_dir: ca\naudit_log: audit.log\n")
	policy, err := devPolicy(dir, filepath.Join("ci", devCIJWKSFile))
	if err != nil {
		return err
	}
	b.WriteString(policy)
	return atomicfile.WriteFile(filepath.Join(dir, "server.yaml"), []byte(b.String()), 0o600)
}

// devPolicy is the playground's people, CI issuer (its key set in jwks)
// and rules, the same for every daemon.
func devPolicy(dir, jwks string) (string, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "request_timeout: 1h\nmax_pending_per_user: 10\n")
	b.WriteString("people:\n")
	for _, p := range devPeople {
		pub, err := os.ReadFile(filepath.Join(dir, "keys", p.name+".pub"))
		if err != nil {
			return "", err
		}
		fmt.Fprintf(&b, "  - name: %s\n    keys: [%q]\n    groups: [%s]\n", p.name, strings.TrimSpace(string(pub)), strings.Join(p.groups, ", "))
	}
	b.WriteString(devCIConfigFor(jwks))
	b.WriteString(devRules)
	b.WriteString(devCIRule)
	return b.String(), nil
}

// devRules is the playground policy: read approved automatically, write
// on feature branches after one approver, write or force on main after two.
// It covers every repository under DIR/repos, demo/app and any dropped
// there, up to three path segments deep.
const devRules = `rules:
  - name: read-demo
    groups: [dev]
    repos: ["*", "*/*", "*/*/*"]
    refs: ["*"]
    access: [read]
    auto_approve: true
    min_ttl: 5s
    default_ttl: 1h
    max_ttl: 8h
  - name: write-feature
    groups: [dev]
    repos: ["*", "*/*", "*/*/*"]
    refs: ["refs/heads/feature/*"]
    access: [read, write]
    approvals: [{group: approvers, count: 1}]
    min_ttl: 5s
    default_ttl: 1h
    max_ttl: 8h
  - name: write-main
    groups: [dev]
    repos: ["*", "*/*", "*/*/*"]
    refs: ["refs/heads/main"]
    access: [write, force]
    approvals: [{group: approvers, count: 2}]
    min_ttl: 5s
    default_ttl: 1h
    max_ttl: 8h
`

func writeDevGitConfig(dir string, st devState) error {
	krl := fmt.Sprintf("krl_url: http://127.0.0.1:%d/v1/krl", st.HTTPPort)
	if len(st.Nodes) > 0 {
		var urls []string
		for _, nd := range st.Nodes {
			urls = append(urls, "http://"+nd.http()+"/v1/krl")
		}
		krl = "krl_urls: [" + strings.Join(urls, ", ") + "]"
	}
	cfg := fmt.Sprintf(`# jitssh dev: the native Git front-end
listen: 127.0.0.1:%d
host_key: git_host_key
trusted_ca_keys: [ca/%s]
repos: repos
audit_log: git-audit.log
revocation:
  %s
  refresh: 1s
  max_stale: 1m
`, st.GitPort, ca.PublicKeyFile, krl)
	return atomicfile.WriteFile(filepath.Join(dir, "git-server.yaml"), []byte(cfg), 0o600)
}

func portFree(port int) bool {
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return false
	}
	l.Close()
	return true
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func shq(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// shWord quotes s for a shell only when it needs it, so that plain paths
// stay plain inside a command that is quoted again.
func shWord(s string) string {
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("/._-+:=@%,", r)) {
			return shq(s)
		}
	}
	return s
}

// writeDevEnv writes one shell file per person, and the known_hosts file
// that pins the daemons' and the Git server's host keys. The people's
// JITSSH_SERVER lists every daemon; the auditor reads the first one's log.
func writeDevEnv(dir string, st devState, daemons []devDaemon, bin string) error {
	gitKey, err := sshdHostPub(filepath.Join(dir, "git_host_key"))
	if err != nil {
		return err
	}
	knownHosts := filepath.Join(dir, "known_hosts")
	var kh strings.Builder
	var servers []string
	for _, d := range daemons {
		fmt.Fprintf(&kh, "%s %s", knownhosts.Normalize(d.API), ssh.MarshalAuthorizedKey(d.HostKey))
		servers = append(servers, d.API)
	}
	fmt.Fprintf(&kh, "[127.0.0.1]:%d %s", st.GitPort, ssh.MarshalAuthorizedKey(gitKey))
	if err := atomicfile.WriteFile(knownHosts, []byte(kh.String()), 0o644); err != nil {
		return err
	}
	server, first := strings.Join(servers, ","), daemons[0]
	gitURL := fmt.Sprintf("ssh://git@127.0.0.1:%d", st.GitPort)
	// git-ssh offers each Git operation the certificate that covers it,
	// so several grants can sit in the agent at once. It is named by the
	// stable copy in DIR/bin, which outlives a `go run` binary.
	if err := writeDevCIEnv(dir, server, knownHosts, gitURL, bin); err != nil {
		return err
	}
	gitSSH := fmt.Sprintf("%s git-ssh -F /dev/null -o UserKnownHostsFile=%s -o GlobalKnownHostsFile=/dev/null -o StrictHostKeyChecking=yes -o BatchMode=yes", shWord(bin), shWord(knownHosts))
	for _, p := range devPeople {
		var b strings.Builder
		fmt.Fprintf(&b, "# jitssh dev: act as %s (%s). Source this file: . %s\n", p.name, p.role, filepath.Join(dir, p.name+".env"))
		fmt.Fprintf(&b, "export PATH=%s:\"$PATH\"\n", shq(filepath.Dir(bin)))
		fmt.Fprintf(&b, "export JITSSH_SERVER=%s\n", shq(server))
		fmt.Fprintf(&b, "export JITSSH_IDENTITY=%s\n", shq(filepath.Join(dir, "keys", p.name)))
		fmt.Fprintf(&b, "export JITSSH_KNOWN_HOSTS=%s\n", shq(knownHosts))
		fmt.Fprintf(&b, "export JITSSH_STATE_DIR=%s\n", shq(filepath.Join(dir, "state", p.name)))
		fmt.Fprintf(&b, "export JITSSH_GIT_URL=%s\n", shq(gitURL))
		fmt.Fprintf(&b, "export JITSSH_DEMO_REPO_URL=%s\n", shq(gitURL+"/demo/app.git"))
		fmt.Fprintf(&b, "export GIT_SSH_COMMAND=%s\n", shq(gitSSH))
		fmt.Fprintf(&b, "export GIT_SSH_VARIANT=ssh\n")
		// The daemon's log and the Git front-end's: the auditor's commands
		// read both, and check the daemon's against its signed head.
		fmt.Fprintf(&b, "export JITSSH_AUDIT_LOG=%s\n", shq(first.AuditLog+":"+filepath.Join(dir, "git-audit.log")))
		fmt.Fprintf(&b, "export JITSSH_AUDIT_HEAD_KEY=%s\n", shq(first.HeadKey))
		fmt.Fprintf(&b, "export JITSSH_AUDIT_CA=%s\n", shq(filepath.Join(dir, "ca", ca.PublicKeyFile)))
		fmt.Fprintf(&b, "export JITSSH_AUDIT_PEOPLE=%s\n", shq(first.Config))
		fmt.Fprintf(&b, "export SSH_AUTH_SOCK=\"${SSH_AUTH_SOCK:-%s}\"\n", filepath.Join(dir, "agents", p.name+".sock"))
		if err := atomicfile.WriteFile(filepath.Join(dir, p.name+".env"), []byte(b.String()), 0o644); err != nil {
			return err
		}
	}
	return nil
}

func sshdHostPub(path string) (ssh.PublicKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	s, err := ssh.ParsePrivateKey(data)
	if err != nil {
		return nil, err
	}
	return s.PublicKey(), nil
}

// printDevStory writes the greeting in one write, so whoever watches the
// output never sees half of it.
func printDevStory(w io.Writer, dir string, nodes []devNode, bin string) {
	var b strings.Builder
	if len(nodes) == 0 {
		fmt.Fprintf(&b, "jitssh dev is running; everything lives in %[1]s\n(logs: %[1]s/jitssh.log, audit: %[1]s/audit.log). Ctrl-C stops it.\n", dir)
	} else {
		fmt.Fprintf(&b, "jitssh dev is running; everything lives in %[1]s\n(logs: %[1]s/jitssh.log and each node's server.log). Ctrl-C stops it.\n", dir)
		fmt.Fprintf(&b, "The approval daemon is a cluster of %d `jitssh server` processes; the env files\nlist them all, and the Git server follows all of them:\n", len(nodes))
		for _, nd := range nodes {
			fmt.Fprintf(&b, "  %s  %s  pid %s\n", nd.ID, nd.api(), nd.pidFile(dir))
		}
		nd := nodes[0]
		fmt.Fprintf(&b, "Kill one (kill -9 $(cat %s)) and the rest go on; restart it with\n  %s server --config %s\n",
			shWord(nd.pidFile(dir)), shWord(bin), shWord(nd.config(dir)))
	}
	fmt.Fprintf(&b, "Sourcing %[1]s/alice.env (or bob, carol, auditor) acts as that person, with\n%[1]s/bin first on PATH: a copy of this jitssh that stays across restarts.\n", dir)
	fmt.Fprintf(&b, "Sourcing %[1]s/ci.env acts as a CI job of demo/app, known by the tokens\n`jitssh dev ci-token` mints (README, \"CI/CD pipelines\").\n\n", dir)
	fmt.Fprintf(&b, "The whole story, ready to paste into another terminal (sh or bash):\n\n%s%s%s", storyBegin, devStory(dir), storyEnd)
	io.WriteString(w, b.String())
}

// The story is printed between these lines, so that a test can take it
// from the output exactly as printed.
const (
	storyBegin = "# ---- 8< ----\n"
	storyEnd   = "# ---- >8 ----\n"
)

// refused is what the story prints after each step that must be refused,
// when it is: a person pasting the story sees it, and the test counts it.
const refused = "refused, as it should be"

// devStory is the story the README tells, as a script: alice reads and
// clones; bob approves her feature work; main needs bob and carol; carol
// denies a force push; bob revokes the feature grant; a short grant runs
// out while the long read grant goes on; the auditor verifies the record.
// The dev end-to-end test runs the printed script.
func devStory(dir string) string {
	return fmt.Sprintf(`cd "$(mktemp -d)"
. %[1]s/alice.env                      # act as alice, a developer
jitssh request --repo demo/app --ref '*' --access read --ttl 30m --reason "look around"   # approved automatically
git clone -q "$JITSSH_DEMO_REPO_URL" app && cd app

# Write on feature branches needs one approver.
ID=$(jitssh request --repo demo/app --ref 'refs/heads/feature/*' --access write --ttl 30m --reason "login work" --no-wait)
(. %[1]s/bob.env && jitssh requests list && jitssh approve "$ID" --reason "go ahead")   # bob approves
jitssh request wait "$ID"
git checkout -q feature/login && git commit -q --allow-empty -m "wip" && git push -q origin feature/login
! git push origin HEAD:main && echo "%[2]s: the grant covers feature/* only"

# Write on main needs two approvers: bob and carol.
MAIN=$(jitssh request --repo demo/app --branch main --access write --ttl 10m --reason "release" --no-wait)
(. %[1]s/bob.env && jitssh approve "$MAIN" --reason "looks good")   # one of two
(. %[1]s/carol.env && jitssh requests show "$MAIN" && jitssh approve "$MAIN" --reason "ship it")
jitssh request wait "$MAIN"
git push -q origin HEAD:main
jitssh release "$MAIN"                  # done with main: end that grant now

# A denial: request wait exits with status 3.
NOPE=$(jitssh request --repo demo/app --branch main --access force --ttl 10m --reason "rewrite history" --no-wait)
(. %[1]s/carol.env && jitssh deny "$NOPE" --reason "not on main")
! jitssh request wait "$NOPE" && echo "%[2]s: carol denied it"

# An approver revokes a grant: it stops working within seconds.
(. %[1]s/bob.env && jitssh revoke "$ID" --reason "login work merged")
sleep 3
git commit -q --allow-empty -m "after the revoke"
! git push origin feature/login && echo "%[2]s: the grant was revoked"
jitssh status                          # what is left: the read grant

# A short grant ends on its own; the 30-minute read grant goes on.
ID=$(jitssh request --repo demo/app --branch feature/login --access write --ttl 5s --reason "quick fix" --no-wait)
(. %[1]s/bob.env && jitssh approve "$ID") && jitssh request wait "$ID"
jitssh status                          # the 5-second grant is there, for now
sleep 6
git commit -q --allow-empty -m "too late"
! git push origin feature/login && echo "%[2]s: the 5-second grant is over"
git fetch origin && echo "fetched: the read grant still works"

# The auditor checks the whole record: hash chain, signatures, approvals.
(. %[1]s/auditor.env && jitssh audit verify)
`, dir, refused)
}
