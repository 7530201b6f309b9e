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
// algorithm. There are no per-write deadlines; Close is what unblocks a
// stuck read or write. Close discards frames not yet flushed; for tcp+tls it
// first sends a close_notify alert unless a write is in flight, a send that
// crypto/tls bounds by 5 s against a peer that does not read.
//
// TLS: both ends use the process's shared self-signed ECDSA P-256
// certificate from transports/internal/selfsigned, TLS 1.3 only, ALPN
// (RFC 7301) "evbench". Dial completes the client handshake within its ctx.
// The server handshake runs in a goroutine per accepted connection, bounded
// by HandshakeTimeout and by the Listener's Close, and Accept only returns
// connections whose handshake succeeded: a slow or malicious client delays
// no one else. Connections whose handshake fails are closed and dropped.
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
	"github.com/evbench/evbench/transports/internal/selfsigned"
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

// transport is a transports.Transport over TCP, with TLS when useTLS.
type transport struct {
	name   string
	useTLS bool
}

var (
	plain     = &transport{name: NamePlain}
	encrypted = &transport{name: NameTLS, useTLS: true}
)

// Plain returns the "tcp" transport: length-prefixed frames on plain TCP.
// Caps: Reliable, Ordered, MaxFrame = MaxFrameBytes.
func Plain() transports.Transport { return plain }

// TLS returns the "tcp+tls" transport: length-prefixed frames on TLS 1.3
// over TCP. Caps: Reliable, Ordered, Encrypted, MaxFrame = MaxFrameBytes.
func TLS() transports.Transport { return encrypted }

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

// Listen binds a TCP listener on addr; ctx bounds only the bind. For
// tcp+tls, the server TLS configuration is prepared here.
func (t *transport) Listen(ctx context.Context, addr string) (transports.Listener, error) {
	var tlsCfg *tls.Config
	if t.useTLS {
		var err error
		if tlsCfg, err = selfsigned.ServerConfig(alpn); err != nil {
			return nil, fmt.Errorf("%s: listen %s: %w", t.name, addr, err)
		}
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", t.name, err)
	}
	return newListener(t.name, ln, tlsCfg), nil
}

// Dial connects to addr and, for tcp+tls, completes the TLS handshake,
// verifying the shared self-signed certificate against the host in addr.
// ctx bounds the connection and the handshake; the Conn outlives it.
func (t *transport) Dial(ctx context.Context, addr string) (transports.Conn, error) {
	var nc net.Conn
	var err error
	if t.useTLS {
		var cfg *tls.Config
		if cfg, err = selfsigned.ClientConfig(alpn); err != nil {
			return nil, fmt.Errorf("%s: dial %s: %w", t.name, addr, err)
		}
		// tls.Dialer sets ServerName from addr and runs HandshakeContext(ctx).
		d := tls.Dialer{Config: cfg}
		nc, err = d.DialContext(ctx, "tcp", addr)
		if err == nil {
			err = setNoDelay(nc.(*tls.Conn).NetConn())
		}
	} else {
		var d net.Dialer
		nc, err = d.DialContext(ctx, "tcp", addr)
		if err == nil {
			err = setNoDelay(nc)
		}
	}
	if err != nil {
		if nc != nil {
			nc.Close()
		}
		return nil, fmt.Errorf("%s: %w", t.name, err)
	}
	return newConn(t.name, nc), nil
}

// setNoDelay turns TCP_NODELAY on (Go's default, set here to be explicit).
func setNoDelay(nc net.Conn) error {
	if tc, ok := nc.(*net.TCPConn); ok {
		return tc.SetNoDelay(true)
	}
	return nil
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
	tlsCfg *tls.Config // nil for plain TCP

	ready chan accepted
	done  chan struct{} // closed by Close

	// hsCtx is cancelled by Close to abort server handshakes in progress.
	hsCtx    context.Context
	hsCancel context.CancelFunc

	wg        sync.WaitGroup // acceptLoop and handshake goroutines
	closeOnce sync.Once
	closeErr  error
}

func newListener(name string, ln net.Listener, tlsCfg *tls.Config) *listener {
	l := &listener{
		name:   name,
		ln:     ln,
		tlsCfg: tlsCfg,
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
		if err := setNoDelay(nc); err != nil {
			nc.Close()
			continue
		}
		if l.tlsCfg == nil {
			if !l.deliver(accepted{c: newConn(l.name, nc)}) {
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
	l.deliver(accepted{c: newConn(l.name, tc)})
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

// NewPlain builds the "tcp" transport from cfg.
func NewPlain(cfg transports.Config) (transports.Transport, error) { return plain, nil }

// NewTLS builds the "tcp+tls" transport from cfg.
func NewTLS(cfg transports.Config) (transports.Transport, error) { return encrypted, nil }
