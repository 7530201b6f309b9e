// Package udp moves evbench frames over UDP (RFC 768), registered as "udp".
//
// Each frame travels as one datagram behind a 1-byte kind header, with no
// retransmission and no ordering: the loss and reordering that the network
// (or the receiver's socket buffer) causes are what evbench measures, so
// every datagram this package discards itself is counted (see Stats).
//
// The largest frame is MaxFrameBytes = 1500 − 20 − 8 − 1 = 1471 bytes: a
// 1500-byte Ethernet MTU minus the IPv4 header (RFC 791, no options), the
// UDP header and the kind byte, so that no DATA datagram is fragmented. A
// larger WriteFrame is refused with an error wrapping
// transports.ErrFrameTooLarge and nothing is sent.
//
// Sessions: a Listener makes a Conn only for a client that has proved it
// receives what is sent to its source address, with a stateless cookie
// exchange like QUIC's Retry token (RFC 9000 §8.1) and DTLS's
// HelloVerifyRequest (RFC 6347 §4.2.1). Dial sends HELLO with a random
// nonce; the Listener answers with a COOKIE carrying the nonce and a
// cookie, a timestamp and a MAC under a secret of the Listener's own over
// the client's address, the nonce and the timestamp, and remembers nothing.
// The client echoes the cookie in a second HELLO, and only a HELLO whose
// cookie is valid and less than CookieLifetime (10 s) old creates a Conn
// and is answered with HELLO-ACK. Until then the Listener sends an address
// at most 3 × the bytes it received from it (a 27-byte COOKIE for a 9-byte
// HELLO), where a server without the exchange would have answered a blind
// HELLO, HELLO frame and JOIN with a room's broadcasts: datagrams of any
// other kind from an address without a Conn are dropped and counted
// (Stats.UnvalidatedDrops) and refresh no timer. An honest client pays one
// extra round trip, which is part of Dial's time and so of the connect
// time a fleet reports. Dial resends its latest HELLO every
// Options.HelloInterval until the server answers HELLO-ACK (the first form
// if no COOKIE came yet, else the second with the cookie it holds) and
// sends the second form at once when a COOKIE arrives, also when the
// Listener answered an expired or unknown cookie with a fresh one; it fails
// with the context's error when the server stays silent and, on a kernel
// socket, promptly with ECONNREFUSED when nothing listens. The Listener
// owns one unconnected socket and a read goroutine that demultiplexes
// datagrams by source address into per-peer Conns, each with a bounded
// inbound queue. Both ends send KEEPALIVE after Options.KeepaliveInterval
// without sending anything, declare the peer gone (ErrIdleTimeout) after
// Options.IdleTimeout without hearing from it, and send BYE on Close so
// that the peer's ReadFrame returns io.EOF. Once Dial has returned, an
// ICMP port unreachable (ECONNREFUSED on a kernel socket connected to the
// server) does not end a client Conn: it may come from a server that is
// restarting or from a forged ICMP message, so it is counted
// (Stats.RefusedErrors) and only the idle timeout ends the session.
//
// Sockets: Listen and Dial open theirs with transports.Config.OpenPacket
// (NewWithConfig; New uses the zero Config), so that a wrapper, such as one
// that impairs the network with loss, delay or reordering, can stand between
// this package and the kernel. The socket is upgraded by type assertion, as
// quic-go does. A *net.UDPConn is read with ReadMsgUDPAddrPort, which
// carries the kernel's drop counter, has its buffer sizes set and read back,
// and, for a client, is connected to the server at the kernel level
// (connect(2) on Unix) so that only the server's datagrams arrive and ICMP
// errors are reported. Any other net.PacketConn is used through ReadFrom
// and WriteTo only, and its deadlines: a client drops and counts datagrams
// from other sources itself, KernelDrops stays 0, a Dial to a port where
// nothing listens ends only with its context, and buffer sizes are
// requested only if the PacketConn has SetReadBuffer and SetWriteBuffer and
// read back only if it has SyscallConn. Addresses a PacketConn reports are
// expected as *net.UDPAddr (anything whose String is ip:port works, at the
// cost of an allocation per datagram); this package keeps none of them past
// the ReadFrom that returned it, so a wrapper may reuse one. Neither kind of
// socket costs an allocation per datagram in this package.
//
// Socket buffers: SO_RCVBUF and SO_SNDBUF are requested at 4 MiB by default
// (or at transports.Config.ReadBufferBytes and WriteBufferBytes, see
// NewWithConfig) and the size the kernel granted is read back with
// getsockopt and reported in Stats, together with the kernel's count of
// datagrams dropped for a full receive buffer (SO_RXQ_OVFL, Linux), so that
// a report can tell loss in the receive buffer from loss elsewhere.
package udp

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"syscall"
	"time"

	"github.com/evbench/evbench/transports"
)

