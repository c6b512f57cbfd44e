package main

// BenchmarkConnectionStart is the per-connection start cost BENCHMARKS.md
// records and .ci/bench reproduces: each program jitssh runs once per Git
// connection, beside the two floors it cannot go below.

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

	"github.com/jitssh/jitssh/sshd/opensshtest"
)

// startProgram is one program BenchmarkConnectionStart runs, and how to
// tell that a run did what that program does on a real connection.
type startProgram struct {
	name  string
	argv  []string
	env   []string
	check func(stdout, stderr string, err error) error
}

// BenchmarkConnectionStart times one run, from exec to exit, of:
//
//   - true: /bin/true, the cost of exec itself;
//   - hello-go: a minimal Go program built from a temporary directory
//     with the same toolchain, the floor for any Go binary;
//   - git-ssh: jitssh git-ssh with the arguments git gives it for a fetch,
//     an ssh-agent holding three jitssh certificates, and /bin/true as the
//     ssh it runs (JITSSH_SSH), so everything but ssh itself: list the
//     agent, pick the certificate, write it for ssh, run ssh, remove it;
//   - principals-command: what sshd runs for each certificate offered,
//     with the flags, 1,000-serial KRL and audit log the operator's
//     configuration has, printing the grant lines;
//   - git-shell: the forced command, verifying the certificate sshd
//     exposed and refusing a command that is not a Git service (no audit
//     log: a refusal recorded there is an fsync, not start-up).
//
// The results to compare are the ratios to hello-go; git-ssh includes one
// run of /bin/true. With $JITSSH_BENCH_BASELINE_BIN set to another jitssh
// binary (an older commit's), each jitssh program also runs as NAME-ab:
// that binary and the current one in turn, one run each per iteration, so
// that both meet the same moments of a busy machine. NAME-ab reports each
// one's time and CPU per run as base-ns/op, now-ns/op, base-cpu-ns/op and
// now-cpu-ns/op.
func BenchmarkConnectionStart(b *testing.B) {
	if testing.Short() {
		b.Skip("builds a Go program and runs ssh-agent; not under -short")
	}
	programs := newStartPrograms(b)
	for _, p := range programs {
		b.Run(p.name, func(b *testing.B) {
			var cpu time.Duration
			for b.Loop() {
				used, err := runStartProgram(p)
				if err != nil {
					b.Fatalf("%s: %v", p.name, err)
				}
				cpu += used
			}
			// The CPU time the program used (with what it ran), which
			// waiting for a busy machine's CPUs does not inflate as it
			// does the time per run.
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
		})
	}
	base := os.Getenv(benchBaselineBinEnv)
	if base == "" {
		return
	}
	for _, p := range programs {
		if p.argv[0] != jitsshBin {
			continue
		}
		bp := p
		bp.argv = slices.Concat([]string{base}, p.argv[1:])
		b.Run(p.name+"-ab", func(b *testing.B) { benchAgainstBaseline(b, bp, p) })
	}
}

// benchBaselineBinEnv names the jitssh binary BenchmarkConnectionStart
// compares against.
const benchBaselineBinEnv = "JITSSH_BENCH_BASELINE_BIN"

// benchAgainstBaseline runs base and now in turn, alternating which goes
// first.
func benchAgainstBaseline(b *testing.B, base, now startProgram) {
	var wall, cpu [2]time.Duration
	pair := [2]startProgram{base, now}
	for i := 0; b.Loop(); i++ {
		for k := range 2 {
			j := (i + k) % 2
			start := time.Now()
			used, err := runStartProgram(pair[j])
			if err != nil {
				b.Fatalf("%s (%s): %v", pair[j].name, pair[j].argv[0], err)
			}
			wall[j] += time.Since(start)
			cpu[j] += used
		}
	}
	n := float64(b.N)
	b.ReportMetric(float64(wall[0].Nanoseconds())/n, "base-ns/op")
	b.ReportMetric(float64(wall[1].Nanoseconds())/n, "now-ns/op")
	b.ReportMetric(float64(cpu[0].Nanoseconds())/n, "base-cpu-ns/op")
	b.ReportMetric(float64(cpu[1].Nanoseconds())/n, "now-cpu-ns/op")
}

