//go:build !linux

package sshd

import "net"

// quickAck is a Linux tuning; elsewhere delayed ACKs stay as they are.
func quickAck(net.Conn) {}
