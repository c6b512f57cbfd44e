package main

// The benchmarks in this file are the figures BENCHMARKS.md records and
// .ci/bench reproduces: real git over the real OpenSSH client against three
// Git SSH servers side by side, on the same repository and loopback, and
// the per-connection authorization cost beside one raw ed25519 verification.

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"log/slog"
	mathrand "math/rand/v2"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/jitssh/jitssh/ca"
	"github.com/jitssh/jitssh/ca/krl"
	"github.com/jitssh/jitssh/principals"
	"github.com/jitssh/jitssh/sshd"
	"github.com/jitssh/jitssh/sshd/opensshtest"
)

// benchRepoName is the repository every Git benchmark reads, under the
// grant benchGrant.
const (
	benchRepoName = "bench/repo"
	benchGrant    = "git:read:" + benchRepoName + ":*"
)

// The benchmark repository: benchCommits commits on main, each adding
// benchBlobBytes of pseudo-random (incompressible) bytes and rewriting a
// few lines of one of benchTextFiles text files, and a lightweight tag on
// every benchTagEvery-th commit. About 25 MB packed.
const (
	benchSeed      = 20240611
	benchCommits   = 300
	benchBlobBytes = 80 << 10
	benchTextFiles = 40
	benchTextLines = 200
	benchTagEvery  = 10
)

// decisionRevokedSerials is how many serials of the signing CA the
// revocation sources of BenchmarkAuthorizationDecision list. The
// certificate is never among them (see newBenchCAs), so each lookup is a
// miss, as for every honest client.
const decisionRevokedSerials = 100_000

// Settings of BenchmarkGitOverSSH that BENCHMARKS.md varies, read from the
// environment so that one command line reproduces each table.
const (
	// benchRevokedEnv is how many serials the KRL that both jitssh
	// paths (and OpenSSH's RevokedKeys) consult lists; default
	// defaultGitRevokedSerials. sshd parses the whole KRL on every
	// authentication attempt, so this moves openssh+jitssh.
	benchRevokedEnv          = "JITSSH_BENCH_REVOKED"
	defaultGitRevokedSerials = 1_000
	// benchSSHOptionsEnv, when set, holds more ssh client options for
	// every target, separated by spaces, such as
	// "-o KexAlgorithms=curve25519-sha256 -c aes128-gcm@openssh.com".
	// Unset, the client negotiates as it does for users: with OpenSSH
	// 9.2, sntrup761x25519-sha512 key exchange with OpenSSH's sshd and
	// curve25519-sha256 with the native server (x/crypto has no
	// sntrup761), and chacha20-poly1305 with both.
	benchSSHOptionsEnv = "JITSSH_BENCH_SSH_OPTIONS"
	// benchCloneDirEnv names the directory clones are made under; see
	// cloneParent.
	benchCloneDirEnv = "JITSSH_BENCH_CLONE_DIR"
	// benchInProcessEnv, when 1, runs the native server inside the test
	// process (the runGitServer the binary runs) instead of as the jitssh
	// binary, so that -cpuprofile and -memprofile see the server's work.
	// Its results are named jitssh-native-inprocess.
	benchInProcessEnv = "JITSSH_BENCH_INPROCESS"
)

// BenchmarkGitOverSSH times `git ls-remote` and a full `git clone` with
// the OpenSSH client (no connection sharing) against:
//
//   - openssh+git-shell: OpenSSH sshd, a plain authorized key forced to
//     git's own git-shell: what a stock Git host runs;
//   - openssh+jitssh: a second sshd, configured like the first but
//     trusting the jitssh CAs, with principals-command forcing jitssh
//     git-shell, as the README ("Stock OpenSSH in front of the repositories") tells an operator to configure it;
//   - jitssh-native: the jitssh git-server binary;
//   - no-ssh: git over file://, the floor, with no SSH and no server.
//
// Every server serves the same bare repository; only the URL path differs,
// because git-shell takes the path as given.
func BenchmarkGitOverSSH(b *testing.B) {
	if testing.Short() {
		b.Skip("runs real sshd, git and ssh processes; not under -short")
	}
	fx := newGitBenchFixture(b)
	for _, tg := range fx.targets {
		b.Run(tg.name, func(b *testing.B) {
			b.Run("ls-remote", func(b *testing.B) { benchLsRemote(b, fx, tg) })
			b.Run("clone", func(b *testing.B) { benchClone(b, fx, tg) })
		})
	}
}

