package udp

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/evbench/evbench/transports"
)

// Listener owns one unconnected packet socket (see "Sockets" in the
// package doc). Its read goroutine
// demultiplexes datagrams by source address. An address is validated by
// the cookie exchange (see "Sessions" in the package doc): a first HELLO is
// answered with a COOKIE and nothing else, and only a HELLO that echoes a
// valid cookie becomes a Conn returned by Accept. DATA goes to the inbound
// queue of its address's Conn; DATA, KEEPALIVE and BYE from an address
// without a Conn, and HELLOs with a cookie this Listener did not issue for
// that address and nonce within CookieLifetime, are dropped and counted
// (UnvalidatedDrops, the transports.AddressValidator it implements).
//
// Closing the Listener stops accepting; Conns already accepted stay open,
// as transports.Listener promises for datagram transports, and the socket
// closes when the Listener and the last of its Conns are closed.
type Listener struct {
	opts  Options
	sock  *socket
	sizes bufferSizes

	closed   atomic.Bool
	done     chan struct{} // closed by Close
	accept   chan *Conn    // established Conns waiting for Accept
	loopDone chan struct{} // closed when the read goroutine exits
	released atomic.Bool   // the socket is being closed: read errors end the read goroutine

	mu      sync.Mutex
	peers   map[netip.AddrPort]*Conn
	closing bool // set under mu by Close: no more Conns are created
	refs    int  // the open Listener, plus one per Conn not yet closed

	unknownPeer atomic.Uint64
	unvalidated atomic.Uint64
	malformed   atomic.Uint64
	backlog     atomic.Uint64
	queueFull   atomic.Uint64

	// Owned by the read goroutine.
	oob     [oobBytes]byte
	kdrops  dropCounter
	cookies *cookieJar
}

var (
	_ transports.Listener         = (*Listener)(nil)
	_ transports.AddressValidator = (*Listener)(nil)
)

var errAcceptClosed = fmt.Errorf("udp: accept: %w", net.ErrClosed)

func newListener(opts Options, sock *socket, sizes bufferSizes) *Listener {
	l := &Listener{
		opts:     opts,
		sock:     sock,
		sizes:    sizes,
		done:     make(chan struct{}),
		accept:   make(chan *Conn, opts.AcceptBacklog),
		loopDone: make(chan struct{}),
		peers:    make(map[netip.AddrPort]*Conn),
		refs:     1,
		cookies:  newCookieJar(),
	}
	go l.readLoop()
	return l
}

