// Package transporttest is the conformance suite every evbench transport
// runs, in the spirit of golang.org/x/net/nettest's TestConn. A transport's
// test calls
//
//	transporttest.Run(t, tr)
//
// and the suite checks, on loopback only, what transports.Caps promises and
// what the transports.Conn and transports.Listener contracts say: frames
// arrive byte-identical, reliably and in order where promised, oversized
// frames are refused with transports.ErrFrameTooLarge, Close unblocks reads,
// writes and Accept with net.ErrClosed, a peer's close reads as io.EOF, and
// a reader and a writer may run at once.
//
// Frames travel two ways, as the Hub and the Client send them: with
// WriteFrame, and with transports.WriteEvent, which is WriteDatagram on a
// transports.DatagramConn (quic-dgram) and WriteFrame on any other Conn.
// Caps.Reliable promises both; Caps.ReliableControl promises WriteFrame's
// frames only, all of them and in order, while WriteDatagram's may be lost.
// Frames are opaque: both ways carry frames shaped like EVENT frames and
// frames that are not.
//
// Each subtest is bounded in time and checks, when it ends, that the
// goroutines it started (the transport's included) have exited. Do not run
// Run in parallel with other tests of the same package: their goroutines
// would count as leaks.
//
// CheckSingleWriter wraps a Conn to count breaches of the one-writer,
// one-reader discipline that the Hub and the Client keep.
package transporttest

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/evbench/evbench/transports"
)

// Limits on Caps().MaxFrame the suite accepts. Below minMaxFrame a transport
// cannot carry an event frame with short names; above maxMaxFrame the
// suite's own frames would be too large to allocate comfortably, and no
// transport needs one (the codec's payload limit is 16 MiB).
const (
	minMaxFrame = 64
	maxMaxFrame = 64 << 20
)

// Run runs the conformance suite against tr on loopback (127.0.0.1:0), one
// subtest per property. "Reliable" below means that Caps promise the frames
// in question (Reliable, or ReliableControl for frames written with
// WriteFrame); frames not promised are resent a few times, and at least 90%
// of them must arrive on loopback.
//
//   - RoundTrip: frames of 1 byte, 100 bytes and Caps().MaxFrame bytes (the
//     larger ones also shaped like EVENT frames), each written with
//     WriteFrame and then with transports.WriteEvent, arrive byte-identical
//     in both directions, although the writer overwrites its buffer as soon
//     as the write returns.
//   - Ordered: Reliable transports deliver 2,000 numbered frames each way,
//     all, once, intact and (when Ordered) in order; others at least 90% of
//     200 paced frames, intact, in order when Ordered. Odd numbers are
//     written with transports.WriteEvent, even ones with WriteFrame; when
//     ReliableControl, every even one arrives, once, in order among the even
//     ones.
//   - SizeLimit: a frame of Caps().MaxFrame+1 bytes is refused by WriteFrame
//     and by transports.WriteEvent with an error wrapping
//     transports.ErrFrameTooLarge, nothing of it is sent, and the connection
//     stays usable both ways.
//   - CloseUnblocksRead: Close unblocks a pending ReadFrame on either end
//     within 2 s with net.ErrClosed; ReadFrame, WriteFrame/Flush and
//     transports.WriteEvent after Close report net.ErrClosed; a second Close
//     returns.
//   - CloseUnblocksWrite (Reliable or ReliableControl): Close unblocks a
//     WriteFrame stalled by a peer that never reads, within 2 s, with
//     net.ErrClosed.
//   - PeerClose (Reliable or ReliableControl): a frame written with
//     WriteFrame and flushed just before Close arrives, then the peer's
//     ReadFrame returns io.EOF within 2 s.
//   - ListenerClose: Close unblocks Accept with net.ErrClosed; Accept with a
//     cancelled or expiring ctx returns ctx.Err(); accepted Conns keep
//     working after the Listener is closed.
//   - Concurrent: one reader and one writer goroutine on each end at once,
//     1,000 frames each way, checked as in Ordered (run it under -race).
//   - DialContext: Dial with a cancelled ctx fails promptly with an error
//     wrapping context.Canceled.
//
// The client writes one frame first on every connection, so transports that
// make a Conn visible to Accept only with its first data are served. Run
// fails at once if tr's Caps are inconsistent: MaxFrame outside
// [64 B, 64 MiB], or Datagram together with Reliable.
func Run(t *testing.T, tr transports.Transport) {
	t.Helper()
	caps := tr.Caps()
	if tr.Name() == "" {
		t.Fatal("Name() is empty")
	}
	if caps.MaxFrame < minMaxFrame || caps.MaxFrame > maxMaxFrame {
		t.Fatalf("Caps().MaxFrame = %d bytes, want between %d and %d", caps.MaxFrame, minMaxFrame, maxMaxFrame)
	}
	if caps.Datagram && caps.Reliable {
		t.Fatalf("Caps() = %+v: a Datagram transport may drop frames, so it cannot be Reliable", caps)
	}
	tests := []struct {
		name string
		fn   func(*testing.T, transports.Transport)
	}{
		{"RoundTrip", testRoundTrip},
		{"Ordered", testOrdered},
		{"SizeLimit", testSizeLimit},
		{"CloseUnblocksRead", testCloseUnblocksRead},
		{"CloseUnblocksWrite", testCloseUnblocksWrite},
		{"PeerClose", testPeerClose},
		{"ListenerClose", testListenerClose},
		{"Concurrent", testConcurrent},
		{"DialContext", testDialContext},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// Registered first, so it runs after every Close of the subtest.
			ignore := goleak.IgnoreCurrent()
			t.Cleanup(func() {
				if err := goleak.Find(ignore); err != nil {
					t.Errorf("goroutines left behind after everything was closed: %v", err)
				}
			})
			tc.fn(t, tr)
		})
	}
}

