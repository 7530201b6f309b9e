package udp

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/evbench/evbench/transports"
)

// seqOf reads the sequence number at the start of a test frame.
func seqOf(p []byte) uint64 { return binary.BigEndian.Uint64(p) }

func TestNewWithConfig(t *testing.T) {
	tests := []struct {
		name    string
		cfg     transports.Config
		opts    Options
		wantErr bool
	}{
		{"zero", transports.Config{}, Options{}, false},
		{"buffers in cfg", transports.Config{ReadBufferBytes: 1 << 20, WriteBufferBytes: 1 << 20}, Options{}, false},
		{"negative read buffer in cfg", transports.Config{ReadBufferBytes: -1}, Options{}, true},
		{"negative write buffer in cfg", transports.Config{WriteBufferBytes: -1}, Options{}, true},
		{"server TLS without a certificate", transports.Config{ServerTLS: new(tls.Config)}, Options{}, true},
		{"invalid options", transports.Config{}, Options{IdleTimeout: time.Millisecond}, true},
		{"negative buffer in options", transports.Config{ReadBufferBytes: 1 << 20}, Options{ReadBufferBytes: -1}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr, err := NewWithConfig(tc.cfg, tc.opts)
			if (err != nil) != tc.wantErr {
				t.Fatalf("NewWithConfig error = %v, want error: %v", err, tc.wantErr)
			}
			if err == nil && (tr.Name() != Name || tr.Caps() != New(Options{}).Caps()) {
				t.Fatalf("NewWithConfig built %q with %+v", tr.Name(), tr.Caps())
			}
			if tc.opts == (Options{}) {
				if _, ferr := NewFromConfig(tc.cfg); (ferr != nil) != tc.wantErr {
					t.Fatalf("NewFromConfig error = %v, want error: %v", ferr, tc.wantErr)
				}
			}
		})
	}
}

func TestBufferPrecedence(t *testing.T) {
	tests := []struct {
		name                string
		cfg                 transports.Config
		opts                Options
		wantRead, wantWrite int
	}{
		{"defaults", transports.Config{}, Options{}, DefaultSocketBufferBytes, DefaultSocketBufferBytes},
		{"cfg replaces the default", transports.Config{ReadBufferBytes: 1000, WriteBufferBytes: 2000}, Options{}, 1000, 2000},
		{"options win over cfg", transports.Config{ReadBufferBytes: 1000, WriteBufferBytes: 2000}, Options{ReadBufferBytes: 3000}, 3000, 2000},
		{"each size on its own", transports.Config{WriteBufferBytes: 2000}, Options{ReadBufferBytes: 3000}, 3000, 2000},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o, err := newT(t, tc.cfg, tc.opts).options()
			if err != nil {
				t.Fatal(err)
			}
			if o.ReadBufferBytes != tc.wantRead || o.WriteBufferBytes != tc.wantWrite {
				t.Fatalf("buffers %d/%d, want %d/%d", o.ReadBufferBytes, o.WriteBufferBytes, tc.wantRead, tc.wantWrite)
			}
		})
	}
}

func TestResolveServer(t *testing.T) {
	tests := []struct {
		addr    string
		want    string
		wantErr bool
	}{
		{"127.0.0.1:9", "127.0.0.1:9", false},
		{"[::1]:9", "[::1]:9", false},
		{"[::ffff:127.0.0.1]:9", "127.0.0.1:9", false},
		{":9", "127.0.0.1:9", false},
		{"0.0.0.0:9", "127.0.0.1:9", false},
		{"[::]:9", "[::1]:9", false},
		{"127.0.0.1", "", true},
		{"127.0.0.1:65536", "", true},
	}
	for _, tc := range tests {
		t.Run(tc.addr, func(t *testing.T) {
			got, err := resolveServer(context.Background(), tc.addr)
			if (err != nil) != tc.wantErr {
				t.Fatalf("resolveServer(%q) = %v, %v; want error: %v", tc.addr, got, err, tc.wantErr)
			}
			if err == nil && got.String() != tc.want {
				t.Fatalf("resolveServer(%q) = %v, want %s", tc.addr, got, tc.want)
			}
		})
	}
}

// TestLocalFor checks the address a client binds; only its loopback rows
// ever reach a socket.
func TestLocalFor(t *testing.T) {
	tests := []struct{ server, want string }{
		{"127.0.0.1:9", "127.0.0.1:0"},
		{"127.1.2.3:9", "127.0.0.1:0"},
		{"[::1]:9", "[::1]:0"},
		{"192.0.2.1:9", ":0"},
		{"[2001:db8::1]:9", ":0"},
	}
	for _, tc := range tests {
		if got := localFor(netip.MustParseAddrPort(tc.server)); got != tc.want {
			t.Errorf("localFor(%s) = %q, want %q", tc.server, got, tc.want)
		}
	}
}