// Name is the registry name of this transport.
const Name = "udp"

// Defaults used for the zero fields of Options.
const (
	DefaultKeepaliveInterval = time.Second
	DefaultIdleTimeout       = 5 * time.Second
	DefaultHelloInterval     = 100 * time.Millisecond
	DefaultQueueFrames       = 4096
	DefaultAcceptBacklog     = 1024
	DefaultSocketBufferBytes = 4 << 20 // 4 MiB
)

// Options configures the transport. The zero value of every field means
// its default; negative values are an error from Listen and Dial.
type Options struct {
	// KeepaliveInterval is how long a side may send nothing before it sends
	// a KEEPALIVE. Default 1 s.
	KeepaliveInterval time.Duration
	// IdleTimeout is how long a peer may send nothing before it is
	// considered gone: ReadFrame returns an error wrapping ErrIdleTimeout.
	// The silence is confirmed a tenth of IdleTimeout after it is first
	// seen, so that a process that stalled reads what arrived meanwhile;
	// detection thus takes 1 to 1.1 × IdleTimeout. It must exceed
	// KeepaliveInterval. Default 5 s.
	IdleTimeout time.Duration
	// HelloInterval is how often Dial resends its latest HELLO while it
	// waits for the COOKIE or the HELLO-ACK; it also bounds how late Dial notices a cancelled context
	// that has no deadline. Default 100 ms.
	HelloInterval time.Duration
	// QueueFrames bounds each server-side Conn's inbound queue, in frames.
	// When it is full, an arriving DATA datagram is dropped and counted in
	// Stats.QueueFullDrops. The queue grows on demand up to this bound.
	// Default 4096.
	QueueFrames int
	// AcceptBacklog is how many new Conns may wait for Accept. A HELLO that
	// finds the backlog full is ignored (counted in Stats.BacklogDrops) and
	// the client retries it. Default 1024.
	AcceptBacklog int
	// ReadBufferBytes is the SO_RCVBUF size, in bytes, requested for every
	// socket (see "Sockets" in the package doc for a net.PacketConn that is
	// not a *net.UDPConn). The kernel may grant less (Linux caps it at
	// net.core.rmem_max); Stats reports what it granted. Default:
	// transports.Config.ReadBufferBytes when the Transport comes from
	// NewWithConfig or NewFromConfig and that is nonzero, else 4 MiB.
	ReadBufferBytes int
	// WriteBufferBytes is the SO_SNDBUF size, in bytes, requested for every
	// socket. Default: transports.Config.WriteBufferBytes when nonzero, else
	// 4 MiB.
	WriteBufferBytes int
}

// withDefaults returns o with every zero field set to its default, or an
// error naming the first invalid field.
func (o Options) withDefaults() (Options, error) {
	durs := []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"KeepaliveInterval", &o.KeepaliveInterval, DefaultKeepaliveInterval},
		{"IdleTimeout", &o.IdleTimeout, DefaultIdleTimeout},
		{"HelloInterval", &o.HelloInterval, DefaultHelloInterval},
	}
	for _, d := range durs {
		if *d.v < 0 {
			return o, fmt.Errorf("udp: Options.%s is negative (%v)", d.name, *d.v)
		}
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	ints := []struct {
		name string
		v    *int
		def  int
	}{
		{"QueueFrames", &o.QueueFrames, DefaultQueueFrames},
		{"AcceptBacklog", &o.AcceptBacklog, DefaultAcceptBacklog},
		{"ReadBufferBytes", &o.ReadBufferBytes, DefaultSocketBufferBytes},
		{"WriteBufferBytes", &o.WriteBufferBytes, DefaultSocketBufferBytes},
	}
	for _, n := range ints {
		if *n.v < 0 {
			return o, fmt.Errorf("udp: Options.%s is negative (%d)", n.name, *n.v)
		}
		if *n.v == 0 {
			*n.v = n.def
		}
	}
	if o.IdleTimeout <= o.KeepaliveInterval {
		return o, fmt.Errorf("udp: Options.IdleTimeout (%v) must exceed KeepaliveInterval (%v)", o.IdleTimeout, o.KeepaliveInterval)
	}
	return o, nil
}