// testFrames returns the RoundTrip frames: pseudo-random bytes of 1, 100 and
// maxFrame bytes, and 100 and maxFrame bytes starting like an EVENT frame
// (which a transport must carry like any other: frames are opaque).
func testFrames(maxFrame int) [][]byte {
	rng := rand.NewChaCha8([32]byte{'e', 'v', 'b', 'e', 'n', 'c', 'h'})
	random := func(n int, event bool) []byte {
		b := make([]byte, n)
		_, _ = rng.Read(b) // never fails
		if event {
			b[0], b[1] = transports.Version, byte(transports.FrameEvent)
		} else if b[0] == syncFrame[0] {
			b[0]++ // never equal to the sync frame that readers skip
		}
		return b
	}
	return [][]byte{
		random(1, false),
		random(100, false),
		random(maxFrame, false),
		random(100, true),
		random(maxFrame, true),
	}
}

func testRoundTrip(t *testing.T, tr transports.Transport) {
	p := newPair(t, tr)
	frames := testFrames(p.caps.MaxFrame)
	for _, d := range directions {
		t.Run(d.name, func(t *testing.T) {
			w, rc := p.conns(d.clientToServer)
			r := p.reader(rc)
			for i, f := range frames {
				p.deliver(t, w, r, f, frames[:i])
				p.deliverEvent(t, w, r, f, frames[:i+1])
			}
		})
	}
}

func testOrdered(t *testing.T, tr transports.Transport) {
	p := newPair(t, tr)
	n := 2000
	if !p.caps.Reliable {
		n = 200
	}
	for _, d := range directions {
		t.Run(d.name, func(t *testing.T) {
			w, rc := p.conns(d.clientToServer)
			errc := sendNumbered(w, p.caps, n)
			receiveNumbered(t, p.reader(rc), p.caps, n)
			waitWriter(t, errc)
		})
	}
}

// waitWriter waits for a sendNumbered goroutine and fails on its error.
func waitWriter(t *testing.T, errc <-chan error) {
	t.Helper()
	select {
	case err := <-errc:
		if err != nil {
			t.Fatalf("writer: %v", err)
		}
	case <-time.After(frameTimeout):
		t.Fatalf("writer still busy %v after its frames arrived", frameTimeout)
	}
}

func testSizeLimit(t *testing.T, tr transports.Transport) {
	p := newPair(t, tr)
	n := p.caps.MaxFrame + 1
	oversized := [][]byte{make([]byte, n), make([]byte, n)}
	oversized[1][0], oversized[1][1] = transports.Version, byte(transports.FrameEvent)
	for _, d := range directions {
		t.Run(d.name, func(t *testing.T) {
			w, rc := p.conns(d.clientToServer)
			r := p.reader(rc) // reading, so that whatever is sent arrives
			for _, big := range oversized {
				err := Within(frameTimeout, func() error { return w.WriteFrame(big) })
				if !errors.Is(err, transports.ErrFrameTooLarge) {
					t.Fatalf("WriteFrame of %d bytes (MaxFrame+1): %v, want an error wrapping transports.ErrFrameTooLarge", n, err)
				}
				err = Within(frameTimeout, func() error { return transports.WriteEvent(w, big) })
				if !errors.Is(err, transports.ErrFrameTooLarge) {
					t.Fatalf("transports.WriteEvent of %d bytes (MaxFrame+1): %v, want an error wrapping transports.ErrFrameTooLarge", n, err)
				}
			}
			// The next frames must arrive whole and first: no part of the
			// refused frames was sent, and the connection still works.
			after := []byte("after the oversized frames")
			p.deliver(t, w, r, after, nil)
			p.deliverEvent(t, w, r, []byte("an event after the oversized frames"), [][]byte{after})
		})
	}
}

