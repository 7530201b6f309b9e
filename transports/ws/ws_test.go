package ws

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/coder/websocket"
	"go.uber.org/goleak"

	"github.com/evbench/evbench/transports"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testTimeout bounds every wait in these tests.
const testTimeout = 10 * time.Second

var both = []struct {
	name string
	tr   transports.Transport
}{
	{"ws", Plain()},
	{"wss", TLS()},
}

// pair returns a dialled client Conn and the server Conn accepted for it;
// both and the Listener are closed when the test ends.
func pair(t testing.TB, tr transports.Transport) (client, server transports.Conn, l transports.Listener) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	l, err := tr.Listen(ctx, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	client, err = tr.Dial(ctx, l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server, err = l.Accept(ctx)
	if err != nil {
		client.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { closeBoth(client, server) })
	return client, server, l
}

// closeBoth closes a and b concurrently: each end then reads the other's
// close frame, and neither waits CloseTimeout for a peer that is not
// reading.
func closeBoth(a, b transports.Conn) {
	done := make(chan struct{})
	go func() { defer close(done); a.Close() }()
	b.Close()
	<-done
}

// result is one ReadFrame outcome, copied out of the Conn's buffer.
type result struct {
	p   []byte
	err error
}

// readAsync runs ReadFrame once in a goroutine.
func readAsync(c transports.Conn) <-chan result {
	ch := make(chan result, 1)
	go func() {
		p, err := c.ReadFrame()
		ch <- result{bytes.Clone(p), err}
	}()
	return ch
}

func wait[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(testTimeout):
		t.Fatalf("%s: no result after %v", what, testTimeout)
		panic("unreachable")
	}
}

func pattern(n int, seed byte) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = seed + byte(i*7)
	}
	return p
}

func TestNameAndCaps(t *testing.T) {
	for _, tc := range []struct {
		tr   transports.Transport
		name string
		want transports.Caps
	}{
		{Plain(), "ws", transports.Caps{Reliable: true, ReliableControl: true, Ordered: true, MaxFrame: MaxFrame, ClientFDs: 1, ServerFDs: 1}},
		{TLS(), "wss", transports.Caps{Reliable: true, ReliableControl: true, Ordered: true, Encrypted: true, MaxFrame: MaxFrame, ClientFDs: 1, ServerFDs: 1}},
	} {
		tr := tc.tr
		if tr.Name() != tc.name {
			t.Errorf("Name() = %q, want %q", tr.Name(), tc.name)
		}
		if got := tr.Caps(); got != tc.want {
			t.Errorf("%s: Caps() = %+v, want %+v", tc.name, got, tc.want)
		}
	}
	if MaxFrame <= transports.MaxPayloadBytes+transports.EventOverhead+3*transports.MaxNameBytes {
		t.Errorf("MaxFrame %d cannot hold the largest event frame", MaxFrame)
	}
}

// TestRoundTrip sends frames of the sizes that matter both ways, with
// default settings: 32,768 and 32,769 bytes straddle coder/websocket's
// default read limit (evbench case C6); 125/126 and 65535/65536 bytes
// straddle the RFC 6455 §5.2 payload-length encodings. The conformance
// suite sends MaxFrame bytes.
func TestRoundTrip(t *testing.T) {
	sizes := []int{0, 1, 125, 126, 32768, 32769, 65535, 65536, 1 << 20}
	for _, tt := range both {
		t.Run(tt.name, func(t *testing.T) {
			client, server, _ := pair(t, tt.tr)
			for i, n := range sizes {
				for _, dir := range []struct {
					name     string
					from, to transports.Conn
				}{{"client->server", client, server}, {"server->client", server, client}} {
					want := pattern(n, byte(i))
					got := readAsync(dir.to)
					if err := dir.from.WriteFrame(want); err != nil {
						t.Fatalf("%s %d bytes: WriteFrame: %v", dir.name, n, err)
					}
					r := wait(t, got, "ReadFrame")
					if r.err != nil {
						t.Fatalf("%s %d bytes: ReadFrame: %v", dir.name, n, r.err)
					}
					if !bytes.Equal(r.p, want) {
						t.Fatalf("%s %d bytes: got %d bytes, not the frame sent", dir.name, n, len(r.p))
					}
				}
			}
		})
	}
}

