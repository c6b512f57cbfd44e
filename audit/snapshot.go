package audit

import (
	"fmt"
	"io"
	"os"
	"syscall"
)

// Snapshot reads a log file as it was when OpenSnapshot returned: whole
// entries only, however busy its writers are. Pass it to Verify,
// VerifyCheckpoint or BuildIndex.
type Snapshot struct {
	*io.SectionReader
	f *os.File
}

// OpenSnapshot opens the log at path for reading. It takes the writers'
// lock just long enough to read the file's size, so that an append in
// progress, which would look like a torn tail, is either wholly in the
// snapshot or not at all.
func OpenSnapshot(path string) (*Snapshot, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open audit log: %w", err)
	}
	size, err := sizeUnderLock(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("open audit log %s: %w", path, err)
	}
	return &Snapshot{SectionReader: io.NewSectionReader(f, 0, size), f: f}, nil
}

func sizeUnderLock(f *os.File) (int64, error) {
	if err := flock(f, syscall.LOCK_SH); err != nil {
		return 0, fmt.Errorf("lock: %w", err)
	}
	defer unlockFile(f)
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

// Close closes the file.
func (s *Snapshot) Close() error { return s.f.Close() }
