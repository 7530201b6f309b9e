package transports_test

import (
	"context"
	"testing"
	"time"

	"github.com/evbench/evbench/transports"
)

// gatedConn is a benchConn whose writes block until the gate opens: a client
// (or a network path) that has stopped reading. The first WriteFrame to
// reach the gate is signalled on atGate; each EVENT written is signalled
// on eventWritten, which has room for every event of the test.
type gatedConn struct {
	*benchConn
	gate         chan struct{}
	atGate       chan struct{} // capacity 1
	eventWritten chan struct{}
}

func (c *gatedConn) WriteFrame(p []byte) error {
	select {
	case c.atGate <- struct{}{}:
	default:
	}
	select {
	case <-c.gate:
	case <-c.closed:
		return context.Canceled
	}
	err := c.benchConn.WriteFrame(p)
	if transports.FrameType(p[1]) == transports.FrameEvent {
		select {
		case c.eventWritten <- struct{}{}:
		default: // more events than the test expects: counted in events
		}
	}
	return err
}

// TestSlowConsumerPolicy pins both policies exactly: a receiver whose writes
// are stuck, a send queue of 4 events and a reply queue of MinReplyQueue. The
// sender emits 50 events to the room and the stuck receiver sends 400 PINGs.
func TestSlowConsumerPolicy(t *testing.T) {
	const sendQueue, events, pings = 4, 50, 400
	hello := encode(t, transports.Frame{Type: transports.FrameHello})
	join := encode(t, transports.Frame{Type: transports.FrameJoin, Namespace: []byte("/"), Room: []byte("r"), AckID: 1})
	emit := encode(t, transports.Frame{Type: transports.FrameEmit, Namespace: []byte("/"), Room: []byte("r"), Name: []byte("m")})
	ping := encode(t, transports.Frame{Type: transports.FramePing, AckID: 9})

	for _, policy := range []transports.SlowConsumerPolicy{transports.DropOldest, transports.Disconnect} {
		t.Run(policy.String(), func(t *testing.T) {
			hub := transports.NewHub(transports.HubConfig{SendQueue: sendQueue, SlowConsumer: policy})
			ln := &benchListener{conns: make(chan transports.Conn), done: make(chan struct{})}
			served := make(chan error, 1)
			go func() { served <- hub.Serve(context.Background(), ln) }()
			defer func() { ln.Close(); hub.Close(); <-served }()

			sender := newBenchConn([][]byte{hello, join}, make(chan []byte, events))
			stuck := &gatedConn{newBenchConn([][]byte{hello, join}, make(chan []byte, pings)), make(chan struct{}), make(chan struct{}, 1), make(chan struct{}, events)}
			ln.conns <- sender
			ln.conns <- stuck
			waitStats(t, hub, "both joined", func(st transports.HubStats) bool { return st.Members == 4 })
			// The stuck receiver's writer holds its HELLO reply; its JOIN ACK
			// waits in the reply queue. Until the writer has taken the HELLO
			// the reply queue holds one more reply, so that is waited for.
			select {
			case <-stuck.atGate:
			case <-time.After(setupTimeout):
				t.Fatalf("the stuck receiver's writer did not write its HELLO reply within %v", setupTimeout)
			}
			for range events {
				sender.feed <- emit
			}
			// Each policy ends the fan-out with an event of its own, waited
			// for as such: drops pile up under either policy before the
			// Disconnect policy's asynchronous close has landed.
			switch policy {
			case transports.DropOldest:
				// The queue keeps the newest 4; every older event is
				// counted. The stuck writer takes none, so the count ends
				// at exactly events-sendQueue.
				st := waitStats(t, hub, "the oldest events dropped", func(st transports.HubStats) bool {
					return st.QueueDrops >= events-sendQueue
				})
				if st.QueueDrops != events-sendQueue || st.Conns != 2 {
					t.Fatalf("Stats = %+v, want %d queue drops and both connections open", st, events-sendQueue)
				}
				for range pings {
					stuck.feed <- ping
				}
				// The reply queue holds MinReplyQueue replies: the JOIN ACK
				// and the PONGs; the oldest beyond that are dropped.
				want := uint64(1 + pings - transports.MinReplyQueue)
				st = waitStats(t, hub, "the replies queued", func(st transports.HubStats) bool { return st.ReplyDrops >= want })
				if st.ReplyDrops != want || st.Conns != 2 {
					t.Errorf("Stats = %+v, want %d reply drops and both connections open", st, want)
				}
				close(stuck.gate) // the client reads again: it gets the newest events
				timeout := time.NewTimer(deliverTimeout)
				defer timeout.Stop()
				for i := range sendQueue {
					select {
					case <-stuck.eventWritten:
					case <-timeout.C:
						t.Fatalf("after the gate opened the receiver got %d events within %v, want the %d queued", i, deliverTimeout, sendQueue)
					}
				}
				if got := stuck.events.Load(); got != sendQueue {
					t.Errorf("after the gate opened the receiver got %d events, want the %d queued", got, sendQueue)
				}
			case transports.Disconnect:
				// The first event over the limit disconnects the receiver:
				// it is gone from the Hub, its own-id room and room "r"
				// with it, leaving the sender's two memberships.
				st := waitStats(t, hub, "the stuck receiver disconnected", func(st transports.HubStats) bool {
					return st.Conns == 1 && st.Members == 2
				})
				if st.QueueDrops < 1 || st.ClosedSlow != 1 {
					t.Errorf("Stats = %+v, want at least one drop and one connection closed as slow", st)
				}
				// The Hub closes the Conn just after it has left the maps.
				select {
				case <-stuck.closed:
				case <-time.After(closeTimeout):
					t.Errorf("the stuck receiver left the Hub but its Conn was not closed within %v", closeTimeout)
				}
			}
		})
	}
}
