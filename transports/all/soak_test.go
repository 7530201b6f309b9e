package all_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/evbench/evbench/transports"
	"github.com/evbench/evbench/transports/transporttest"
)

// The soak: per transport, soakHostile peers send malformed input for
// soakFor while soakHonest clients run a workload through the same Hub.
const (
	soakFor        = 10 * time.Second
	soakShortFor   = 2 * time.Second // with -short
	soakHonest     = 20
	soakPublishers = 4
	soakInterval   = 20 * time.Millisecond // each publisher's emit interval: 50 events/s
	soakHostile    = 10
	soakHeapBytes  = 50 << 20
	// soakEndBound is how long a hostile connection may stay open after
	// its abuse: the Hub's handshake timeout below, quic-go's handshake
	// idle timeout (5 s) for a quic peer that never opens its stream, and
	// a margin.
	soakEndBound = 8 * time.Second
)

// soakHub is the Hub's configuration in the soak: the defaults, with a
// short handshake timeout so that silent peers cycle, and small limits so
// that a peer crosses them quickly.
var soakHub = transports.HubConfig{
	// Short, and yet long enough that a Hub slowed down by the soak
	// itself (seven of them at once, under the race detector, on two
	// cores) still reads an honest HELLO in time.
	HandshakeTimeout: 2 * time.Second,
	MaxRooms:         64,
	MaxPayloadBytes:  4096,
}

// TestSoakHostilePeers: for every transport at once, hostile peers (garbage
// frames, frames out of protocol, silence, floods of JOINs past the limits,
// oversize payloads, raw junk on the socket) abuse a Hub while honest
// clients run a workload. Honest clients miss nothing on reliable
// transports, the heap grows less than 50 MiB, every abuse is closed or
// refused and counted, and the goroutines return to the baseline within
// 5 s of shutdown.
func TestSoakHostilePeers(t *testing.T) {
	d := soakFor
	if testing.Short() {
		d = soakShortFor
	}
	baseline := goleak.IgnoreCurrent()
	heapBefore := heapInuse()
	var heapPeak atomic.Uint64
	t.Run("transports", func(t *testing.T) {
		for _, name := range transports.Names() {
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				tr, err := transports.Lookup(name)
				if err != nil {
					t.Fatal(err)
				}
				soak(t, tr, d, &heapPeak)
			})
		}
	})
	if growth := int64(heapPeak.Load()) - int64(heapBefore); growth > soakHeapBytes {
		t.Errorf("heap grew by %.1f MiB during the soak, want under %d MiB", float64(growth)/(1<<20), soakHeapBytes>>20)
	} else {
		t.Logf("heap in use: %.1f MiB before, %.1f MiB at its highest sample (growth bound %d MiB)",
			float64(heapBefore)/(1<<20), float64(heapPeak.Load())/(1<<20), soakHeapBytes>>20)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := goleak.Find(baseline)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("goroutines still running 5 s after shutdown: %v", err)
		}
		time.Sleep(50 * time.Millisecond) // goroutine ends have no event to wait on
	}
}

// heapInuse returns the heap in use after a garbage collection.
func heapInuse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

