package quic

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	quicgo "github.com/quic-go/quic-go"

	"github.com/evbench/evbench/transports"
	"github.com/evbench/evbench/transports/internal/selfsigned"
)

// watchReader is an io.Reader whose reads can be watched from another
// goroutine: whether a Read is blocked, and how many bytes had been
// delivered when it began, so that a test can wait, as an event, for a
// reader to have consumed what was sent and to wait for more.
type watchReader struct {
	r         io.Reader
	delivered atomic.Int64
	atEntry   atomic.Int64
	inRead    atomic.Bool
}

func (w *watchReader) Read(p []byte) (int, error) {
	w.atEntry.Store(w.delivered.Load())
	w.inRead.Store(true)
	n, err := w.r.Read(p)
	w.delivered.Add(int64(n))
	w.inRead.Store(false)
	return n, err
}

// waiting reports whether a Read is blocked that began after every byte
// delivered so far.
func (w *watchReader) waiting() bool {
	return w.inRead.Load() && w.atEntry.Load() == w.delivered.Load()
}

// watchedTransport is t with every Conn's stream read through a
// watchReader, listed in order of creation.
type watched struct {
	mu      sync.Mutex
	readers []*watchReader
}

func (w *watched) wrap(r io.Reader) io.Reader {
	wr := &watchReader{r: r}
	w.mu.Lock()
	w.readers = append(w.readers, wr)
	w.mu.Unlock()
	return wr
}

func (w *watched) snapshot() []*watchReader {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]*watchReader(nil), w.readers...)
}

// waitFor polls cond until it holds, failing the test after limit.
func waitFor(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up after %v waiting for %s", limit, what)
		}
		time.Sleep(time.Millisecond) // polling an event, not synchronising
	}
}

// heapAlloc is HeapAlloc, in bytes, after a collection.
func heapAlloc() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// rawStream is the QUIC stream under a Conn of this package, on which a
// test writes bytes the Conn's WriteFrame would not.
func rawStream(c transports.Conn) *quicgo.Stream {
	switch c := c.(type) {
	case *streamConn:
		return c.st
	case *dgramConn:
		return c.st
	}
	panic("not a quic Conn")
}

// both builds the two transports of this package from cfg.
func bothTransports(t *testing.T, cfg transports.Config) []*transport {
	t.Helper()
	s, err := newTransport(cfg, false)
	if err != nil {
		t.Fatal(err)
	}
	d, err := newTransport(cfg, true)
	if err != nil {
		t.Fatal(err)
	}
	return []*transport{s, d}
}

