// Package ws implements the "ws" and "wss" transports: each evbench frame
// travels as one binary WebSocket message (RFC 6455 §5.6) over HTTP/1.1,
// using github.com/coder/websocket. "wss" runs the same protocol over TLS 1.3
// (ALPN "http/1.1", RFC 7301).
//
// Network: a transport built by NewPlain or NewTLS reaches the network
// only through its transports.Config: the HTTP server's listener comes from
// Config.ListenStream, the client's HTTP connection from Config.DialStream,
// and the TLS configurations of wss from Config.ServerTLSConfig and
// Config.ClientTLSConfig (by default both ends use the process's in-memory
// self-signed certificate from transports/internal/selfsigned; the client
// verifies it against the host in Dial's addr unless the client TLS
// configuration names a ServerName). When the TCP connection under a Conn is
// a *net.TCPConn (as the defaults give), it gets the socket buffer sizes
// Config.ReadBufferBytes and WriteBufferBytes ask for, on both ends; any
// other net.Conn is used through its methods only. Plain and TLS are the
// transports of the zero Config.
//
// Both sides disable permessage-deflate (RFC 7692) and set the read limit
// explicitly to MaxFrame, so coder/websocket's default 32 KiB limit never
// applies. The hot path allocates nothing of its own in steady state:
// ReadFrame reads into a buffer reused by the Conn, and WriteFrame passes
// context.Background() to coder/websocket, which then arms no timer and no
// context.AfterFunc per message (evbench case C13). Under wss, crypto/tls
// itself allocates 16 bytes per TLS record it reads (Go 1.26).
//
// Conn.Close sends a close frame and waits at most CloseTimeout for the
// peer's, or closes at once when a WriteFrame is in progress; see
// Conn.Close.
package ws

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptrace"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/evbench/evbench/transports"
)

// Names under which the transports register (transports.Register).
const (
	// NamePlain is the name of WebSocket over plain TCP (Plain, NewPlain).
	NamePlain = "ws"
	// NameTLS is the name of WebSocket over TLS 1.3 (TLS, NewTLS).
	NameTLS = "wss"
)

// Path is the HTTP path on which a Listener accepts WebSocket handshakes;
// any other path gets 404 Not Found.
const Path = "/evbench"

// MaxFrame is the largest frame, in bytes, that a Conn writes or reads: the
// codec's largest payload plus 64 KiB for the event's names and fixed
// fields. It is both Caps().MaxFrame and the read limit given to
// coder/websocket's SetReadLimit.
const MaxFrame = transports.MaxPayloadBytes + 64<<10

// CloseTimeout bounds Conn.Close: the time it waits for the peer's answer
// in the WebSocket closing handshake (RFC 6455 §7.1.2) before it closes the
// TCP connection without waiting further.
const CloseTimeout = time.Second

// HandshakeTimeout bounds, on the server, each HTTP request on a new
// connection before it is upgraded (for wss the TLS handshake as well):
// its header (http.Server.ReadHeaderTimeout), the whole request with any
// body (ReadTimeout), and the wait for another request after one that was
// not an upgrade (IdleTimeout). So the time from the TCP accept to a
// completed upgrade is bounded per request, and a peer that connects and
// never upgrades, or trickles a body, is closed. net/http clears these
// deadlines when the connection is hijacked for the WebSocket. 5 s, as
// quic-go's handshake idle timeout and the Hub's wait for a HELLO.
const HandshakeTimeout = 5 * time.Second

// RetainBytes is the largest read buffer, in bytes (1 MiB), that a Conn
// keeps for the next message: a larger one, grown for one large message,
// is dropped when the next ReadFrame starts, so that it does not pin its
// memory for the connection's life.
const RetainBytes = 1 << 20

// ErrAbnormalClosure is wrapped by ReadFrame's error when the peer's TCP
// connection ended without a WebSocket close frame: the status RFC 6455
// §7.1.5 calls 1006, which is never sent on the wire. Unlike a clean close
// (1000 or 1001, io.EOF) it is a failure of the connection.
var ErrAbnormalClosure = errors.New("connection closed without a close frame (status 1006, RFC 6455 §7.1.5)")