// sides names the two ends of a pair for subtests.
var sides = []struct {
	name   string
	client bool
}{
	{"client", true},
	{"server", false},
}

// end returns the client or the server Conn of p.
func (p *pair) end(client bool) transports.Conn {
	if client {
		return p.client
	}
	return p.server
}

func testCloseUnblocksRead(t *testing.T, tr transports.Transport) {
	for _, s := range sides {
		t.Run(s.name, func(t *testing.T) {
			p := newPair(t, tr)
			c := p.end(s.client)
			r := p.reader(c)
			if res, ok := r.poll(settleDelay); ok {
				t.Fatalf("ReadFrame returned before Close with nothing sent: frame of %d bytes, error %v", len(res.p), res.err)
			}
			closeIn(t, "Close", c.Close)
			res, ok := r.poll(closeTimeout)
			switch {
			case !ok:
				t.Fatalf("ReadFrame still blocked %v after Close", closeTimeout)
			case res.err == nil:
				t.Fatalf("ReadFrame after Close returned a %d-byte frame, want an error", len(res.p))
			case !errors.Is(res.err, net.ErrClosed):
				t.Fatalf("ReadFrame unblocked by Close: %v, want an error wrapping net.ErrClosed", res.err)
			}

			// The reader goroutine has returned; later calls fail the same way.
			err := Within(closeTimeout, func() error { _, err := c.ReadFrame(); return err })
			if !errors.Is(err, net.ErrClosed) {
				t.Errorf("ReadFrame after Close: %v, want an error wrapping net.ErrClosed", err)
			}
			// A buffering Conn may accept the frame and fail at Flush.
			err = Within(closeTimeout, func() error { return writeFlush(c, []byte("after close")) })
			if !errors.Is(err, net.ErrClosed) {
				t.Errorf("WriteFrame+Flush after Close: %v, want an error wrapping net.ErrClosed", err)
			}
			err = Within(closeTimeout, func() error {
				if err := transports.WriteEvent(c, []byte("an event after close")); err != nil {
					return err
				}
				return transports.Flush(c)
			})
			if !errors.Is(err, net.ErrClosed) {
				t.Errorf("transports.WriteEvent+Flush after Close: %v, want an error wrapping net.ErrClosed", err)
			}
			closeIn(t, "second Close", c.Close)
		})
	}
}

func testCloseUnblocksWrite(t *testing.T, tr transports.Transport) {
	if !reliableFrames(tr.Caps()) {
		t.Skip("WriteFrame is not reliable (neither Reliable nor ReliableControl): a write does not wait for the peer, so no write blocks for Close to unblock")
	}
	const (
		maxWrittenBytes = 64 << 20
		maxWriting      = 5 * time.Second
		stallAfter      = 200 * time.Millisecond // no progress for this long: blocked
	)
	for _, s := range sides {
		t.Run(s.name, func(t *testing.T) {
			p := newPair(t, tr)
			w := p.end(s.client) // its peer never reads
			var written atomic.Int64
			errc := make(chan error, 1)
			go func() {
				buf := make([]byte, min(p.caps.MaxFrame, 64<<10))
				for written.Load() < maxWrittenBytes {
					if err := writeFlush(w, buf); err != nil {
						errc <- err
						return
					}
					written.Add(int64(len(buf)))
				}
				errc <- nil
			}()

			// Wait until the writer stalls (or for the bounds).
			start := time.Now()
			last, lastChange := int64(-1), time.Now()
			for stalled := false; !stalled; {
				select {
				case err := <-errc:
					if err == nil {
						t.Fatalf("wrote %d MiB to a peer that never reads without blocking: the transport buffers without bound", maxWrittenBytes>>20)
					}
					t.Fatalf("writing to a peer that does not read, before Close: %v", err)
				case <-time.After(10 * time.Millisecond):
				}
				if n := written.Load(); n != last {
					last, lastChange = n, time.Now()
				}
				stalled = time.Since(lastChange) >= stallAfter
				if !stalled && time.Since(start) > maxWriting {
					t.Logf("writer still making progress after %v (%d bytes); closing while it writes", maxWriting, last)
					break
				}
			}

			closeIn(t, "Close", w.Close)
			select {
			case err := <-errc:
				if !errors.Is(err, net.ErrClosed) {
					t.Fatalf("blocked write unblocked by Close: %v, want an error wrapping net.ErrClosed", err)
				}
			case <-time.After(closeTimeout):
				t.Fatalf("write still blocked %v after Close (%d bytes had been written)", closeTimeout, written.Load())
			}
		})
	}
}

