package bench

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/evbench/evbench/transports"
)

// Reconnecting. A fleet client whose connection ends without the harness
// ending it (the server went away, or closed it) is counted in
// Result.Disconnects and then dialled again, with the same client id, and
// joins its rooms again. Its dials are paced by an exponential backoff
// from ReconnectMinBackoff doubling to ReconnectMaxBackoff, each wait
// jittered (between half of the backoff and all of it) by a generator
// seeded from the run's seed and the client's index, so that a run's
// reconnect schedule is reproducible. It goes on until the measurement
// window and the drain have ended (their bound, not an early end of the
// drain) or the harness closes the fleet, whichever is first. Every dial
// counts in Result.ReconnectAttempts, every dial that connected and had all
// of the client's joins acknowledged in Result.Reconnects. Disconnects
// counts the connections that ended after they were in all of their rooms:
// an attempt whose connection fails before its joins are done is a failed
// attempt, not one more disconnect. A reconnection's
// set-up time is not in the connect percentiles, which describe the
// fleet's first connections.
//
// While a client is away it is in none of its rooms: the events sent then
// do not count it as expected. A publisher that is away does not emit: each
// measured slot that falls while it is away is counted as a send error
// (Result.SendErrors: not sent, owing no delivery), not as a slot not sent,
// which would mark the row saturated as if the generator had fallen behind.
//
// Exact accounting across a rejoin. A publisher counts an event's expected
// deliveries as the room's acknowledged members when it sends, so a
// rejoining client counts from the moment its join is acknowledged and
// recorded. The server, though, adds it to the room a little earlier (when
// it handles the JOIN, before the acknowledgement has come back), so an
// event sent in between reaches it without having counted it. To tell
// those apart, each room's member count carries an epoch that every rejoin
// raises (roomState); a publisher notes, per room, the first sequence
// number it sent under each epoch it saw (epochLog); a rejoined client
// records an event only if its publisher sent it under the client's rejoin
// epoch or a later one. The events it ignores were not expected of it, and
// they are not counted as received either.

// ReconnectMinBackoff is the first wait before a client is dialled again
// after its connection ended; each failed attempt doubles the wait, up to
// ReconnectMaxBackoff. A wait is jittered to between half of it and all of
// it.
const ReconnectMinBackoff = 50 * time.Millisecond

// ReconnectMaxBackoff bounds the wait between two reconnect attempts of a
// client.
const ReconnectMaxBackoff = time.Second

// errAway is the error of a publisher's slot that fell while its client
// was away (reconnecting): it is counted as a send error.
var errAway = errors.New("the publisher's client is reconnecting")

// roomState is one room's acknowledged members and membership epoch,
// packed in one word so that a publisher reads both at one instant: the
// low 32 bits count the members, the high 32 bits the rejoins so far.
type roomState struct{ word atomic.Uint64 }

const (
	membersMask = 1<<32 - 1
	epochUnit   = 1 << 32
)

// read returns the room's members and epoch at one instant.
func (s *roomState) read() (members int64, epoch uint64) {
	w := s.word.Load()
	return int64(w & membersMask), w >> 32
}

// join adds one member; a rejoin (bump) also raises the epoch. It returns
// the epoch from which the new member counts.
func (s *roomState) join(bump bool) (epoch uint64) {
	d := uint64(1)
	if bump {
		d += epochUnit
	}
	return s.word.Add(d) >> 32
}

// leave takes one member away; the room must have one.
func (s *roomState) leave() { s.word.Add(^uint64(0)) }

// epochMark says that a publisher's events to a room from sequence number
// seq on were counted under membership epoch epoch or a later one.
type epochMark struct{ epoch, seq uint64 }

// epochLog is one publisher's epochMarks for one room, in increasing
// order. Only the publisher appends (add); receivers read concurrently
// (counted). An append writes beyond the length readers know of and then
// publishes the longer slice, so a reader never sees an element being
// written.
type epochLog struct {
	last  uint64 // the latest epoch added; publisher only
	marks atomic.Pointer[[]epochMark]
}

// note records that the publisher's event seq to the room is counted under
// epoch; only a change of epoch is stored. Call it before the event is
// written.
func (l *epochLog) note(epoch, seq uint64) {
	if epoch == l.last {
		return
	}
	l.last = epoch
	var s []epochMark
	if p := l.marks.Load(); p != nil {
		s = *p
	}
	s = append(s, epochMark{epoch, seq})
	l.marks.Store(&s)
}

