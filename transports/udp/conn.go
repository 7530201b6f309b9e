package udp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/evbench/evbench/transports"
)

// Conn is one UDP session. A client Conn (from Dial) owns its socket
// (connected to the server at the kernel level when it is a *net.UDPConn,
// see the package doc) and reads it directly in ReadFrame; a server Conn
// (from Accept) shares its Listener's socket and reads from an inbound
// queue that the Listener's read goroutine fills.
//
// It follows the transports.Conn contract: one WriteFrame and one ReadFrame
// caller at a time, Close from anywhere.
type Conn struct {
	// The reading side owns rbuf, early, oob, kdrops.last and cur; the
	// writing side owns wbuf; the rest is immutable, atomic or under mu.
	opts   Options
	sock   *socket   // a client's own, or its Listener's
	l      *Listener // nil for a client Conn
	raddr  netip.AddrPort
	remote net.Addr // raddr as a *net.UDPAddr
	local  net.Addr // client: the address the kernel bound; nil: the socket's LocalAddr
	nonce  uint64   // the session nonce of HELLO and HELLO-ACK

	closed atomic.Bool
	done   chan struct{}         // closed by Close
	dead   atomic.Pointer[error] // why the session ended on the peer's side, set once

	lastSendNs atomic.Int64 // now() of the last datagram sent
	lastRecvNs atomic.Int64 // server: last datagram received; client: start of the last socket read
	reading    atomic.Bool  // client: ReadFrame is waiting on the socket
	timer      *time.Timer  // keepalive and idle check, one per Conn
	suspect    bool         // tick saw IdleTimeout of silence; owned by tick

	malformed atomic.Uint64
	queueFull atomic.Uint64
	foreign   atomic.Uint64 // client: datagrams from a source other than the server
	refused   atomic.Uint64 // client: ECONNREFUSED from reads and writes after Dial

	wbuf [headerBytes + MaxFrameBytes]byte

	// Client reading side.
	rbuf   *buffer
	early  int // length of a DATA datagram that arrived during the handshake, held in rbuf
	oob    [oobBytes]byte
	kdrops dropCounter
	sizes  bufferSizes

	// Server reading side: cur is the buffer handed out by the last
	// ReadFrame; mu guards q and qClosed, which the Listener fills.
	cur     *buffer
	mu      sync.Mutex
	q       ring
	qClosed bool
	notify  chan struct{} // capacity 1: "the queue or dead changed"
}

var _ transports.Conn = (*Conn)(nil)

// Static errors, so that returning them costs nothing, and the deadline
// that unblocks a client read.
var (
	errReadClosed      = fmt.Errorf("udp: read: %w", net.ErrClosed)
	errWriteClosed     = fmt.Errorf("udp: write: %w", net.ErrClosed)
	errWritePeerClosed = fmt.Errorf("udp: write: %w", ErrPeerClosed)
	errListenerRefused = fmt.Errorf("server answered HELLO with BYE (listener closed): %w", syscall.ECONNREFUSED)
	aLongTimeAgo       = time.Unix(1, 0)
)

// never is the delay of a timer that is created before it is armed.
const never = time.Duration(math.MaxInt64)

func newClientConn(opts Options, sock *socket, server netip.AddrPort, local net.Addr, sizes bufferSizes, nonce uint64) *Conn {
	c := &Conn{
		opts:   opts,
		sock:   sock,
		raddr:  server,
		remote: net.UDPAddrFromAddrPort(server),
		local:  local,
		nonce:  nonce,
		done:   make(chan struct{}),
		rbuf:   new(buffer),
		sizes:  sizes,
	}
	// Created unarmed so that c.timer is set before tick can run:
	// startTimer's Reset orders the two for the race detector.
	c.timer = time.AfterFunc(never, c.tick)
	return c
}

