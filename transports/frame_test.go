package transports

import (
	"bytes"
	"errors"
	"testing"
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

// FuzzDecodeFrame checks that the decoder never panics, and that whatever it
// accepts re-encodes to the same bytes (the encoding is canonical).
func FuzzDecodeFrame(f *testing.F) {
	for _, fr := range sampleFrames() {
		p, _ := AppendFrame(nil, &fr)
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, p []byte) {
		var fr Frame
		if err := DecodeFrame(p, &fr); err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("decode error %v does not wrap ErrMalformed", err)
			}
			return
		}
		q, err := AppendFrame(nil, &fr)
		if err != nil {
			t.Fatalf("re-encode of an accepted frame failed: %v", err)
		}
		if !bytes.Equal(p, q) {
			t.Fatalf("re-encoding differs:\n in %x\nout %x", p, q)
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