// TestOpenPacketAddrs checks what Listen and Dial ask Config.ListenPacket
// for, and that the sockets it returns are the ones used.
func TestOpenPacketAddrs(t *testing.T) {
	tests := []struct {
		name, listen, wantLocal string
	}{
		{"IPv4", "127.0.0.1:0", "127.0.0.1:0"},
		{"IPv6", "[::1]:0", "[::1]:0"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var asked []string
			var opened []net.PacketConn
			cfg := transports.Config{ListenPacket: func(ctx context.Context, network, addr string) (net.PacketConn, error) {
				if network != "udp" {
					t.Errorf("ListenPacket network %q, want udp", network)
				}
				pc, err := openLoopback(ctx, network, addr)
				if err == nil {
					asked, opened = append(asked, addr), append(opened, pc)
				}
				return pc, err
			}}
			tr := newT(t, cfg, Options{})
			ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
			defer cancel()
			ln, err := tr.Listen(ctx, tc.listen)
			if err != nil {
				t.Skipf("no %s loopback: %v", tc.name, err)
			}
			defer ln.Close()
			client := dialWith(t, tr, ln.Addr())
			server := acceptT(t, ln.(*Listener))
			if len(asked) != 2 || asked[0] != tc.listen || asked[1] != tc.wantLocal {
				t.Fatalf("ListenPacket asked for %q, want [%s %s]", asked, tc.listen, tc.wantLocal)
			}
			if ln.Addr().String() != opened[0].LocalAddr().String() || client.LocalAddr().String() != opened[1].LocalAddr().String() {
				t.Errorf("Listener on %v, client on %v; sockets opened on %v, %v", ln.Addr(), client.LocalAddr(), opened[0].LocalAddr(), opened[1].LocalAddr())
			}
			if server.RemoteAddr().String() != client.LocalAddr().String() {
				t.Errorf("server sees the client at %v, client says %v", server.RemoteAddr(), client.LocalAddr())
			}
			if err := client.WriteFrame([]byte("hi")); err != nil {
				t.Fatal(err)
			}
			if got := readT(t, server); string(got) != "hi" {
				t.Fatalf("server read %q", got)
			}
		})
	}
}

// TestSocketPaths runs a round trip in both directions over every mix of
// kernel sockets and wrapped ones, and checks what each socket reports.
func TestSocketPaths(t *testing.T) {
	kernel := New(Options{})
	wrapped := newT(t, plainConfig, Options{})
	tests := []struct {
		name                 string
		srv, cli             transports.Transport
		srvKernel, cliKernel bool
	}{
		{"kernel both", kernel, kernel, true, true},
		{"wrapped server", wrapped, kernel, false, true},
		{"wrapped client", kernel, wrapped, true, false},
		{"wrapped both", wrapped, wrapped, false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ln, client, server := pairWith(t, tc.srv, tc.cli)
			if (ln.sock.uc != nil) != tc.srvKernel || (client.sock.uc != nil) != tc.cliKernel {
				t.Fatalf("server socket upgraded: %v, client: %v; want %v, %v", ln.sock.uc != nil, client.sock.uc != nil, tc.srvKernel, tc.cliKernel)
			}
			if client.sock.connected != (tc.cliKernel && connectable) {
				t.Errorf("client socket connected: %v", client.sock.connected)
			}
			for i := range 3 {
				p := []byte{byte(i), 'c'}
				if err := client.WriteFrame(p); err != nil {
					t.Fatal(err)
				}
				if got := readT(t, server); !bytes.Equal(got, p) {
					t.Fatalf("server read % x, want % x", got, p)
				}
				p[1] = 's'
				if err := server.WriteFrame(p); err != nil {
					t.Fatal(err)
				}
				if got := readT(t, client); !bytes.Equal(got, p) {
					t.Fatalf("client read % x, want % x", got, p)
				}
			}
			if server.RemoteAddr().String() != client.LocalAddr().String() || client.RemoteAddr().String() != ln.Addr().String() {
				t.Errorf("server sees %v, client is %v; client dialed %v, Listener is %v", server.RemoteAddr(), client.LocalAddr(), client.RemoteAddr(), ln.Addr())
			}
			for _, s := range []struct {
				name   string
				st     Stats
				kernel bool
			}{{"listener", ln.Stats(), tc.srvKernel}, {"server", server.Stats(), tc.srvKernel}, {"client", client.Stats(), tc.cliKernel}} {
				if s.st.Dropped() != 0 || s.st.KernelDrops != 0 {
					t.Errorf("%s dropped %d, kernel drops %d; want none", s.name, s.st.Dropped(), s.st.KernelDrops)
				}
				req := 0
				if s.kernel {
					req = DefaultSocketBufferBytes
				}
				if s.st.ReadBufferRequestedBytes != req || s.st.WriteBufferRequestedBytes != req {
					t.Errorf("%s requested buffers of %d/%d bytes, want %d", s.name, s.st.ReadBufferRequestedBytes, s.st.WriteBufferRequestedBytes, req)
				}
				if !s.kernel && (s.st.ReadBufferGrantedBytes != 0 || s.st.WriteBufferGrantedBytes != 0) {
					t.Errorf("%s reports granted buffers %d/%d of a socket it cannot see", s.name, s.st.ReadBufferGrantedBytes, s.st.WriteBufferGrantedBytes)
				}
			}
		})
	}
}