func newServerConn(l *Listener, raddr netip.AddrPort, nonce uint64) *Conn {
	c := &Conn{
		opts:   l.opts,
		sock:   l.sock,
		l:      l,
		raddr:  raddr,
		remote: net.UDPAddrFromAddrPort(raddr),
		nonce:  nonce,
		done:   make(chan struct{}),
		notify: make(chan struct{}, 1),
	}
	c.timer = time.AfterFunc(never, c.tick)
	t := now()
	c.lastSendNs.Store(t)
	c.lastRecvNs.Store(t)
	return c
}

// helloResult is what awaitHelloAck saw before its deadline.
type helloResult uint8

const (
	helloTimedOut helloResult = iota // nothing that moves the handshake on
	helloCookie                      // a COOKIE for our nonce: send the second HELLO now
	helloAcked                       // the session is established
)

// handshake runs the client's side of the cookie exchange (see "Sessions"
// in the package doc): it sends the first HELLO, and once a COOKIE for its
// nonce arrives, the second HELLO carrying that cookie; the latest HELLO is
// resent every HelloInterval (a lost HELLO, COOKIE or HELLO-ACK) and a new
// COOKIE replaces the cookie held (the server refused it as expired or
// unknown). It ends when the matching HELLO-ACK (or a DATA datagram, which
// proves the server took the session) arrives.
func (c *Conn) handshake(ctx context.Context) error {
	first := helloDatagram(kindHello, c.nonce)
	var second [helloCookieBytes]byte // the HELLO with the latest cookie
	out, what := first[:], "no COOKIE"
	for {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		if err := c.sock.write(out, c.raddr, c.remote); err != nil {
			return err
		}
		wait := time.Now().Add(c.opts.HelloInterval)
		if dl, ok := ctx.Deadline(); ok && dl.Before(wait) {
			wait = dl
		}
		if err := c.sock.pc.SetReadDeadline(wait); err != nil {
			return err
		}
		r, err := c.awaitHelloAck(&second)
		if err != nil {
			return err
		}
		if r == helloAcked {
			break
		}
		if r == helloCookie {
			out, what = second[:], "no HELLO-ACK"
		}
	}
	if err := c.sock.pc.SetReadDeadline(time.Time{}); err != nil {
		return err
	}
	t := now()
	c.lastSendNs.Store(t)
	c.lastRecvNs.Store(t)
	return nil
}

// awaitHelloAck reads until the read deadline or until the handshake moves
// on: a COOKIE for c's nonce (its cookie is written into second, a HELLO in
// its second form), or the session established.
func (c *Conn) awaitHelloAck(second *[helloCookieBytes]byte) (helloResult, error) {
	for {
		n, oobn, from, err := c.sock.read(c.rbuf.b[:], c.oob[:])
		if err != nil {
			if isTimeout(err) {
				return helloTimedOut, nil
			}
			return helloTimedOut, err
		}
		c.kdrops.note(c.oob[:oobn])
		if !sameEndpoint(from, c.raddr) {
			c.foreign.Add(1)
			continue
		}
		k, body, perr := parseDatagram(c.rbuf.b[:n])
		if perr != nil {
			c.malformed.Add(1)
			continue
		}
		switch k {
		case kindHelloAck:
			if nonceOf(body) == c.nonce {
				return helloAcked, nil
			}
		case kindCookie:
			if nonceOf(body) == c.nonce {
				*second = cookieHelloDatagram(kindHello, c.nonce, cookieOf(body))
				return helloCookie, nil
			}
		case kindData:
			c.early = n
			return helloAcked, nil
		case kindBye:
			return helloTimedOut, errListenerRefused
		}
	}
}

// startTimer arms the keepalive and idle checks.
func (c *Conn) startTimer() {
	c.timer.Reset(c.opts.KeepaliveInterval)
}

