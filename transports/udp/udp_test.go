package udp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/evbench/evbench/transports"
)

// quick are intervals short enough for idle tests to finish in well under a
// second.
var quick = Options{KeepaliveInterval: 20 * time.Millisecond, IdleTimeout: 150 * time.Millisecond}

func TestCaps(t *testing.T) {
	tr := New(Options{})
	want := transports.Caps{Reliable: false, Ordered: false, Encrypted: false, Datagram: true, MaxFrame: 1471, ClientFDs: 1, ServerFDs: 0}
	if got := tr.Caps(); got != want || tr.Name() != "udp" {
		t.Fatalf("registered %q with %+v, want \"udp\" with %+v", tr.Name(), got, want)
	}
}

func TestOptions(t *testing.T) {
	tests := []struct {
		name    string
		opts    Options
		wantErr bool
		check   func(Options) bool
	}{
		{"zero means defaults", Options{}, false, func(o Options) bool {
			return o.KeepaliveInterval == time.Second && o.IdleTimeout == 5*time.Second &&
				o.HelloInterval == 100*time.Millisecond && o.QueueFrames == 4096 &&
				o.AcceptBacklog == 1024 && o.ReadBufferBytes == 4<<20 && o.WriteBufferBytes == 4<<20
		}},
		{"set fields are kept", Options{KeepaliveInterval: time.Millisecond, IdleTimeout: 2 * time.Millisecond, QueueFrames: 3}, false,
			func(o Options) bool {
				return o.KeepaliveInterval == time.Millisecond && o.IdleTimeout == 2*time.Millisecond && o.QueueFrames == 3
			}},
		{"negative interval", Options{KeepaliveInterval: -1}, true, nil},
		{"negative queue", Options{QueueFrames: -1}, true, nil},
		{"negative buffer", Options{ReadBufferBytes: -1}, true, nil},
		{"idle equal to keepalive", Options{KeepaliveInterval: time.Second, IdleTimeout: time.Second}, true, nil},
		{"idle below the default keepalive", Options{IdleTimeout: 500 * time.Millisecond}, true, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.opts.withDefaults()
			if (err != nil) != tc.wantErr {
				t.Fatalf("withDefaults(%+v) error = %v, want error: %v", tc.opts, err, tc.wantErr)
			}
			if err != nil {
				// Listen and Dial refuse the options before opening anything.
				if _, lerr := New(tc.opts).Listen(context.Background(), "127.0.0.1:0"); lerr == nil {
					t.Error("Listen accepted invalid options")
				}
				if _, derr := New(tc.opts).Dial(context.Background(), "127.0.0.1:9"); derr == nil {
					t.Error("Dial accepted invalid options")
				}
				return
			}
			if !tc.check(got) {
				t.Fatalf("withDefaults(%+v) = %+v", tc.opts, got)
			}
		})
	}
}

