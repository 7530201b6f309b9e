package ws

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/evbench/evbench/transports"
)

// upgradeRequest is a WebSocket opening handshake (RFC 6455 §4.1) for Path.
const upgradeRequest = "GET " + Path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
	"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"

// rawClient connects to a ws or wss Listener at addr and performs the
// upgrade by hand, so that the test can then write frame bytes of its own.
func rawClient(ctx context.Context, useTLS bool, addr string) (net.Conn, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if useTLS {
		conf, err := transports.Config{}.ClientTLSConfig(alpn)
		if err != nil {
			nc.Close()
			return nil, err
		}
		conf.ServerName = "127.0.0.1"
		tc := tls.Client(nc, conf)
		if err := tc.HandshakeContext(ctx); err != nil {
			nc.Close()
			return nil, err
		}
		nc = tc
	}
	if _, err := io.WriteString(nc, upgradeRequest); err != nil {
		nc.Close()
		return nil, err
	}
	// Read the 101 response byte by byte, so that nothing after it is
	// consumed.
	var head []byte
	one := make([]byte, 1)
	for !strings.HasSuffix(string(head), "\r\n\r\n") {
		if _, err := nc.Read(one); err != nil {
			nc.Close()
			return nil, err
		}
		head = append(head, one[0])
	}
	if !strings.HasPrefix(string(head), "HTTP/1.1 101") {
		nc.Close()
		return nil, errors.New("upgrade refused: " + string(head))
	}
	return nc, nil
}

// frameHeader is the header of a masked client frame (RFC 6455 §5.2) with
// opcode op, FIN set, announcing n payload bytes, with a zero masking key
// (so that the payload travels as it is).
func frameHeader(op byte, n uint64) []byte {
	h := []byte{0x80 | op}
	switch {
	case n < 126:
		h = append(h, 0x80|byte(n))
	case n <= 0xffff:
		h = append(h, 0x80|126)
		h = binary.BigEndian.AppendUint16(h, uint16(n))
	default:
		h = append(h, 0x80|127)
		h = binary.BigEndian.AppendUint64(h, n)
	}
	return append(h, 0, 0, 0, 0)
}

// heapAlloc is HeapAlloc, in bytes, after a collection.
func heapAlloc() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
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

// watching is a frameConn test probe: it counts what the server's
// connections have read, through the Config's Listen.
type watchNet struct {
	mu    sync.Mutex
	conns []*watchConn
}

type watchConn struct {
	net.Conn
	delivered atomic.Int64
	atEntry   atomic.Int64
	inRead    atomic.Bool
}

func (w *watchConn) Read(p []byte) (int, error) {
	w.atEntry.Store(w.delivered.Load())
	w.inRead.Store(true)
	n, err := w.Conn.Read(p)
	w.delivered.Add(int64(n))
	w.inRead.Store(false)
	return n, err
}

func (w *watchConn) waiting() bool { return w.inRead.Load() && w.atEntry.Load() == w.delivered.Load() }

