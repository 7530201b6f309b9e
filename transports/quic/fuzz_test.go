package quic

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync"
	"testing"

	"github.com/evbench/evbench/transports/internal/lenprefix"
)

// preambleSeeds are streams a peer may open with: both preambles, the
// other transport's, nothing, and frames sent without a preamble.
var preambleSeeds = [][]byte{
	{'S'}, {'D'}, {}, {'S', 0, 0, 0, 1, 'x'}, {'D', 0, 0, 0, 0}, {0}, {0xff},
	{0, 0, 0, 1, 'S'}, []byte("SD"), []byte("GET / HTTP/1.1\r\n"), {'s'},
}

// checkPreamble checks readPreamble against the direct reading of data:
// accepted exactly when the first byte is want, and never consuming more
// than that byte.
func checkPreamble(t *testing.T, r io.Reader, data []byte, rest *bytes.Reader, want byte) {
	err := readPreamble(r, want)
	if ok := len(data) > 0 && data[0] == want; ok != (err == nil) {
		t.Fatalf("readPreamble(%q, %q) = %v", data, want, err)
	}
	if len(data) == 0 && !errors.Is(err, io.EOF) {
		t.Fatalf("empty stream: %v, want io.EOF", err)
	}
	if len(data) > 0 && rest.Len() != len(data)-1 {
		t.Fatalf("readPreamble consumed %d bytes, want 1", len(data)-rest.Len())
	}
}

// FuzzPreamble feeds readPreamble arbitrary stream openings.
func FuzzPreamble(f *testing.F) {
	for i, s := range preambleSeeds {
		f.Add(s, i%2 == 0)
	}
	f.Fuzz(func(t *testing.T, data []byte, stream bool) {
		want := preambleDatagram
		if stream {
			want = preambleStream
		}
		r := bytes.NewReader(data)
		checkPreamble(t, r, data, r, want)
	})
}

// FuzzPreambleSplit is FuzzPreamble with the stream arriving in two reads
// split at a fuzzed point (the first possibly empty).
func FuzzPreambleSplit(f *testing.F) {
	for i, s := range preambleSeeds {
		f.Add(s, uint8(i%3))
	}
	f.Fuzz(func(t *testing.T, data []byte, split uint8) {
		at := min(int(split), len(data))
		rest := bytes.NewReader(data[at:])
		r := io.MultiReader(bytes.NewReader(data[:at]), rest)
		if at > 0 {
			// The first chunk holds the preamble; rest is untouched.
			err := readPreamble(r, preambleStream)
			if ok := data[0] == preambleStream; ok != (err == nil) {
				t.Fatalf("readPreamble(%q) = %v", data, err)
			}
			return
		}
		checkPreamble(t, r, data, rest, preambleStream)
	})
}

// wireFrames is frames as the stream carries them: each after its 4-byte
// big-endian length.
func wireFrames(frames ...[]byte) []byte {
	var b []byte
	for _, p := range frames {
		b = binary.BigEndian.AppendUint32(b, uint32(len(p)))
		b = append(b, p...)
	}
	return b
}

// dgramList encodes datagrams for decodeDgrams.
func dgramList(ds ...[]byte) []byte {
	var b []byte
	for _, d := range ds {
		b = binary.BigEndian.AppendUint16(b, uint16(len(d)))
		b = append(b, d...)
	}
	return b
}

// decodeDgrams splits a fuzz input into datagrams: each a 2-byte
// big-endian length (modulo 1500, about the largest datagram a packet on
// loopback holds) and up to that many bytes; a last single byte is a
// datagram of its own.
func decodeDgrams(b []byte) [][]byte {
	var ds [][]byte
	for len(b) > 0 {
		if len(b) == 1 {
			return append(ds, bytes.Clone(b))
		}
		n := min(int(binary.BigEndian.Uint16(b))%1500, len(b)-2)
		ds = append(ds, bytes.Clone(b[2:2+n]))
		b = b[2+n:]
	}
	return ds
}

func bytesOf(n int, seed byte) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = seed + byte(i*7)
	}
	return p
}

// dgramSeed is one input of the dgramReader fuzz targets.
type dgramSeed struct {
	stream, dgrams []byte
	stopAfter      uint8
}

