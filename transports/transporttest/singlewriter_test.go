package transporttest

import (
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/evbench/evbench/transports"
)

// slowConn is a Conn whose WriteFrame, Flush and ReadFrame each take delay,
// so that calls from two goroutines overlap for sure. It counts the calls.
type slowConn struct {
	delay                   time.Duration
	writes, flushes, closes atomic.Int64
}

func (c *slowConn) WriteFrame(p []byte) error { time.Sleep(c.delay); c.writes.Add(1); return nil }
func (c *slowConn) Flush() error              { time.Sleep(c.delay); c.flushes.Add(1); return nil }
func (c *slowConn) ReadFrame() ([]byte, error) {
	time.Sleep(c.delay)
	return []byte("frame"), nil
}
func (c *slowConn) Close() error         { c.closes.Add(1); return nil }
func (c *slowConn) RemoteAddr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9} }

// TestCheckSingleWriter runs call patterns against the checker: the allowed
// ones (serial calls, one reader beside one writer) must count nothing, the
// breaches must be counted.
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
	tests := []struct {
		name       string
		goroutines []func(*SingleWriterConn) // run at once
		breach     bool
	}{
		{"serial writes, flushes and reads", []func(*SingleWriterConn){func(c *SingleWriterConn) {
			write(c)
			flush(c)
			read(c)
		}}, false},
		{"one reader beside one writer", []func(*SingleWriterConn){write, read}, false},
		{"two writers", []func(*SingleWriterConn){write, write}, true},
		{"two readers", []func(*SingleWriterConn){read, read}, true},
		{"a flush beside a writer", []func(*SingleWriterConn){write, flush}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := CheckSingleWriter(&slowConn{delay: time.Millisecond})
			var wg sync.WaitGroup
			for _, g := range tt.goroutines {
				wg.Go(func() { g(c) })
			}
			wg.Wait()
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
	inner := &slowConn{}
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
