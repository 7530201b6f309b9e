package ws

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/evbench/evbench/transports"
)

// pipeListener is a net.Listener whose connections are the server ends of
// net.Pipes made by dial: a ws Listener on it upgrades connections without
// a socket, so that a fuzz target runs one upgrade per input quickly.
type pipeListener struct {
	conns     chan net.Conn
	done      chan struct{}
	closeOnce sync.Once
}

func newPipeListener() *pipeListener {
	return &pipeListener{conns: make(chan net.Conn), done: make(chan struct{})}
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return nil
}

func (l *pipeListener) Addr() net.Addr { return pipeAddr{} }

// dial returns the client end of a new net.Pipe whose server end Accept
// returns, wrapped in a sinkConn.
func (l *pipeListener) dial() (net.Conn, error) {
	client, server := net.Pipe()
	select {
	case l.conns <- &sinkConn{Conn: server}:
		return client, nil
	case <-l.done:
		client.Close()
		server.Close()
		return nil, net.ErrClosed
	}
}

// sinkConn is the server end of a pipeListener's net.Pipe: its writes
// succeed without going anywhere until it is closed. So the client end
// behaves like a TCP peer that sends its bytes, shuts down its sending
// side (closing its end of the pipe, which the server reads as the end of
// the stream) and reads everything the server sends: the server's answers
// (the 101 response, pongs, close frames) never fail, whenever the client
// stops sending.
type sinkConn struct {
	net.Conn
	closed atomic.Bool
}

func (c *sinkConn) Write(p []byte) (int, error) {
	if c.closed.Load() {
		return 0, net.ErrClosed
	}
	return len(p), nil
}

func (c *sinkConn) Close() error {
	c.closed.Store(true)
	return c.Conn.Close()
}

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "pipe" }

// clientFrame is a client frame (RFC 6455 §5.2): first byte b0 (FIN, RSV
// bits and opcode), the payload length in its shortest form (or, when
// long, always in the 64-bit form), and the payload masked with key when
// masked.
func clientFrame(b0 byte, payload []byte, key [4]byte, masked, long bool) []byte {
	var mbit byte
	if masked {
		mbit = 0x80
	}
	h := []byte{b0}
	n := len(payload)
	switch {
	case long || n > 0xffff:
		h = append(h, mbit|127)
		h = binary.BigEndian.AppendUint64(h, uint64(n))
	case n >= 126:
		h = append(h, mbit|126)
		h = binary.BigEndian.AppendUint16(h, uint16(n))
	default:
		h = append(h, mbit|byte(n))
	}
	if !masked {
		return append(h, payload...)
	}
	h = append(h, key[:]...)
	for i, b := range payload {
		h = append(h, b^key[i%4])
	}
	return h
}

// Opcodes and first-byte bits of RFC 6455 §5.2.
const (
	fin      = 0x80
	opCont   = 0x0
	opText   = 0x1
	opBin    = 0x2
	opClose  = 0x8
	opPing   = 0x9
	opPong   = 0xa
	rsv1     = 0x40
	rsv3     = 0x10
	maxCtrl  = 125
	maxInt63 = 1<<63 - 1
)

// wsSeeds are client byte streams sent after the upgrade: valid binary
// messages of each length form, fragmented ones, control frames, and the
// malformed cases.
func wsSeeds() [][]byte {
	k := [4]byte{0x37, 0xfa, 0x21, 0x3d}
	bin := func(p []byte) []byte { return clientFrame(fin|opBin, p, k, true, false) }
	cat := func(fs ...[]byte) []byte { return bytes.Join(fs, nil) }
	close1000 := clientFrame(fin|opClose, []byte{0x03, 0xe8}, k, true, false)
	return [][]byte{
		bin([]byte("hello")),                                  // 7-bit length
		cat(bin(nil), bin([]byte{1}), close1000),              // empty message, then a clean close
		bin(pattern(300, 1)),                                  // 16-bit length
		bin(pattern(300, 2))[:6],                              // header, no payload
		clientFrame(fin|opBin, []byte("long"), k, true, true), // 64-bit length (not minimal: a real one needs 64 KiB)
		cat(clientFrame(opBin, []byte("frag"), k, true, false), // fragmented, a ping between
			clientFrame(fin|opPing, []byte("p"), k, true, false),
			clientFrame(opCont, []byte("men"), k, true, false),
			clientFrame(fin|opCont, []byte("ted"), k, true, false)),
		clientFrame(fin|opText, []byte("text"), k, true, false),
		cat(clientFrame(fin|opPing, []byte("ping"), k, true, false),
			clientFrame(fin|opPong, nil, k, true, false), bin([]byte("after"))),
		close1000,
		clientFrame(fin|opClose, nil, k, true, false),
		clientFrame(fin|opClose, []byte{0x03}, k, true, false), // 1-byte close payload
		clientFrame(fin|opBin, []byte("unmasked"), k, false, false),
		clientFrame(fin|0x3, []byte("reserved"), k, true, false),
		clientFrame(fin|0xb, nil, k, true, false),
		clientFrame(fin|rsv1|opBin, []byte("rsv1"), k, true, false),
		clientFrame(fin|rsv3|opBin, []byte("rsv3"), k, true, false),
		// 64-bit length over MaxFrame, then the most significant bit set.
		append([]byte{fin | opBin, 0x80 | 127}, binary.BigEndian.AppendUint64(nil, MaxFrame+1)...),
		append([]byte{fin | opBin, 0x80 | 127}, binary.BigEndian.AppendUint64(nil, 1<<63)...),
		{fin | opBin, 0x80 | 126, 0x01}, // truncated header
		bin([]byte("truncated payload"))[:12],
		clientFrame(fin|opCont, []byte("cont"), k, true, false),
		cat(clientFrame(opBin, []byte("a"), k, true, false), bin([]byte("b"))),
		clientFrame(opPing, nil, k, true, false), // fragmented control frame
		clientFrame(fin|opPing, pattern(maxCtrl+1, 3), k, true, false),
		{},
	}
}

