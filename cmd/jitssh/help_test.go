package main

import (
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/urfave/cli/v2"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// TestHelpGolden keeps the help of the people's commands as reviewed, in
// testdata/help (go test -run TestHelpGolden -update rewrites them).
func TestHelpGolden(t *testing.T) {
	for _, path := range []string{
		"request", "request wait", "request cancel", "requests list", "requests show", "requests watch",
		"approve", "deny", "revoke", "status", "whoami", "release", "dev", "completion",
	} {
		t.Run(path, func(t *testing.T) {
			r := runJitssh(t, nil, append(strings.Fields(path), "--help")...)
			require.Equal(t, 0, r.code, r.stderr)
			golden := filepath.Join("testdata", "help", strings.ReplaceAll(path, " ", "_")+".txt")
			if *update {
				require.NoError(t, os.MkdirAll(filepath.Dir(golden), 0o755))
				require.NoError(t, os.WriteFile(golden, []byte(r.stdout), 0o644))
			}
			want, err := os.ReadFile(golden)
			require.NoError(t, err, "no golden file: run go test -run TestHelpGolden -update")
			assert.Equal(t, string(want), r.stdout)
		})
	}
}

// TestHelpFlagLines checks every flag of every command as help shows it:
// a switch shows no value placeholder, and no flag shows two defaults.
func TestHelpFlagLines(t *testing.T) {
	for _, cp := range allCommands() {
		if cp.cmd == nil || cp.cmd.HideHelp || cp.cmd.Hidden {
			continue
		}
		t.Run(strings.Join(cp.words, " "), func(t *testing.T) {
			r := runJitssh(t, nil, append(cp.words, "--help")...)
			require.Equal(t, 0, r.code, r.stderr)
			lines := strings.Split(r.stdout, "\n")
			for _, f := range cp.cmd.Flags {
				names := make([]string, len(f.Names()))
				for i, n := range f.Names() {
					names[i] = "-" + n
					if len(n) > 1 {
						names[i] = "--" + n
					}
				}
				prefix := regexp.MustCompile(`^\s+` + regexp.QuoteMeta(strings.Join(names, ", ")) + `(\s|$)`)
				var line string
				for _, l := range lines {
					if prefix.MatchString(l) {
						line = l
						break
					}
				}
				if v, ok := f.(cli.VisibleFlag); ok && !v.IsVisible() {
					continue
				}
				require.NotEmpty(t, line, "%s is not in the help:\n%s", names[0], r.stdout)
				if _, isBool := f.(*cli.BoolFlag); isBool {
					assert.Regexp(t, regexp.MustCompile(prefix.String()[:len(prefix.String())-len(`(\s|$)`)]+`\s{2,}\S`), line, "a switch shown with a value")
				}
				assert.LessOrEqual(t, strings.Count(line, "(default:"), 1, "two defaults: %q", line)
				assert.NotContains(t, line, "(default: false)", "a switch's default is that it is off")
			}
		})
	}
}
