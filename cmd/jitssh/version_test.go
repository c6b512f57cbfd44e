package main

import (
	"encoding/json"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestVersionOf(t *testing.T) {
	platform := runtime.GOOS + "/" + runtime.GOARCH
	for _, tt := range []struct {
		name string
		info *debug.BuildInfo
		want string
	}{
		{"tagged", &debug.BuildInfo{GoVersion: "go1.26.1", Main: debug.Module{Version: "v1.4.0"}},
			"jitssh v1.4.0, go1.26.1 " + platform},
		{"checkout", &debug.BuildInfo{GoVersion: "go1.26.1", Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "0123456789abcdef0123456789abcdef01234567"}, {Key: "vcs.time", Value: "2026-01-02T03:04:05Z"},
			{Key: "vcs.modified", Value: "true"}}},
			"jitssh (devel) (revision 0123456789abcdef0123456789abcdef01234567, 2026-01-02T03:04:05Z, with local changes), go1.26.1 " + platform},
		{"clean checkout", &debug.BuildInfo{GoVersion: "go1.26.1", Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "abc"}, {Key: "vcs.modified", Value: "false"}}},
			"jitssh (devel) (revision abc), go1.26.1 " + platform},
		{"no build info", nil, "jitssh unknown, " + runtime.Version() + " " + platform},
	} {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, versionOf(tt.info).String())
		})
	}
}

// TestVersionReportsTheBuild: jitssh version says exactly what the Go
// toolchain embedded in the binary (go version -m reads the same).
func TestVersionReportsTheBuild(t *testing.T) {
	out, err := exec.Command("go", "version", "-m", jitsshBin).Output()
	require.NoError(t, err)
	want := buildVersion{Platform: runtime.GOOS + "/" + runtime.GOARCH}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) == 2 && strings.HasSuffix(f[0], ":"):
			want.Go = f[1]
		case len(f) >= 3 && f[0] == "mod":
			want.Version = f[2]
		case len(f) == 2 && f[0] == "build":
			k, v, _ := strings.Cut(f[1], "=")
			switch k {
			case "vcs.revision":
				want.Revision = v
			case "vcs.time":
				want.RevisionTime = v
			case "vcs.modified":
				want.Modified = v == "true"
			}
		}
	}
	r := runJitssh(t, nil, "version", "--json")
	require.Equal(t, 0, r.code, r.stderr)
	var got buildVersion
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &got))
	assert.Equal(t, want, got)
	r = runJitssh(t, nil, "version")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, want.String()+"\n", r.stdout)
}
