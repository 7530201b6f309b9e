package lenprefix

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"testing"
	"testing/iotest"

	"github.com/evbench/evbench/transports"
)

// Sizes used by the tests: bufio's smallest buffer, so that the copying
// path is easy to reach, and a maximum a few buffers long.
const (
	testBufBytes = 16
	testMaxBytes = 100
)

// wire is frames as they travel: each with its length prefix.
func wire(frames ...[]byte) []byte {
	var b []byte
	for _, f := range frames {
		b = Append(b, f)
	}
	return b
}

// pattern is n bytes that differ from frame to frame (by seed).
func pattern(n int, seed byte) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = seed + byte(i)
	}
	return p
}

var errBroken = errors.New("broken pipe (test)")

// TestNext reads raw bytes through Next, delivered whole, one byte at a
// time and in halves, so that prefixes and frames straddle reads.
func TestNext(t *testing.T) {
	inPlace := pattern(testBufBytes-PrefixBytes, 1)  // the largest frame returned from the bufio buffer
	copied := pattern(testBufBytes-PrefixBytes+1, 2) // the smallest frame copied out of it
	largest := pattern(testMaxBytes, 3)
	tests := []struct {
		name    string
		in      io.Reader
		want    [][]byte
		wantErr error // after the frames in want; io.EOF for a clean end
	}{
		{"empty stream", bytes.NewReader(nil), nil, io.EOF},
		{"one empty frame", bytes.NewReader(wire([]byte{})), [][]byte{{}}, io.EOF},
		{"three frames", bytes.NewReader(wire([]byte("a"), []byte("bc"), []byte("def"))),
			[][]byte{[]byte("a"), []byte("bc"), []byte("def")}, io.EOF},
		{"largest in place", bytes.NewReader(wire(inPlace)), [][]byte{inPlace}, io.EOF},
		{"smallest copied", bytes.NewReader(wire(copied)), [][]byte{copied}, io.EOF},
		{"exactly the maximum", bytes.NewReader(wire(largest)), [][]byte{largest}, io.EOF},
		{"small large small", bytes.NewReader(wire([]byte("x"), largest, []byte("y"), copied)),
			[][]byte{[]byte("x"), largest, []byte("y"), copied}, io.EOF},
		{"truncated prefix", bytes.NewReader([]byte{0, 0}), nil, io.ErrUnexpectedEOF},
		{"truncated prefix after a frame", bytes.NewReader(append(wire([]byte("ok")), 0, 0, 0)),
			[][]byte{[]byte("ok")}, io.ErrUnexpectedEOF},
		{"prefix without its frame", bytes.NewReader(wire([]byte("hello"))[:PrefixBytes]), nil, io.ErrUnexpectedEOF},
		{"truncated small frame", bytes.NewReader(wire([]byte("hello"))[:7]), nil, io.ErrUnexpectedEOF},
		{"truncated large frame", bytes.NewReader(wire(largest)[:testMaxBytes]), nil, io.ErrUnexpectedEOF},
		{"prefix one over the maximum", bytes.NewReader(binary.BigEndian.AppendUint32(nil, testMaxBytes+1)),
			nil, transports.ErrFrameTooLarge},
		{"prefix 4 GiB-1", bytes.NewReader([]byte{0xff, 0xff, 0xff, 0xff, 1, 2, 3}), nil, transports.ErrFrameTooLarge},
		{"reader error between frames", io.MultiReader(bytes.NewReader(wire([]byte("ok"))), iotest.ErrReader(errBroken)),
			[][]byte{[]byte("ok")}, errBroken},
		{"reader error inside a frame", io.MultiReader(bytes.NewReader(wire(largest)[:50]), iotest.ErrReader(errBroken)),
			nil, errBroken},
	}
	delivery := []struct {
		name string
		wrap func(io.Reader) io.Reader
	}{
		{"whole", func(r io.Reader) io.Reader { return r }},
		{"bytewise", iotest.OneByteReader},
		{"halves", iotest.HalfReader},
	}
	for _, tt := range tests {
		// The reader is consumed by the first delivery, so read it once.
		in, rerr := io.ReadAll(tt.in)
		for _, d := range delivery {
			t.Run(tt.name+"/"+d.name, func(t *testing.T) {
				src := io.Reader(bytes.NewReader(in))
				if rerr != nil {
					src = io.MultiReader(src, iotest.ErrReader(rerr))
				}
				r := NewReader(bufio.NewReaderSize(d.wrap(src), testBufBytes), testMaxBytes)
				for i, want := range tt.want {
					got, err := r.Next()
					if err != nil {
						t.Fatalf("frame %d: %v", i, err)
					}
					if !bytes.Equal(got, want) {
						t.Fatalf("frame %d: got %d bytes, want %d bytes (%q...)", i, len(got), len(want), want[:min(len(want), 8)])
					}
				}
				_, err := r.Next()
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("after %d frames: err = %v, want %v", len(tt.want), err, tt.wantErr)
				}
				if _, err2 := r.Next(); err2 != err {
					t.Errorf("second read: err = %v, want %v again", err2, err)
				}
			})
		}
	}
}

