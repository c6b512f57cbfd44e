package opensshtest

import (
	"os"
	"path/filepath"
	"testing"
)

func TestCheckSafePath(t *testing.T) {
	tmp := t.TempDir() // under /tmp, mode 1777
	loose := filepath.Join(tmp, "loose")
	if err := os.Mkdir(loose, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(loose, 0o775); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		path string
		safe bool
	}{
		{"/", true},
		{"/usr/bin", true},
		{os.TempDir(), false},
		{tmp, false},
		{loose, false},
	}
	for _, tt := range tests {
		err := checkSafePath(tt.path)
		if (err == nil) != tt.safe {
			t.Errorf("checkSafePath(%q) = %v, want safe=%v", tt.path, err, tt.safe)
		}
	}
}
