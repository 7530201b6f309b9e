//go:build linux

package udp

import (
	"encoding/binary"
	"net"
	"syscall"
)

// oobBytes is room for the control messages of one datagram: the
// SO_RXQ_OVFL message (a uint32) takes syscall.CmsgSpace(4) = 24 bytes on
// 64-bit Linux.
const oobBytes = 64

// grantedBuffers reads SO_RCVBUF and SO_SNDBUF back with getsockopt; 0 for
// a value that cannot be read.
func grantedBuffers(sock syscall.Conn) (read, write int) {
	rc, err := sock.SyscallConn()
	if err != nil {
		return 0, 0
	}
	rc.Control(func(fd uintptr) {
		if v, err := syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF); err == nil {
			read = v
		}
		if v, err := syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_SNDBUF); err == nil {
			write = v
		}
	})
	return read, write
}

// enableDropCounter asks the kernel to attach the socket's cumulative
// receive-buffer drop count to every datagram it delivers (SO_RXQ_OVFL,
// socket(7)).
func enableDropCounter(sock *net.UDPConn) error {
	rc, err := sock.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RXQ_OVFL, 1)
	}); err != nil {
		return err
	}
	return serr
}

// kernelDropCount returns the SO_RXQ_OVFL counter carried in the control
// messages oob, if any. It parses the cmsghdr layout by hand because
// syscall.ParseSocketControlMessage allocates.
func kernelDropCount(oob []byte) (uint32, bool) {
	const hdr = syscall.SizeofCmsghdr
	const lenField = hdr - 8 // cmsg_len is a size_t, then two int32
	data0 := syscall.CmsgLen(0)
	for len(oob) >= hdr {
		var l int
		if lenField == 8 {
			l = int(binary.NativeEndian.Uint64(oob))
		} else {
			l = int(binary.NativeEndian.Uint32(oob))
		}
		if l < data0 || l > len(oob) {
			return 0, false
		}
		level := int32(binary.NativeEndian.Uint32(oob[lenField:]))
		typ := int32(binary.NativeEndian.Uint32(oob[lenField+4:]))
		if level == syscall.SOL_SOCKET && typ == syscall.SO_RXQ_OVFL && l-data0 >= 4 {
			return binary.NativeEndian.Uint32(oob[data0:]), true
		}
		next := syscall.CmsgSpace(l - data0)
		if next >= len(oob) {
			break
		}
		oob = oob[next:]
	}
	return 0, false
}