// tick sends a KEEPALIVE when nothing was sent for KeepaliveInterval,
// declares the peer gone after IdleTimeout of silence, and re-arms itself
// for whichever comes first.
//
// A silence is confirmed IdleTimeout/10 after it is first seen: a process
// that stalled (GC, descheduling) may run this timer before the reader that
// would find the peer's datagrams already queued, or before its own
// keepalives went out. A client Conn only times out while ReadFrame is
// waiting on the socket: otherwise unread datagrams may sit in the socket
// buffer, and silence cannot be told from a reader that is busy.
func (c *Conn) tick() {
	if c.closed.Load() || c.dead.Load() != nil {
		return
	}
	ka, idle := int64(c.opts.KeepaliveInterval), int64(c.opts.IdleTimeout)
	t := now()
	heard := c.lastRecvNs.Load()
	if (c.l != nil || c.reading.Load()) && t-heard >= idle {
		if c.suspect {
			c.expire()
			return
		}
		c.suspect = true
	} else {
		c.suspect = false
	}
	sent := c.lastSendNs.Load()
	if t-sent >= ka {
		c.send(keepaliveDatagram)
		sent = t
	}
	next := sent + ka
	if c.suspect {
		next = min(next, t+idle/10)
	} else if at := heard + idle; at > t && at < next {
		next = at
	}
	c.timer.Reset(time.Duration(next - t))
}

// expire ends the session after IdleTimeout of silence.
func (c *Conn) expire() {
	err := fmt.Errorf("udp: %v sent nothing for %v: %w", c.remote, c.opts.IdleTimeout, ErrIdleTimeout)
	if c.fail(err) {
		// Best effort: if the peer is alive but its datagrams are lost,
		// this tells it to stop.
		c.send(byeDatagram)
	}
}

// fail records that the session ended for reason and wakes the reader. It
// reports whether reason was the first.
func (c *Conn) fail(reason error) bool {
	if !c.dead.CompareAndSwap(nil, &reason) {
		return false
	}
	if c.l != nil {
		c.l.remove(c)
		select {
		case c.notify <- struct{}{}:
		default:
		}
	} else {
		// Unblock a ReadFrame waiting on the socket; it then reports dead.
		c.sock.pc.SetReadDeadline(aLongTimeAgo)
	}
	return true
}

// deadErr is the reason the session ended, or nil.
func (c *Conn) deadErr() error {
	if p := c.dead.Load(); p != nil {
		return *p
	}
	return nil
}

// send writes one datagram to the peer and notes the time. On a client, an
// ECONNREFUSED is the report of an ICMP port unreachable that an earlier
// datagram drew, and the kernel did not send d: it is counted
// (Stats.RefusedErrors) and d is sent once more; if that is refused too, d
// is counted again and taken as lost, as the network may lose any
// datagram, and send returns nil.
func (c *Conn) send(d []byte) error {
	c.lastSendNs.Store(now())
	err := c.sock.write(d, c.raddr, c.remote)
	if err == nil || c.l != nil || !errors.Is(err, syscall.ECONNREFUSED) {
		return err
	}
	c.refused.Add(1)
	if err = c.sock.write(d, c.raddr, c.remote); err != nil && errors.Is(err, syscall.ECONNREFUSED) {
		c.refused.Add(1)
		return nil
	}
	return err
}

