package transports

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/evbench/evbench/transports/internal/selfsigned"
)

// Config is what a transport is built from: how it reaches the network.
// The zero value is loopback as the kernel gives it, with the process's
// in-memory self-signed certificate on both ends. A wrapper (network
// conditions), another network namespace or a shard's source address plugs
// in here, with no change to the transport, the Hub or the Client.
type Config struct {
	// Dial opens a stream connection for a client of tcp, tcp+tls, ws or
	// wss; network is "tcp". Default: a zero net.Dialer's DialContext.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Listen opens the stream listener of a tcp, tcp+tls, ws or wss
	// server; network is "tcp". Default: a zero net.ListenConfig's Listen.
	Listen func(ctx context.Context, network, addr string) (net.Listener, error)
	// ListenPacket opens the packet socket of udp, quic and quic-dgram, for
	// a server (addr is the address to serve) and for each client (addr is
	// the local address to bind, such as ":0"); network is "udp". The
	// transport upgrades a *net.UDPConn by type assertion (kernel drop
	// counters, a connected client socket, quic-go's batch I/O); any other
	// net.PacketConn is used through its methods only. Default: a zero
	// net.ListenConfig's ListenPacket.
	ListenPacket func(ctx context.Context, network, addr string) (net.PacketConn, error)

	// ServerTLS is the server's TLS configuration for tcp+tls, wss and
	// QUIC; it must hold a certificate. The transport clones it, requires
	// TLS 1.3 and sets its own ALPN protocol (RFC 7301). Default: the
	// process's in-memory self-signed ECDSA P-256 certificate, valid for
	// 127.0.0.1, ::1 and localhost.
	ServerTLS *tls.Config
	// ClientTLS is the clients' TLS configuration, cloned the same way.
	// Default: trust only the process's in-memory certificate, which is
	// right for a server in this process and wrong for any other; a fleet
	// aimed at another process passes roots (RootCAs, nil meaning the
	// system's) or, explicitly, InsecureSkipVerify.
	ClientTLS *tls.Config

	// ReadBufferBytes and WriteBufferBytes are the SO_RCVBUF and SO_SNDBUF
	// sizes, in bytes, requested on every socket the transport opens; the
	// kernel may grant less. 0 keeps the transport's default (4 MiB for
	// udp, quic-go's 7 MiB for quic and quic-dgram, the kernel's own for
	// stream sockets). Negative is an error.
	ReadBufferBytes, WriteBufferBytes int

	// ReadTimeout bounds how long a frame that has started to arrive may
	// take to arrive whole, on every Conn the transport makes (server and
	// client side) whose framing can be left half-sent: a peer that sends
	// part of a frame and stops (a "slowloris") then gets ReadFrame's error
	// wrapping ErrReadTimeout instead of holding the connection and its
	// buffer forever. Waiting for a frame to start is not bounded here (see
	// HubConfig.IdleTimeout). 0 means DefaultReadTimeout; negative
	// disables it.
	ReadTimeout time.Duration
}

// DefaultReadTimeout is Config.ReadTimeout's default: 10 s, the write
// deadline nats-server gives a slow consumer (write_deadline), so that a
// 16 MiB frame needs a little over 13 Mbit/s to arrive in time.
const DefaultReadTimeout = 10 * time.Second

// ErrReadTimeout is wrapped by the error of a ReadFrame whose frame had
// started to arrive but was not complete within Config.ReadTimeout.
var ErrReadTimeout = errors.New("frame not completed within the read timeout")

// FrameReadTimeout is c.ReadTimeout with its default applied, and 0 when it
// is disabled (negative).
func (c Config) FrameReadTimeout() time.Duration {
	switch {
	case c.ReadTimeout == 0:
		return DefaultReadTimeout
	case c.ReadTimeout < 0:
		return 0
	}
	return c.ReadTimeout
}

// Validate reports a Config field that no transport can use.
func (c Config) Validate() error {
	if c.ReadBufferBytes < 0 {
		return fmt.Errorf("transport config: ReadBufferBytes is negative (%d)", c.ReadBufferBytes)
	}
	if c.WriteBufferBytes < 0 {
		return fmt.Errorf("transport config: WriteBufferBytes is negative (%d)", c.WriteBufferBytes)
	}
	if c.ServerTLS != nil && len(c.ServerTLS.Certificates) == 0 && c.ServerTLS.GetCertificate == nil && c.ServerTLS.GetConfigForClient == nil {
		return errors.New("transport config: ServerTLS holds no certificate")
	}
	return nil
}