func benchLsRemote(b *testing.B, fx *gitBenchFixture, tg gitTarget) {
	work := b.TempDir()
	for b.Loop() {
		out, err := gitRun(work, tg.env, "ls-remote", tg.url)
		if err != nil {
			b.Fatalf("ls-remote %s: %v: %s%s", tg.url, err, out, tg.log())
		}
		if n := strings.Count(out, "\n") + 1; n != fx.repo.refs || !strings.HasPrefix(out, fx.repo.head+"\tHEAD\n") {
			b.Fatalf("ls-remote listed %d refs (want %d, HEAD %s first):\n%s", n, fx.repo.refs, fx.repo.head, out)
		}
	}
}

func benchClone(b *testing.B, fx *gitBenchFixture, tg gitTarget) {
	work := cloneParent(b)
	// MB/s in the results is packed repository bytes per second.
	b.SetBytes(fx.repo.packBytes)
	n := 0
	for b.Loop() {
		dir := filepath.Join(work, strconv.Itoa(n))
		n++
		out, err := gitRun(work, tg.env, "clone", "-q", tg.url, dir)
		b.StopTimer()
		if err != nil {
			b.Fatalf("clone %s: %v: %s%s", tg.url, err, out, tg.log())
		}
		head, err := gitRun(dir, nil, "rev-parse", "HEAD")
		if err != nil || head != fx.repo.head {
			b.Fatalf("clone has HEAD %q (%v), want %s", head, err, fx.repo.head)
		}
		if err := os.RemoveAll(dir); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}

// cloneParent returns a new directory for clones, removed when b ends:
// under $JITSSH_BENCH_CLONE_DIR when set, else under /dev/shm (a tmpfs
// on Linux) when there is one, else the usual temporary directory. On a
// disk, every clone's fsync of its pack waits for the writeback of the
// clones before it, which drifts and spreads the results far more than
// any difference between servers.
func cloneParent(b *testing.B) string {
	b.Helper()
	parent := os.Getenv(benchCloneDirEnv)
	if parent == "" {
		if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
			parent = "/dev/shm"
		}
	}
	if parent == "" {
		return b.TempDir()
	}
	dir, err := os.MkdirTemp(parent, "jitssh-bench-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// gitTarget is one server as git sees it.
type gitTarget struct {
	name string
	url  string
	env  []string // GIT_SSH_COMMAND; none for file://
	log  func() string
}

type gitBenchFixture struct {
	repo    benchRepo
	targets []gitTarget
}

// newGitBenchFixture builds the repository, the CAs and keys, and starts
// the three servers; everything is stopped and removed when b ends.
func newGitBenchFixture(b *testing.B) *gitBenchFixture {
	b.Helper()
	opensshtest.NeedTool(b, "git")
	gitShell := opensshtest.NeedTool(b, "git-shell")
	opensshtest.NeedTool(b, "ssh")
	dir := b.TempDir()
	fx := &gitBenchFixture{repo: makeBenchRepo(b, filepath.Join(dir, "repos"))}
	revoked := defaultGitRevokedSerials
	if v := os.Getenv(benchRevokedEnv); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			b.Fatalf("%s=%q: want a number of serials", benchRevokedEnv, v)
		}
		revoked = n
	}
	cas := newBenchCAs(b, dir, revoked)
	b.Logf("KRL: %d revoked serials", revoked)

	plainKey, plainPub := writeBenchUserKey(b, filepath.Join(dir, "plain"))
	certKey, certPub := writeBenchUserKey(b, filepath.Join(dir, "dev"))
	certFile := certKey + "-cert.pub"
	writeFileB(b, certFile, ssh.MarshalAuthorizedKey(cas.certFor(b, certPub, cas.unrevoked, benchGrant)), 0o644)

	// Every client: the same OpenSSH options, never a shared connection.
	clientOpts := []string{"-o", "ControlMaster=no", "-o", "ControlPath=none"}
	if extra := strings.Fields(os.Getenv(benchSSHOptionsEnv)); len(extra) > 0 {
		clientOpts = append(clientOpts, extra...)
		b.Logf("more ssh client options: %q", extra)
	}
	plainID := slices.Concat(clientOpts, []string{"-i", plainKey})
	certID := slices.Concat(clientOpts, []string{"-i", certKey, "-o", "CertificateFile=" + certFile})
	sshdConfig := []string{
		// Git sends GIT_PROTOCOL (protocol v2) as an environment
		// request; a Git host's sshd accepts it.
		"AcceptEnv GIT_PROTOCOL",
		// sshd runs a forced command with the account's shell, and
		// Debian's bash then sources ~/.bashrc, which on a developer's
		// account may cost more than the whole Git operation (pyenv
		// init: ~110 ms). A Git host's git account has no such rc. bash
		// sources it only at shell level 1, so start one level up.
		"SetEnv SHLVL=1",
	}

	// openssh+git-shell: git's git-shell behind a forced command.
	authKeys := filepath.Join(dir, "authorized_keys")
	writeFileB(b, authKeys, fmt.Appendf(nil, "restrict,command=\"%s -c \\\"$SSH_ORIGINAL_COMMAND\\\"\" %s", gitShell, ssh.MarshalAuthorizedKey(plainPub)), 0o600)
	stock := opensshtest.Start(b, opensshtest.Config{AuthorizedKeysFile: authKeys, ExtraConfig: sshdConfig})
	fx.targets = append(fx.targets, gitTarget{
		name: "openssh+git-shell",
		url:  stock.GitURL(fx.repo.path),
		env:  []string{"GIT_SSH_COMMAND=" + stock.GitSSHCommand(plainID...)},
		log:  func() string { return "\nsshd log:\n" + stock.Log() },
	})

	// openssh+jitssh: configured as the README says.
	safe := opensshtest.SafeDir(b)
	bin := filepath.Join(safe, "jitssh")
	data, err := os.ReadFile(jitsshBin)
	if err != nil {
		b.Fatal(err)
	}
	writeFileB(b, bin, data, 0o755)
	u, err := user.Current()
	if err != nil {
		b.Fatal(err)
	}
	flags := fmt.Sprintf("--ca %s --repos %s --krl %s --audit-log %s", cas.pubFile, fx.repo.root, cas.krlFile, filepath.Join(dir, "stock-audit.log"))
	withJitssh := opensshtest.Start(b, opensshtest.Config{
		TrustedUserCAKeys:               cas.pubFile,
		RevokedKeys:                     cas.krlFile,
		ExposeAuthInfo:                  true,
		AuthorizedPrincipalsCommandUser: u.Username,
		AuthorizedPrincipalsCommand:     bin + " principals-command " + flags + " %t %k",
		ExtraConfig:                     sshdConfig,
	})
	fx.targets = append(fx.targets, gitTarget{
		name: "openssh+jitssh",
		url:  withJitssh.GitURL(benchRepoName),
		env:  []string{"GIT_SSH_COMMAND=" + withJitssh.GitSSHCommand(certID...)},
		log:  func() string { return "\nsshd log:\n" + withJitssh.Log() },
	})

	fx.targets = append(fx.targets, startBenchNative(b, dir, fx.repo.root, cas, certID))

	// The floor: the same git work through file://, with git spawning
	// upload-pack itself. No server can be faster than this.
	fx.targets = append(fx.targets, gitTarget{
		name: "no-ssh",
		url:  "file://" + fx.repo.path,
		log:  func() string { return "" },
	})

	// One ls-remote each before timing anything: a misconfigured server
	// fails here with its log, not halfway through the results.
	for _, tg := range fx.targets {
		if out, err := gitRun(dir, tg.env, "ls-remote", tg.url); err != nil {
			b.Fatalf("%s: ls-remote %s: %v: %s%s", tg.name, tg.url, err, out, tg.log())
		}
	}
	return fx
}