// refMessages decodes data as the server side of RFC 6455 (§5.2–5.5, no
// extensions, read limit MaxFrame) must: the binary messages that precede
// the first close frame, text message, protocol violation, or end of data.
func refMessages(data []byte) [][]byte {
	var msgs [][]byte
	var cur []byte
	inMsg := false
	for {
		if len(data) < 2 {
			return msgs
		}
		b0, b1 := data[0], data[1]
		op := b0 & 0x0f
		n := uint64(b1 & 0x7f)
		hdr := 2
		switch n {
		case 126:
			if len(data) < 4 {
				return msgs
			}
			n, hdr = uint64(binary.BigEndian.Uint16(data[2:])), 4
		case 127:
			if len(data) < 10 {
				return msgs
			}
			n, hdr = binary.BigEndian.Uint64(data[2:]), 10
		}
		if n > maxInt63 || b0&0x70 != 0 || b1&0x80 == 0 || len(data) < hdr+4 {
			return msgs
		}
		key := data[hdr : hdr+4]
		hdr += 4
		switch op {
		case opPing, opPong:
			if n > maxCtrl || b0&fin == 0 {
				return msgs
			}
		case opCont:
			if !inMsg {
				return msgs
			}
		case opBin:
			if inMsg {
				return msgs
			}
			inMsg, cur = true, []byte{}
		default: // close, text, reserved
			return msgs
		}
		if op == opBin || op == opCont {
			if n > uint64(MaxFrame-len(cur)) {
				return msgs
			}
		}
		if uint64(len(data)-hdr) < n {
			return msgs
		}
		payload := data[hdr : hdr+int(n)]
		data = data[hdr+int(n):]
		if op == opPing || op == opPong {
			continue
		}
		for i, b := range payload {
			cur = append(cur, b^key[i%4])
		}
		if b0&fin != 0 {
			msgs = append(msgs, cur)
			inMsg, cur = false, nil
		}
	}
}

// fuzzServer is a ws Listener on a pipeListener, shared by the inputs of
// one fuzz target.
type fuzzServer struct {
	pl *pipeListener
	l  transports.Listener
}

func newFuzzServer(f *testing.F) *fuzzServer {
	pl := newPipeListener()
	tr, err := NewPlain(transports.Config{
		Listen: func(context.Context, string, string) (net.Listener, error) { return pl, nil },
	})
	if err != nil {
		f.Fatal(err)
	}
	l, err := tr.Listen(context.Background(), "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { l.Close() })
	return &fuzzServer{pl: pl, l: l}
}

// run upgrades a new pipe connection, sends chunks on it (each a write of
// its own, the next once the server has read the one before), then ends
// the client's side of the stream, and checks the server Conn's ReadFrames against
// refMessages: exactly the reference's messages, each at most MaxFrame
// bytes, then an error that every later ReadFrame repeats; then Close
// returns within CloseTimeout and a second.
func (s *fuzzServer) run(t *testing.T, chunks ...[]byte) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	nc, err := s.pl.dial()
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	if _, err := io.WriteString(nc, upgradeRequest); err != nil {
		nc.Close()
		t.Fatal(err)
	}
	c, err := s.l.Accept(ctx)
	if err != nil {
		nc.Close()
		t.Fatal(err)
	}
	// A net.Pipe Write returns once the reader has taken all its bytes, and
	// a Read returns the bytes of one Write only.
	wg.Go(func() {
		defer nc.Close()
		for _, p := range chunks {
			if _, err := nc.Write(p); err != nil {
				return // the server has closed the connection
			}
		}
	})
	var all []byte
	for _, p := range chunks {
		all = append(all, p...)
	}
	want := refMessages(all)

	watchdog := context.AfterFunc(ctx, func() { c.Close() })
	defer watchdog()
	var readErr error
	for i := 0; readErr == nil; i++ {
		p, err := c.ReadFrame()
		if ctx.Err() != nil {
			t.Fatalf("ReadFrame %d did not return within %v", i, testTimeout)
		}
		if err != nil {
			readErr = err
			if i != len(want) {
				t.Errorf("ReadFrame %d: %v; want %d messages before an error", i, err, len(want))
			}
			break
		}
		if len(p) > MaxFrame {
			t.Fatalf("ReadFrame %d: %d bytes, over MaxFrame (%d)", i, len(p), MaxFrame)
		}
		if i >= len(want) {
			t.Fatalf("ReadFrame %d: %d bytes %q; want an error after %d messages", i, len(p), trim(p), len(want))
		}
		if !bytes.Equal(p, want[i]) {
			t.Fatalf("ReadFrame %d: %q, want %q", i, trim(p), trim(want[i]))
		}
	}
	for i := range 2 {
		if p, err := c.ReadFrame(); err == nil {
			t.Fatalf("ReadFrame %d after the error %v: %d bytes, nil error", i, readErr, len(p))
		}
	}
	start := time.Now()
	c.Close()
	if took := time.Since(start); took > CloseTimeout+time.Second {
		t.Errorf("Close took %v, want at most %v", took, CloseTimeout+time.Second)
	}
}