// TestOrderAndBufferReuse checks that frames arrive in order and that a
// smaller frame after a larger one is not padded by the reused buffer.
func TestOrderAndBufferReuse(t *testing.T) {
	client, server, _ := pair(t, Plain())
	sizes := []int{70000, 3, 40000, 0, 5000, 1}
	errc := make(chan error, 1)
	go func() {
		for i, n := range sizes {
			if err := client.WriteFrame(pattern(n, byte(i))); err != nil {
				errc <- err
				return
			}
		}
		errc <- nil
	}()
	for i, n := range sizes {
		p, err := server.ReadFrame()
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if !bytes.Equal(p, pattern(n, byte(i))) {
			t.Fatalf("frame %d: got %d bytes, want the %d-byte frame %d", i, len(p), n, i)
		}
	}
	if err := wait(t, errc, "writer"); err != nil {
		t.Fatal(err)
	}
}

func TestWriteOverLimit(t *testing.T) {
	for _, tt := range both {
		t.Run(tt.name, func(t *testing.T) {
			client, server, _ := pair(t, tt.tr)
			err := client.WriteFrame(make([]byte, MaxFrame+1))
			if !errors.Is(err, transports.ErrFrameTooLarge) {
				t.Fatalf("WriteFrame(MaxFrame+1) = %v, want ErrFrameTooLarge", err)
			}
			// Nothing was sent and the connection stays usable.
			got := readAsync(server)
			if err := client.WriteFrame([]byte("after")); err != nil {
				t.Fatal(err)
			}
			if r := wait(t, got, "ReadFrame"); r.err != nil || string(r.p) != "after" {
				t.Fatalf("ReadFrame after a rejected frame = %q, %v; want \"after\"", r.p, r.err)
			}
		})
	}
}

// rawServer serves Path on 127.0.0.1 with a plain coder/websocket handler,
// to act as a peer that breaks the rules our Conn keeps.
func rawServer(t *testing.T, handle func(*websocket.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		handle(c)
	}), ReadHeaderTimeout: testTimeout}
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close(); <-done })
	return ln.Addr().String()
}