// TestDropEveryTenthWrite puts a wrapper that drops every 10th datagram it
// is asked to send under one end: the other end receives exactly the DATA
// frames the wrapper did not drop, and neither end counts a loss of its
// own. The writer sends a window of frames, then waits until every frame
// of it that was not dropped has arrived, so that no socket buffer
// overflows and the outcome is exact.
func TestDropEveryTenthWrite(t *testing.T) {
	const frames, window, every = 400, 10, 10
	tests := []struct {
		name       string
		wrapServer bool // the server's socket is wrapped and the server sends; else the client's
	}{
		{"server sends", true},
		{"client sends", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var last atomic.Pointer[dropper]
			lossy, kernel := newT(t, dropperConfig(every, &last), Options{}), New(Options{})
			srv, cli := transports.Transport(lossy), kernel
			if !tc.wrapServer {
				srv, cli = kernel, lossy
			}
			ln, client, server := pairWith(t, srv, cli)
			d := last.Load()
			w, r := server, client
			if !tc.wrapServer {
				w, r = client, server
			}
			got := make(chan readResult, frames+1)
			go func() {
				for {
					p, err := r.ReadFrame()
					got <- readResult{bytes.Clone(p), err}
					if err != nil {
						return
					}
				}
			}()
			received := make(map[uint64]bool, frames)
			frame := make([]byte, 100)
			for start := uint64(0); start < frames; start += window {
				for seq := start; seq < start+window; seq++ {
					binary.BigEndian.PutUint64(frame, seq)
					if err := w.WriteFrame(frame); err != nil {
						t.Fatal(err)
					}
				}
				dropped, _ := d.droppedData(0)
				for want := int(start+window) - dropped; len(received) < want; {
					select {
					case res := <-got:
						if res.err != nil || len(res.p) != len(frame) {
							t.Fatalf("ReadFrame: %d bytes, %v", len(res.p), res.err)
						}
						seq := seqOf(res.p)
						if _, was := d.droppedData(seq); was || received[seq] || seq >= start+window {
							t.Fatalf("received frame %d: dropped %v, received before %v, sent %d", seq, was, received[seq], start+window)
						}
						received[seq] = true
					case <-time.After(waitTimeout):
						t.Fatalf("after %d frames sent, %d DATA dropped: %d received", start+window, dropped, len(received))
					}
				}
			}
			dropped, _ := d.droppedData(0)
			d.mu.Lock()
			writes, byKind := d.writes, d.dropped
			total := 0
			for _, n := range byKind {
				total += n
			}
			d.mu.Unlock()
			t.Logf("%d frames sent, %d writes, %d datagrams dropped (%v), %d frames received", frames, writes, total, byKind, len(received))
			if dropped < frames/every-2 || len(received) != frames-dropped || total != writes/every || byKind[kindData] != dropped {
				t.Fatalf("%d DATA dropped of %d datagrams dropped in %d writes, %d received; want about %d DATA dropped and the rest received",
					dropped, total, writes, len(received), frames/every)
			}
			for _, s := range []struct {
				name string
				st   Stats
			}{{"listener", ln.Stats()}, {"server", server.Stats()}, {"client", client.Stats()}} {
				if s.st.Dropped() != 0 || s.st.KernelDrops != 0 {
					t.Errorf("%s stats %+v: the wrapper's drops counted as the transport's", s.name, s.st)
				}
			}
		})
	}
}