// TestBufferGrowsGeometrically reads frames that grow by one byte each
// time and checks that the copying buffer is reallocated only a
// logarithmic number of times and never beyond the maximum.
func TestBufferGrowsGeometrically(t *testing.T) {
	var frames [][]byte
	for n := testBufBytes; n <= testMaxBytes; n++ {
		frames = append(frames, pattern(n, byte(n)))
	}
	r := NewReader(bufio.NewReaderSize(bytes.NewReader(wire(frames...)), testBufBytes), testMaxBytes)
	grew := 0
	for i, want := range frames {
		before := cap(r.buf)
		got, err := r.Next()
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("frame %d: %d bytes, %v; want %d bytes", i, len(got), err, len(want))
		}
		if cap(r.buf) != before {
			grew++
		}
		if cap(r.buf) > testMaxBytes {
			t.Fatalf("frame %d: buffer of %d bytes, over the maximum %d", i, cap(r.buf), testMaxBytes)
		}
	}
	// 13 → 100 bytes by doubling: 13, 26, 52, 100.
	if grew > 4 {
		t.Errorf("the buffer was reallocated %d times for %d growing frames, want at most 4", grew, len(frames))
	}
}

// TestWriteFrame checks the bytes WriteFrame puts on the wire, with a bufio
// buffer smaller than some frames and prefixes that straddle its end, and
// that Append writes the same bytes.
func TestWriteFrame(t *testing.T) {
	tests := []struct {
		name   string
		frames [][]byte
	}{
		{"nothing", nil},
		{"one empty frame", [][]byte{{}}},
		{"small frames", [][]byte{[]byte("a"), []byte("bc"), []byte("def")}},
		{"prefix straddles the buffer end", [][]byte{pattern(testBufBytes-PrefixBytes-2, 1), []byte("xyz")}},
		{"frames larger than the buffer", [][]byte{pattern(3*testBufBytes, 2), []byte("z"), pattern(testMaxBytes, 3)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			bw := bufio.NewWriterSize(&out, testBufBytes)
			for i, f := range tt.frames {
				if err := WriteFrame(bw, f); err != nil {
					t.Fatalf("frame %d: %v", i, err)
				}
			}
			if err := bw.Flush(); err != nil {
				t.Fatal(err)
			}
			if want := wire(tt.frames...); !bytes.Equal(out.Bytes(), want) {
				t.Fatalf("wire = %x, want %x", out.Bytes(), want)
			}
		})
	}
}

// TestWriteFrameError checks that an error of the underlying writer is
// returned, whether it comes while writing the prefix or the frame.
func TestWriteFrameError(t *testing.T) {
	tests := []struct {
		name    string
		pending int // bytes already buffered
		frame   int
	}{
		{"no room for the prefix", testBufBytes - 1, 1},
		{"frame over the buffer", 0, 3 * testBufBytes},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bw := bufio.NewWriterSize(failWriter{}, testBufBytes)
			bw.Write(pattern(tt.pending, 0))
			if err := WriteFrame(bw, pattern(tt.frame, 1)); !errors.Is(err, errBroken) {
				t.Fatalf("WriteFrame = %v, want %v", err, errBroken)
			}
		})
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errBroken }

