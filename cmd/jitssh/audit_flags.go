package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"
)

// A flag that takes one value and is given twice would silently keep the
// last value: `audit verify --ca old.pub --ca new.pub` would trust only one
// of them. The audit commands' single-value flags refuse a second value
// instead; the flags that take several (--log, --people) say so.

// onceString is a string flag that may be given once on the command line.
// Its environment variable, if any, is only its default.
type onceString struct{ *cli.StringFlag }

func (f onceString) Apply(set *flag.FlagSet) error {
	if err := f.StringFlag.Apply(set); err != nil {
		return err
	}
	once(set, f.Names())
	return nil
}

// onceInt is onceString for an int flag.
type onceInt struct{ *cli.IntFlag }

func (f onceInt) Apply(set *flag.FlagSet) error {
	if err := f.IntFlag.Apply(set); err != nil {
		return err
	}
	once(set, f.Names())
	return nil
}

// once wraps the values of the named flags so that a second value on the
// command line is an error. The flag package calls Set only for values on
// the command line; an environment variable sets the default.
func once(set *flag.FlagSet, names []string) {
	for _, name := range names {
		if f := set.Lookup(name); f != nil {
			f.Value = &onceValue{Value: f.Value}
		}
	}
}

type onceValue struct {
	flag.Value
	set bool
}

func (v *onceValue) Set(s string) error {
	if v.set {
		return fmt.Errorf("given more than once (first %q); give it once", v.Value.String())
	}
	v.set = true
	return v.Value.Set(s)
}

// Get keeps what the wrapped value offers to cli's lookups.
func (v *onceValue) Get() any {
	if g, ok := v.Value.(flag.Getter); ok {
		return g.Get()
	}
	return v.Value.String()
}

// filesFlag is a flag given once per file (--log, --people). Unlike cli's
// slice flags it never splits a value on commas, which file names may
// hold. Its environment variable holds one file or several separated by
// the path list separator (':', as in PATH) and is the default, which
// files on the command line replace.
type filesFlag struct{ *cli.GenericFlag }

func newFilesFlag(name, env, usage string) filesFlag {
	return filesFlag{&cli.GenericFlag{Name: name, Usage: usage, EnvVars: []string{env}, TakesFile: true, Value: &fileList{}}}
}

// Apply registers a fresh list; cli's own Apply would hand the environment
// variable to Set as if it came from the command line.
func (f filesFlag) Apply(set *flag.FlagSet) error {
	v := &fileList{}
	for _, env := range f.EnvVars {
		if s := os.Getenv(env); s != "" {
			v.files, v.fromEnv = filepath.SplitList(s), true
			break
		}
	}
	for _, name := range f.Names() {
		set.Var(v, name, f.Usage)
	}
	return nil
}

type fileList struct {
	files   []string
	fromEnv bool
}

func (l *fileList) Set(s string) error {
	if l.fromEnv {
		l.files, l.fromEnv = nil, false
	}
	l.files = append(l.files, s)
	return nil
}

func (l *fileList) String() string { return strings.Join(l.files, string(os.PathListSeparator)) }

// files returns the files a filesFlag was given.
func files(c *cli.Context, name string) []string {
	if l, ok := c.Generic(name).(*fileList); ok {
		return slices.Clone(l.files)
	}
	return nil
}
