package transports

import (
	"bytes"
	"context"
	"errors"
	"maps"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fuzzWait bounds each wait of the Client fuzz targets for an event that
// must come (the read loop ending or reaching the end of the frames); it
// only turns a hang into a failure.
const fuzzWait = 10 * time.Second

// fuzzHelloID is the client id the fuzzConn's HELLO answer assigns.
const fuzzHelloID = 77

// fuzzConn is a Conn that plays a server: it answers the Client's HELLO,
// then waits for start and returns frames one per ReadFrame, in a buffer it
// reuses and scribbles over before each read (so a Client that keeps a
// frame's bytes past the next read sees garbage). After the last frame it
// closes drained and blocks until Close. WriteFrame records what the Client
// writes.
type fuzzConn struct {
	frames  [][]byte
	start   chan struct{} // closed by the test when the frames may flow
	drained chan struct{} // closed when ReadFrame is called after the last frame
	closed  chan struct{}
	hello   chan struct{} // closed when the Client's HELLO was written

	helloOnce, closeOnce, drainOnce sync.Once

	// Read side only; read by the test after drained or the Client's Done.
	helloSent bool
	next      int // frames returned so far
	buf       []byte

	mu     sync.Mutex
	writes [][]byte // copies of the frames the Client wrote
}

func newFuzzConn(frames [][]byte) *fuzzConn {
	return &fuzzConn{
		frames: frames, start: make(chan struct{}), drained: make(chan struct{}),
		closed: make(chan struct{}), hello: make(chan struct{}),
	}
}

func (c *fuzzConn) ReadFrame() ([]byte, error) {
	if !c.helloSent {
		select {
		case <-c.hello:
		case <-c.closed:
			return nil, net.ErrClosed
		}
		c.helloSent = true
		return AppendFrame(c.buf[:0], &Frame{Type: FrameHello, Sender: fuzzHelloID})
	}
	select {
	case <-c.start:
	case <-c.closed:
		return nil, net.ErrClosed
	}
	if c.next == len(c.frames) {
		c.drainOnce.Do(func() { close(c.drained) })
		<-c.closed
		return nil, net.ErrClosed
	}
	for i := range c.buf {
		c.buf[i] = 0xa5 // the previous frame is no longer valid
	}
	c.buf = append(c.buf[:0], c.frames[c.next]...)
	c.next++
	return c.buf, nil
}

func (c *fuzzConn) WriteFrame(p []byte) error {
	select {
	case <-c.closed:
		return net.ErrClosed
	default:
	}
	if len(p) > 1 && FrameType(p[1]) == FrameHello {
		c.helloOnce.Do(func() { close(c.hello) })
	}
	c.mu.Lock()
	c.writes = append(c.writes, slices.Clone(p))
	c.mu.Unlock()
	return nil
}

func (c *fuzzConn) Close() error {
	c.closeOnce.Do(func() { close(c.closed) })
	return nil
}

func (c *fuzzConn) RemoteAddr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }

// fuzzTransport dials one prepared Conn, with the promises of a stream
// transport (so the Client sends each control frame once).
type fuzzTransport struct{ c Conn }

func (t fuzzTransport) Name() string { return "fuzz" }
func (t fuzzTransport) Caps() Caps {
	return Caps{Reliable: true, ReliableControl: true, Ordered: true, MaxFrame: 1 << 20, ClientFDs: 1, ServerFDs: 1}
}
func (t fuzzTransport) Listen(context.Context, string) (Listener, error) {
	return nil, errors.New("fuzzTransport cannot listen")
}
func (t fuzzTransport) Dial(context.Context, string) (Conn, error) { return t.c, nil }

// The ack ids the fuzz Client has pending when the frames start: two emits
// that asked for an ACK, a JOIN and a STATS request, in the order
// runClientFrames makes them (the Client numbers them from 1).
const (
	fuzzEmitAck1 = 1
	fuzzEmitAck2 = 2
	fuzzJoinAck  = 3
	fuzzStatsAck = 4
)

// clientModel is what the Client should make of the frames: the same rules
// as Client.handle, applied to the decoded frames one by one.
type clientModel struct {
	events  [][]byte // the EVENT frames, re-encoded
	recvNs  []int64
	rtts    []time.Duration
	emits   map[uint64]int64 // pending emit acks: id → sent time
	join    []uint8          // the status the JOIN waiter gets (at most one)
	stats   [][]byte         // the payload the STATS waiter gets (at most one)
	hello   []uint64         // the id a waiting HELLO gets (at most one)
	end     int              // index of the frame that ends the read loop, or -1
	endWant error            // what the read loop's error wraps then
}

