//go:build unix

package udp

// connectable is true where connectSocket connects a client's
// *net.UDPConn at the kernel level.
const connectable = true