// TestReadOverLimit has a peer send MaxFrame+1 bytes: ReadFrame fails with
// ErrFrameTooLarge, keeps failing, and the peer gets close status 1009.
func TestReadOverLimit(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	l, err := Plain().Listen(ctx, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	peer, _, err := websocket.Dial(ctx, "ws://"+l.Addr().String()+Path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer peer.CloseNow()
	server, err := l.Accept(ctx)
	if err != nil {
		t.Fatal(err)
	}
	peerDone := make(chan error, 1)
	go func() {
		// The write may fail once the server gives up on the message; the
		// peer's reader then sees the server's close status.
		_ = peer.Write(ctx, websocket.MessageBinary, make([]byte, MaxFrame+1))
		_, _, err := peer.Read(ctx)
		peerDone <- err
	}()
	for i := range 2 {
		_, err := server.ReadFrame()
		if !errors.Is(err, transports.ErrFrameTooLarge) {
			t.Fatalf("ReadFrame #%d = %v, want ErrFrameTooLarge", i, err)
		}
	}
	if err := server.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := server.ReadFrame(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("ReadFrame after Close = %v, want net.ErrClosed", err)
	}
	if perr := wait(t, peerDone, "peer"); websocket.CloseStatus(perr) != websocket.StatusMessageTooBig {
		got := perr
		t.Fatalf("peer saw close status %v, want %v", got, websocket.StatusMessageTooBig)
	}
}

// TestPeerReportsTooBig: a peer that closes with status 1009 makes
// ReadFrame fail with ErrFrameTooLarge on the client side.
func TestPeerReportsTooBig(t *testing.T) {
	addr := rawServer(t, func(c *websocket.Conn) {
		c.Close(websocket.StatusMessageTooBig, "limit")
	})
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	client, err := Plain().Dial(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	if _, err := client.ReadFrame(); !errors.Is(err, transports.ErrFrameTooLarge) {
		t.Fatalf("ReadFrame = %v, want ErrFrameTooLarge", err)
	}
}

// TestTextMessageRejected: evbench frames are binary messages; a text
// message is an error, and Close then sends status 1003.
func TestTextMessageRejected(t *testing.T) {
	peerStatus := make(chan websocket.StatusCode, 1)
	addr := rawServer(t, func(c *websocket.Conn) {
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		if err := c.Write(ctx, websocket.MessageText, []byte("hello")); err != nil {
			peerStatus <- -1
			return
		}
		_, _, err := c.Read(ctx)
		peerStatus <- websocket.CloseStatus(err)
	})
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	client, err := Plain().Dial(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.ReadFrame(); err == nil {
		t.Fatal("ReadFrame accepted a text message")
	}
	client.Close()
	if got := wait(t, peerStatus, "peer"); got != websocket.StatusUnsupportedData {
		t.Fatalf("peer saw close status %v, want %v", got, websocket.StatusUnsupportedData)
	}
}

// TestCloseUnblocks: Close unblocks a pending ReadFrame, and a WriteFrame
// blocked on a peer that reads nothing, and later calls fail with
// net.ErrClosed. With the writer blocked Close does not wait for the
// closing handshake; with only a reader pending and a peer that does not
// read, it waits CloseTimeout for the peer's close frame.
func TestCloseUnblocks(t *testing.T) {
	for _, tr := range both {
		for _, tt := range []struct {
			name        string
			blockWriter bool
			minD, maxD  time.Duration // bounds on how long Close takes
		}{
			{"writer-blocked", true, 0, CloseTimeout / 2},
			{"reader-only", false, CloseTimeout, CloseTimeout + CloseTimeout/2},
		} {
			t.Run(tr.name+"/"+tt.name, func(t *testing.T) {
				client, _, _ := pair(t, tr.tr)
				reading := readAsync(client)
				writing := make(chan error, 1)
				if tt.blockWriter {
					go func() {
						// The server never reads, so this fills the socket
						// buffers and blocks; 64 MiB is far more than they
						// hold.
						p := make([]byte, 1<<20)
						for range 64 {
							if err := client.WriteFrame(p); err != nil {
								writing <- err
								return
							}
						}
						writing <- errors.New("64 MiB written to a peer that reads nothing")
					}()
				}
				time.Sleep(200 * time.Millisecond)
				start := time.Now()
				if err := client.Close(); err != nil {
					t.Fatalf("Close = %v", err)
				}
				if d := time.Since(start); d < tt.minD || d > tt.maxD {
					t.Errorf("Close took %v, want between %v and %v", d, tt.minD, tt.maxD)
				}
				if r := wait(t, reading, "pending ReadFrame"); !errors.Is(r.err, net.ErrClosed) {
					t.Errorf("pending ReadFrame = %v, want net.ErrClosed", r.err)
				}
				if tt.blockWriter {
					if err := wait(t, writing, "pending WriteFrame"); !errors.Is(err, net.ErrClosed) {
						t.Errorf("pending WriteFrame = %v, want net.ErrClosed", err)
					}
				}
				for i := range 2 {
					if err := client.Close(); err != nil {
						t.Errorf("Close #%d = %v, want nil", i+2, err)
					}
				}
				if _, err := client.ReadFrame(); !errors.Is(err, net.ErrClosed) {
					t.Errorf("ReadFrame after Close = %v, want net.ErrClosed", err)
				}
				if err := client.WriteFrame([]byte("x")); !errors.Is(err, net.ErrClosed) {
					t.Errorf("WriteFrame after Close = %v, want net.ErrClosed", err)
				}
			})
		}
	}
}

// TestPeerCloseIsEOF: the closing handshake reaches a reading peer quickly
// and shows there as io.EOF.
func TestPeerCloseIsEOF(t *testing.T) {
	for _, tt := range both {
		t.Run(tt.name, func(t *testing.T) {
			client, server, _ := pair(t, tt.tr)
			got := readAsync(client)
			start := time.Now()
			server.Close()
			if d := time.Since(start); d >= CloseTimeout {
				t.Errorf("Close with a reading peer took %v, want under %v", d, CloseTimeout)
			}
			if r := wait(t, got, "ReadFrame"); !errors.Is(r.err, io.EOF) {
				t.Errorf("client ReadFrame after the server's Close = %v, want io.EOF", r.err)
			}
		})
	}
}

func TestListener(t *testing.T) {
	for _, tt := range both {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
			defer cancel()
			l, err := tt.tr.Listen(ctx, "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()

			short, cancelShort := context.WithTimeout(ctx, 50*time.Millisecond)
			defer cancelShort()
			if _, err := l.Accept(short); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("Accept with an expiring ctx = %v, want DeadlineExceeded", err)
			}

			// A request for another path is refused by the HTTP server.
			if _, err := tt.tr.Dial(ctx, l.Addr().String()+"/x"); err == nil {
				t.Fatal("Dial of a wrong address succeeded")
			}

			accepted := make(chan error, 1)
			go func() {
				_, err := l.Accept(ctx)
				accepted <- err
			}()
			time.Sleep(20 * time.Millisecond)
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			if err := wait(t, accepted, "Accept"); !errors.Is(err, net.ErrClosed) {
				t.Fatalf("pending Accept after Close = %v, want net.ErrClosed", err)
			}
			if _, err := l.Accept(ctx); !errors.Is(err, net.ErrClosed) {
				t.Fatalf("Accept after Close = %v, want net.ErrClosed", err)
			}
			if err := l.Close(); err != nil {
				t.Fatalf("second Close = %v", err)
			}
			if c, err := tt.tr.Dial(ctx, l.Addr().String()); err == nil {
				c.Close()
				t.Fatal("Dial succeeded after the Listener closed")
			}
		})
	}
}

// TestDialContextIsSetupOnly: cancelling Dial's ctx afterwards leaves the
// Conn working, and the Conn reports the peer's address.
func TestDialContextIsSetupOnly(t *testing.T) {
	for _, tt := range both {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
			defer cancel()
			l, err := tt.tr.Listen(ctx, "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			dialCtx, cancelDial := context.WithCancel(ctx)
			client, err := tt.tr.Dial(dialCtx, l.Addr().String())
			cancelDial()
			if err != nil {
				t.Fatal(err)
			}
			server, err := l.Accept(ctx)
			if err != nil {
				client.Close()
				t.Fatal(err)
			}
			defer closeBoth(client, server)
			if got, want := client.RemoteAddr().String(), l.Addr().String(); got != want {
				t.Errorf("client RemoteAddr = %s, want %s", got, want)
			}
			if server.RemoteAddr() == nil || server.RemoteAddr().String() == l.Addr().String() {
				t.Errorf("server RemoteAddr = %v, want the client's address", server.RemoteAddr())
			}
			time.Sleep(20 * time.Millisecond)
			got := readAsync(server)
			if err := client.WriteFrame([]byte("still here")); err != nil {
				t.Fatal(err)
			}
			if r := wait(t, got, "ReadFrame"); r.err != nil || string(r.p) != "still here" {
				t.Fatalf("ReadFrame = %q, %v", r.p, r.err)
			}
		})
	}
}

// TestSteadyStateAllocs checks evbench case C13 directly: a write and a
// read of a 1 KiB frame on a warmed-up Conn allocate nothing of ours on
// either side. For wss, crypto/tls (Go 1.26) allocates one 16-byte
// atLeastReader per read of a TLS record (tls.Conn.readFromUntil); a 1 KiB
// frame is one record, but the record may arrive in two reads when the
// machine is busy, so up to 2 are allowed and anything of ours would show
// as more.
func TestSteadyStateAllocs(t *testing.T) {
	if testing.CoverMode() != "" {
		t.Skip("coverage instrumentation allocates")
	}
	if raceEnabled {
		t.Skip("the race detector makes allocation counts meaningless; .ci/run runs this test without it")
	}
	for _, tt := range []struct {
		name      string
		tr        transports.Transport
		maxAllocs float64
	}{
		{"ws", Plain(), 0},
		{"wss", TLS(), 2},
	} {
		t.Run(tt.name, func(t *testing.T) {
			client, server, _ := pair(t, tt.tr)
			p := pattern(1024, 1)
			for _, dir := range []struct {
				name     string
				from, to transports.Conn
			}{{"client->server", client, server}, {"server->client", server, client}} {
				roundTrip := func() {
					if err := dir.from.WriteFrame(p); err != nil {
						t.Fatal(err)
					}
					if _, err := dir.to.ReadFrame(); err != nil {
						t.Fatal(err)
					}
				}
				roundTrip() // grows the read buffer
				if n := testing.AllocsPerRun(200, roundTrip); n > tt.maxAllocs {
					t.Errorf("%s: %v allocations per write+read, want at most %v", dir.name, n, tt.maxAllocs)
				}
			}
		})
	}
}

// BenchmarkEcho measures one frame sent by the client, echoed by the server
// and read back, over loopback: two WriteFrames and two ReadFrames per op.
// allocs/op counts both sides.
func BenchmarkEcho(b *testing.B) {
	for _, tt := range both {
		for _, size := range []int{64, 1024, 64 << 10, 1 << 20} {
			b.Run(fmt.Sprintf("%s/%dB", tt.name, size), func(b *testing.B) {
				client, server, _ := pair(b, tt.tr)
				echoed := make(chan struct{})
				go func() {
					// Echo until the client's Close ends the connection.
					defer close(echoed)
					for {
						p, err := server.ReadFrame()
						if err != nil || server.WriteFrame(p) != nil {
							return
						}
					}
				}()
				p := pattern(size, 3)
				b.SetBytes(int64(size))
				b.ReportAllocs()
				for b.Loop() {
					if err := client.WriteFrame(p); err != nil {
						b.Fatal(err)
					}
					if _, err := client.ReadFrame(); err != nil {
						b.Fatal(err)
					}
				}
				b.StopTimer()
				client.Close()
				<-echoed
			})
		}
	}
}