// loopReader returns its bytes over and over, without allocating.
type loopReader struct {
	b   []byte
	off int
}

func (l *loopReader) Read(p []byte) (int, error) {
	n := copy(p, l.b[l.off:])
	l.off = (l.off + n) % len(l.b)
	return n, nil
}

// TestNextDoesNotAllocate checks the steady state of both read paths and
// of WriteFrame.
func TestNextDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	for _, n := range []int{0, 64, 3 * testMaxBytes} {
		t.Run(fmt.Sprintf("%dB", n), func(t *testing.T) {
			src := &loopReader{b: wire(pattern(n, 1), pattern(n/2, 2))}
			// Frames of 0 to 64 bytes are read in place, 150 and 300 copied.
			r := NewReader(bufio.NewReaderSize(src, testMaxBytes), 3*testMaxBytes)
			bw := bufio.NewWriterSize(io.Discard, 4*testMaxBytes)
			frame := pattern(n, 3)
			step := func() {
				for range 2 {
					if _, err := r.Next(); err != nil {
						t.Fatal(err)
					}
				}
				if err := WriteFrame(bw, frame); err != nil {
					t.Fatal(err)
				}
			}
			step() // warm the buffer
			if allocs := testing.AllocsPerRun(100, step); allocs != 0 {
				t.Errorf("Next, Next, WriteFrame allocate %.1f times", allocs)
			}
		})
	}
}

// BenchmarkWriteNext writes one frame with WriteFrame and reads one with
// Next, from memory; it reports 0 allocs/op. Frames up to 32 KiB are read
// in place, the 64 KiB one through the copying buffer.
func BenchmarkWriteNext(b *testing.B) {
	const bufBytes = 32 << 10
	for _, n := range []int{64, 1 << 10, 16 << 10, 64 << 10} {
		b.Run(fmt.Sprintf("%dB", n), func(b *testing.B) {
			frame := pattern(n, 1)
			r := NewReader(bufio.NewReaderSize(&loopReader{b: wire(frame)}, bufBytes), 1<<20)
			bw := bufio.NewWriterSize(io.Discard, bufBytes)
			b.SetBytes(int64(n))
			b.ReportAllocs()
			for b.Loop() {
				if err := WriteFrame(bw, frame); err != nil {
					b.Fatal(err)
				}
				if p, err := r.Next(); err != nil || len(p) != n {
					b.Fatalf("Next = %d bytes, %v", len(p), err)
				}
			}
		})
	}
}

// FuzzReader checks Next against a direct parse of the same bytes, for
// any bufio buffer size and maximum: it never panics, returns the same
// frames (never over the maximum) and ends with the same kind of error,
// which is sticky.
func FuzzReader(f *testing.F) {
	for i, s := range fuzzSeeds() {
		f.Add(s, uint8(i*7), uint16(10+i*40))
	}
	f.Fuzz(func(t *testing.T, data []byte, bufExtra uint8, maxBytes uint16) {
		r := NewReader(bufio.NewReaderSize(iotest.HalfReader(bytes.NewReader(data)), testBufBytes+int(bufExtra)), int(maxBytes))
		check(t, r, data, int(maxBytes))
	})
}

// parse takes the next frame off *rest, the simple way.
func parse(rest *[]byte, maxBytes int) ([]byte, error) {
	b := *rest
	switch {
	case len(b) == 0:
		return nil, io.EOF
	case len(b) < PrefixBytes:
		return nil, io.ErrUnexpectedEOF
	}
	n := int(binary.BigEndian.Uint32(b))
	switch {
	case n > maxBytes:
		return nil, transports.ErrFrameTooLarge
	case len(b)-PrefixBytes < n:
		return nil, io.ErrUnexpectedEOF
	}
	*rest = b[PrefixBytes+n:]
	return b[PrefixBytes : PrefixBytes+n], nil
}