// runStartProgram runs p once and returns the user and system CPU time it
// and the children it waited for used.
func runStartProgram(p startProgram) (time.Duration, error) {
	cmd := exec.Command(p.argv[0], p.argv[1:]...)
	cmd.Env = p.env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err := p.check(stdout.String(), stderr.String(), err); err != nil {
		return 0, err
	}
	return cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime(), nil
}

func newStartPrograms(b *testing.B) []startProgram {
	b.Helper()
	opensshtest.NeedTool(b, "ssh-agent")
	opensshtest.NeedTool(b, "git")
	truePath := opensshtest.NeedTool(b, "true")
	dir := b.TempDir()
	env := startEnv()
	exitsZero := func(_, stderr string, err error) error {
		if err != nil {
			return errors.Join(err, errors.New(stderr))
		}
		return nil
	}

	hello := buildHelloGo(b, filepath.Join(dir, "hello"))

	cas := newBenchCAs(b, dir, defaultGitRevokedSerials)
	repos := filepath.Join(dir, "repos")
	if out, err := gitRun(dir, nil, "init", "-q", "--bare", filepath.Join(repos, benchRepoName+".git")); err != nil {
		b.Fatalf("git init: %v: %s", err, out)
	}
	sock := startBenchAgent(b, dir, cas)
	fetched := cas.cert(b, cas.unrevoked, benchGrant)
	shellArgs := []string{"--ca", cas.pubFile, "--repos", repos, "--krl", cas.krlFile}

	// git-ssh writes the certificate it picks to a temporary file and
	// removes it when ssh exits: its own TMPDIR shows both.
	tmp := filepath.Join(dir, "tmp")
	if err := os.Mkdir(tmp, 0o700); err != nil {
		b.Fatal(err)
	}
	gitSSHArgv := []string{jitsshBin, "git-ssh", "-o", "SendEnv=GIT_PROTOCOL", "-p", "2222", "git@127.0.0.1", "git-upload-pack '/" + benchRepoName + ".git'"}
	gitSSHEnv := append(slices.Clip(env), "SSH_AUTH_SOCK="+sock, "TMPDIR="+tmp, "GIT_PROTOCOL=version=2")
	checkGitSSHOffers(b, dir, gitSSHArgv, gitSSHEnv)

	authInfo := filepath.Join(dir, "auth-info")
	writeFileB(b, authInfo, append([]byte("publickey "), ssh.MarshalAuthorizedKey(fetched)...), 0o600)

	return []startProgram{
		{name: "true", argv: []string{truePath}, env: env, check: exitsZero},
		{name: "hello-go", argv: []string{hello}, env: env, check: func(stdout, stderr string, err error) error {
			if err == nil && stdout != "hello\n" {
				return errors.New("printed " + stdout)
			}
			return exitsZero(stdout, stderr, err)
		}},
		{
			name: "git-ssh",
			argv: gitSSHArgv,
			env:  append(slices.Clip(gitSSHEnv), "JITSSH_SSH="+truePath),
			check: func(stdout, stderr string, err error) error {
				if err := exitsZero(stdout, stderr, err); err != nil {
					return err
				}
				if left, _ := os.ReadDir(tmp); len(left) > 0 {
					return errors.New("left " + left[0].Name() + " behind")
				}
				return nil
			},
		},
		{
			name: "principals-command",
			argv: slices.Concat([]string{jitsshBin, "principals-command"}, shellArgs,
				[]string{"--audit-log", filepath.Join(dir, "audit.log"), fetched.Type(), authorizedKeyBlob(fetched)}),
			env: env,
			check: func(stdout, stderr string, err error) error {
				if err := exitsZero(stdout, stderr, err); err != nil {
					return err
				}
				if !strings.HasPrefix(stdout, "restrict,command=") || !strings.HasSuffix(stdout, " "+benchGrant+"\n") {
					return errors.New("printed " + stdout)
				}
				return nil
			},
		},
		{
			name: "git-shell",
			argv: slices.Concat([]string{jitsshBin, "git-shell"}, shellArgs),
			env: append(slices.Clip(env), "SSH_USER_AUTH="+authInfo, "SSH_ORIGINAL_COMMAND=ls",
				"SSH_CONNECTION=127.0.0.1 50000 127.0.0.1 22"),
			check: func(stdout, stderr string, err error) error {
				var exit *exec.ExitError
				if !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.HasPrefix(stderr, "jitssh: ") {
					return errors.New("want a refusal (exit 1, a message on stderr), got " + stderr)
				}
				return nil
			},
		},
	}
}

