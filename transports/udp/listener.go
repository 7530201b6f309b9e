package udp

import (
	"context"
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
// demultiplexes datagrams by source address: a HELLO from a new address
// becomes a Conn returned by Accept, DATA goes to the inbound queue of its
// address's Conn, and DATA from an address without a Conn is dropped and
// counted.
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
	malformed   atomic.Uint64
	backlog     atomic.Uint64
	queueFull   atomic.Uint64

	// Owned by the read goroutine.
	oob    [oobBytes]byte
	kdrops dropCounter
}

var _ transports.Listener = (*Listener)(nil)

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

// dispatch handles one datagram and reports whether a Conn kept b.
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
	if c != nil {
		c.lastRecvNs.Store(now())
	}
	switch k {
	case kindData:
		if c == nil {
			l.unknownPeer.Add(1)
			return false
		}
		if c.push(b) {
			return true
		}
		if c.closed.Load() {
			l.unknownPeer.Add(1)
		} else {
			l.queueFull.Add(1)
		}
	case kindHello:
		l.hello(from, c, nonceOf(body))
	case kindBye:
		if c != nil {
			c.fail(io.EOF)
		}
	case kindHelloAck:
		// Only servers send HELLO-ACK.
		l.malformed.Add(1)
		if c != nil {
			c.malformed.Add(1)
		}
	}
	// KEEPALIVE: the time noted above is all it carries. A KEEPALIVE or
	// BYE from an unknown address is a straggler of an ended session.
	return false
}

// hello answers a HELLO from addr, whose current Conn (if any) is c.
func (l *Listener) hello(addr netip.AddrPort, c *Conn, nonce uint64) {
	if c != nil {
		if c.nonce == nonce {
			// A resend: our HELLO-ACK was lost or is late.
			ack := helloDatagram(kindHelloAck, nonce)
			l.sock.write(ack[:], addr, c.remote)
			return
		}
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