// startBenchNative runs jitssh git-server on a port it chooses, with the
// same CAs, KRL and kind of audit log as the stock OpenSSH path.
func startBenchNative(b *testing.B, dir, repos string, cas *benchCAs, clientOpts []string) gitTarget {
	b.Helper()
	hostKey := filepath.Join(dir, "native_host_ed25519")
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	writeFileB(b, hostKey, marshalBenchKey(b, priv), 0o600)
	hostPub, err := ssh.NewPublicKey(priv.Public())
	if err != nil {
		b.Fatal(err)
	}
	config := filepath.Join(dir, "git-server.yaml")
	writeFileB(b, config, fmt.Appendf(nil, `listen: 127.0.0.1:0
host_key: %s
trusted_ca_keys: [%s]
repos: %s
revocation:
  krl_file: %s
audit_log: %s
limits:
  shutdown_grace: 5s
`, hostKey, cas.pubFile, repos, cas.krlFile, filepath.Join(dir, "native-audit.log")), 0o600)

	name := "jitssh-native"
	var addr string
	var logs func() string
	if os.Getenv(benchInProcessEnv) == "1" {
		name += "-inprocess"
		addr, logs = runBenchNativeInProcess(b, dir, config)
	} else {
		addr, logs = runBenchNativeBinary(b, dir, config)
	}
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		b.Fatal(err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		b.Fatal(err)
	}
	u, err := user.Current()
	if err != nil {
		b.Fatal(err)
	}
	knownHosts := filepath.Join(dir, "native_known_hosts")
	writeFileB(b, knownHosts, fmt.Appendf(nil, "[%s]:%d %s", host, port, ssh.MarshalAuthorizedKey(hostPub)), 0o644)
	// Not an sshd: the value carries the address, user and pinned host
	// key, so the client gets exactly the options the sshd targets get.
	native := &opensshtest.Server{Host: host, Port: port, Addr: addr, User: u.Username, KnownHostsFile: knownHosts}
	return gitTarget{
		name: name,
		url:  native.GitURL(benchRepoName),
		env:  []string{"GIT_SSH_COMMAND=" + native.GitSSHCommand(clientOpts...)},
		log:  logs,
	}
}