// minReadBufBytes is the initial size of a Conn's read buffer, and
// maxReadBufBytes its largest: coder/websocket hands over up to MaxFrame+1
// bytes of a message before its read limit fails, and the last byte of
// room lets the read that hits the limit return coder/websocket's error
// (which sends close status 1009) instead of a full buffer.
const (
	minReadBufBytes = 4 << 10
	maxReadBufBytes = MaxFrame + 2
)

// alpn is the ALPN protocol (RFC 7301) both ends of wss offer: the
// WebSocket handshake is an HTTP/1.1 upgrade.
const alpn = "http/1.1"

var (
	plain     = &transport{name: NamePlain}
	encrypted = &transport{name: NameTLS, tls: true}
)

// Plain returns the "ws" transport of the zero transports.Config
// (NewPlain(transports.Config{})): WebSocket over plain TCP. Caps:
// Reliable, ReliableControl, Ordered, MaxFrame.
func Plain() transports.Transport { return plain }

// TLS returns the "wss" transport of the zero transports.Config
// (NewTLS(transports.Config{})): WebSocket over TLS 1.3 (ALPN "http/1.1",
// RFC 7301) with the process's self-signed certificate from
// transports/internal/selfsigned. Caps: Reliable, ReliableControl, Ordered,
// Encrypted, MaxFrame.
func TLS() transports.Transport { return encrypted }

// NewPlain builds the "ws" transport from cfg: its server listens with
// cfg.ListenStream, its clients dial with cfg.DialStream, and every
// *net.TCPConn under a Conn gets cfg.ReadBufferBytes and
// cfg.WriteBufferBytes (0: the kernel's default). It returns cfg.Validate's
// error for a Config it cannot use.
func NewPlain(cfg transports.Config) (transports.Transport, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", NamePlain, err)
	}
	return &transport{name: NamePlain, cfg: cfg}, nil
}

// NewTLS builds the "wss" transport from cfg: as NewPlain, with the
// server's TLS configuration from cfg.ServerTLSConfig and the client's from
// cfg.ClientTLSConfig (nil ServerTLS and ClientTLS: the process's
// self-signed certificate). It returns cfg.Validate's error for a Config it
// cannot use.
func NewTLS(cfg transports.Config) (transports.Transport, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", NameTLS, err)
	}
	return &transport{name: NameTLS, tls: true, cfg: cfg}, nil
}

type transport struct {
	name string
	tls  bool
	cfg  transports.Config

	// handshakeTimeout replaces HandshakeTimeout when positive (a test
	// hook; zero in the transports this package returns).
	handshakeTimeout time.Duration
}

var _ transports.Transport = (*transport)(nil)

func (t *transport) Name() string { return t.name }

// Caps reports a reliable, ordered stream, encrypted for wss, whose frames
// are at most MaxFrame, holding one TCP socket on each side per connection.
func (t *transport) Caps() transports.Caps {
	return transports.Caps{Reliable: true, ReliableControl: true, Ordered: true, Encrypted: t.tls, MaxFrame: MaxFrame, ClientFDs: 1, ServerFDs: 1}
}

// http1Only is the protocol set of both the server and the client: the
// WebSocket handshake of RFC 6455 is an HTTP/1.1 upgrade.
func http1Only() *http.Protocols {
	p := new(http.Protocols)
	p.SetHTTP1(true)
	return p
}

// rawConnKey is the request-context key under which the server stores the
// TCP connection a request arrived on.
type rawConnKey struct{}

