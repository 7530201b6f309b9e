package transports_test

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/evbench/evbench/transports"
	"github.com/evbench/evbench/transports/tcp"
	"github.com/evbench/evbench/transports/transporttest"
)

// encode returns the encoding of f, failing the test on an error.
func encode(tb testing.TB, f transports.Frame) []byte {
	tb.Helper()
	p, err := transports.AppendFrame(nil, &f)
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

// withHeader returns a copy of p with its version and type bytes replaced.
func withHeader(p []byte, version byte, typ transports.FrameType) []byte {
	q := append([]byte(nil), p...)
	q[0], q[1] = version, byte(typ)
	return q
}

// randomBytes returns n bytes from a PCG generator seeded with seed.
func randomBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(r.Uint32())
	}
	return p
}

// wire is what tcp puts on the stream for frames: a 4-byte big-endian
// length before each.
func wire(frames ...[]byte) []byte {
	var b []byte
	for _, f := range frames {
		b = binary.BigEndian.AppendUint32(b, uint32(len(f)))
		b = append(b, f...)
	}
	return b
}

// badInput is one misbehaving connection: either frames written through a
// tcp Conn (WriteFrame, then Flush) or raw bytes on a TCP stream.
type badInput struct {
	name   string
	frames [][]byte // via tcp.Plain's Conn
	raw    []byte   // instead: written to a plain net.Conn
}