var listeningLine = regexp.MustCompile(`"msg":"git-server listening","addr":"([^"]+)"`)

// runBenchNativeBinary starts `jitssh git-server` and returns the address
// it logged once listening. An interrupt stops it when b ends.
func runBenchNativeBinary(b *testing.B, dir, config string) (string, func() string) {
	b.Helper()
	logFile := filepath.Join(dir, "git-server.log")
	f, err := os.Create(logFile)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	logs := func() string {
		data, _ := os.ReadFile(logFile)
		return "\ngit-server log:\n" + string(data)
	}
	cmd := exec.Command(jitsshBin, "git-server", "--config", config)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		b.Fatalf("start git-server: %v", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	b.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		data, _ := os.ReadFile(logFile)
		if m := listeningLine.FindSubmatch(data); m != nil {
			return string(m[1]), logs
		}
		select {
		case <-exited:
			b.Fatalf("git-server exited: %v%s", cmd.ProcessState, logs())
		case <-time.After(20 * time.Millisecond):
		}
	}
	b.Fatalf("git-server did not start listening%s", logs())
	return "", nil
}

// runBenchNativeInProcess runs the same server loop as the binary inside
// this process, for profiles.
func runBenchNativeInProcess(b *testing.B, dir, config string) (string, func() string) {
	b.Helper()
	logFile := filepath.Join(dir, "git-server.log")
	f, err := os.Create(logFile)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { f.Close() })
	logs := func() string {
		data, _ := os.ReadFile(logFile)
		return "\ngit-server log:\n" + string(data)
	}
	logger := slog.New(slog.NewJSONHandler(f, nil))
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan net.Addr, 1)
	done := make(chan error, 1)
	go func() { done <- runGitServer(ctx, config, logger, ready) }()
	b.Cleanup(func() {
		cancel()
		<-done
	})
	select {
	case a := <-ready:
		return a.String(), logs
	case err := <-done:
		b.Fatalf("git-server: %v%s", err, logs())
	case <-time.After(15 * time.Second):
		b.Fatalf("git-server did not start listening%s", logs())
	}
	return "", nil
}

