package transports_test

import (
	"context"
	"fmt"
	"net"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/evbench/evbench/transports"
)

// BenchmarkHubBroadcast measures the Hub's fan-out of one EMIT to a room of
// k members, in process: the Conns are fakes (benchConn) whose ReadFrame
// hands the Hub pre-encoded frames and whose WriteFrame only counts, served
// through Hub.Serve over a fake Listener, so what is measured is the Hub's
// own path: decode, room lookup, one encode, k enqueues, k writer wake-ups
// and writes. Field case C13: the per-delivery path allocates nothing, so
// allocs/op is 0 in steady state. The sender is not in the room, so each
// op is k deliveries; ns/delivery divides the time by them.
func BenchmarkHubBroadcast(b *testing.B) {
	for _, k := range []int{10, 100} {
		b.Run(fmt.Sprintf("members=%d", k), func(b *testing.B) {
			fo := newFanOut(b, k)
			b.ReportAllocs()
			var sent int64
			for b.Loop() {
				fo.emit()
				sent++
				if sent%fanOutWindow == 0 {
					fo.waitDelivered(b, sent-fanOutWindow/2)
				}
			}
			fo.waitDelivered(b, sent)
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(sent*int64(k)), "ns/delivery")
			fo.check(b, sent)
		})
	}
}

// TestHubBroadcastDoesNotAllocate is C13's expected value as a test: in
// steady state, fanning an EMIT out to 10 members allocates nothing, summed
// over every goroutine of the Hub. The race detector makes sync.Pool drop
// items on purpose, so under -race the test only checks the deliveries.
func TestHubBroadcastDoesNotAllocate(t *testing.T) {
	const k, runs = 10, 1000
	fo := newFanOut(t, k)
	var sent int64
	allocs := testing.AllocsPerRun(runs, func() {
		fo.emit()
		sent++
		fo.waitDelivered(t, sent)
	})
	fo.check(t, sent)
	if raceEnabled() {
		t.Logf("%.2f allocs per fan-out under the race detector; not checked", allocs)
		return
	}
	if allocs != 0 {
		t.Errorf("%v allocs per fan-out to %d members, want 0", allocs, k)
	}
}

// raceEnabled reports whether the test binary was built with -race.
func raceEnabled() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}

// fanOutWindow bounds how many EMITs the benchmark lets the writers fall
// behind, far below the send queue, so that no frame is dropped.
const fanOutWindow = 256

// fanOut is a Hub with k receivers in room "bench" of "/" and one sender
// outside it, all benchConns.
type fanOut struct {
	hub       *transports.Hub
	sender    *benchConn
	receivers []*benchConn
	emitFrame []byte
}

func newFanOut(tb testing.TB, k int) *fanOut {
	tb.Helper()
	hello := encode(tb, transports.Frame{Type: transports.FrameHello})
	join := encode(tb, transports.Frame{Type: transports.FrameJoin, Namespace: []byte("/"), Room: []byte("bench"), AckID: 1})
	fo := &fanOut{
		emitFrame: encode(tb, transports.Frame{Type: transports.FrameEmit, Namespace: []byte("/"), Room: []byte("bench"),
			Name: []byte("message"), Seq: 1, IntendedNs: 1, SentNs: 2, Payload: make([]byte, 64)}),
		sender: newBenchConn([][]byte{hello}, make(chan []byte, 64)),
	}
	ln := &benchListener{conns: make(chan transports.Conn), done: make(chan struct{})}
	hub := transports.NewHub(transports.HubConfig{})
	fo.hub = hub
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- hub.Serve(ctx, ln) }()
	tb.Cleanup(func() {
		cancel()
		ln.Close()
		hub.Close()
		<-served
	})
	for range k {
		r := newBenchConn([][]byte{hello, join}, nil)
		fo.receivers = append(fo.receivers, r)
		ln.conns <- r
	}
	ln.conns <- fo.sender
	deadline := time.Now().Add(setupTimeout)
	for _, r := range fo.receivers {
		for r.acks.Load() < 1 {
			if time.Now().After(deadline) {
				tb.Fatalf("a receiver's JOIN was not acknowledged within %v", setupTimeout)
			}
			time.Sleep(time.Millisecond)
		}
	}
	st := waitStats(tb, hub, "the sender's HELLO", func(st transports.HubStats) bool { return st.Conns == k+1 })
	if st.Members != 2*k+1 {
		tb.Fatalf("Stats = %+v, want %d members (own-id rooms and the room)", st, 2*k+1)
	}
	return fo
}

func (fo *fanOut) emit() { fo.sender.feed <- fo.emitFrame }

// waitDelivered waits until every receiver has been written n EVENTs.
func (fo *fanOut) waitDelivered(tb testing.TB, n int64) {
	deadline := time.Now().Add(deliverTimeout)
	for _, r := range fo.receivers {
		for spins := 0; r.events.Load() < n; spins++ {
			if spins%1024 == 1023 && time.Now().After(deadline) {
				tb.Fatalf("a receiver got %d EVENTs, want %d", r.events.Load(), n)
			}
			runtime.Gosched()
		}
	}
}

// check fails unless every receiver got exactly sent EVENTs and the Hub
// dropped nothing.
func (fo *fanOut) check(tb testing.TB, sent int64) {
	tb.Helper()
	for i, r := range fo.receivers {
		if got := r.events.Load(); got != sent {
			tb.Errorf("receiver %d got %d EVENTs, want %d", i, got, sent)
		}
	}
	if st := fo.hub.Stats(); st.QueueDrops != 0 || st.ProtocolErrors != 0 {
		tb.Errorf("Stats = %+v, want no drops and no protocol errors", st)
	}
}

// benchListener hands the Hub the Conns sent on conns.
type benchListener struct {
	conns chan transports.Conn
	done  chan struct{}
	once  sync.Once
}

func (l *benchListener) Accept(ctx context.Context) (transports.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, fmt.Errorf("bench: accept: %w", net.ErrClosed)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (l *benchListener) Addr() net.Addr { return benchAddr{} }

func (l *benchListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

type benchAddr struct{}

func (benchAddr) Network() string { return "bench" }
func (benchAddr) String() string  { return "bench" }

// benchConn is the server side of a fake connection: ReadFrame returns the
// frames of script, then those sent on feed (nil: none), and blocks until
// Close; WriteFrame counts the EVENT and ACK frames written to it.
type benchConn struct {
	script [][]byte // read side only
	feed   chan []byte
	closed chan struct{}
	once   sync.Once
	events atomic.Int64
	acks   atomic.Int64
}

func newBenchConn(script [][]byte, feed chan []byte) *benchConn {
	return &benchConn{script: script, feed: feed, closed: make(chan struct{})}
}

func (c *benchConn) ReadFrame() ([]byte, error) {
	if len(c.script) > 0 {
		p := c.script[0]
		c.script = c.script[1:]
		return p, nil
	}
	select {
	case p := <-c.feed:
		return p, nil
	case <-c.closed:
		return nil, fmt.Errorf("bench: read: %w", net.ErrClosed)
	}
}

func (c *benchConn) WriteFrame(p []byte) error {
	switch transports.FrameType(p[1]) {
	case transports.FrameEvent:
		c.events.Add(1)
	case transports.FrameAck:
		c.acks.Add(1)
	}
	return nil
}

func (c *benchConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return nil
}

func (c *benchConn) RemoteAddr() net.Addr { return benchAddr{} }
