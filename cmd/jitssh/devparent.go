package main

import (
	"context"
	"os"
	"time"
)

// parentPoll is how often jitssh dev checks that its parent is still
// there.
const parentPoll = 250 * time.Millisecond

// untilParentGoes returns a context that ends when the process that
// started jitssh dev goes away: killing `go run` (even with SIGKILL) must
// not leave the playground and its agents running. A process whose parent
// dies is handed to another (init, or a subreaper), so its parent ID
// changes; that works on every Unix, unlike a parent-death signal, which
// Linux sends when the parent's forking thread ends rather than the
// parent. A jitssh dev started by init itself has no parent to lose.
// parentGone reports whether that is why the context ended; stop releases
// the watch.
func untilParentGoes(ctx context.Context) (watched context.Context, stop func(), parentGone func() bool) {
	ppid := os.Getppid()
	ctx, cancel := context.WithCancel(ctx)
	gone := make(chan struct{})
	if ppid > 1 {
		go func() {
			t := time.NewTicker(parentPoll)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
				if os.Getppid() != ppid {
					close(gone)
					cancel()
					return
				}
			}
		}()
	}
	return ctx, cancel, func() bool {
		select {
		case <-gone:
			return true
		default:
			return false
		}
	}
}