// benchRepo is the generated bare repository.
type benchRepo struct {
	root      string // repository root
	path      string // ROOT/bench/repo.git
	head      string // commit id of main
	refs      int    // lines git ls-remote prints: HEAD, main, the tags
	packBytes int64
}

// makeBenchRepo writes the benchmark repository with git fast-import from
// a seeded generator, so every run serves the same commits, and packs it
// as a Git host's gc would (one pack, with bitmaps).
func makeBenchRepo(b *testing.B, root string) benchRepo {
	b.Helper()
	start := time.Now()
	r := benchRepo{root: root, path: filepath.Join(root, benchRepoName+".git")}
	if err := os.MkdirAll(root, 0o755); err != nil {
		b.Fatal(err)
	}
	if out, err := gitRun(root, nil, "init", "-q", "--bare", "-b", "main", r.path); err != nil {
		b.Fatalf("git init: %v: %s", err, out)
	}
	var stream bytes.Buffer
	writeFastImport(&stream)
	cmd := exec.Command("git", "fast-import", "--quiet")
	cmd.Dir = r.path
	cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null")
	cmd.Stdin = &stream
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("git fast-import: %v: %s", err, out)
	}
	if out, err := gitRun(r.path, nil, "repack", "-a", "-d", "-q", "--write-bitmap-index"); err != nil {
		b.Fatalf("git repack: %v: %s", err, out)
	}
	head, err := gitRun(r.path, nil, "rev-parse", "main")
	if err != nil {
		b.Fatalf("git rev-parse: %v: %s", err, head)
	}
	r.head = head
	r.refs = 2 + benchCommits/benchTagEvery
	counts, err := gitRun(r.path, nil, "count-objects", "-v")
	if err != nil {
		b.Fatalf("git count-objects: %v: %s", err, counts)
	}
	for _, line := range strings.Split(counts, "\n") {
		if v, ok := strings.CutPrefix(line, "size-pack: "); ok {
			kib, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				b.Fatalf("count-objects: %q: %v", line, err)
			}
			r.packBytes = kib << 10
		}
	}
	b.Logf("benchmark repository: %d commits, %.1f MiB packed, made in %v",
		benchCommits, float64(r.packBytes)/(1<<20), time.Since(start).Round(time.Millisecond))
	return r
}

// writeFastImport writes the repository's history as a fast-import stream.
// Commit times are fixed, so commit ids are the same on every run.
func writeFastImport(w *bytes.Buffer) {
	rng := mathrand.New(mathrand.NewPCG(benchSeed, benchSeed))
	texts := make([][]string, benchTextFiles)
	for i := range texts {
		texts[i] = make([]string, benchTextLines)
		for j := range texts[i] {
			texts[i][j] = benchTextLine(rng)
		}
	}
	blob := make([]byte, benchBlobBytes)
	mark := 0
	data := func(p []byte) {
		fmt.Fprintf(w, "data %d\n", len(p))
		w.Write(p)
		w.WriteByte('\n')
	}
	for c := 1; c <= benchCommits; c++ {
		for i := range blob {
			blob[i] = byte(rng.Uint32())
		}
		mark++
		blobMark := mark
		fmt.Fprintf(w, "blob\nmark :%d\n", blobMark)
		data(blob)

		t := rng.IntN(benchTextFiles)
		for range 5 {
			texts[t][rng.IntN(benchTextLines)] = benchTextLine(rng)
		}
		mark++
		textMark := mark
		fmt.Fprintf(w, "blob\nmark :%d\n", textMark)
		data([]byte(strings.Join(texts[t], "\n") + "\n"))

		mark++
		when := 1_700_000_000 + int64(c)*3600
		fmt.Fprintf(w, "commit refs/heads/main\nmark :%d\n", mark)
		fmt.Fprintf(w, "author Bench <bench@example.com> %d +0000\ncommitter Bench <bench@example.com> %d +0000\n", when, when)
		data(fmt.Appendf(nil, "Change %d\n", c))
		if c > 1 {
			fmt.Fprintf(w, "from :%d\n", mark-3)
		}
		fmt.Fprintf(w, "M 100644 :%d assets/%02d/blob%03d.bin\n", blobMark, c%20, c)
		fmt.Fprintf(w, "M 100644 :%d src/file%02d.txt\n\n", textMark, t)
		if c%benchTagEvery == 0 {
			fmt.Fprintf(w, "reset refs/tags/v%d\nfrom :%d\n\n", c/benchTagEvery, mark)
		}
	}
}

