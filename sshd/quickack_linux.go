package sshd

import (
	"net"
	"syscall"
)

// quickAck asks Linux to acknowledge the next segment at once instead of
// delaying the ACK. OpenSSH clients leave Nagle's algorithm on for
// non-interactive sessions, so each of their small packets waits for our
// ACK of the previous one; with delayed ACKs that is a 40 ms stall, several
// times per connection. Linux clears the flag after use, so it is set
// again before every read.
func quickAck(c net.Conn) {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return
	}
	_ = raw.Control(func(fd uintptr) {
		_ = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_QUICKACK, 1)
	})
}
