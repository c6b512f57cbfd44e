package main

import (
	"fmt"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"
)

// argSpec is how many positional arguments a command takes; max < 0 means
// any number.
type argSpec struct{ min, max int }

// positionalSpec reads a command's arguments from its usage, so that what
// help shows and what the command accepts cannot drift apart: ArgsUsage
// ("ID", "[ID]", "%t %k", "bash|zsh|fish", "FILE..."), else the words of
// UsageText that are neither the command's path nor a flag or its value.
// A command that skips flag parsing takes anything.
func positionalSpec(cmd *cli.Command) argSpec {
	if cmd.SkipFlagParsing {
		return argSpec{0, -1}
	}
	var words []string
	if cmd.ArgsUsage != "" {
		words = strings.Fields(cmd.ArgsUsage)
	} else {
		words = usageTextPositionals(cmd)
	}
	var spec argSpec
	for _, w := range words {
		if strings.Contains(w, "...") {
			spec.max = -1
			if !strings.HasPrefix(w, "[") {
				spec.min++
			}
			continue
		}
		if spec.max >= 0 {
			spec.max++
		}
		if !strings.HasPrefix(w, "[") {
			spec.min++
		}
	}
	return spec
}

// usageTextPositionals picks the positional words out of the first line
// of a UsageText such as "jitssh audit show --log FILE [--json] SERIAL".
func usageTextPositionals(cmd *cli.Command) []string {
	line, _, _ := strings.Cut(cmd.UsageText, "\n")
	fields := strings.Fields(line)
	if i := slices.Index(fields, cmd.Name); i >= 0 {
		fields = fields[i+1:]
	} else {
		return nil
	}
	var out []string
	for i := 0; i < len(fields); i++ {
		tok := fields[i]
		if !strings.Contains(tok, "-") || strings.Trim(tok, "[]") == "" || !strings.HasPrefix(strings.TrimLeft(tok, "[("), "-") {
			out = append(out, tok)
			continue
		}
		// A flag, maybe with alternatives: "--branch B|--ref REF" takes
		// a value after each of its names.
		for {
			name := strings.TrimLeft(strings.Trim(tok, "[]()."), "-")
			if strings.HasSuffix(tok, "]") || !takesValue(cmd, name) || i+1 >= len(fields) {
				break
			}
			i++
			alt := fields[i]
			j := strings.Index(alt, "|-")
			if j < 0 {
				break
			}
			tok = alt[j+1:]
		}
	}
	return out
}

// checkArgs wraps every action in the tree so that a positional argument
// the command does not take is bad usage (exit 2) before the command does
// anything, and a word that is not one of a group's commands says so, with
// the nearest names.
func checkArgs(cmds []*cli.Command) {
	for _, cmd := range cmds {
		checkArgs(cmd.Subcommands)
		if cmd.Action == nil || cmd.SkipFlagParsing {
			continue
		}
		action, spec := cmd.Action, positionalSpec(cmd)
		cmd.Action = func(c *cli.Context) error {
			if spec.max >= 0 && c.NArg() > spec.max {
				extra := c.Args().Get(spec.max)
				if spec.max == 0 && len(ownSubcommands(c.Command)) > 0 {
					return unknownCommand(c.Command.HelpName, extra, c.Command.Subcommands)
				}
				return cli.Exit(fmt.Sprintf("unexpected argument %q; usage: %s", extra, usageLine(c.Command, spec)), exitUsage)
			}
			return action(c)
		}
	}
}

// ownSubcommands are cmd's subcommands without the help command urfave/cli
// adds to each.
func ownSubcommands(cmd *cli.Command) []*cli.Command {
	var out []*cli.Command
	for _, c := range cmd.Subcommands {
		if c.Name != "help" {
			out = append(out, c)
		}
	}
	return out
}

// usageLine is the one-line usage printed with an argument error.
func usageLine(cmd *cli.Command, spec argSpec) string {
	if cmd.UsageText != "" {
		line, _, _ := strings.Cut(cmd.UsageText, "\n")
		return line
	}
	if spec.max == 0 {
		return cmd.HelpName + " [options] (no arguments)"
	}
	return cmd.HelpName + " [options] " + cmd.ArgsUsage
}

// unknownCommand is the error for a word that names no command of parent.
func unknownCommand(parent, word string, cmds []*cli.Command) error {
	msg := fmt.Sprintf("unknown command %q", word)
	if sub, ok := strings.CutPrefix(parent, "jitssh "); ok {
		msg = sub + ": " + msg
	}
	if near := nearestNames(word, cmds); len(near) > 0 {
		msg += fmt.Sprintf("; did you mean %s?", quotedOr(near))
	} else if strings.HasPrefix(word, "req-") {
		// A request ID where a command was expected: name the commands
		// that take one.
		var withID []string
		for _, c := range cmds {
			if c.ArgsUsage == "ID" && !c.Hidden {
				withID = append(withID, parent+" "+c.Name+" "+word)
			}
		}
		if len(withID) > 0 {
			msg += fmt.Sprintf("; did you mean %s?", quotedOr(withID))
		}
	}
	return cli.Exit(msg+fmt.Sprintf(" (%s --help lists them)", parent), exitUsage)
}

// helpTopicError checks the topic of "jitssh [CMD...] help TOPIC": an
// unknown topic is an unknown command, not urfave/cli's exit 3, which
// jitssh uses for a denied request.
func helpTopicError(root []*cli.Command, args []string) error {
	subs, path := root, "jitssh"
	for i := 1; i < len(args); i++ {
		tok := args[i]
		if strings.HasPrefix(tok, "-") {
			return nil
		}
		if next := findCommand(subs, tok); next != nil {
			subs, path = next.Subcommands, path+" "+next.Name
			continue
		}
		if tok != "help" && tok != "h" || i+1 >= len(args) {
			return nil
		}
		topic := args[i+1]
		if strings.HasPrefix(topic, "-") || findCommand(subs, topic) != nil {
			return nil
		}
		return unknownCommand(path, topic, subs)
	}
	return nil
}

func quotedOr(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = fmt.Sprintf("%q", n)
	}
	if len(q) == 1 {
		return q[0]
	}
	return strings.Join(q[:len(q)-1], ", ") + " or " + q[len(q)-1]
}

// nearestNames are the visible command names closest to word: within
// a third of its length in edits (transpositions count once), or starting
// with it. At most three.
func nearestNames(word string, cmds []*cli.Command) []string {
	limit := max(1, len(word)/3)
	best, bestDist := []string(nil), limit+1
	for _, c := range cmds {
		if c.Hidden {
			continue
		}
		for _, name := range c.Names() {
			d := editDistance(word, name)
			if len(word) >= 3 && strings.HasPrefix(name, word) {
				d = min(d, 1)
			}
			switch {
			case d < bestDist:
				best, bestDist = []string{c.Name}, d
			case d == bestDist && !slices.Contains(best, c.Name):
				best = append(best, c.Name)
			}
		}
	}
	if len(best) > 3 {
		best = best[:3]
	}
	return best
}

// editDistance is the optimal string alignment distance between a and b:
// insertions, deletions, substitutions and swaps of neighbours.
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	d := make([][]int, len(ra)+1)
	for i := range d {
		d[i] = make([]int, len(rb)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(ra); i++ {
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(ra)][len(rb)]
}
