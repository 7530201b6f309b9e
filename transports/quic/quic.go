// Package quic carries evbench frames over QUIC (RFC 9000) with quic-go, in
// two ways registered as two transports:
//
//   - "quic" (NameStream; Stream, NewStream): one QUIC connection per client
//     and one bidirectional stream, opened by the client, that carries every
//     frame in both directions. Each frame is a 4-byte big-endian length
//     followed by that many bytes. Writes are buffered; Flush
//     (transports.Flusher) sends them.
//   - "quic-dgram" (NameDatagram; Datagram, NewDatagram): the same
//     connection and stream, on which WriteFrame sends every frame (reliable
//     and ordered), plus WriteDatagram (transports.DatagramConn), which sends
//     one frame as a QUIC DATAGRAM frame (RFC 9221), never retransmitted. The
//     Hub and the Client send EVENT and EMIT frames through WriteDatagram
//     (transports.WriteEvent); the transport never looks inside a frame.
//
// Both use TLS 1.3 and ALPN "evbench" (RFC 7301).
//
// # Network
//
// A transport built by NewStream or NewDatagram reaches the network only
// through its transports.Config; Stream and Datagram are the transports of
// the zero Config:
//
//   - Sockets: the Listener's UDP socket comes from Config.OpenPacket(ctx,
//     "udp", addr), and each Dial's from Config.OpenPacket(ctx, "udp",
//     local), where local is "127.0.0.1:0" or "[::1]:0" when the server's
//     address is an IPv4 or IPv6 loopback address and ":0" otherwise. The
//     socket is handed to a quic-go Transport, which upgrades a
//     *net.UDPConn itself (batch reads and writes, GSO, ECN, path MTU
//     discovery) and uses any other net.PacketConn through ReadFrom and
//     WriteTo, with path MTU discovery only when it also has SyscallConn
//     (for the don't-fragment bit). A Dial's socket belongs to its Conn; the
//     Listener's is closed once the Listener and every Conn it returned are
//     closed.
//   - TLS: the server's configuration is Config.ServerTLSConfig(ALPN) and
//     the clients' Config.ClientTLSConfig(ALPN): by default the process's
//     in-memory self-signed certificate (transports/internal/selfsigned) on
//     both ends. The client verifies the server's certificate against the
//     host of Dial's addr (a name, or an IP address) unless the client
//     configuration names a ServerName.
//   - Socket buffers: quic-go asks for 7 MiB of SO_RCVBUF and SO_SNDBUF on
//     every socket with SetReadBuffer and SetWriteBuffer methods (a
//     *net.UDPConn), raising smaller buffers and keeping larger ones. A
//     nonzero Config.ReadBufferBytes or WriteBufferBytes replaces that
//     choice, larger or smaller: it is requested once quic-go has set its
//     own (on the Listener's socket before Listen returns, on a Dial's
//     right after the handshake), and the kernel may grant less (Linux caps
//     it at net.core.rmem_max and wmem_max). Zero keeps quic-go's. A socket
//     without these methods keeps the buffers it has.
//
// # Connection set-up
//
// A QUIC stream becomes visible to the peer only once data is sent on it, so
// Dial writes a 1-byte preamble on the stream it opens: 'S' for "quic" and
// 'D' for "quic-dgram". The server's Accept consumes it, so frames start
// right after it; a connection whose stream or preamble is missing within
// SetupTimeout (HandshakeIdleTimeout, 5 s, after the handshake) or whose
// preamble names the other transport is closed with application error
// code 1 and never returned by Accept. Each incoming connection is set up
// in a goroutine of its own, so one slow client does not hold up Accept
// for the others.
//
// # Hostile peers
//
// A frame on the stream whose first byte has arrived must arrive whole
// within Config.ReadTimeout (default transports.DefaultReadTimeout, 10 s),
// enforced with the stream's read deadline, set only while a frame waits
// for more of its bytes; ReadFrame then fails with an error wrapping
// transports.ErrReadTimeout and the connection is closed with application
// error code 2. The wait for a frame to start is not bounded here. A
// length prefix allocates nothing by itself: a large frame's buffer grows
// as its bytes arrive (package lenprefix). quic-dgram's stream carries
// frames of at most DatagramMaxFrameBytes, read within its fixed buffer,
// and its datagrams are at most what one packet holds, allocated by
// quic-go as they arrive.
//
// # quic-go configuration
//
// Both ends use the quic-go Config returned by Config: HandshakeIdleTimeout
// 5 s (quic-go's default, set explicitly), MaxIdleTimeout 30 s,
// KeepAlivePeriod 5 s, EnableDatagrams only for "quic-dgram". Everything
// else is quic-go's default and nothing is disabled: flow-control windows of
// 512 KiB growing to 6 MiB per stream and 15 MiB per connection, 100
// incoming streams of each kind, path MTU discovery on (where the socket
// allows it), an initial packet size of 1280 bytes (falling back to 1200
// where the path refuses 1280), quic-go's default congestion control.
//
// # Closing
//
// Close finishes like a TCP close when no write is in progress: it sends
// what is buffered and the stream's FIN, and waits up to LingerTimeout for
// the peer, whose reader closes the connection (application error code 0)
// when it reads the FIN, so frames written before Close are delivered; then
// it closes the connection with code 0 ("bye"). While a write is in progress
// (a peer that does not read holds it in flow control) Close closes at once.
// A read ended by the peer's Close wraps io.EOF; every operation after Close
// wraps net.ErrClosed.
//
// Where quic-go cannot raise a socket's buffers (a socket without
// SetReadBuffer, such as a wrapper, or a kernel limit) it logs one warning
// per process (set QUIC_GO_DISABLE_RECEIVE_BUFFER_WARNING=true to silence
// it); that is quic-go's own once-only log line.
package quic

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	quicgo "github.com/quic-go/quic-go"

	"github.com/evbench/evbench/transports"
)