// TestClientIgnoresOtherSources: a datagram from another address than the
// server never reaches a client's reader. On a kernel socket connect(2)
// filters it; on a wrapped one the client drops and counts it.
func TestClientIgnoresOtherSources(t *testing.T) {
	tests := []struct {
		name        string
		tr          transports.Transport
		wantCounted uint64
	}{
		{"kernel socket", New(Options{}), 0},
		{"wrapped socket", newT(t, plainConfig, Options{}), 1},
	}
	if !connectable {
		tests[0].wantCounted = 1
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv, client, clientAddr := fakeServerWith(t, tc.tr)
			pending := readAsync(client)
			intruder := newRawPeer(t)
			intruder.send(clientAddr, []byte{byte(kindData), 'x'})
			intruder.send(clientAddr, []byte{byte(kindBye)})
			if tc.wantCounted > 0 {
				eventually(t, "the intruder's datagrams counted", func() bool { return client.Stats().UnknownPeerDrops == 2*tc.wantCounted })
			}
			srv.send(clientAddr, []byte{byte(kindData), 'o', 'n', 'e'})
			if r := await(t, pending, waitTimeout); r.err != nil || string(r.p) != "one" {
				t.Fatalf("client read %q, %v; want \"one\" from the server", r.p, r.err)
			}
			srv.send(clientAddr, []byte{byte(kindData), 't', 'w', 'o'})
			if got := readT(t, client); string(got) != "two" {
				t.Fatalf("client read %q, want \"two\" from the server", got)
			}
			if got := client.Stats().UnknownPeerDrops; got != 2*tc.wantCounted {
				t.Fatalf("UnknownPeerDrops = %d, want %d", got, 2*tc.wantCounted)
			}
		})
	}
}

// TestWrappedListenerCloses: a wrapper whose reads fail after Close with
// an error that wraps neither net.ErrClosed nor a timeout still lets
// Listener.Close and Conn.Close end their goroutines (TestMain checks for
// leaks).
func TestWrappedListenerCloses(t *testing.T) {
	tr := newT(t, wrapConfig(func(pc net.PacketConn) net.PacketConn { return closeErrConn{pc} }), Options{})
	ln, client, server := pairWith(t, tr, tr)
	if err := client.WriteFrame([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if got := readT(t, server); string(got) != "x" {
		t.Fatalf("server read %q", got)
	}
	ch := readAsync(client)
	for _, c := range []interface{ Close() error }{client, server, ln} {
		done := make(chan error, 1)
		go func() { done <- c.Close() }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("Close: %v", err)
			}
		case <-time.After(waitTimeout):
			t.Fatalf("%T.Close has not returned after %v", c, waitTimeout)
		}
	}
	if r := await(t, ch, waitTimeout); !errors.Is(r.err, net.ErrClosed) {
		t.Fatalf("client ReadFrame after Close: %v, want net.ErrClosed", r.err)
	}
}

// TestDialFailuresByPath: Dial to a port where nothing listens fails
// promptly with ECONNREFUSED over a kernel socket (New, and the registry's
// NewFromConfig) and at ctx's deadline over a wrapped one, which no ICMP
// error reaches; a closed Listener's BYE is ECONNREFUSED on both.
func TestDialFailuresByPath(t *testing.T) {
	registered, err := NewFromConfig(transports.Config{})
	if err != nil {
		t.Fatal(err)
	}
	closedPort := func(t *testing.T) string {
		r := newRawPeer(t)
		addr := r.sock.LocalAddr().String()
		r.sock.Close()
		return addr
	}
	closedListener := func(t *testing.T) string {
		ln, _, _ := pairT(t, Options{}) // the accepted Conn keeps its socket open
		ln.Close()
		return ln.Addr().String()
	}
	const short = 300 * time.Millisecond
	tests := []struct {
		name    string
		tr      transports.Transport
		addr    func(*testing.T) string
		want    error
		minTook time.Duration
		maxTook time.Duration
	}{
		{"New: nothing listens", New(Options{}), closedPort, syscall.ECONNREFUSED, 0, time.Second},
		{"NewFromConfig: nothing listens", registered, closedPort, syscall.ECONNREFUSED, 0, time.Second},
		{"wrapped: nothing listens", newT(t, plainConfig, Options{}), closedPort, context.DeadlineExceeded, short, short + time.Second},
		{"New: closed Listener", New(Options{}), closedListener, syscall.ECONNREFUSED, 0, time.Second},
		{"wrapped: closed Listener", newT(t, plainConfig, Options{}), closedListener, syscall.ECONNREFUSED, 0, time.Second},
	}
	if !connectable {
		tests = tests[2:]
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			addr := tc.addr(t)
			ctx, cancel := context.WithTimeout(context.Background(), short)
			defer cancel()
			if tc.want != context.DeadlineExceeded {
				ctx, cancel = context.WithTimeout(context.Background(), waitTimeout)
				defer cancel()
			}
			start := time.Now()
			c, err := tc.tr.Dial(ctx, addr)
			took := time.Since(start)
			if err == nil {
				c.Close()
				t.Fatal("Dial succeeded")
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("Dial: %v, want %v", err, tc.want)
			}
			if took < tc.minTook || took > tc.maxTook {
				t.Errorf("Dial took %v, want between %v and %v", took, tc.minTook, tc.maxTook)
			}
		})
	}
}