// Listen starts an HTTP/1.1 server (HTTPS for wss) on a listener from the
// Config's ListenStream on addr, upgrading requests for Path to WebSocket
// connections. ctx bounds the bind only.
func (t *transport) Listen(ctx context.Context, addr string) (transports.Listener, error) {
	var tlsConf *tls.Config
	if t.tls {
		var err error
		if tlsConf, err = t.cfg.ServerTLSConfig(alpn); err != nil {
			return nil, fmt.Errorf("%s: listen: %w", t.name, err)
		}
	}
	ln, err := t.cfg.ListenStream(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s: listen: %w", t.name, err)
	}
	ln = &frameListener{Listener: ln, timeout: t.cfg.FrameReadTimeout()}
	l := &listener{
		name:      t.name,
		ln:        ln,
		cfg:       t.cfg,
		conns:     make(chan *conn),
		done:      make(chan struct{}),
		serveDone: make(chan struct{}),
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+Path, l.upgrade)
	hs := HandshakeTimeout
	if t.handshakeTimeout > 0 {
		hs = t.handshakeTimeout
	}
	l.srv = &http.Server{
		Handler:           mux,
		TLSConfig:         tlsConf,
		Protocols:         http1Only(),
		ReadHeaderTimeout: hs,
		ReadTimeout:       hs,
		IdleTimeout:       hs,
		// A benchmark's stderr is for its results; failed handshakes show
		// up as Dial errors on the client side.
		ErrorLog: log.New(io.Discard, "", 0),
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, rawConnKey{}, c)
		},
	}
	go func() {
		defer close(l.serveDone)
		if t.tls {
			l.serveErr = l.srv.ServeTLS(ln, "", "")
		} else {
			l.serveErr = l.srv.Serve(ln)
		}
	}()
	return l, nil
}

// listener hands the Conns made by its HTTP handler to Accept.
type listener struct {
	name      string
	ln        net.Listener
	cfg       transports.Config // socket buffer sizes for upgraded conns
	srv       *http.Server
	conns     chan *conn    // unbuffered: a handler waits until Accept takes its conn
	done      chan struct{} // closed by Close
	closeOnce sync.Once
	serveDone chan struct{} // closed when srv.Serve has returned
	serveErr  error         // why srv.Serve returned; read after serveDone
}

var _ transports.Listener = (*listener)(nil)

// upgrade is the HTTP handler for Path. coder/websocket's Conn lives on the
// hijacked connection, and this handler returns only once that Conn is
// closed, so the server's per-connection goroutine ends with it.
func (l *listener) upgrade(w http.ResponseWriter, r *http.Request) {
	nc, _ := r.Context().Value(rawConnKey{}).(net.Conn)
	fc := unwrapFrameConn(nc)
	if fc == nil {
		http.Error(w, "no connection in request context", http.StatusInternalServerError)
		return
	}
	raw := fc.Conn
	if err := l.cfg.ApplyBuffers(raw); err != nil {
		http.Error(w, "socket buffers: "+err.Error(), http.StatusInternalServerError)
		return
	}
	ws, err := websocket.Accept(noEOFHijacker{w}, r, &websocket.AcceptOptions{
		CompressionMode: websocket.CompressionDisabled,
		OnPingReceived:  fc.onPing,
		OnPongReceived:  fc.onPong,
	})
	if err != nil {
		return // Accept has written the HTTP error response
	}
	c := newConn(ws, fc)
	select {
	case l.conns <- c:
	case <-l.done:
		c.shutdown(websocket.StatusGoingAway, 0)
		return
	}
	<-c.done
}