// dgramSeeds are streams of every shape lenprefix parses or refuses,
// paired with datagram lists of every size.
func dgramSeeds() []dgramSeed {
	return []dgramSeed{
		{nil, nil, 0},
		{wireFrames([]byte("hello")), dgramList([]byte("event")), 0},
		{wireFrames([]byte{}, []byte{}), dgramList([]byte{}), 0},
		{wireFrames(bytesOf(DatagramMaxFrameBytes, 1)), dgramList(bytesOf(DatagramMaxFrameBytes, 2)), 0},
		{binary.BigEndian.AppendUint32(nil, DatagramMaxFrameBytes+1), dgramList(bytesOf(1400, 3)), 0},
		{wireFrames([]byte("cut short"))[:8], nil, 0},
		{[]byte{0, 0}, dgramList([]byte("a"), []byte("b"), []byte("c")), 0},
		{[]byte{0xff, 0xff, 0xff, 0xff}, nil, 0},
		{wireFrames([]byte("a"), []byte("bc"), []byte("def")), dgramList([]byte("1"), []byte("22")), 2},
		{wireFrames(bytesOf(600, 4), bytesOf(700, 5), bytesOf(800, 6)), dgramList(bytesOf(900, 7), bytesOf(100, 8)), 0},
		{nil, dgramList(bytesOf(20, 9), bytesOf(20, 9), bytesOf(20, 9)), 1},
		{wireFrames(bytesOf(30, 10), bytesOf(30, 10)), []byte{7}, 0},
		{wireFrames(bytesOf(5, 11), bytesOf(5, 12), bytesOf(5, 13), bytesOf(5, 14)), nil, 3},
	}
}

