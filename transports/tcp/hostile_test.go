package tcp

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/evbench/evbench/transports"
)

// watchConn is a net.Conn whose reads can be watched from another
// goroutine: whether a Read is blocked, and how many bytes had been
// delivered when it began, so that a test can wait for a reader to have
// consumed what was sent and to wait for more, as an event rather than a
// sleep.
type watchConn struct {
	net.Conn
	delivered atomic.Int64 // bytes returned by Read so far
	atEntry   atomic.Int64 // delivered when the current or last Read began
	inRead    atomic.Bool
	written   atomic.Int64 // bytes passed to Write so far
}

func (w *watchConn) Read(p []byte) (int, error) {
	w.atEntry.Store(w.delivered.Load())
	w.inRead.Store(true)
	n, err := w.Conn.Read(p)
	w.delivered.Add(int64(n))
	w.inRead.Store(false)
	return n, err
}

func (w *watchConn) Write(p []byte) (int, error) {
	n, err := w.Conn.Write(p)
	w.written.Add(int64(n))
	return n, err
}

// waiting reports whether a Read is blocked that began after every byte
// delivered so far.
func (w *watchConn) waiting() bool {
	return w.inRead.Load() && w.atEntry.Load() == w.delivered.Load()
}

// watchNet is a Config.Listen that wraps every accepted connection in a
// watchConn.
type watchNet struct {
	mu    sync.Mutex
	conns []*watchConn
}

func (n *watchNet) Listen(ctx context.Context, network, addr string) (net.Listener, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return &watchListener{Listener: ln, n: n}, nil
}

func (n *watchNet) snapshot() []*watchConn {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]*watchConn(nil), n.conns...)
}

type watchListener struct {
	net.Listener
	n *watchNet
}

func (l *watchListener) Accept() (net.Conn, error) {
	nc, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	w := &watchConn{Conn: nc}
	l.n.mu.Lock()
	l.n.conns = append(l.n.conns, w)
	l.n.mu.Unlock()
	return w, nil
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

// dialRaw opens a client connection to ln that speaks the wire format by
// hand: plain TCP, or TLS with the transport's ALPN and the process's
// certificate. The returned watchConn is the TCP connection, counting the
// bytes written to the socket.
func dialRaw(ctx context.Context, useTLS bool, addr string) (net.Conn, *watchConn, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, nil, err
	}
	w := &watchConn{Conn: nc}
	if !useTLS {
		return w, w, nil
	}
	conf, err := transports.Config{}.ClientTLSConfig(alpn)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	conf.ServerName = "127.0.0.1"
	tc := tls.Client(w, conf)
	if err := tc.HandshakeContext(ctx); err != nil {
		nc.Close()
		return nil, nil, err
	}
	return tc, w, nil
}

