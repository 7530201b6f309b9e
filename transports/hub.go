package transports

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// SlowConsumerPolicy says what the Hub does when a connection's send queue is
// full because its client (or the network to it) cannot keep up.
type SlowConsumerPolicy uint8

const (
	// DropOldest discards the oldest queued event to make room for the new
	// one and counts it in HubStats.QueueDrops. The client sees a gap, which
	// the harness counts as missed. Control frames (HELLO, ACK, PONG) have
	// their own queue, which events never fill.
	DropOldest SlowConsumerPolicy = iota
	// Disconnect closes the slow connection (socket.io's behaviour when a
	// client's buffer overflows) and counts the frame in QueueDrops.
	Disconnect
)

// String returns "drop-oldest" or "disconnect".
func (p SlowConsumerPolicy) String() string {
	if p == Disconnect {
		return "disconnect"
	}
	return "drop-oldest"
}

// HubConfig configures a Hub. The zero value works: every zero field means
// its default, and every default bounds what one peer can make the Hub
// hold or do, so that a Hub can face peers it does not trust.
type HubConfig struct {
	// SendQueue is how many events each connection's send queue holds;
	// default 4096. Its reply queue (HELLO, ACK, PONG) holds as many, and
	// at least MinReplyQueue.
	SendQueue int
	// SendQueueBytes bounds the bytes of the events queued for one
	// connection, beside SendQueue's bound in frames: past either, the
	// slow-consumer policy applies. An event larger than the bound is still
	// queued when nothing else is. Default DefaultSendQueueBytes (64 MiB,
	// nats-server's max_pending).
	SendQueueBytes int64
	// SlowConsumer is the policy when a send queue is full; default DropOldest.
	SlowConsumer SlowConsumerPolicy

	// HandshakeTimeout bounds the wait for an accepted connection's HELLO;
	// a connection that has not sent it by then is closed and counted in
	// HubStats.HandshakeTimeouts. Default DefaultHandshakeTimeout (5 s,
	// quic-go's handshake idle timeout). Negative disables it.
	HandshakeTimeout time.Duration
	// IdleTimeout closes a connection from which nothing has arrived for
	// this long (HubStats.IdleCloses). evbench's Client sends a PING when
	// it has sent nothing for ClientConfig.KeepaliveInterval (10 s), so an
	// idle timeout must exceed that. Default DefaultIdleTimeout (30 s,
	// quic-go's MaxIdleTimeout). Negative disables it.
	IdleTimeout time.Duration
	// WriteTimeout bounds one write to a connection: a client that stops
	// reading until the transport's buffers fill blocks its writer, and
	// after WriteTimeout it is closed as a slow consumer
	// (HubStats.WriteTimeouts and ClosedSlow). Default DefaultWriteTimeout
	// (10 s, nats-server's write_deadline). Negative disables it.
	WriteTimeout time.Duration

	// MaxRooms bounds the rooms one connection may be in at once, besides
	// the rooms named by its own id; a JOIN past it is answered with
	// AckLimit and counted in HubStats.LimitRefusals. Default
	// DefaultMaxRooms.
	MaxRooms int
	// MaxNamespaces bounds the namespaces one connection may use, "/"
	// included; a JOIN into one more is answered with AckLimit. Default
	// DefaultMaxNamespaces.
	MaxNamespaces int
	// MaxPayloadBytes bounds an event's payload: an EMIT over it is not
	// delivered, is answered with an ACK of status AckLimit when it asked
	// for one, and is counted in HubStats.LimitRefusals. Names are bounded
	// by the codec (MaxNameBytes) and whole frames by the transport
	// (Caps.MaxFrame). Default DefaultMaxPayloadBytes (1 MiB,
	// nats-server's max_payload); at most MaxPayloadBytes.
	MaxPayloadBytes int
	// OnConnError, if set, is called once for each connection that ends with
	// an error other than a clean close (a malformed frame, a write error),
	// from that connection's goroutine.
	OnConnError func(id uint64, err error)
	// OnAcceptError, if set, is called from Serve with each failed Accept
	// that Serve retries (every Accept error but the listener closing or
	// ctx ending; EMFILE when file descriptors run out), before the pause,
	// in Serve's goroutine; the same failures are counted in
	// HubStats.AcceptErrors. It must not block.
	OnAcceptError func(err error)
}

// DefaultNamespace is the namespace every connection is in from its HELLO.
const DefaultNamespace = "/"

// Defaults of HubConfig's limits.
const (
	DefaultSendQueueBytes   = 64 << 20 // bytes
	DefaultHandshakeTimeout = 5 * time.Second
	DefaultIdleTimeout      = 30 * time.Second
	DefaultWriteTimeout     = 10 * time.Second
	DefaultMaxRooms         = 1024
	DefaultMaxNamespaces    = 16
	DefaultMaxPayloadBytes  = 1 << 20 // bytes
)