func TestRoundTripAndAddrs(t *testing.T) {
	ln, client, server := pairT(t, Options{})
	if err := client.WriteFrame([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	if got := readT(t, server); string(got) != "ping" {
		t.Fatalf("server read %q, want ping", got)
	}
	if err := server.WriteFrame([]byte("pong")); err != nil {
		t.Fatal(err)
	}
	if got := readT(t, client); string(got) != "pong" {
		t.Fatalf("client read %q, want pong", got)
	}
	if server.RemoteAddr().String() != client.LocalAddr().String() {
		t.Errorf("server RemoteAddr %v, client LocalAddr %v", server.RemoteAddr(), client.LocalAddr())
	}
	if client.RemoteAddr().String() != ln.Addr().String() || server.LocalAddr().String() != ln.Addr().String() {
		t.Errorf("client RemoteAddr %v, server LocalAddr %v, Listener Addr %v", client.RemoteAddr(), server.LocalAddr(), ln.Addr())
	}
}

func TestWriteFrameSizeLimit(t *testing.T) {
	tests := []struct {
		size    int
		wantErr bool
	}{
		{0, false},
		{1, false},
		{MaxFrameBytes, false},
		{MaxFrameBytes + 1, true},
		{64 << 10, true},
	}
	_, client, server := pairT(t, Options{})
	for _, dir := range []struct {
		name string
		w, r *Conn
	}{{"client-to-server", client, server}, {"server-to-client", server, client}} {
		for _, tc := range tests {
			t.Run(fmt.Sprintf("%s/%d", dir.name, tc.size), func(t *testing.T) {
				frame := bytes.Repeat([]byte{0x5a}, tc.size)
				err := dir.w.WriteFrame(frame)
				if tc.wantErr {
					if !errors.Is(err, transports.ErrFrameTooLarge) {
						t.Fatalf("WriteFrame(%d bytes) = %v, want ErrFrameTooLarge", tc.size, err)
					}
					// Nothing was sent: the next frame read is the marker.
					if err := dir.w.WriteFrame([]byte("marker")); err != nil {
						t.Fatal(err)
					}
					if got := readT(t, dir.r); string(got) != "marker" {
						t.Fatalf("after a refused frame the peer read %d bytes, want the marker", len(got))
					}
					return
				}
				if err != nil {
					t.Fatalf("WriteFrame(%d bytes): %v", tc.size, err)
				}
				if got := readT(t, dir.r); !bytes.Equal(got, frame) {
					t.Fatalf("read %d bytes, want the %d written", len(got), tc.size)
				}
			})
		}
	}
}

// TestOversizeSendsNothing watches the wire: a refused frame puts no
// datagram on it.
func TestOversizeSendsNothing(t *testing.T) {
	srv, client, _ := fakeServer(t, Options{})
	if err := client.WriteFrame(make([]byte, MaxFrameBytes+1)); !errors.Is(err, transports.ErrFrameTooLarge) {
		t.Fatalf("WriteFrame(MaxFrameBytes+1) = %v, want ErrFrameTooLarge", err)
	}
	if err := client.WriteFrame([]byte("next")); err != nil {
		t.Fatal(err)
	}
	body, _, ok := srv.recvKind(kindData, waitTimeout)
	if !ok || string(body) != "next" {
		t.Fatalf("first DATA on the wire: %q (ok %v), want \"next\"", body, ok)
	}
}

// TestDemultiplex connects several clients to one Listener and checks that
// each server Conn carries exactly its own client's frames, both ways.
func TestDemultiplex(t *testing.T) {
	const clients, frames = 5, 50
	ln := listenT(t, Options{})
	byAddr := map[string]int{}
	cs := make([]*Conn, clients)
	for i := range cs {
		cs[i] = dialT(t, Options{}, ln.Addr())
		byAddr[cs[i].LocalAddr().String()] = i
	}
	ss := make([]*Conn, clients) // ss[i] serves cs[i]
	for range clients {
		s := acceptT(t, ln)
		i, ok := byAddr[s.RemoteAddr().String()]
		if !ok || ss[i] != nil {
			t.Fatalf("accepted a Conn from %v, which is not a fresh client", s.RemoteAddr())
		}
		ss[i] = s
	}

	var wg sync.WaitGroup
	errs := make(chan error, 2*clients)
	for i := range clients {
		wg.Go(func() {
			for j := range frames {
				if err := cs[i].WriteFrame(fmt.Appendf(nil, "c%d #%d", i, j)); err != nil {
					errs <- err
					return
				}
				if j%10 == 9 {
					time.Sleep(time.Millisecond) // pace, so that loopback loses nothing
				}
			}
		})
		wg.Go(func() {
			for j := range frames {
				r := await(t, readAsync(ss[i]), waitTimeout)
				if r.err != nil {
					errs <- r.err
					return
				}
				// Loopback neither loses nor reorders this little traffic.
				if want := fmt.Sprintf("c%d #%d", i, j); string(r.p) != want {
					errs <- fmt.Errorf("server Conn %d read %q, want %q", i, r.p, want)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for i := range clients {
		if err := ss[i].WriteFrame(fmt.Appendf(nil, "to c%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	for i := range clients {
		if got, want := string(readT(t, cs[i])), fmt.Sprintf("to c%d", i); got != want {
			t.Errorf("client %d read %q, want %q", i, got, want)
		}
	}
	if d := ln.Dropped(); d != 0 {
		t.Errorf("Listener dropped %d datagrams, want 0", d)
	}
}

func TestServerIdleTimeout(t *testing.T) {
	ln := listenT(t, quick)
	raw := newRawPeer(t)
	raw.hello(ln.Addr(), 1)
	s := acceptT(t, ln)
	start := time.Now()
	r := await(t, readAsync(s), waitTimeout)
	if !errors.Is(r.err, ErrIdleTimeout) {
		t.Fatalf("ReadFrame of a silent peer: %q, %v; want ErrIdleTimeout", r.p, r.err)
	}
	if took := time.Since(start); took < quick.IdleTimeout*2/3 {
		t.Errorf("idle timeout after %v, before IdleTimeout %v", took, quick.IdleTimeout)
	}
	if err := s.WriteFrame([]byte("x")); !errors.Is(err, ErrIdleTimeout) {
		t.Errorf("WriteFrame after the idle timeout: %v, want ErrIdleTimeout", err)
	}
	// The server kept the raw peer alive with KEEPALIVEs, then said BYE.
	if _, _, ok := raw.recvKind(kindKeepalive, waitTimeout); !ok {
		t.Error("no KEEPALIVE from the server")
	}
	if _, _, ok := raw.recvKind(kindBye, waitTimeout); !ok {
		t.Error("no BYE from the server after the idle timeout")
	}
	// The address is free again: DATA is now unvalidated, a new HELLO is a
	// new Conn.
	raw.send(ln.Addr(), []byte{byte(kindData), 'x'})
	eventually(t, "DATA after the idle timeout counted as from an unvalidated address", func() bool {
		return ln.Stats().UnvalidatedDrops == 1
	})
	raw.hello(ln.Addr(), 2)
	if s2 := acceptT(t, ln); s2 == s {
		t.Fatal("Accept returned the timed-out Conn again")
	}
}

func TestClientIdleTimeout(t *testing.T) {
	srv, client, _ := fakeServer(t, quick)
	start := time.Now()
	r := await(t, readAsync(client), waitTimeout)
	if !errors.Is(r.err, ErrIdleTimeout) {
		t.Fatalf("ReadFrame from a silent server: %q, %v; want ErrIdleTimeout", r.p, r.err)
	}
	if took := time.Since(start); took < quick.IdleTimeout*2/3 {
		t.Errorf("idle timeout after %v, before IdleTimeout %v", took, quick.IdleTimeout)
	}
	if _, _, ok := srv.recvKind(kindKeepalive, waitTimeout); !ok {
		t.Error("no KEEPALIVE from the client")
	}
	if _, _, ok := srv.recvKind(kindBye, waitTimeout); !ok {
		t.Error("no BYE from the client after the idle timeout")
	}
	if r := await(t, readAsync(client), waitTimeout); !errors.Is(r.err, ErrIdleTimeout) {
		t.Errorf("second ReadFrame: %v, want ErrIdleTimeout again", r.err)
	}
}

// TestClientIdleNeedsAReader checks that a client that is busy elsewhere
// does not mistake unread datagrams for silence.
func TestClientIdleNeedsAReader(t *testing.T) {
	srv, client, clientAddr := fakeServer(t, quick)
	time.Sleep(quick.IdleTimeout / 2)
	srv.send(clientAddr, []byte{byte(kindData), 'l', 'a', 't', 'e'})
	time.Sleep(2 * quick.IdleTimeout) // the client reads nothing meanwhile
	if r := await(t, readAsync(client), waitTimeout); r.err != nil || string(r.p) != "late" {
		t.Fatalf("ReadFrame after a pause: %q, %v; want the frame sent during the pause", r.p, r.err)
	}
	if r := await(t, readAsync(client), waitTimeout); !errors.Is(r.err, ErrIdleTimeout) {
		t.Fatalf("ReadFrame with nothing left: %v, want ErrIdleTimeout", r.err)
	}
}

// TestKeepaliveKeepsSessionAlive idles a real pair for several idle
// timeouts: the keepalives must hold it up.
func TestKeepaliveKeepsSessionAlive(t *testing.T) {
	_, client, server := pairT(t, quick)
	cr, sr := readAsync(client), readAsync(server)
	time.Sleep(4 * quick.IdleTimeout)
	for i, ch := range []<-chan readResult{cr, sr} {
		select {
		case r := <-ch:
			t.Fatalf("%s ReadFrame returned during an idle pause with keepalives: %q, %v", [...]string{"client", "server"}[i], r.p, r.err)
		default:
		}
	}
	if err := client.WriteFrame([]byte("c")); err != nil {
		t.Fatal(err)
	}
	if err := server.WriteFrame([]byte("s")); err != nil {
		t.Fatal(err)
	}
	if r := await(t, sr, waitTimeout); r.err != nil || string(r.p) != "c" {
		t.Errorf("server read %q, %v after the pause", r.p, r.err)
	}
	if r := await(t, cr, waitTimeout); r.err != nil || string(r.p) != "s" {
		t.Errorf("client read %q, %v after the pause", r.p, r.err)
	}
}

func TestPeerCloseReadsEOF(t *testing.T) {
	for _, clientCloses := range []bool{true, false} {
		t.Run(fmt.Sprintf("client-closes=%v", clientCloses), func(t *testing.T) {
			_, client, server := pairT(t, Options{})
			closer, other := server, client
			if clientCloses {
				closer, other = client, server
			}
			for i := range 3 {
				if err := closer.WriteFrame([]byte{byte(i)}); err != nil {
					t.Fatal(err)
				}
			}
			if err := closer.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			for i := range 3 {
				if got := readT(t, other); !bytes.Equal(got, []byte{byte(i)}) {
					t.Fatalf("frame %d: % x", i, got)
				}
			}
			if r := await(t, readAsync(other), time.Second); r.err != io.EOF {
				t.Fatalf("ReadFrame after the peer's BYE: %q, %v; want io.EOF", r.p, r.err)
			}
			if r := await(t, readAsync(other), time.Second); r.err != io.EOF {
				t.Fatalf("second ReadFrame after BYE: %v, want io.EOF", r.err)
			}
			if err := other.WriteFrame([]byte("x")); !errors.Is(err, ErrPeerClosed) {
				t.Fatalf("WriteFrame after the peer's BYE: %v, want ErrPeerClosed", err)
			}
		})
	}
}

func TestCloseUnblocksAndIsIdempotent(t *testing.T) {
	for _, closeClient := range []bool{true, false} {
		t.Run(fmt.Sprintf("client=%v", closeClient), func(t *testing.T) {
			_, client, server := pairT(t, Options{})
			c := server
			if closeClient {
				c = client
			}
			ch := readAsync(c)
			time.Sleep(20 * time.Millisecond)
			if err := c.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			if r := await(t, ch, time.Second); !errors.Is(r.err, net.ErrClosed) {
				t.Fatalf("blocked ReadFrame after Close: %v, want net.ErrClosed", r.err)
			}
			if _, err := c.ReadFrame(); !errors.Is(err, net.ErrClosed) {
				t.Errorf("ReadFrame after Close: %v, want net.ErrClosed", err)
			}
			if err := c.WriteFrame([]byte("x")); !errors.Is(err, net.ErrClosed) {
				t.Errorf("WriteFrame after Close: %v, want net.ErrClosed", err)
			}
			if err := c.Close(); err != nil {
				t.Errorf("second Close: %v", err)
			}
		})
	}
}

func TestListenerClose(t *testing.T) {
	t.Run("unblocks Accept", func(t *testing.T) {
		ln := listenT(t, Options{})
		errc := make(chan error, 1)
		go func() { _, err := ln.Accept(context.Background()); errc <- err }()
		time.Sleep(20 * time.Millisecond)
		if err := ln.Close(); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-errc:
			if !errors.Is(err, net.ErrClosed) {
				t.Fatalf("Accept after Close: %v, want net.ErrClosed", err)
			}
		case <-time.After(waitTimeout):
			t.Fatal("Accept still blocked after Close")
		}
		if err := ln.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
	})
	t.Run("honours ctx", func(t *testing.T) {
		ln := listenT(t, Options{})
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
		defer cancel()
		if _, err := ln.Accept(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Accept with an expiring ctx: %v", err)
		}
	})
	t.Run("closes Conns not yet accepted", func(t *testing.T) {
		ln := listenT(t, Options{})
		client := dialT(t, Options{}, ln.Addr())
		ln.Close()
		if r := await(t, readAsync(client), waitTimeout); r.err != io.EOF {
			t.Fatalf("client of a never-accepted Conn read %v, want io.EOF", r.err)
		}
	})
	t.Run("socket outlives it until the last Conn closes", func(t *testing.T) {
		ln, client, server := pairT(t, Options{})
		ln.Close()
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		// A new client is told BYE, which Dial reports as refused.
		if _, err := New(Options{}).Dial(ctx, ln.Addr().String()); !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("Dial to a closed Listener whose socket is still open: %v, want ECONNREFUSED", err)
		}
		// The accepted session still works.
		if err := client.WriteFrame([]byte("still here")); err != nil {
			t.Fatal(err)
		}
		if got := readT(t, server); string(got) != "still here" {
			t.Fatalf("read %q", got)
		}
		server.Close()
		// Now the socket is closed: the kernel refuses.
		if _, err := New(Options{}).Dial(ctx, ln.Addr().String()); !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("Dial after the last Conn closed: %v, want ECONNREFUSED", err)
		}
	})
}

func TestDialFailures(t *testing.T) {
	closedPort := func(t *testing.T) string {
		r := newRawPeer(t)
		addr := r.sock.LocalAddr().String()
		r.sock.Close()
		return addr
	}
	silent := func(t *testing.T) string { return newRawPeer(t).sock.LocalAddr().String() }
	tests := []struct {
		name    string
		addr    func(*testing.T) string
		timeout time.Duration // 0: an already cancelled ctx
		want    error
		maxTook time.Duration
	}{
		{"nothing listens", closedPort, waitTimeout, syscall.ECONNREFUSED, time.Second},
		{"server never answers", silent, 300 * time.Millisecond, context.DeadlineExceeded, 2 * time.Second},
		{"cancelled ctx", silent, 0, context.Canceled, time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			addr := tc.addr(t)
			ctx, cancel := context.WithCancel(context.Background())
			if tc.timeout > 0 {
				ctx, cancel = context.WithTimeout(context.Background(), tc.timeout)
			} else {
				cancel()
			}
			defer cancel()
			start := time.Now()
			c, err := New(Options{}).Dial(ctx, addr)
			took := time.Since(start)
			if err == nil {
				c.Close()
				t.Fatal("Dial succeeded")
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("Dial: %v, want %v", err, tc.want)
			}
			if took > tc.maxTook {
				t.Errorf("Dial took %v, want under %v", took, tc.maxTook)
			}
		})
	}
}

// TestDialRetriesHello checks that Dial resends HELLO every HelloInterval
// and that a late HELLO-ACK still completes it.
func TestDialRetriesHello(t *testing.T) {
	srv := newRawPeer(t)
	type dialed struct {
		c   *Conn
		err error
	}
	done := make(chan dialed, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		c, err := New(Options{HelloInterval: 20 * time.Millisecond}).Dial(ctx, srv.sock.LocalAddr().String())
		cc, _ := c.(*Conn)
		done <- dialed{cc, err}
	}()
	var nonce uint64
	for i := range 3 { // ignore two HELLOs, answer the third
		body, from, ok := srv.recvKind(kindHello, waitTimeout)
		if !ok {
			t.Fatalf("HELLO %d did not come", i+1)
		}
		if i > 0 && nonceOf(body) != nonce {
			t.Fatalf("resent HELLO changed its nonce")
		}
		nonce = nonceOf(body)
		if i == 2 {
			ack := helloDatagram(kindHelloAck, nonce^1) // a stale ACK is ignored
			srv.sock.WriteToUDPAddrPort(ack[:], from)
			ack = helloDatagram(kindHelloAck, nonce)
			srv.sock.WriteToUDPAddrPort(ack[:], from)
		}
	}
	select {
	case d := <-done:
		if d.err != nil {
			t.Fatalf("Dial: %v", d.err)
		}
		d.c.Close()
	case <-time.After(waitTimeout):
		t.Fatal("Dial did not complete after the HELLO-ACK")
	}
}

func TestDropsCounted(t *testing.T) {
	ln := listenT(t, Options{})
	raw := newRawPeer(t)
	raw.send(ln.Addr(), []byte{byte(kindData), 1, 2, 3}) // no HELLO yet
	raw.send(ln.Addr(), keepaliveDatagram)
	raw.send(ln.Addr(), byeDatagram)
	eventually(t, "DATA, KEEPALIVE and BYE from an unvalidated address counted", func() bool { return ln.Stats().UnvalidatedDrops == 3 })
	for _, d := range [][]byte{{}, {0}, {9, 9}, {byte(kindBye), 0}, append([]byte{byte(kindData)}, make([]byte, MaxFrameBytes+1)...)} {
		raw.send(ln.Addr(), d)
	}
	eventually(t, "malformed datagrams counted", func() bool { return ln.Stats().MalformedDrops == 5 })
	raw.hello(ln.Addr(), 7)
	s := acceptT(t, ln)
	raw.send(ln.Addr(), []byte{byte(kindHelloAck), 0, 0, 0, 0, 0, 0, 0, 7}) // a client never sends HELLO-ACK
	raw.send(ln.Addr(), []byte{byte(kindData), 'o', 'k'})
	if got := readT(t, s); string(got) != "ok" {
		t.Fatalf("read %q, want ok", got)
	}
	if got := s.Stats().MalformedDrops; got != 1 {
		t.Errorf("Conn MalformedDrops = %d, want 1", got)
	}
	st := ln.Stats()
	if st.UnvalidatedDrops != 3 || ln.UnvalidatedDrops() != 3 || st.UnknownPeerDrops != 0 || st.MalformedDrops != 6 || st.Dropped() != 9 || ln.Dropped() != 9 {
		t.Errorf("Listener stats %+v, Dropped %d; want 3 unvalidated, 0 unknown, 6 malformed, 9 dropped", st, ln.Dropped())
	}
}

func TestQueueFullDrops(t *testing.T) {
	const queue, sent = 8, 100
	opts := Options{QueueFrames: queue}
	ln, client, server := pairT(t, opts)
	for i := range sent {
		if err := client.WriteFrame([]byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "overflowing frames counted", func() bool { return server.Stats().QueueFullDrops == sent-queue })
	for i := range queue {
		if got := readT(t, server); !bytes.Equal(got, []byte{byte(i)}) {
			t.Fatalf("queued frame %d: % x", i, got)
		}
	}
	if d, ld := server.Dropped(), ln.Stats().QueueFullDrops; d != sent-queue || ld != sent-queue {
		t.Errorf("Conn.Dropped = %d, Listener QueueFullDrops = %d; want %d", d, ld, sent-queue)
	}
	// The queue drains and fills again.
	if err := client.WriteFrame([]byte("again")); err != nil {
		t.Fatal(err)
	}
	if got := readT(t, server); string(got) != "again" {
		t.Fatalf("read %q after draining", got)
	}
}

// TestSameAddressNewSession: a HELLO with a new nonce from a known address
// ends the old session (io.EOF) and starts a new one; a resent HELLO with
// the current nonce is only acknowledged again.
func TestSameAddressNewSession(t *testing.T) {
	ln := listenT(t, Options{})
	raw := newRawPeer(t)
	raw.hello(ln.Addr(), 1)
	s1 := acceptT(t, ln)
	raw.hello(ln.Addr(), 1) // a resend
	raw.hello(ln.Addr(), 2)
	s2 := acceptT(t, ln)
	if r := await(t, readAsync(s1), waitTimeout); r.err != io.EOF {
		t.Fatalf("old session read %v, want io.EOF", r.err)
	}
	raw.send(ln.Addr(), []byte{byte(kindData), 'n'})
	if got := readT(t, s2); string(got) != "n" {
		t.Fatalf("new session read %q", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if c, err := ln.Accept(ctx); err == nil {
		c.Close()
		t.Fatal("the resent HELLO created a third Conn")
	}
}

func TestAcceptBacklog(t *testing.T) {
	ln := listenT(t, Options{AcceptBacklog: 1})
	first, second := newRawPeer(t), newRawPeer(t)
	first.hello(ln.Addr(), 1)
	hello := second.cookieHello(ln.Addr(), 2)
	second.send(ln.Addr(), hello[:])
	eventually(t, "HELLO over the backlog counted", func() bool { return ln.Stats().BacklogDrops == 1 })
	if _, _, ok := second.recvKind(kindHelloAck, 50*time.Millisecond); ok {
		t.Fatal("a HELLO over the backlog was acknowledged")
	}
	if s := acceptT(t, ln); s.RemoteAddr().String() != first.sock.LocalAddr().String() {
		t.Fatalf("accepted %v, want the first peer", s.RemoteAddr())
	}
	second.hello(ln.Addr(), 2) // the retry now fits
	if s := acceptT(t, ln); s.RemoteAddr().String() != second.sock.LocalAddr().String() {
		t.Fatalf("accepted %v, want the second peer", s.RemoteAddr())
	}
}

// TestDialTakesDataAsAck: a DATA datagram that overtakes a lost HELLO-ACK
// proves that the server took the session; Dial completes and the frame is
// the first one read.
func TestDialTakesDataAsAck(t *testing.T) {
	srv := newRawPeer(t)
	type dialed struct {
		c   *Conn
		err error
	}
	done := make(chan dialed, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		c, err := New(Options{}).Dial(ctx, srv.sock.LocalAddr().String())
		cc, _ := c.(*Conn)
		done <- dialed{cc, err}
	}()
	if _, from, ok := srv.recvKind(kindHello, waitTimeout); ok {
		srv.sock.WriteToUDPAddrPort([]byte{byte(kindData), 'f', 'i', 'r', 's', 't'}, from)
	}
	var d dialed
	select {
	case d = <-done:
	case <-time.After(waitTimeout):
		t.Fatal("Dial did not complete after DATA")
	}
	if d.err != nil {
		t.Fatalf("Dial: %v", d.err)
	}
	defer d.c.Close()
	if got := readT(t, d.c); string(got) != "first" {
		t.Fatalf("first ReadFrame: %q, want the DATA that completed Dial", got)
	}
}

// TestIPv6Loopback runs a session over ::1, where the Listener's socket
// and the peer addresses are IPv6.
func TestIPv6Loopback(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	ln, err := New(Options{}).Listen(ctx, "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	defer ln.Close()
	client := dialT(t, Options{}, ln.Addr())
	server := acceptT(t, ln.(*Listener))
	if err := client.WriteFrame([]byte("v6")); err != nil {
		t.Fatal(err)
	}
	if got := readT(t, server); string(got) != "v6" {
		t.Fatalf("server read %q", got)
	}
	if err := server.WriteFrame([]byte("back")); err != nil {
		t.Fatal(err)
	}
	if got := readT(t, client); string(got) != "back" {
		t.Fatalf("client read %q", got)
	}
}

// TestClientOutlivesRefused: when the server's socket vanishes without
// BYE, the client's datagrams draw ICMP port unreachable, which its socket
// (connected at the kernel level) reports as ECONNREFUSED. The client
// counts them and keeps the session until the idle timeout, which then
// ends it: a forged ICMP message or a server that restarts does not end a
// session, a server that is gone does.
func TestClientOutlivesRefused(t *testing.T) {
	if !connectable {
		t.Skip("no socket connected at the kernel level: no ICMP error is reported")
	}
	opts := Options{KeepaliveInterval: 20 * time.Millisecond, IdleTimeout: 600 * time.Millisecond}
	srv, client, _ := fakeServer(t, opts)
	start := time.Now()
	ch := readAsync(client)
	srv.sock.Close()
	if err := client.WriteFrame([]byte("x")); err != nil {
		t.Fatalf("WriteFrame after the server's socket closed: %v, want nil", err)
	}
	eventually(t, "ECONNREFUSED counted", func() bool { return client.Stats().RefusedErrors >= 2 })
	refused := client.Stats().RefusedErrors
	if err := client.WriteFrame([]byte("y")); err != nil {
		t.Fatalf("WriteFrame after %d ECONNREFUSED: %v, want nil", refused, err)
	}
	// The pending ReadFrame returns only at the idle timeout (a ReadFrame
	// that the ECONNREFUSED ended would return at once, with it).
	r := await(t, ch, waitTimeout)
	took := time.Since(start)
	t.Logf("%d ECONNREFUSED (%d seen while the session was open) in %v before the idle timeout", client.Stats().RefusedErrors, refused, took)
	if !errors.Is(r.err, ErrIdleTimeout) {
		t.Fatalf("ReadFrame after the server's socket closed: %q, %v; want ErrIdleTimeout", r.p, r.err)
	}
	if took < opts.IdleTimeout {
		t.Errorf("ReadFrame returned after %v, before IdleTimeout %v", took, opts.IdleTimeout)
	}
	if client.Stats().Dropped() != 0 {
		t.Errorf("client stats %+v: refused errors counted as dropped datagrams", client.Stats())
	}
	if err := client.WriteFrame([]byte("z")); !errors.Is(err, ErrIdleTimeout) {
		t.Fatalf("WriteFrame after the idle timeout: %v, want ErrIdleTimeout", err)
	}
}

// TestRefusedWriteResends: a write that the kernel refuses with the
// ECONNREFUSED an earlier datagram drew sent nothing; WriteFrame sends the
// frame again, so the frame after a server's restart on the same port is
// not lost.
func TestRefusedWriteResends(t *testing.T) {
	if !connectable {
		t.Skip("no socket connected at the kernel level: no ICMP error is reported")
	}
	opts := Options{KeepaliveInterval: time.Hour, IdleTimeout: 2 * time.Hour}
	srv, client, _ := fakeServer(t, opts)
	addr := srv.sock.LocalAddr().(*net.UDPAddr)
	srv.sock.Close()
	if err := client.WriteFrame([]byte("lost")); err != nil { // draws the port unreachable
		t.Fatal(err)
	}
	sock, err := net.ListenUDP("udp", addr) // the server restarts on its port
	if err != nil {
		t.Skipf("cannot bind %v again: %v", addr, err)
	}
	srv.sock = sock
	t.Cleanup(func() { sock.Close() })
	if err := client.WriteFrame([]byte("after")); err != nil {
		t.Fatalf("WriteFrame after a refused one: %v, want nil", err)
	}
	body, _, ok := srv.recvKind(kindData, waitTimeout)
	if !ok || string(body) != "after" {
		t.Fatalf("restarted server got %q (ok %v), want the frame after the refused one", body, ok)
	}
	t.Logf("RefusedErrors = %d (1 when the ICMP error was reported to that write)", client.Stats().RefusedErrors)
}
