package transports

import (
	"bytes"
	"errors"
	"testing"
	"unsafe"
)

func sampleFrames() []Frame {
	return []Frame{
		{Type: FrameHello, Sender: 42},
		{Type: FrameJoin, Namespace: []byte("/chat"), Room: []byte("lobby"), AckID: 7},
		{Type: FrameLeave, Namespace: []byte("/"), Room: []byte("r1"), AckID: 8},
		{Type: FrameEmit, Namespace: []byte("/"), Room: []byte("r1"), Name: []byte("message"),
			Sender: 3, Seq: 1<<32 - 3, IntendedNs: 123, SentNs: 456, AckID: 9, Payload: []byte("hello")},
		{Type: FrameEvent, Namespace: []byte("/"), Room: []byte("r1"), Name: []byte("m"),
			Sender: 3, Seq: 5, Offset: 77, IntendedNs: -1, SentNs: 1 << 62, Payload: []byte{}},
		{Type: FrameAck, AckID: 9, Status: AckRejected},
		{Type: FramePing, AckID: 1, SentNs: 99},
		{Type: FramePong, AckID: 1, SentNs: 99},
		{Type: FrameNack, Namespace: []byte("/"), Room: []byte("r"), Offset: 10, Seq: 20},
		{Type: FrameBye, Status: 2},
		{Type: FrameStats, AckID: 3, Payload: []byte(`{"queue_drops":1}`)},
	}
}

func framesEqual(a, b *Frame) bool {
	return a.Type == b.Type && bytes.Equal(a.Namespace, b.Namespace) && bytes.Equal(a.Room, b.Room) &&
		bytes.Equal(a.Name, b.Name) && a.Sender == b.Sender && a.Seq == b.Seq && a.Offset == b.Offset &&
		a.IntendedNs == b.IntendedNs && a.SentNs == b.SentNs && a.AckID == b.AckID &&
		a.Status == b.Status && bytes.Equal(a.Payload, b.Payload)
}

func TestFrameRoundTrip(t *testing.T) {
	for _, f := range sampleFrames() {
		t.Run(f.Type.String(), func(t *testing.T) {
			p, err := AppendFrame(nil, &f)
			if err != nil {
				t.Fatal(err)
			}
			if f.Type == FrameEmit || f.Type == FrameEvent {
				names := len(f.Namespace) + len(f.Room) + len(f.Name)
				if got, want := len(p), EventFrameBytes(names, len(f.Payload)); got != want {
					t.Errorf("encoded %d bytes, EventFrameBytes says %d", got, want)
				}
			}
			var g Frame
			if err := DecodeFrame(p, &g); err != nil {
				t.Fatal(err)
			}
			if !framesEqual(&f, &g) {
				t.Errorf("round trip:\n got %+v\nwant %+v", g, f)
			}
			// Every strict prefix is truncated and must be rejected.
			for n := 0; n < len(p); n++ {
				if err := DecodeFrame(p[:n], &g); !errors.Is(err, ErrMalformed) {
					t.Fatalf("prefix of %d/%d bytes: err = %v, want ErrMalformed", n, len(p), err)
				}
			}
			if err := DecodeFrame(append(p[:len(p):len(p)], 0), &g); !errors.Is(err, ErrMalformed) {
				t.Errorf("trailing byte: err = %v, want ErrMalformed", err)
			}
		})
	}
}

func TestDecodeRejects(t *testing.T) {
	tests := []struct {
		name string
		p    []byte
	}{
		{"empty", nil},
		{"version 0", []byte{0, byte(FrameHello), 0, 0, 0, 0, 0, 0, 0, 1}},
		{"version 2", []byte{2, byte(FrameHello), 0, 0, 0, 0, 0, 0, 0, 1}},
		{"type 0", []byte{Version, 0}},
		{"type past end", []byte{Version, byte(frameTypeEnd)}},
		{"name longer than frame", []byte{Version, byte(FrameJoin), 200, 'a'}},
		{"payload length over max", func() []byte {
			p, _ := AppendFrame(nil, &Frame{Type: FrameEmit})
			p[len(p)-4] = 0x7f // payload length 0x7f000000
			return p
		}()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var f Frame
			if err := DecodeFrame(tt.p, &f); !errors.Is(err, ErrMalformed) {
				t.Errorf("err = %v, want ErrMalformed", err)
			}
		})
	}
}