// counted reports whether the publisher's event seq to the room counted a
// member that joined at epoch from: whether it was sent under epoch from
// or a later one. Events sent before any mark were sent under epoch 0.
func (l *epochLog) counted(from, seq uint64) bool {
	if from == 0 {
		return true
	}
	p := l.marks.Load()
	if p == nil {
		return false
	}
	s := *p
	k := sort.Search(len(s), func(k int) bool { return s[k].epoch >= from })
	return k < len(s) && seq >= s[k].seq
}

// testHookRejoined, when not nil, is called by a rejoining client i once
// the server has acknowledged a join and before the join is counted: a test
// widens that gap with it. It is nil outside tests.
var testHookRejoined func(i int)

// ignoreAll is a fleet client's cutoff for a room whose join is under way:
// no event of that room is recorded until the join is acknowledged.
const ignoreAll = ^uint64(0)

// fleetClient is one simulated client, the rooms it joins and its
// connections.
type fleetClient struct {
	i     int
	rooms []int // room indexes
	// live is the connection while it is in all of rooms; nil while the
	// client is away (its connection ended and it has not rejoined yet).
	live atomic.Pointer[transports.Client]
	// from holds, per entry of rooms, the membership epoch from which the
	// client counts (0 for its first joins), ignoreAll while it joins.
	from []atomic.Uint64
	// logs holds, per entry of rooms, the epochs under which the client,
	// if it publishes, sent its events there (nil for a non-publisher).
	logs []epochLog

	mu     sync.Mutex           // guards the fields below
	conns  []*transports.Client // every connection made, the latest last
	closed bool                 // the harness has closed the client
}

// position returns the entry of fc.rooms that is room, or -1.
func (fc *fleetClient) position(room uint32) int {
	for j, r := range fc.rooms {
		if r == int(room) {
			return j
		}
	}
	return -1
}

// adopt records c as the client's latest connection, unless the harness
// has closed the client: it then closes c and returns false.
func (fc *fleetClient) adopt(c *transports.Client) bool {
	fc.mu.Lock()
	if fc.closed {
		fc.mu.Unlock()
		c.Close()
		return false
	}
	fc.conns = append(fc.conns, c)
	fc.mu.Unlock()
	return true
}

// close marks the client closed and closes its latest connection.
func (fc *fleetClient) close() {
	fc.mu.Lock()
	fc.closed = true
	var c *transports.Client
	if n := len(fc.conns); n > 0 {
		c = fc.conns[n-1]
	}
	fc.mu.Unlock()
	if c != nil {
		c.Close()
	}
}

// pendingAcks is the number of emits, over all of the client's
// connections, whose ACK has not arrived.
func (fc *fleetClient) pendingAcks() int {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	n := 0
	for _, c := range fc.conns {
		n += c.PendingAcks()
	}
	return n
}

// dial connects client fc with its id and joins its rooms, each counted
// from its acknowledgement on (a rejoin raises the room's epoch). It
// returns the connection with every join done; on an error the joins made
// are taken back and the connection is closed.
func (r *run) dial(ctx context.Context, addr string, fc *fleetClient, rejoin bool) (*transports.Client, error) {
	i := fc.i
	ns := Namespace
	t0 := time.Now()
	c, err := transports.Dial(ctx, r.tr, addr, transports.ClientConfig{
		ID:      uint64(i) + 1,
		Clock:   r.clk.Now,
		OnEvent: func(f *transports.Frame, recvNs int64) { r.onEvent(fc, f, recvNs) },
		OnAck:   func(rtt time.Duration) { r.rec.RecordAck(i, rtt) },
	})
	if err != nil {
		return nil, fmt.Errorf("client %d: %w", i, err)
	}
	if !rejoin {
		r.rec.RecordConnect(time.Since(t0))
	}
	if !fc.adopt(c) {
		return nil, fmt.Errorf("client %d: %w", i, context.Canceled)
	}
	for j, room := range fc.rooms {
		fc.from[j].Store(ignoreAll)
		if err := c.Join(ctx, ns, roomName(room)); err != nil {
			for _, done := range fc.rooms[:j] {
				r.members[done].leave()
			}
			c.Close()
			return nil, fmt.Errorf("client %d: join %s: %w", i, roomName(room), err)
		}
		if rejoin && testHookRejoined != nil {
			testHookRejoined(i)
		}
		fc.from[j].Store(r.members[room].join(rejoin))
	}
	fc.live.Store(c)
	return c, nil
}