// ALPN is the application protocol (RFC 7301) both ends negotiate.
const ALPN = "evbench"

// Names under which the transports register (package transports/all).
const (
	// NameStream is the name of the "quic" transport: every frame on one
	// QUIC stream per client.
	NameStream = "quic"
	// NameDatagram is the name of the "quic-dgram" transport: WriteFrame on
	// the stream, WriteDatagram as QUIC DATAGRAM frames.
	NameDatagram = "quic-dgram"
)

// Limits and timeouts of both transports.
const (
	// StreamMaxFrameBytes is Caps().MaxFrame of "quic", in bytes: the
	// largest event payload plus 64 KiB for its header and names.
	StreamMaxFrameBytes = transports.MaxPayloadBytes + 64<<10

	// DatagramMaxFrameBytes is Caps().MaxFrame of "quic-dgram", in bytes:
	// the largest frame that WriteDatagram sends as one QUIC DATAGRAM
	// frame, and, so that one limit covers both ways of writing, the
	// largest that WriteFrame accepts. It is the payload limit quic-go's
	// SendDatagram reports (in a DatagramTooLargeError) at its initial
	// packet size of 1280 bytes, on IPv4 and IPv6 alike: 1280 minus 1 byte
	// of short header, 20 of connection ID (the longest allowed; quic-go's
	// own are 4) and 16 of AEAD tag; TestDatagramLimit measures it. Path
	// MTU discovery may later raise quic-go's limit; evbench does not use
	// the extra room, so results do not depend on when discovery finished.
	// On a path that forces quic-go's 1200-byte fallback the limit is 80
	// bytes lower, and WriteDatagram reports the larger frames with
	// ErrFrameTooLarge rather than dropping them.
	DatagramMaxFrameBytes = 1243

	// HandshakeIdleTimeout bounds the QUIC handshake's silences (quic-go
	// aborts a handshake after twice this in total).
	HandshakeIdleTimeout = 5 * time.Second
	// MaxIdleTimeout closes a connection that has received nothing for this
	// long; the smaller of both ends' values applies.
	MaxIdleTimeout = 30 * time.Second
	// KeepAlivePeriod is how often an idle connection sends a PING frame, so
	// that idle clients are not timed out.
	KeepAlivePeriod = 5 * time.Second
	// LingerTimeout bounds how long Close waits for the peer to confirm
	// that it has read everything (see Conn.Close).
	LingerTimeout = 500 * time.Millisecond
	// SetupTimeout bounds how long the server waits, after the handshake,
	// for a client's stream and its preamble before it closes the
	// connection (application error code 1): HandshakeIdleTimeout, the
	// longest silence quic-go allows a handshake, since opening the stream
	// is the last step of setting a connection up. Without it a peer that
	// completes the handshake and says nothing more would be kept: quic-go
	// answers the server's keep-alive PINGs by itself, so MaxIdleTimeout
	// never fires. Each connection waits in a goroutine of its own, so
	// one that waits holds up no other's Accept.
	SetupTimeout = HandshakeIdleTimeout
)

