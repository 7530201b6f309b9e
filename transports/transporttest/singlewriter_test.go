package transporttest

import (
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/evbench/evbench/transports"
)

// rendezvous makes the first n calls that reach it wait for each other
// once: each of them returns when all n have arrived, so all n are inside
// the Conn at the same time. Later calls pass straight through. A call that
// waits longer than rendezvousTimeout gives up and sets timedOut, which the
// test reports; the bound never makes calls overlap.
type rendezvous struct {
	n        int32
	arrived  atomic.Int32
	all      chan struct{} // closed by the n-th arrival
	timedOut atomic.Bool
}

// rendezvousTimeout bounds a rendezvous wait; reaching it is a failure.
const rendezvousTimeout = 10 * time.Second

func newRendezvous(n int) *rendezvous {
	return &rendezvous{n: int32(n), all: make(chan struct{})}
}

// meet is called on entry to every counted call of the Conn.
func (r *rendezvous) meet() {
	if r == nil {
		return
	}
	switch k := r.arrived.Add(1); {
	case k > r.n: // the rendezvous is over
		return
	case k == r.n:
		close(r.all)
		return
	}
	t := time.NewTimer(rendezvousTimeout)
	defer t.Stop()
	select {
	case <-r.all:
	case <-t.C:
		r.timedOut.Store(true)
	}
}

// countingConn is a Conn that counts its calls. With a rendezvous, its
// WriteFrame, Flush and ReadFrame meet there first, so that calls from
// different goroutines overlap for certain.
type countingConn struct {
	meet                    *rendezvous // nil: no waiting
	writes, flushes, closes atomic.Int64
}

func (c *countingConn) WriteFrame(p []byte) error { c.meet.meet(); c.writes.Add(1); return nil }
func (c *countingConn) Flush() error              { c.meet.meet(); c.flushes.Add(1); return nil }
func (c *countingConn) ReadFrame() ([]byte, error) {
	c.meet.meet()
	return []byte("frame"), nil
}
func (c *countingConn) Close() error { c.closes.Add(1); return nil }

// countingDatagramConn is a countingConn that is a transports.DatagramConn.
type countingDatagramConn struct {
	*countingConn
	datagrams atomic.Int64
}

func (c *countingDatagramConn) WriteDatagram(p []byte) error {
	c.meet.meet()
	c.datagrams.Add(1)
	return nil
}
func (c *countingConn) RemoteAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9}
}

// TestCheckSingleWriter runs call patterns against the checker: the allowed
// ones (serial calls, one reader beside one writer) must count nothing, the
// breaches must be counted. Goroutines that run at once meet inside the
// wrapped Conn on their first calls, so the overlap the row is about happens
// in every run: the checker has counted every one of them in before any
// leaves.
func TestCheckSingleWriter(t *testing.T) {
	const calls = 20
	write := func(c *SingleWriterConn) {
		for range calls {
			_ = c.WriteFrame([]byte("x"))
		}
	}
	read := func(c *SingleWriterConn) {
		for range calls {
			_, _ = c.ReadFrame()
		}
	}
	flush := func(c *SingleWriterConn) {
		for range calls {
			_ = c.Flush()
		}
	}
	datagram := func(c *SingleWriterConn) {
		for range calls {
			_ = c.WriteDatagram([]byte("d"))
		}
	}
	tests := []struct {
		name       string
		goroutines []func(*SingleWriterConn) // run at once, overlapping
		breach     bool
	}{
		{"serial writes, flushes and reads", []func(*SingleWriterConn){func(c *SingleWriterConn) {
			write(c)
			flush(c)
			read(c)
		}}, false},
		{"one reader beside one writer", []func(*SingleWriterConn){write, read}, false},
		{"one reader beside one datagram writer", []func(*SingleWriterConn){datagram, read}, false},
		{"two writers", []func(*SingleWriterConn){write, write}, true},
		{"two readers", []func(*SingleWriterConn){read, read}, true},
		{"a flush beside a writer", []func(*SingleWriterConn){write, flush}, true},
		{"a datagram writer beside a writer", []func(*SingleWriterConn){write, datagram}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var meet *rendezvous
			if len(tt.goroutines) > 1 {
				meet = newRendezvous(len(tt.goroutines))
			}
			inner := &countingConn{meet: meet}
			c := CheckSingleWriter(inner)
			var wg sync.WaitGroup
			for _, g := range tt.goroutines {
				wg.Go(func() { g(c) })
			}
			wg.Wait()
			if meet != nil && meet.timedOut.Load() {
				t.Fatalf("the %d goroutines did not all reach the Conn within %v", len(tt.goroutines), rendezvousTimeout)
			}
			if v := c.Violations(); (v > 0) != tt.breach {
				t.Errorf("Violations() = %d, want breach = %v", v, tt.breach)
			}
		})
	}
}