// withDefaults returns c with every zero field set to its default.
func (c HubConfig) withDefaults() HubConfig {
	if c.SendQueue <= 0 {
		c.SendQueue = 4096
	}
	if c.SendQueueBytes <= 0 {
		c.SendQueueBytes = DefaultSendQueueBytes
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.HandshakeTimeout, DefaultHandshakeTimeout)
	def(&c.IdleTimeout, DefaultIdleTimeout)
	def(&c.WriteTimeout, DefaultWriteTimeout)
	if c.MaxRooms <= 0 {
		c.MaxRooms = DefaultMaxRooms
	}
	if c.MaxNamespaces <= 0 {
		c.MaxNamespaces = DefaultMaxNamespaces
	}
	if c.MaxPayloadBytes <= 0 {
		c.MaxPayloadBytes = DefaultMaxPayloadBytes
	}
	c.MaxPayloadBytes = min(c.MaxPayloadBytes, MaxPayloadBytes)
	return c
}

// Errors a connection is closed with when it crosses one of HubConfig's
// deadlines; a write timeout is a slow consumer.
var (
	ErrHandshakeTimeout = errors.New("no HELLO within the handshake timeout")
	ErrIdleTimeout      = errors.New("nothing received within the idle timeout")
	ErrWriteTimeout     = fmt.Errorf("%w: a write blocked past the write timeout", ErrSlowConsumer)
)

// ErrSlowConsumer is the error a connection is closed with under the
// Disconnect policy.
var ErrSlowConsumer = errors.New("slow consumer: send queue full")

// MinReplyQueue is the least number of replies (HELLO, ACK, PONG) a
// connection's reply queue holds, whatever HubConfig.SendQueue says.
const MinReplyQueue = 256

// HubStats is a snapshot of a Hub's state and counters. A STATS frame
// carries it as a JSON object whose keys are the json tags below (unknown
// keys are ignored by readers, so counters can be added); counters count
// from the Hub's start, so a fleet takes the difference of two snapshots.
type HubStats struct {
	Conns      int `json:"conns"`      // open connections
	Namespaces int `json:"namespaces"` // namespaces with at least one room
	Rooms      int `json:"rooms"`      // rooms with at least one member, own-id rooms included
	Members    int `json:"members"`    // room memberships, own-id rooms included
	// QueueDrops counts events discarded by the slow-consumer policy.
	QueueDrops uint64 `json:"queue_drops"`
	// ReplyDrops counts replies (ACK, PONG) discarded by the policy when a
	// connection's reply queue was full too.
	ReplyDrops uint64 `json:"reply_drops"`
	// OversizeDrops counts frames a connection's transport refused as over
	// its MaxFrame; the connection stays open.
	OversizeDrops uint64 `json:"oversize_drops"`
	// AcceptErrors counts failed Accepts other than the listener closing.
	AcceptErrors uint64 `json:"accept_errors"`
	// ProtocolErrors counts connections closed because they sent a
	// malformed or unexpected frame.
	ProtocolErrors uint64 `json:"protocol_errors"`
	// ClosedClean, ClosedError and ClosedSlow count connections that ended
	// after their HELLO, by reason: cleanly (a BYE, the end of the stream,
	// the Hub closing); with an error (the transport failed, or the peer
	// sent a malformed frame, which ProtocolErrors counts as well); or
	// closed by the Disconnect slow-consumer policy.
	ClosedClean uint64 `json:"closed_clean"`
	ClosedError uint64 `json:"closed_error"`
	ClosedSlow  uint64 `json:"closed_slow"`
	// HandshakeTimeouts counts connections closed because their HELLO did
	// not arrive within HubConfig.HandshakeTimeout.
	HandshakeTimeouts uint64 `json:"handshake_timeouts"`
	// ReadTimeouts counts connections that ended because a frame had
	// started to arrive and was not complete within the transport's
	// Config.ReadTimeout (ReadFrame's error wraps ErrReadTimeout); they are
	// in ClosedError as well.
	ReadTimeouts uint64 `json:"read_timeouts"`
	// IdleCloses counts connections closed because nothing arrived from
	// them for HubConfig.IdleTimeout; they are in ClosedError as well.
	IdleCloses uint64 `json:"idle_closes"`
	// WriteTimeouts counts connections closed because one write to them
	// did not complete within HubConfig.WriteTimeout; they are slow
	// consumers, in ClosedSlow as well.
	WriteTimeouts uint64 `json:"write_timeouts"`
	// UnvalidatedDrops counts datagrams the Hub's Listeners dropped because
	// their source address was not validated (see AddressValidator).
	UnvalidatedDrops uint64 `json:"unvalidated_drops"`
	// LimitRefusals counts requests refused for crossing a per-connection
	// limit of HubConfig (rooms, namespaces, payload): a JOIN answered
	// with AckRejected, or an EMIT whose connection was closed.
	LimitRefusals uint64 `json:"limit_refusals"`
}