// Accept returns the next upgraded connection. It returns an error wrapping
// net.ErrClosed after Close, the HTTP server's error if it stopped for
// another reason (its TCP listener failed), and ctx.Err() when ctx is done
// first.
func (l *listener) Accept(ctx context.Context) (transports.Conn, error) {
	select {
	case <-l.done:
		return nil, fmt.Errorf("%s: accept: %w", l.name, net.ErrClosed)
	default:
	}
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, fmt.Errorf("%s: accept: %w", l.name, net.ErrClosed)
	case <-l.serveDone:
		select {
		case <-l.done:
			return nil, fmt.Errorf("%s: accept: %w", l.name, net.ErrClosed)
		default:
			return nil, fmt.Errorf("%s: accept: server stopped: %w", l.name, l.serveErr)
		}
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Addr is the TCP address the server listens on.
func (l *listener) Addr() net.Addr { return l.ln.Addr() }

// Close stops the HTTP server, unblocks Accept and closes upgraded
// connections that Accept has not returned yet. Conns already accepted stay
// open until they are closed themselves. Close is idempotent and returns nil
// after the first call.
func (l *listener) Close() error {
	var err error
	l.closeOnce.Do(func() {
		close(l.done)
		err = l.srv.Close()
		<-l.serveDone
		if err != nil {
			err = fmt.Errorf("%s: close listener: %w", l.name, err)
		}
	})
	return err
}

// Dial connects to a Listener at addr ("host:port") with an HTTP/1.1
// upgrade request for Path (over TLS 1.3 for wss), on a connection from the
// Config's DialStream. ctx bounds the TCP connect, the TLS handshake and the
// WebSocket handshake, not the Conn.
func (t *transport) Dial(ctx context.Context, addr string) (transports.Conn, error) {
	timeout := t.cfg.FrameReadTimeout()
	ht := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			nc, err := t.cfg.DialStream(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return newFrameConn(nc, timeout), nil
		},
		Protocols:          http1Only(),
		DisableCompression: true,
	}
	scheme := "ws"
	if t.tls {
		conf, err := t.cfg.ClientTLSConfig(alpn)
		if err != nil {
			return nil, fmt.Errorf("%s: dial %s: %w", t.name, addr, err)
		}
		ht.TLSClientConfig = conf
		scheme = "wss"
	}
	// The transport is this Conn's alone: once the upgrade has succeeded the
	// Conn owns the connection, and nothing is left in the pool.
	defer ht.CloseIdleConnections()

	var fc atomic.Pointer[frameConn]
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		GotConn: func(info httptrace.GotConnInfo) { fc.Store(unwrapFrameConn(info.Conn)) },
	})
	// The callbacks run only once the upgrade is done, after GotConn.
	ws, _, err := websocket.Dial(ctx, scheme+"://"+addr+Path, &websocket.DialOptions{
		HTTPClient:      &http.Client{Transport: ht},
		CompressionMode: websocket.CompressionDisabled,
		OnPingReceived:  func(ctx context.Context, p []byte) bool { return fc.Load().onPing(ctx, p) },
		OnPongReceived:  func(ctx context.Context, p []byte) { fc.Load().onPong(ctx, p) },
	})
	if err != nil {
		return nil, fmt.Errorf("%s: dial %s: %w", t.name, addr, err)
	}
	f := fc.Load()
	if f == nil {
		ws.CloseNow()
		return nil, fmt.Errorf("%s: dial %s: the HTTP client reported no connection", t.name, addr)
	}
	if err := t.cfg.ApplyBuffers(f.Conn); err != nil {
		ws.CloseNow()
		return nil, fmt.Errorf("%s: dial %s: %w", t.name, addr, err)
	}
	return newConn(ws, f), nil
}

// conn is one WebSocket connection carrying one frame per binary message.
type conn struct {
	ws     *websocket.Conn
	raw    *frameConn // the TCP connection under ws (and under TLS for wss)
	remote net.Addr

	// Read side, owned by the one goroutine in ReadFrame.
	buf     []byte // reused for every message; grows up to maxReadBufBytes
	readErr error  // sticky: once set, every later ReadFrame returns it

	// closeCode is the status Close sends; the reader sets it to
	// StatusUnsupportedData after a text message.
	closeCode atomic.Int32
	closing   atomic.Bool // set by Close: errors become net.ErrClosed
	writing   atomic.Bool // a WriteFrame is in coder/websocket's Write
	closeOnce sync.Once
	done      chan struct{} // closed once the connection is released
}

var _ transports.Conn = (*conn)(nil)

func newConn(ws *websocket.Conn, raw *frameConn) *conn {
	ws.SetReadLimit(MaxFrame)
	raw.activate()
	c := &conn{ws: ws, raw: raw, remote: raw.RemoteAddr(), done: make(chan struct{})}
	c.closeCode.Store(int32(websocket.StatusNormalClosure))
	return c
}

