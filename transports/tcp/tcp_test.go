package tcp

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/evbench/evbench/transports"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// both lists the two transports of this package.
var both = []transports.Transport{Plain(), TLS()}

// wire encodes frames the way WriteFrame does: a 4-byte big-endian length,
// then the bytes.
func wire(frames ...[]byte) []byte {
	var b []byte
	for _, f := range frames {
		b = binary.BigEndian.AppendUint32(b, uint32(len(f)))
		b = append(b, f...)
	}
	return b
}

// pattern returns n bytes that differ from frame to frame (seed) and along
// the frame, so that a shifted or swapped frame does not compare equal.
func pattern(n int, seed byte) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(i*7) + seed
	}
	return p
}

// pair returns a connected (client, server) pair over loopback, closed and
// its listener closed at the end of the test.
func pair(tb testing.TB, tr transports.Transport) (client, server transports.Conn) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ln, err := tr.Listen(ctx, "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	client, err = tr.Dial(ctx, ln.Addr().String())
	if err != nil {
		tb.Fatal(err)
	}
	server, err = ln.Accept(ctx)
	if err != nil {
		client.Close()
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		client.Close()
		server.Close()
	})
	return client, server
}

func TestCapsAndRegistry(t *testing.T) {
	tests := []struct {
		tr        transports.Transport
		name      string
		encrypted bool
	}{
		{Plain(), "tcp", false},
		{TLS(), "tcp+tls", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.tr.Name(); got != tt.name {
				t.Errorf("Name() = %q, want %q", got, tt.name)
			}
			want := transports.Caps{Reliable: true, ReliableControl: true, Ordered: true, Encrypted: tt.encrypted, MaxFrame: 16_842_752, ClientFDs: 1, ServerFDs: 1}
			if got := tt.tr.Caps(); got != want {
				t.Errorf("Caps() = %+v, want %+v", got, want)
			}
		})
	}
}

// TestReadFraming feeds raw bytes to ReadFrame through a pipe.
func TestReadFraming(t *testing.T) {
	big := pattern(BufferBytes, 3) // over BufferBytes-4: read through the frame buffer
	tests := []struct {
		name    string
		in      []byte
		want    [][]byte
		wantErr error // after the frames in want; io.EOF for a clean end
	}{
		{"empty stream", nil, nil, io.EOF},
		{"one empty frame", wire([]byte{}), [][]byte{{}}, io.EOF},
		{"three frames", wire([]byte("a"), []byte("bc"), []byte("def")),
			[][]byte{[]byte("a"), []byte("bc"), []byte("def")}, io.EOF},
		{"largest in place", wire(pattern(BufferBytes-4, 1)), [][]byte{pattern(BufferBytes-4, 1)}, io.EOF},
		{"smallest copied", wire(pattern(BufferBytes-3, 2)), [][]byte{pattern(BufferBytes-3, 2)}, io.EOF},
		{"small big small", wire([]byte("x"), big, []byte("y")), [][]byte{[]byte("x"), big, []byte("y")}, io.EOF},
		{"truncated length prefix", []byte{0, 0}, nil, io.ErrUnexpectedEOF},
		{"truncated prefix after a frame", append(wire([]byte("ok")), 0, 0, 0), [][]byte{[]byte("ok")}, io.ErrUnexpectedEOF},
		{"truncated small frame", wire([]byte("hello"))[:7], nil, io.ErrUnexpectedEOF},
		{"truncated large frame", wire(big)[:BufferBytes], nil, io.ErrUnexpectedEOF},
		{"prefix one over MaxFrameBytes", binary.BigEndian.AppendUint32(nil, MaxFrameBytes+1), nil, transports.ErrFrameTooLarge},
		{"prefix 4 GiB-1", []byte{0xff, 0xff, 0xff, 0xff, 1, 2, 3}, nil, transports.ErrFrameTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := net.Pipe()
			go func() {
				a.Write(tt.in)
				a.Close()
			}()
			c := newConn("tcp", b, transports.DefaultReadTimeout)
			defer c.Close()
			for i, want := range tt.want {
				got, err := c.ReadFrame()
				if err != nil {
					t.Fatalf("frame %d: %v", i, err)
				}
				if !bytes.Equal(got, want) {
					t.Fatalf("frame %d: got %d bytes, want %d bytes (%q...)", i, len(got), len(want), want[:min(len(want), 8)])
				}
			}
			_, err := c.ReadFrame()
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("after %d frames: err = %v, want %v", len(tt.want), err, tt.wantErr)
			}
			// The error is sticky: the stream cannot be resynchronised.
			if _, err2 := c.ReadFrame(); !errors.Is(err2, tt.wantErr) {
				t.Errorf("second read: err = %v, want %v again", err2, tt.wantErr)
			}
		})
	}
}