// ServerStats is what a STATS answer carries, as one flat JSON object: the
// Hub's settings that shape what a fleet measures, and a snapshot of its
// counters.
type ServerStats struct {
	HubStats
	// SendQueue is the Hub's per-connection send queue, in frames.
	SendQueue int `json:"send_queue"`
	// SlowConsumer is the Hub's slow-consumer policy, "drop-oldest" or
	// "disconnect".
	SlowConsumer string `json:"slow_consumer"`
	// SendQueueBytes is the Hub's per-connection send queue bound in bytes
	// (HubConfig.SendQueueBytes).
	SendQueueBytes int64 `json:"send_queue_bytes"`
	// MaxPayloadBytes, MaxRooms and MaxNamespaces are the Hub's
	// per-connection limits (HubConfig), so that a fleet can refuse a
	// scenario the server would refuse before it starts.
	MaxPayloadBytes int `json:"max_payload_bytes"`
	MaxRooms        int `json:"max_rooms"`
	MaxNamespaces   int `json:"max_namespaces"`
}

// ServerStats returns the Hub's settings and a snapshot of its counters,
// as a STATS answer carries them.
func (h *Hub) ServerStats() ServerStats {
	return ServerStats{
		HubStats: h.Stats(), SendQueue: h.cfg.SendQueue, SlowConsumer: h.cfg.SlowConsumer.String(),
		SendQueueBytes: h.cfg.SendQueueBytes, MaxPayloadBytes: h.cfg.MaxPayloadBytes,
		MaxRooms: h.cfg.MaxRooms, MaxNamespaces: h.cfg.MaxNamespaces,
	}
}

// Sub returns the counters of s minus those of base, the earlier snapshot:
// what happened between the two. Gauges (Conns, Namespaces, Rooms, Members)
// are s's own.
func (s HubStats) Sub(base HubStats) HubStats {
	s.QueueDrops -= base.QueueDrops
	s.ReplyDrops -= base.ReplyDrops
	s.OversizeDrops -= base.OversizeDrops
	s.AcceptErrors -= base.AcceptErrors
	s.ProtocolErrors -= base.ProtocolErrors
	s.ClosedClean -= base.ClosedClean
	s.ClosedError -= base.ClosedError
	s.ClosedSlow -= base.ClosedSlow
	s.HandshakeTimeouts -= base.HandshakeTimeouts
	s.ReadTimeouts -= base.ReadTimeouts
	s.IdleCloses -= base.IdleCloses
	s.WriteTimeouts -= base.WriteTimeouts
	s.UnvalidatedDrops -= base.UnvalidatedDrops
	s.LimitRefusals -= base.LimitRefusals
	return s
}

// Hub routes events between connections the way socket.io's server does:
// namespaces are independent sets of rooms; every connection is in the room
// named by its own id (decimal) in each namespace it uses; JOIN and LEAVE are
// acknowledged; an EMIT to a room is delivered as an EVENT to every member
// but the sender, stamped with the room's next offset; a connection that goes
// away leaves all its rooms, and a room without members is removed.
//
// Each connection has one reader goroutine and one writer goroutine (the
// single writer of that Conn) that drains two queues: replies (HELLO, ACK,
// PONG) first, from a queue of their own that events never fill, then
// events, bounded by HubConfig.SendQueue in frames and SendQueueBytes in
// bytes; the slow-consumer policy applies to a full queue of either kind.
// Every member of a room receives its events in offset order. The
// per-delivery path encodes each event once into a pooled,
// reference-counted buffer shared by all recipients and does not allocate
// in steady state.
//
// Everything a peer controls is bounded (HubConfig): the time to its HELLO,
// its silences, a blocked write to it, the bytes queued for it, its rooms,
// namespaces and payloads; a peer crossing a bound is closed or refused
// and counted by reason in HubStats. One goroutine per Hub (started by the
// first Serve) checks the idle and write deadlines a few times per
// timeout, so detection takes the timeout plus at most a second.
type Hub struct {
	cfg HubConfig

	mu         sync.RWMutex // guards namespaces, room membership changes, sessions, greeting, counts
	namespaces map[string]*namespace
	sessions   map[uint64]*session
	greeting   map[*Conn]struct{} // accepted connections whose HELLO has not been read
	closed     bool
	rooms      int                // rooms in all namespaces, guarded by mu
	members    int                // memberships in all rooms, guarded by mu
	validators []AddressValidator // the served Listeners that validate addresses, guarded by mu

	janitor sync.Once
	stop    chan struct{} // closed by Close: ends the janitor
	tick    atomic.Int64  // the janitor's tick count, a coarse clock for write deadlines

	nextID         atomic.Uint64
	queueDrops     atomic.Uint64
	replyDrops     atomic.Uint64
	oversizeDrops  atomic.Uint64
	acceptErrors   atomic.Uint64
	protocolErrors atomic.Uint64
	closedClean    atomic.Uint64
	closedError    atomic.Uint64
	closedSlow     atomic.Uint64
	handshakeTO    atomic.Uint64
	readTO         atomic.Uint64
	idleCloses     atomic.Uint64
	writeTO        atomic.Uint64
	limitRefusals  atomic.Uint64
	frames         sync.Pool // *outFrame
	wg             sync.WaitGroup
}

