package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/urfave/cli/v2"
)

// buildVersion is what jitssh version reports, all from the build
// information the Go toolchain embeds.
type buildVersion struct {
	// Version is the module version: a tag for `go install ...@v1.2.3`,
	// "(devel)" for a build from a checkout.
	Version string `json:"version"`
	// Revision, RevisionTime and Modified come from the VCS when the
	// binary was built inside a checkout.
	Revision     string `json:"revision,omitempty"`
	RevisionTime string `json:"revision_time,omitempty"`
	Modified     bool   `json:"modified,omitempty"`
	Go           string `json:"go"`
	Platform     string `json:"platform"`
}

func versionCommand() *cli.Command {
	return &cli.Command{
		Name:  "version",
		Usage: "print jitssh's version, the revision it was built from, and the Go version",
		Flags: []cli.Flag{jsonOutFlag()},
		Action: func(c *cli.Context) error {
			info, _ := debug.ReadBuildInfo()
			v := versionOf(info)
			if c.Bool("json") {
				return writeJSON(c.App.Writer, v)
			}
			fmt.Fprintln(c.App.Writer, v)
			return nil
		},
	}
}

func versionOf(info *debug.BuildInfo) buildVersion {
	v := buildVersion{Version: "unknown", Go: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if info == nil {
		return v
	}
	if info.Main.Version != "" {
		v.Version = info.Main.Version
	}
	if info.GoVersion != "" {
		v.Go = info.GoVersion
	}
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			v.Revision = s.Value
		case "vcs.time":
			v.RevisionTime = s.Value
		case "vcs.modified":
			v.Modified = s.Value == "true"
		}
	}
	return v
}

func (v buildVersion) String() string {
	s := "jitssh " + v.Version
	var vcs []string
	if v.Revision != "" {
		vcs = append(vcs, "revision "+v.Revision)
	}
	if v.RevisionTime != "" {
		vcs = append(vcs, v.RevisionTime)
	}
	if v.Modified {
		vcs = append(vcs, "with local changes")
	}
	if len(vcs) > 0 {
		s += " (" + strings.Join(vcs, ", ") + ")"
	}
	return s + ", " + v.Go + " " + v.Platform
}
