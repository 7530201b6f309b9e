// Package tcp moves evbench frames over TCP (RFC 9293), registered as "tcp",
// and over TLS 1.3 on TCP (RFC 8446), registered as "tcp+tls".
//
// Framing: each frame is a 4-byte big-endian length followed by that many
// bytes. The largest frame is MaxFrameBytes (16,842,752 bytes: the codec's
// 16 MiB payload limit plus 64 KiB for the frame header and names). A larger
// WriteFrame is refused with an error wrapping transports.ErrFrameTooLarge
// before any byte is written; a received length prefix over the limit is a
// protocol error wrapping the same error, after which the peer's stream
// cannot be resynchronised and the caller closes the Conn.
//
// Buffering: a Conn writes through a BufferBytes buffer and implements
// transports.Flusher. WriteFrame only fills the buffer (bytes leave when it
// is full); the writer calls Flush when its queue is empty, so a burst of
// frames costs one system call, or one TLS record per 16 KiB. Reads go
// through a BufferBytes buffer too; ReadFrame returns a slice into a reused
// buffer, valid until the next ReadFrame. Neither WriteFrame, Flush nor
// ReadFrame allocates in steady state (crypto/tls itself makes one 24-byte
// allocation per TLS read). TCP_NODELAY is on (Go's default, set explicitly
// on both ends): batching is the writer's Flush decision, not Nagle's
// algorithm. There are no write deadlines; Close is what unblocks a stuck
// write.
//
// Hostile peers: a frame whose first byte has arrived must arrive whole
// within Config.ReadTimeout (default transports.DefaultReadTimeout, 10 s),
// enforced with the connection's read deadline, which is set only while a
// frame waits for more of its bytes; ReadFrame then fails with an error
// wrapping transports.ErrReadTimeout. The wait for a frame to start is not
// bounded here (the Hub bounds idleness). A length prefix allocates
// nothing by itself: a large frame's buffer grows as its bytes arrive (see
// package lenprefix), so a peer that announces MaxFrameBytes and sends a
// few bytes costs no more than an idle connection. Close discards frames not yet flushed; for tcp+tls it
// first sends a close_notify alert unless a write is in flight, a send that
// crypto/tls bounds by 5 s against a peer that does not read.
//
// Network: a transport built by NewPlain or NewTLS reaches the network
// only through its transports.Config: the listener comes from
// Config.ListenStream and each client connection from Config.DialStream.
// A connection that is a *net.TCPConn (as the defaults give) gets
// TCP_NODELAY and, when Config.ReadBufferBytes or WriteBufferBytes is
// nonzero, SO_RCVBUF and SO_SNDBUF, on both ends; any other net.Conn (a
// wrapper, an in-memory pipe) is used through its methods only. Plain and
// TLS are the transports of the zero Config.
//
// TLS: TLS 1.3 only, ALPN (RFC 7301) "evbench", with the configurations of
// Config.ServerTLSConfig and Config.ClientTLSConfig: by default both ends
// use the process's in-memory self-signed ECDSA P-256 certificate from
// transports/internal/selfsigned. The client verifies the server's
// certificate against the host in Dial's addr unless the client TLS
// configuration names a ServerName. Dial completes the client handshake
// within its ctx. The server handshake runs in a goroutine per accepted
// connection, bounded by HandshakeTimeout and by the Listener's Close, and
// Accept only returns connections whose handshake succeeded: a slow or
// malicious client delays no one else. Connections whose handshake fails
// are closed and dropped.
package tcp

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/evbench/evbench/transports"
)

// MaxFrameBytes is the largest frame, in bytes, that a Conn writes or
// accepts: transports.MaxPayloadBytes (16 MiB) plus 64 KiB of headroom for
// the frame header and names, 16,842,752 bytes in all.
const MaxFrameBytes = transports.MaxPayloadBytes + 64<<10

// BufferBytes is the size of each Conn's read buffer and of its write
// buffer (so a Conn holds 2×BufferBytes, plus a frame buffer that grows to
// the largest frame over BufferBytes−4 it has received). Frames up to
// BufferBytes−4 bytes are read without a copy.
const BufferBytes = 32 << 10

// HandshakeTimeout bounds the server side of a TLS handshake, counted from
// the moment the TCP connection is accepted. The client side is bounded by
// the ctx passed to Dial.
const HandshakeTimeout = 30 * time.Second

// alpn is the ALPN protocol name (RFC 7301) both ends of tcp+tls offer.
const alpn = "evbench"

// Names under which the transports register.
const (
	NamePlain = "tcp"
	NameTLS   = "tcp+tls"
)

// transport is a transports.Transport over TCP, with TLS when useTLS,
// reaching the network through cfg.
type transport struct {
	name   string
	useTLS bool
	cfg    transports.Config
}