type namespace struct {
	rooms map[string]*room
}

type room struct {
	// mu makes stamping the next offset and queueing the event one step, so
	// every member receives the room's events in offset order.
	mu      sync.Mutex
	offset  uint64                     // guarded by mu
	members atomic.Pointer[[]*session] // copy-on-write; replaced under Hub.mu
	// removed is set, under Hub.mu, when the room's last member leaves and
	// it is deleted; a broadcast that found it just before then looks again.
	removed atomic.Bool
}

type roomKey struct{ ns, room string }

// NewHub returns a Hub configured by cfg.
func NewHub(cfg HubConfig) *Hub {
	h := &Hub{
		cfg: cfg.withDefaults(), namespaces: map[string]*namespace{}, sessions: map[uint64]*session{},
		greeting: map[*Conn]struct{}{}, stop: make(chan struct{}),
	}
	h.frames.New = func() any { return &outFrame{b: make([]byte, 0, 512), hub: h} }
	return h
}

// Serve accepts connections from ln until ln is closed or ctx is done, and
// serves each in its own goroutines; it then returns nil. Serve does not
// close ln. Any other Accept error (EMFILE when file descriptors run out) is
// counted in HubStats.AcceptErrors, reported to HubConfig.OnAcceptError and
// retried after a pause that doubles from 5 ms to 1 s, as net/http's server
// does.
func (h *Hub) Serve(ctx context.Context, ln Listener) error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil
	}
	if v, ok := ln.(AddressValidator); ok {
		h.validators = append(h.validators, v)
	}
	h.janitor.Do(func() {
		h.wg.Add(1)
		go func() {
			defer h.wg.Done()
			h.sweep()
		}()
	})
	h.mu.Unlock()
	var pause time.Duration
	for {
		c, err := ln.Accept(ctx)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			h.acceptErrors.Add(1)
			if h.cfg.OnAcceptError != nil {
				h.cfg.OnAcceptError(err)
			}
			pause = min(max(2*pause, 5*time.Millisecond), time.Second)
			select {
			case <-time.After(pause):
			case <-ctx.Done():
				return nil
			}
			continue
		}
		pause = 0
		h.mu.Lock()
		if h.closed {
			h.mu.Unlock()
			c.Close()
			return nil
		}
		h.greeting[&c] = struct{}{}
		h.wg.Add(1)
		h.mu.Unlock()
		go func() {
			defer h.wg.Done()
			h.serveConn(&c)
		}()
	}
}

// Close closes every connection, including those that have not sent their
// HELLO yet, and waits for their goroutines to end. The Hub accepts no
// connection afterwards.
func (h *Hub) Close() error {
	h.mu.Lock()
	if !h.closed {
		close(h.stop)
	}
	h.closed = true
	greeting := make([]Conn, 0, len(h.greeting))
	for c := range h.greeting {
		greeting = append(greeting, *c)
	}
	ss := make([]*session, 0, len(h.sessions))
	for _, s := range h.sessions {
		ss = append(ss, s)
	}
	h.mu.Unlock()
	// Close concurrently: a Conn's Close may wait for its peer (a WebSocket
	// close handshake, a QUIC linger), and those waits should overlap.
	var wg sync.WaitGroup
	for _, c := range greeting {
		wg.Go(func() { c.Close() }) // unblocks the ReadFrame waiting for its HELLO
	}
	for _, s := range ss {
		wg.Go(func() { s.close(nil) })
	}
	wg.Wait()
	h.wg.Wait()
	return nil
}

// Stats returns a snapshot of the Hub's state and counters. It takes the
// same time whatever the number of rooms: the gauges are kept as they
// change.
func (h *Hub) Stats() HubStats {
	h.mu.RLock()
	st := HubStats{Conns: len(h.sessions), Namespaces: len(h.namespaces), Rooms: h.rooms, Members: h.members}
	for _, v := range h.validators {
		st.UnvalidatedDrops += v.UnvalidatedDrops()
	}
	h.mu.RUnlock()
	st.QueueDrops = h.queueDrops.Load()
	st.ReplyDrops = h.replyDrops.Load()
	st.OversizeDrops = h.oversizeDrops.Load()
	st.AcceptErrors = h.acceptErrors.Load()
	st.ProtocolErrors = h.protocolErrors.Load()
	st.ClosedClean = h.closedClean.Load()
	st.ClosedError = h.closedError.Load()
	st.ClosedSlow = h.closedSlow.Load()
	st.HandshakeTimeouts = h.handshakeTO.Load()
	st.ReadTimeouts = h.readTO.Load()
	st.IdleCloses = h.idleCloses.Load()
	st.WriteTimeouts = h.writeTO.Load()
	st.LimitRefusals = h.limitRefusals.Load()
	return st
}

