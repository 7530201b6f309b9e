package udp

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/evbench/evbench/transports"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// Bounds of the helpers' waits: generous, since they only matter when a
// test is about to fail.
const (
	waitTimeout = 3 * time.Second
	pollEvery   = 2 * time.Millisecond
)

// listenT starts a Listener on 127.0.0.1:0, closed when the test ends.
func listenT(t testing.TB, opts Options) *Listener { return listenWith(t, New(opts)) }

// listenWith starts a Listener of tr on 127.0.0.1:0, closed when the test
// ends.
func listenWith(t testing.TB, tr transports.Transport) *Listener {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	ln, err := tr.Listen(ctx, "127.0.0.1:0")
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln.(*Listener)
}

// dialT dials addr, closing the Conn when the test ends.
func dialT(t testing.TB, opts Options, addr net.Addr) *Conn { return dialWith(t, New(opts), addr) }

// dialWith dials addr with tr, closing the Conn when the test ends.
func dialWith(t testing.TB, tr transports.Transport, addr net.Addr) *Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	c, err := tr.Dial(ctx, addr.String())
	if err != nil {
		t.Fatalf("Dial(%v): %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*Conn)
}

// acceptT accepts one Conn, closing it when the test ends.
func acceptT(t testing.TB, ln *Listener) *Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	c, err := ln.Accept(ctx)
	if err != nil {
		t.Fatalf("Accept: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*Conn)
}

// pairT returns a Listener and both ends of one session.
func pairT(t testing.TB, opts Options) (ln *Listener, client, server *Conn) {
	t.Helper()
	tr := New(opts)
	return pairWith(t, tr, tr)
}

// pairWith returns a Listener of srv and both ends of one session, whose
// client is cli's.
func pairWith(t testing.TB, srv, cli transports.Transport) (ln *Listener, client, server *Conn) {
	t.Helper()
	ln = listenWith(t, srv)
	client = dialWith(t, cli, ln.Addr())
	server = acceptT(t, ln)
	return ln, client, server
}

// readResult is one ReadFrame outcome, with the frame copied.
type readResult struct {
	p   []byte
	err error
}

// readAsync starts one ReadFrame and delivers its result on the channel.
func readAsync(c *Conn) <-chan readResult {
	ch := make(chan readResult, 1)
	go func() {
		p, err := c.ReadFrame()
		ch <- readResult{bytes.Clone(p), err}
	}()
	return ch
}

// await waits for a readAsync result; the test fails after d. (A
// ReadFrame left blocked ends when the test's cleanup closes the Conn.)
func await(t *testing.T, ch <-chan readResult, d time.Duration) readResult {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(d):
		t.Fatalf("ReadFrame has not returned after %v", d)
		return readResult{}
	}
}

// readT reads one frame within waitTimeout and fails the test on an error.
func readT(t *testing.T, c *Conn) []byte {
	t.Helper()
	r := await(t, readAsync(c), waitTimeout)
	if r.err != nil {
		t.Fatalf("ReadFrame: %v", r.err)
	}
	return r.p
}

// eventually polls cond until it holds, failing the test after waitTimeout.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not true after %v", what, waitTimeout)
		}
		time.Sleep(pollEvery)
	}
}

// rawPeer is a bare UDP socket on 127.0.0.1 that plays a client or a
// server by hand, to test what a real peer would not do.
type rawPeer struct {
	t    *testing.T
	sock *net.UDPConn
}

func newRawPeer(t *testing.T) *rawPeer {
	t.Helper()
	sock, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatalf("raw socket: %v", err)
	}
	t.Cleanup(func() { sock.Close() })
	return &rawPeer{t: t, sock: sock}
}

func (r *rawPeer) addr() netip.AddrPort { return r.sock.LocalAddr().(*net.UDPAddr).AddrPort() }

// send writes one datagram to to.
func (r *rawPeer) send(to net.Addr, d []byte) {
	r.t.Helper()
	if _, err := r.sock.WriteToUDPAddrPort(d, to.(*net.UDPAddr).AddrPort()); err != nil {
		r.t.Fatalf("raw send: %v", err)
	}
}

