package quic

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	quicgo "github.com/quic-go/quic-go"
	"go.uber.org/goleak"

	"github.com/evbench/evbench/transports"
	"github.com/evbench/evbench/transports/internal/selfsigned"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testTimeout bounds every wait in these tests.
const testTimeout = 10 * time.Second

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// pair returns a connected client and server Conn of tr on 127.0.0.1; they
// and the Listener are closed when the test ends.
func pair(t testing.TB, tr transports.Transport) (client, server transports.Conn) {
	t.Helper()
	ctx := testCtx(t)
	ln, err := tr.Listen(ctx, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	client, err = tr.Dial(ctx, ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	// Cleanups abort rather than Close, to skip the linger: most tests
	// leave one end without a reader. Close itself is tested in TestClose.
	t.Cleanup(func() { client.(conn).abort() })
	server, err = ln.Accept(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.(conn).abort() })
	return client, server
}

// eventFrame encodes an EVENT frame of exactly total bytes.
func eventFrame(t testing.TB, total int) []byte {
	t.Helper()
	f := transports.Frame{
		Type: transports.FrameEvent, Namespace: []byte("/"), Room: []byte("r"), Name: []byte("m"),
		Sender: 7, Seq: 9, Offset: 11,
	}
	n := total - transports.EventFrameBytes(3, 0)
	if n < 0 {
		t.Fatalf("an event frame has at least %d bytes", transports.EventFrameBytes(3, 0))
	}
	f.Payload = bytes.Repeat([]byte{0xab}, n)
	p, err := transports.AppendFrame(nil, &f)
	if err != nil {
		t.Fatal(err)
	}
	if len(p) != total {
		t.Fatalf("event frame has %d bytes, want %d", len(p), total)
	}
	return p
}

// controlFrame returns n bytes whose type byte is not EMIT or EVENT, in a
// pattern that repeats every 251 bytes.
func controlFrame(n int) []byte {
	var pattern [251]byte
	for i := range pattern {
		pattern[i] = byte(i*7 + 3)
	}
	p := bytes.Repeat(pattern[:], n/len(pattern)+1)[:n]
	if n >= 2 {
		p[0], p[1] = transports.Version, byte(transports.FrameAck)
	}
	return p
}

// send writes and flushes p in a goroutine, since a frame larger than the
// flow-control window blocks until the peer reads it.
func send(c transports.Conn, p []byte) <-chan error {
	errc := make(chan error, 1)
	go func() {
		err := c.WriteFrame(p)
		if err == nil {
			err = transports.Flush(c)
		}
		errc <- err
	}()
	return errc
}

// sendDatagram writes p with c's WriteDatagram in a goroutine; c must be a
// quic-dgram Conn.
func sendDatagram(c transports.Conn, p []byte) <-chan error {
	errc := make(chan error, 1)
	go func() { errc <- c.(transports.DatagramConn).WriteDatagram(p) }()
	return errc
}

// readWithin reads one frame, failing the test after testTimeout.
func readWithin(t testing.TB, c transports.Conn) ([]byte, error) {
	t.Helper()
	type result struct {
		p   []byte
		err error
	}
	ch := make(chan result, 1)
	go func() {
		p, err := c.ReadFrame()
		ch <- result{bytes.Clone(p), err}
	}()
	select {
	case r := <-ch:
		return r.p, r.err
	case <-time.After(testTimeout):
		c.Close()
		<-ch
		t.Fatal("ReadFrame did not return")
		return nil, nil
	}
}

func TestNameAndCaps(t *testing.T) {
	streamCaps := transports.Caps{Reliable: true, ReliableControl: true, Ordered: true, Encrypted: true, MaxFrame: transports.MaxPayloadBytes + 64<<10, ClientFDs: 1, ServerFDs: 0}
	dgramCaps := transports.Caps{ReliableControl: true, Encrypted: true, Datagram: true, MaxFrame: DatagramMaxFrameBytes, ClientFDs: 1, ServerFDs: 0}
	fromConfig := func(newT transports.Constructor) transports.Transport {
		tr, err := newT(transports.Config{})
		if err != nil {
			t.Fatal(err)
		}
		return tr
	}
	tests := []struct {
		tr   transports.Transport
		name string
		caps transports.Caps
	}{
		{Stream(), "quic", streamCaps},
		{fromConfig(NewStream), "quic", streamCaps},
		{Datagram(), "quic-dgram", dgramCaps},
		{fromConfig(NewDatagram), "quic-dgram", dgramCaps},
	}
	if NameStream != "quic" || NameDatagram != "quic-dgram" {
		t.Errorf("NameStream, NameDatagram = %q, %q", NameStream, NameDatagram)
	}
	for _, tt := range tests {
		tr := tt.tr
		if tr.Name() != tt.name {
			t.Errorf("Name() = %q, want %q", tr.Name(), tt.name)
		}
		if tr.Caps() != tt.caps {
			t.Errorf("%s: Caps() = %+v, want %+v", tt.name, tr.Caps(), tt.caps)
		}
	}
}

// TestDatagramConn checks that only quic-dgram's Conns have WriteDatagram.
func TestDatagramConn(t *testing.T) {
	for _, tt := range []struct {
		tr   transports.Transport
		want bool
	}{{Stream(), false}, {Datagram(), true}} {
		client, server := pair(t, tt.tr)
		for _, c := range []transports.Conn{client, server} {
			if _, ok := c.(transports.DatagramConn); ok != tt.want {
				t.Errorf("%s: Conn implements DatagramConn: %v, want %v", tt.tr.Name(), ok, tt.want)
			}
		}
	}
}

// TestFlusher checks that only "quic" buffers writes.
func TestFlusher(t *testing.T) {
	for _, tt := range []struct {
		tr   transports.Transport
		want bool
	}{{Stream(), true}, {Datagram(), false}} {
		client, server := pair(t, tt.tr)
		for _, c := range []transports.Conn{client, server} {
			if _, ok := c.(transports.Flusher); ok != tt.want {
				t.Errorf("%s: Conn implements Flusher: %v, want %v", tt.tr.Name(), ok, tt.want)
			}
		}
	}
}

// written is a frame and how it is written: with WriteFrame, or with
// WriteDatagram when datagram.
type written struct {
	p        []byte
	datagram bool
}

// write starts writing w.p on c (see send and sendDatagram).
func (w written) write(c transports.Conn) <-chan error {
	if w.datagram {
		return sendDatagram(c, w.p)
	}
	return send(c, w.p)
}

// TestRoundTrip sends frames both ways; on quic-dgram some travel as
// datagrams, which loopback does not lose at this rate.
func TestRoundTrip(t *testing.T) {
	tests := []struct {
		tr     transports.Transport
		frames func(t *testing.T) []written
	}{
		{Stream(), func(t *testing.T) []written {
			return []written{{p: []byte{}}, {p: []byte{1}}, {p: controlFrame(100)}, {p: eventFrame(t, 500)}, {p: controlFrame(70_000)}, {p: controlFrame(1 << 20)}}
		}},
		{Datagram(), func(t *testing.T) []written {
			return []written{
				{p: []byte{}}, {p: []byte{1}}, {p: controlFrame(100)}, {p: eventFrame(t, 500)},
				{p: controlFrame(DatagramMaxFrameBytes)}, {p: eventFrame(t, DatagramMaxFrameBytes)},
				{p: []byte{2}, datagram: true}, {p: controlFrame(100), datagram: true}, {p: eventFrame(t, 500), datagram: true},
				{p: controlFrame(DatagramMaxFrameBytes), datagram: true}, {p: eventFrame(t, DatagramMaxFrameBytes), datagram: true},
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.tr.Name(), func(t *testing.T) {
			client, server := pair(t, tt.tr)
			frames := tt.frames(t)
			for _, dir := range []struct {
				name     string
				from, to transports.Conn
			}{{"client to server", client, server}, {"server to client", server, client}} {
				for i, w := range frames {
					errc := w.write(dir.from)
					got, err := readWithin(t, dir.to)
					if err != nil {
						t.Fatalf("%s: frame %d: ReadFrame: %v", dir.name, i, err)
					}
					if err := <-errc; err != nil {
						t.Fatalf("%s: writing %d bytes (datagram: %v): %v", dir.name, len(w.p), w.datagram, err)
					}
					if !bytes.Equal(got, w.p) {
						t.Fatalf("%s: frame %d: got %d bytes, want %d bytes equal to those sent", dir.name, i, len(got), len(w.p))
					}
				}
			}
		})
	}
}

// TestStreamBuffersUntilFlush checks that "quic" holds small frames until
// Flush and sends them in order afterwards.
func TestStreamBuffersUntilFlush(t *testing.T) {
	client, server := pair(t, Stream())
	const n = 50
	for i := range n {
		if err := client.WriteFrame([]byte{byte(i), 'x'}); err != nil {
			t.Fatal(err)
		}
	}
	got := make(chan []byte, 1)
	go func() {
		p, err := server.ReadFrame()
		if err != nil {
			p = nil
		}
		got <- bytes.Clone(p)
	}()
	select {
	case p := <-got:
		t.Fatalf("a frame (%v) arrived before Flush", p)
	case <-time.After(100 * time.Millisecond):
	}
	if err := transports.Flush(client); err != nil {
		t.Fatal(err)
	}
	select {
	case p := <-got:
		if !bytes.Equal(p, []byte{0, 'x'}) {
			t.Fatalf("first frame = %v", p)
		}
	case <-time.After(testTimeout):
		t.Fatal("no frame after Flush")
	}
	for i := 1; i < n; i++ {
		p, err := readWithin(t, server)
		if err != nil || !bytes.Equal(p, []byte{byte(i), 'x'}) {
			t.Fatalf("frame %d = %v, %v", i, p, err)
		}
	}
}

func TestSizeLimits(t *testing.T) {
	tests := []struct {
		name     string
		tr       transports.Transport
		frame    func(t *testing.T) []byte
		datagram bool // written with WriteDatagram
		tooBig   bool
		arrives  bool
	}{
		{"quic largest frame", Stream(), func(*testing.T) []byte { return controlFrame(StreamMaxFrameBytes) }, false, false, true},
		{"quic frame one over", Stream(), func(*testing.T) []byte { return controlFrame(StreamMaxFrameBytes + 1) }, false, true, false},
		{"dgram largest datagram", Datagram(), func(t *testing.T) []byte { return eventFrame(t, DatagramMaxFrameBytes) }, true, false, true},
		{"dgram datagram one over", Datagram(), func(t *testing.T) []byte { return eventFrame(t, DatagramMaxFrameBytes+1) }, true, true, false},
		{"dgram 2000-byte datagram", Datagram(), func(t *testing.T) []byte { return eventFrame(t, 2000) }, true, true, false},
		{"dgram largest frame", Datagram(), func(*testing.T) []byte { return controlFrame(DatagramMaxFrameBytes) }, false, false, true},
		{"dgram largest event-shaped frame", Datagram(), func(t *testing.T) []byte { return eventFrame(t, DatagramMaxFrameBytes) }, false, false, true},
		{"dgram frame one over", Datagram(), func(*testing.T) []byte { return controlFrame(DatagramMaxFrameBytes + 1) }, false, true, false},
		{"dgram 2000-byte frame", Datagram(), func(*testing.T) []byte { return controlFrame(2000) }, false, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client, server := pair(t, tt.tr)
			w := written{p: tt.frame(t), datagram: tt.datagram}
			p := w.p
			errc := w.write(client)
			if tt.arrives {
				got, err := readWithin(t, server)
				if err != nil || !bytes.Equal(got, p) {
					t.Fatalf("ReadFrame = %d bytes, %v; want the %d bytes sent", len(got), err, len(p))
				}
			}
			err := <-errc
			if tt.tooBig != errors.Is(err, transports.ErrFrameTooLarge) {
				t.Fatalf("writing %d bytes (datagram: %v) = %v, want ErrFrameTooLarge: %v", len(p), tt.datagram, err, tt.tooBig)
			}
			if !tt.tooBig && err != nil {
				t.Fatal(err)
			}
			// The connection stays usable after a refused frame.
			if err := client.WriteFrame([]byte("after")); err != nil {
				t.Fatal(err)
			}
			if err := transports.Flush(client); err != nil {
				t.Fatal(err)
			}
			if got, err := readWithin(t, server); err != nil || string(got) != "after" {
				t.Fatalf("frame after: %q, %v", got, err)
			}
		})
	}
}

// TestDatagramLimit measures quic-go's datagram payload limit at the initial
// packet size (path MTU discovery off, so the figure is the one every
// connection starts with) and checks DatagramMaxFrameBytes against it.
func TestDatagramLimit(t *testing.T) {
	for _, addr := range []string{"127.0.0.1:0", "[::1]:0"} {
		t.Run(addr, func(t *testing.T) {
			ctx := testCtx(t)
			conf := Config(true)
			conf.DisablePathMTUDiscovery = true
			client, server := rawPair(t, addr, conf)
			err := client.SendDatagram(make([]byte, 2000))
			tl, ok := errors.AsType[*quicgo.DatagramTooLargeError](err)
			if !ok {
				t.Fatalf("SendDatagram(2000 bytes) = %v, want a DatagramTooLargeError", err)
			}
			if tl.MaxDatagramPayloadSize != DatagramMaxFrameBytes {
				t.Errorf("quic-go's limit is %d bytes, DatagramMaxFrameBytes is %d", tl.MaxDatagramPayloadSize, DatagramMaxFrameBytes)
			}
			// The limit itself is sent.
			want := bytes.Repeat([]byte{1}, DatagramMaxFrameBytes)
			if err := client.SendDatagram(want); err != nil {
				t.Fatal(err)
			}
			got, err := server.ReceiveDatagram(ctx)
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("ReceiveDatagram = %d bytes, %v", len(got), err)
			}
		})
	}
}

// rawPair connects two plain quic-go connections on addr with the package's
// TLS set-up and conf.
func rawPair(t *testing.T, addr string, conf *quicgo.Config) (client, server *quicgo.Conn) {
	t.Helper()
	ctx := testCtx(t)
	ln := rawListener(t, addr, conf)
	ctls, err := selfsigned.ClientConfig(ALPN)
	if err != nil {
		t.Fatal(err)
	}
	udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: ln.Addr().(*net.UDPAddr).IP})
	if err != nil {
		t.Fatal(err)
	}
	tr := &quicgo.Transport{Conn: udp}
	t.Cleanup(func() { tr.Close(); udp.Close() })
	client, err = tr.Dial(ctx, ln.Addr(), ctls, conf)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.CloseWithError(0, "") })
	server, err = ln.Accept(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.CloseWithError(0, "") })
	return client, server
}

