package ca

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"sync"

	"github.com/jitssh/jitssh/internal/atomicfile"
)

// BreakGlassBit is set in every serial from a SerialFile. The approval
// daemon's serials stay below it, so a break-glass certificate can never
// share a serial with a daemon-issued one, and an auditor can tell them
// apart at a glance.
const BreakGlassBit uint64 = 1 << 63

// ErrSerialsExhausted is returned when a serial counter would run into
// BreakGlassBit.
var ErrSerialsExhausted = errors.New("serial counter exhausted")

// SerialFile is a SerialSource backed by a file, for break-glass signing
// from the command line. The file holds one decimal number, the count of
// serials issued so far; serial n is n|BreakGlassBit. Processes sharing the
// file are serialized by an exclusive flock on path+".lock", and each new
// count is written to a temporary file, synced and renamed into place before
// NextSerial returns, so a serial is never handed out twice, whether
// processes race or crash.
type SerialFile struct {
	path string
	mu   sync.Mutex // flock alone does not order goroutines sharing a descriptor table
}

// OpenSerialFile returns a SerialFile for path. A missing file means no
// serial has been issued yet; it is created by the first NextSerial, so
// opening has no side effects. A file that does not hold a count is refused:
// starting over from zero would reuse serials.
func OpenSerialFile(path string) (*SerialFile, error) {
	if _, err := readSerialCount(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	return &SerialFile{path: path}, nil
}

// Path returns the file's path.
func (s *SerialFile) Path() string { return s.path }

// NextSerial records and returns the next break-glass serial.
func (s *SerialFile) NextSerial() (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()

	lockPath := s.path + ".lock"
	lock, err := os.OpenFile(lockPath, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return 0, fmt.Errorf("next serial: %w", err)
	}
	defer lock.Close() // closing the descriptor drops the lock
	if err := lockFile(lock); err != nil {
		return 0, fmt.Errorf("next serial: lock %s: %w", lockPath, err)
	}

	count, err := readSerialCount(s.path)
	if errors.Is(err, fs.ErrNotExist) {
		count, err = 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("next serial: %w", err)
	}
	next := count + 1
	if next >= BreakGlassBit {
		return 0, fmt.Errorf("next serial: %w: %s holds %d", ErrSerialsExhausted, s.path, count)
	}
	if err := atomicfile.WriteFile(s.path, []byte(strconv.FormatUint(next, 10)+"\n"), 0o600); err != nil {
		return 0, fmt.Errorf("next serial: %w", err)
	}
	return next | BreakGlassBit, nil
}

// readSerialCount reads the count stored at path. The file is only ever
// replaced whole, so an empty or garbled file is damage, not a fresh start.
func readSerialCount(path string) (uint64, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("read serial file: %w", err)
	}
	text := strings.TrimSuffix(string(data), "\n")
	n, err := strconv.ParseUint(text, 10, 64)
	if err != nil || n >= BreakGlassBit {
		return 0, fmt.Errorf("read serial file %s: want one decimal count below 2^63, found %q", path, text)
	}
	return n, nil
}