// predictClient runs the model over frames, the frame i arriving at now(i).
func predictClient(frames [][]byte, emits map[uint64]int64, now func(i int) int64) clientModel {
	m := clientModel{emits: emits, end: -1}
	var f Frame
	for i, p := range frames {
		if err := DecodeFrame(p, &f); err != nil {
			m.end, m.endWant = i, ErrMalformed
			return m
		}
		switch f.Type {
		case FrameEvent:
			q, _ := AppendFrame(nil, &f)
			m.events = append(m.events, q)
			m.recvNs = append(m.recvNs, now(i))
		case FrameAck, FramePong:
			if sent, ok := m.emits[f.AckID]; ok {
				delete(m.emits, f.AckID)
				m.rtts = append(m.rtts, time.Duration(now(i)-sent))
			} else if f.AckID == fuzzJoinAck && len(m.join) == 0 {
				m.join = append(m.join, f.Status)
			}
		case FrameStats:
			if f.AckID == fuzzStatsAck && len(m.stats) == 0 {
				m.stats = append(m.stats, slices.Clone(f.Payload))
			}
		case FrameHello:
			if len(m.hello) == 0 {
				m.hello = append(m.hello, f.Sender)
			}
		case FrameBye:
			m.end, m.endWant = i, net.ErrClosed
			if f.Status == ByeIDInUse {
				m.endWant = ErrIDInUse
			}
			return m
		default: // a frame a server may not send
			m.end, m.endWant = i, ErrMalformed
			return m
		}
	}
	return m
}

// runClientFrames dials a Client over a fuzzConn that sends frames after
// the HELLO exchange, with two emit acks, a JOIN and a STATS request
// pending, and checks the Client against clientModel: it never panics; a
// malformed frame, a BYE or a frame a server may not send ends the read
// loop with the matching error, promptly, and nothing after it is read;
// otherwise the read loop reads every frame and waits for more. Events,
// ack round trips, the pending entries and the answers to the waiters are
// what the model predicts, and Close returns promptly.
func runClientFrames(t *testing.T, frames [][]byte) {
	conn := newFuzzConn(frames)
	var clock atomic.Int64
	var events [][]byte
	var recvNs []int64
	var rtts []time.Duration
	cfg := ClientConfig{
		ID:    fuzzHelloID,
		Clock: func() int64 { return clock.Add(1000) },
		OnEvent: func(f *Frame, now int64) {
			q, err := AppendFrame(nil, f)
			if err != nil {
				t.Errorf("OnEvent got a frame that does not encode: %v", err)
			}
			events = append(events, q)
			recvNs = append(recvNs, now)
		},
		OnAck: func(rtt time.Duration) { rtts = append(rtts, rtt) },
	}
	ctx, cancel := context.WithTimeout(context.Background(), fuzzWait)
	defer cancel()
	c, err := Dial(ctx, fuzzTransport{conn}, "fuzz", cfg)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	closed := false
	defer func() {
		if !closed {
			c.Close()
		}
	}()

	emits := map[uint64]int64{}
	for range 2 {
		ev := Frame{Namespace: []byte("/"), Room: []byte("r"), Name: []byte("m")}
		if err := c.Emit(&ev, true); err != nil {
			t.Fatalf("Emit: %v", err)
		}
		emits[ev.AckID] = ev.SentNs
	}
	join := make(chan uint8, 1)
	stats := make(chan []byte, 1)
	if id := c.addPending(pendingAck{done: join}); id != fuzzJoinAck {
		t.Fatalf("JOIN ack id %d, want %d", id, fuzzJoinAck)
	}
	if id := c.addPending(pendingAck{stats: stats}); id != fuzzStatsAck {
		t.Fatalf("STATS ack id %d, want %d", id, fuzzStatsAck)
	}
	if _, ok := emits[fuzzEmitAck1]; !ok || len(emits) != 2 {
		t.Fatalf("emit ack ids %v, want %d and %d", emits, fuzzEmitAck1, fuzzEmitAck2)
	}
	// From here the read loop alone calls Clock, once per frame read.
	base := clock.Load()
	m := predictClient(frames, maps.Clone(emits), func(i int) int64 { return base + int64(i+1)*1000 })
	close(conn.start)

	if m.end >= 0 {
		select {
		case <-c.Done():
		case <-time.After(fuzzWait):
			t.Fatalf("frame %d (%x) should end the read loop (%v); it still runs", m.end, frames[m.end], m.endWant)
		}
		if err := c.Err(); !errors.Is(err, m.endWant) {
			t.Fatalf("frame %d (%x) ended the read loop with %v, want an error wrapping %v", m.end, frames[m.end], err, m.endWant)
		}
		if m.endWant == net.ErrClosed && errors.Is(c.Err(), ErrIDInUse) {
			t.Fatalf("a BYE of reason %d reported as %v", frames[m.end][2], c.Err())
		}
		if conn.next != m.end+1 {
			t.Fatalf("the read loop read %d frames, want it to stop after frame %d", conn.next, m.end)
		}
	} else {
		select {
		case <-conn.drained:
		case <-c.Done():
			t.Fatalf("the read loop ended after %d of %d frames: %v", conn.next, len(frames), c.Err())
		case <-time.After(fuzzWait):
			t.Fatalf("the read loop read %d of %d frames, then hung", conn.next, len(frames))
		}
		select {
		case <-c.Done():
			t.Fatalf("Done closed while the connection is open: %v", c.Err())
		default:
		}
		if err := c.Err(); err != nil {
			t.Fatalf("Err = %v while the connection is open", err)
		}
	}

	// The read loop is now idle or done: what it did is visible here.
	if !slices.EqualFunc(events, m.events, bytes.Equal) || !slices.Equal(recvNs, m.recvNs) {
		t.Errorf("events:\n got %x at %v\nwant %x at %v", events, recvNs, m.events, m.recvNs)
	}
	if !slices.Equal(rtts, m.rtts) {
		t.Errorf("ack round trips %v, want %v", rtts, m.rtts)
	}
	if got := c.PendingAcks(); got != len(m.emits) {
		t.Errorf("PendingAcks = %d, want %d", got, len(m.emits))
	}
	if got := drainChan(join); !slices.Equal(got, m.join) {
		t.Errorf("the JOIN waiter got %v, want %v", got, m.join)
	}
	if got := drainChan(stats); !slices.EqualFunc(got, m.stats, bytes.Equal) {
		t.Errorf("the STATS waiter got %x, want %x", got, m.stats)
	}
	if got := drainChan(c.hello); !slices.Equal(got, m.hello) {
		t.Errorf("a HELLO waiter got %v, want %v", got, m.hello)
	}

	errc := make(chan error, 1)
	go func() { errc <- c.Close() }()
	var cerr error
	select {
	case cerr = <-errc:
		closed = true
	case <-time.After(fuzzWait):
		t.Fatal("Close did not return")
	}
	switch {
	case m.end < 0 || m.endWant == net.ErrClosed:
		if cerr != nil {
			t.Errorf("Close = %v, want nil", cerr)
		}
		if m.end < 0 && !errors.Is(c.Err(), net.ErrClosed) {
			t.Errorf("Err after Close = %v, want an error wrapping net.ErrClosed", c.Err())
		}
	case !errors.Is(cerr, m.endWant):
		t.Errorf("Close = %v, want an error wrapping %v", cerr, m.endWant)
	}
	if m.end < 0 {
		conn.mu.Lock()
		last := conn.writes[len(conn.writes)-1]
		conn.mu.Unlock()
		var f Frame
		if err := DecodeFrame(last, &f); err != nil || f.Type != FrameBye {
			t.Errorf("the last frame Close wrote is %x (%v), want a BYE", last, err)
		}
	}
}