// onEvent records an EVENT that client fc received at recvNs: an event of
// the run's namespace and rooms, unless it was sent before fc's (re)join of
// its room was counted.
func (r *run) onEvent(fc *fleetClient, f *transports.Frame, recvNs int64) {
	room, ok := r.roomIndex[string(f.Room)]
	if !ok || string(f.Namespace) != Namespace {
		return
	}
	if j := fc.position(room); j >= 0 {
		if from := fc.from[j].Load(); from != 0 {
			p := int(f.Sender) - 1
			if from == ignoreAll || p < 0 || p >= len(r.clients) || !r.countedFor(p, room, from, f.Seq) {
				return
			}
		}
	}
	r.rec.RecordDelivery(&Delivery{
		Receiver: uint32(fc.i), Room: room, Sender: f.Sender, Seq: f.Seq,
		IntendedNs: f.IntendedNs, SentNs: f.SentNs, RecvNs: recvNs, PayloadBytes: len(f.Payload),
	})
}

// countedFor reports whether publisher p's event seq to room counted the
// members that joined at epoch from.
func (r *run) countedFor(p int, room uint32, from, seq uint64) bool {
	pub := r.clients[p]
	if pub == nil || pub.logs == nil {
		return false
	}
	j := pub.position(room)
	return j >= 0 && pub.logs[j].counted(from, seq)
}

// watch follows client fc from its first connection c: whenever a
// connection ends, fc leaves its rooms, and unless the harness ended it the
// end is counted and fc reconnects. It returns when the harness has closed
// the fleet or reconnecting has stopped.
func (r *run) watch(addr string, fc *fleetClient, c *transports.Client) {
	rng := rand.New(rand.NewPCG(uint64(r.sc.Seed), uint64(fc.i)<<1|1))
	for c != nil {
		<-c.Done()
		fc.live.Store(nil)
		for _, room := range fc.rooms {
			r.members[room].leave()
		}
		if r.closing.Load() {
			return
		}
		r.noteLost(fc.i, c.Err())
		c = r.reconnect(addr, fc, rng)
	}
}

// noteLost counts a connection of client i that ended with err without the
// harness ending it.
func (r *run) noteLost(i int, err error) {
	r.lost.Lock()
	defer r.lost.Unlock()
	r.lost.n++
	if r.lost.clients == nil {
		r.lost.clients = map[int]bool{}
	}
	r.lost.clients[i] = true
	if r.lost.first == nil {
		r.lost.first = fmt.Errorf("client %d: %w", i, err)
	}
}

// reconnect dials client fc again, with backoff, until it is connected
// and has rejoined its rooms (it returns the connection), or until the
// window and the drain have ended or the harness closes the fleet (it
// returns nil).
func (r *run) reconnect(addr string, fc *fleetClient, rng *rand.Rand) *transports.Client {
	backoff := ReconnectMinBackoff
	wait := time.NewTimer(time.Hour)
	defer wait.Stop()
	for {
		d := backoff/2 + time.Duration(rng.Int64N(int64(backoff/2)+1))
		wait.Reset(d)
		select {
		case <-wait.C:
		case <-r.life.Done():
			return nil
		}
		ctx, cancel := r.attemptContext()
		if ctx == nil {
			return nil
		}
		r.reconnectAttempts.Add(1)
		c, err := r.dial(ctx, addr, fc, true)
		cancel()
		if err == nil {
			r.reconnects.Add(1)
			return c
		}
		if r.life.Err() != nil {
			return nil
		}
		backoff = min(2*backoff, ReconnectMaxBackoff)
	}
}

// attemptContext bounds one reconnect attempt: by ConnectTimeout, the end
// of the window and drain, and the fleet's life. It returns a nil context
// when no attempt may start any more.
func (r *run) attemptContext() (context.Context, context.CancelFunc) {
	if r.life.Err() != nil {
		return nil, nil
	}
	timeout := r.sc.ConnectTimeout
	if until := r.reconnectUntil.Load(); until != 0 {
		left := time.Duration(until - r.clk.Now())
		if left <= 0 {
			return nil, nil
		}
		timeout = min(timeout, left)
	}
	return context.WithTimeout(r.life, timeout)
}