func soak(t *testing.T, tr transports.Transport, d time.Duration, heapPeak *atomic.Uint64) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ln, err := tr.Listen(ctx, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hub := transports.NewHub(soakHub)
	served := make(chan error, 1)
	go func() { served <- hub.Serve(ctx, ln) }()
	defer func() {
		cancel()
		ln.Close()
		hub.Close()
		<-served
	}()
	addr := ln.Addr().String()

	// The honest clients: all in one room, soakPublishers of them emitting.
	var delivered atomic.Int64
	clients := make([]*transports.Client, soakHonest)
	for i := range clients {
		dctx, dcancel := context.WithTimeout(ctx, 10*time.Second)
		c, err := transports.Dial(dctx, tr, addr, transports.ClientConfig{
			ID: uint64(i) + 1,
			OnEvent: func(f *transports.Frame, _ int64) {
				if string(f.Room) == "chat" {
					delivered.Add(1)
				}
			},
		})
		if err == nil {
			err = c.Join(dctx, "/", "chat")
		}
		dcancel()
		if err != nil {
			t.Fatalf("honest client %d: %v", i, err)
		}
		clients[i] = c
	}
	defer func() {
		for _, c := range clients {
			c.Close()
		}
	}()

	var hostile sync.WaitGroup
	stop := time.Now().Add(d)
	var abuses, kept atomic.Int64
	var keptErr atomic.Pointer[string]
	for p := range soakHostile {
		hostile.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(p), 8))
			for i := 0; time.Now().Before(stop); i++ {
				abuses.Add(1)
				if err := abuse(ctx, tr, addr, (p+i)%abuseKinds, rng); err != nil {
					kept.Add(1)
					msg := err.Error()
					keptErr.CompareAndSwap(nil, &msg)
				}
			}
		})
	}

	var sent atomic.Int64
	var pubs sync.WaitGroup
	payload := make([]byte, 256)
	for p := range soakPublishers {
		pubs.Go(func() {
			tick := time.NewTicker(soakInterval)
			defer tick.Stop()
			for seq := uint64(0); time.Now().Before(stop); seq++ {
				<-tick.C
				ev := transports.Frame{Namespace: []byte("/"), Room: []byte("chat"), Name: []byte("msg"), Seq: seq, Payload: payload}
				if err := clients[p].Emit(&ev, false); err != nil {
					t.Errorf("publisher %d: %v", p, err)
					return
				}
				sent.Add(1)
			}
		})
	}
	// Sample the heap while the soak runs: the peak is what the bound is
	// about.
	sampler := time.NewTicker(time.Second)
	for time.Now().Before(stop) {
		<-sampler.C
		h := heapInuse()
		for old := heapPeak.Load(); h > old && !heapPeak.CompareAndSwap(old, h); old = heapPeak.Load() {
		}
	}
	sampler.Stop()
	pubs.Wait()
	hostile.Wait()

	expected := sent.Load() * (soakHonest - 1)
	caps := tr.Caps()
	if caps.Reliable {
		deadline := time.Now().Add(10 * time.Second)
		for delivered.Load() < expected && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if got := delivered.Load(); got != expected {
			t.Errorf("honest clients received %d of %d deliveries; a reliable transport must miss none", got, expected)
		}
	} else {
		time.Sleep(200 * time.Millisecond) // let the last datagrams land before counting
	}
	for i, c := range clients {
		select {
		case <-c.Done():
			t.Errorf("honest client %d was closed: %v", i, c.Err())
		default:
		}
	}
	if n := kept.Load(); n > 0 {
		t.Errorf("%d of %d abuses were neither closed nor refused; the first: %s", n, abuses.Load(), *keptErr.Load())
	}
	st := hub.Stats()
	if st.ProtocolErrors == 0 || st.LimitRefusals == 0 {
		t.Errorf("Stats = %+v: want protocol errors and limit refusals counted", st)
	}
	if st.HandshakeTimeouts == 0 {
		t.Errorf("Stats = %+v: want handshake timeouts counted", st)
	}
	if tr.Name() == "udp" && st.UnvalidatedDrops == 0 {
		t.Errorf("Stats = %+v: want the raw datagrams counted as unvalidated", st)
	}
	t.Logf("%s: %d abuses; honest: %d of %d delivered; hub: protocol_errors=%d handshake_timeouts=%d read_timeouts=%d limit_refusals=%d unvalidated_drops=%d closed_error=%d conns=%d",
		tr.Name(), abuses.Load(), delivered.Load(), expected, st.ProtocolErrors, st.HandshakeTimeouts, st.ReadTimeouts,
		st.LimitRefusals, st.UnvalidatedDrops, st.ClosedError, st.Conns)
}

// The kinds of abuse, in turn.
const (
	abuseGarbage    = iota // frames of random bytes, no HELLO
	abuseOutOfOrder        // HELLO, then frames a client may not send and truncated ones
	abuseSilent            // connect and say nothing
	abuseLimits            // HELLO, then JOINs past MaxRooms and namespaces, and an oversize EMIT
	abuseRaw               // raw junk on the socket, under the transport's framing
	abuseKinds
)