// Preamble bytes written by Dial as the first byte of the stream.
const (
	preambleStream   byte = 'S'
	preambleDatagram byte = 'D'
)

// Application error codes sent in CONNECTION_CLOSE.
const (
	codeBye     quicgo.ApplicationErrorCode = 0 // Close
	codeSetup   quicgo.ApplicationErrorCode = 1 // missing or wrong preamble
	codeFraming quicgo.ApplicationErrorCode = 2 // a stream that cannot be parsed

	streamCodeBye quicgo.StreamErrorCode = 0 // STOP_SENDING from Close
)

// Stream returns the "quic" transport of the zero transports.Config
// (NewStream(transports.Config{})): every frame on one bidirectional QUIC
// stream per client, length-prefixed, with buffered writes (its Conns
// implement transports.Flusher). Caps: Reliable, ReliableControl, Ordered,
// Encrypted, MaxFrame = StreamMaxFrameBytes.
func Stream() transports.Transport { return &transport{} }

// Datagram returns the "quic-dgram" transport of the zero transports.Config
// (NewDatagram(transports.Config{})). Its Conns implement
// transports.DatagramConn: WriteFrame sends every frame on one
// bidirectional stream per client, length-prefixed, reliable and in order;
// WriteDatagram sends one frame as a QUIC DATAGRAM frame (RFC 9221), which
// is never retransmitted; ReadFrame returns frames of both kinds in the
// order they reach this package. Caps: ReliableControl (WriteFrame), not
// Reliable and not Ordered (WriteDatagram's frames may be lost, and overtake
// or fall behind the stream's), Datagram, Encrypted, MaxFrame =
// DatagramMaxFrameBytes.
//
// WriteFrame of a frame over DatagramMaxFrameBytes returns an error wrapping
// transports.ErrFrameTooLarge, as transports.Caps requires of MaxFrame,
// although the stream could carry larger frames; the protocol's control
// frames are at most a few hundred bytes.
//
// Where datagrams are lost besides the network: quic-go queues at most 32
// outgoing datagrams per connection, and WriteDatagram blocks (it does not
// drop) while that queue is full, so a sender is paced by quic-go's
// congestion control; quic-go discards a queued datagram that no longer fits
// a packet if the packet size shrinks. On receipt, quic-go queues at most
// 128 datagrams per connection and silently discards arrivals while its
// queue is full; this package moves them into a 16-frame channel read by
// ReadFrame, so a reader that falls more than about 144 frames behind loses
// events. The protocol above counts such losses by sequence number.
func Datagram() transports.Transport { return &transport{dgram: true} }

// NewStream builds the "quic" transport (see Stream) from cfg: sockets from
// cfg.OpenPacket, TLS from cfg.ServerTLSConfig and cfg.ClientTLSConfig,
// socket buffers from cfg.ReadBufferBytes and cfg.WriteBufferBytes (see the
// package documentation); cfg's Dial and Listen are not used. It returns an
// error for a Config it cannot use: one that cfg.Validate refuses, or a
// ServerTLS or ClientTLS whose MaxVersion is below TLS 1.3, which QUIC
// requires (RFC 9001).
func NewStream(cfg transports.Config) (transports.Transport, error) {
	return newTransport(cfg, false)
}