// TestAnnouncementDoesNotAllocate opens 100 connections that each send a
// length prefix announcing a MaxFrameBytes frame and 8 bytes of it, and
// measures the growth of the heap once every server-side ReadFrame has
// consumed those bytes and waits for more. Before frame buffers grew with
// the bytes received, this cost 100 × 16 MiB, about 1.6 GiB.
func TestAnnouncementDoesNotAllocate(t *testing.T) {
	const conns = 100
	const limit = 10 << 20
	for _, c := range constructors {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			var wn watchNet
			tr := build(t, c.newT, transports.Config{Listen: wn.Listen})
			ln, err := tr.Listen(ctx, "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()

			clients := make([]net.Conn, conns)
			raws := make([]*watchConn, conns)
			dialErrs := make([]error, conns)
			var dials sync.WaitGroup
			for i := range conns {
				dials.Go(func() { clients[i], raws[i], dialErrs[i] = dialRaw(ctx, c.name == NameTLS, ln.Addr().String()) })
			}
			servers := make([]transports.Conn, conns)
			for i := range conns {
				if servers[i], err = ln.Accept(ctx); err != nil {
					t.Fatal(err)
				}
			}
			dials.Wait()
			if err := errors.Join(dialErrs...); err != nil {
				t.Fatal(err)
			}
			ended := make(chan error, conns)
			var readers sync.WaitGroup
			defer func() {
				for i := range conns {
					clients[i].Close()
					servers[i].Close()
				}
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
			watched := wn.snapshot()
			if len(watched) != conns {
				t.Fatalf("%d connections accepted, want %d", len(watched), conns)
			}
			allWaiting := func() bool {
				for _, w := range watched {
					if !w.waiting() {
						return false
					}
				}
				return true
			}
			waitFor(t, 10*time.Second, "every ReadFrame to wait for its first frame", allWaiting)
			var sent int64
			for _, r := range raws {
				sent += r.written.Load()
			}
			var got int64
			for _, w := range watched {
				got += w.delivered.Load()
			}
			before := heapAlloc()

			msg := binary.BigEndian.AppendUint32(nil, MaxFrameBytes)
			msg = append(msg, 1, 2, 3, 4, 5, 6, 7, 8)
			for i := range conns {
				if _, err := clients[i].Write(msg); err != nil {
					t.Fatal(err)
				}
			}
			var sentAfter int64
			for _, r := range raws {
				sentAfter += r.written.Load()
			}
			waitFor(t, 10*time.Second, "every ReadFrame to consume its bytes", func() bool {
				var n int64
				for _, w := range watched {
					n += w.delivered.Load()
				}
				return n-got == sentAfter-sent && allWaiting()
			})
			after := heapAlloc()
			select {
			case err := <-ended:
				t.Fatalf("a ReadFrame returned %v", err)
			default:
			}
			growth := int64(after) - int64(before)
			t.Logf("%d connections each announcing a %d-byte frame and sending 8 bytes of it (%d bytes on the wire): heap %.2f MiB -> %.2f MiB, growth %.3f MiB",
				conns, MaxFrameBytes, sentAfter-sent, float64(before)/(1<<20), float64(after)/(1<<20), float64(growth)/(1<<20))
			if growth > limit {
				t.Errorf("heap grew by %d bytes, want less than %d", growth, limit)
			}
		})
	}
}

// TestReadTimeout sends a length prefix and half a frame and stops: the
// server's ReadFrame must fail with an error wrapping
// transports.ErrReadTimeout within the Config's ReadTimeout and a second.
// A peer that sends nothing is not timed out: its ReadFrame still waits
// after twice the ReadTimeout.
func TestReadTimeout(t *testing.T) {
	const timeout = 200 * time.Millisecond
	for _, c := range constructors {
		for _, tt := range []struct {
			name string
			send []byte
		}{
			{"half a small frame", wire(pattern(100, 1))[:50]},
			{"half a large frame", wire(pattern(3*BufferBytes, 2))[:2*BufferBytes]},
			{"a frame and half a prefix", append(wire([]byte("ok")), 0, 0)},
			{"silent", nil},
		} {
			t.Run(c.name+"/"+tt.name, func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				tr := build(t, c.newT, transports.Config{ReadTimeout: timeout})
				ln, err := tr.Listen(ctx, "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				defer ln.Close()
				client, _, err := dialRaw(ctx, c.name == NameTLS, ln.Addr().String())
				if err != nil {
					t.Fatal(err)
				}
				defer client.Close()
				server, err := ln.Accept(ctx)
				if err != nil {
					t.Fatal(err)
				}
				defer server.Close()
				go client.Write(tt.send)
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
					server.Close()
					if err := <-done; !errors.Is(err, net.ErrClosed) {
						t.Errorf("after Close, ReadFrame = %v, want net.ErrClosed", err)
					}
					return
				}
				err = <-done
				took := time.Since(start)
				t.Logf("ReadFrame failed after %v: %v", took.Round(time.Millisecond), err)
				if !errors.Is(err, transports.ErrReadTimeout) {
					t.Fatalf("ReadFrame = %v, want an error wrapping ErrReadTimeout", err)
				}
				if took > timeout+time.Second {
					t.Errorf("ReadFrame took %v, want at most %v", took, timeout+time.Second)
				}
				if _, err2 := server.ReadFrame(); !errors.Is(err2, transports.ErrReadTimeout) {
					t.Errorf("second ReadFrame = %v, want the same error", err2)
				}
			})
		}
	}
}
