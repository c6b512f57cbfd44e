//go:build !unix

package ca

import (
	"errors"
	"os"
)

// lockFile is not available: without a cross-process lock two signers could
// hand out the same serial, so break-glass serials are refused instead.
func lockFile(*os.File) error {
	return errors.New("file locking is not supported on this platform")
}