// NewDatagram builds the "quic-dgram" transport (see Datagram) from cfg, as
// NewStream does, with the same checks of cfg.
func NewDatagram(cfg transports.Config) (transports.Transport, error) {
	return newTransport(cfg, true)
}

func newTransport(cfg transports.Config, dgram bool) (*transport, error) {
	t := &transport{dgram: dgram, cfg: cfg}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", t.Name(), err)
	}
	for _, c := range []struct {
		field string
		conf  *tls.Config
	}{{"ServerTLS", cfg.ServerTLS}, {"ClientTLS", cfg.ClientTLS}} {
		if c.conf != nil && c.conf.MaxVersion != 0 && c.conf.MaxVersion < tls.VersionTLS13 {
			return nil, fmt.Errorf("%s: transport config: %s.MaxVersion is %s, but QUIC requires TLS 1.3",
				t.Name(), c.field, tls.VersionName(c.conf.MaxVersion))
		}
	}
	return t, nil
}

// Config returns the quic-go configuration both ends use; datagrams sets
// EnableDatagrams (RFC 9221). See the package documentation for the values.
func Config(datagrams bool) *quicgo.Config {
	return &quicgo.Config{
		HandshakeIdleTimeout: HandshakeIdleTimeout,
		MaxIdleTimeout:       MaxIdleTimeout,
		KeepAlivePeriod:      KeepAlivePeriod,
		EnableDatagrams:      datagrams,
	}
}

// transport is "quic", or "quic-dgram" when dgram, reaching the network
// through cfg.
type transport struct {
	dgram bool
	cfg   transports.Config

	// Test hooks, zero in the transports this package returns:
	// setupTimeout replaces SetupTimeout when positive, and wrapStream,
	// when set, wraps what a Conn reads its stream through.
	setupTimeout time.Duration
	wrapStream   func(io.Reader) io.Reader
}

var _ transports.Transport = (*transport)(nil)

// Name is NameStream or NameDatagram.
func (t *transport) Name() string {
	if t.dgram {
		return NameDatagram
	}
	return NameStream
}

// Caps reports, for "quic", a reliable, ordered, encrypted stream, and for
// "quic-dgram" an encrypted connection whose WriteFrame is reliable and
// ordered (ReliableControl) and whose WriteDatagram may lose frames
// (Datagram; neither Reliable nor Ordered). Each Dial holds its own UDP
// socket; the Listener's one socket serves every peer.
func (t *transport) Caps() transports.Caps {
	if t.dgram {
		return transports.Caps{ReliableControl: true, Encrypted: true, Datagram: true, MaxFrame: DatagramMaxFrameBytes, ClientFDs: 1, ServerFDs: 0}
	}
	return transports.Caps{Reliable: true, ReliableControl: true, Ordered: true, Encrypted: true, MaxFrame: StreamMaxFrameBytes, ClientFDs: 1, ServerFDs: 0}
}

func (t *transport) preamble() byte {
	if t.dgram {
		return preambleDatagram
	}
	return preambleStream
}

// conn is what newConn returns: a Conn that can also be aborted.
type conn interface {
	transports.Conn
	abort()
}

// newConn wraps an established connection and its stream. release is called
// once, after the connection is closed.
func (t *transport) newConn(qc *quicgo.Conn, st *quicgo.Stream, release func()) conn {
	b := newBase(qc, st, release)
	var src io.Reader = st
	if t.wrapStream != nil {
		src = t.wrapStream(st)
	}
	if t.dgram {
		return newDgramConn(b, src, t.cfg.FrameReadTimeout())
	}
	return newStreamConn(b, src, t.cfg.FrameReadTimeout())
}