// Errors of this transport, for errors.Is.
var (
	// ErrIdleTimeout is wrapped by ReadFrame's and WriteFrame's error once
	// the peer has sent nothing for Options.IdleTimeout.
	ErrIdleTimeout = errors.New("udp: peer idle timeout")
	// ErrPeerClosed is wrapped by WriteFrame's error once the peer has sent
	// BYE (ReadFrame then returns io.EOF).
	ErrPeerClosed = errors.New("udp: peer closed the session")
)

// Stats is a snapshot of the counters of a Listener or a Conn. Counts are
// datagrams since the socket was opened.
type Stats struct {
	// QueueFullDrops counts DATA datagrams discarded because the receiving
	// Conn's inbound queue held Options.QueueFrames frames (its reader fell
	// behind). Server side only.
	QueueFullDrops uint64
	// UnknownPeerDrops counts, on a Listener, datagrams whose source a
	// net.PacketConn reported as something other than an IP address and
	// port, and DATA datagrams that arrived for a Conn as it was being
	// closed. DATA from an address with no Conn at all is not counted
	// here but in UnvalidatedDrops, so that no datagram is counted twice.
	// On a client Conn it counts datagrams of any kind from a source other
	// than the server, which only a socket not connected at the kernel
	// level receives (a net.PacketConn that is not a *net.UDPConn). 0 on a
	// server Conn.
	UnknownPeerDrops uint64
	// UnvalidatedDrops counts, on a Listener, datagrams dropped because
	// their source address is not validated (see "Sessions" in the package
	// doc): DATA, KEEPALIVE and BYE from an address without a Conn (it
	// never completed the cookie exchange, or its Conn was closed or timed
	// out), and HELLOs whose cookie is forged, expired (older than
	// CookieLifetime) or issued for another address or nonce, which are
	// answered with a fresh COOKIE. A first HELLO, without a
	// cookie, is the exchange's first step and is not counted. 0 on a
	// Conn. Listener.UnvalidatedDrops reports the same count.
	UnvalidatedDrops uint64
	// MalformedDrops counts datagrams with an unknown kind or a length that
	// does not fit their kind (including DATA over MaxFrameBytes).
	MalformedDrops uint64
	// BacklogDrops counts HELLOs ignored because Options.AcceptBacklog
	// Conns were waiting for Accept. Listener only.
	BacklogDrops uint64
	// KernelDrops counts datagrams the kernel discarded because the
	// socket's receive buffer was full (SO_RXQ_OVFL, socket(7); Linux only,
	// 0 elsewhere, and 0 on a net.PacketConn that is not a *net.UDPConn,
	// whose ReadFrom carries no control messages). The kernel reports the
	// count along with the next datagram it delivers, so drops after the
	// last delivered datagram are not visible yet. A server-side Conn
	// reports its Listener's socket.
	KernelDrops uint64
	// ReadBufferRequestedBytes and ReadBufferGrantedBytes are the SO_RCVBUF
	// size asked for and the size getsockopt reports afterwards, in bytes.
	// Linux reports twice the usable size (it counts its bookkeeping
	// overhead) and caps the request at net.core.rmem_max, so a grant below
	// twice the request means the cap bit. Requested is 0 when nothing was
	// asked for (a net.PacketConn without SetReadBuffer and
	// SetWriteBuffer); Granted is 0 where it cannot be read (no
	// SyscallConn, or not Linux), meaning unknown.
	ReadBufferRequestedBytes, ReadBufferGrantedBytes int
	// WriteBufferRequestedBytes and WriteBufferGrantedBytes are the same
	// for SO_SNDBUF (capped at net.core.wmem_max on Linux).
	WriteBufferRequestedBytes, WriteBufferGrantedBytes int
	// RefusedErrors counts, on a client Conn whose socket is connected to
	// the server at the kernel level, the ECONNREFUSED errors its reads and
	// writes returned after Dial: each is an ICMP port unreachable (RFC 792
	// type 3 code 3, RFC 4443 type 1 code 4) that a datagram sent to the
	// server drew. They do not end the Conn (see "Sessions" in the package
	// doc). A write that returns one sent nothing (the kernel reports the
	// earlier datagram's error instead), so WriteFrame sends once more. 0
	// on a Listener and a server Conn. Errors, not datagrams: Dropped does
	// not include them.
	RefusedErrors uint64
}