func testPeerClose(t *testing.T, tr transports.Transport) {
	if !reliableFrames(tr.Caps()) {
		t.Skip("WriteFrame is not reliable (neither Reliable nor ReliableControl): a peer's Close need not be signalled (a udp Conn learns of it only by its idle timeout)")
	}
	for _, s := range sides {
		t.Run(s.name+"-closes", func(t *testing.T) {
			p := newPair(t, tr)
			closer, other := p.end(s.client), p.end(!s.client)
			r := p.reader(other)
			last := appendNumbered(nil, 1, numberedMax(p.caps))
			if err := Within(frameTimeout, func() error { return writeFlush(closer, last) }); err != nil {
				t.Fatalf("writing the last frame: %v", err)
			}
			closeIn(t, "Close", closer.Close)
			if got := r.next(t, "the frame written just before Close"); !bytes.Equal(got, last) {
				t.Fatalf("the frame written just before Close: %s", diff(got, last))
			}
			res, ok := r.poll(closeTimeout)
			switch {
			case !ok:
				t.Fatalf("ReadFrame still blocked %v after the peer closed", closeTimeout)
			case res.err == nil:
				t.Fatalf("ReadFrame after the peer closed returned a %d-byte frame, want io.EOF", len(res.p))
			case !errors.Is(res.err, io.EOF):
				t.Fatalf("ReadFrame after the peer closed: %v, want an error wrapping io.EOF", res.err)
			}
		})
	}
}

func testListenerClose(t *testing.T, tr transports.Transport) {
	t.Run("UnblocksAccept", func(t *testing.T) {
		ln := listen(t, tr)
		// The ctx only ends Accept if Close fails to; the test fails first.
		ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
		defer cancel()
		errc := make(chan error, 1)
		go func() {
			c, err := ln.Accept(ctx)
			if c != nil {
				c.Close()
			}
			errc <- err
		}()
		time.Sleep(settleDelay)
		closeIn(t, "Listener.Close", ln.Close)
		select {
		case err := <-errc:
			if !errors.Is(err, net.ErrClosed) {
				t.Fatalf("Accept unblocked by Listener.Close: %v, want an error wrapping net.ErrClosed", err)
			}
		case <-time.After(closeTimeout):
			t.Fatalf("Accept still blocked %v after Listener.Close", closeTimeout)
		}
		err := Within(closeTimeout, func() error { _, err := ln.Accept(ctx); return err })
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("Accept after Listener.Close: %v, want an error wrapping net.ErrClosed", err)
		}
		closeIn(t, "second Listener.Close", ln.Close)
	})

	t.Run("AcceptContext", func(t *testing.T) {
		ln := listen(t, tr)
		cancelled, cancel := context.WithCancel(context.Background())
		cancel()
		expiring, cancel2 := context.WithTimeout(context.Background(), 2*settleDelay)
		defer cancel2()
		for _, ctx := range []context.Context{cancelled, expiring} {
			err := Within(closeTimeout, func() error { _, err := ln.Accept(ctx); return err })
			if ctx.Err() == nil || !errors.Is(err, ctx.Err()) {
				t.Errorf("Accept with a ctx that ends (%v): %v, want ctx.Err() within %v", context.Cause(ctx), err, closeTimeout)
			}
		}
	})

	t.Run("AcceptedConnsStayOpen", func(t *testing.T) {
		p := newPair(t, tr)
		closeIn(t, "Listener.Close", p.ln.Close)
		for _, d := range directions {
			w, rc := p.conns(d.clientToServer)
			p.deliver(t, w, p.reader(rc), []byte("after Listener.Close, "+d.name), nil)
		}
	})
}

func testConcurrent(t *testing.T, tr transports.Transport) {
	const n = 1000
	p := newPair(t, tr)
	client, server := CheckSingleWriter(p.client), CheckSingleWriter(p.server)
	// Both readers and both writers run at the same time; the readers buffer
	// what arrives while the test checks one direction after the other.
	fromClient, fromServer := p.reader(server), p.reader(client)
	clientDone, serverDone := sendNumbered(client, p.caps, n), sendNumbered(server, p.caps, n)
	receiveNumbered(t, fromClient, p.caps, n)
	receiveNumbered(t, fromServer, p.caps, n)
	waitWriter(t, clientDone)
	waitWriter(t, serverDone)
	for _, c := range []*SingleWriterConn{client, server} {
		if v := c.Violations(); v != 0 {
			t.Errorf("the suite broke the single-writer discipline %d times", v)
		}
	}
}

func testDialContext(t *testing.T, tr transports.Transport) {
	ln := listen(t, tr)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var c transports.Conn
	err := Within(closeTimeout, func() (err error) {
		c, err = tr.Dial(ctx, ln.Addr().String())
		return err
	})
	if err == nil {
		closeIn(t, "Close", c.Close)
		t.Fatal("Dial with a cancelled ctx succeeded")
	}
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Dial with a cancelled ctx: %v, want an error wrapping context.Canceled within %v", err, closeTimeout)
	}
}