// Dial connects to a "quic" or "quic-dgram" Listener at addr. The local UDP
// socket comes from the Config's OpenPacket, bound to the loopback address
// of the same family when addr is a loopback address and to ":0" otherwise;
// it belongs to the Conn and is closed with it. ctx bounds the opening of
// the socket, the handshake and the opening of the stream.
func (t *transport) Dial(ctx context.Context, addr string) (transports.Conn, error) {
	raddr, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s dial %s: %w", t.Name(), addr, err)
	}
	local := ":0"
	if raddr.IP.IsLoopback() {
		local = "[::1]:0"
		if raddr.IP.To4() != nil {
			local = "127.0.0.1:0"
		}
	}
	tlsConf, err := t.cfg.ClientTLSConfig(ALPN)
	if err != nil {
		return nil, fmt.Errorf("%s dial %s: %w", t.Name(), addr, err)
	}
	if host, _, err := net.SplitHostPort(addr); err == nil && tlsConf.ServerName == "" && net.ParseIP(host) == nil {
		// quic-go would verify the resolved IP address instead.
		tlsConf.ServerName = host
	}
	pc, err := t.openPacket(ctx, local)
	if err != nil {
		return nil, fmt.Errorf("%s dial %s: %w", t.Name(), addr, err)
	}
	tr := &quicgo.Transport{Conn: pc}
	release := func() {
		tr.Close()
		pc.Close()
	}
	qc, err := tr.Dial(ctx, raddr, tlsConf, Config(t.dgram))
	if err != nil {
		release()
		return nil, fmt.Errorf("%s dial %s: %w", t.Name(), addr, err)
	}
	// After the handshake: quic-go has set its own buffers by now.
	if err := t.cfg.ApplyBuffers(pc); err != nil {
		qc.CloseWithError(codeSetup, "socket set-up failed")
		release()
		return nil, fmt.Errorf("%s dial %s: %w", t.Name(), addr, err)
	}
	st, err := qc.OpenStreamSync(ctx)
	if err == nil {
		_, err = st.Write([]byte{t.preamble()})
	}
	if err != nil {
		qc.CloseWithError(codeSetup, "stream set-up failed")
		release()
		return nil, fmt.Errorf("%s dial %s: opening the stream: %w", t.Name(), addr, err)
	}
	return t.newConn(qc, st, release), nil
}

// Listen opens a UDP socket on addr with the Config's OpenPacket and accepts
// QUIC connections on it. Closing the Listener stops the QUIC listener at
// once; the socket itself is closed once the Listener and every Conn it
// returned are closed, because closing it earlier would cut accepted Conns
// off without a CONNECTION_CLOSE. ctx bounds only the opening of the socket.
func (t *transport) Listen(ctx context.Context, addr string) (transports.Listener, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	tlsConf, err := t.cfg.ServerTLSConfig(ALPN)
	if err != nil {
		return nil, fmt.Errorf("%s listen %s: %w", t.Name(), addr, err)
	}
	pc, err := t.openPacket(ctx, addr)
	if err != nil {
		return nil, fmt.Errorf("%s listen %s: %w", t.Name(), addr, err)
	}
	tr := &quicgo.Transport{Conn: pc}
	ln, err := tr.Listen(tlsConf, Config(t.dgram))
	if err == nil {
		// quic-go has set its own buffers in Listen; these replace them.
		if err = t.cfg.ApplyBuffers(pc); err != nil {
			ln.Close()
		}
	}
	if err != nil {
		tr.Close()
		pc.Close()
		return nil, fmt.Errorf("%s listen %s: %w", t.Name(), addr, err)
	}
	lctx, cancel := context.WithCancel(context.Background())
	l := &listener{
		t:      t,
		pc:     pc,
		tr:     tr,
		ln:     ln,
		ctx:    lctx,
		cancel: cancel,
		conns:  make(chan transports.Conn),
		refs:   1,
	}
	l.wg.Add(1)
	go l.acceptLoop()
	return l, nil
}

// openPacket opens a UDP socket bound to addr with the Config's
// OpenPacket.
func (t *transport) openPacket(ctx context.Context, addr string) (net.PacketConn, error) {
	pc, err := t.cfg.OpenPacket(ctx, "udp", addr)
	if err != nil {
		return nil, err
	}
	if pc == nil {
		return nil, errors.New("transport config: ListenPacket returned neither a socket nor an error")
	}
	return pc, nil
}