// checkDgramReader runs a dgramReader over a stream read in the chunks of
// src (whose bytes are data) and the datagrams of dgrams, and checks that
// next returns an interleaving of the stream's frames, as lenprefix parses
// them, and of the datagrams, each in order and unchanged, stream frames
// at most DatagramMaxFrameBytes; each frame intact until the next call;
// then the stream's error, passed once to streamEnded, on this and every
// later call. With stopAfter > 0 the reader's context is cancelled after
// that many frames, after which next fails within the frames already on
// their way. Both goroutines end.
func checkDgramReader(t *testing.T, src io.Reader, data, dgrams []byte, stopAfter int) {
	// The stream as lenprefix reads it, directly.
	ref := lenprefix.NewReader(bufio.NewReaderSize(bytes.NewReader(data), DatagramMaxFrameBytes+lenprefix.PrefixBytes), DatagramMaxFrameBytes)
	var streamFrames [][]byte
	var streamErr error
	for {
		p, err := ref.Next()
		if err != nil {
			streamErr = err
			break
		}
		streamFrames = append(streamFrames, bytes.Clone(p))
	}
	ds := decodeDgrams(dgrams)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	closed := make(chan struct{}) // the connection, as streamEnded closes it
	var ended []error
	var endedMu sync.Mutex
	next := 0
	receive := func(ctx context.Context) ([]byte, error) {
		if next < len(ds) {
			next++
			return bytes.Clone(ds[next-1]), nil // quic-go hands over a datagram of its own
		}
		select {
		case <-closed:
			return nil, net.ErrClosed
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	streamEnded := func(err error) {
		endedMu.Lock()
		defer endedMu.Unlock()
		ended = append(ended, err)
		if len(ended) == 1 {
			close(closed)
		}
	}
	r := newDgramReader(ctx, src, nil, 0, receive, streamEnded)
	defer func() {
		cancel()
		<-r.readDone
		<-r.dgramDone
	}()

	// reach holds the (stream frames, datagrams) counts that the frames
	// returned so far can be an interleaving of.
	reach := map[[2]int]bool{{0, 0}: true}
	var last, lastCopy []byte
	total := len(streamFrames) + len(ds)
	var readErr error
	for n := 0; ; n++ {
		if !bytes.Equal(last, lastCopy) {
			t.Fatalf("frame %d changed before the next call: %q, was %q", n-1, last, lastCopy)
		}
		if n == stopAfter && stopAfter > 0 {
			cancel()
		}
		p, err := r.next()
		if err != nil {
			readErr = err
			break
		}
		if n >= total+inboundFrames+2 {
			t.Fatalf("frame %d: more frames than the %d sent", n, total)
		}
		step := map[[2]int]bool{}
		for at := range reach {
			if i := at[0]; i < len(streamFrames) && bytes.Equal(p, streamFrames[i]) {
				if len(p) > DatagramMaxFrameBytes {
					t.Fatalf("stream frame of %d bytes, over %d", len(p), DatagramMaxFrameBytes)
				}
				step[[2]int{i + 1, at[1]}] = true
			}
			if j := at[1]; j < len(ds) && bytes.Equal(p, ds[j]) {
				step[[2]int{at[0], j + 1}] = true
			}
		}
		if len(step) == 0 {
			t.Fatalf("frame %d (%q) is neither the next stream frame nor the next datagram after %v", n, p, reach)
		}
		reach = step
		last, lastCopy = p, bytes.Clone(p)
	}
	for i := range 2 {
		if p, err := r.next(); err == nil {
			t.Fatalf("next %d after the error %v: %q, nil error", i, readErr, p)
		}
	}
	if stopAfter > 0 && ctx.Err() != nil {
		return // cancelled: any prefix, then an error
	}
	if !reach[[2]int{len(streamFrames), len(ds)}] {
		t.Fatalf("error %v after an interleaving of %v of the %d stream frames and %d datagrams", readErr, reach, len(streamFrames), len(ds))
	}
	if readErr.Error() != streamErr.Error() {
		t.Fatalf("error %v, want the stream's %v", readErr, streamErr)
	}
	endedMu.Lock()
	defer endedMu.Unlock()
	if len(ended) != 1 || ended[0].Error() != streamErr.Error() {
		t.Fatalf("streamEnded called with %v, want once with %v", ended, streamErr)
	}
}

// FuzzDgramReader feeds a quic-dgram Conn's receiving side (dgramReader)
// an arbitrary stream, in one read, and arbitrary datagrams.
func FuzzDgramReader(f *testing.F) {
	for _, s := range dgramSeeds() {
		f.Add(s.stream, s.dgrams, s.stopAfter)
	}
	f.Fuzz(func(t *testing.T, stream, dgrams []byte, stopAfter uint8) {
		checkDgramReader(t, bytes.NewReader(stream), stream, dgrams, int(stopAfter))
	})
}

// FuzzDgramReaderSplit is FuzzDgramReader with the stream arriving in two
// reads split at a fuzzed point.
func FuzzDgramReaderSplit(f *testing.F) {
	for i, s := range dgramSeeds() {
		f.Add(s.stream, s.dgrams, s.stopAfter, uint16(i*3))
		f.Add(s.stream, s.dgrams, s.stopAfter, uint16(len(s.stream)/2))
	}
	f.Fuzz(func(t *testing.T, stream, dgrams []byte, stopAfter uint8, split uint16) {
		at := min(int(split), len(stream))
		src := io.MultiReader(bytes.NewReader(stream[:at]), bytes.NewReader(stream[at:]))
		checkDgramReader(t, src, stream, dgrams, int(stopAfter))
	})
}

// TestDgramReaderAfterCancel is FuzzDgramReader's crasher made exact: with
// frames waiting in the reader's channel, every next after the context is
// done (ReadFrame after Close) fails. It once chose at random between a
// frame and the error.
func TestDgramReaderAfterCancel(t *testing.T) {
	const dgrams = 10
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	asked := make(chan struct{}) // receive was called for datagram dgrams+1
	n := 0
	receive := func(ctx context.Context) ([]byte, error) {
		if n < dgrams {
			n++
			return []byte{byte(n)}, nil
		}
		close(asked)
		<-ctx.Done()
		return nil, ctx.Err()
	}
	stream, end := io.Pipe() // a stream on which nothing arrives
	defer end.Close()
	r := newDgramReader(ctx, stream, nil, 0, receive, func(error) {})
	<-asked // all the datagrams are in r.in by now
	cancel()
	for i := range 2 * dgrams {
		if p, err := r.next(); err == nil {
			t.Fatalf("next %d after cancel: %q, nil error", i, p)
		}
	}
	end.Close()
	<-r.readDone
	<-r.dgramDone
}