var (
	plain     = &transport{name: NamePlain}
	encrypted = &transport{name: NameTLS, useTLS: true}
)

// Plain returns the "tcp" transport of the zero transports.Config
// (NewPlain(transports.Config{})): length-prefixed frames on plain TCP.
// Caps: Reliable, ReliableControl, Ordered, MaxFrame = MaxFrameBytes.
func Plain() transports.Transport { return plain }

// TLS returns the "tcp+tls" transport of the zero transports.Config
// (NewTLS(transports.Config{})): length-prefixed frames on TLS 1.3 over
// TCP with the process's self-signed certificate. Caps: Reliable,
// ReliableControl, Ordered, Encrypted, MaxFrame = MaxFrameBytes.
func TLS() transports.Transport { return encrypted }

// NewPlain builds the "tcp" transport from cfg: it listens with
// cfg.ListenStream, dials with cfg.DialStream and requests
// cfg.ReadBufferBytes and cfg.WriteBufferBytes (0: the kernel's default) on
// every *net.TCPConn. It returns cfg.Validate's error for a Config it
// cannot use.
func NewPlain(cfg transports.Config) (transports.Transport, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", NamePlain, err)
	}
	return &transport{name: NamePlain, cfg: cfg}, nil
}

// NewTLS builds the "tcp+tls" transport from cfg: as NewPlain, with the
// server's TLS configuration from cfg.ServerTLSConfig and the client's from
// cfg.ClientTLSConfig (nil ServerTLS and ClientTLS: the process's
// self-signed certificate). It returns cfg.Validate's error for a Config it
// cannot use.
func NewTLS(cfg transports.Config) (transports.Transport, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", NameTLS, err)
	}
	return &transport{name: NameTLS, useTLS: true, cfg: cfg}, nil
}

// Name is "tcp" or "tcp+tls".
func (t *transport) Name() string { return t.name }

// Caps reports a reliable, ordered stream, encrypted for tcp+tls, whose
// frames are at most MaxFrameBytes, holding one socket on each side per
// connection.
func (t *transport) Caps() transports.Caps {
	return transports.Caps{
		Reliable:        true,
		ReliableControl: true,
		Ordered:         true,
		Encrypted:       t.useTLS,
		MaxFrame:        MaxFrameBytes,
		ClientFDs:       1,
		ServerFDs:       1,
	}
}

// Listen opens a listener on addr with the Config's ListenStream; ctx
// bounds only the bind. For tcp+tls, the server TLS configuration is
// prepared here.
func (t *transport) Listen(ctx context.Context, addr string) (transports.Listener, error) {
	var tlsCfg *tls.Config
	if t.useTLS {
		var err error
		if tlsCfg, err = t.cfg.ServerTLSConfig(alpn); err != nil {
			return nil, fmt.Errorf("%s: listen %s: %w", t.name, addr, err)
		}
	}
	ln, err := t.cfg.ListenStream(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", t.name, err)
	}
	return newListener(t.name, ln, tlsCfg, t.cfg), nil
}

// Dial connects to addr with the Config's DialStream and, for tcp+tls,
// completes the TLS handshake, verifying the server's certificate against
// the client TLS configuration's ServerName or, when it sets none, the host
// in addr. ctx bounds the connection and the handshake; the Conn outlives
// it.
func (t *transport) Dial(ctx context.Context, addr string) (transports.Conn, error) {
	var tlsCfg *tls.Config
	if t.useTLS {
		var err error
		if tlsCfg, err = t.cfg.ClientTLSConfig(alpn); err != nil {
			return nil, fmt.Errorf("%s: dial %s: %w", t.name, addr, err)
		}
		if tlsCfg.ServerName == "" {
			host, _, err := net.SplitHostPort(addr)
			if err != nil {
				return nil, fmt.Errorf("%s: dial %s: %w", t.name, addr, err)
			}
			tlsCfg.ServerName = host
		}
	}
	nc, err := t.cfg.DialStream(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", t.name, err)
	}
	if err := tune(nc, t.cfg); err != nil {
		nc.Close()
		return nil, fmt.Errorf("%s: dial %s: %w", t.name, addr, err)
	}
	if tlsCfg != nil {
		tc := tls.Client(nc, tlsCfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			nc.Close()
			return nil, fmt.Errorf("%s: dial %s: %w", t.name, addr, err)
		}
		nc = tc
	}
	return newConn(t.name, nc, t.cfg.FrameReadTimeout()), nil
}

