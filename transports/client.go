package transports

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// ClientConfig configures a Client. The zero value works.
type ClientConfig struct {
	// ID is the client id sent in HELLO; 0 lets the server assign one.
	ID uint64
	// OnEvent is called for each EVENT, on the client's read goroutine, with
	// the receive time in nanoseconds on Clock. f and its slices are valid
	// only during the call. Nil discards events.
	OnEvent func(f *Frame, recvNs int64)
	// OnAck is called, on the read goroutine, when an emit's ACK arrives,
	// with the emit's ack round-trip time (ACK received − start of the
	// EMIT's write).
	OnAck func(rtt time.Duration)
	// Clock returns the current time in nanoseconds on a monotonic clock
	// shared with whoever reads the latencies. Default: nanoseconds since
	// the process started using package transports.
	Clock func() int64
	// RetryInterval is how often HELLO, JOIN, LEAVE and PING are re-sent
	// until answered on a transport whose control frames may be lost (not
	// Caps.ReliableControl: udp); default 200ms.
	RetryInterval time.Duration
	// KeepaliveInterval is how long the client may send nothing before it
	// sends a PING, so that a client that only receives is not closed by
	// the server's idle timeout (HubConfig.IdleTimeout, 30 s by default).
	// Default DefaultKeepaliveInterval; negative disables it.
	KeepaliveInterval time.Duration
}

// DefaultKeepaliveInterval is ClientConfig.KeepaliveInterval's default, 10 s:
// a third of the Hub's default idle timeout, so that two keepalives in a row
// may be late or lost before the server gives up on the client.
const DefaultKeepaliveInterval = 10 * time.Second

var processStart = time.Now()

func defaultClock() int64 { return int64(time.Since(processStart)) }

// Client is one simulated socket.io-style client over a Transport. Emit,
// Join and Leave are safe for concurrent use; writes are serialised by one
// mutex, so the Conn has a single writer at any time.
type Client struct {
	cfg      ClientConfig
	conn     Conn
	reliable bool
	id       uint64

	wmu  sync.Mutex // the single-writer discipline: held for each encode+write+flush
	wbuf []byte

	wrote     atomic.Bool                // a frame was written since the last keepalive check
	keepalive atomic.Pointer[time.Timer] // nil when KeepaliveInterval is negative

	amu     sync.Mutex // guards pending and nextAck
	pending map[uint64]pendingAck
	nextAck uint64

	hello   chan uint64
	done    chan struct{}
	err     error // why the read loop ended; read after done is closed
	once    sync.Once
	closing atomic.Bool // Close has begun
}

type pendingAck struct {
	sentNs int64
	done   chan uint8  // nil for emit acks; receives the ACK status for JOIN/LEAVE
	stats  chan []byte // for a STATS request: receives a copy of the answer's payload
}

// Dial connects to a Hub at addr over tr and completes the HELLO exchange.
// ctx bounds the connection set-up.
func Dial(ctx context.Context, tr Transport, addr string, cfg ClientConfig) (*Client, error) {
	if cfg.Clock == nil {
		cfg.Clock = defaultClock
	}
	if cfg.RetryInterval <= 0 {
		cfg.RetryInterval = 200 * time.Millisecond
	}
	if cfg.KeepaliveInterval == 0 {
		cfg.KeepaliveInterval = DefaultKeepaliveInterval
	}
	conn, err := tr.Dial(ctx, addr)
	if err != nil {
		return nil, err
	}
	c := &Client{
		cfg: cfg, conn: conn, reliable: tr.Caps().ReliableControl,
		wbuf: make([]byte, 0, 1024), pending: map[uint64]pendingAck{},
		hello: make(chan uint64, 1), done: make(chan struct{}),
	}
	go c.readLoop()
	id, err := request(ctx, c, &Frame{Type: FrameHello, Sender: cfg.ID}, c.hello)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("hello: %w", err)
	}
	c.id = id
	if cfg.KeepaliveInterval > 0 {
		c.keepalive.Store(time.AfterFunc(cfg.KeepaliveInterval, c.sendKeepalive))
	}
	return c, nil
}

// sendKeepalive runs on its timer: it sends a PING unless the client wrote
// something since the last time, or is writing now (the lock is held), and
// sets the timer again. The PING's AckID is 0, so its PONG settles nothing.
func (c *Client) sendKeepalive() {
	select {
	case <-c.done:
		return
	default:
	}
	if !c.wrote.Swap(false) && c.wmu.TryLock() {
		c.writeLocked(&Frame{Type: FramePing}, false) // an error ends the read loop too
		c.wmu.Unlock()
	}
	if t := c.keepalive.Load(); t != nil {
		t.Reset(c.cfg.KeepaliveInterval)
	}
}

// ID is the client's id, as confirmed by the server.
func (c *Client) ID() uint64 { return c.id }

// Done is closed when the connection has ended; Err then says why.
func (c *Client) Done() <-chan struct{} { return c.done }