// listener hands connections that completed their set-up to Accept.
type listener struct {
	t      *transport
	pc     net.PacketConn
	tr     *quicgo.Transport
	ln     *quicgo.Listener
	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	conns  chan transports.Conn
	wg     sync.WaitGroup // acceptLoop and the set-up goroutines

	closeOnce sync.Once
	mu        sync.Mutex
	refs      int // 1 for the listener, plus one per connection not yet closed
}

func (l *listener) acceptLoop() {
	defer l.wg.Done()
	for {
		// Not l.ctx: after Close, quic-go hands out what is already queued
		// and then fails; setUp closes those connections.
		qc, err := l.ln.Accept(context.Background())
		if err != nil {
			return
		}
		l.mu.Lock()
		l.refs++
		l.mu.Unlock()
		l.wg.Add(1)
		go l.setUp(qc)
	}
}

// setUp accepts qc's stream and preamble and hands the Conn to Accept.
func (l *listener) setUp(qc *quicgo.Conn) {
	defer l.wg.Done()
	timeout := SetupTimeout
	if l.t.setupTimeout > 0 {
		timeout = l.t.setupTimeout
	}
	ctx, cancel := context.WithTimeout(l.ctx, timeout)
	defer cancel()
	aborted := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(aborted)
		qc.CloseWithError(codeSetup, "stream set-up timed out or listener closed")
	})
	st, err := qc.AcceptStream(ctx)
	if err == nil {
		err = readPreamble(st, l.t.preamble())
	}
	if !stop() {
		<-aborted
		l.release()
		return
	}
	if err != nil {
		qc.CloseWithError(codeSetup, "stream set-up failed")
		l.release()
		return
	}
	c := l.t.newConn(qc, st, l.release)
	select {
	case l.conns <- c:
	case <-l.ctx.Done():
		c.abort()
	}
}

// readPreamble reads the 1-byte preamble a client sends first on its
// stream and checks that it is want: 'S' for "quic", 'D' for "quic-dgram".
// It reads exactly one byte, so frames start right after it; a stream that
// ends first is io.ErrUnexpectedEOF (io.EOF for an empty stream).
func readPreamble(r io.Reader, want byte) error {
	var pre [1]byte
	if _, err := io.ReadFull(r, pre[:]); err != nil {
		return fmt.Errorf("preamble: %w", err)
	}
	if pre[0] != want {
		return fmt.Errorf("preamble %q is not %q", pre[0], want)
	}
	return nil
}

// release drops one reference; the last one closes the socket.
func (l *listener) release() {
	l.mu.Lock()
	l.refs--
	last := l.refs == 0
	l.mu.Unlock()
	if last {
		l.tr.Close()
		l.pc.Close()
	}
}