// DialStream opens a stream connection with c.Dial or its default.
func (c Config) DialStream(ctx context.Context, network, addr string) (net.Conn, error) {
	if c.Dial != nil {
		return c.Dial(ctx, network, addr)
	}
	var d net.Dialer
	return d.DialContext(ctx, network, addr)
}

// ListenStream opens a stream listener with c.Listen or its default.
func (c Config) ListenStream(ctx context.Context, network, addr string) (net.Listener, error) {
	if c.Listen != nil {
		return c.Listen(ctx, network, addr)
	}
	var lc net.ListenConfig
	return lc.Listen(ctx, network, addr)
}

// ApplyBuffers requests c's nonzero ReadBufferBytes and WriteBufferBytes
// on sock when it has SetReadBuffer and SetWriteBuffer (a *net.TCPConn or a
// *net.UDPConn); any other socket, such as a wrapper, is left as it is. It
// returns the first error of a request.
func (c Config) ApplyBuffers(sock any) error {
	b, ok := sock.(interface {
		SetReadBuffer(bytes int) error
		SetWriteBuffer(bytes int) error
	})
	if !ok {
		return nil
	}
	if c.ReadBufferBytes > 0 {
		if err := b.SetReadBuffer(c.ReadBufferBytes); err != nil {
			return fmt.Errorf("set SO_RCVBUF to %d bytes: %w", c.ReadBufferBytes, err)
		}
	}
	if c.WriteBufferBytes > 0 {
		if err := b.SetWriteBuffer(c.WriteBufferBytes); err != nil {
			return fmt.Errorf("set SO_SNDBUF to %d bytes: %w", c.WriteBufferBytes, err)
		}
	}
	return nil
}

// OpenPacket opens a packet socket with c.ListenPacket or its default.
func (c Config) OpenPacket(ctx context.Context, network, addr string) (net.PacketConn, error) {
	if c.ListenPacket != nil {
		return c.ListenPacket(ctx, network, addr)
	}
	var lc net.ListenConfig
	return lc.ListenPacket(ctx, network, addr)
}

// ServerTLSConfig returns a new server TLS configuration: a clone of
// c.ServerTLS, or the in-memory certificate's, with TLS 1.3 required and
// NextProtos set to alpn.
func (c Config) ServerTLSConfig(alpn ...string) (*tls.Config, error) {
	if c.ServerTLS == nil {
		return selfsigned.ServerConfig(alpn...)
	}
	return tls13(c.ServerTLS, alpn), nil
}

// ClientTLSConfig returns a new client TLS configuration: a clone of
// c.ClientTLS, or one trusting only the in-memory certificate, with TLS 1.3
// required and NextProtos set to alpn.
func (c Config) ClientTLSConfig(alpn ...string) (*tls.Config, error) {
	if c.ClientTLS == nil {
		return selfsigned.ClientConfig(alpn...)
	}
	return tls13(c.ClientTLS, alpn), nil
}

func tls13(base *tls.Config, alpn []string) *tls.Config {
	cfg := base.Clone()
	cfg.MinVersion = tls.VersionTLS13
	cfg.NextProtos = alpn
	return cfg
}

// SelfSignedCertPEM returns the process's in-memory self-signed certificate
// (the default of Config.ServerTLS) in PEM form, so that a server can hand it
// to a fleet in another process to trust (ClientTLS.RootCAs).
func SelfSignedCertPEM() ([]byte, error) { return selfsigned.CertPEM() }

// Constructor builds a transport from a Config. It returns an error for a
// Config it cannot use (see Config.Validate).
type Constructor func(Config) (Transport, error)

// DatagramConn is implemented by Conns whose event frames may travel
// differently from the rest: WriteDatagram sends a frame the caller allows
// the network to lose (quic-dgram: one QUIC DATAGRAM frame, RFC 9221), while
// WriteFrame keeps its promise of Caps.ReliableControl. The Hub and the
// Client send EVENT and EMIT frames through WriteDatagram when a Conn has
// it, and nothing else; the transport never looks inside a frame.
// WriteDatagram counts as a write for the single-writer discipline. It
// returns an error wrapping ErrFrameTooLarge for a frame the path cannot
// carry, and nothing is sent.
type DatagramConn interface {
	Conn
	WriteDatagram(p []byte) error
}

// WriteEvent writes an encoded EVENT or EMIT frame: through WriteDatagram
// when c is a DatagramConn, otherwise through WriteFrame.
func WriteEvent(c Conn, p []byte) error {
	if d, ok := c.(DatagramConn); ok {
		return d.WriteDatagram(p)
	}
	return c.WriteFrame(p)
}