// WriteFrame sends p as one DATA datagram; the network may lose it. A frame
// over MaxFrameBytes is refused with an error wrapping
// transports.ErrFrameTooLarge before anything is sent, and the Conn stays
// usable. After the peer sent BYE the error wraps ErrPeerClosed, after an
// idle timeout ErrIdleTimeout, after Close net.ErrClosed. On a client Conn
// whose socket is connected at the kernel level (a *net.UDPConn), an
// ECONNREFUSED (an ICMP port unreachable drawn by an earlier datagram) is
// not an error: it is counted in Stats.RefusedErrors and the frame is sent
// again, once (see send). It does not allocate.
func (c *Conn) WriteFrame(p []byte) error {
	if len(p) > MaxFrameBytes {
		return fmt.Errorf("udp: write frame of %d bytes: %w (max %d)", len(p), transports.ErrFrameTooLarge, MaxFrameBytes)
	}
	if c.closed.Load() {
		return errWriteClosed
	}
	if err := c.deadErr(); err != nil {
		if err == io.EOF {
			return errWritePeerClosed
		}
		return err
	}
	c.wbuf[0] = byte(kindData)
	n := copy(c.wbuf[headerBytes:], p)
	if err := c.send(c.wbuf[:headerBytes+n]); err != nil {
		if c.closed.Load() {
			return errWriteClosed
		}
		return fmt.Errorf("udp: write to %v: %w", c.remote, err)
	}
	return nil
}

// ReadFrame returns the next frame. The slice points into a buffer owned by
// the Conn and is valid until the next ReadFrame. Frames that arrived
// before the peer's BYE are returned first, then io.EOF. After IdleTimeout
// without any datagram from the peer the error wraps ErrIdleTimeout (a
// client Conn counts that time only while ReadFrame waits, since unread
// datagrams may sit in its socket); after Close it wraps net.ErrClosed.
// When ICMP reports the server's port unreachable to a client socket
// connected at the kernel level, the ECONNREFUSED is counted
// (Stats.RefusedErrors) and ReadFrame keeps waiting: it counts as no word
// from the server, so the idle timeout ends a session whose server is
// gone. Malformed datagrams, and on a client those from another source than
// the server, are skipped and counted. It does not allocate in steady
// state.
func (c *Conn) ReadFrame() ([]byte, error) {
	if c.l != nil {
		return c.readQueue()
	}
	return c.readSocket()
}

// readQueue is ReadFrame of a server Conn.
func (c *Conn) readQueue() ([]byte, error) {
	if c.cur != nil {
		putBuffer(c.cur)
		c.cur = nil
	}
	for {
		if c.closed.Load() {
			return nil, errReadClosed
		}
		// Load dead before popping: the Listener queues a frame before it
		// records a BYE, so a frame queued before the BYE is never skipped.
		dead := c.deadErr()
		c.mu.Lock()
		b := c.q.pop()
		c.mu.Unlock()
		if b != nil {
			c.cur = b
			return b.frame(), nil
		}
		if dead != nil {
			return nil, dead
		}
		select {
		case <-c.notify:
		case <-c.done:
		}
	}
}

// readSocket is ReadFrame of a client Conn.
func (c *Conn) readSocket() ([]byte, error) {
	if c.closed.Load() {
		return nil, errReadClosed
	}
	if c.early > 0 {
		n := c.early
		c.early = 0
		return c.rbuf.b[headerBytes:n], nil
	}
	// heard is false after a read that brought no word from the server
	// (an ICMP error, a datagram from another source): the idle clock,
	// lastRecvNs, then keeps running from the read before.
	for heard := true; ; {
		if err := c.deadErr(); err != nil {
			return nil, err
		}
		if heard {
			c.lastRecvNs.Store(now())
		}
		heard = true
		c.reading.Store(true)
		n, oobn, from, err := c.sock.read(c.rbuf.b[:], c.oob[:])
		c.reading.Store(false)
		if err != nil {
			if c.closed.Load() {
				return nil, errReadClosed
			}
			if err := c.deadErr(); err != nil {
				return nil, err
			}
			if errors.Is(err, syscall.ECONNREFUSED) {
				c.refused.Add(1)
				heard = false
				continue
			}
			c.fail(fmt.Errorf("udp: read from %v: %w", c.remote, err))
			return nil, c.deadErr()
		}
		c.kdrops.note(c.oob[:oobn])
		if !sameEndpoint(from, c.raddr) {
			// Only a socket that is not connected at the kernel level gets
			// these; they prove nothing about the server's liveness.
			c.foreign.Add(1)
			heard = false
			continue
		}
		k, body, perr := parseDatagram(c.rbuf.b[:n])
		if perr != nil {
			c.malformed.Add(1)
			continue
		}
		switch k {
		case kindData:
			return body, nil
		case kindBye:
			c.fail(io.EOF)
			return nil, io.EOF
		case kindHello:
			c.malformed.Add(1) // only clients send HELLO
		}
		// KEEPALIVE, or a duplicate HELLO-ACK or COOKIE: liveness only.
	}
}

