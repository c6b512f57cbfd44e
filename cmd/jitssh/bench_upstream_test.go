package main

import (
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/jitssh/jitssh/ca"
	"github.com/jitssh/jitssh/sshd/opensshtest"
)

// benchHostAccount is the Git host account the proxy benchmark uses.
const benchHostAccount = "bench-account"

// BenchmarkGitHostProxy times `git ls-remote` and a full `git clone` of
// the benchmark repository from a Git host played by stock OpenSSH (see
// opensshtest.Forge), in one run, each iteration taking these targets in
// turn (benchInTurn):
//
//   - host-direct: straight to the host, with a certificate of the host's
//     profile for the account, as a developer without jitssh would;
//   - jitssh-proxy: through jitssh git-server's upstream block with a
//     grant on every ref, which relays the host's answer as it is;
//   - jitssh-proxy-scoped: the same with grants on refs/heads/* and
//     refs/tags/* (every ref the repository has, so the same answer),
//     which makes the proxy cut the advertisement down and check each
//     want itself, in protocol v0.
//
// The proxy's cost is the client's connection to it, the certificate it
// signs, its own connection to the host, and relaying every byte through
// a second SSH channel.
func BenchmarkGitHostProxy(b *testing.B) {
	if testing.Short() {
		b.Skip("runs real sshd, git and ssh processes; not under -short")
	}
	opensshtest.NeedTool(b, "git")
	opensshtest.NeedTool(b, "ssh")
	dir := b.TempDir()
	repo := makeBenchRepo(b, filepath.Join(dir, "repos"))
	clientOpts := []string{"-o", "ControlMaster=no", "-o", "ControlPath=none"}
	if extra := strings.Fields(os.Getenv(benchSSHOptionsEnv)); len(extra) > 0 {
		clientOpts = append(clientOpts, extra...)
	}

	forgeDir := filepath.Join(dir, "forge-ca")
	if _, err := ca.Init(forgeDir, ca.Ed25519); err != nil {
		b.Fatal(err)
	}
	forgeCA, err := ca.Load(forgeDir)
	if err != nil {
		b.Fatal(err)
	}
	host := opensshtest.StartForge(b, opensshtest.ForgeConfig{Profile: "gitlab", CAPublicKey: forgeCA.AuthorizedKey(), Root: repo.root, Accounts: []string{benchHostAccount}})

	directKey, directPub := writeBenchUserKey(b, filepath.Join(dir, "direct"))
	directCert, err := forgeCA.Sign(ca.CertRequest{Profile: ca.ProfileGitLab, PublicKey: directPub, Account: benchHostAccount, TTL: time.Hour}, caFixedSerial(1))
	if err != nil {
		b.Fatal(err)
	}
	writeFileB(b, directKey+"-cert.pub", ssh.MarshalAuthorizedKey(directCert), 0o644)
	targets := []gitTarget{{
		name: "host-direct",
		url:  host.GitURL(benchRepoName + ".git"),
		env:  []string{"GIT_SSH_COMMAND=" + host.GitSSHCommand(append(clientOpts, "-i", directKey, "-o", "CertificateFile="+directKey+"-cert.pub")...)},
		log:  func() string { return "\nsshd log:\n" + host.Log() },
	}}

	cas := newBenchCAs(b, dir, 0)
	proxyAddr, proxyHostPub, logs := startBenchProxy(b, dir, cas, host, forgeDir)
	for _, grants := range []struct {
		name   string
		grants []string
	}{
		{"jitssh-proxy", []string{benchGrant}},
		{"jitssh-proxy-scoped", []string{"git:read:" + benchRepoName + ":refs/heads/*", "git:read:" + benchRepoName + ":refs/tags/*"}},
	} {
		key, pub := writeBenchUserKey(b, filepath.Join(dir, grants.name))
		writeFileB(b, key+"-cert.pub", ssh.MarshalAuthorizedKey(cas.certFor(b, pub, 1, grants.grants...)), 0o644)
		targets = append(targets, benchProxyTarget(b, dir, grants.name, proxyAddr, proxyHostPub, logs,
			append(clientOpts, "-i", key, "-o", "CertificateFile="+key+"-cert.pub")))
	}
	for _, tg := range targets {
		if out, err := gitRun(dir, tg.env, "ls-remote", tg.url); err != nil {
			b.Fatalf("%s: ls-remote %s: %v: %s%s", tg.name, tg.url, err, out, tg.log())
		}
	}
	b.Run("ls-remote", func(b *testing.B) {
		work := b.TempDir()
		benchInTurn(b, targets, func(tg gitTarget) time.Duration {
			start := time.Now()
			out, err := gitRun(work, tg.env, "ls-remote", tg.url)
			took := time.Since(start)
			if err != nil {
				b.Fatalf("%s: ls-remote %s: %v: %s%s", tg.name, tg.url, err, out, tg.log())
			}
			if n := strings.Count(out, "\n") + 1; n != repo.refs || !strings.HasPrefix(out, repo.head+"\tHEAD\n") {
				b.Fatalf("%s: ls-remote listed %d refs (want %d, HEAD %s first):\n%s", tg.name, n, repo.refs, repo.head, out)
			}
			return took
		})
	})
	b.Run("clone", func(b *testing.B) {
		work := cloneParent(b)
		n := 0
		benchInTurn(b, targets, func(tg gitTarget) time.Duration {
			dir := filepath.Join(work, strconv.Itoa(n))
			n++
			start := time.Now()
			out, err := gitRun(work, tg.env, "clone", "-q", tg.url, dir)
			took := time.Since(start)
			b.StopTimer()
			defer b.StartTimer()
			if err != nil {
				b.Fatalf("%s: clone %s: %v: %s%s", tg.name, tg.url, err, out, tg.log())
			}
			if head, err := gitRun(dir, nil, "rev-parse", "HEAD"); err != nil || head != repo.head {
				b.Fatalf("%s: clone has HEAD %q (%v), want %s", tg.name, head, err, repo.head)
			}
			if err := os.RemoveAll(dir); err != nil {
				b.Fatal(err)
			}
			return took
		})
	})
}