// recv returns the next datagram and its sender within d; ok is false on
// timeout.
func (r *rawPeer) recv(d time.Duration) (dgram []byte, from netip.AddrPort, ok bool) {
	r.t.Helper()
	buf := make([]byte, bufferBytes)
	r.sock.SetReadDeadline(time.Now().Add(d))
	n, from, err := r.sock.ReadFromUDPAddrPort(buf)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return nil, from, false
	}
	if err != nil {
		r.t.Fatalf("raw recv: %v", err)
	}
	return buf[:n], from, true
}

// recvKind returns the body and sender of the next datagram of kind k
// within d, skipping others; ok is false on timeout.
func (r *rawPeer) recvKind(k kind, d time.Duration) (body []byte, from netip.AddrPort, ok bool) {
	r.t.Helper()
	deadline := time.Now().Add(d)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return nil, from, false
		}
		dg, from, ok := r.recv(left)
		if !ok {
			return nil, from, false
		}
		got, body, err := parseDatagram(dg)
		if err != nil {
			r.t.Fatalf("raw peer got a malformed datagram % x: %v", dg, err)
		}
		if got == k {
			return body, from, true
		}
	}
}

// hello runs the client's side of the cookie exchange with a Listener:
// HELLO with nonce, then, if a COOKIE for it comes, HELLO with that
// cookie, until its HELLO-ACK. (An address whose Conn has this nonce gets
// the HELLO-ACK at once.) Datagrams of other kinds are skipped.
func (r *rawPeer) hello(to net.Addr, nonce uint64) {
	r.t.Helper()
	d := helloDatagram(kindHello, nonce)
	r.send(to, d[:])
	deadline := time.Now().Add(waitTimeout)
	for {
		left := time.Until(deadline)
		dg, _, ok := r.recv(max(left, 0))
		if !ok {
			r.t.Fatalf("no HELLO-ACK for nonce %#x", nonce)
		}
		k, body, err := parseDatagram(dg)
		if err != nil {
			r.t.Fatalf("raw peer got a malformed datagram % x: %v", dg, err)
		}
		if k != kindCookie && k != kindHelloAck {
			continue
		}
		if got := nonceOf(body); got != nonce {
			r.t.Fatalf("%v carries nonce %#x, want %#x", k, got, nonce)
		}
		if k == kindHelloAck {
			return
		}
		second := cookieHelloDatagram(kindHello, nonce, cookieOf(body))
		r.send(to, second[:])
	}
}

// cookieHello sends HELLO with nonce to a Listener and returns the HELLO
// in its second form that echoes the COOKIE it answers with, unsent.
func (r *rawPeer) cookieHello(to net.Addr, nonce uint64) [helloCookieBytes]byte {
	r.t.Helper()
	d := helloDatagram(kindHello, nonce)
	r.send(to, d[:])
	body, _, ok := r.recvKind(kindCookie, waitTimeout)
	if !ok {
		r.t.Fatalf("no COOKIE for nonce %#x", nonce)
	}
	if got := nonceOf(body); got != nonce {
		r.t.Fatalf("COOKIE carries nonce %#x, want %#x", got, nonce)
	}
	return cookieHelloDatagram(kindHello, nonce, cookieOf(body))
}

// fakeServer answers the first HELLO it gets with a HELLO-ACK and reports
// the client's address; it sends nothing by itself afterwards.
func fakeServer(t *testing.T, opts Options) (srv *rawPeer, client *Conn, clientAddr net.Addr) {
	t.Helper()
	return fakeServerWith(t, New(opts))
}

// fakeServerWith is fakeServer for a client of tr.
func fakeServerWith(t *testing.T, tr transports.Transport) (srv *rawPeer, client *Conn, clientAddr net.Addr) {
	t.Helper()
	srv = newRawPeer(t)
	var from atomic.Pointer[netip.AddrPort]
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, bufferBytes)
		srv.sock.SetReadDeadline(time.Now().Add(waitTimeout))
		for {
			n, addr, err := srv.sock.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			if k, body, err := parseDatagram(buf[:n]); err == nil && k == kindHello {
				ack := helloDatagram(kindHelloAck, nonceOf(body))
				srv.sock.WriteToUDPAddrPort(ack[:], addr)
				from.Store(&addr)
				return
			}
		}
	}()
	client = dialWith(t, tr, srv.sock.LocalAddr())
	<-done
	addr := from.Load()
	if addr == nil {
		t.Fatal("the fake server got no HELLO")
	}
	return srv, client, net.UDPAddrFromAddrPort(*addr)
}
