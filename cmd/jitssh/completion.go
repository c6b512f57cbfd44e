package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/urfave/cli/v2"
)

// completionFlag ends a completion query: the scripts run
//
//	jitssh WORD... CURRENT --generate-bash-completion
//
// with the words typed so far and the word under the cursor (possibly
// empty). run answers it before anything else, so completing a command
// never runs it: no daemon is dialled, no file is written, nothing waits.
const completionFlag = "--generate-bash-completion"

// completionCommand prints a shell completion script. The scripts ask
// jitssh itself for candidates, so they never go stale.
func completionCommand() *cli.Command {
	return &cli.Command{
		Name:  "completion",
		Usage: "print a shell completion script: eval \"$(jitssh completion bash)\"",
		Description: "bash:  eval \"$(jitssh completion bash)\"          (in ~/.bashrc)\n" +
			"zsh:   eval \"$(jitssh completion zsh)\"           (in ~/.zshrc, after compinit)\n" +
			"fish:  jitssh completion fish | source          (in ~/.config/fish/config.fish)\n\n" +
			"Completing asks jitssh for the command and flag names that fit; it never runs the\n" +
			"command being completed.",
		ArgsUsage: "bash|zsh|fish",
		Action: func(c *cli.Context) error {
			script, ok := completionScripts[c.Args().First()]
			if !ok {
				return cli.Exit("jitssh completion needs bash, zsh or fish", exitUsage)
			}
			fmt.Fprint(c.App.Writer, script)
			return nil
		},
	}
}

// writeCompletions answers a completion query; args are the words after
// "jitssh", the last one the word being completed.
func writeCompletions(w io.Writer, root []*cli.Command, args []string) {
	for _, word := range completions(root, args) {
		fmt.Fprintln(w, word)
	}
}

// completions lists the command names, flag names or fixed argument words
// that may stand where the last of args is being typed, and that begin
// with it. It only reads the command tree.
func completions(root []*cli.Command, args []string) []string {
	cur := ""
	if len(args) > 0 {
		cur, args = args[len(args)-1], args[:len(args)-1]
	}
	var cmd *cli.Command
	subs := root
	positional, dashes, wantsValue := false, false, false
	for _, word := range args {
		switch {
		case wantsValue:
			wantsValue = false
		case dashes:
		case word == "--":
			dashes = true
		case cmd != nil && cmd.SkipFlagParsing:
			positional = true
		case strings.HasPrefix(word, "-") && len(word) > 1:
			name, _, hasValue := strings.Cut(strings.TrimLeft(word, "-"), "=")
			wantsValue = !hasValue && cmd != nil && takesValue(cmd, name)
		default:
			if next := findCommand(subs, word); next != nil && !positional {
				cmd, subs = next, next.Subcommands
				continue
			}
			positional = true
		}
	}
	if wantsValue || dashes || (cmd != nil && cmd.SkipFlagParsing) {
		return nil // a flag's value or a free argument: the shell's own completion fits
	}
	var words []string
	if strings.HasPrefix(cur, "-") {
		words = flagNames(cmd)
	} else if !positional {
		for _, c := range subs {
			if !c.Hidden {
				words = append(words, c.Name)
			}
		}
		if cmd != nil && len(subs) == 0 {
			words = argumentChoices(cmd)
		}
	}
	var out []string
	for _, w := range words {
		if strings.HasPrefix(w, cur) {
			out = append(out, w)
		}
	}
	return out
}

// flagNames are cmd's visible flags as typed, and --help; nil cmd is the
// top level, which has only --help.
func flagNames(cmd *cli.Command) []string {
	var out []string
	if cmd != nil {
		for _, f := range cmd.Flags {
			if v, ok := f.(cli.VisibleFlag); ok && !v.IsVisible() {
				continue
			}
			for _, n := range f.Names() {
				if len(n) == 1 {
					out = append(out, "-"+n)
				} else {
					out = append(out, "--"+n)
				}
			}
		}
		if cmd.HideHelp {
			return out
		}
	}
	return append(out, "--help")
}

// argumentChoices reads fixed words from a usage such as "bash|zsh|fish".
func argumentChoices(cmd *cli.Command) []string {
	if !strings.Contains(cmd.ArgsUsage, "|") || strings.ContainsAny(cmd.ArgsUsage, " []") {
		return nil
	}
	choices := strings.Split(cmd.ArgsUsage, "|")
	for _, w := range choices {
		if w == "" || strings.ToLower(w) != w {
			return nil
		}
	}
	return choices
}

var completionScripts = map[string]string{
	"bash": bashCompletion,
	"zsh":  zshCompletion,
	"fish": fishCompletion,
}

// The scripts pass the words as arguments and take the answer line by
// line, as data: nothing in it is expanded or run by the shell.

const bashCompletion = `_jitssh_complete() {
  local cur="${COMP_WORDS[COMP_CWORD]}" word
  local -a words
  COMPREPLY=()
  mapfile -t words < <("${COMP_WORDS[0]}" "${COMP_WORDS[@]:1:COMP_CWORD}" --generate-bash-completion 2>/dev/null)
  for word in "${words[@]}"; do
    [[ "$word" == "$cur"* ]] && COMPREPLY+=("$word")
  done
  return 0
}
complete -o bashdefault -o default -F _jitssh_complete jitssh
`

const zshCompletion = `#compdef jitssh
_jitssh() {
  local -a opts
  opts=("${(@f)$("${words[1]}" "${(@)words[2,CURRENT]}" --generate-bash-completion 2>/dev/null)}")
  opts=("${(@)opts:#}")
  if (( ${#opts} )); then
    compadd -Q -- "${(@)opts}"
  else
    _files
  fi
}
compdef _jitssh jitssh
`

const fishCompletion = `function __jitssh_complete
    set -l words (commandline -opc)
    set -l cur (commandline -ct)
    $words[1] $words[2..-1] "$cur" --generate-bash-completion 2>/dev/null
end
function __jitssh_wants_files
    set -l found (__jitssh_complete)
    test (count $found) -eq 0
end
complete -c jitssh -f -a '(__jitssh_complete)'
complete -c jitssh -n __jitssh_wants_files -F
`