// TestMalformedInput feeds the Hub, over real tcp connections, each kind of
// malformed or forbidden input, each on its own connection, with the first
// frame a valid HELLO (and a JOIN into the good clients' room) or itself the
// bad one. For each: the server closes that connection within closeTimeout,
// ProtocolErrors grows by exactly one, OnConnError gets an error wrapping
// ErrMalformed or ErrFrameTooLarge, and the connection's memberships are
// gone. Throughout, three well-behaved clients stay in the same room, and a
// broadcast afterwards reaches each of the others exactly once.
func TestMalformedInput(t *testing.T) {
	hello := encode(t, transports.Frame{Type: transports.FrameHello})
	join := encode(t, transports.Frame{Type: transports.FrameJoin, Namespace: []byte("/"), Room: []byte("r"), AckID: 1})
	emit := encode(t, transports.Frame{Type: transports.FrameEmit, Namespace: []byte("/"), Room: []byte("r"),
		Name: []byte("msg"), Seq: 1, Payload: []byte("payload")})
	ping := encode(t, transports.Frame{Type: transports.FramePing, AckID: 1, SentNs: 1})

	// An EMIT whose payload length field says one byte over the codec's limit.
	hugePayload := encode(t, transports.Frame{Type: transports.FrameEmit, Namespace: []byte("/"), Room: []byte("r")})
	binary.BigEndian.PutUint32(hugePayload[len(hugePayload)-4:], transports.MaxPayloadBytes+1)
	// A JOIN whose room name length runs past the end of the frame.
	longName := append([]byte(nil), join...)
	longName[2+1+1] = 200 // version, type, len("/")=1, "/", then the room's length

	afterHello := []badInput{
		{name: "truncated EMIT", frames: [][]byte{emit[:len(emit)-3]}},
		{name: "truncated JOIN", frames: [][]byte{join[:5]}},
		{name: "header only", frames: [][]byte{emit[:2]}},
		{name: "one byte", frames: [][]byte{{transports.Version}}},
		{name: "empty frame", frames: [][]byte{{}}},
		{name: "trailing byte", frames: [][]byte{append(append([]byte(nil), ping...), 0)}},
		{name: "payload length over the limit", frames: [][]byte{hugePayload}},
		{name: "name past the end", frames: [][]byte{longName}},
		{name: "version 0", frames: [][]byte{withHeader(ping, 0, transports.FramePing)}},
		{name: "version 2", frames: [][]byte{withHeader(ping, transports.Version+1, transports.FramePing)}},
		{name: "type 0", frames: [][]byte{withHeader(ping, transports.Version, 0)}},
		{name: "type 11", frames: [][]byte{withHeader(ping, transports.Version, 11)}},
		{name: "type 255", frames: [][]byte{withHeader(ping, transports.Version, 255)}},
		{name: "EVENT from a client", frames: [][]byte{withHeader(emit, transports.Version, transports.FrameEvent)}},
		{name: "ACK from a client", frames: [][]byte{encode(t, transports.Frame{Type: transports.FrameAck, AckID: 1})}},
		{name: "PONG from a client", frames: [][]byte{withHeader(ping, transports.Version, transports.FramePong)}},
		{name: "length prefix over MaxFrameBytes", raw: append(wire(hello, join), binary.BigEndian.AppendUint32(nil, tcp.MaxFrameBytes+1)...)},
		{name: "length prefix 2^32-1", raw: append(wire(hello, join), 0xff, 0xff, 0xff, 0xff)},
	}
	for seed := range uint64(8) {
		p := randomBytes(seed, 1+int(seed)*9)
		var f transports.Frame
		if transports.DecodeFrame(p, &f) == nil {
			t.Fatalf("random frame of seed %d decodes as %v; pick other seeds", seed, f.Type)
		}
		afterHello = append(afterHello, badInput{name: "random frame seed " + strconv.FormatUint(seed, 10), frames: [][]byte{p}})
	}
	var cases []badInput
	for _, c := range afterHello {
		if c.raw == nil {
			c.frames = append([][]byte{hello, join}, c.frames...)
		}
		cases = append(cases, c)
	}

	cases = append(cases,
		badInput{name: "first frame EMIT", frames: [][]byte{emit}},
		badInput{name: "first frame JOIN", frames: [][]byte{join}},
		badInput{name: "first frame EVENT", frames: [][]byte{withHeader(emit, transports.Version, transports.FrameEvent)}},
		badInput{name: "first frame truncated HELLO", frames: [][]byte{hello[:len(hello)-1]}},
		badInput{name: "first frame HELLO with a trailing byte", frames: [][]byte{append(append([]byte(nil), hello...), 0)}},
		badInput{name: "first frame HELLO of version 2", frames: [][]byte{withHeader(hello, transports.Version+1, transports.FrameHello)}},
		badInput{name: "first frame empty", frames: [][]byte{{}}},
		badInput{name: "first length prefix over MaxFrameBytes", raw: binary.BigEndian.AppendUint32(nil, tcp.MaxFrameBytes+1)},
	)
	// A stream of random bytes from its first byte: its first four bytes,
	// read as a length prefix, are over the limit for these seeds.
	for seed := range uint64(4) {
		p := randomBytes(seed, 64)
		if n := binary.BigEndian.Uint32(p); n <= tcp.MaxFrameBytes {
			t.Fatalf("random stream of seed %d starts with the length %d, within the limit; pick other seeds", seed, n)
		}
		cases = append(cases, badInput{name: "random stream seed " + strconv.FormatUint(seed, 10), raw: p})
	}

	var mu sync.Mutex
	var connErrs []error
	s := startHub(t, tcp.Plain(), transports.HubConfig{OnConnError: func(_ uint64, err error) {
		mu.Lock()
		connErrs = append(connErrs, err)
		mu.Unlock()
	}})
	good := make([]*member, 3)
	for i := range good {
		good[i] = s.dial(t, transports.ClientConfig{})
		good[i].join(t, "/", "r")
	}
	base := s.hub.Stats()
	if want := (transports.HubStats{Conns: 3, Namespaces: 1, Rooms: 4, Members: 6}); base != want {
		t.Fatalf("with the good clients alone: Stats = %+v, want %+v", base, want)
	}

	for i, bad := range cases {
		t.Run(bad.name, func(t *testing.T) {
			if bad.raw != nil {
				sendRaw(t, s.addr, bad.raw)
			} else {
				sendFrames(t, s.addr, bad.frames)
			}
			want := uint64(i + 1)
			st := waitStats(t, s.hub, "the bad connection to be counted and gone", func(st transports.HubStats) bool {
				return st.ProtocolErrors >= want && st.Conns == base.Conns
			})
			if st.ProtocolErrors != want {
				t.Errorf("ProtocolErrors = %d, want %d", st.ProtocolErrors, want)
			}
			if st.ClosedError > want {
				t.Errorf("ClosedError = %d, more than the %d bad connections so far", st.ClosedError, want)
			}
			st.ProtocolErrors, st.ClosedError = base.ProtocolErrors, base.ClosedError
			if st != base {
				t.Errorf("after the bad connection: Stats = %+v, want %+v", st, base)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(connErrs) != i+1 {
				t.Fatalf("OnConnError called %d times, want %d: %v", len(connErrs), i+1, connErrs)
			}
			if err := connErrs[i]; !errors.Is(err, transports.ErrMalformed) && !errors.Is(err, transports.ErrFrameTooLarge) {
				t.Errorf("OnConnError got %v, want an error wrapping ErrMalformed or ErrFrameTooLarge", err)
			}
		})
	}
	time.Sleep(quietPeriod) // nothing is counted twice, late
	if st := s.hub.Stats(); st.ProtocolErrors != uint64(len(cases)) {
		t.Errorf("ProtocolErrors = %d after %d bad connections", st.ProtocolErrors, len(cases))
	}

	for i, g := range good {
		select {
		case <-g.c.Done():
			t.Fatalf("good client %d was disconnected: %v", i, g.c.Err())
		default:
		}
	}
	good[0].emit(t, "/", "r", 1, "still here")
	expectCounts(t, inboxes(good), []int{0, 1, 1})
}

// TestWellFormedIsNotAProtocolError is the control for TestMalformedInput:
// a retried HELLO and a PING are answered on a connection that stays open;
// BYE, a close before HELLO and a HELLO with an id already in use end the
// connection; none of these counts as a protocol error.
func TestWellFormedIsNotAProtocolError(t *testing.T) {
	s := startHub(t, tcp.Plain(), transports.HubConfig{})
	taken := s.dial(t, transports.ClientConfig{ID: 7})
	if taken.c.ID() != 7 {
		t.Fatalf("ID() = %d, want the requested 7", taken.c.ID())
	}
	hello := encode(t, transports.Frame{Type: transports.FrameHello})
	ping := encode(t, transports.Frame{Type: transports.FramePing, AckID: 42, SentNs: 99})

	t.Run("HELLO twice and PING", func(t *testing.T) {
		c := dialRaw(t, s.addr)
		defer c.Close()
		writeFrames(t, c, hello, hello, ping)
		var got []transports.Frame
		for range 3 {
			p, err := readWithin(c, setupTimeout)
			if err != nil {
				t.Fatalf("after %d replies: %v", len(got), err)
			}
			var f transports.Frame
			if err := transports.DecodeFrame(p, &f); err != nil {
				t.Fatal(err)
			}
			got = append(got, f)
		}
		if got[0].Type != transports.FrameHello || got[1].Type != transports.FrameHello || got[0].Sender != got[1].Sender {
			t.Errorf("replies to two HELLOs: %v %d, %v %d; want two HELLOs with the same id", got[0].Type, got[0].Sender, got[1].Type, got[1].Sender)
		}
		if got[2].Type != transports.FramePong || got[2].AckID != 42 || got[2].SentNs != 99 {
			t.Errorf("reply to PING = %+v, want PONG echoing AckID 42 and SentNs 99", got[2])
		}
	})
	t.Run("BYE", func(t *testing.T) {
		c := dialRaw(t, s.addr)
		defer c.Close()
		writeFrames(t, c, hello, encode(t, transports.Frame{Type: transports.FrameBye}))
		expectEnded(t, c)
	})
	t.Run("close before HELLO", func(t *testing.T) {
		c := dialRaw(t, s.addr)
		c.Close()
	})
	t.Run("id in use", func(t *testing.T) {
		c := dialRaw(t, s.addr)
		defer c.Close()
		writeFrames(t, c, encode(t, transports.Frame{Type: transports.FrameHello, Sender: 7}))
		expectEnded(t, c)
	})
	st := waitStats(t, s.hub, "the raw connections to end", func(st transports.HubStats) bool { return st.Conns == 1 })
	if st.ProtocolErrors != 0 {
		t.Errorf("ProtocolErrors = %d, want 0", st.ProtocolErrors)
	}
	select {
	case <-taken.c.Done():
		t.Errorf("the client holding id 7 was disconnected: %v", taken.c.Err())
	default:
	}
}

func dialRaw(tb testing.TB, addr string) transports.Conn {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	c, err := tcp.Plain().Dial(ctx, addr)
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

func writeFrames(tb testing.TB, c transports.Conn, frames ...[]byte) {
	tb.Helper()
	for _, p := range frames {
		if err := c.WriteFrame(p); err != nil {
			tb.Fatal(err)
		}
	}
	if err := transports.Flush(c); err != nil {
		tb.Fatal(err)
	}
}

// readWithin returns the next frame read from c, or an error if none came
// within d (c is then closed).
func readWithin(c transports.Conn, d time.Duration) ([]byte, error) {
	var p []byte
	err := transporttest.Within(d, func() error {
		var err error
		p, err = c.ReadFrame()
		return err
	})
	if errors.Is(err, transporttest.ErrStillBlocked) {
		c.Close()
	}
	return p, err
}

// sendFrames writes frames on a new tcp connection and expects the server
// to close it.
func sendFrames(tb testing.TB, addr string, frames [][]byte) {
	tb.Helper()
	c := dialRaw(tb, addr)
	defer c.Close()
	writeFrames(tb, c, frames...)
	expectEnded(tb, c)
}

// sendRaw writes b on a new TCP connection and expects the server to close
// it within closeTimeout.
func sendRaw(tb testing.TB, addr string, b []byte) {
	tb.Helper()
	var d net.Dialer
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	defer nc.Close()
	if _, err := nc.Write(b); err != nil {
		tb.Fatal(err)
	}
	nc.SetReadDeadline(time.Now().Add(closeTimeout))
	// io.Copy returns nil at EOF and the error of a reset; a timeout means
	// the server kept the connection open.
	if _, err := io.Copy(io.Discard, nc); errors.Is(err, os.ErrDeadlineExceeded) {
		tb.Errorf("the server did not close the connection within %v", closeTimeout)
	}
}
