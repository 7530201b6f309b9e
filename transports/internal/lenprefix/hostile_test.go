package lenprefix

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/evbench/evbench/transports"
)

// TestAnnouncedLengthIsNotAllocated announces the largest frame and sends a
// few bytes of it: the Reader must hold nothing for it beyond br's buffer.
// Then it sends k bytes of a large frame and checks that the frame buffer
// is at most about twice k.
func TestAnnouncedLengthIsNotAllocated(t *testing.T) {
	const maxBytes = 16 << 20
	in := binary.BigEndian.AppendUint32(nil, maxBytes)
	in = append(in, 1, 2, 3, 4, 5, 6, 7, 8)
	r := NewReader(bufio.NewReaderSize(bytes.NewReader(in), 4096), maxBytes)
	if _, err := r.Next(); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("Next = %v, want io.ErrUnexpectedEOF", err)
	}
	t.Logf("prefix announcing %d bytes plus 8 bytes: frame buffer of %d bytes", maxBytes, cap(r.buf))
	if cap(r.buf) != 0 {
		t.Errorf("frame buffer of %d bytes for 8 bytes received, want none", cap(r.buf))
	}
	for _, k := range []int{4096, 10000, 100 << 10, 3 << 20} {
		in := binary.BigEndian.AppendUint32(nil, maxBytes)
		in = append(in, pattern(k, 1)...)
		r := NewReader(bufio.NewReaderSize(bytes.NewReader(in), 4096), maxBytes)
		if _, err := r.Next(); !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("%d bytes: Next = %v, want io.ErrUnexpectedEOF", k, err)
		}
		t.Logf("prefix announcing %d bytes plus %d bytes: frame buffer of %d bytes", maxBytes, k, cap(r.buf))
		if cap(r.buf) > 2*k+4096 {
			t.Errorf("%d bytes received: frame buffer of %d bytes, want at most %d", k, cap(r.buf), 2*k+4096)
		}
	}
}

// TestLargeBufferIsNotRetained reads a frame over RetainBytes, then a frame
// that needs the copying buffer too, and checks that the second starts from
// a small buffer again; a frame up to RetainBytes keeps its buffer.
func TestLargeBufferIsNotRetained(t *testing.T) {
	const bufBytes = 4096
	huge := pattern(RetainBytes+1000, 1)
	medium := pattern(RetainBytes/2, 2)
	small := pattern(2*bufBytes, 3)
	r := NewReader(bufio.NewReaderSize(bytes.NewReader(wire(huge, small, medium, small)), bufBytes), 2*RetainBytes)
	for i, want := range [][]byte{huge, small, medium, small} {
		got, err := r.Next()
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("frame %d: %d bytes, %v; want %d bytes", i, len(got), err, len(want))
		}
		t.Logf("frame %d of %d bytes: buffer of %d bytes", i, len(want), cap(r.buf))
		switch i {
		case 0:
			if cap(r.buf) != len(huge) {
				t.Errorf("huge frame: buffer of %d bytes, want exactly the frame's %d", cap(r.buf), len(huge))
			}
		case 1:
			if cap(r.buf) > 4*bufBytes {
				t.Errorf("small frame after a huge one: buffer of %d bytes, want it to start small again (at most %d)", cap(r.buf), 4*bufBytes)
			}
		case 3:
			if cap(r.buf) < len(medium) {
				t.Errorf("small frame after a medium one: buffer of %d bytes, want the medium one's kept (%d)", cap(r.buf), len(medium))
			}
		}
	}
}

// countingDeadliner counts SetReadDeadline calls on a net.Conn.
type countingDeadliner struct {
	net.Conn
	calls atomic.Int64
}

func (c *countingDeadliner) SetReadDeadline(t time.Time) error {
	c.calls.Add(1)
	return c.Conn.SetReadDeadline(t)
}

