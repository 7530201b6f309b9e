package transports_test

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/evbench/evbench/transports"
)

// recordConn is a Client's Conn that plays a server: it answers the HELLO
// with id recordConnID, then has nothing more to read until Close, so the
// Client's read loop stays blocked in ReadFrame and allocates nothing.
// WriteFrame only records: it counts the frames and keeps a copy of the
// last one in a reused buffer.
type recordConn struct {
	hello     chan struct{} // closed when HELLO was written
	closed    chan struct{}
	helloOnce sync.Once
	closeOnce sync.Once
	helloSent bool // read side only

	frames int    // writer side: frames written
	last   []byte // writer side: a copy of the last frame written
}

const recordConnID = 7

func newRecordConn() *recordConn {
	return &recordConn{hello: make(chan struct{}), closed: make(chan struct{}), last: make([]byte, 0, 1024)}
}

func (c *recordConn) WriteFrame(p []byte) error {
	if c.frames == 0 && len(p) > 1 && transports.FrameType(p[1]) == transports.FrameHello {
		c.helloOnce.Do(func() { close(c.hello) })
	}
	c.frames++
	c.last = append(c.last[:0], p...)
	return nil
}

func (c *recordConn) ReadFrame() ([]byte, error) {
	if !c.helloSent {
		select {
		case <-c.hello:
			c.helloSent = true
			return transports.AppendFrame(nil, &transports.Frame{Type: transports.FrameHello, Sender: recordConnID})
		case <-c.closed:
			return nil, net.ErrClosed
		}
	}
	<-c.closed
	return nil, net.ErrClosed
}

func (c *recordConn) Close() error {
	c.closeOnce.Do(func() { close(c.closed) })
	return nil
}

func (c *recordConn) RemoteAddr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }

// dialRecord returns a Client over a recordConn, closed when the test ends.
func dialRecord(t *testing.T, cfg transports.ClientConfig) (*transports.Client, *recordConn) {
	t.Helper()
	conn := newRecordConn()
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	c, err := transports.Dial(ctx, fakeTransport{conn}, "fake", cfg)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c, conn
}

// TestC13ClientAllocs is docs/cases.md C13 for the Client's share of the
// per-delivery path, each part run synchronously on the test goroutine
// (the Client's read loop is blocked in ReadFrame, and nothing else runs):
// Emit, with and without an ACK requested, encodes into the Client's
// buffer and writes; the read loop's per-frame work (Client.handle) decodes
// an EVENT and hands it to OnEvent, or decodes an emit's ACK, settles its
// pending entry and reports it to OnAck. None of them may allocate.
func TestC13ClientAllocs(t *testing.T) {
	if raceEnabled() {
		t.Skip("allocation counts are not checked under the race detector")
	}
	const runs = 1000
	payload := make([]byte, 64)
	ev := transports.Frame{Namespace: []byte("/"), Room: []byte("r"), Name: []byte("message"), Payload: payload}

	t.Run("Emit", func(t *testing.T) {
		c, conn := dialRecord(t, transports.ClientConfig{})
		before := conn.frames
		allocs := testing.AllocsPerRun(runs, func() {
			ev.Seq++
			if err := c.Emit(&ev, false); err != nil {
				t.Fatal(err)
			}
		})
		if got, want := conn.frames-before, runs+1; got != want {
			t.Errorf("%d frames written, want %d", got, want)
		}
		var f transports.Frame
		if err := transports.DecodeFrame(conn.last, &f); err != nil || f.Type != transports.FrameEmit || f.Seq != ev.Seq || f.Sender != recordConnID {
			t.Errorf("last frame written: %+v, %v; want EMIT seq %d from %d", f, err, ev.Seq, recordConnID)
		}
		if allocs != 0 {
			t.Errorf("%v allocations per Emit, want 0", allocs)
		}
	})

	t.Run("Emit with ACK, and the ACK", func(t *testing.T) {
		acks := 0
		c, _ := dialRecord(t, transports.ClientConfig{OnAck: func(time.Duration) { acks++ }})
		var in transports.Frame
		ack := make([]byte, 0, 64)
		allocs := testing.AllocsPerRun(runs, func() {
			ev.Seq++
			if err := c.Emit(&ev, true); err != nil {
				t.Fatal(err)
			}
			var err error
			if ack, err = transports.AppendFrame(ack[:0], &transports.Frame{Type: transports.FrameAck, AckID: ev.AckID}); err != nil {
				t.Fatal(err)
			}
			if err := c.Handle(ack, &in, 1); err != nil {
				t.Fatal(err)
			}
		})
		if acks != runs+1 || c.PendingAcks() != 0 {
			t.Errorf("OnAck called %d times, %d ACKs pending; want %d and 0", acks, c.PendingAcks(), runs+1)
		}
		if allocs != 0 {
			t.Errorf("%v allocations per Emit with an ACK and its ACK, want 0", allocs)
		}
	})

	t.Run("EVENT received", func(t *testing.T) {
		var events int
		var lastSeq uint64
		c, _ := dialRecord(t, transports.ClientConfig{OnEvent: func(f *transports.Frame, _ int64) {
			events++
			lastSeq = f.Seq
		}})
		in := transports.Frame{Type: transports.FrameEvent, Namespace: []byte("/"), Room: []byte("r"), Name: []byte("message"),
			Sender: 3, Offset: 1, Payload: payload}
		p := make([]byte, 0, 256)
		var f transports.Frame
		allocs := testing.AllocsPerRun(runs, func() {
			in.Seq++
			in.Offset++
			var err error
			if p, err = transports.AppendFrame(p[:0], &in); err != nil {
				t.Fatal(err)
			}
			if err := c.Handle(p, &f, 1); err != nil {
				t.Fatal(err)
			}
		})
		if events != runs+1 || lastSeq != in.Seq {
			t.Errorf("OnEvent called %d times, last seq %d; want %d and %d", events, lastSeq, runs+1, in.Seq)
		}
		if allocs != 0 {
			t.Errorf("%v allocations per EVENT received, want 0", allocs)
		}
	})
}