// Err is nil until Done is closed, then the error that ended the
// connection (net.ErrClosed after Close).
func (c *Client) Err() error {
	select {
	case <-c.done:
		return c.err
	default:
		return nil
	}
}

// Join asks the server to put the client in room of namespace ns and waits
// for the acknowledgement. It returns an error if the server rejects it, the
// connection ends, or ctx is done.
func (c *Client) Join(ctx context.Context, ns, room string) error {
	return c.membership(ctx, FrameJoin, ns, room)
}

// Leave asks the server to take the client out of a room and waits for the
// acknowledgement.
func (c *Client) Leave(ctx context.Context, ns, room string) error {
	return c.membership(ctx, FrameLeave, ns, room)
}

func (c *Client) membership(ctx context.Context, t FrameType, ns, room string) error {
	ack := make(chan uint8, 1)
	id := c.addPending(pendingAck{done: ack})
	defer c.removePending(id)
	f := Frame{Type: t, Namespace: []byte(ns), Room: []byte(room), AckID: id}
	status, err := request(ctx, c, &f, ack)
	switch {
	case err != nil:
	case status == AckLimit:
		err = fmt.Errorf("server refused %v of room %q in namespace %q: %w (rooms or namespaces per connection)", t, room, ns, ErrLimit)
	case status != AckOK:
		err = fmt.Errorf("server rejected %v of room %q in namespace %q (status %d)", t, room, ns, status)
	}
	return err
}

// request writes f and waits for the read loop's answer on answer. Over a
// transport whose control frames may be lost it re-sends f every
// RetryInterval; the
// requests it is used for (HELLO, JOIN, LEAVE) are idempotent.
func request[T any](ctx context.Context, c *Client, f *Frame, answer <-chan T) (T, error) {
	var zero T
	if err := c.write(f); err != nil {
		return zero, err
	}
	var retry <-chan time.Time
	if !c.reliable {
		t := time.NewTicker(c.cfg.RetryInterval)
		defer t.Stop()
		retry = t.C
	}
	for {
		select {
		case v := <-answer:
			return v, nil
		case <-retry:
			if err := c.write(f); err != nil {
				return zero, err
			}
		case <-c.done:
			return zero, fmt.Errorf("connection ended: %w", c.err)
		case <-ctx.Done():
			return zero, ctx.Err()
		}
	}
}

// Emit sends an event. The caller fills Namespace, Room, Name, Seq,
// IntendedNs and Payload of ev; Emit sets Type, Sender and SentNs (the time
// the write starts, after waiting for the write lock) and, when wantAck is
// true, a fresh AckID whose round trip is reported to OnAck. It blocks until
// the frame is handed to the transport, and returns an error wrapping
// ErrFrameTooLarge for an event over the transport's limit, or the
// connection's error.
func (c *Client) Emit(ev *Frame, wantAck bool) error {
	ev.Type, ev.Sender, ev.AckID = FrameEmit, c.id, 0
	c.wmu.Lock()
	defer c.wmu.Unlock()
	ev.SentNs = c.cfg.Clock()
	if wantAck {
		ev.AckID = c.addPending(pendingAck{sentNs: ev.SentNs})
	}
	err := c.writeLocked(ev, true)
	if err != nil && ev.AckID != 0 {
		c.removePending(ev.AckID)
	}
	return err
}

// Ping sends a PING and waits for its PONG, returning the round-trip time
// on Clock. Over a transport whose control frames may be lost the PING is re-sent every
// RetryInterval and the time still counts from the first one. It returns an
// error if the connection ends or ctx is done first.
func (c *Client) Ping(ctx context.Context) (time.Duration, error) {
	pong := make(chan uint8, 1)
	id := c.addPending(pendingAck{done: pong})
	defer c.removePending(id)
	sent := c.cfg.Clock()
	if _, err := request(ctx, c, &Frame{Type: FramePing, AckID: id, SentNs: sent}, pong); err != nil {
		return 0, err
	}
	return time.Duration(c.cfg.Clock() - sent), nil
}

// ServerStats asks the server for its settings and counters (a STATS
// request) and waits for the answer: the Hub's ServerStats, counters
// counted from the Hub's start. Over a transport whose control frames may be lost the
// request is re-sent every RetryInterval. It returns an error if the answer
// is not a HubStats object, the connection ends or ctx is done first.
func (c *Client) ServerStats(ctx context.Context) (ServerStats, error) {
	answer := make(chan []byte, 1)
	id := c.addPending(pendingAck{stats: answer})
	defer c.removePending(id)
	p, err := request(ctx, c, &Frame{Type: FrameStats, AckID: id}, answer)
	if err != nil {
		return ServerStats{}, fmt.Errorf("server stats: %w", err)
	}
	var st ServerStats
	if err := json.Unmarshal(p, &st); err != nil {
		return ServerStats{}, fmt.Errorf("server stats: the server's answer is not a counters object: %w", err)
	}
	return st, nil
}