// abuse runs one abuse of kind over a fresh connection and returns an error
// if the server neither closed the connection nor refused what it asked.
func abuse(ctx context.Context, tr transports.Transport, addr string, kind int, rng *rand.Rand) error {
	if kind == abuseRaw {
		return rawJunk(tr, addr, rng)
	}
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	c, err := tr.Dial(dctx, addr)
	cancel()
	if err != nil {
		return nil // refused at the door (a full accept queue) is fine
	}
	defer c.Close()
	frame := func(f transports.Frame) []byte {
		b, _ := transports.AppendFrame(nil, &f)
		return b
	}
	write := func(p []byte) {
		if c.WriteFrame(p) == nil {
			transports.Flush(c)
		}
	}
	switch kind {
	case abuseGarbage:
		for range 1 + rng.IntN(4) {
			junk := make([]byte, 1+rng.IntN(600))
			for i := range junk {
				junk[i] = byte(rng.Uint32())
			}
			junk[0] = byte(rng.IntN(3)) // version 0, 1 or 2
			write(junk)
		}
	case abuseOutOfOrder:
		write(frame(transports.Frame{Type: transports.FrameHello}))
		switch rng.IntN(3) {
		case 0:
			write(frame(transports.Frame{Type: transports.FrameEvent, Namespace: []byte("/"), Room: []byte("chat")}))
		case 1:
			write(frame(transports.Frame{Type: transports.FrameNack, Namespace: []byte("/"), Room: []byte("chat")}))
		default:
			b := frame(transports.Frame{Type: transports.FrameJoin, Namespace: []byte("/"), Room: []byte("chat"), AckID: 1})
			write(b[:len(b)-3])
		}
	case abuseSilent:
	case abuseLimits:
		write(frame(transports.Frame{Type: transports.FrameHello}))
		// Wait for the HELLO's answer, so that the refusals counted below
		// are the server's answer to this peer's requests.
		err := transporttest.Within(soakEndBound, func() error {
			var f transports.Frame
			for {
				p, err := c.ReadFrame()
				if err != nil {
					return err
				}
				if transports.DecodeFrame(p, &f) == nil && f.Type == transports.FrameHello {
					return nil
				}
			}
		})
		if err != nil && !tr.Caps().Datagram {
			return fmt.Errorf("%s: no answer to an honest HELLO: %v", tr.Name(), err)
		}
		// 24 namespaces: "/" and 15 more are allowed, 9 refused; then
		// MaxRooms+8 rooms in "/": with the 15 rooms joined above, 23
		// are refused.
		for i := range 24 {
			write(frame(transports.Frame{Type: transports.FrameJoin, Namespace: fmt.Appendf(nil, "/ns%d", i), Room: []byte("x"), AckID: uint64(1000 + i)}))
		}
		for i := range soakHub.MaxRooms + 8 {
			write(frame(transports.Frame{Type: transports.FrameJoin, Namespace: []byte("/"), Room: fmt.Appendf(nil, "r%d", i), AckID: uint64(i + 1)}))
		}
		want := 24 - (transports.DefaultMaxNamespaces - 1) + 8 + (transports.DefaultMaxNamespaces - 1)
		big := frame(transports.Frame{Type: transports.FrameEmit, Namespace: []byte("/"), Room: []byte("chat"), Name: []byte("m"),
			Payload: make([]byte, soakHub.MaxPayloadBytes+1), AckID: 5000})
		if len(big) <= tr.Caps().MaxFrame {
			write(big)
			want++
		}
		var refused int
		err = transporttest.Within(soakEndBound, func() error {
			var f transports.Frame
			for refused < want {
				p, err := c.ReadFrame()
				if err != nil {
					return err
				}
				if transports.DecodeFrame(p, &f) == nil && f.Type == transports.FrameAck && f.Status == transports.AckLimit {
					refused++
				}
			}
			return nil
		})
		if refused < want && !tr.Caps().Datagram { // udp may lose answers
			return fmt.Errorf("%s: %d of %d refusals came back: %v", tr.Name(), refused, want, err)
		}
		return nil
	}
	// The server must end the connection.
	err = transporttest.Within(soakEndBound, func() error {
		for {
			if _, err := c.ReadFrame(); err != nil {
				return nil
			}
		}
	})
	if err != nil {
		return fmt.Errorf("%s: abuse %d: the server kept the connection open for %v", tr.Name(), kind, soakEndBound)
	}
	return nil
}

// rawJunk writes bytes under the transport's framing: to the TCP port of a
// stream transport, or as datagrams to the UDP port of udp and QUIC.
func rawJunk(tr transports.Transport, addr string, rng *rand.Rand) error {
	network := "tcp"
	if tr.Caps().Datagram || tr.Name() == "quic" {
		network = "udp"
	}
	var d net.Dialer
	nc, err := d.Dial(network, addr) // addr is the test's own 127.0.0.1 listener
	if err != nil {
		return nil
	}
	defer nc.Close()
	for range 1 + rng.IntN(8) {
		junk := make([]byte, 1+rng.IntN(1200))
		for i := range junk {
			junk[i] = byte(rng.Uint32())
		}
		if _, err := nc.Write(junk); err != nil {
			return nil // the server closed it already
		}
	}
	if network == "udp" {
		return nil // ignored: dropped and, on udp, counted as unvalidated
	}
	nc.SetReadDeadline(time.Now().Add(soakEndBound))
	buf := make([]byte, 4096)
	for {
		if _, err := nc.Read(buf); err != nil {
			if errors.Is(err, net.ErrClosed) || !isTimeout(err) {
				return nil
			}
			return fmt.Errorf("%s: raw junk: the server kept the connection open for %v", tr.Name(), soakEndBound)
		}
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