// tune prepares a new connection of either end: for a *net.TCPConn,
// TCP_NODELAY on (Go's default, set here to be explicit) and the socket
// buffer sizes cfg asks for. Any other net.Conn is left as it is.
func tune(nc net.Conn, cfg transports.Config) error {
	tc, ok := nc.(*net.TCPConn)
	if !ok {
		return nil
	}
	if err := tc.SetNoDelay(true); err != nil {
		return err
	}
	return cfg.ApplyBuffers(tc)
}

// accepted is what the accept loop and the handshake goroutines hand to
// Accept: a ready Conn, or an error from the underlying Accept.
type accepted struct {
	c   *conn
	err error
}

// listener accepts TCP connections in one goroutine (acceptLoop) and, for
// TLS, handshakes each in a goroutine of its own; ready Conns meet Accept
// callers on an unbuffered channel, so none is left behind in a queue.
type listener struct {
	name   string
	ln     net.Listener
	tlsCfg *tls.Config       // nil for plain TCP
	cfg    transports.Config // for tune

	ready chan accepted
	done  chan struct{} // closed by Close

	// hsCtx is cancelled by Close to abort server handshakes in progress.
	hsCtx    context.Context
	hsCancel context.CancelFunc

	wg        sync.WaitGroup // acceptLoop and handshake goroutines
	closeOnce sync.Once
	closeErr  error
}

func newListener(name string, ln net.Listener, tlsCfg *tls.Config, cfg transports.Config) *listener {
	l := &listener{
		name:   name,
		ln:     ln,
		tlsCfg: tlsCfg,
		cfg:    cfg,
		ready:  make(chan accepted),
		done:   make(chan struct{}),
	}
	l.hsCtx, l.hsCancel = context.WithCancel(context.Background())
	l.wg.Add(1)
	go l.acceptLoop()
	return l
}

// acceptLoop accepts TCP connections until Close. An Accept error other
// than the listener being closed (for example EMFILE, too many open files)
// is handed to one Accept caller, and the loop continues, paced by callers.
func (l *listener) acceptLoop() {
	defer l.wg.Done()
	for {
		nc, err := l.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if !l.deliver(accepted{err: fmt.Errorf("%s: %w", l.name, err)}) {
				return
			}
			continue
		}
		if err := tune(nc, l.cfg); err != nil {
			nc.Close()
			continue
		}
		if l.tlsCfg == nil {
			if !l.deliver(accepted{c: newConn(l.name, nc, l.cfg.FrameReadTimeout())}) {
				return
			}
			continue
		}
		l.wg.Add(1)
		go l.handshake(nc)
	}
}

// handshake runs the server TLS handshake on nc, bounded by
// HandshakeTimeout and Close, and delivers the Conn if it succeeds.
func (l *listener) handshake(nc net.Conn) {
	defer l.wg.Done()
	tc := tls.Server(nc, l.tlsCfg)
	ctx, cancel := context.WithTimeout(l.hsCtx, HandshakeTimeout)
	err := tc.HandshakeContext(ctx)
	cancel()
	if err != nil {
		nc.Close()
		return
	}
	l.deliver(accepted{c: newConn(l.name, tc, l.cfg.FrameReadTimeout())})
}

// deliver hands a to an Accept caller, or closes its Conn and reports false
// once the listener is closed.
func (l *listener) deliver(a accepted) bool {
	select {
	case l.ready <- a:
		return true
	case <-l.done:
		if a.c != nil {
			a.c.Close()
		}
		return false
	}
}

// Accept waits for the next connection (for tcp+tls, the next whose
// handshake succeeded). It returns ctx.Err() when ctx is done, an error
// wrapping net.ErrClosed after Close, and otherwise an error from the
// operating system's accept, such as EMFILE, after which Accept may be
// called again.
func (l *listener) Accept(ctx context.Context) (transports.Conn, error) {
	select {
	case <-l.done:
		return nil, l.closedErr()
	default:
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	select {
	case a := <-l.ready:
		if a.err != nil {
			return nil, a.err
		}
		return a.c, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-l.done:
		return nil, l.closedErr()
	}
}

// Addr is the bound TCP address, to be passed to Dial.
func (l *listener) Addr() net.Addr { return l.ln.Addr() }

// Close stops accepting, aborts server handshakes in progress, closes
// connections that no Accept took, and waits for the listener's goroutines
// to end. Accepted Conns stay open. Calls after the first return nil.
func (l *listener) Close() error {
	l.closeOnce.Do(func() {
		close(l.done)
		l.hsCancel()
		if err := l.ln.Close(); err != nil {
			l.closeErr = fmt.Errorf("%s: %w", l.name, err)
		}
		l.wg.Wait()
	})
	return l.closeErr
}

func (l *listener) closedErr() error {
	return fmt.Errorf("%s: accept on %v: %w", l.name, l.ln.Addr(), net.ErrClosed)
}