var benchWords = strings.Fields("access branch certificate clone commit fetch grant key merge object pack push ref repository review serial server signature tag tree")

func benchTextLine(rng *mathrand.Rand) string {
	words := make([]string, 6+rng.IntN(6))
	for i := range words {
		words[i] = benchWords[rng.IntN(len(benchWords))]
	}
	return strings.Join(words, " ")
}

// benchCAs are two trusted ed25519 CAs, as during a rotation, and the
// revocations of the second, which signs the certificates: the even
// serials 2, 4, ... up to twice the number revoked, in a KRL file and in a
// serial set.
type benchCAs struct {
	cas       []*ca.Authority
	pubFile   string // both CAs, TrustedUserCAKeys form
	krlFile   string
	set       *sshd.SerialSet
	unrevoked uint64 // an odd serial amid the revoked ones
}

func newBenchCAs(b *testing.B, dir string, revoked int) *benchCAs {
	b.Helper()
	c := &benchCAs{
		pubFile:   filepath.Join(dir, "trusted_cas.pub"),
		krlFile:   filepath.Join(dir, "revoked.krl"),
		set:       &sshd.SerialSet{},
		unrevoked: uint64(revoked) | 1,
	}
	var lines []byte
	for range 2 {
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			b.Fatal(err)
		}
		a, err := ca.New(priv)
		if err != nil {
			b.Fatal(err)
		}
		c.cas = append(c.cas, a)
		lines = append(lines, a.AuthorizedKey()+"\n"...)
	}
	writeFileB(b, c.pubFile, lines, 0o644)

	signing := c.cas[1].PublicKey()
	list := &krl.List{Version: 1}
	if revoked > 0 {
		serials := make([]uint64, revoked)
		for i := range serials {
			serials[i] = 2 * uint64(i+1)
		}
		c.set.Revoke(signing, serials...)
		list.RevokeSerial(signing, serials...)
	}
	data, err := list.Marshal()
	if err != nil {
		b.Fatal(err)
	}
	writeFileB(b, c.krlFile, data, 0o644)
	return c
}

// cert signs a one-hour certificate for a fresh key with the second CA.
func (c *benchCAs) cert(b *testing.B, serial uint64, grants ...string) *ssh.Certificate {
	b.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	key, err := ssh.NewPublicKey(pub)
	if err != nil {
		b.Fatal(err)
	}
	return c.certFor(b, key, serial, grants...)
}

func (c *benchCAs) certFor(b *testing.B, key ssh.PublicKey, serial uint64, grants ...string) *ssh.Certificate {
	b.Helper()
	req := ca.CertRequest{PublicKey: key, KeyID: "bench/req-1", TTL: time.Hour}
	for _, s := range grants {
		g, err := principals.Parse(s)
		if err != nil {
			b.Fatal(err)
		}
		req.Grants = append(req.Grants, g)
	}
	cert, err := c.cas[1].Sign(req, caFixedSerial(serial))
	if err != nil {
		b.Fatal(err)
	}
	return cert
}

// writeBenchUserKey writes a fresh ed25519 key pair in OpenSSH form for the
// ssh client and returns the private key's path and the public key.
func writeBenchUserKey(b *testing.B, path string) (string, ssh.PublicKey) {
	b.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	writeFileB(b, path, marshalBenchKey(b, priv), 0o600)
	pub, err := ssh.NewPublicKey(priv.Public())
	if err != nil {
		b.Fatal(err)
	}
	// Beside the private key, as ssh-keygen leaves it: ssh pairs a
	// CertificateFile with its key through it.
	writeFileB(b, path+".pub", ssh.MarshalAuthorizedKey(pub), 0o644)
	return path, pub
}