var errClosed = fmt.Errorf("ws: use of closed connection: %w", net.ErrClosed)

// WriteFrame sends p as one binary message (RFC 6455 §5.6), unmasked from
// the server and masked from the client as §5.3 requires. A frame over
// MaxFrame bytes is an error wrapping transports.ErrFrameTooLarge and sends
// nothing. WriteFrame blocks until the message is handed to the kernel; it
// arms no timer, so a peer that stops reading blocks it until Close.
func (c *conn) WriteFrame(p []byte) error {
	if len(p) > MaxFrame {
		return fmt.Errorf("ws: write %d bytes (max %d): %w", len(p), MaxFrame, transports.ErrFrameTooLarge)
	}
	// writing is set before closing is checked, and Close sets closing
	// before it checks writing, so at least one of them sees the other.
	c.writing.Store(true)
	defer c.writing.Store(false)
	if c.closing.Load() {
		return errClosed
	}
	if err := c.ws.Write(context.Background(), websocket.MessageBinary, p); err != nil {
		if c.closing.Load() {
			return errClosed
		}
		return fmt.Errorf("ws: write: %w", err)
	}
	return nil
}

// ReadFrame returns the payload of the next binary message, in a buffer the
// Conn reuses: the slice is valid until the next ReadFrame. The buffer
// starts at 4 KiB and doubles only when it is full of the message's bytes
// (coder/websocket hands a payload over as it arrives), so a header
// announcing a large message allocates nothing by itself; a buffer over
// RetainBytes is dropped when the next ReadFrame starts. Errors:
//   - a message over MaxFrame bytes wraps transports.ErrFrameTooLarge;
//     coder/websocket has then sent close status 1009 (message too big) and
//     the connection is unusable. A peer closing with status 1009 is reported
//     the same way.
//   - a peer's close with status 1000 or 1001 wraps io.EOF;
//   - the end of the TCP connection without a close frame (status 1006)
//     wraps ErrAbnormalClosure, and neither io.EOF nor net.ErrClosed;
//   - a text message is a protocol error: evbench frames are binary;
//   - a frame whose first byte has arrived but which is not complete within
//     the transport's Config.ReadTimeout (default
//     transports.DefaultReadTimeout) wraps transports.ErrReadTimeout; the
//     wait for a message to start is not bounded (see frameConn for how
//     and what this costs);
//   - after Close, errors wrap net.ErrClosed.
//
// Every error is final: later calls return the same error, or one wrapping
// net.ErrClosed after Close.
func (c *conn) ReadFrame() ([]byte, error) {
	if c.closing.Load() {
		return nil, errClosed
	}
	if c.readErr != nil {
		return nil, c.readErr
	}
	p, err := c.readMessage()
	if err != nil {
		if c.closing.Load() {
			return nil, errClosed
		}
		c.readErr = err
		return nil, err
	}
	return p, nil
}

func (c *conn) readMessage() ([]byte, error) {
	if len(c.buf) > RetainBytes {
		c.buf = nil // the last message's slice is no longer the caller's
	}
	typ, r, err := c.ws.Reader(context.Background())
	if err != nil {
		return nil, c.classify(err)
	}
	c.raw.messageStarted()
	if typ != websocket.MessageBinary {
		c.closeCode.Store(int32(websocket.StatusUnsupportedData))
		return nil, fmt.Errorf("ws: read: got a %v message, want binary (RFC 6455 §5.6)", typ)
	}
	n := 0
	for {
		if n == len(c.buf) {
			if n >= maxReadBufBytes {
				// Unreachable while coder/websocket enforces its read
				// limit; kept so that this loop is bounded regardless.
				c.closeCode.Store(int32(websocket.StatusMessageTooBig))
				return nil, fmt.Errorf("ws: read: message over %d bytes: %w", MaxFrame, transports.ErrFrameTooLarge)
			}
			c.grow(n)
		}
		m, err := r.Read(c.buf[n:])
		n += m
		if err == io.EOF {
			c.raw.frameDone()
			return c.buf[:n], nil
		}
		if err != nil {
			return nil, c.classify(err)
		}
	}
}