// sweep is the janitor: until Close, a few times per timeout, it closes
// the sessions that have been silent for IdleTimeout or blocked in one
// write for WriteTimeout. Readers and writers only store flags and the
// tick count; the janitor alone reads the clock.
func (h *Hub) sweep() {
	period := time.Second
	for _, d := range []time.Duration{h.cfg.IdleTimeout, h.cfg.WriteTimeout} {
		if d > 0 {
			period = min(period, d/8)
		}
	}
	period = max(period, time.Millisecond)
	t := time.NewTicker(period)
	defer t.Stop()
	// A write is late once this many ticks have passed since it started:
	// the tick it started in may have been nearly over.
	writeTicks := int64(h.cfg.WriteTimeout/period) + 1
	var idle, late []*session
	for {
		select {
		case <-h.stop:
			return
		case now := <-t.C:
			tick := h.tick.Add(1)
			idle, late = idle[:0], late[:0]
			h.mu.RLock()
			for _, s := range h.sessions {
				if s.heard.Swap(false) {
					s.lastHeard = now
				} else if h.cfg.IdleTimeout > 0 && now.Sub(s.lastHeard) >= h.cfg.IdleTimeout {
					idle = append(idle, s)
				}
				if w := s.writing.Load(); h.cfg.WriteTimeout > 0 && w != 0 && tick-w >= writeTicks {
					late = append(late, s)
				}
			}
			h.mu.RUnlock()
			for _, s := range idle {
				s.closeAsync(ErrIdleTimeout)
			}
			for _, s := range late {
				s.closeAsync(ErrWriteTimeout)
			}
		}
	}
}

// session is the server's side of one connection.
type session struct {
	hub   *Hub
	conn  Conn
	id    uint64
	ownID string
	q     chan *outFrame // events, bounded by HubConfig.SendQueue, subject to the slow-consumer policy
	ctrl  chan *outFrame // replies (HELLO, ACK, PONG), written first
	done  chan struct{}

	once          sync.Once
	closed        atomic.Bool
	disconnecting atomic.Bool  // the slow-consumer policy has started closing it
	queued        atomic.Int64 // bytes of the events in q
	rooms         []roomKey    // guarded by hub.mu; own-id rooms included
	namespaces    []string     // namespaces used, "/" first; guarded by hub.mu
	joined        int          // rooms besides own-id rooms, guarded by hub.mu

	// heard is set by the reader for every frame and cleared by the
	// janitor, which notes the time it last found it set in lastHeard
	// (the janitor's own). writing is the janitor's tick at which the
	// write in progress started, 0 when the writer is not writing.
	heard     atomic.Bool
	lastHeard time.Time
	writing   atomic.Int64
}

// outFrame is an encoded frame shared by every recipient's send queue; the
// last writer to release it returns it to the pool.
type outFrame struct {
	b    []byte
	refs atomic.Int32
	hub  *Hub
}

// maxPooledFrameBytes is the largest buffer returned to the pool: one large
// event does not pin its buffer for the life of the Hub.
const maxPooledFrameBytes = 64 << 10

func (o *outFrame) release() {
	if o.refs.Add(-1) == 0 && cap(o.b) <= maxPooledFrameBytes {
		o.hub.frames.Put(o)
	}
}

func (h *Hub) encode(f *Frame, refs int) (*outFrame, error) {
	o := h.frames.Get().(*outFrame)
	b, err := AppendFrame(o.b[:0], f)
	if err != nil {
		o.b = b
		o.refs.Store(1)
		o.release()
		return nil, err
	}
	o.b = b
	o.refs.Store(int32(refs))
	return o, nil
}

// serveConn serves *cp, which Serve entered in h.greeting.
func (h *Hub) serveConn(cp *Conn) {
	c := *cp
	var f Frame
	var late atomic.Bool
	var t *time.Timer
	if h.cfg.HandshakeTimeout > 0 {
		t = time.AfterFunc(h.cfg.HandshakeTimeout, func() {
			late.Store(true)
			c.Close() // unblocks the ReadFrame below
		})
	}
	p, err := c.ReadFrame()
	if t != nil && !t.Stop() && late.Load() {
		h.handshakeTO.Add(1)
		err = ErrHandshakeTimeout
	}
	h.mu.Lock()
	delete(h.greeting, cp) // from here on, register refuses c once the Hub is closed
	h.mu.Unlock()
	if err == nil {
		err = DecodeFrame(p, &f)
	}
	if err == nil && f.Type != FrameHello {
		err = fmt.Errorf("%w: first frame is %v, want HELLO", ErrMalformed, f.Type)
	}
	if err != nil {
		c.Close()
		h.connError(0, err)
		return
	}
	s, err := h.register(c, f.Sender)
	if err != nil {
		if errors.Is(err, ErrIDInUse) {
			// Say why before closing: the writer loop has not started, so
			// this goroutine is the Conn's only writer. The write is
			// bounded by the Close that follows it at worst.
			if b, encErr := AppendFrame(nil, &Frame{Type: FrameBye, Status: ByeIDInUse}); encErr == nil && c.WriteFrame(b) == nil {
				Flush(c)
			}
		}
		c.Close()
		h.connError(f.Sender, err)
		return
	}
	h.wg.Add(1) // safe: serveConn itself is counted, so Close is still waiting
	go func() {
		defer h.wg.Done()
		s.writeLoop()
	}()
	s.reply(&Frame{Type: FrameHello, Sender: s.id})
	err = s.readLoop()
	s.close(err)
}

