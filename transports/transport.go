// Package transports holds evbench's event protocol, written once: the event
// model and its versioned binary codec (frame.go), the Hub that routes events
// through namespaces and rooms (hub.go), the Client (client.go), and the
// Transport interface behind which each way of moving frames (TCP, UDP,
// WebSocket, QUIC) lives in a package of its own.
//
// A Transport moves opaque frames between one client and the server; it knows
// nothing about rooms or events. Implementations are registered by name with
// Register; package transports/all registers every one of them.
package transports

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
)

// Caps states what a Transport promises. The conformance suite in
// transports/transporttest checks each promise.
type Caps struct {
	// Reliable is true when every event frame written is delivered unless
	// the connection fails (TCP, TLS, WebSocket, QUIC streams).
	Reliable bool
	// ReliableControl is true when frames written with WriteFrame are
	// delivered reliably and in order even where events are not: only a
	// DatagramConn's WriteDatagram may lose a frame (quic-dgram). Then the
	// Client sends HELLO, JOIN, LEAVE and PING once instead of re-sending
	// them until acknowledged. True for every transport but udp.
	ReliableControl bool
	// Ordered is true when frames arrive in the order they were written.
	Ordered bool
	// Encrypted is true when frames travel under TLS 1.3 (tcp+tls, wss, QUIC).
	Encrypted bool
	// Datagram is true when frames (udp) or event frames (quic-dgram,
	// through DatagramConn) travel as datagrams that the network may drop,
	// duplicate or reorder.
	Datagram bool
	// MaxFrame is the largest frame, in bytes, that WriteFrame accepts; a
	// larger frame is an error wrapping ErrFrameTooLarge, never a truncation.
	MaxFrame int
	// ClientFDs is how many file descriptors one Dial holds while its Conn
	// is open (its socket: 1 for every built-in transport).
	ClientFDs int
	// ServerFDs is how many file descriptors the server side holds per
	// accepted connection, beyond the Listener's own: 1 for a transport
	// with a socket per connection (tcp, tcp+tls, ws, wss), 0 when one
	// socket serves every peer (udp, quic, quic-dgram). bench's
	// TestFDsPerConnection checks ClientFDs and ServerFDs by counting.
	ServerFDs int
}

// Transport is one way of moving frames. Implementations are safe for
// concurrent use.
type Transport interface {
	// Name is the registry name: "tcp", "tcp+tls", "udp", "ws", "wss",
	// "quic" or "quic-dgram".
	Name() string
	// Caps states the transport's promises and limits.
	Caps() Caps
	// Listen starts a server on addr ("127.0.0.1:0" picks a free port).
	Listen(ctx context.Context, addr string) (Listener, error)
	// Dial connects to a Listener's address. ctx bounds the connection
	// set-up only (including any TLS handshake), not the Conn's lifetime.
	Dial(ctx context.Context, addr string) (Conn, error)
}

// Listener accepts Conns. A datagram Listener demultiplexes one socket into
// one Conn per peer.
type Listener interface {
	// Accept waits for the next Conn. It returns an error wrapping
	// net.ErrClosed after Close, and ctx.Err() when ctx is done.
	Accept(ctx context.Context) (Conn, error)
	// Addr is the address clients Dial.
	Addr() net.Addr
	// Close stops accepting and unblocks Accept. Conns already accepted stay
	// open until they are closed themselves.
	Close() error
}

// Conn carries frames between one client and the server. It follows the
// net.Conn contract where it can:
//
//   - WriteFrame may be called by one goroutine at a time (one writer per
//     connection) and ReadFrame by one goroutine at a time; a reader and a
//     writer may run concurrently. The Hub and the Client keep this
//     discipline; transporttest.CheckSingleWriter detects a breach.
//   - Close may be called at any time, more than once, from any goroutine;
//     it unblocks a pending ReadFrame and WriteFrame, which then return an
//     error for which errors.Is(err, net.ErrClosed) holds. (One exception,
//     documented in package udp: a server-side udp Conn shares the
//     listener's socket, so its Close cannot interrupt a send the kernel is
//     holding; such sends wait only briefly.)
//   - Frames are opaque bytes; a frame larger than Caps().MaxFrame is
//     rejected with an error wrapping ErrFrameTooLarge and the connection
//     stays usable.
type Conn interface {
	// WriteFrame sends one frame. A datagram transport may lose it. The
	// caller may reuse p once WriteFrame returns.
	WriteFrame(p []byte) error
	// ReadFrame returns the next frame; the slice is valid until the next
	// ReadFrame call.
	ReadFrame() ([]byte, error)
	// Close releases the connection and unblocks readers and writers.
	Close() error
	// RemoteAddr is the peer's address.
	RemoteAddr() net.Addr
}

// Flusher is implemented by Conns that buffer writes (tcp, tcp+tls). A
// writer that knows its queue is empty calls Flush; a Conn without Flusher
// sends each frame as it is written.
type Flusher interface {
	Flush() error
}

// AddressValidator is implemented by a Listener that proves a peer owns its
// source address before it makes a Conn for it, and drops what arrives from
// an address not yet proven (udp's cookie exchange, after QUIC's address
// validation, RFC 9000 §8.1). Hub.Serve adds UnvalidatedDrops, the number
// of such datagrams dropped since the Listener opened, to
// HubStats.UnvalidatedDrops.
type AddressValidator interface {
	UnvalidatedDrops() uint64
}

// ErrFrameTooLarge is wrapped by errors for frames over a transport's or the
// codec's size limit.
var ErrFrameTooLarge = errors.New("frame too large")

// Flush flushes c if it buffers writes, and does nothing otherwise.
func Flush(c Conn) error {
	if f, ok := c.(Flusher); ok {
		return f.Flush()
	}
	return nil
}

var registry = struct {
	sync.RWMutex
	m     map[string]Constructor
	names []string // in registration order
}{m: map[string]Constructor{}}

// Register makes the transport that newT builds available under name. Names
// lists transports in the order they were registered (package
// transports/all registers the built-in ones in the order reports list
// them). It panics on a duplicate name, which is a programming error in the
// list of transports.
func Register(name string, newT Constructor) {
	registry.Lock()
	defer registry.Unlock()
	if _, dup := registry.m[name]; dup {
		panic("transports: Register called twice for " + name)
	}
	registry.m[name] = newT
	registry.names = append(registry.names, name)
}

// New builds the transport registered under name from cfg. It returns an
// error naming the registered transports for an unknown name, and the
// constructor's error for a Config it cannot use.
func New(name string, cfg Config) (Transport, error) {
	registry.RLock()
	newT, ok := registry.m[name]
	if !ok {
		defer registry.RUnlock()
		return nil, fmt.Errorf("unknown transport %q (known: %s)", name, strings.Join(registry.names, ", "))
	}
	registry.RUnlock()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return newT(cfg)
}

// Lookup is New(name, Config{}): the transport as it runs on loopback in
// one process.
func Lookup(name string) (Transport, error) { return New(name, Config{}) }

// Names lists the registered transports in registration order. The caller
// may modify the slice.
func Names() []string {
	registry.RLock()
	defer registry.RUnlock()
	return slices.Clone(registry.names)
}