// TestWriteFraming checks the bytes WriteFrame and Flush put on the wire,
// and that a refused oversized frame writes nothing.
func TestWriteFraming(t *testing.T) {
	tooBig := make([]byte, MaxFrameBytes+1)
	big := pattern(3*BufferBytes, 5)
	tests := []struct {
		name   string
		frames [][]byte
		want   []byte
	}{
		{"nothing", nil, nil},
		{"empty frame", [][]byte{{}}, wire([]byte{})},
		{"small frames", [][]byte{[]byte("a"), []byte("bcd")}, wire([]byte("a"), []byte("bcd"))},
		{"larger than the buffer", [][]byte{[]byte("a"), big, []byte("z")}, wire([]byte("a"), big, []byte("z"))},
		{"oversized frame writes nothing", [][]byte{[]byte("a"), tooBig, []byte("b")}, wire([]byte("a"), []byte("b"))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := net.Pipe()
			got := make(chan []byte, 1)
			go func() {
				all, _ := io.ReadAll(b)
				got <- all
			}()
			c := newConn("tcp", a, transports.DefaultReadTimeout)
			for i, f := range tt.frames {
				err := c.WriteFrame(f)
				if len(f) > MaxFrameBytes {
					if !errors.Is(err, transports.ErrFrameTooLarge) {
						t.Errorf("frame %d of %d bytes: err = %v, want ErrFrameTooLarge", i, len(f), err)
					}
					continue
				}
				if err != nil {
					t.Fatalf("frame %d: %v", i, err)
				}
			}
			if err := c.Flush(); err != nil {
				t.Fatal(err)
			}
			c.Close()
			if g := <-got; !bytes.Equal(g, tt.want) {
				t.Errorf("wire has %d bytes, want %d", len(g), len(tt.want))
			}
		})
	}
}