func (n *watchNet) Listen(ctx context.Context, network, addr string) (net.Listener, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return &watchListener{ln, n}, nil
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

// TestAnnouncementDoesNotAllocate opens 100 connections that each send a
// frame header announcing a MaxFrame-byte binary message and 8 bytes of
// it, and measures the heap's growth once every server-side ReadFrame has
// consumed those bytes and waits for more.
func TestAnnouncementDoesNotAllocate(t *testing.T) {
	const conns = 100
	const limit = 10 << 20
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var wn watchNet
	tr, err := NewPlain(transports.Config{Listen: wn.Listen})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tr.Listen(ctx, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	clients := make([]net.Conn, conns)
	errs := make([]error, conns)
	var dials sync.WaitGroup
	for i := range conns {
		dials.Go(func() { clients[i], errs[i] = rawClient(ctx, false, ln.Addr().String()) })
	}
	servers := make([]transports.Conn, conns)
	for i := range conns {
		if servers[i], err = ln.Accept(ctx); err != nil {
			t.Fatal(err)
		}
	}
	dials.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	ended := make(chan error, conns)
	var readers sync.WaitGroup
	defer func() {
		for i := range conns {
			clients[i].Close()
		}
		for i := range conns {
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
	wn.mu.Lock()
	watched := append([]*watchConn(nil), wn.conns...)
	wn.mu.Unlock()
	allWaiting := func() bool {
		for _, w := range watched {
			if !w.waiting() {
				return false
			}
		}
		return true
	}
	sum := func() (n int64) {
		for _, w := range watched {
			n += w.delivered.Load()
		}
		return n
	}
	waitFor(t, 10*time.Second, "every ReadFrame to wait for its first message", allWaiting)
	got := sum()
	before := heapAlloc()
	msg := append(frameHeader(2, MaxFrame), 1, 2, 3, 4, 5, 6, 7, 8)
	for _, c := range clients {
		if _, err := c.Write(msg); err != nil {
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
	t.Logf("%d connections each announcing a %d-byte message and sending 8 bytes of it: heap %.2f MiB -> %.2f MiB, growth %.3f MiB",
		conns, MaxFrame, float64(before)/(1<<20), float64(after)/(1<<20), float64(growth)/(1<<20))
	if growth > limit {
		t.Errorf("heap grew by %d bytes, want less than %d", growth, limit)
	}
}

// TestReadTimeout sends part of a message and stops: the server's
// ReadFrame must fail with an error wrapping transports.ErrReadTimeout
// within the Config's ReadTimeout and a second. A peer that sends nothing,
// or a ping and then nothing, is not timed out.
func TestReadTimeout(t *testing.T) {
	const timeout = 200 * time.Millisecond
	for _, c := range []struct {
		name string
		newT transports.Constructor
	}{{NamePlain, NewPlain}, {NameTLS, NewTLS}} {
		for _, tt := range []struct {
			name   string
			send   []byte
			silent bool
		}{
			{"half a header", frameHeader(2, 1000)[:1], false},
			{"a header only", frameHeader(2, 1000), false},
			{"half a payload", append(frameHeader(2, 100), make([]byte, 50)...), false},
			{"half a large payload", append(frameHeader(2, 1<<20), make([]byte, 100<<10)...), false},
			{"a message and half of another", append(append(frameHeader(2, 2), 'o', 'k'), frameHeader(2, 100)...), false},
			{"first fragment only", append(append([]byte{0x02}, frameHeader(2, 3)[1:]...), 'a', 'b', 'c'), false},
			{"silent", nil, true},
			{"a ping, then silent", append(frameHeader(9, 2), 'h', 'i'), true},
		} {
			t.Run(c.name+"/"+tt.name, func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
				defer cancel()
				tr, err := c.newT(transports.Config{ReadTimeout: timeout})
				if err != nil {
					t.Fatal(err)
				}
				ln, err := tr.Listen(ctx, "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				defer ln.Close()
				client, err := rawClient(ctx, c.name == NameTLS, ln.Addr().String())
				if err != nil {
					t.Fatal(err)
				}
				defer client.Close()
				go io.Copy(io.Discard, client) // the pong, the close frame
				server, err := ln.Accept(ctx)
				if err != nil {
					t.Fatal(err)
				}
				defer server.Close()
				if tt.send != nil {
					if _, err := client.Write(tt.send); err != nil {
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
				if tt.silent {
					wait := time.NewTimer(2 * timeout)
					defer wait.Stop()
					select {
					case err := <-done:
						t.Fatalf("ReadFrame on a silent peer returned %v before %v", err, 2*timeout)
					case <-wait.C:
						t.Logf("ReadFrame still waits for a silent peer after %v", 2*timeout)
					}
					client.Close()
					<-done
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
			})
		}
	}
}

// TestUpgradeIsBounded connects peers that never complete an upgrade:
// silent, a header sent in part, a request that is not an upgrade followed
// by silence, and a request whose body trickles. The server must close
// each within its handshake timeout (HandshakeTimeout, shortened here) and
// a second.
func TestUpgradeIsBounded(t *testing.T) {
	const hs = 300 * time.Millisecond
	for _, c := range []struct {
		name string
		newT transports.Constructor
	}{{NamePlain, NewPlain}, {NameTLS, NewTLS}} {
		for _, tt := range []struct {
			name string
			send string
		}{
			{"silent", ""},
			{"half a header", "GET " + Path + " HTTP/1.1\r\nHost: 127.0.0.1\r\n"},
			{"not an upgrade, then silent", "GET /other HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"},
			{"a body that trickles", "POST /other HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100000\r\n\r\nab"},
		} {
			t.Run(c.name+"/"+tt.name, func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
				defer cancel()
				tr, err := c.newT(transports.Config{})
				if err != nil {
					t.Fatal(err)
				}
				tr.(*transport).handshakeTimeout = hs
				ln, err := tr.Listen(ctx, "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				defer ln.Close()
				var d net.Dialer
				nc, err := d.DialContext(ctx, "tcp", ln.Addr().String())
				if err != nil {
					t.Fatal(err)
				}
				defer nc.Close()
				start := time.Now()
				var peer net.Conn = nc
				if c.name == NameTLS && tt.send != "" {
					conf, _ := transports.Config{}.ClientTLSConfig(alpn)
					conf.ServerName = "127.0.0.1"
					tc := tls.Client(nc, conf)
					if err := tc.HandshakeContext(ctx); err != nil {
						t.Fatal(err)
					}
					peer = tc
				}
				if _, err := io.WriteString(peer, tt.send); err != nil {
					t.Fatal(err)
				}
				// Read until the server closes the connection.
				nc.SetReadDeadline(time.Now().Add(hs + time.Second))
				_, err = io.Copy(io.Discard, bufio.NewReader(peer))
				took := time.Since(start)
				t.Logf("closed by the server after %v (%v)", took.Round(time.Millisecond), err)
				if err != nil && errors.Is(err, net.ErrClosed) || took > hs+time.Second {
					t.Fatalf("the connection was still open after %v: %v", took, err)
				}
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					t.Fatalf("the server did not close the connection within %v", hs+time.Second)
				}
			})
		}
	}
}

// TestAbnormalClosure checks how a peer's end reaches ReadFrame: a close
// frame with status 1000 is io.EOF; a TCP connection dropped without one
// (1006) is an error wrapping ErrAbnormalClosure, neither io.EOF nor
// net.ErrClosed.
func TestAbnormalClosure(t *testing.T) {
	for _, b := range both {
		t.Run(b.name, func(t *testing.T) {
			client, server, _ := pair(t, b.tr)
			go client.Close()
			if _, err := server.ReadFrame(); !errors.Is(err, io.EOF) {
				t.Errorf("after the peer's Close (1000), ReadFrame = %v, want io.EOF", err)
			}

			client, server, _ = pair(t, b.tr)
			client.(*conn).raw.Conn.Close() // no close frame
			_, err := server.ReadFrame()
			t.Logf("after a drop: %v", err)
			if !errors.Is(err, ErrAbnormalClosure) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) {
				t.Errorf("after a drop (1006), ReadFrame = %v, want ErrAbnormalClosure and not io.EOF or net.ErrClosed", err)
			}
		})
	}
}