// grow doubles the read buffer, keeping its first n bytes, up to
// maxReadBufBytes.
func (c *conn) grow(n int) {
	size := min(max(2*len(c.buf), minReadBufBytes), maxReadBufBytes)
	b := make([]byte, size)
	copy(b, c.buf[:n])
	c.buf = b
}

// classify wraps a coder/websocket read error in the error evbench checks
// for: ErrFrameTooLarge, io.EOF, ErrAbnormalClosure,
// transports.ErrReadTimeout, or the original error.
func (c *conn) classify(err error) error {
	switch {
	case c.raw.timedOut.Load():
		return fmt.Errorf("ws: read: %w (%v): %w", transports.ErrReadTimeout, c.raw.timeout, err)
	case errors.Is(err, websocket.ErrMessageTooBig):
		return fmt.Errorf("ws: read: message over %d bytes: %w", MaxFrame, errors.Join(transports.ErrFrameTooLarge, err))
	case websocket.CloseStatus(err) == websocket.StatusMessageTooBig:
		return fmt.Errorf("ws: read: peer closed, our message was too big: %w", errors.Join(transports.ErrFrameTooLarge, err))
	case websocket.CloseStatus(err) == websocket.StatusNormalClosure,
		websocket.CloseStatus(err) == websocket.StatusGoingAway:
		return fmt.Errorf("ws: read: peer closed (%v): %w", err, io.EOF)
	case websocket.CloseStatus(err) == -1 && (errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)):
		// %v, not %w: the end of stream here is no clean end.
		return fmt.Errorf("ws: read: %w (%v)", ErrAbnormalClosure, err)
	default:
		return fmt.Errorf("ws: read: %w", err)
	}
}

// Close performs the WebSocket closing handshake (RFC 6455 §7.1.2) with
// status 1000 (1003 after a text message was read): it sends a close frame
// and waits at most CloseTimeout for the peer's answering one, then closes
// the TCP connection. A peer that is reading answers within a round trip,
// and sees io.EOF; a peer that is not makes Close take CloseTimeout. When a
// WriteFrame is in progress, Close skips the handshake, which would have to
// wait for that write (possibly stalled by a peer that does not read), and
// closes the TCP connection at once, like coder/websocket's CloseNow; the
// frame being written may then arrive cut short, as an error, at the peer.
//
// Pending and later ReadFrame and WriteFrame calls return errors wrapping
// net.ErrClosed. Close may be called from any goroutine, any number of
// times; it always returns nil, since the peer's conduct during the
// handshake is not the caller's error. Callers closing many Conns whose
// peers may not be reading should close them concurrently.
func (c *conn) Close() error {
	c.closing.Store(true)
	wait := CloseTimeout
	if c.writing.Load() {
		wait = 0
	}
	c.shutdown(websocket.StatusCode(c.closeCode.Load()), wait)
	return nil
}

// shutdown closes the connection once: with the closing handshake when wait
// is positive, bounded by wait, and without it otherwise.
func (c *conn) shutdown(code websocket.StatusCode, wait time.Duration) {
	c.closeOnce.Do(func() {
		defer close(c.done)
		if wait <= 0 {
			_ = c.ws.CloseNow()
			return
		}
		finished := make(chan struct{})
		go func() {
			defer close(finished)
			_ = c.ws.Close(code, "")
		}()
		t := time.NewTimer(wait)
		defer t.Stop()
		select {
		case <-finished:
		case <-t.C:
			// Closing the TCP connection fails every read and write that
			// ws.Close is waiting for, so it returns promptly.
			_ = c.raw.Close()
			<-finished
		}
	})
	<-c.done
}

// RemoteAddr is the peer's TCP address.
func (c *conn) RemoteAddr() net.Addr { return c.remote }
