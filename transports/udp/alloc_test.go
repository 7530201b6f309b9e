package udp

import (
	"fmt"
	"testing"

	"github.com/evbench/evbench/transports"
)

// roundTrip sends p from client to server and back.
func roundTrip(tb testing.TB, client, server *Conn, p []byte) {
	if err := client.WriteFrame(p); err != nil {
		tb.Fatal(err)
	}
	q, err := server.ReadFrame()
	if err != nil {
		tb.Fatal(err)
	}
	if err := server.WriteFrame(q); err != nil {
		tb.Fatal(err)
	}
	if q, err = client.ReadFrame(); err != nil || len(q) != len(p) {
		tb.Fatalf("client read %d bytes, %v; want %d", len(q), err, len(p))
	}
}

// TestRoundTripDoesNotAllocate covers both socket paths: a kernel
// *net.UDPConn, and a net.PacketConn wrapper (whose own ReadFrom does not
// allocate) on both ends.
func TestRoundTripDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	tests := []struct {
		name string
		tr   transports.Transport
	}{
		{"kernel sockets", New(Options{})},
		{"wrapped sockets", newT(t, wrapConfig(reuseAddr), Options{})},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, client, server := pairWith(t, tc.tr, tc.tr)
			p := make([]byte, 256)
			roundTrip(t, client, server, p) // warm the buffer pool
			if n := testing.AllocsPerRun(500, func() { roundTrip(t, client, server, p) }); n != 0 {
				t.Fatalf("a write+read round trip allocates %v times, want 0", n)
			}
		})
	}
}

// BenchmarkRoundTrip measures one frame client → server → client on
// loopback: two WriteFrames, two ReadFrames and the Listener's demultiplexing.
func BenchmarkRoundTrip(b *testing.B) { benchmarkRoundTrip(b, New(Options{})) }

// BenchmarkRoundTripWrapped is BenchmarkRoundTrip over sockets behind a
// net.PacketConn wrapper: ReadFrom and WriteTo, no connected client socket.
func BenchmarkRoundTripWrapped(b *testing.B) {
	benchmarkRoundTrip(b, newT(b, wrapConfig(reuseAddr), Options{}))
}

func benchmarkRoundTrip(b *testing.B, tr transports.Transport) {
	for _, size := range []int{64, 1024, MaxFrameBytes} {
		b.Run(fmt.Sprintf("bytes=%d", size), func(b *testing.B) {
			_, client, server := pairWith(b, tr, tr)
			p := make([]byte, size)
			roundTrip(b, client, server, p)
			b.SetBytes(int64(2 * size))
			b.ReportAllocs()
			for b.Loop() {
				roundTrip(b, client, server, p)
			}
		})
	}
}

// BenchmarkWriteFrame measures the sending side alone: one WriteFrame of a
// client Conn while the server drains in the background (what it loses does
// not matter here).
func BenchmarkWriteFrame(b *testing.B) {
	_, client, server := pairT(b, Options{})
	go func() {
		for {
			if _, err := server.ReadFrame(); err != nil {
				return
			}
		}
	}()
	p := make([]byte, 256)
	b.SetBytes(int64(len(p)))
	b.ReportAllocs()
	for b.Loop() {
		if err := client.WriteFrame(p); err != nil {
			b.Fatal(err)
		}
	}
}
