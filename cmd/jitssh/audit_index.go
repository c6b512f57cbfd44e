package main

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/jitssh/jitssh/audit"
)

// Every audit command reads a log through its persistent index
// (audit.IndexFile), kept in the user's cache directory
// ($XDG_CACHE_HOME/jitssh/audit-index, ~/.cache/... by default) or in
// --index-dir, never beside the log, which may be the daemon's or a
// read-only copy. The first command on a log builds its index; every later
// one reads only what was appended since.

// indexSuffix ends an index's file name.
const indexSuffix = ".index"

func auditIndexDirFlag() cli.Flag {
	return onceString{&cli.StringFlag{Name: "index-dir", EnvVars: []string{"JITSSH_AUDIT_INDEX_DIR"},
		Usage: "keep the logs' indexes in this directory (default: $XDG_CACHE_HOME/jitssh/audit-index)"}}
}

// indexDir is where the indexes of the audit commands go.
func indexDir(c *cli.Context) (string, error) {
	if dir := c.String("index-dir"); dir != "" {
		return dir, nil
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("no directory for the audit indexes (%v): give --index-dir", err)
	}
	return filepath.Join(cache, "jitssh", "audit-index"), nil
}

// indexPath is where the index of the log at path is kept in dir: under
// the log's name and a digest of its absolute path, so that two logs of
// one name do not share an index.
func indexPath(dir, path string) string {
	abs, err := filepath.Abs(path)
	if err != nil {
		abs = path
	}
	sum := sha256.Sum256([]byte(abs))
	return filepath.Join(dir, filepath.Base(path)+"-"+hex.EncodeToString(sum[:6])+indexSuffix)
}

// openLogIndex opens the log at path with its index, caught up, and says
// on stderr when the index had to be built again.
func openLogIndex(c *cli.Context, path string) (*audit.IndexFile, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("open audit log: %w", err)
	}
	dir, err := indexDir(c)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("audit index directory: %w", err)
	}
	at := indexPath(dir, path)
	ix, err := audit.OpenIndexFile(at, path)
	if errors.Is(err, os.ErrPermission) {
		return nil, fmt.Errorf("%w (give --index-dir to keep the index elsewhere)", err)
	}
	if err != nil {
		return nil, fmt.Errorf("audit log %s: %w", path, err)
	}
	if ix.Rebuilt != "" {
		fmt.Fprintf(c.App.ErrWriter, "note: index %s rebuilt: %s\n", at, ix.Rebuilt)
	}
	return ix, nil
}

func auditIndexCommand() *cli.Command {
	return &cli.Command{
		Name:  "index",
		Usage: "show or rebuild the logs' persistent indexes",
		Description: "The audit commands read each log through an index kept in $XDG_CACHE_HOME/jitssh/audit-index\n" +
			"(or --index-dir), built on first use and caught up with what was appended since on every\n" +
			"later use. An index that no longer matches its log (cut short, replaced, rewritten) is\n" +
			"built again by itself; `rebuild` does so on demand.",
		Subcommands: []*cli.Command{
			{
				Name:      "status",
				Usage:     "how far each log is indexed",
				UsageText: "jitssh audit index status --log FILE [--log FILE...] [--index-dir DIR]",
				Flags:     []cli.Flag{auditLogFlag(), auditIndexDirFlag()},
				Action:    cliAction(func(c *cli.Context) error { return auditIndex(c, false) }),
			},
			{
				Name:      "rebuild",
				Usage:     "index each log again from its start",
				UsageText: "jitssh audit index rebuild --log FILE [--log FILE...] [--index-dir DIR]",
				Flags:     []cli.Flag{auditLogFlag(), auditIndexDirFlag()},
				Action:    cliAction(func(c *cli.Context) error { return auditIndex(c, true) }),
			},
		},
		Action: commandGroup("audit index"),
	}
}

func auditIndex(c *cli.Context, rebuild bool) error {
	if err := noArgs(c); err != nil {
		return err
	}
	paths, err := logPaths(c)
	if err != nil {
		return err
	}
	var out strings.Builder
	for _, p := range paths {
		ix, err := openLogIndex(c, p)
		if err != nil {
			return err
		}
		if rebuild {
			if _, err := ix.Rebuild(); err != nil {
				ix.Close()
				return fmt.Errorf("audit log %s: %w", p, err)
			}
		}
		head := ix.Head()
		ix.Close()
		dir, err := indexDir(c)
		if err != nil {
			return err
		}
		at := indexPath(dir, p)
		size := int64(0)
		if fi, err := os.Stat(at); err == nil {
			size = fi.Size()
		}
		verb := "indexed"
		if rebuild {
			verb = "rebuilt"
		}
		fmt.Fprintf(&out, "%s: %s %d entries, head %s, in %s (%d KiB)\n", terminalSafe(p), verb, head.Seq, head.Hash, terminalSafe(at), size>>10)
	}
	_, err = fmt.Fprint(c.App.Writer, out.String())
	return err
}