// drainChan returns what ch holds, without waiting.
func drainChan[T any](ch chan T) []T {
	var got []T
	for {
		select {
		case v := <-ch:
			got = append(got, v)
		default:
			return got
		}
	}
}

// splitFrames cuts data into frames, each a length byte and that many
// bytes (the last one whatever is left when it is shorter).
func splitFrames(data []byte) [][]byte {
	var frames [][]byte
	for len(data) > 0 {
		n := min(int(data[0]), len(data)-1)
		frames = append(frames, data[1:1+n])
		data = data[1+n:]
	}
	return frames
}

// joinFrames is the inverse of splitFrames, for frames under 256 bytes.
func joinFrames(frames ...[]byte) []byte {
	var data []byte
	for _, p := range frames {
		data = append(data, byte(len(p)))
		data = append(data, p...)
	}
	return data
}

// clientSeedFrames are frames a server sends (and some it may not), for the
// seeds of the Client fuzz targets.
func clientSeedFrames() map[string][]byte {
	enc := func(f Frame) []byte {
		p, err := AppendFrame(nil, &f)
		if err != nil {
			panic(err)
		}
		return p
	}
	return map[string][]byte{
		"event": enc(Frame{Type: FrameEvent, Namespace: []byte("/"), Room: []byte("r"), Name: []byte("m"),
			Sender: 9, Seq: 1, Offset: 1, IntendedNs: 5, SentNs: 6, Payload: []byte("hello")}),
		"event2":   enc(Frame{Type: FrameEvent, Namespace: []byte("/chat"), Room: []byte("lobby"), Sender: 9, Seq: 2, Offset: 2}),
		"ack1":     enc(Frame{Type: FrameAck, AckID: fuzzEmitAck1}),
		"ack2":     enc(Frame{Type: FrameAck, AckID: fuzzEmitAck2, Status: AckRejected}),
		"ackJoin":  enc(Frame{Type: FrameAck, AckID: fuzzJoinAck}),
		"ackJoinR": enc(Frame{Type: FrameAck, AckID: fuzzJoinAck, Status: AckRejected}),
		"ackStats": enc(Frame{Type: FrameAck, AckID: fuzzStatsAck}),
		"ackNone":  enc(Frame{Type: FrameAck, AckID: 99}),
		"pong2":    enc(Frame{Type: FramePong, AckID: fuzzEmitAck2, SentNs: 1}),
		"pongJoin": enc(Frame{Type: FramePong, AckID: fuzzJoinAck}),
		"stats":    enc(Frame{Type: FrameStats, AckID: fuzzStatsAck, Payload: []byte(`{"queue_drops":1}`)}),
		"stats1":   enc(Frame{Type: FrameStats, AckID: fuzzEmitAck1, Payload: []byte(`{}`)}),
		"hello":    enc(Frame{Type: FrameHello, Sender: 5}),
		"bye":      enc(Frame{Type: FrameBye, Status: ByeNormal}),
		"byeInUse": enc(Frame{Type: FrameBye, Status: ByeIDInUse}),
		"emit":     enc(Frame{Type: FrameEmit, Namespace: []byte("/"), Room: []byte("r")}),
		"join":     enc(Frame{Type: FrameJoin, Namespace: []byte("/"), Room: []byte("r"), AckID: 1}),
		"ping":     enc(Frame{Type: FramePing, AckID: 1}),
		"nack":     enc(Frame{Type: FrameNack, Namespace: []byte("/"), Room: []byte("r")}),
		"badVer":   {Version + 1, byte(FrameBye), 0},
		"badType":  {Version, 0},
		"short":    {Version, byte(FrameAck), 0, 0},
	}
}