// TestReadTimeout sends a prefix and half a frame and stops: Next must fail
// with transports.ErrReadTimeout within the timeout and a second. A peer
// that sends nothing at all is not timed out.
func TestReadTimeout(t *testing.T) {
	const timeout = 200 * time.Millisecond
	for _, tt := range []struct {
		name string
		send []byte
	}{
		{"half a prefix", []byte{0, 0}},
		{"prefix only", binary.BigEndian.AppendUint32(nil, 10)},
		{"half a small frame", wire(pattern(10, 1))[:9]},
		{"half a large frame", wire(pattern(3*testMaxBytes, 1))[:2*testMaxBytes]},
		{"a frame and half a prefix", append(wire([]byte("ok")), 0)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			server, client := net.Pipe()
			defer client.Close()
			defer server.Close()
			r := NewReader(bufio.NewReaderSize(server, testMaxBytes), 4*testMaxBytes)
			r.SetReadTimeout(server, timeout)
			go client.Write(tt.send)
			start := time.Now()
			var err error
			for err == nil {
				_, err = r.Next()
			}
			took := time.Since(start)
			t.Logf("Next failed after %v: %v", took.Round(time.Millisecond), err)
			if !errors.Is(err, transports.ErrReadTimeout) || !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("Next = %v, want an error wrapping ErrReadTimeout and os.ErrDeadlineExceeded", err)
			}
			if took > timeout+time.Second {
				t.Errorf("Next took %v, want at most %v", took, timeout+time.Second)
			}
		})
	}
	t.Run("silent peer", func(t *testing.T) {
		server, client := net.Pipe()
		defer client.Close()
		r := NewReader(bufio.NewReaderSize(server, testMaxBytes), 4*testMaxBytes)
		r.SetReadTimeout(server, timeout)
		// A frame that straddles reads arms a deadline; the wait for the
		// next frame must not inherit it.
		go func() {
			f := wire(pattern(50, 1))
			client.Write(f[:10])
			client.Write(f[10:])
		}()
		if p, err := r.Next(); err != nil || len(p) != 50 {
			t.Fatalf("Next = %d bytes, %v", len(p), err)
		}
		done := make(chan error, 1)
		go func() {
			_, err := r.Next()
			done <- err
		}()
		wait := time.NewTimer(2 * timeout)
		defer wait.Stop()
		select {
		case err := <-done:
			t.Fatalf("Next on a silent peer returned %v before %v", err, 2*timeout)
		case <-wait.C:
			t.Logf("Next still waits for a silent peer after %v", 2*timeout)
		}
		server.Close()
		if err := <-done; errors.Is(err, transports.ErrReadTimeout) {
			t.Errorf("after Close, Next = %v, not a timeout", err)
		}
	})
}

// TestReadTimeoutCostsNothingWhenBuffered reads many frames delivered in
// one write and checks that SetReadDeadline is not called per frame.
func TestReadTimeoutCostsNothingWhenBuffered(t *testing.T) {
	server, client := net.Pipe()
	defer client.Close()
	defer server.Close()
	dl := &countingDeadliner{Conn: server}
	const frames = 1000
	var in []byte
	for i := range frames {
		in = append(in, wire(pattern(10+i%20, byte(i)))...)
	}
	go client.Write(in)
	r := NewReader(bufio.NewReaderSize(server, 4096), 1<<20)
	r.SetReadTimeout(dl, time.Minute)
	for i := range frames {
		if _, err := r.Next(); err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
	}
	t.Logf("%d frames in %d bytes through a 4 KiB buffer: %d SetReadDeadline calls", frames, len(in), dl.calls.Load())
	// One arm and one disarm at most per refill of the 4 KiB buffer.
	if max := int64(2 * (len(in)/4096 + 2)); dl.calls.Load() > max {
		t.Errorf("%d SetReadDeadline calls, want at most %d", dl.calls.Load(), max)
	}
}

