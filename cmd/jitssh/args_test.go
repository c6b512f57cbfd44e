package main

import (
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/urfave/cli/v2"
)

func TestPositionalSpecs(t *testing.T) {
	want := map[string]argSpec{
		"request":            {0, 0},
		"request wait":       {1, 1},
		"request cancel":     {1, 1},
		"requests list":      {0, 0},
		"requests show":      {1, 1},
		"approve":            {1, 1},
		"revoke":             {0, 1},
		"release":            {0, 1},
		"status":             {0, 0},
		"dev":                {0, 0},
		"completion":         {1, 1},
		"principals-command": {2, 2},
		"audit show":         {1, 1},
		"audit list":         {0, 0},
		"ca sign":            {0, 0},
		"git-ssh":            {0, -1},
		"hook":               {0, -1},
	}
	seen := 0
	for _, cp := range allCommands() {
		path := strings.Join(cp.words, " ")
		if w, ok := want[path]; ok {
			seen++
			assert.Equal(t, w, positionalSpec(cp.cmd), path)
		}
	}
	assert.Equal(t, len(want), seen, "a command of the table is gone from the tree")
}

// withRequiredFlags adds a value for each required flag of cmd, so that
// the arguments are what is judged.
func withRequiredFlags(cmd *cli.Command, args []string) []string {
	for _, f := range cmd.Flags {
		if r, ok := f.(cli.RequiredFlag); ok && r.IsRequired() {
			args = append(args, "--"+f.Names()[0], "x")
		}
	}
	return args
}

// TestExtraArgumentsAreUsageErrors gives every command one argument more
// than it takes: bad usage, exit 2, one line, before the command acts.
func TestExtraArgumentsAreUsageErrors(t *testing.T) {
	s := newSandbox(t)
	before := s.snapshot(t)
	tested := 0
	for _, cp := range allCommands() {
		if cp.cmd == nil || cp.cmd.Action == nil || cp.cmd.SkipFlagParsing {
			continue
		}
		spec := positionalSpec(cp.cmd)
		args := withRequiredFlags(cp.cmd, slices.Clone(cp.words))
		for i := 0; i <= spec.max; i++ {
			args = append(args, "arg"+string(rune('a'+i)))
		}
		tested++
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			r := s.run(t, args...)
			assertOneLineError(t, r, exitUsage, "")
			last := args[len(args)-1]
			assert.Contains(t, r.stderr, `"`+last+`"`)
			assert.True(t, strings.Contains(r.stderr, "unexpected argument") || strings.Contains(r.stderr, "unknown command"), r.stderr)
		})
	}
	assert.Greater(t, tested, 20)
	assert.Equal(t, before, s.snapshot(t), "a command acted on bad usage")
	assert.Zero(t, s.dials.Load(), "a command dialled out on bad usage")
}

func TestUnknownCommands(t *testing.T) {
	s := newSandbox(t)
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"stauts"}, `unknown command "stauts"; did you mean "status"?`},
		{[]string{"reqeust"}, `did you mean "request"?`},
		{[]string{"frobnicate"}, `unknown command "frobnicate" (jitssh --help lists them)`},
		{[]string{"help", "stauts"}, `unknown command "stauts"; did you mean "status"?`},
		{[]string{"requests", "lst"}, `requests: unknown command "lst"; did you mean "list"? (jitssh requests --help lists them)`},
		{[]string{"request", "wiat"}, `request: unknown command "wiat"; did you mean "wait"?`},
		{[]string{"request", "req-01ABC"}, `"jitssh request wait req-01ABC"`},
		{[]string{"ca", "int"}, `did you mean "init"?`},
		{[]string{"audit", "help", "lsit"}, `audit: unknown command "lsit"; did you mean "list"?`},
	} {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			assertOneLineError(t, s.run(t, tt.args...), exitUsage, tt.want)
		})
	}
	// Asked for JSON, the usage error is JSON too.
	r := s.run(t, "--json", "x")
	assert.Empty(t, r.stdout)
	e := assertJSONError(t, r)
	assert.Equal(t, exitUsage, e.Exit)
	assert.Equal(t, "usage", e.Code)
	assert.Contains(t, e.Error, "flag provided but not defined")
	// Known commands and help topics still work.
	for _, args := range [][]string{{"help", "status"}, {"request", "help", "wait"}, {"requests"}, {}} {
		r := s.run(t, args...)
		require.Equal(t, 0, r.code, "%v: %s", args, r.stderr)
		assert.NotEmpty(t, r.stdout)
	}
}

func TestNearestNames(t *testing.T) {
	cmds := []*cli.Command{{Name: "status"}, {Name: "request"}, {Name: "requests"}, {Name: "release"}, {Name: "revoke"}, {Name: "dev-agent", Hidden: true}}
	for _, tt := range []struct {
		word string
		want []string
	}{
		{"stauts", []string{"status"}},
		{"requst", []string{"request"}},
		{"req", []string{"request", "requests"}},
		{"relase", []string{"release"}},
		{"dev-agnt", nil}, // hidden commands are not suggested
		{"xyz", nil},
		{"", nil},
	} {
		t.Run(tt.word, func(t *testing.T) {
			assert.Equal(t, tt.want, nearestNames(tt.word, cmds))
		})
	}
	assert.Equal(t, 1, editDistance("ab", "ba"))
	assert.Equal(t, 3, editDistance("", "abc"))
	assert.Equal(t, 0, editDistance("same", "same"))
}
