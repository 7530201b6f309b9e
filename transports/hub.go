package transports

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
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

// HubConfig configures a Hub. The zero value works.
type HubConfig struct {
	// SendQueue is how many events each connection's send queue holds;
	// default 4096. Its reply queue (HELLO, ACK, PONG) holds as many, and
	// at least MinReplyQueue.
	SendQueue int
	// SlowConsumer is the policy when a send queue is full; default DropOldest.
	SlowConsumer SlowConsumerPolicy
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
}

// ServerStats returns the Hub's settings and a snapshot of its counters,
// as a STATS answer carries them.
func (h *Hub) ServerStats() ServerStats {
	return ServerStats{HubStats: h.Stats(), SendQueue: h.cfg.SendQueue, SlowConsumer: h.cfg.SlowConsumer.String()}
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
// events, bounded by HubConfig.SendQueue; the slow-consumer policy applies
// to a full queue of either kind. Every member of a room receives
// its events in offset order. The per-delivery path encodes each event once
// into a pooled, reference-counted buffer shared by all recipients and does
// not allocate in steady state.
type Hub struct {
	cfg HubConfig

	mu         sync.RWMutex // guards namespaces, room membership changes, sessions, greeting
	namespaces map[string]*namespace
	sessions   map[uint64]*session
	greeting   map[*Conn]struct{} // accepted connections whose HELLO has not been read
	closed     bool

	nextID         atomic.Uint64
	queueDrops     atomic.Uint64
	replyDrops     atomic.Uint64
	oversizeDrops  atomic.Uint64
	acceptErrors   atomic.Uint64
	protocolErrors atomic.Uint64
	closedClean    atomic.Uint64
	closedError    atomic.Uint64
	closedSlow     atomic.Uint64
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
	if cfg.SendQueue <= 0 {
		cfg.SendQueue = 4096
	}
	h := &Hub{cfg: cfg, namespaces: map[string]*namespace{}, sessions: map[uint64]*session{}, greeting: map[*Conn]struct{}{}}
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

// Stats returns a snapshot of the Hub's state and counters.
func (h *Hub) Stats() HubStats {
	h.mu.RLock()
	defer h.mu.RUnlock()
	st := HubStats{Conns: len(h.sessions), Namespaces: len(h.namespaces)}
	for _, ns := range h.namespaces {
		st.Rooms += len(ns.rooms)
		for _, r := range ns.rooms {
			st.Members += len(*r.members.Load())
		}
	}
	st.QueueDrops = h.queueDrops.Load()
	st.ReplyDrops = h.replyDrops.Load()
	st.OversizeDrops = h.oversizeDrops.Load()
	st.AcceptErrors = h.acceptErrors.Load()
	st.ProtocolErrors = h.protocolErrors.Load()
	st.ClosedClean = h.closedClean.Load()
	st.ClosedError = h.closedError.Load()
	st.ClosedSlow = h.closedSlow.Load()
	return st
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
	disconnecting atomic.Bool // the slow-consumer policy has started closing it
	rooms         []roomKey   // guarded by hub.mu
}

// outFrame is an encoded frame shared by every recipient's send queue; the
// last writer to release it returns it to the pool.
type outFrame struct {
	b    []byte
	refs atomic.Int32
	hub  *Hub
}

func (o *outFrame) release() {
	if o.refs.Add(-1) == 0 {
		o.hub.frames.Put(o)
	}
}

func (h *Hub) encode(f *Frame, refs int) (*outFrame, error) {
	o := h.frames.Get().(*outFrame)
	b, err := AppendFrame(o.b[:0], f)
	if err != nil {
		h.frames.Put(o)
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
	p, err := c.ReadFrame()
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
	if errors.Is(err, ErrMalformed) || errors.Is(err, ErrFrameTooLarge) {
		h.protocolErrors.Add(1)
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
		done: make(chan struct{}),
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
				h.join(s, string(f.Namespace), string(f.Room))
			} else {
				h.leave(s, string(f.Namespace), string(f.Room))
			}
			s.reply(&Frame{Type: FrameAck, AckID: f.AckID, Status: status})
		case FrameEmit:
			h.broadcast(s, &f)
			if f.AckID != 0 {
				s.reply(&Frame{Type: FrameAck, AckID: f.AckID})
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

// enqueue puts an event on the send queue.
func (s *session) enqueue(o *outFrame) { s.push(s.q, o, &s.hub.queueDrops) }

// push puts o on q, applying the slow-consumer policy when q is full. It
// never blocks: each pass either queues o or discards one frame, counted in
// drops.
func (s *session) push(q chan *outFrame, o *outFrame, drops *atomic.Uint64) {
	for !s.closed.Load() {
		select {
		case q <- o:
			return
		default:
		}
		if s.hub.cfg.SlowConsumer == Disconnect {
			drops.Add(1) // o itself
			if s.disconnecting.CompareAndSwap(false, true) {
				s.closeAsync(ErrSlowConsumer)
			}
			break
		}
		select {
		case old := <-q: // drop the oldest to make room
			drops.Add(1)
			old.release()
		default:
		}
	}
	o.release()
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
		if event {
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
		case errors.Is(err, ErrSlowConsumer):
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

func (h *Hub) join(s *session, ns, name string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if s.closed.Load() {
		return // a JOIN that raced the disconnect must not leave a member behind
	}
	if ns != DefaultNamespace {
		h.joinLocked(s, ns, s.ownID) // own-id room in every namespace used
	}
	h.joinLocked(s, ns, name)
}

func (h *Hub) joinLocked(s *session, ns, name string) {
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
	}
	old := *r.members.Load()
	for _, m := range old {
		if m == s {
			return // joining twice is a no-op, as in socket.io
		}
	}
	members := make([]*session, len(old), len(old)+1)
	copy(members, old)
	members = append(members, s)
	r.members.Store(&members)
	s.rooms = append(s.rooms, roomKey{ns, name})
}

func (h *Hub) leave(s *session, ns, name string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	k := roomKey{ns, name}
	for i, sk := range s.rooms {
		if sk == k {
			s.rooms = append(s.rooms[:i], s.rooms[i+1:]...)
			h.removeMemberLocked(s, k)
			return
		}
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
	if len(members) == 0 {
		r.removed.Store(true)
		delete(n.rooms, k.room)
		if len(n.rooms) == 0 {
			delete(h.namespaces, k.ns)
		}
	}
	r.members.Store(&members)
}