// Dropped is the number of datagrams that reached the socket and were
// discarded by this package: QueueFullDrops + UnknownPeerDrops +
// UnvalidatedDrops + MalformedDrops + BacklogDrops, which count disjoint
// sets of datagrams. KernelDrops, which never reached it, are not
// included.
func (s Stats) Dropped() uint64 {
	return s.QueueFullDrops + s.UnknownPeerDrops + s.UnvalidatedDrops + s.MalformedDrops + s.BacklogDrops
}

// Transport is the "udp" transport. Its methods are safe for concurrent use.
type Transport struct {
	cfg  transports.Config
	opts Options // as given; defaults are applied by Listen and Dial
}

var _ transports.Transport = (*Transport)(nil)

// New returns a udp Transport configured by opts (zero fields mean their
// defaults) over the zero transports.Config: sockets as a zero
// net.ListenConfig opens them. Invalid opts are reported by Listen and
// Dial.
func New(opts Options) transports.Transport { return &Transport{opts: opts} }

// NewWithConfig returns a udp Transport that opens its sockets with
// cfg.OpenPacket and is configured by opts. Socket buffer sizes are taken,
// for SO_RCVBUF and SO_SNDBUF separately, from the first that is nonzero of
// Options.ReadBufferBytes (WriteBufferBytes), cfg.ReadBufferBytes
// (WriteBufferBytes) and DefaultSocketBufferBytes: the transport's own
// Options are the more specific setting, cfg's the one shared by every
// transport. The other fields of cfg (Dial, Listen, TLS) are not used. It
// returns an error for a cfg that cfg.Validate refuses or for invalid opts
// (a negative field, IdleTimeout not above KeepaliveInterval), and opens
// nothing.
func NewWithConfig(cfg transports.Config, opts Options) (transports.Transport, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("udp: %w", err)
	}
	t := &Transport{cfg: cfg, opts: opts}
	if _, err := t.options(); err != nil {
		return nil, err
	}
	return t, nil
}

// NewFromConfig is NewWithConfig(cfg, Options{}): the "udp" transport of
// the registry (transports.Constructor).
func NewFromConfig(cfg transports.Config) (transports.Transport, error) {
	return NewWithConfig(cfg, Options{})
}

// options returns the Options that Listen and Dial use: t.opts, with the
// buffer sizes of t.cfg where t.opts leaves them zero, then the defaults.
func (t *Transport) options() (Options, error) {
	o := t.opts
	if o.ReadBufferBytes == 0 {
		o.ReadBufferBytes = t.cfg.ReadBufferBytes
	}
	if o.WriteBufferBytes == 0 {
		o.WriteBufferBytes = t.cfg.WriteBufferBytes
	}
	return o.withDefaults()
}

// Name returns "udp".
func (t *Transport) Name() string { return Name }

// Caps reports an unreliable, unordered, unencrypted datagram transport
// whose frames are at most MaxFrameBytes. Each client holds one socket;
// the server's one socket serves every peer.
func (t *Transport) Caps() transports.Caps {
	return transports.Caps{Datagram: true, MaxFrame: MaxFrameBytes, ClientFDs: 1, ServerFDs: 0}
}