func marshalBenchKey(b *testing.B, priv ed25519.PrivateKey) []byte {
	b.Helper()
	block, err := ssh.MarshalPrivateKey(priv, "jitssh bench")
	if err != nil {
		b.Fatal(err)
	}
	return pem.EncodeToMemory(block)
}

func writeFileB(b *testing.B, path string, data []byte, perm os.FileMode) {
	b.Helper()
	if err := os.WriteFile(path, data, perm); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkAuthorizationDecision is what one Git operation costs jitssh
// before git starts: verify the certificate (two trusted CAs, a revocation
// lookup among decisionRevokedSerials) and decide the exec request, including
// resolving the repository on disk. The revocations come from an in-memory
// serial set, as the daemon's endpoint provides them, or from a KRL file,
// as git-server's krl_file and git-shell's --krl do.
func BenchmarkAuthorizationDecision(b *testing.B) {
	opensshtest.NeedTool(b, "git")
	dir := b.TempDir()
	cas := newBenchCAs(b, dir, decisionRevokedSerials)
	root := filepath.Join(dir, "repos")
	if out, err := gitRun(dir, nil, "init", "-q", "--bare", filepath.Join(root, benchRepoName+".git")); err != nil {
		b.Fatalf("git init: %v: %s", err, out)
	}
	repos, err := sshd.NewRepos(root)
	if err != nil {
		b.Fatal(err)
	}
	krl, err := sshd.OpenKRLFile(cas.krlFile)
	if err != nil {
		b.Fatal(err)
	}
	trusted, err := ca.LoadPublicKeys(cas.pubFile)
	if err != nil {
		b.Fatal(err)
	}
	cert := cas.cert(b, cas.unrevoked, benchGrant, "git:write:"+benchRepoName+":refs/heads/feature/*")
	remote := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 50000}
	const command = "git-upload-pack '/" + benchRepoName + ".git'"

	for _, tt := range []struct {
		name    string
		checker sshd.RevocationChecker
	}{
		{"serial-set", cas.set},
		{"krl-file", krl},
	} {
		b.Run(tt.name, func(b *testing.B) {
			v := &sshd.Verifier{CAs: trusted, Revocations: []sshd.RevocationChecker{tt.checker}}
			b.ReportAllocs()
			for b.Loop() {
				id, err := v.Verify(cert, remote)
				if err != nil {
					b.Fatal(err)
				}
				if d := sshd.Decide(repos, id, command); !d.Allowed() {
					b.Fatal(d.Err)
				}
			}
		})
	}
}

// BenchmarkRawEd25519Verify is the floor BenchmarkAuthorizationDecision is
// compared against: one ed25519 signature check through x/crypto/ssh over
// a certificate's wire form, which every certificate costs.
func BenchmarkRawEd25519Verify(b *testing.B) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		b.Fatal(err)
	}
	a, err := ca.New(priv)
	if err != nil {
		b.Fatal(err)
	}
	g, err := principals.Parse(benchGrant)
	if err != nil {
		b.Fatal(err)
	}
	userPub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	userKey, err := ssh.NewPublicKey(userPub)
	if err != nil {
		b.Fatal(err)
	}
	cert, err := a.Sign(ca.CertRequest{PublicKey: userKey, KeyID: "bench/req-1", TTL: time.Hour, Grants: []principals.Grant{g}}, caFixedSerial(1))
	if err != nil {
		b.Fatal(err)
	}
	msg := cert.Marshal()
	sig, err := signer.Sign(rand.Reader, msg)
	if err != nil {
		b.Fatal(err)
	}
	pub := signer.PublicKey()
	b.ReportAllocs()
	for b.Loop() {
		if err := pub.Verify(msg, sig); err != nil {
			b.Fatal(err)
		}
	}
}