// connError counts and reports the error that ended a connection; a clean
// end (end of stream, or the connection closed on our side) is neither.
func (h *Hub) connError(id uint64, err error) {
	if errors.Is(err, net.ErrClosed) || isEOF(err) {
		return
	}
	switch {
	case errors.Is(err, ErrMalformed) || errors.Is(err, ErrFrameTooLarge):
		h.protocolErrors.Add(1)
	case errors.Is(err, ErrReadTimeout):
		h.readTO.Add(1)
	case errors.Is(err, ErrIdleTimeout):
		h.idleCloses.Add(1)
	case errors.Is(err, ErrWriteTimeout):
		h.writeTO.Add(1)
	}
	if h.cfg.OnConnError != nil {
		h.cfg.OnConnError(id, err)
	}
}

// register creates the session for a HELLO. id 0 asks for a fresh id; a
// nonzero id already connected is refused.
func (h *Hub) register(c Conn, id uint64) (*session, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, net.ErrClosed
	}
	if id == 0 {
		for id == 0 || h.sessions[id] != nil {
			id = h.nextID.Add(1) | 1<<63 // server-assigned ids keep the top bit set
		}
	} else if h.sessions[id] != nil {
		return nil, fmt.Errorf("hub: client id %d: %w", id, ErrIDInUse)
	}
	s := &session{
		hub: h, conn: c, id: id, ownID: strconv.FormatUint(id, 10),
		q: make(chan *outFrame, h.cfg.SendQueue), ctrl: make(chan *outFrame, max(h.cfg.SendQueue, MinReplyQueue)),
		done: make(chan struct{}), lastHeard: time.Now(), namespaces: []string{DefaultNamespace},
	}
	h.sessions[id] = s
	h.joinLocked(s, DefaultNamespace, s.ownID)
	return s, nil
}

func (s *session) readLoop() error {
	h := s.hub
	var f Frame
	for {
		p, err := s.conn.ReadFrame()
		if err != nil {
			return err
		}
		if !s.heard.Load() {
			s.heard.Store(true) // a load first: the janitor's line is not dirtied per frame
		}
		if err := DecodeFrame(p, &f); err != nil {
			return err
		}
		switch f.Type {
		case FrameHello: // a retried HELLO over a datagram transport
			s.reply(&Frame{Type: FrameHello, Sender: s.id})
		case FrameJoin, FrameLeave:
			status := AckOK
			if len(f.Room) == 0 || len(f.Namespace) == 0 {
				status = AckRejected
			} else if f.Type == FrameJoin {
				status = h.join(s, string(f.Namespace), string(f.Room))
			} else {
				h.leave(s, string(f.Namespace), string(f.Room))
			}
			s.reply(&Frame{Type: FrameAck, AckID: f.AckID, Status: status})
		case FrameEmit:
			status := AckOK
			if len(f.Payload) > h.cfg.MaxPayloadBytes {
				status = AckLimit
				h.limitRefusals.Add(1)
			} else {
				h.broadcast(s, &f)
			}
			if f.AckID != 0 {
				s.reply(&Frame{Type: FrameAck, AckID: f.AckID, Status: status})
			}
		case FramePing:
			s.reply(&Frame{Type: FramePong, AckID: f.AckID, SentNs: f.SentNs})
		case FrameStats:
			s.replyStats(f.AckID)
		case FrameBye:
			return s.readToEnd()
		default:
			return fmt.Errorf("%w: a client may not send %v", ErrMalformed, f.Type)
		}
	}
}

// ByeGrace is how long the Hub waits, after a client's BYE, for the client
// to close its side before closing the connection itself.
const ByeGrace = 500 * time.Millisecond

// readToEnd reads after a client's BYE until its end of stream, discarding
// anything more, so that the client, not the server, closes first: a
// transport whose Close lingers for the peer (QUIC sends its FIN and waits)
// then sees the peer go at once instead of both sides waiting out the
// linger. A client that does not close within ByeGrace is closed.
func (s *session) readToEnd() error {
	t := time.AfterFunc(ByeGrace, func() { s.close(nil) })
	defer t.Stop()
	for {
		if _, err := s.conn.ReadFrame(); err != nil {
			if isEOF(err) {
				return nil
			}
			return err
		}
	}
}

