//go:build unix

package ws

import (
	"net"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/evbench/evbench/transports"
)

// sockBuf reads the SO_RCVBUF and SO_SNDBUF the kernel granted nc, which
// must be a *net.TCPConn. Linux reports twice the size requested (socket(7)).
func sockBuf(t *testing.T, nc net.Conn) (rcv, snd int) {
	t.Helper()
	tc, ok := nc.(*net.TCPConn)
	if !ok {
		t.Fatalf("connection is a %T, want *net.TCPConn", nc)
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var rerr, serr error
	if err := rc.Control(func(fd uintptr) {
		rcv, rerr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF)
		snd, serr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF)
	}); err != nil {
		t.Fatal(err)
	}
	if rerr != nil || serr != nil {
		t.Fatalf("getsockopt: SO_RCVBUF: %v, SO_SNDBUF: %v", rerr, serr)
	}
	return rcv, snd
}

// TestSocketBuffers checks that ReadBufferBytes and WriteBufferBytes reach
// the sockets of both ends: the kernel grants at least the size requested
// (Linux doubles it), which differs from what it gives a socket of the
// zero Config. The sizes are odd numbers of bytes that no kernel default
// or doubling of one is equal to.
func TestSocketBuffers(t *testing.T) {
	tests := []struct {
		name  string
		read  int
		write int
	}{
		{"read", 40_000, 0},
		{"write", 0, 72_000},
		{"both", 56_000, 88_000},
	}
	for _, c := range constructors {
		base := make(map[string][2]int) // end -> the zero Config's {rcv, snd}
		client, server, _ := pair(t, build(t, c.newT, transports.Config{}))
		for end, conn := range map[string]transports.Conn{"client": client, "server": server} {
			rcv, snd := sockBuf(t, netConn(conn))
			base[end] = [2]int{rcv, snd}
		}
		for _, tt := range tests {
			t.Run(c.name+"/"+tt.name, func(t *testing.T) {
				tr := build(t, c.newT, transports.Config{ReadBufferBytes: tt.read, WriteBufferBytes: tt.write})
				client, server, _ := pair(t, tr)
				for end, conn := range map[string]transports.Conn{"client": client, "server": server} {
					rcv, snd := sockBuf(t, netConn(conn))
					for _, b := range []struct {
						opt              string
						requested, got   int
						zeroConfigGrants int
					}{
						{"SO_RCVBUF", tt.read, rcv, base[end][0]},
						{"SO_SNDBUF", tt.write, snd, base[end][1]},
					} {
						if b.requested == 0 {
							continue
						}
						if b.got < b.requested || b.got == b.zeroConfigGrants {
							t.Errorf("%s %s = %d after requesting %d (zero Config: %d); want at least the request, and not the default",
								end, b.opt, b.got, b.requested, b.zeroConfigGrants)
						}
					}
				}
			})
		}
	}
}
