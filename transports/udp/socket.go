package udp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"syscall"
)

// socket is the packet socket of a Listener or of a client Conn, as
// transports.Config.OpenPacket gave it. On a *net.UDPConn it reads with
// ReadMsgUDPAddrPort (the kernel's drop counter arrives in the control
// messages) and writes with WriteToUDPAddrPort, or with Write once it is
// connected at the kernel level. Any other net.PacketConn is used through
// ReadFrom and WriteTo only, so that a wrapper sees every datagram: no
// method of a type it embeds is reached around it.
type socket struct {
	pc        net.PacketConn
	uc        *net.UDPConn // pc when it is a *net.UDPConn, else nil
	connected bool         // uc is connect(2)ed to the one peer it writes to
}

func newSocket(pc net.PacketConn) *socket {
	uc, _ := pc.(*net.UDPConn)
	return &socket{pc: pc, uc: uc}
}

// read reads one datagram into b and, on a *net.UDPConn, its control
// messages into oob. from is the source; it is not valid when a
// net.PacketConn reports an address that is not an IP address and port.
// The net.Addr that ReadFrom returns is not kept past the call, so a
// wrapper may reuse one.
func (s *socket) read(b, oob []byte) (n, oobn int, from netip.AddrPort, err error) {
	if s.uc != nil {
		n, oobn, _, from, err = s.uc.ReadMsgUDPAddrPort(b, oob)
		return n, oobn, from, err
	}
	n, addr, err := s.pc.ReadFrom(b)
	if err != nil {
		return 0, 0, netip.AddrPort{}, err
	}
	return n, 0, addrPortOf(addr), nil
}

// write sends d to the peer to, whose net.Addr form is toAddr (nil: made
// from to, which allocates; only a plain net.PacketConn needs it).
func (s *socket) write(d []byte, to netip.AddrPort, toAddr net.Addr) error {
	var err error
	switch {
	case s.connected:
		_, err = s.uc.Write(d)
	case s.uc != nil:
		_, err = s.uc.WriteToUDPAddrPort(d, to)
	default:
		if toAddr == nil {
			toAddr = net.UDPAddrFromAddrPort(to)
		}
		_, err = s.pc.WriteTo(d, toAddr)
	}
	return err
}

// addrPortOf converts a source address that a net.PacketConn reported. A
// *net.UDPAddr converts without allocating; another net.Addr is parsed from
// its String ("ip:port"). The result is not valid when that fails.
func addrPortOf(a net.Addr) netip.AddrPort {
	switch a := a.(type) {
	case *net.UDPAddr:
		return a.AddrPort()
	case nil:
		return netip.AddrPort{}
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.AddrPort{}
	}
	return ap
}

// sameEndpoint reports whether a and b are the same IP address and port,
// an IPv4 address and its IPv4-mapped IPv6 form (what a dual-stack socket
// reports) being the same, and zones ignored.
func sameEndpoint(a, b netip.AddrPort) bool {
	return a.Port() == b.Port() && a.Addr().Unmap().WithZone("") == b.Addr().Unmap().WithZone("")
}

// isTimeout reports whether a read failed at its deadline.
func isTimeout(err error) bool {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// bufferSetter is the part of *net.UDPConn that sets socket buffer sizes.
// A net.PacketConn that has it (a wrapper that forwards it, or embeds a
// *net.UDPConn) gets the sizes requested too, as quic-go does.
type bufferSetter interface {
	SetReadBuffer(bytes int) error
	SetWriteBuffer(bytes int) error
}

// configureSocket requests the socket buffer sizes, reads back what was
// granted and enables the kernel drop counter. A *net.UDPConn gets all
// three; another net.PacketConn gets the sizes requested only if it has
// SetReadBuffer and SetWriteBuffer (bufferSetter), read back only if it
// has SyscallConn, and no drop counter (it is read with ReadFrom, which
// carries no control messages).
func configureSocket(s *socket, opts Options) (bufferSizes, error) {
	var sizes bufferSizes
	setter, ok := s.pc.(bufferSetter) // always true of a *net.UDPConn
	if !ok {
		return sizes, nil
	}
	sizes.readRequested, sizes.writeRequested = opts.ReadBufferBytes, opts.WriteBufferBytes
	if err := setter.SetReadBuffer(opts.ReadBufferBytes); err != nil {
		return sizes, fmt.Errorf("set SO_RCVBUF: %w", err)
	}
	if err := setter.SetWriteBuffer(opts.WriteBufferBytes); err != nil {
		return sizes, fmt.Errorf("set SO_SNDBUF: %w", err)
	}
	if sc, ok := s.pc.(syscall.Conn); ok {
		sizes.readGranted, sizes.writeGranted = grantedBuffers(sc)
	}
	if s.uc != nil {
		if err := enableDropCounter(s.uc); err != nil {
			return sizes, fmt.Errorf("enable SO_RXQ_OVFL: %w", err)
		}
	}
	return sizes, nil
}

// bufferSizes records the socket buffer sizes requested and granted.
type bufferSizes struct {
	readRequested, readGranted   int
	writeRequested, writeGranted int
}

func (b bufferSizes) fill(s *Stats) {
	s.ReadBufferRequestedBytes, s.ReadBufferGrantedBytes = b.readRequested, b.readGranted
	s.WriteBufferRequestedBytes, s.WriteBufferGrantedBytes = b.writeRequested, b.writeGranted
}

// resolveServer turns Dial's address into the server's IP address and
// port. The port is a number or a service name; the host is an IP literal
// or a name, of whose addresses the first IPv4 one is taken (the first
// one if there is none), as net.Dial does for "udp". An empty or
// unspecified host means this machine, reached over loopback of the same
// family, again as net.Dial does.
func resolveServer(ctx context.Context, addr string) (netip.AddrPort, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return netip.AddrPort{}, err
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		p, lerr := net.DefaultResolver.LookupPort(ctx, "udp", portStr)
		if lerr != nil {
			return netip.AddrPort{}, lerr
		}
		port = uint64(p)
	}
	var ip netip.Addr
	switch {
	case host == "":
		ip = netip.AddrFrom4([4]byte{127, 0, 0, 1})
	default:
		if ip, err = netip.ParseAddr(host); err != nil {
			ips, lerr := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
			if lerr != nil {
				return netip.AddrPort{}, lerr
			}
			if len(ips) == 0 {
				return netip.AddrPort{}, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
			}
			ip = ips[0]
			for _, a := range ips {
				if a.Unmap().Is4() {
					ip = a
					break
				}
			}
		}
	}
	ip = ip.Unmap()
	if ip.IsUnspecified() {
		if ip.Is4() {
			ip = netip.AddrFrom4([4]byte{127, 0, 0, 1})
		} else {
			ip = netip.IPv6Loopback()
		}
	}
	return netip.AddrPortFrom(ip, uint16(port)), nil
}

// localFor is the local address a client binds to reach server: loopback of
// the same family for a loopback server, so that the session stays on the
// loopback interface as net.Dial's would, else any address (":0").
func localFor(server netip.AddrPort) string {
	switch a := server.Addr(); {
	case a.IsLoopback() && a.Is4():
		return "127.0.0.1:0"
	case a.IsLoopback():
		return "[::1]:0"
	}
	return ":0"
}