// startEnv is this process's environment without the variables the
// programs read, which each program then sets for itself.
func startEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "JITSSH_") && !strings.HasPrefix(kv, "SSH_") && !strings.HasPrefix(kv, "GODEBUG=") {
			env = append(env, kv)
		}
	}
	return env
}

// buildHelloGo builds the smallest Go program that does something visible,
// in its own module, with the toolchain that built jitssh.
func buildHelloGo(b *testing.B, dir string) string {
	b.Helper()
	if err := os.Mkdir(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	writeFileB(b, filepath.Join(dir, "go.mod"), []byte("module hello\n"), 0o644)
	writeFileB(b, filepath.Join(dir, "main.go"), []byte("package main\n\nimport \"fmt\"\n\nfunc main() { fmt.Println(\"hello\") }\n"), 0o644)
	bin := filepath.Join(dir, "hello")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Dir = dir
	build.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=")
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("build hello: %v: %s", err, out)
	}
	return bin
}

// startBenchAgent starts ssh-agent holding three jitssh certificates from
// the bench CA, as after a few `jitssh request`s: the repository read with
// a '*' grant (the one a fetch offers), a narrower write grant on it, and
// another repository.
func startBenchAgent(b *testing.B, dir string, cas *benchCAs) string {
	b.Helper()
	sock := filepath.Join(dir, "agent.sock")
	ag := exec.Command("ssh-agent", "-D", "-a", sock)
	if err := ag.Start(); err != nil {
		b.Fatalf("start ssh-agent: %v", err)
	}
	exited := make(chan struct{})
	go func() { ag.Wait(); close(exited) }()
	b.Cleanup(func() { ag.Process.Kill(); <-exited })
	var conn net.Conn
	for {
		var err error
		if conn, err = net.Dial("unix", sock); err == nil {
			break
		}
		select {
		case <-exited:
			b.Fatalf("ssh-agent exited: %v", ag.ProcessState)
		case <-time.After(10 * time.Millisecond):
		}
	}
	defer conn.Close()
	client := agent.NewClient(conn)
	for i, grants := range [][]string{
		{"git:read:other/tool:*"},
		{benchGrant},
		{"git:write:" + benchRepoName + ":refs/heads/feature/*"},
	} {
		pub, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			b.Fatal(err)
		}
		key, err := ssh.NewPublicKey(pub)
		if err != nil {
			b.Fatal(err)
		}
		cert := cas.certFor(b, key, cas.unrevoked+2*uint64(i+1), grants...)
		if err := client.Add(agent.AddedKey{PrivateKey: priv, Certificate: cert, Comment: cert.KeyId}); err != nil {
			b.Fatalf("add to ssh-agent: %v", err)
		}
	}
	return sock
}

// checkGitSSHOffers runs git-ssh once with a stand-in ssh that prints the
// certificate file it is given first, so the benchmark is known to time
// the path where the certificate for the repository is picked and offered.
func checkGitSSHOffers(b *testing.B, dir string, argv, env []string) {
	b.Helper()
	showCert := filepath.Join(dir, "show-cert-ssh")
	writeFileB(b, showCert, []byte("#!/bin/sh\n[ \"$1\" = -o ] && exec cat \"${2#IdentityFile=}\"\n"), 0o755)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(slices.Clip(env), "JITSSH_SSH="+showCert)
	out, err := cmd.CombinedOutput()
	if err != nil {
		b.Fatalf("git-ssh: %v: %s", err, out)
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey(out)
	if err != nil {
		b.Fatalf("git-ssh offered no certificate file first: %v: %s", err, out)
	}
	if cert, ok := pub.(*ssh.Certificate); !ok || !slices.Equal(cert.ValidPrincipals, []string{benchGrant}) {
		b.Fatalf("git-ssh offered %s first, want the certificate granting %s", out, benchGrant)
	}
}

// authorizedKeyBlob is the base64 key sshd passes as %k.
func authorizedKeyBlob(k ssh.PublicKey) string {
	_, blob, _ := strings.Cut(strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k))), " ")
	return blob
}