// TestRoundTrip sends frames of sizes around the read buffer's in-place
// limit over loopback, in order, and checks each arrives intact, so that
// both read paths and the switches between them are used. (The conformance
// suite sends MaxFrameBytes frames.)
func TestRoundTrip(t *testing.T) {
	sizes := []int{0, 1, BufferBytes - 4, BufferBytes - 3, 1 << 20, 17, 2 * BufferBytes, BufferBytes - 4}
	for _, tr := range both {
		t.Run(tr.Name(), func(t *testing.T) {
			client, server := pair(t, tr)
			errc := make(chan error, 1)
			go func() {
				for i, n := range sizes {
					if err := client.WriteFrame(pattern(n, byte(i))); err != nil {
						errc <- err
						return
					}
				}
				errc <- transports.Flush(client)
			}()
			for i, n := range sizes {
				got, err := server.ReadFrame()
				if err != nil {
					t.Fatalf("frame %d: %v", i, err)
				}
				if !bytes.Equal(got, pattern(n, byte(i))) {
					t.Fatalf("frame %d: got %d bytes, want %d intact", i, len(got), n)
				}
			}
			if err := <-errc; err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestOversizedWriteKeepsConn checks that a refused frame leaves the
// connection usable in both directions.
func TestOversizedWriteKeepsConn(t *testing.T) {
	tooBig := make([]byte, MaxFrameBytes+1)
	for _, tr := range both {
		t.Run(tr.Name(), func(t *testing.T) {
			client, server := pair(t, tr)
			for _, c := range []transports.Conn{client, server} {
				if err := c.WriteFrame(tooBig); !errors.Is(err, transports.ErrFrameTooLarge) {
					t.Fatalf("WriteFrame(%d bytes) = %v, want ErrFrameTooLarge", len(tooBig), err)
				}
			}
			for _, dir := range []struct{ from, to transports.Conn }{{client, server}, {server, client}} {
				if err := dir.from.WriteFrame([]byte("still here")); err != nil {
					t.Fatal(err)
				}
				if err := transports.Flush(dir.from); err != nil {
					t.Fatal(err)
				}
				got, err := dir.to.ReadFrame()
				if err != nil || string(got) != "still here" {
					t.Fatalf("ReadFrame = %q, %v; want %q", got, err, "still here")
				}
			}
		})
	}
}

// TestCloseUnblocks checks that Close ends a blocked ReadFrame and a Flush
// blocked on a peer that does not read, and that every later call reports
// net.ErrClosed.
func TestCloseUnblocks(t *testing.T) {
	frame := make([]byte, 1<<20)
	for _, tr := range both {
		t.Run(tr.Name(), func(t *testing.T) {
			client, server := pair(t, tr)
			readErr := make(chan error, 1)
			go func() {
				// The server never writes, so this blocks until Close.
				_, err := client.ReadFrame()
				readErr <- err
			}()
			writeErr := make(chan error, 1)
			go func() {
				// The server never reads, so socket buffers fill well
				// before 1 GiB and a Flush blocks.
				for range 1024 {
					if err := client.WriteFrame(frame); err != nil {
						writeErr <- err
						return
					}
					if err := transports.Flush(client); err != nil {
						writeErr <- err
						return
					}
				}
				writeErr <- errors.New("wrote 1 GiB to a peer that does not read")
			}()
			time.Sleep(100 * time.Millisecond)
			if err := client.Close(); err != nil {
				t.Errorf("client Close: %v", err)
			}
			for _, r := range []struct {
				what string
				errc chan error
			}{{"blocked ReadFrame", readErr}, {"blocked Flush", writeErr}} {
				select {
				case err := <-r.errc:
					if !errors.Is(err, net.ErrClosed) {
						t.Errorf("%s returned %v, want net.ErrClosed", r.what, err)
					}
				case <-time.After(10 * time.Second):
					t.Fatalf("%s still blocked 10 s after Close", r.what)
				}
			}
			// The peer is gone now: closing the server must still succeed
			// (for tcp+tls its close_notify cannot be delivered).
			if err := server.Close(); err != nil {
				t.Errorf("server Close: %v", err)
			}
			for _, c := range []transports.Conn{client, server} {
				if _, err := c.ReadFrame(); !errors.Is(err, net.ErrClosed) {
					t.Errorf("ReadFrame after Close = %v, want net.ErrClosed", err)
				}
				if err := c.WriteFrame([]byte("x")); !errors.Is(err, net.ErrClosed) {
					t.Errorf("WriteFrame after Close = %v, want net.ErrClosed", err)
				}
				if err := transports.Flush(c); !errors.Is(err, net.ErrClosed) {
					t.Errorf("Flush after Close = %v, want net.ErrClosed", err)
				}
				if err := c.Close(); err != nil {
					t.Errorf("second Close = %v, want nil", err)
				}
			}
		})
	}
}

// TestPeerCloseIsEOF checks that a peer's Close after a flushed frame reads
// as that frame, then io.EOF.
func TestPeerCloseIsEOF(t *testing.T) {
	for _, tr := range both {
		t.Run(tr.Name(), func(t *testing.T) {
			client, server := pair(t, tr)
			if err := client.WriteFrame([]byte("bye")); err != nil {
				t.Fatal(err)
			}
			if err := transports.Flush(client); err != nil {
				t.Fatal(err)
			}
			if err := client.Close(); err != nil {
				t.Fatal(err)
			}
			if got, err := server.ReadFrame(); err != nil || string(got) != "bye" {
				t.Fatalf("ReadFrame = %q, %v; want %q", got, err, "bye")
			}
			if _, err := server.ReadFrame(); err != io.EOF {
				t.Fatalf("ReadFrame after peer Close = %v, want io.EOF", err)
			}
		})
	}
}

// TestBadTLSClientsDoNotBlockAccept opens connections that stall or fail
// the TLS handshake, then checks that a good client is still accepted
// promptly and that Close does not wait for the stalled handshake.
func TestBadTLSClientsDoNotBlockAccept(t *testing.T) {
	bad := []struct {
		name string
		send []byte // nil: connect and say nothing
	}{
		{"silent", nil},
		{"half a ClientHello", []byte{22, 3, 1, 0x02, 0x00, 1}},
		{"plaintext frame", wire([]byte("not tls"))},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ln, err := TLS().Listen(ctx, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var d net.Dialer
	for _, b := range bad {
		nc, err := d.DialContext(ctx, "tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		if b.send != nil {
			if _, err := nc.Write(b.send); err != nil {
				t.Fatalf("%s: %v", b.name, err)
			}
		}
	}
	start := time.Now()
	client, err := TLS().Dial(ctx, ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server, err := ln.Accept(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	if elapsed := time.Since(start); elapsed > 5*time.Second {
		t.Errorf("good client took %v to be accepted", elapsed)
	}
	if got, want := server.RemoteAddr().String(), fmt.Sprint(client.(*conn).nc.LocalAddr()); got != want {
		t.Errorf("accepted %s, want the good client %s", got, want)
	}
	start = time.Now()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	if elapsed := time.Since(start); elapsed > 2*time.Second {
		t.Errorf("Close took %v with a stalled handshake pending", elapsed)
	}
}

// TestDialHandshakeBoundedByCtx dials a TCP server that never answers the
// TLS ClientHello; Dial must give up when its ctx does.
func TestDialHandshakeBoundedByCtx(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		nc, err := raw.Accept()
		if err == nil {
			accepted <- nc
		}
		close(accepted)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	c, err := TLS().Dial(ctx, raw.Addr().String())
	if c != nil || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Dial = %v, %v; want nil, context.DeadlineExceeded", c, err)
	}
	if elapsed := time.Since(start); elapsed > 5*time.Second {
		t.Errorf("Dial took %v with a 200 ms ctx", elapsed)
	}
	raw.Close()
	if nc, ok := <-accepted; ok {
		nc.Close()
	}
}

// BenchmarkWriteReadFrame measures one frame's WriteFrame, Flush and
// ReadFrame over loopback. "seq" does all three in one goroutine (a frame's
// full cost, latency-like); "stream" has a writer goroutine flushing every
// frame while the benchmark loop reads (throughput-like). The package's own
// code does not allocate: tcp reports 0 allocs/op; tcp+tls reports about one
// 24-byte allocation per TLS read, made inside crypto/tls (readFromUntil's
// atLeastReader), not here.
func BenchmarkWriteReadFrame(b *testing.B) {
	for _, tr := range both {
		for _, mode := range []string{"seq", "stream"} {
			for _, size := range []int{64, 1 << 10, 16 << 10, 128 << 10} {
				if mode == "seq" && size > 16<<10 {
					continue // a frame must fit the socket buffers when one goroutine writes and reads
				}
				b.Run(fmt.Sprintf("%s/%s/%dB", tr.Name(), mode, size), func(b *testing.B) {
					client, server := pair(b, tr)
					frame := pattern(size, 9)
					b.SetBytes(int64(size))
					b.ReportAllocs()
					if mode == "seq" {
						benchSeq(b, client, server, frame)
					} else {
						benchStream(b, client, server, frame)
					}
				})
			}
		}
	}
}

func benchSeq(b *testing.B, client, server transports.Conn, frame []byte) {
	for b.Loop() {
		if err := client.WriteFrame(frame); err != nil {
			b.Fatal(err)
		}
		if err := transports.Flush(client); err != nil {
			b.Fatal(err)
		}
		if p, err := server.ReadFrame(); err != nil || len(p) != len(frame) {
			b.Fatalf("ReadFrame = %d bytes, %v", len(p), err)
		}
	}
}

func benchStream(b *testing.B, client, server transports.Conn, frame []byte) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		// Ends when the benchmark closes the conns.
		for {
			if client.WriteFrame(frame) != nil || transports.Flush(client) != nil {
				return
			}
		}
	}()
	for b.Loop() {
		if p, err := server.ReadFrame(); err != nil || len(p) != len(frame) {
			b.Fatalf("ReadFrame = %d bytes, %v", len(p), err)
		}
	}
	b.StopTimer()
	client.Close()
	server.Close()
	<-done
}