func TestEncodeLimits(t *testing.T) {
	long := bytes.Repeat([]byte("x"), MaxNameBytes+1)
	for _, f := range []Frame{
		{Type: FrameJoin, Namespace: []byte("/"), Room: long},
		{Type: FrameEmit, Name: long},
		{Type: FrameEmit, Payload: make([]byte, MaxPayloadBytes+1)},
	} {
		if _, err := AppendFrame(nil, &f); !errors.Is(err, ErrFrameTooLarge) {
			t.Errorf("%v: err = %v, want ErrFrameTooLarge", f.Type, err)
		}
	}
	if _, err := AppendFrame(nil, &Frame{Type: 200}); err == nil {
		t.Error("unknown type encoded without error")
	}
}

// fuzzFrameSeeds returns the seeds of the frame fuzz targets: a valid
// encoding of every FrameType (sampleFrames), edge cases of the limits, and
// inputs the decoder must reject (empty, a bare header, another version, an
// unknown type, a truncated or over-long frame, a length past the end or over
// the maximum).
func fuzzFrameSeeds() [][]byte {
	var seeds [][]byte
	enc := func(fr Frame) []byte {
		p, err := AppendFrame(nil, &fr)
		if err != nil {
			panic(err)
		}
		return p
	}
	for _, fr := range sampleFrames() {
		seeds = append(seeds, enc(fr))
	}
	long := bytes.Repeat([]byte("n"), MaxNameBytes)
	emit := enc(Frame{Type: FrameEmit, Namespace: []byte("/"), Room: []byte("r"), Name: []byte("m"), AckID: 1, Payload: []byte("p")})
	overPayload := enc(Frame{Type: FrameEmit})
	overPayload[len(overPayload)-4] = 0x7f // payload length 0x7f000000
	overStats := enc(Frame{Type: FrameStats, AckID: 1})
	overStats[len(overStats)-2] = 0x04 // payload length 1025
	overStats[len(overStats)-1] = 0x01
	seeds = append(seeds,
		nil,
		[]byte{Version},
		[]byte{Version, byte(FrameBye)}, // BYE without its reason
		[]byte{0, byte(FrameBye), 0},
		[]byte{Version + 1, byte(FrameBye), 0},
		[]byte{Version, 0},
		[]byte{Version, byte(frameTypeEnd)},
		[]byte{Version, 0xff, 0},
		[]byte{Version, byte(FrameJoin), 200, 'a'},               // a name longer than the frame
		enc(Frame{Type: FrameHello}),                             // zero id: asks for one
		enc(Frame{Type: FrameJoin}),                              // empty names
		enc(Frame{Type: FrameNack, Namespace: long, Room: long}), // names at the limit
		enc(Frame{Type: FrameEvent, Namespace: long, Room: long, Name: long, Sender: ^uint64(0),
			Seq: ^uint64(0), Offset: ^uint64(0), IntendedNs: -1 << 63, SentNs: 1<<63 - 1, AckID: ^uint64(0)}),
		enc(Frame{Type: FrameStats, AckID: 1, Payload: bytes.Repeat([]byte("s"), MaxStatsBytes)}),
		enc(Frame{Type: FrameStats}), // a client's request: no payload
		enc(Frame{Type: FrameAck, AckID: ^uint64(0), Status: 0xff}),
		emit[:len(emit)-1], // truncated payload
		append(emit, 0),    // a trailing byte
		append(enc(Frame{Type: FrameBye}), enc(Frame{Type: FrameBye})...), // two frames in one
		overPayload,
		overStats,
	)
	return seeds
}

