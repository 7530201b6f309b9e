//go:build !unix

package udp

import (
	"net"
	"net/netip"
)

// connectSocket leaves sock unconnected where connect(2) cannot be reached
// through syscall: the client then writes with WriteToUDPAddrPort and drops
// datagrams from other sources itself (Stats.UnknownPeerDrops), and an ICMP
// port unreachable is not reported.
func connectSocket(*net.UDPConn, netip.AddrPort) (local netip.AddrPort, connected bool, err error) {
	return netip.AddrPort{}, false, nil
}
