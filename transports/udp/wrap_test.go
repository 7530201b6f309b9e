package udp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/evbench/evbench/transports"
)

// Wrappers of the sockets that Config.ListenPacket opens, standing where a
// network impairment would. None of them is a *net.UDPConn, so the
// transport uses them through ReadFrom and WriteTo only.

// openLoopback opens a kernel UDP socket on addr, which must be on
// 127.0.0.1 or ::1: no test reaches any other address.
func openLoopback(ctx context.Context, network, addr string) (net.PacketConn, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil || !ap.Addr().IsLoopback() {
		return nil, fmt.Errorf("test socket on %q refused: only 127.0.0.1 and ::1 are allowed", addr)
	}
	var lc net.ListenConfig
	return lc.ListenPacket(ctx, network, addr)
}

// wrapConfig is a Config whose ListenPacket opens a loopback socket and
// gives the transport what wrap makes of it.
func wrapConfig(wrap func(net.PacketConn) net.PacketConn) transports.Config {
	return transports.Config{ListenPacket: func(ctx context.Context, network, addr string) (net.PacketConn, error) {
		pc, err := openLoopback(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return wrap(pc), nil
	}}
}

// plainConn hides a *net.UDPConn behind net.PacketConn's methods.
type plainConn struct{ net.PacketConn }

func plain(pc net.PacketConn) net.PacketConn { return plainConn{pc} }

// plainConfig wraps every socket in a plainConn.
var plainConfig = wrapConfig(plain)

// bufferedConn is a plainConn that forwards the socket buffer settings and
// SyscallConn, as a wrapper may.
type bufferedConn struct {
	net.PacketConn
	uc *net.UDPConn
}

func (b bufferedConn) SetReadBuffer(n int) error             { return b.uc.SetReadBuffer(n) }
func (b bufferedConn) SetWriteBuffer(n int) error            { return b.uc.SetWriteBuffer(n) }
func (b bufferedConn) SyscallConn() (syscall.RawConn, error) { return b.uc.SyscallConn() }

func buffered(pc net.PacketConn) net.PacketConn { return bufferedConn{pc, pc.(*net.UDPConn)} }

// newT builds a Transport with NewWithConfig or fails the test.
func newT(t testing.TB, cfg transports.Config, opts Options) *Transport {
	t.Helper()
	tr, err := NewWithConfig(cfg, opts)
	if err != nil {
		t.Fatalf("NewWithConfig: %v", err)
	}
	return tr.(*Transport)
}

// reuseAddrConn reads through ReadFromUDPAddrPort and returns the source
// in one *net.UDPAddr that it overwrites on every read, which the package
// allows: the only allocation-free ReadFrom there is, for the allocation
// tests of the net.PacketConn path.
type reuseAddrConn struct {
	net.PacketConn
	uc   *net.UDPConn
	addr net.UDPAddr
	ip   [16]byte
}

func reuseAddr(pc net.PacketConn) net.PacketConn {
	return &reuseAddrConn{PacketConn: pc, uc: pc.(*net.UDPConn)}
}

func (r *reuseAddrConn) ReadFrom(b []byte) (int, net.Addr, error) {
	n, ap, err := r.uc.ReadFromUDPAddrPort(b)
	if err != nil {
		return n, nil, err
	}
	if a := ap.Addr(); a.Is4() {
		ip4 := a.As4()
		r.addr.IP = r.ip[:copy(r.ip[:], ip4[:])]
	} else {
		r.ip = a.As16()
		r.addr.IP = r.ip[:]
	}
	r.addr.Port = int(ap.Port())
	return n, &r.addr, nil
}

// dropper drops every every-th datagram it is asked to send (WriteTo
// reports it sent), and records the kind of each and the sequence number
// (the first 8 bytes of the frame, big-endian) of each DATA it dropped.
type dropper struct {
	net.PacketConn
	every int

	mu      sync.Mutex
	writes  int
	dropped map[kind]int
	data    map[uint64]bool
}

func (d *dropper) WriteTo(p []byte, addr net.Addr) (int, error) {
	d.mu.Lock()
	d.writes++
	drop := d.writes%d.every == 0
	if drop {
		k := kind(p[0])
		d.dropped[k]++
		if k == kindData && len(p) >= headerBytes+8 {
			d.data[seqOf(p[headerBytes:])] = true
		}
	}
	d.mu.Unlock()
	if drop {
		return len(p), nil
	}
	return d.PacketConn.WriteTo(p, addr)
}

// droppedData returns how many DATA datagrams were dropped and whether seq
// was one of them.
func (d *dropper) droppedData(seq uint64) (n int, was bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.data), d.data[seq]
}

// dropperConfig wraps every socket in a dropper of every and publishes the
// last one in last.
func dropperConfig(every int, last *atomic.Pointer[dropper]) transports.Config {
	return wrapConfig(func(pc net.PacketConn) net.PacketConn {
		d := &dropper{PacketConn: pc, every: every, dropped: map[kind]int{}, data: map[uint64]bool{}}
		last.Store(d)
		return d
	})
}

// closeErrConn reports a read on a closed socket with an error of its own,
// which does not wrap net.ErrClosed, as a wrapper may.
type closeErrConn struct{ net.PacketConn }

var errOpaque = errors.New("opaque wrapper error")

func (c closeErrConn) ReadFrom(b []byte) (int, net.Addr, error) {
	n, a, err := c.PacketConn.ReadFrom(b)
	if errors.Is(err, net.ErrClosed) {
		return 0, nil, errOpaque
	}
	return n, a, err
}