// TestAnnouncementDoesNotAllocate opens 100 connections whose streams each
// carry a length prefix announcing a frame of Caps().MaxFrame bytes and 8
// bytes of it, and measures the growth of the heap once every server-side
// ReadFrame has consumed those bytes and waits for more.
func TestAnnouncementDoesNotAllocate(t *testing.T) {
	const conns = 100
	const limit = 10 << 20
	for _, tr := range bothTransports(t, transports.Config{}) {
		t.Run(tr.Name(), func(t *testing.T) {
			ctx := testCtx(t)
			// Only the server's streams are watched: clients dial
			// through a copy of the transport without the hook.
			dialer := *tr
			var w watched
			tr.wrapStream = w.wrap
			defer func() { tr.wrapStream = nil }()
			ln, err := tr.Listen(ctx, "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			clients := make([]transports.Conn, conns)
			errs := make([]error, conns)
			var dials sync.WaitGroup
			// At most 16 handshakes at a time, as the fleet limits its own:
			// quic-go queues at most 32 handshakes that completed before
			// Accept, and a loaded machine completes them slowly.
			sem := make(chan struct{}, 16)
			for i := range conns {
				dials.Go(func() {
					sem <- struct{}{}
					defer func() { <-sem }()
					clients[i], errs[i] = dialer.Dial(ctx, ln.Addr().String())
				})
			}
			servers := make([]transports.Conn, 0, conns)
			for range conns {
				s, err := ln.Accept(ctx)
				if err != nil {
					t.Fatal(err)
				}
				servers = append(servers, s)
			}
			dials.Wait()
			if err := errors.Join(errs...); err != nil {
				t.Fatal(err)
			}
			ended := make(chan error, conns)
			var readers sync.WaitGroup
			defer func() {
				var closing sync.WaitGroup
				for i := range conns {
					closing.Go(func() { clients[i].(conn).abort() })
					closing.Go(func() { servers[i].(conn).abort() })
				}
				closing.Wait()
				readers.Wait()
			}()
			for _, s := range servers {
				readers.Go(func() {
					for {
						if _, err := s.ReadFrame(); err != nil {
							ended <- err
							return
						}
					}
				})
			}
			// The server's readers: one per connection, created before
			// Accept returned it.
			server := w.snapshot()
			if len(server) != conns {
				t.Fatalf("%d stream readers, want %d", len(server), conns)
			}
			allWaiting := func() bool {
				for _, r := range server {
					if !r.waiting() {
						return false
					}
				}
				return true
			}
			var got int64
			sum := func() int64 {
				var n int64
				for _, r := range server {
					n += r.delivered.Load()
				}
				return n
			}
			waitFor(t, 10*time.Second, "every ReadFrame to wait for its first frame", allWaiting)
			got = sum()
			before := heapAlloc()

			maxFrame := tr.Caps().MaxFrame
			msg := binary.BigEndian.AppendUint32(nil, uint32(maxFrame))
			msg = append(msg, 1, 2, 3, 4, 5, 6, 7, 8)
			for _, c := range clients {
				if _, err := rawStream(c).Write(msg); err != nil {
					t.Fatal(err)
				}
			}
			waitFor(t, 10*time.Second, "every ReadFrame to consume its bytes", func() bool {
				return sum()-got == int64(conns*len(msg)) && allWaiting()
			})
			after := heapAlloc()
			select {
			case err := <-ended:
				t.Fatalf("a ReadFrame returned %v", err)
			default:
			}
			growth := int64(after) - int64(before)
			t.Logf("%d connections each announcing a %d-byte frame and sending 8 bytes of it: heap %.2f MiB -> %.2f MiB, growth %.3f MiB",
				conns, maxFrame, float64(before)/(1<<20), float64(after)/(1<<20), float64(growth)/(1<<20))
			if growth > limit {
				t.Errorf("heap grew by %d bytes, want less than %d", growth, limit)
			}
		})
	}
}

// TestReadTimeout writes a length prefix and half a frame on the stream
// and stops: the server's ReadFrame must fail with an error wrapping
// transports.ErrReadTimeout within the Config's ReadTimeout and a second.
// A peer that sends nothing is not timed out.
func TestReadTimeout(t *testing.T) {
	const timeout = 200 * time.Millisecond
	for _, tr := range bothTransports(t, transports.Config{ReadTimeout: timeout}) {
		for _, tt := range []struct {
			name string
			send []byte
		}{
			{"half a small frame", binary.BigEndian.AppendUint32(nil, 100)[:4:4]},
			{"half a prefix", []byte{0, 0}},
			{"a frame and half of another", append(binary.BigEndian.AppendUint32(nil, 2), 'o', 'k', 0, 0, 0, 9, 1, 2, 3)},
			{"silent", nil},
		} {
			t.Run(tr.Name()+"/"+tt.name, func(t *testing.T) {
				client, server := pair(t, tr)
				if tt.send != nil {
					if _, err := rawStream(client).Write(tt.send); err != nil {
						t.Fatal(err)
					}
				}
				done := make(chan error, 1)
				start := time.Now()
				go func() {
					for {
						if _, err := server.ReadFrame(); err != nil {
							done <- err
							return
						}
					}
				}()
				if tt.send == nil {
					wait := time.NewTimer(2 * timeout)
					defer wait.Stop()
					select {
					case err := <-done:
						t.Fatalf("ReadFrame on a silent peer returned %v before %v", err, 2*timeout)
					case <-wait.C:
						t.Logf("ReadFrame still waits for a silent peer after %v", 2*timeout)
					}
					server.(conn).abort()
					if err := <-done; !errors.Is(err, net.ErrClosed) {
						t.Errorf("after Close, ReadFrame = %v, want net.ErrClosed", err)
					}
					return
				}
				err := <-done
				took := time.Since(start)
				t.Logf("ReadFrame failed after %v: %v", took.Round(time.Millisecond), err)
				if !errors.Is(err, transports.ErrReadTimeout) {
					t.Fatalf("ReadFrame = %v, want an error wrapping ErrReadTimeout", err)
				}
				if took > timeout+time.Second {
					t.Errorf("ReadFrame took %v, want at most %v", took, timeout+time.Second)
				}
				// The server closed the connection: the client sees it.
				if _, err := readWithin(t, client); err == nil {
					t.Error("the client's ReadFrame succeeded after the server timed its frame out")
				}
			})
		}
	}
}

// TestSilentPeerIsClosed completes the QUIC handshake and then says
// nothing (no stream), or opens its stream and ends it without a
// preamble: the server must close such a connection within its set-up
// timeout (SetupTimeout, HandshakeIdleTimeout by default; shortened here),
// while a normal client connecting meanwhile is accepted at once.
func TestSilentPeerIsClosed(t *testing.T) {
	if SetupTimeout != HandshakeIdleTimeout {
		t.Errorf("SetupTimeout = %v, want HandshakeIdleTimeout (%v)", SetupTimeout, HandshakeIdleTimeout)
	}
	const setup = 300 * time.Millisecond
	for _, tr := range bothTransports(t, transports.Config{}) {
		for _, tt := range []struct {
			name  string
			act   func(*quicgo.Conn) error
			bound time.Duration
		}{
			{"no stream", func(*quicgo.Conn) error { return nil }, setup + time.Second},
			{"stream without a preamble", func(qc *quicgo.Conn) error {
				st, err := qc.OpenStream()
				if err != nil {
					return err
				}
				return st.Close() // a FIN and no byte
			}, time.Second},
		} {
			t.Run(tr.Name()+"/"+tt.name, func(t *testing.T) {
				ctx := testCtx(t)
				tr.setupTimeout = setup
				ln, err := tr.Listen(ctx, "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				defer ln.Close()
				ctls, err := selfsigned.ClientConfig(ALPN)
				if err != nil {
					t.Fatal(err)
				}
				udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
				if err != nil {
					t.Fatal(err)
				}
				qtr := &quicgo.Transport{Conn: udp}
				defer func() { qtr.Close(); udp.Close() }()
				start := time.Now()
				silent, err := qtr.Dial(ctx, ln.Addr(), ctls, Config(tr.dgram))
				if err != nil {
					t.Fatal(err)
				}
				defer silent.CloseWithError(0, "")
				if err := tt.act(silent); err != nil {
					t.Fatal(err)
				}

				client, err := tr.Dial(ctx, ln.Addr().String())
				if err != nil {
					t.Fatal(err)
				}
				defer client.(conn).abort()
				actx, cancel := context.WithTimeout(ctx, setup/2)
				defer cancel()
				server, err := ln.Accept(actx)
				if err != nil {
					t.Fatalf("Accept with a silent client connected: %v", err)
				}
				defer server.(conn).abort()

				select {
				case <-silent.Context().Done():
				case <-time.After(tt.bound):
					t.Fatalf("the silent peer's connection is still open after %v", tt.bound)
				}
				took := time.Since(start)
				err = context.Cause(silent.Context())
				t.Logf("silent peer closed by the server after %v: %v", took.Round(time.Millisecond), err)
				ae, ok := errors.AsType[*quicgo.ApplicationError](err)
				if !ok || !ae.Remote || ae.ErrorCode != codeSetup {
					t.Errorf("closed with %v, want the server's application error %d", err, codeSetup)
				}
			})
		}
	}
}

func TestReadPreamble(t *testing.T) {
	for _, tt := range []struct {
		in      string
		want    byte
		wantErr bool
	}{
		{"S", 'S', false},
		{"Sxyz", 'S', false},
		{"D", 'S', true},
		{"", 'S', true},
		{"D", 'D', false},
	} {
		err := readPreamble(&onceReader{b: []byte(tt.in)}, tt.want)
		if (err != nil) != tt.wantErr {
			t.Errorf("readPreamble(%q, %q) = %v, want error %v", tt.in, tt.want, err, tt.wantErr)
		}
	}
}

// onceReader returns its bytes one at a time, then io.EOF.
type onceReader struct{ b []byte }

func (o *onceReader) Read(p []byte) (int, error) {
	if len(o.b) == 0 {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	p[0] = o.b[0]
	o.b = o.b[1:]
	return 1, nil
}