// Accept returns the next client whose stream and preamble have arrived. It
// returns an error wrapping net.ErrClosed after Close and ctx.Err() when ctx
// is done.
func (l *listener) Accept(ctx context.Context) (transports.Conn, error) {
	select {
	case <-l.ctx.Done():
		return nil, fmt.Errorf("%s accept: %w", l.t.Name(), net.ErrClosed)
	default:
	}
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.ctx.Done():
		return nil, fmt.Errorf("%s accept: %w", l.t.Name(), net.ErrClosed)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Addr is the UDP address clients Dial.
func (l *listener) Addr() net.Addr { return l.pc.LocalAddr() }

// Close stops accepting, closes connections not yet returned by Accept and
// unblocks Accept. Accepted Conns stay open. It waits for the listener's
// goroutines and may be called more than once.
func (l *listener) Close() error {
	l.closeOnce.Do(func() {
		l.cancel()
		l.ln.Close()
		l.wg.Wait()
		l.release()
	})
	return nil
}

// base holds what both kinds of Conn share: the QUIC connection, its
// stream, a lifetime context cancelled by Close, the graceful close, and
// error mapping.
type base struct {
	qc     *quicgo.Conn
	st     *quicgo.Stream
	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	// wmu is held by every write to st (WriteFrame, Flush) and by Close
	// while it finishes the stream, which quic-go forbids concurrently with
	// a Write. It is uncontended in steady state: one writer at a time.
	wmu     sync.Mutex
	flush   func() error // writes out buffered frames; nil when writes are not buffered
	release func()
	once    sync.Once
}

func newBase(qc *quicgo.Conn, st *quicgo.Stream, release func()) *base {
	ctx, cancel := context.WithCancel(context.Background())
	return &base{qc: qc, st: st, ctx: ctx, cancel: cancel, release: release}
}

// Close ends the Conn; later calls do nothing and return nil. It unblocks a
// pending ReadFrame at once (cancelling the stream's read side, RFC 9000
// STOP_SENDING) and a pending WriteFrame or Flush by closing the
// connection.
//
// When no write is in progress, Close first finishes gracefully, like a TCP
// close: it sends what is buffered and the stream's FIN, and waits up to
// LingerTimeout for the peer, whose reader closes the connection when it
// reads the FIN, so frames written before Close arrive. Then, or when a
// write was in progress, it closes the connection with application error
// code 0 ("bye"), which discards anything still unsent, and frees the
// socket.
func (b *base) Close() error {
	b.close(true)
	return nil
}

// abort closes the Conn at once, without lingering; the Listener uses it
// for a Conn that Accept never returned.
func (b *base) abort() { b.close(false) }

func (b *base) close(graceful bool) {
	b.once.Do(func() {
		b.cancel()
		b.st.CancelRead(streamCodeBye)
		if graceful && b.wmu.TryLock() {
			b.linger()
			b.wmu.Unlock()
		}
		b.qc.CloseWithError(codeBye, "bye")
		b.release()
	})
}

// linger sends the buffered frames and the FIN and waits, at most
// LingerTimeout in all, for the peer to close the connection. b.wmu is held.
func (b *base) linger() {
	deadline := time.Now().Add(LingerTimeout)
	b.st.SetWriteDeadline(deadline)
	if b.flush != nil {
		b.flush()
	}
	b.st.Close()
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-b.qc.Context().Done():
	case <-t.C:
	}
}

// streamEnded is called by the stream's reader when reading fails. Unless
// Close caused it, the connection is closed: with code 0 after the peer's
// FIN (the peer is closing and waits for this), with codeFraming when the
// stream cannot be parsed. On a connection that is already closed it does
// nothing.
func (b *base) streamEnded(err error) {
	if b.ctx.Err() != nil {
		return
	}
	if errors.Is(err, io.EOF) {
		b.qc.CloseWithError(codeBye, "bye")
		return
	}
	if errors.Is(err, transports.ErrReadTimeout) {
		b.qc.CloseWithError(codeFraming, "frame not completed within the read timeout")
		return
	}
	b.qc.CloseWithError(codeFraming, "stream ended inside a frame or held a frame over the limit")
}

// RemoteAddr is the peer's UDP address.
func (b *base) RemoteAddr() net.Addr { return b.qc.RemoteAddr() }

// wrap maps an error of op ("read" or "write"): after Close it wraps
// net.ErrClosed; a read ended by the peer's Close (its FIN, or a
// CONNECTION_CLOSE with code 0) wraps io.EOF; anything else is wrapped as it
// is.
func (b *base) wrap(op string, err error) error {
	if b.ctx.Err() != nil {
		return fmt.Errorf("quic %s: %w", op, net.ErrClosed)
	}
	if op == "read" {
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("quic read: the peer closed the connection: %w", err)
		}
		if ae, ok := errors.AsType[*quicgo.ApplicationError](err); ok && ae.Remote && ae.ErrorCode == codeBye {
			return fmt.Errorf("quic read: the peer closed the connection (%w): %w", err, io.EOF)
		}
	}
	return fmt.Errorf("quic %s: %w", op, err)
}

// tooLarge is the error for a frame of n bytes over max.
func tooLarge(what string, n, max int) error {
	return fmt.Errorf("quic: %s of %d bytes: %w (max %d)", what, n, transports.ErrFrameTooLarge, max)
}
