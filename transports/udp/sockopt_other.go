//go:build !linux

package udp

import (
	"net"
	"syscall"
)

// oobBytes is 0: there is no drop counter to receive.
const oobBytes = 0

// grantedBuffers cannot read the sizes back portably; 0 means unknown.
func grantedBuffers(syscall.Conn) (read, write int) { return 0, 0 }

// enableDropCounter does nothing: SO_RXQ_OVFL is Linux-only.
func enableDropCounter(*net.UDPConn) error { return nil }

// kernelDropCount never finds a counter.
func kernelDropCount([]byte) (uint32, bool) { return 0, false }