// TestCheckSingleWriterDelegates checks that the wrapper passes every call
// through, and that Flush is a no-op returning nil when the wrapped Conn has
// no Flusher.
func TestCheckSingleWriterDelegates(t *testing.T) {
	inner := &countingConn{}
	c := CheckSingleWriter(inner)
	if err := c.WriteFrame([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	if p, err := c.ReadFrame(); err != nil || string(p) != "frame" {
		t.Fatalf("ReadFrame() = %q, %v", p, err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if got, want := c.RemoteAddr().String(), "127.0.0.1:9"; got != want {
		t.Errorf("RemoteAddr() = %s, want %s", got, want)
	}
	if w, f, cl := inner.writes.Load(), inner.flushes.Load(), inner.closes.Load(); w != 1 || f != 1 || cl != 1 {
		t.Errorf("inner saw %d writes, %d flushes, %d closes; want 1 each", w, f, cl)
	}

	// WriteDatagram is transports.WriteEvent on the wrapped Conn: WriteFrame
	// on a Conn that is no DatagramConn, WriteDatagram on one that is.
	if err := c.WriteDatagram([]byte("d")); err != nil {
		t.Fatal(err)
	}
	if w := inner.writes.Load(); w != 2 {
		t.Errorf("WriteDatagram on a Conn without it: inner saw %d writes, want 2", w)
	}
	dinner := &countingDatagramConn{countingConn: &countingConn{}}
	d := CheckSingleWriter(dinner)
	if err := transports.WriteEvent(d, []byte("d")); err != nil {
		t.Fatal(err)
	}
	if err := d.WriteFrame([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if dg, w := dinner.datagrams.Load(), dinner.writes.Load(); dg != 1 || w != 1 {
		t.Errorf("WriteEvent and WriteFrame on a wrapped DatagramConn: %d datagrams, %d writes; want 1 each", dg, w)
	}

	// A Conn without Flusher: only the transports.Conn methods are visible.
	noFlush := CheckSingleWriter(struct{ transports.Conn }{inner})
	if err := noFlush.Flush(); err != nil {
		t.Errorf("Flush of a Conn without Flusher: %v, want nil", err)
	}
	if f := inner.flushes.Load(); f != 1 {
		t.Errorf("Flush reached a Conn that hides its Flusher (%d flushes)", f)
	}
}

// TestCheckSingleWriterOverPipe uses the fake transport's net.Pipe Conns:
// frames written serially from one goroutine while another reads arrive
// intact, with no violation counted.
func TestCheckSingleWriterOverPipe(t *testing.T) {
	a, b := net.Pipe()
	client := CheckSingleWriter(&fakeConn{pipe: a})
	server := CheckSingleWriter(&fakeConn{pipe: b})
	defer client.Close()
	defer server.Close()
	const n = 100
	errc := make(chan error, 1)
	go func() {
		for i := range n {
			if err := writeFlush(client, []byte{byte(i)}); err != nil {
				errc <- err
				return
			}
		}
		errc <- nil
	}()
	for i := range n {
		p, err := server.ReadFrame()
		if err != nil || len(p) != 1 || p[0] != byte(i) {
			t.Fatalf("frame %d: %v, %v", i, p, err)
		}
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if v := client.Violations() + server.Violations(); v != 0 {
		t.Errorf("%d violations", v)
	}
}