// benchInTurn runs op once on every target in each iteration, starting
// with a different target each time, and reports each target's mean as
// "<target>-ns/op". On a shared machine the load drifts over minutes;
// targets measured one after the other would each see a different load,
// while targets taken in turn see the same. (ns/op is all of them
// together, and means nothing alone.)
func benchInTurn(b *testing.B, targets []gitTarget, op func(tg gitTarget) time.Duration) {
	spent := make([]time.Duration, len(targets))
	rounds := 0
	for b.Loop() {
		for k := range targets {
			j := (rounds + k) % len(targets)
			spent[j] += op(targets[j])
		}
		rounds++
	}
	for j, tg := range targets {
		b.ReportMetric(float64(spent[j].Nanoseconds())/float64(rounds), tg.name+"-ns/op")
	}
}

// startBenchProxy runs jitssh git-server with an upstream block for the
// host, trusting cas, and returns its address, host key and log.
func startBenchProxy(b *testing.B, dir string, cas *benchCAs, host *opensshtest.Forge, forgeCA string) (string, ssh.PublicKey, func() string) {
	b.Helper()
	hostKey := filepath.Join(dir, "proxy_host_ed25519")
	signer := writeBenchHostKey(b, hostKey)
	u, err := user.Current()
	if err != nil {
		b.Fatal(err)
	}
	config := filepath.Join(dir, "git-server-proxy.yaml")
	writeFileB(b, config, fmt.Appendf(nil, `listen: 127.0.0.1:0
host_key: %s
trusted_ca_keys: [%s]
audit_log: %s
limits:
  shutdown_grace: 5s
upstream:
  address: %s
  user: %s
  host_keys: [%q]
  profile: gitlab
  ca_dir: %s
  ttl: 5m
  accounts: {bench: %s}
`, hostKey, cas.pubFile, filepath.Join(dir, "proxy-audit.log"), host.Addr, u.Username, host.HostKeyPub, forgeCA, benchHostAccount), 0o600)
	addr, logs := runBenchNativeBinary(b, dir, config)
	return addr, signer.PublicKey(), logs
}

// benchProxyTarget is the proxy as git sees it with one client identity.
func benchProxyTarget(b *testing.B, dir, name, addr string, hostPub ssh.PublicKey, logs func() string, clientOpts []string) gitTarget {
	b.Helper()
	h, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		b.Fatal(err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		b.Fatal(err)
	}
	knownHosts := filepath.Join(dir, name+"_known_hosts")
	writeFileB(b, knownHosts, fmt.Appendf(nil, "[%s]:%d %s", h, port, ssh.MarshalAuthorizedKey(hostPub)), 0o644)
	u, err := user.Current()
	if err != nil {
		b.Fatal(err)
	}
	// Not an sshd: the value carries the address, user and pinned host key.
	proxy := &opensshtest.Server{Host: h, Port: port, Addr: addr, User: u.Username, KnownHostsFile: knownHosts}
	return gitTarget{
		name: name,
		url:  proxy.GitURL(benchRepoName),
		env:  []string{"GIT_SSH_COMMAND=" + proxy.GitSSHCommand(clientOpts...)},
		log:  logs,
	}
}

// writeBenchHostKey writes a fresh ed25519 host key and returns it.
func writeBenchHostKey(b *testing.B, path string) ssh.Signer {
	b.Helper()
	keyPath, _ := writeBenchUserKey(b, path)
	data, err := os.ReadFile(keyPath)
	if err != nil {
		b.Fatal(err)
	}
	signer, err := ssh.ParsePrivateKey(data)
	if err != nil {
		b.Fatal(err)
	}
	return signer
}