// Accept waits for the next Conn (a *Conn). It returns an error wrapping
// net.ErrClosed after Close and ctx.Err() when ctx is done first.
func (l *Listener) Accept(ctx context.Context) (transports.Conn, error) {
	select {
	case c := <-l.accept:
		if l.closed.Load() {
			c.Close()
			return nil, errAcceptClosed
		}
		return c, nil
	case <-l.done:
		return nil, errAcceptClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Addr is the socket's local address (*net.UDPAddr for a *net.UDPConn), the
// one clients Dial.
func (l *Listener) Addr() net.Addr { return l.sock.pc.LocalAddr() }

// Close stops accepting: Accept returns an error wrapping net.ErrClosed,
// Conns not yet accepted are closed (their clients get BYE), and a HELLO
// from a new address is answered with BYE so that its Dial fails with
// ECONNREFUSED. Accepted Conns stay open; the socket closes when the last
// of them is closed (immediately if there are none), and Close then waits
// for the read goroutine to exit. Calls after the first return nil.
func (l *Listener) Close() error {
	if !l.closed.CompareAndSwap(false, true) {
		return nil
	}
	close(l.done)
	l.mu.Lock()
	l.closing = true
	l.mu.Unlock()
	for drained := false; !drained; {
		select {
		case c := <-l.accept:
			c.Close()
		default:
			drained = true
		}
	}
	return l.release()
}

// release drops one reference to the socket and closes it with the last.
func (l *Listener) release() error {
	l.mu.Lock()
	l.refs--
	last := l.refs == 0
	l.mu.Unlock()
	if !last {
		return nil
	}
	l.released.Store(true)
	err := l.sock.pc.Close()
	<-l.loopDone
	if err != nil {
		return fmt.Errorf("udp: close: %w", err)
	}
	return nil
}

// remove forgets c's address unless it already belongs to a newer Conn.
func (l *Listener) remove(c *Conn) {
	l.mu.Lock()
	if l.peers[c.raddr] == c {
		delete(l.peers, c.raddr)
	}
	l.mu.Unlock()
}

// Dropped is Stats().Dropped(): datagrams that reached the socket and were
// discarded by this package, for every peer.
func (l *Listener) Dropped() uint64 { return l.Stats().Dropped() }

// UnvalidatedDrops is Stats().UnvalidatedDrops, the datagrams dropped
// because their source address was not validated: DATA, KEEPALIVE and BYE
// from an address without a Conn, and HELLOs whose cookie is forged,
// expired or issued for another address or nonce (RFC 9000 §8.1, RFC 6347
// §4.2.1). It implements transports.AddressValidator.
func (l *Listener) UnvalidatedDrops() uint64 { return l.unvalidated.Load() }

// ReadBufferBytes returns the SO_RCVBUF size requested and the size the
// kernel reports (see Stats.ReadBufferGrantedBytes).
func (l *Listener) ReadBufferBytes() (requested, granted int) {
	return l.sizes.readRequested, l.sizes.readGranted
}

// Stats returns a snapshot of the socket's counters, over all peers.
func (l *Listener) Stats() Stats {
	s := Stats{
		QueueFullDrops:   l.queueFull.Load(),
		UnknownPeerDrops: l.unknownPeer.Load(),
		UnvalidatedDrops: l.unvalidated.Load(),
		MalformedDrops:   l.malformed.Load(),
		BacklogDrops:     l.backlog.Load(),
		KernelDrops:      l.kdrops.total.Load(),
	}
	l.sizes.fill(&s)
	return s
}

// readLoop reads the socket until it is closed. It keeps one buffer in
// hand and takes a fresh one from the pool only when a Conn's queue took
// the last, so a steady stream of datagrams allocates nothing.
func (l *Listener) readLoop() {
	defer close(l.loopDone)
	b := getBuffer()
	defer func() { putBuffer(b) }()
	failures := 0 // consecutive read errors
	for {
		n, oobn, from, err := l.sock.read(b.b[:], l.oob[:])
		if err != nil {
			// A net.PacketConn other than *net.UDPConn may report its
			// closing with an error that does not wrap net.ErrClosed.
			if errors.Is(err, net.ErrClosed) || l.released.Load() {
				return
			}
			// An unconnected socket reports no ICMP errors on Linux;
			// anything else here is transient (e.g. ENOMEM), so keep going,
			// pausing after repeated errors (1 ms doubling up to 64 ms) so
			// that a PacketConn that keeps failing does not spin.
			if failures++; failures > 1 {
				time.Sleep(time.Millisecond << min(failures-2, 6))
			}
			continue
		}
		failures = 0
		l.kdrops.note(l.oob[:oobn])
		if !from.IsValid() {
			l.unknownPeer.Add(1) // no address to demultiplex by, or to answer
			continue
		}
		b.n = n
		if l.dispatch(b, from) {
			b = getBuffer()
		}
	}
}

// dispatch handles one datagram and reports whether a Conn kept b. Only a
// datagram from an address with a Conn (a validated address) refreshes
// that Conn's idle timer; nothing from any other address is answered but a
// HELLO, within the amplification bound (see header.go).
func (l *Listener) dispatch(b *buffer, from netip.AddrPort) bool {
	l.mu.Lock()
	c := l.peers[from]
	l.mu.Unlock()
	k, body, err := parseDatagram(b.b[:b.n])
	if err != nil {
		l.malformed.Add(1)
		if c != nil {
			c.malformed.Add(1)
		}
		return false
	}
	if k == kindHello {
		l.hello(from, c, body)
		return false
	}
	if c == nil {
		if k == kindHelloAck || k == kindCookie {
			l.malformed.Add(1) // only servers send them
		} else {
			// DATA, KEEPALIVE or BYE: a straggler of an ended session, or a
			// peer that never proved its address.
			l.unvalidated.Add(1)
		}
		return false
	}
	c.lastRecvNs.Store(now())
	switch k {
	case kindData:
		if c.push(b) {
			return true
		}
		if c.closed.Load() {
			l.unknownPeer.Add(1) // raced the Conn's Close
		} else {
			l.queueFull.Add(1)
		}
	case kindBye:
		c.fail(io.EOF)
	case kindHelloAck, kindCookie:
		// Only servers send them.
		l.malformed.Add(1)
		c.malformed.Add(1)
	}
	// KEEPALIVE: the time noted above is all it carries.
	return false
}

// hello answers a HELLO from addr, whose current Conn (if any) is c and
// whose body is the nonce and, in the second form, a cookie.
func (l *Listener) hello(addr netip.AddrPort, c *Conn, body []byte) {
	nonce := nonceOf(body)
	if c != nil && c.nonce == nonce {
		// A resend from a validated peer, of either form: our HELLO-ACK was
		// lost or is late.
		c.lastRecvNs.Store(now())
		ack := helloDatagram(kindHelloAck, nonce)
		l.sock.write(ack[:], addr, c.remote)
		return
	}
	nowMs := cookieNow()
	cookie := cookieOf(body)
	valid := cookie != nil && l.cookies.check(cookie, addr, nonce, nowMs)
	if cookie != nil && !valid {
		l.unvalidated.Add(1) // forged, expired, or for another address or nonce
	}
	if valid && c != nil {
		// The same address started a new session without BYE: the old
		// one is over.
		c.fail(io.EOF)
	}
	l.mu.Lock()
	if l.closing {
		l.mu.Unlock()
		l.sock.write(byeDatagram, addr, nil)
		return
	}
	if !valid {
		// Ask the peer to prove its address: stateless, and no larger than
		// amplificationFactor × the HELLO (see header.go). A peer whose
		// cookie was refused starts over with this one.
		l.mu.Unlock()
		var d [cookieDatagramBytes]byte
		d[0] = byte(kindCookie)
		binary.BigEndian.PutUint64(d[headerBytes:], nonce)
		l.cookies.mint(d[headerBytes+nonceBytes:], addr, nonce, nowMs)
		l.sock.write(d[:], addr, nil)
		return
	}
	nc := newServerConn(l, addr, nonce)
	select {
	case l.accept <- nc:
	default:
		l.mu.Unlock()
		nc.timer.Stop()
		l.backlog.Add(1)
		return
	}
	l.peers[addr] = nc
	l.refs++
	l.mu.Unlock()
	nc.startTimer()
	ack := helloDatagram(kindHelloAck, nonce)
	nc.send(ack[:])
}
