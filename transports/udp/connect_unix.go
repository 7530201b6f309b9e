//go:build unix

package udp

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"syscall"
)

// connectSocket connects sock to server at the kernel level, connect(2),
// behind the back of package net, which connects only the sockets it dials
// itself. The kernel then delivers only the server's datagrams to the
// socket and reports an ICMP port unreachable to its next read or write as
// ECONNREFUSED. Write, Read and ReadMsgUDPAddrPort keep working (they are
// write(2), read(2) and recvmsg(2)); the WriteTo methods are not used on
// it, and its RemoteAddr stays nil. local is the address the kernel bound
// the socket to; connected is true.
func connectSocket(sock *net.UDPConn, server netip.AddrPort) (local netip.AddrPort, connected bool, err error) {
	zone := 0
	if z := server.Addr().Zone(); z != "" {
		if zone, err = strconv.Atoi(z); err != nil {
			ifi, ierr := net.InterfaceByName(z)
			if ierr != nil {
				return local, false, fmt.Errorf("connect: zone of %v: %w", server, ierr)
			}
			zone = ifi.Index
		}
	}
	rc, err := sock.SyscallConn()
	if err != nil {
		return local, false, fmt.Errorf("connect: %w", err)
	}
	var serr error
	cerr := rc.Control(func(fd uintptr) {
		sa, err := syscall.Getsockname(int(fd))
		if err != nil {
			serr = os.NewSyscallError("getsockname", err)
			return
		}
		var to syscall.Sockaddr
		switch sa.(type) {
		case *syscall.SockaddrInet4:
			a := server.Addr().Unmap()
			if !a.Is4() {
				serr = fmt.Errorf("connect an IPv4 socket to %v: %w", server, syscall.EAFNOSUPPORT)
				return
			}
			to = &syscall.SockaddrInet4{Port: int(server.Port()), Addr: a.As4()}
		case *syscall.SockaddrInet6:
			// An IPv4 server is reached through its IPv4-mapped address
			// (a dual-stack socket, bound to ":0").
			to = &syscall.SockaddrInet6{Port: int(server.Port()), Addr: server.Addr().As16(), ZoneId: uint32(zone)}
		default:
			serr = fmt.Errorf("connect a socket of address %T: %w", sa, syscall.EAFNOSUPPORT)
			return
		}
		if err := syscall.Connect(int(fd), to); err != nil {
			serr = os.NewSyscallError("connect", err)
			return
		}
		if sa, err = syscall.Getsockname(int(fd)); err != nil {
			serr = os.NewSyscallError("getsockname", err)
			return
		}
		switch sa := sa.(type) {
		case *syscall.SockaddrInet4:
			local = netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port))
		case *syscall.SockaddrInet6:
			local = netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), uint16(sa.Port))
		}
	})
	if cerr != nil {
		return local, false, fmt.Errorf("connect: %w", cerr)
	}
	if serr != nil {
		return local, false, serr
	}
	return local, true, nil
}
