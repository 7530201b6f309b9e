package transports_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/evbench/evbench/transports"
	"github.com/evbench/evbench/transports/tcp"
	"github.com/evbench/evbench/transports/transporttest"
	"github.com/evbench/evbench/transports/ws"
)

// The deadlines these tests give the Hub: short, so that the tests are
// quick, and each checked against its bound of timeout + 1 s.
const (
	testHandshake = 300 * time.Millisecond
	testIdle      = 400 * time.Millisecond
	testWrite     = 400 * time.Millisecond
	deadlineSlack = time.Second
)

// waitEnded waits until the server ends c (a read returns an error), for
// at most d, and reports how long that took.
func waitEnded(tb testing.TB, c transports.Conn, d time.Duration) time.Duration {
	tb.Helper()
	start := time.Now()
	err := transporttest.Within(d, func() error {
		for {
			if _, err := c.ReadFrame(); err != nil {
				return nil
			}
		}
	})
	if err != nil {
		c.Close()
		tb.Fatalf("the server kept the connection open for %v", d)
	}
	return time.Since(start)
}

// TestHandshakeTimeout: connections that never send their HELLO, or send
// half of it, are closed within HandshakeTimeout + 1 s and counted, over
// tcp and ws; a client that greets in time is not.
func TestHandshakeTimeout(t *testing.T) {
	const silent = 50
	for _, tr := range []transports.Transport{tcp.Plain(), ws.Plain()} {
		t.Run(tr.Name(), func(t *testing.T) {
			s := startHub(t, tr, transports.HubConfig{HandshakeTimeout: testHandshake})
			honest := s.dial(t, transports.ClientConfig{})
			conns := make([]transports.Conn, silent)
			for i := range conns {
				ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
				c, err := tr.Dial(ctx, s.addr)
				cancel()
				if err != nil {
					t.Fatal(err)
				}
				conns[i] = c
			}
			start := time.Now()
			for _, c := range conns {
				waitEnded(t, c, setupTimeout)
				c.Close()
			}
			elapsed := time.Since(start)
			if elapsed > testHandshake+deadlineSlack {
				t.Errorf("%d silent connections closed after %v, want within %v", silent, elapsed, testHandshake+deadlineSlack)
			}
			st := waitStats(t, s.hub, "handshake timeouts", func(st transports.HubStats) bool { return st.HandshakeTimeouts == silent })
			if st.Conns != 1 {
				t.Errorf("Conns = %d, want the honest client only", st.Conns)
			}
			if _, err := honest.c.Ping(context.Background()); err != nil {
				t.Errorf("the honest client: %v", err)
			}
			t.Logf("%s: %d silent connections closed %v after the last was dialled (timeout %v); handshake_timeouts=%d",
				tr.Name(), silent, elapsed.Round(time.Millisecond), testHandshake, st.HandshakeTimeouts)
		})
	}
	t.Run("half a HELLO", func(t *testing.T) {
		s := startHub(t, tcp.Plain(), transports.HubConfig{HandshakeTimeout: testHandshake})
		var d net.Dialer
		nc, err := d.DialContext(context.Background(), "tcp", s.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		hello := encode(t, transports.Frame{Type: transports.FrameHello})
		framed := append([]byte{0, 0, 0, byte(len(hello))}, hello...)
		if _, err := nc.Write(framed[:len(framed)/2]); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		nc.SetReadDeadline(time.Now().Add(setupTimeout))
		if _, err := nc.Read(make([]byte, 1)); err == nil {
			t.Fatal("the server answered half a HELLO")
		}
		if elapsed := time.Since(start); elapsed > testHandshake+deadlineSlack {
			t.Errorf("closed after %v, want within %v", elapsed, testHandshake+deadlineSlack)
		}
		waitStats(t, s.hub, "handshake timeout", func(st transports.HubStats) bool { return st.HandshakeTimeouts == 1 })
	})
}

// TestIdleTimeout: a client that sends nothing is closed after IdleTimeout
// (+ 1 s) and counted; one whose keepalive runs stays, however long it
// only listens.
func TestIdleTimeout(t *testing.T) {
	for _, tr := range bothTransports {
		t.Run(tr.Name(), func(t *testing.T) {
			s := startHub(t, tr, transports.HubConfig{IdleTimeout: testIdle})
			alive := s.dial(t, transports.ClientConfig{KeepaliveInterval: testIdle / 4})
			mute := s.dial(t, transports.ClientConfig{KeepaliveInterval: -1})
			start := time.Now()
			select {
			case <-mute.c.Done():
			case <-time.After(setupTimeout):
				t.Fatal("the mute client was not closed")
			}
			if elapsed := time.Since(start); elapsed > testIdle+deadlineSlack {
				t.Errorf("mute client closed after %v, want within %v", elapsed, testIdle+deadlineSlack)
			}
			st := waitStats(t, s.hub, "idle close", func(st transports.HubStats) bool { return st.IdleCloses == 1 })
			// The listener outlives several idle timeouts: three more
			// periods, by the Hub's own count of what it closed.
			time.Sleep(3 * testIdle) // the assertion is an absence: nothing else may close
			select {
			case <-alive.c.Done():
				t.Fatalf("the client with a keepalive was closed: %v", alive.c.Err())
			default:
			}
			if st := s.hub.Stats(); st.IdleCloses != 1 || st.Conns != 1 {
				t.Errorf("after %v: IdleCloses = %d, Conns = %d; want 1 and 1", 3*testIdle, st.IdleCloses, st.Conns)
			}
			t.Logf("%s: idle_closes=%d closed_error=%d", tr.Name(), st.IdleCloses, st.ClosedError)
		})
	}
}

// nonReader is a connection that greets, joins room and then never reads:
// its transport's buffers fill and the Hub's writes to it block.
func nonReader(tb testing.TB, s *server, id uint64, room string) transports.Conn {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	c, err := s.tr.Dial(ctx, s.addr)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	writeFrames(tb, c,
		encode(tb, transports.Frame{Type: transports.FrameHello, Sender: id}),
		encode(tb, transports.Frame{Type: transports.FrameJoin, Namespace: []byte("/"), Room: []byte(room), AckID: 1}))
	waitStats(tb, s.hub, "the non-reader's join", func(st transports.HubStats) bool { return st.Members >= 3 })
	return c
}

// flood emits n events of size bytes to room from m.
func flood(tb testing.TB, m *member, room string, n, size int) {
	tb.Helper()
	payload := make([]byte, size)
	for i := range n {
		ev := transports.Frame{Namespace: []byte("/"), Room: []byte(room), Name: []byte("big"), Seq: uint64(i), Payload: payload}
		if err := m.c.Emit(&ev, false); err != nil {
			tb.Fatalf("emit %d: %v", i, err)
		}
	}
}

// TestWriteTimeout: a consumer that stops reading, in a room of large
// events, blocks the Hub's writer; after WriteTimeout (+ 1 s) it is closed
// as a slow consumer and counted, over tcp and ws.
func TestWriteTimeout(t *testing.T) {
	for _, tr := range []transports.Transport{tcp.Plain(), ws.Plain()} {
		t.Run(tr.Name(), func(t *testing.T) {
			s := startHub(t, tr, transports.HubConfig{WriteTimeout: testWrite})
			pub := s.dial(t, transports.ClientConfig{})
			pub.join(t, "/", "big")
			nonReader(t, s, 7, "big")
			flood(t, pub, "big", 64, 1<<20) // 64 MiB: far over any socket buffer
			start := time.Now()
			st := waitStats(t, s.hub, "write timeout", func(st transports.HubStats) bool { return st.WriteTimeouts == 1 })
			if st.ClosedSlow != 1 {
				t.Errorf("ClosedSlow = %d, want 1 (a write timeout is a slow consumer)", st.ClosedSlow)
			}
			t.Logf("%s: write_timeouts=%d closed_slow=%d, %v after the flood was queued (timeout %v)",
				tr.Name(), st.WriteTimeouts, st.ClosedSlow, time.Since(start).Round(time.Millisecond), testWrite)
		})
	}
}

// TestSendQueueBytes: a consumer that never reads, in a room that receives
// large events, holds at most SendQueueBytes in its queue: under
// drop-oldest the rest is dropped and counted and the heap stays under the
// bound; under disconnect the consumer is closed. Over tcp and ws, with the
// write timeout off so that only the byte bound acts.
func TestSendQueueBytes(t *testing.T) {
	const bound = 8 << 20
	const events, size = 96, 1 << 20 // 96 MiB sent towards a consumer that reads nothing
	for _, tr := range []transports.Transport{tcp.Plain(), ws.Plain()} {
		for _, policy := range []transports.SlowConsumerPolicy{transports.DropOldest, transports.Disconnect} {
			t.Run(tr.Name()+"/"+policy.String(), func(t *testing.T) {
				s := startHub(t, tr, transports.HubConfig{SendQueueBytes: bound, SlowConsumer: policy, WriteTimeout: -1})
				pub := s.dial(t, transports.ClientConfig{})
				pub.join(t, "/", "big")
				nonReader(t, s, 7, "big")
				before := heapInuse()
				flood(t, pub, "big", events, size)
				if policy == transports.Disconnect {
					st := waitStats(t, s.hub, "slow close", func(st transports.HubStats) bool { return st.ClosedSlow == 1 })
					t.Logf("%s: closed_slow=%d queue_drops=%d", tr.Name(), st.ClosedSlow, st.QueueDrops)
					return
				}
				// The Hub reads a connection's frames in order: once the
				// publisher's PING is answered, every one of its events has
				// been queued or dropped.
				if _, err := pub.c.Ping(context.Background()); err != nil {
					t.Fatal(err)
				}
				growth := int64(heapInuse()) - int64(before)
				st := s.hub.Stats()
				if st.QueueDrops == 0 {
					t.Errorf("no event dropped: Stats = %+v", st)
				}
				// The bound, plus the frame in the writer's hands and the
				// publisher's encode buffer.
				limit := int64(bound + 2*size)
				if growth > limit {
					t.Errorf("heap grew by %.1f MiB, want under %.1f MiB (queue bound %d MiB)", mib(growth), mib(limit), bound>>20)
				}
				t.Logf("%s: %d MiB sent to a non-reader; queue_drops=%d; heap grew %.1f MiB (bound %d MiB)",
					tr.Name(), events*size>>20, st.QueueDrops, mib(growth), bound>>20)
			})
		}
	}
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// TestPerConnectionLimits: JOINs past MaxRooms or into more than
// MaxNamespaces namespaces, and EMITs over MaxPayloadBytes, are refused
// with AckLimit and counted; what was within the limits still works, and
// Stats' gauges follow the joins and leaves exactly.
func TestPerConnectionLimits(t *testing.T) {
	s := startHub(t, tcp.Plain(), transports.HubConfig{MaxRooms: 3, MaxNamespaces: 2, MaxPayloadBytes: 100})
	m := s.dial(t, transports.ClientConfig{})
	ctx := context.Background()
	for i := range 3 {
		m.join(t, "/", "r"+strconv.Itoa(i))
	}
	m.join(t, "/", "r0") // joining again is no new room
	err := m.c.Join(ctx, "/", "r3")
	if !errors.Is(err, transports.ErrLimit) {
		t.Fatalf("fourth room: %v, want an error wrapping ErrLimit", err)
	}
	m.leave(t, "/", "r2")
	m.join(t, "/a", "r2") // a second namespace, and room 3 again
	if err := m.c.Join(ctx, "/b", "x"); !errors.Is(err, transports.ErrLimit) {
		t.Fatalf("third namespace: %v, want ErrLimit", err)
	}
	st := s.hub.Stats()
	// Rooms: r0, r1 and the own-id room in "/", r2 and the own-id room
	// in "/a".
	if st.LimitRefusals != 2 || st.Namespaces != 2 || st.Rooms != 5 || st.Members != 5 {
		t.Errorf("Stats = %+v, want 2 refusals, 2 namespaces, 5 rooms, 5 members", st)
	}

	peer := s.dial(t, transports.ClientConfig{})
	peer.join(t, "/", "r0")
	acks := make(chan time.Duration, 2)
	sender := s.dial(t, transports.ClientConfig{OnAck: func(d time.Duration) { acks <- d }})
	for _, n := range []int{100, 101} {
		ev := transports.Frame{Namespace: []byte("/"), Room: []byte("r0"), Name: []byte("msg"), Payload: make([]byte, n)}
		if err := sender.c.Emit(&ev, true); err != nil {
			t.Fatal(err)
		}
	}
	for range 2 {
		<-acks
	}
	expectCounts(t, []*inbox{m.in, peer.in}, []int{1, 1})
	if got := s.hub.Stats().LimitRefusals; got != 3 {
		t.Errorf("LimitRefusals = %d after an oversize EMIT, want 3", got)
	}
}

// TestStatsGaugesFollowChurn: after many clients join, leave and go away in
// a random order, Stats' kept gauges equal a count made by walking every
// room.
func TestStatsGaugesFollowChurn(t *testing.T) {
	s := startHub(t, tcp.Plain(), transports.HubConfig{})
	var ms []*member
	for i := range 20 {
		m := s.dial(t, transports.ClientConfig{})
		for j := range i % 5 {
			m.join(t, fmt.Sprintf("/ns%d", j%3), fmt.Sprintf("room%d", (i+j)%7))
		}
		if i%3 == 0 {
			m.leave(t, "/ns0", fmt.Sprintf("room%d", i%7))
		}
		ms = append(ms, m)
	}
	for i, m := range ms {
		if i%2 == 0 {
			m.c.Close()
		}
	}
	waitStats(t, s.hub, "closes", func(st transports.HubStats) bool { return st.Conns == 10 })
	got := s.hub.Stats()
	want := transports.CountRooms(s.hub)
	if got.Namespaces != want.Namespaces || got.Rooms != want.Rooms || got.Members != want.Members {
		t.Errorf("Stats gauges %d namespaces, %d rooms, %d members; walking the rooms finds %d, %d, %d",
			got.Namespaces, got.Rooms, got.Members, want.Namespaces, want.Rooms, want.Members)
	}
}