// FuzzClientReadLoop feeds the Client's read loop (Client.handle) a
// sequence of frames, the fuzz input cut by a length byte per frame (see
// splitFrames), and checks it as runClientFrames says.
func FuzzClientReadLoop(f *testing.F) {
	s := clientSeedFrames()
	for _, seq := range [][][]byte{
		{},
		{s["event"], s["event2"]},
		{s["ack1"], s["ack1"], s["pong2"], s["ack2"]}, // a duplicate ACK, a PONG settling an emit
		{s["ackJoin"], s["ackJoinR"], s["pongJoin"]},  // only the first answer reaches the waiter
		{s["stats"], s["stats"], s["ackStats"], s["stats1"]},
		{s["hello"], s["hello"], s["ackNone"]},
		{s["event"], s["bye"], s["event"]}, // nothing after BYE is read
		{s["ack1"], s["byeInUse"]},
		{s["event"], s["emit"], s["ack1"]},
		{s["join"]},
		{s["ping"]},
		{s["nack"]},
		{s["badVer"], s["ack1"]},
		{s["ack2"], s["badType"]},
		{s["short"]},
		{{}},
		{s["event"], s["ack1"], s["ack2"], s["ackJoin"], s["stats"], s["hello"], s["event2"]},
	} {
		f.Add(joinFrames(seq...))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		runClientFrames(t, splitFrames(data))
	})
}

// FuzzClientReadLoopSplit feeds the Client's read loop the fuzz input in two
// reads, cut at a fuzzed index: a frame that a transport delivered in two
// parts is two malformed frames (or a shorter frame and a stray one), never
// a panic or a hang; see runClientFrames for what is checked.
func FuzzClientReadLoopSplit(f *testing.F) {
	s := clientSeedFrames()
	for _, pair := range [][2][]byte{
		{s["event"], s["ack1"]},
		{s["ack1"], s["ack2"]},
		{s["ackJoin"], s["stats"]},
		{s["hello"], s["bye"]},
		{s["byeInUse"], s["event"]},
		{s["pong2"], s["emit"]},
		{s["stats"], s["badType"]},
		{s["event2"], s["short"]},
		{s["nack"], s["ack1"]},
		{s["badVer"], s["event"]},
	} {
		p := append(slices.Clone(pair[0]), pair[1]...)
		f.Add(p, uint16(len(pair[0])))   // at the frame boundary: two whole frames
		f.Add(p, uint16(len(pair[0])/2)) // inside the first frame
	}
	f.Add([]byte{}, uint16(0))
	f.Fuzz(func(t *testing.T, p []byte, cut uint16) {
		k := int(cut) % (len(p) + 1)
		runClientFrames(t, [][]byte{p[:k:k], p[k:]})
	})
}
