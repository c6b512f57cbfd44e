package audit

import (
	"os"
	"syscall"
	"time"
)

// dropCache asks the kernel to drop the cached pages of the file at path,
// so that the next read of it goes to the disk: a cold lookup.
func dropCache(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	const fadvDontNeed = 4
	if _, _, errno := syscall.Syscall6(syscall.SYS_FADVISE64, f.Fd(), 0, 0, fadvDontNeed, 0, 0); errno != 0 {
		return errno
	}
	return nil
}

// cpuTime returns the CPU time the process has used: on a shared machine
// the time per operation moves with everything else running, the CPU time
// much less.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
