package opensshtest

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// Forge is a Git host played by stock OpenSSH sshd. TrustedUserCAKeys is
// the host's CA, and an AuthorizedPrincipalsCommand finds the account a
// certificate is for the way the host of Profile does:
//
//   - "gitlab": the key ID is the username, as GitLab self-managed reads it
//     with gitlab-shell-authorized-principals-check %i
//     (https://docs.gitlab.com/ee/administration/operations/ssh_certificates.html);
//   - "github": the value of the login@github.com extension (login@Host
//     for a GitHub Enterprise Server), the only part GitHub reads
//     (https://docs.github.com/en/enterprise-cloud@latest/organizations/managing-git-access-to-your-organizations-repositories/about-ssh-certificate-authorities);
//   - "gitea": a principal an account registered, whatever the key ID, as
//     Gitea writes its authorized principals
//     (https://docs.gitea.com/administration/config-cheat-sheet#ssh-server-ssh).
//
// The account it finds must be one of Accounts, and must also be among the
// certificate's principals (sshd matches the command's output against
// them). It is handed to a forced command, a git-shell-like wrapper that
// records who came and with which certificate, then runs plain
// git-upload-pack or git-receive-pack on a bare repository under Root.
// Every repository gets a pre-receive hook that records each invocation,
// so a test can tell that nothing arrived, and uploadpack.allowFilter, as
// Git hosts allow partial clones.
//
// The principals command runs as /bin/sh SCRIPT: sshd demands that the
// program it runs, and every directory above it, be owned by root, which
// /bin/sh is and a script in a temporary directory is not.
type Forge struct {
	*Server
	// Root holds the bare repositories, "org/app.git".
	Root string
	// LoginsFile gets one line per session: account, tab, command.
	LoginsFile string
	// CertsDir gets the SSH_USER_AUTH file of each session: the
	// certificate it presented.
	CertsDir string
	// HookLog gets "invoked" and the updates of every pre-receive run.
	HookLog string
}

// ForgeConfig is what a Forge trusts and serves.
type ForgeConfig struct {
	// Profile is how the host reads a certificate: "gitlab", "github" or
	// "gitea" (see Forge).
	Profile string
	// Host is, for "github", the GitHub Enterprise Server host name of the
	// login@Host extension; empty means github.com.
	Host string
	// CAPublicKey is the line of the CA the host trusts.
	CAPublicKey string
	// Root holds the bare repositories to serve; each gets the hook, so a
	// Root serves one Forge at a time.
	Root string
	// Accounts are the host's accounts. For "gitea" each has registered
	// its own name as its principal.
	Accounts []string
}

// StartForge starts a Forge; it stops when the test ends.
func StartForge(t testing.TB, cfg ForgeConfig) *Forge {
	t.Helper()
	gitBin := NeedTool(t, "git")
	dir := t.TempDir()
	f := &Forge{
		Root:       cfg.Root,
		LoginsFile: filepath.Join(dir, "logins"),
		CertsDir:   filepath.Join(dir, "certs"),
		HookLog:    filepath.Join(dir, "pre-receive.log"),
	}
	if err := os.Mkdir(f.CertsDir, 0o755); err != nil {
		t.Fatalf("opensshtest: %v", err)
	}
	caFile := filepath.Join(dir, "ca.pub")
	writeFile(t, caFile, strings.TrimSpace(cfg.CAPublicKey)+"\n", 0o644)
	for _, a := range cfg.Accounts {
		if a == "" || strings.ContainsAny(a, " \t\n\"'\\$`*?[]") {
			t.Fatalf("opensshtest: forge account %q: want a plain name", a)
		}
	}

	shell := filepath.Join(dir, "forge-shell")
	script := `#!/bin/sh
account="$1"
cp "$SSH_USER_AUTH" "` + f.CertsDir + `/$account.$$"
printf '%s\t%s\n' "$account" "$SSH_ORIGINAL_COMMAND" >>"` + f.LoginsFile + `"
case "$SSH_ORIGINAL_COMMAND" in
"git-upload-pack '"*"'") service=upload-pack ;;
"git-receive-pack '"*"'") service=receive-pack ;;
*) echo "forge: only Git here" >&2; exit 1 ;;
esac
path=${SSH_ORIGINAL_COMMAND#*\'}
path=${path%\'}
case "$path" in *..*) echo "forge: no such repository" >&2; exit 1 ;; esac
exec "` + gitBin + `" "$service" "` + cfg.Root + `/$path"
`
	writeFile(t, shell, script, 0o755)
	principals := filepath.Join(dir, "forge-principals")
	writeFile(t, principals, principalsScript(t, cfg, shell), 0o755)
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Fatalf("opensshtest: %v", err)
	}
	if sh, err = filepath.EvalSymlinks(sh); err != nil {
		t.Fatalf("opensshtest: %v", err)
	}
	u, err := user.Current()
	if err != nil {
		t.Fatalf("opensshtest: current user: %v", err)
	}

	hook := "#!/bin/sh\necho invoked >>\"" + f.HookLog + "\"\ncat >>\"" + f.HookLog + "\"\n"
	err = filepath.WalkDir(cfg.Root, func(path string, e os.DirEntry, err error) error {
		if err != nil || !e.IsDir() || !strings.HasSuffix(path, ".git") {
			return err
		}
		writeFile(t, filepath.Join(path, "hooks", "pre-receive"), hook, 0o755)
		if out, err := exec.Command(gitBin, "--git-dir", path, "config", "uploadpack.allowFilter", "true").CombinedOutput(); err != nil {
			return fmt.Errorf("git config in %s: %v: %s", path, err, out)
		}
		return filepath.SkipDir
	})
	if err != nil {
		t.Fatalf("opensshtest: forge repositories: %v", err)
	}
	f.Server = Start(t, Config{
		TrustedUserCAKeys:               caFile,
		AuthorizedPrincipalsCommand:     sh + " " + principals + " %i %t %k",
		AuthorizedPrincipalsCommandUser: u.Username,
		ExposeAuthInfo:                  true,
		ExtraConfig: []string{
			// Git hosts speak protocol v2 to clients that ask.
			"AcceptEnv GIT_PROTOCOL",
			// sshd runs the forced command with the account's shell, and
			// Debian's bash then sources ~/.bashrc, which on a developer's
			// account may cost more than the Git operation. A Git host's
			// git account has no such rc; bash reads it only at shell
			// level 1.
			"SetEnv SHLVL=1",
		},
	})
	return f
}