// TestReadTimeoutDoesNotAllocate checks the steady state with a timeout
// set, for frames read in place and copied.
func TestReadTimeoutDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	for _, n := range []int{64, 3 * testMaxBytes} {
		src := &loopReader{b: wire(pattern(n, 1), pattern(n/2, 2))}
		r := NewReader(bufio.NewReaderSize(src, testMaxBytes), 3*testMaxBytes)
		r.SetReadTimeout(nopDeadliner{}, time.Second)
		step := func() {
			if _, err := r.Next(); err != nil {
				t.Fatal(err)
			}
		}
		step()
		step()
		if allocs := testing.AllocsPerRun(100, step); allocs != 0 {
			t.Errorf("%d-byte frames: Next allocates %.1f times", n, allocs)
		}
	}
}

type nopDeadliner struct{}

func (nopDeadliner) SetReadDeadline(time.Time) error { return nil }

// splitReader returns a, then b, then io.EOF: a stream that arrives in two
// reads split at a chosen point.
type splitReader struct{ a, b []byte }

func (s *splitReader) Read(p []byte) (int, error) {
	switch {
	case len(s.a) > 0:
		n := copy(p, s.a)
		s.a = s.a[n:]
		return n, nil
	case len(s.b) > 0:
		n := copy(p, s.b)
		s.b = s.b[n:]
		return n, nil
	}
	return 0, io.EOF
}

// fuzzSeeds are streams for both fuzz targets: frames of every path, and
// the malformed cases.
func fuzzSeeds() [][]byte {
	return [][]byte{
		nil,
		wire([]byte("a"), []byte("bc")),
		wire(pattern(40, 1), []byte{}),
		append(wire([]byte("ok")), 0, 0),
		{0xff, 0xff, 0xff, 0xff},
		wire(pattern(300, 2))[:200],
		wire(pattern(12, 3), pattern(13, 4), pattern(100, 5)),
		binary.BigEndian.AppendUint32(nil, 101),
		wire([]byte{}, []byte{}, []byte{}),
		append(binary.BigEndian.AppendUint32(nil, 1<<24), 1, 2, 3, 4, 5, 6, 7, 8),
		wire(pattern(64, 6), pattern(64, 7), pattern(64, 8)),
		{0, 0, 0},
	}
}

// check reads data through r and compares with parse, as FuzzReader
// describes.
func check(t *testing.T, r *Reader, data []byte, maxBytes int) {
	t.Helper()
	rest := data
	// Each frame takes at least PrefixBytes, so this ends by an error.
	for i := 0; ; i++ {
		want, wantErr := parse(&rest, maxBytes)
		got, err := r.Next()
		if len(got) > maxBytes {
			t.Fatalf("frame %d: %d bytes, over the maximum %d", i, len(got), maxBytes)
		}
		if !errors.Is(err, wantErr) || !bytes.Equal(got, want) {
			t.Fatalf("frame %d: %d bytes, %v; want %d bytes, %v", i, len(got), err, len(want), wantErr)
		}
		if cap(r.buf) > max(2*len(data), maxBytes) {
			t.Fatalf("frame %d: buffer of %d bytes for a stream of %d", i, cap(r.buf), len(data))
		}
		if err != nil {
			if _, err2 := r.Next(); err2 != err {
				t.Fatalf("after %v, Next = %v", err, err2)
			}
			return
		}
		if i > len(data) {
			t.Fatalf("%d frames from %d bytes", i, len(data))
		}
	}
}

// FuzzReaderSplit is FuzzReader with the stream arriving in two reads, split
// at a fuzzed point, so that prefixes and frames straddle the reads
// anywhere.
func FuzzReaderSplit(f *testing.F) {
	for i, s := range fuzzSeeds() {
		f.Add(s, uint16(i*3), uint8(i*5), uint16(64+i*20))
	}
	f.Fuzz(func(t *testing.T, data []byte, split uint16, bufExtra uint8, maxBytes uint16) {
		at := min(int(split), len(data))
		src := &splitReader{a: data[:at], b: data[at:]}
		r := NewReader(bufio.NewReaderSize(src, testBufBytes+int(bufExtra)), int(maxBytes))
		check(t, r, data, int(maxBytes))
	})
}