// broadcast delivers an EMIT to every member of its room but the sender.
func (h *Hub) broadcast(s *session, f *Frame) {
	r := h.lookup(f.Namespace, f.Room)
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	members := *r.members.Load()
	n := len(members)
	for _, m := range members {
		if m == s {
			n--
		}
	}
	if n == 0 {
		return
	}
	r.offset++
	ev := *f
	ev.Type, ev.Sender, ev.AckID, ev.Offset = FrameEvent, s.id, 0, r.offset
	o, err := h.encode(&ev, n)
	if err != nil {
		return // unreachable: a decoded frame re-encodes within the limits
	}
	for _, m := range members {
		if m != s {
			m.enqueue(o)
		}
	}
}

// lookup finds a room. A room found as its last member leaves may be
// recreated at once by a join; a lookup that sees it removed tries again,
// so that an event is not sent to the empty room of a moment ago.
func (h *Hub) lookup(ns, name []byte) *room {
	for {
		h.mu.RLock()
		var r *room
		if n := h.namespaces[string(ns)]; n != nil {
			r = n.rooms[string(name)]
		}
		h.mu.RUnlock()
		if r == nil || !r.removed.Load() {
			return r
		}
	}
}

// reply queues a control frame for this connection on its own queue, which
// events never fill, so a JOIN ack is not lost behind a flood of events. A
// client that lets its reply queue fill up is a slow consumer too: the
// policy applies to that queue as well, and its drops are counted in
// HubStats.ReplyDrops (a dropped emit ACK shows as an ack timeout).
func (s *session) reply(f *Frame) {
	o, err := s.hub.encode(f, 1)
	if err != nil {
		return
	}
	s.push(s.ctrl, o, &s.hub.replyDrops)
}

// replyStats answers a STATS request with the Hub's counters as JSON.
func (s *session) replyStats(id uint64) {
	b, err := json.Marshal(s.hub.ServerStats())
	if err != nil {
		return // ServerStats always marshals
	}
	s.reply(&Frame{Type: FrameStats, AckID: id, Payload: b})
}

// closeAsync closes the session from a goroutine the Hub waits for, so a
// slow Close (a WebSocket close handshake) never blocks the caller.
func (s *session) closeAsync(err error) {
	s.hub.wg.Add(1) // safe: the caller runs in a counted goroutine
	go func() {
		defer s.hub.wg.Done()
		s.close(err)
	}()
}

// enqueue puts an event on the send queue, within both of its bounds:
// SendQueue frames and SendQueueBytes bytes. Concurrent broadcasts reserve
// their bytes before queueing, so the byte bound holds exactly, except
// that an event is queued whatever its size when it would be alone.
func (s *session) enqueue(o *outFrame) {
	n := int64(len(o.b))
	limit := s.hub.cfg.SendQueueBytes
	for !s.closed.Load() {
		if after := s.queued.Add(n); after > limit && after != n {
			s.queued.Add(-n)
			if !s.overflow(s.q, &s.hub.queueDrops) {
				break
			}
			continue
		}
		select {
		case s.q <- o:
			return
		default:
		}
		s.queued.Add(-n)
		if !s.overflow(s.q, &s.hub.queueDrops) {
			break
		}
	}
	o.release()
}

// push puts a reply o on q, applying the slow-consumer policy when q is
// full. It never blocks: each pass either queues o or discards one frame,
// counted in drops.
func (s *session) push(q chan *outFrame, o *outFrame, drops *atomic.Uint64) {
	for !s.closed.Load() {
		select {
		case q <- o:
			return
		default:
		}
		if !s.overflow(q, drops) {
			break
		}
	}
	o.release()
}

// overflow applies the slow-consumer policy to a full queue q. Under
// DropOldest it discards q's oldest frame and reports true: try again.
// Under Disconnect it counts the new frame as dropped, starts closing the
// session and reports false: the caller drops the new frame.
func (s *session) overflow(q chan *outFrame, drops *atomic.Uint64) bool {
	if s.hub.cfg.SlowConsumer == Disconnect {
		drops.Add(1) // the new frame
		if s.disconnecting.CompareAndSwap(false, true) {
			s.closeAsync(ErrSlowConsumer)
		}
		return false
	}
	select {
	case old := <-q: // drop the oldest to make room
		drops.Add(1)
		if q == s.q {
			s.queued.Add(-int64(len(old.b)))
		}
		old.release()
	default: // emptied meanwhile by the writer
	}
	return true
}