// checkDecoded checks what DecodeFrame made of p, whether it accepted it
// (err == nil) or not: every error wraps ErrMalformed; an accepted frame
// re-encodes with AppendFrame to the same bytes (the encoding is canonical);
// its byte-slice fields lie inside p and have no spare capacity, so
// appending to one cannot overwrite the rest of p; and decoding it
// allocates nothing.
func checkDecoded(t *testing.T, p []byte, fr *Frame, err error) {
	t.Helper()
	if err != nil {
		if !errors.Is(err, ErrMalformed) {
			t.Fatalf("decode error %v does not wrap ErrMalformed", err)
		}
		return
	}
	q, err := AppendFrame(nil, fr)
	if err != nil {
		t.Fatalf("re-encode of an accepted frame failed: %v", err)
	}
	if !bytes.Equal(p, q) {
		t.Fatalf("re-encoding differs:\n in %x\nout %x", p, q)
	}
	for _, b := range [][]byte{fr.Namespace, fr.Room, fr.Name, fr.Payload} {
		if cap(b) != len(b) {
			t.Fatalf("a field of %d bytes has capacity %d: appending to it overwrites the input", len(b), cap(b))
		}
		if len(b) > 0 && !aliases(p, b) {
			t.Fatalf("field %x does not alias the input", b)
		}
	}
	var g Frame
	if n := testing.AllocsPerRun(1, func() { _ = DecodeFrame(p, &g) }); n != 0 {
		t.Fatalf("decoding an accepted %v frame allocated %v times", fr.Type, n)
	}
}

// aliases reports whether b lies within p's memory.
func aliases(p, b []byte) bool {
	if len(b) == 0 || len(p) == 0 {
		return false
	}
	start := uintptr(unsafe.Pointer(unsafe.SliceData(p)))
	at := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	return at >= start && at+uintptr(len(b)) <= start+uintptr(len(p))
}

// FuzzDecodeFrame checks that the decoder never panics, that every error it
// returns wraps ErrMalformed, and that whatever it accepts re-encodes to the
// same bytes (the encoding is canonical), aliases the input, and decodes
// without allocating.
func FuzzDecodeFrame(f *testing.F) {
	for _, p := range fuzzFrameSeeds() {
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, p []byte) {
		var fr Frame
		checkDecoded(t, p, &fr, DecodeFrame(p, &fr))
	})
}

// FuzzDecodeFrameSplit feeds the input in two chunks, cut at a fuzzed index,
// as a stream reader meets it: each chunk decodes (or not) as
// FuzzDecodeFrame requires, and frames are prefix-free: when the first chunk
// is a whole frame, the whole input is one only if the second chunk is
// empty. So a reader that has a complete frame never needs more bytes to
// decide, and one that is still waiting never has a frame already.
func FuzzDecodeFrameSplit(f *testing.F) {
	for i, p := range fuzzFrameSeeds() {
		f.Add(p, uint16(i*7))
	}
	f.Fuzz(func(t *testing.T, p []byte, cut uint16) {
		k := int(cut) % (len(p) + 1)
		head, tail := p[:k:k], p[k:]
		var whole, first, second Frame
		errWhole := DecodeFrame(p, &whole)
		checkDecoded(t, p, &whole, errWhole)
		errHead := DecodeFrame(head, &first)
		checkDecoded(t, head, &first, errHead)
		checkDecoded(t, tail, &second, DecodeFrame(tail, &second))
		if errHead == nil && len(tail) > 0 && errWhole == nil {
			t.Fatalf("both the first %d bytes and all %d bytes decode: frames are not prefix-free", k, len(p))
		}
		if errHead == nil && len(tail) == 0 && (errWhole != nil || !framesEqual(&first, &whole)) {
			t.Fatalf("the same bytes decode differently: %+v, %v vs %+v, %v", first, errHead, whole, errWhole)
		}
	})
}

func BenchmarkEncodeEvent(b *testing.B) {
	f := sampleFrames()[3]
	f.Payload = make([]byte, 128)
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		buf, _ = AppendFrame(buf[:0], &f)
	}
}

func BenchmarkDecodeEvent(b *testing.B) {
	f := sampleFrames()[3]
	f.Payload = make([]byte, 128)
	p, _ := AppendFrame(nil, &f)
	var g Frame
	b.ReportAllocs()
	for b.Loop() {
		if err := DecodeFrame(p, &g); err != nil {
			b.Fatal(err)
		}
	}
}