// Listen opens the server's socket with the Config's OpenPacket(ctx,
// "udp", addr) ("127.0.0.1:0" picks a free port) and starts demultiplexing
// it; the socket must not be connected. ctx bounds only the set-up. The
// result is a *Listener. Errors: invalid Options, the socket's opening, or,
// on a *net.UDPConn, setting its buffer sizes or SO_RXQ_OVFL; the socket is
// closed again on an error.
func (t *Transport) Listen(ctx context.Context, addr string) (transports.Listener, error) {
	opts, err := t.options()
	if err != nil {
		return nil, err
	}
	pc, err := t.cfg.OpenPacket(ctx, "udp", addr)
	if err != nil {
		return nil, fmt.Errorf("udp: listen %s: %w", addr, err)
	}
	sock := newSocket(pc)
	sizes, err := configureSocket(sock, opts)
	if err != nil {
		pc.Close()
		return nil, fmt.Errorf("udp: listen %s: %w", addr, err)
	}
	return newListener(opts, sock, sizes), nil
}

// Dial opens the client's socket with the Config's OpenPacket(ctx, "udp",
// local), where local is 127.0.0.1:0 or [::1]:0 for a server on IPv4 or
// IPv6 loopback and ":0" otherwise, and performs the HELLO handshake: HELLO,
// COOKIE, HELLO with the cookie, HELLO-ACK (two round trips, see "Sessions"
// in the package doc), resending its latest HELLO every
// Options.HelloInterval until the HELLO-ACK arrives or ctx is done. addr is host:port; an empty or unspecified host means
// this machine, as with net.Dial. The result is a *Conn.
//
// A *net.UDPConn is connected to the server at the kernel level (connect(2)
// on Unix), so that the kernel delivers only the server's datagrams and
// Dial fails promptly with an error wrapping syscall.ECONNREFUSED when
// nothing listens on addr. Any other net.PacketConn stays unconnected:
// datagrams from other sources are dropped and counted
// (Stats.UnknownPeerDrops), and since no ICMP error reaches it, a Dial to
// an address where nothing listens ends only when ctx is done. Either way
// a closed Listener answers BYE, which Dial reports as ECONNREFUSED, and
// an unanswered Dial fails with an error wrapping ctx.Err().
func (t *Transport) Dial(ctx context.Context, addr string) (transports.Conn, error) {
	opts, err := t.options()
	if err != nil {
		return nil, err
	}
	server, err := resolveServer(ctx, addr)
	if err != nil {
		return nil, fmt.Errorf("udp: dial %s: %w", addr, err)
	}
	pc, err := t.cfg.OpenPacket(ctx, "udp", localFor(server))
	if err != nil {
		return nil, fmt.Errorf("udp: dial %s: %w", addr, err)
	}
	sock := newSocket(pc)
	sizes, err := configureSocket(sock, opts)
	if err != nil {
		pc.Close()
		return nil, fmt.Errorf("udp: dial %s: %w", addr, err)
	}
	var local net.Addr
	if sock.uc != nil {
		la, connected, err := connectSocket(sock.uc, server)
		if err != nil {
			pc.Close()
			return nil, fmt.Errorf("udp: dial %s: %w", addr, err)
		}
		sock.connected = connected
		if la.IsValid() {
			local = net.UDPAddrFromAddrPort(la)
		}
	}
	c := newClientConn(opts, sock, server, local, sizes, rand.Uint64())
	if err := c.handshake(ctx); err != nil {
		c.timer.Stop()
		if !errors.Is(err, syscall.ECONNREFUSED) {
			// The server may have created a session whose HELLO-ACK was lost.
			sock.write(byeDatagram, c.raddr, c.remote)
		}
		pc.Close()
		return nil, fmt.Errorf("udp: dial %s: %w", addr, err)
	}
	c.startTimer()
	return c, nil
}

// epoch anchors now: time.Since reads the monotonic clock.
var epoch = time.Now()

// now is monotonic time in nanoseconds since epoch, cheap enough for every
// datagram and storable in an atomic.Int64.
func now() int64 { return int64(time.Since(epoch)) }