// trim shortens p for a message.
func trim(p []byte) string {
	if len(p) > 64 {
		return fmt.Sprintf("%q… (%d bytes)", p[:64], len(p))
	}
	return string(p)
}

// FuzzReadFrame sends arbitrary bytes, as client frames, to a server Conn
// after a real upgrade over a net.Pipe, in one write.
func FuzzReadFrame(f *testing.F) {
	for _, s := range wsSeeds() {
		f.Add(s)
	}
	srv := newFuzzServer(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		srv.run(t, data)
	})
}

// FuzzReadFrameSplit is FuzzReadFrame with the bytes in two writes split at
// a fuzzed point, the second once the server has read the first.
func FuzzReadFrameSplit(f *testing.F) {
	for i, s := range wsSeeds() {
		f.Add(s, uint16(i*5))
		f.Add(s, uint16(len(s)/2))
	}
	srv := newFuzzServer(f)
	f.Fuzz(func(t *testing.T, data []byte, split uint16) {
		at := min(int(split), len(data))
		srv.run(t, data[:at], data[at:])
	})
}

// TestRefMessages checks the fuzz targets' reference decoder on its seeds.
func TestRefMessages(t *testing.T) {
	seeds := wsSeeds()
	wants := []int{1, 2, 1, 0, 1, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	if len(wants) != len(seeds) {
		t.Fatalf("%d seeds, %d expectations", len(seeds), len(wants))
	}
	for i, want := range wants {
		if got := len(refMessages(seeds[i])); got != want {
			t.Errorf("seed %d: %d messages, want %d", i, got, want)
		}
	}
	if got := refMessages(seeds[5]); len(got) != 1 || string(got[0]) != "fragmented" {
		t.Errorf("fragmented seed: %q", got)
	}
}

// TestTruncatedMessage sends, over loopback TCP (and TLS for wss), a
// message cut short where coder/websocket's message reader once took the
// end of the stream for the end of the message (the first crasher of
// FuzzReadFrame, testdata/fuzz/FuzzReadFrame/5d3a50bda5a83955): right
// after a header, after a fragment, and at the read buffer's sizes. The
// client then shuts its sending side down (a TLS close_notify for wss) and
// ReadFrame must fail with ErrAbnormalClosure, never return the part.
func TestTruncatedMessage(t *testing.T) {
	k := [4]byte{1, 2, 3, 4}
	big := clientFrame(fin|opBin, pattern(70000, 5), k, true, false)
	for _, tt := range []struct {
		name string
		send []byte
	}{
		{"header only", clientFrame(fin|opBin, pattern(122, 1), k, true, false)[:6]},
		{"64-bit header only", big[:14]},
		{"fragment without its continuation", clientFrame(opBin, []byte("frag"), k, true, false)},
		{"at 4 KiB", big[:14+minReadBufBytes]},
		{"at 8 KiB", big[:14+2*minReadBufBytes]},
		{"at 16 KiB", big[:14+4*minReadBufBytes]},
	} {
		for _, b := range both {
			t.Run(b.name+"/"+tt.name, func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
				defer cancel()
				l, err := b.tr.Listen(ctx, "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				defer l.Close()
				nc, err := rawClient(ctx, b.name == "wss", l.Addr().String())
				if err != nil {
					t.Fatal(err)
				}
				defer nc.Close()
				go io.Copy(io.Discard, nc)
				c, err := l.Accept(ctx)
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				if _, err := nc.Write(tt.send); err != nil {
					t.Fatal(err)
				}
				if err := nc.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
					t.Fatal(err)
				}
				p, err := c.ReadFrame()
				if err == nil {
					t.Fatalf("ReadFrame = %d bytes of a message cut short, nil error", len(p))
				}
				if !errors.Is(err, ErrAbnormalClosure) {
					t.Errorf("ReadFrame = %v, want ErrAbnormalClosure", err)
				}
			})
		}
	}
}