// PendingAcks is the number of emits whose ACK has not arrived.
func (c *Client) PendingAcks() int {
	c.amu.Lock()
	defer c.amu.Unlock()
	n := 0
	for _, p := range c.pending {
		if p.done == nil && p.stats == nil {
			n++
		}
	}
	return n
}

func (c *Client) write(f *Frame) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.writeLocked(f, false)
}

// writeLocked encodes f and writes it, through WriteEvent when event is
// set (an EMIT, which the transport may send as a datagram).
func (c *Client) writeLocked(f *Frame, event bool) error {
	b, err := AppendFrame(c.wbuf[:0], f)
	if err != nil {
		return err
	}
	c.wbuf = b
	if event {
		err = WriteEvent(c.conn, b)
	} else {
		err = c.conn.WriteFrame(b)
	}
	if err != nil {
		return err
	}
	if !c.wrote.Load() {
		c.wrote.Store(true) // a load first: most writes find it set
	}
	return Flush(c.conn)
}

func (c *Client) addPending(p pendingAck) uint64 {
	c.amu.Lock()
	defer c.amu.Unlock()
	c.nextAck++
	c.pending[c.nextAck] = p
	return c.nextAck
}

func (c *Client) removePending(id uint64) {
	c.amu.Lock()
	delete(c.pending, id)
	c.amu.Unlock()
}

func (c *Client) readLoop() {
	var f Frame
	var err error
	for {
		var p []byte
		if p, err = c.conn.ReadFrame(); err != nil {
			break
		}
		if err = c.handle(p, &f, c.cfg.Clock()); err != nil {
			break
		}
	}
	if c.closing.Load() && isEOF(err) {
		// The server, answering our BYE, closed its side before Close
		// closed ours: the connection still ended because of Close.
		err = fmt.Errorf("client closed: %w", net.ErrClosed)
	}
	c.err = err
	c.conn.Close()
	close(c.done)
}

// handle is the read loop's work for one frame p, received at now on
// Clock: it decodes p into f and acts on it (an EVENT goes to OnEvent, an
// ACK or PONG settles its pending entry, a HELLO answers Dial). A non-nil
// error ends the read loop: p is malformed, the server said BYE, or it sent
// a frame a server may not send. It runs on the read goroutine only, and
// allocates nothing for an EVENT, an emit's ACK or a PONG.
func (c *Client) handle(p []byte, f *Frame, now int64) error {
	if err := DecodeFrame(p, f); err != nil {
		return err
	}
	switch f.Type {
	case FrameEvent:
		if c.cfg.OnEvent != nil {
			c.cfg.OnEvent(f, now)
		}
	case FrameAck, FramePong: // a PONG answers a Ping like an ACK
		c.amu.Lock()
		pa, ok := c.pending[f.AckID]
		ok = ok && pa.stats == nil // a STATS request is answered by STATS only
		if ok && pa.done == nil {
			delete(c.pending, f.AckID) // JOIN/LEAVE entries are removed by their waiter
		}
		c.amu.Unlock()
		switch {
		case !ok: // a duplicate ACK of a retried request
		case pa.done != nil:
			select {
			case pa.done <- f.Status:
			default:
			}
		case c.cfg.OnAck != nil:
			c.cfg.OnAck(time.Duration(now - pa.sentNs))
		}
	case FrameStats:
		c.amu.Lock()
		pa, ok := c.pending[f.AckID]
		c.amu.Unlock()
		if ok && pa.stats != nil {
			select {
			case pa.stats <- append([]byte(nil), f.Payload...):
			default: // a duplicate answer of a retried request
			}
		}
	case FrameHello:
		select {
		case c.hello <- f.Sender:
		default:
		}
	case FrameBye:
		if f.Status == ByeIDInUse {
			return fmt.Errorf("server refused client id %d: %w (is another fleet using this server?)", c.cfg.ID, ErrIDInUse)
		}
		return fmt.Errorf("server said BYE (reason %d): %w", f.Status, net.ErrClosed)
	default:
		return fmt.Errorf("%w: a server may not send %v", ErrMalformed, f.Type)
	}
	return nil
}

// Close sends BYE when the connection is idle (without waiting for a blocked
// writer, and giving the BYE itself at most ByeGrace), closes the connection
// and waits for the read loop to end. It is safe to call more than once.
func (c *Client) Close() error {
	c.once.Do(func() {
		c.closing.Store(true)
		if t := c.keepalive.Load(); t != nil {
			t.Stop()
		}
		if c.wmu.TryLock() {
			// A BYE can block too (a full send buffer towards a server
			// that stopped reading): ByeGrace bounds it.
			t := time.AfterFunc(ByeGrace, func() { c.conn.Close() })
			c.writeLocked(&Frame{Type: FrameBye}, false)
			t.Stop()
			c.wmu.Unlock()
		}
		c.conn.Close()
	})
	<-c.done
	if errors.Is(c.err, net.ErrClosed) || isEOF(c.err) {
		return nil
	}
	return c.err
}