// principalsScript is the AuthorizedPrincipalsCommand of cfg's profile,
// called with the key ID, the key type and the base64 certificate. It
// prints one authorized_keys-style line for the account it finds:
// restrict, the forced command shell ACCOUNT, and ACCOUNT as the
// principal sshd must then find in the certificate.
func principalsScript(t testing.TB, cfg ForgeConfig, shell string) string {
	t.Helper()
	known := " " + strings.Join(cfg.Accounts, " ") + " "
	emit := `case "$account" in ""|*[!A-Za-z0-9_.@+-]*) exit 0 ;; esac
case "` + known + `" in *" $account "*) printf 'restrict,command="%s %s" %s\n' "` + shell + `" "$account" "$account" ;; esac
`
	switch cfg.Profile {
	case "gitlab":
		return "#!/bin/sh\naccount=\"$1\"\n" + emit
	case "github":
		host := cfg.Host
		if host == "" {
			host = "github.com"
		}
		keygen, sed, awk := NeedTool(t, "ssh-keygen"), NeedTool(t, "sed"), NeedTool(t, "awk")
		// ssh-keygen -L prints an extension it does not know as
		// "NAME UNKNOWN OPTION: HEX (len N)", HEX being the value as an
		// SSH string: four bytes of length, then the bytes.
		return `#!/bin/sh
hex=$(printf '%s %s\n' "$2" "$3" | "` + keygen + `" -L -f - |
	"` + sed + `" -n 's/^ *login@` + strings.ReplaceAll(host, ".", `\.`) + ` UNKNOWN OPTION: \([0-9a-f]*\) (len [0-9]*)$/\1/p')
account=$(printf '%s\n' "$hex" | "` + awk + `" '{
	d = "0123456789abcdef"; s = ""
	for (i = 9; i < length($0); i += 2)
		s = s sprintf("%c", 16 * (index(d, substr($0, i, 1)) - 1) + index(d, substr($0, i + 1, 1)) - 1)
	print s
}')
` + emit
	case "gitea":
		var b strings.Builder
		b.WriteString("#!/bin/sh\n")
		for _, a := range cfg.Accounts {
			fmt.Fprintf(&b, "printf 'restrict,command=\"%%s %%s\" %%s\\n' %q %q %q\n", shell, a, a)
		}
		return b.String()
	}
	t.Fatalf("opensshtest: forge profile %q: want gitlab, github or gitea", cfg.Profile)
	return ""
}

// Logins returns the forge's login lines so far: account, tab, command.
func (f *Forge) Logins(t testing.TB) []string {
	t.Helper()
	data := readOptional(t, f.LoginsFile)
	if data == "" {
		return nil
	}
	return strings.Split(strings.TrimSpace(data), "\n")
}

// HookRuns returns what the pre-receive hooks recorded so far.
func (f *Forge) HookRuns(t testing.TB) string {
	t.Helper()
	return readOptional(t, f.HookLog)
}

// Presented returns the files, in name order, holding what each session
// presented ("publickey TYPE BASE64").
func (f *Forge) Presented(t testing.TB) []string {
	t.Helper()
	entries, err := os.ReadDir(f.CertsDir)
	if err != nil {
		t.Fatalf("opensshtest: %v", err)
	}
	var files []string
	for _, e := range entries {
		files = append(files, filepath.Join(f.CertsDir, e.Name()))
	}
	sort.Strings(files)
	return files
}

func readOptional(t testing.TB, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return ""
	}
	if err != nil {
		t.Fatalf("opensshtest: %v", err)
	}
	return string(data)
}