// push queues a DATA datagram from the Listener; false means b was not
// taken (queue full or Conn closed) and stays the caller's.
func (c *Conn) push(b *buffer) bool {
	c.mu.Lock()
	if c.qClosed {
		c.mu.Unlock()
		return false
	}
	ok := c.q.push(b, c.opts.QueueFrames)
	c.mu.Unlock()
	if !ok {
		c.queueFull.Add(1)
		return false
	}
	select {
	case c.notify <- struct{}{}:
	default:
	}
	return true
}

// Close ends the session: it sends BYE (best effort, unless the peer has
// already gone), unblocks a pending ReadFrame, and makes later calls fail
// with an error wrapping net.ErrClosed. A client Conn closes its socket,
// which also ends a WriteFrame waiting for send-buffer space. A server Conn
// releases its share of the Listener's socket, which closes once the
// Listener and all its Conns are closed; its WriteFrame is not interrupted
// (a UDP send waits only briefly for buffer space). Calls after the first
// return nil.
func (c *Conn) Close() error {
	if !c.closed.CompareAndSwap(false, true) {
		return nil
	}
	close(c.done)
	c.timer.Stop()
	if c.dead.Load() == nil {
		c.send(byeDatagram)
	}
	if c.l == nil {
		if err := c.sock.pc.Close(); err != nil {
			return fmt.Errorf("udp: close: %w", err)
		}
		return nil
	}
	c.l.remove(c)
	c.mu.Lock()
	c.qClosed = true
	for b := c.q.pop(); b != nil; b = c.q.pop() {
		putBuffer(b)
	}
	c.mu.Unlock()
	return c.l.release()
}

// RemoteAddr is the peer's UDP address (*net.UDPAddr).
func (c *Conn) RemoteAddr() net.Addr { return c.remote }

// LocalAddr is the local UDP address: the client socket's (on a socket
// connected at the kernel level, the address the kernel chose for the
// server, as getsockname reports it), or the Listener's for a server Conn.
func (c *Conn) LocalAddr() net.Addr {
	if c.local != nil {
		return c.local
	}
	return c.sock.pc.LocalAddr()
}

// Dropped is Stats().Dropped(): datagrams this package discarded on this
// Conn's behalf (on a client, those from sources other than the server
// included).
func (c *Conn) Dropped() uint64 { return c.Stats().Dropped() }

// ReadBufferBytes returns the SO_RCVBUF size requested and the size the
// kernel reports (see Stats) for the socket this Conn reads.
func (c *Conn) ReadBufferBytes() (requested, granted int) {
	s := c.Stats()
	return s.ReadBufferRequestedBytes, s.ReadBufferGrantedBytes
}

// Stats returns a snapshot of this Conn's counters. For a server Conn,
// KernelDrops and the buffer sizes are those of the Listener's socket,
// which all its Conns share.
func (c *Conn) Stats() Stats {
	s := Stats{
		QueueFullDrops:   c.queueFull.Load(),
		UnknownPeerDrops: c.foreign.Load(),
		MalformedDrops:   c.malformed.Load(),
		RefusedErrors:    c.refused.Load(),
	}
	if c.l != nil {
		s.KernelDrops = c.l.kdrops.total.Load()
		c.l.sizes.fill(&s)
	} else {
		s.KernelDrops = c.kdrops.total.Load()
		c.sizes.fill(&s)
	}
	return s
}