func rawListener(t *testing.T, addr string, conf *quicgo.Config) *quicgo.Listener {
	t.Helper()
	stls, err := selfsigned.ServerConfig(ALPN)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := quicgo.ListenAddr(addr, stls, conf)
	if err != nil {
		if strings.Contains(addr, "::1") {
			t.Skipf("no IPv6 loopback: %v", err)
		}
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// TestWireFormat checks, against plain quic-go, the preamble, the length
// prefix, and that quic-dgram sends every WriteFrame on the stream, whatever
// the frame holds, and only WriteDatagram's frames as datagrams.
func TestWireFormat(t *testing.T) {
	tests := []struct {
		tr       transports.Transport
		preamble byte
	}{
		{Stream(), 'S'},
		{Datagram(), 'D'},
	}
	for _, tt := range tests {
		t.Run(tt.tr.Name(), func(t *testing.T) {
			ctx := testCtx(t)
			dgram := tt.tr.Caps().Datagram
			ln := rawListener(t, "127.0.0.1:0", Config(dgram))
			c, err := tt.tr.Dial(ctx, ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			qc, err := ln.Accept(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer qc.CloseWithError(0, "")
			st, err := qc.AcceptStream(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var pre [1]byte
			if _, err := io.ReadFull(st, pre[:]); err != nil || pre[0] != tt.preamble {
				t.Fatalf("preamble %q, %v; want %q", pre[0], err, tt.preamble)
			}

			// Client to server: a control frame and an event frame with
			// WriteFrame and, on quic-dgram, the event frame again with
			// WriteDatagram.
			control, event := controlFrame(DatagramMaxFrameBytes), eventFrame(t, 1000)
			for _, p := range [][]byte{control, event} {
				if err := c.WriteFrame(p); err != nil {
					t.Fatal(err)
				}
			}
			if err := transports.Flush(c); err != nil {
				t.Fatal(err)
			}
			if dgram {
				if err := c.(transports.DatagramConn).WriteDatagram(event); err != nil {
					t.Fatal(err)
				}
			}
			readStreamFrame := func() []byte {
				t.Helper()
				var hdr [4]byte
				if _, err := io.ReadFull(st, hdr[:]); err != nil {
					t.Fatal(err)
				}
				p := make([]byte, binary.BigEndian.Uint32(hdr[:]))
				if _, err := io.ReadFull(st, p); err != nil {
					t.Fatal(err)
				}
				return p
			}
			if got := readStreamFrame(); !bytes.Equal(got, control) {
				t.Fatalf("stream carried %d bytes, want the %d-byte control frame", len(got), len(control))
			}
			if got := readStreamFrame(); !bytes.Equal(got, event) {
				t.Fatalf("stream carried %d bytes, want the %d-byte event frame written with WriteFrame", len(got), len(event))
			}
			if dgram {
				got, err := qc.ReceiveDatagram(ctx)
				if err != nil || !bytes.Equal(got, event) {
					t.Fatalf("datagram = %d bytes, %v; want the %d-byte event frame written with WriteDatagram", len(got), err, len(event))
				}
			}

			// Server to client: a length-prefixed frame on the stream and,
			// for quic-dgram, a datagram.
			msg := []byte("hello")
			if _, err := st.Write(append(binary.BigEndian.AppendUint32(nil, uint32(len(msg))), msg...)); err != nil {
				t.Fatal(err)
			}
			if got, err := readWithin(t, c); err != nil || !bytes.Equal(got, msg) {
				t.Fatalf("ReadFrame = %q, %v", got, err)
			}
			if dgram {
				if err := qc.SendDatagram(event); err != nil {
					t.Fatal(err)
				}
				if got, err := readWithin(t, c); err != nil || !bytes.Equal(got, event) {
					t.Fatalf("ReadFrame = %d bytes, %v; want the datagram", len(got), err)
				}
			}

			// A length over the limit is refused by the reader.
			if _, err := st.Write(binary.BigEndian.AppendUint32(nil, StreamMaxFrameBytes+1)); err != nil {
				t.Fatal(err)
			}
			if _, err := readWithin(t, c); !errors.Is(err, transports.ErrFrameTooLarge) {
				t.Fatalf("ReadFrame after an oversized length = %v, want ErrFrameTooLarge", err)
			}
		})
	}
}

// TestRefusedFramesNotSent checks that refused frames of quic-dgram leave
// the stream untouched: the next frame is the first thing on it.
func TestRefusedFramesNotSent(t *testing.T) {
	client, server := pair(t, Datagram())
	for _, p := range [][]byte{eventFrame(t, 2000), controlFrame(2000)} {
		if err := client.WriteFrame(p); !errors.Is(err, transports.ErrFrameTooLarge) {
			t.Fatalf("WriteFrame of a 2000-byte frame (type %d): %v, want ErrFrameTooLarge", p[1], err)
		}
		if err := client.(transports.DatagramConn).WriteDatagram(p); !errors.Is(err, transports.ErrFrameTooLarge) {
			t.Fatalf("WriteDatagram of a 2000-byte frame (type %d): %v, want ErrFrameTooLarge", p[1], err)
		}
	}
	control := controlFrame(DatagramMaxFrameBytes)
	if err := client.WriteFrame(control); err != nil {
		t.Fatal(err)
	}
	if got, err := readWithin(t, server); err != nil || !bytes.Equal(got, control) {
		t.Fatalf("ReadFrame = %d bytes, %v; want the control frame", len(got), err)
	}
}

func TestClose(t *testing.T) {
	for _, tr := range []transports.Transport{Stream(), Datagram()} {
		t.Run(tr.Name()+"/unblocks ReadFrame", func(t *testing.T) {
			client, _ := pair(t, tr)
			errc := make(chan error, 1)
			go func() {
				_, err := client.ReadFrame()
				errc <- err
			}()
			time.Sleep(20 * time.Millisecond)
			if err := client.Close(); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-errc:
				if !errors.Is(err, net.ErrClosed) {
					t.Fatalf("ReadFrame after Close = %v, want net.ErrClosed", err)
				}
			case <-time.After(testTimeout):
				t.Fatal("ReadFrame still blocked after Close")
			}
			if err := client.Close(); err != nil {
				t.Fatalf("second Close = %v", err)
			}
			if err := client.WriteFrame(controlFrame(10)); !errors.Is(err, net.ErrClosed) {
				t.Fatalf("WriteFrame after Close = %v, want net.ErrClosed", err)
			}
			if d, ok := client.(transports.DatagramConn); ok {
				if err := d.WriteDatagram(controlFrame(10)); !errors.Is(err, net.ErrClosed) {
					t.Fatalf("WriteDatagram after Close = %v, want net.ErrClosed", err)
				}
			}
			if _, err := client.ReadFrame(); !errors.Is(err, net.ErrClosed) {
				t.Fatalf("ReadFrame after Close = %v, want net.ErrClosed", err)
			}
		})
		t.Run(tr.Name()+"/unblocks WriteFrame", func(t *testing.T) {
			// The server never reads, so flow control stalls the writer.
			client, _ := pair(t, tr)
			errc := make(chan error, 1)
			go func() {
				p := controlFrame(min(tr.Caps().MaxFrame, 1<<20))
				for range (64 << 20) / len(p) { // 64 MiB, far beyond quic-go's windows
					if err := client.WriteFrame(p); err != nil {
						errc <- err
						return
					}
					if err := transports.Flush(client); err != nil {
						errc <- err
						return
					}
				}
				errc <- nil
			}()
			time.Sleep(200 * time.Millisecond)
			client.Close()
			select {
			case err := <-errc:
				if !errors.Is(err, net.ErrClosed) {
					t.Fatalf("WriteFrame after Close = %v, want net.ErrClosed", err)
				}
			case <-time.After(testTimeout):
				t.Fatal("WriteFrame still blocked after Close")
			}
		})
		t.Run(tr.Name()+"/peer Close is EOF", func(t *testing.T) {
			client, server := pair(t, tr)
			server.Close()
			if _, err := readWithin(t, client); !errors.Is(err, io.EOF) {
				t.Fatalf("ReadFrame after the peer's Close = %v, want io.EOF", err)
			}
		})
		t.Run(tr.Name()+"/frames written before Close arrive", func(t *testing.T) {
			client, server := pair(t, tr)
			const n = 200
			p := controlFrame(1000)
			for i := range n {
				p[2] = byte(i)
				if err := client.WriteFrame(p); err != nil {
					t.Fatal(err)
				}
			}
			if err := transports.Flush(client); err != nil {
				t.Fatal(err)
			}
			closed := make(chan struct{})
			go func() {
				client.Close()
				close(closed)
			}()
			for i := range n {
				got, err := readWithin(t, server)
				p[2] = byte(i)
				if err != nil || !bytes.Equal(got, p) {
					t.Fatalf("frame %d of %d: %d bytes, %v", i, n, len(got), err)
				}
			}
			if _, err := readWithin(t, server); !errors.Is(err, io.EOF) {
				t.Fatalf("ReadFrame after the last frame = %v, want io.EOF", err)
			}
			select {
			case <-closed:
			case <-time.After(testTimeout):
				t.Fatal("Close did not return")
			}
		})
		t.Run(tr.Name()+"/Close lingers at most LingerTimeout", func(t *testing.T) {
			client, _ := pair(t, tr) // the server's application never reads
			if err := client.WriteFrame(controlFrame(100)); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			client.Close()
			if d := time.Since(start); d > LingerTimeout+time.Second {
				t.Fatalf("Close took %v, LingerTimeout is %v", d, LingerTimeout)
			}
		})
	}
}

// TestSlowClientDoesNotBlockAccept connects a client that never opens its
// stream, then a normal one, which Accept must return.
func TestSlowClientDoesNotBlockAccept(t *testing.T) {
	ctx := testCtx(t)
	tr := Stream()
	ln, err := tr.Listen(ctx, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()

	ctls, err := selfsigned.ClientConfig(ALPN)
	if err != nil {
		t.Fatal(err)
	}
	udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	qtr := &quicgo.Transport{Conn: udp}
	defer func() { qtr.Close(); udp.Close() }()
	silent, err := qtr.Dial(ctx, ln.Addr(), ctls, Config(false))
	if err != nil {
		t.Fatal(err)
	}
	defer silent.CloseWithError(0, "")

	client, err := tr.Dial(ctx, ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	actx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	server, err := ln.Accept(actx)
	if err != nil {
		t.Fatalf("Accept with a silent client connected: %v", err)
	}
	defer server.Close()
	if err := client.WriteFrame([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := transports.Flush(client); err != nil {
		t.Fatal(err)
	}
	if got, err := readWithin(t, server); err != nil || string(got) != "x" {
		t.Fatalf("ReadFrame = %q, %v", got, err)
	}
}

// TestWrongTransportRefused dials a quic-dgram Listener with quic: the
// preambles differ, so the server closes the connection with code 1.
func TestWrongTransportRefused(t *testing.T) {
	ctx := testCtx(t)
	ln, err := Datagram().Listen(ctx, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := Stream().Dial(ctx, ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	_, err = readWithin(t, client)
	ae, ok := errors.AsType[*quicgo.ApplicationError](err)
	if !ok || ae.ErrorCode != codeSetup || !ae.Remote {
		t.Fatalf("ReadFrame = %v, want the server's application error %d", err, codeSetup)
	}
	actx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if c, err := ln.Accept(actx); err == nil {
		c.Close()
		t.Fatal("Accept returned a connection with the wrong preamble")
	}
}

// TestReadFrameDoesNotAllocate checks the steady-state read path of "quic"
// (quic-dgram's datagrams are allocated by quic-go). The frames are given
// time to arrive first: a read that has to wait runs quic-go's own blocking
// path, whose allocations are not ours. CI runs it without -race.
func TestReadFrameDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector makes allocation counts meaningless; .ci/run runs this test without it")
	}
	client, server := pair(t, Stream())
	p := controlFrame(256)
	const runs = 100
	for range runs + 1 {
		if err := client.WriteFrame(p); err != nil {
			t.Fatal(err)
		}
	}
	if err := transports.Flush(client); err != nil {
		t.Fatal(err)
	}
	if _, err := readWithin(t, server); err != nil { // warm the buffer
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // 100 frames of 260 bytes on loopback
	allocs := testing.AllocsPerRun(runs-1, func() {
		if _, err := server.ReadFrame(); err != nil {
			panic(err)
		}
	})
	if allocs != 0 {
		t.Errorf("ReadFrame allocates %.1f times per frame", allocs)
	}
}

// BenchmarkWriteRead streams frames from a client to a server that reads
// them in another goroutine; ns/op is per frame. quic flushes every 16
// frames; quic-dgram sends event frames with WriteDatagram (through
// transports.WriteEvent, as the Hub does) and reports how many the receiver
// lost (quic-go's bounded receive queue) as lost/op.
func BenchmarkWriteRead(b *testing.B) {
	tests := []struct {
		tr    transports.Transport
		bytes int
		event bool
	}{
		{Stream(), 64, false},
		{Stream(), 1024, false},
		{Stream(), 16 << 10, false},
		{Datagram(), 128, true},
		{Datagram(), DatagramMaxFrameBytes, true},
		{Datagram(), 1024, false},
	}
	for _, tt := range tests {
		kind := "control"
		if tt.event {
			kind = "event"
		}
		b.Run(fmt.Sprintf("%s/%s/%dB", tt.tr.Name(), kind, tt.bytes), func(b *testing.B) {
			client, server := pair(b, tt.tr)
			p := controlFrame(tt.bytes)
			if tt.event {
				p = eventFrame(b, tt.bytes)
			}
			var received atomic.Int64
			readerDone := make(chan struct{})
			go func() {
				defer close(readerDone)
				for {
					if _, err := server.ReadFrame(); err != nil {
						return
					}
					received.Add(1)
				}
			}()
			b.SetBytes(int64(len(p)))
			b.ReportAllocs()
			write := client.WriteFrame
			if tt.event {
				write = func(p []byte) error { return transports.WriteEvent(client, p) }
			}
			sent := 0
			for b.Loop() {
				if err := write(p); err != nil {
					b.Fatal(err)
				}
				sent++
				if sent%16 == 0 {
					if err := transports.Flush(client); err != nil {
						b.Fatal(err)
					}
				}
			}
			if err := transports.Flush(client); err != nil {
				b.Fatal(err)
			}
			// Wait until everything arrived or nothing more arrives for 200 ms.
			last, idle := int64(-1), 0
			for received.Load() < int64(sent) && idle < 20 {
				if n := received.Load(); n == last {
					idle++
				} else {
					last, idle = n, 0
				}
				time.Sleep(10 * time.Millisecond)
			}
			b.StopTimer()
			server.Close()
			<-readerDone
			got := int(received.Load())
			if (tt.tr.Caps().Reliable || !tt.event) && got != sent {
				b.Fatalf("received %d of %d frames", got, sent)
			}
			b.ReportMetric(float64(sent-got)/float64(sent), "lost/op")
		})
	}
}

// BenchmarkRoundTrip measures one frame's round trip on the stream: the
// client writes and flushes, the server echoes, the client reads. ns/op is
// the round-trip time. Only WriteFrame, never WriteDatagram: a lost datagram
// would stall the loop.
func BenchmarkRoundTrip(b *testing.B) {
	for _, tt := range []struct {
		tr    transports.Transport
		bytes int
	}{
		{Stream(), 64},
		{Stream(), 1024},
		{Datagram(), 64},
		{Datagram(), 1024},
	} {
		b.Run(fmt.Sprintf("%s/%dB", tt.tr.Name(), tt.bytes), func(b *testing.B) {
			client, server := pair(b, tt.tr)
			echoDone := make(chan struct{})
			go func() {
				defer close(echoDone)
				for {
					p, err := server.ReadFrame()
					if err != nil {
						return
					}
					if err := server.WriteFrame(p); err != nil {
						return
					}
					if err := transports.Flush(server); err != nil {
						return
					}
				}
			}()
			p := controlFrame(tt.bytes)
			b.ReportAllocs()
			for b.Loop() {
				if err := client.WriteFrame(p); err != nil {
					b.Fatal(err)
				}
				if err := transports.Flush(client); err != nil {
					b.Fatal(err)
				}
				if _, err := client.ReadFrame(); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			server.Close()
			<-echoDone
		})
	}
}