// writeLoop is the connection's single writer: it sends queued frames,
// control frames first, and flushes buffered transports whenever both
// queues run empty.
func (s *session) writeLoop() {
	for {
		var o *outFrame
		event := false
		select {
		case o = <-s.ctrl:
		default:
			select {
			case o = <-s.ctrl:
			case o = <-s.q:
				event = true
			case <-s.done:
				s.releaseQueued()
				return
			}
		}
		var err error
		s.writing.Store(max(s.hub.tick.Load(), 1))
		if event {
			s.queued.Add(-int64(len(o.b)))
			err = WriteEvent(s.conn, o.b) // the only frames a transport may drop
		} else {
			err = s.conn.WriteFrame(o.b)
		}
		o.release()
		if errors.Is(err, ErrFrameTooLarge) {
			// Over this transport's limit (a datagram path below its usual
			// MTU): the frame is dropped and counted, the connection stays.
			s.hub.oversizeDrops.Add(1)
			err = nil
		}
		if err == nil && len(s.q) == 0 && len(s.ctrl) == 0 {
			err = Flush(s.conn)
		}
		s.writing.Store(0)
		if err != nil {
			s.close(err)
			s.releaseQueued()
			return
		}
	}
}

// releaseQueued returns the frames still queued to the pool.
func (s *session) releaseQueued() {
	for {
		select {
		case o := <-s.q:
			o.release()
		case o := <-s.ctrl:
			o.release()
		default:
			return
		}
	}
}

// close ends the session once: it leaves every room, closes the Conn and
// stops the writer. err nil or a clean end of stream is not reported.
func (s *session) close(err error) {
	s.once.Do(func() {
		h := s.hub
		h.mu.Lock()
		s.closed.Store(true)
		for _, k := range s.rooms {
			h.removeMemberLocked(s, k)
		}
		s.rooms = nil
		// Counted under the lock, so that Stats shows the session gone
		// and its reason counted at once.
		switch {
		case err == nil || errors.Is(err, net.ErrClosed) || isEOF(err):
			h.closedClean.Add(1)
		case errors.Is(err, ErrSlowConsumer): // ErrWriteTimeout included
			h.closedSlow.Add(1)
		default:
			h.closedError.Add(1)
		}
		delete(h.sessions, s.id)
		h.mu.Unlock()
		s.conn.Close()
		close(s.done)
		if err != nil {
			h.connError(s.id, err)
		}
	})
}

// join puts s in room name of namespace ns and returns the JOIN's ACK
// status: AckLimit, counted in LimitRefusals, when it would take s past
// HubConfig.MaxRooms or MaxNamespaces.
func (h *Hub) join(s *session, ns, name string) uint8 {
	h.mu.Lock()
	defer h.mu.Unlock()
	if s.closed.Load() {
		return AckOK // a JOIN that raced the disconnect must not leave a member behind
	}
	newNS := !slices.Contains(s.namespaces, ns)
	newRoom := name != s.ownID && !s.inRoom(roomKey{ns, name})
	if newNS && len(s.namespaces) >= h.cfg.MaxNamespaces || newRoom && s.joined >= h.cfg.MaxRooms {
		h.limitRefusals.Add(1)
		return AckLimit
	}
	if newNS {
		s.namespaces = append(s.namespaces, ns)
		h.joinLocked(s, ns, s.ownID) // own-id room in every namespace used
	}
	h.joinLocked(s, ns, name)
	return AckOK
}

// inRoom reports whether s is in the room k; the caller holds Hub.mu.
func (s *session) inRoom(k roomKey) bool { return slices.Contains(s.rooms, k) }

func (h *Hub) joinLocked(s *session, ns, name string) {
	k := roomKey{ns, name}
	if s.inRoom(k) {
		return // joining twice is a no-op, as in socket.io
	}
	n := h.namespaces[ns]
	if n == nil {
		n = &namespace{rooms: map[string]*room{}}
		h.namespaces[ns] = n
	}
	r := n.rooms[name]
	if r == nil {
		r = &room{}
		r.members.Store(&[]*session{})
		n.rooms[name] = r
		h.rooms++
	}
	old := *r.members.Load()
	members := make([]*session, len(old), len(old)+1)
	copy(members, old)
	members = append(members, s)
	r.members.Store(&members)
	h.members++
	s.rooms = append(s.rooms, k)
	if name != s.ownID {
		s.joined++
	}
}

func (h *Hub) leave(s *session, ns, name string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	k := roomKey{ns, name}
	if i := slices.Index(s.rooms, k); i >= 0 {
		s.rooms = slices.Delete(s.rooms, i, i+1)
		if name != s.ownID {
			s.joined--
		}
		h.removeMemberLocked(s, k)
	}
}

func (h *Hub) removeMemberLocked(s *session, k roomKey) {
	n := h.namespaces[k.ns]
	if n == nil {
		return
	}
	r := n.rooms[k.room]
	if r == nil {
		return
	}
	old := *r.members.Load()
	members := make([]*session, 0, len(old))
	for _, m := range old {
		if m != s {
			members = append(members, m)
		}
	}
	h.members -= len(old) - len(members)
	if len(members) == 0 {
		r.removed.Store(true)
		delete(n.rooms, k.room)
		h.rooms--
		if len(n.rooms) == 0 {
			delete(h.namespaces, k.ns)
		}
	}
	r.members.Store(&members)
}
