package quic

import (
	"context"
	"net"
	"sync"
	"syscall"
	"testing"

	"github.com/evbench/evbench/transports"
)

// sockopt reads an integer SOL_SOCKET option of c.
func sockopt(t *testing.T, c *net.UDPConn, opt int) int {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var v int
	var gerr error
	if err := rc.Control(func(fd uintptr) { v, gerr = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, opt) }); err != nil {
		t.Fatal(err)
	}
	if gerr != nil {
		t.Fatal(gerr)
	}
	return v
}

// TestConfigBuffers checks that nonzero ReadBufferBytes and WriteBufferBytes
// replace quic-go's own choice (7 MiB, which it requests on every
// *net.UDPConn) on the Listener's and the client's socket. Linux reports
// twice the size requested, so 64 KiB reads back as 128 KiB; quic-go's
// request would read back as at least twice net.core.rmem_max.
func TestConfigBuffers(t *testing.T) {
	const size = 64 << 10
	for _, c := range constructors {
		t.Run(c.name, func(t *testing.T) {
			var mu sync.Mutex
			var socks []*net.UDPConn
			cfg := transports.Config{
				ListenPacket: func(ctx context.Context, network, addr string) (net.PacketConn, error) {
					var lc net.ListenConfig
					pc, err := lc.ListenPacket(ctx, network, addr)
					if err == nil {
						mu.Lock()
						socks = append(socks, pc.(*net.UDPConn))
						mu.Unlock()
					}
					return pc, err
				},
				ReadBufferBytes:  size,
				WriteBufferBytes: size,
			}
			pair(t, build(t, c.newT, cfg))
			mu.Lock()
			defer mu.Unlock()
			if len(socks) != 2 {
				t.Fatalf("%d sockets came from the Config, want 2", len(socks))
			}
			for i, s := range socks {
				side := []string{"server", "client"}[i]
				for _, o := range []struct {
					name string
					opt  int
				}{{"SO_RCVBUF", syscall.SO_RCVBUF}, {"SO_SNDBUF", syscall.SO_SNDBUF}} {
					if got := sockopt(t, s, o.opt); got < size || got > 2*size {
						t.Errorf("%s socket: %s = %d bytes, want the %d requested (Linux reports twice that)", side, o.name, got, size)
					}
				}
			}
		})
	}
}
