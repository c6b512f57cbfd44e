package opensshtest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// Forge is a Git host played by stock OpenSSH sshd, the way GitLab
// self-managed runs behind it: TrustedUserCAKeys is the host's CA, and an
// AuthorizedPrincipalsFile maps each account's principal to a forced
// command, a git-shell-like wrapper that records who came and with which
// certificate, then runs plain git-upload-pack or git-receive-pack on a
// bare repository under Root. Every repository gets a pre-receive hook
// that records each invocation, so a test can tell that nothing arrived,
// and uploadpack.allowFilter, as Git hosts allow partial clones.
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
	// CAPublicKey is the line of the CA the host trusts.
	CAPublicKey string
	// Root holds the bare repositories to serve; each gets the hook.
	Root string
	// Accounts are the principals the host maps to accounts, one each.
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
	var principals strings.Builder
	for _, a := range cfg.Accounts {
		fmt.Fprintf(&principals, "restrict,command=\"%s %s\" %s\n", shell, a, a)
	}
	principalsFile := filepath.Join(dir, "principals")
	writeFile(t, principalsFile, principals.String(), 0o644)

	hook := "#!/bin/sh\necho invoked >>\"" + f.HookLog + "\"\ncat >>\"" + f.HookLog + "\"\n"
	err := filepath.WalkDir(cfg.Root, func(path string, e os.DirEntry, err error) error {
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
		TrustedUserCAKeys:        caFile,
		AuthorizedPrincipalsFile: principalsFile,
		ExposeAuthInfo:           true,
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
