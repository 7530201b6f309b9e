package quic

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/evbench/evbench/transports"
	"github.com/evbench/evbench/transports/internal/selfsigned"
	"github.com/evbench/evbench/transports/transporttest"
)

// testNet is a transports.Config.ListenPacket for tests: it opens UDP
// sockets on loopback only (it refuses any other address) and hands each out
// wrapped in a lossyConn, which is not a *net.UDPConn, so quic-go uses it
// through its net.PacketConn methods. It remembers the addresses asked for
// and the sockets, in the order they were opened.
type testNet struct {
	dropEvery int64 // each socket drops every dropEvery-th datagram it sends; 0: none

	mu    sync.Mutex
	addrs []string
	conns []*lossyConn
}

func (n *testNet) listenPacket(ctx context.Context, network, addr string) (net.PacketConn, error) {
	host, _, err := net.SplitHostPort(addr)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
		return nil, fmt.Errorf("test network: %q is not a loopback address", addr)
	}
	var lc net.ListenConfig
	pc, err := lc.ListenPacket(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	c := &lossyConn{PacketConn: pc, dropEvery: n.dropEvery}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.addrs = append(n.addrs, addr)
	n.conns = append(n.conns, c)
	return c, nil
}

// config returns a Config whose sockets come from n.
func (n *testNet) config() transports.Config {
	return transports.Config{ListenPacket: n.listenPacket}
}

// opened returns the addresses asked for and the sockets opened so far.
func (n *testNet) opened() ([]string, []*lossyConn) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]string(nil), n.addrs...), append([]*lossyConn(nil), n.conns...)
}

// lossyConn wraps a socket, hiding its type, and drops every dropEvery-th
// datagram it is asked to send, reporting it sent.
type lossyConn struct {
	net.PacketConn
	dropEvery int64

	sent    atomic.Int64 // WriteTo calls
	dropped atomic.Int64
	closes  atomic.Int64
}

func (c *lossyConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	if n := c.sent.Add(1); c.dropEvery > 0 && n%c.dropEvery == 0 {
		c.dropped.Add(1)
		return len(p), nil
	}
	return c.PacketConn.WriteTo(p, addr)
}

func (c *lossyConn) Close() error {
	c.closes.Add(1)
	return c.PacketConn.Close()
}

// build returns the transport newT makes of cfg.
func build(t testing.TB, newT transports.Constructor, cfg transports.Config) transports.Transport {
	t.Helper()
	tr, err := newT(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

var constructors = []struct {
	name string
	newT transports.Constructor
}{
	{NameStream, NewStream},
	{NameDatagram, NewDatagram},
}

// TestNewValidates checks that NewStream and NewDatagram refuse the Configs
// they cannot use and accept the others.
func TestNewValidates(t *testing.T) {
	serverTLS, err := selfsigned.ServerConfig()
	if err != nil {
		t.Fatal(err)
	}
	tls12 := serverTLS.Clone()
	tls12.MaxVersion = tls.VersionTLS12
	tests := []struct {
		name    string
		cfg     transports.Config
		wantErr string
	}{
		{"zero", transports.Config{}, ""},
		{"buffers", transports.Config{ReadBufferBytes: 1 << 20, WriteBufferBytes: 1 << 20}, ""},
		{"server TLS", transports.Config{ServerTLS: serverTLS}, ""},
		{"client TLS", transports.Config{ClientTLS: &tls.Config{InsecureSkipVerify: true}}, ""},
		{"negative ReadBufferBytes", transports.Config{ReadBufferBytes: -1}, "ReadBufferBytes is negative"},
		{"negative WriteBufferBytes", transports.Config{WriteBufferBytes: -1}, "WriteBufferBytes is negative"},
		{"server TLS without a certificate", transports.Config{ServerTLS: &tls.Config{}}, "no certificate"},
		{"server TLS 1.2 at most", transports.Config{ServerTLS: tls12}, "ServerTLS.MaxVersion is TLS 1.2"},
		{"client TLS 1.2 at most", transports.Config{ClientTLS: &tls.Config{MaxVersion: tls.VersionTLS12}}, "ClientTLS.MaxVersion is TLS 1.2"},
	}
	for _, c := range constructors {
		for _, tt := range tests {
			t.Run(c.name+"/"+tt.name, func(t *testing.T) {
				tr, err := c.newT(tt.cfg)
				if tt.wantErr == "" {
					if err != nil {
						t.Fatal(err)
					}
					if tr.Name() != c.name {
						t.Fatalf("Name() = %q, want %q", tr.Name(), c.name)
					}
					return
				}
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.HasPrefix(err.Error(), c.name+": ") {
					t.Fatalf("error = %v, want one starting %q and containing %q", err, c.name+": ", tt.wantErr)
				}
			})
		}
	}
}

// TestConfigSockets checks that the Listener's and each client's socket come
// from Config.ListenPacket, bound to the server's loopback family, and that
// each is closed when what owns it is.
func TestConfigSockets(t *testing.T) {
	for _, c := range constructors {
		for _, fam := range []struct{ listen, local string }{
			{"127.0.0.1:0", "127.0.0.1:0"},
			{"[::1]:0", "[::1]:0"},
		} {
			t.Run(c.name+"/"+fam.listen, func(t *testing.T) {
				ctx := testCtx(t)
				n := &testNet{}
				cfg := n.config()
				cfg.ReadBufferBytes, cfg.WriteBufferBytes = 1<<20, 1<<20 // a wrapper without SetReadBuffer keeps its buffers
				tr := build(t, c.newT, cfg)
				ln, err := tr.Listen(ctx, fam.listen)
				if err != nil {
					if strings.Contains(fam.listen, "::1") {
						t.Skipf("no IPv6 loopback: %v", err)
					}
					t.Fatal(err)
				}
				defer ln.Close()
				client, err := tr.Dial(ctx, ln.Addr().String())
				if err != nil {
					t.Fatal(err)
				}
				defer client.Close()
				server, err := ln.Accept(ctx)
				if err != nil {
					t.Fatal(err)
				}
				defer server.Close()
				addrs, conns := n.opened()
				if want := []string{fam.listen, fam.local}; fmt.Sprint(addrs) != fmt.Sprint(want) {
					t.Fatalf("ListenPacket was asked for %q, want %q", addrs, want)
				}
				if got, want := ln.Addr().String(), conns[0].LocalAddr().String(); got != want {
					t.Errorf("Listener.Addr() = %s, want the socket's %s", got, want)
				}
				if got, want := server.RemoteAddr().String(), conns[1].LocalAddr().String(); got != want {
					t.Errorf("server RemoteAddr() = %s, want the client socket's %s", got, want)
				}
				if err := client.WriteFrame([]byte("x")); err != nil {
					t.Fatal(err)
				}
				if err := transports.Flush(client); err != nil {
					t.Fatal(err)
				}
				if got, err := readWithin(t, server); err != nil || string(got) != "x" {
					t.Fatalf("ReadFrame = %q, %v", got, err)
				}
				for i, pc := range conns {
					if pc.sent.Load() == 0 {
						t.Errorf("socket %d (of %q) sent nothing", i, addrs[i])
					}
				}

				client.Close()
				if conns[1].closes.Load() == 0 {
					t.Error("the client's socket is still open after its Conn's Close")
				}
				ln.Close()
				if conns[0].closes.Load() != 0 {
					t.Error("the Listener's socket was closed while an accepted Conn is open")
				}
				server.Close()
				if conns[0].closes.Load() == 0 {
					t.Error("the Listener's socket is still open after the Listener and its Conn were closed")
				}
			})
		}
	}
}

// TestConfigListenPacketErrors checks that a ListenPacket failure fails
// Listen and Dial, and that a nil socket without an error is refused.
func TestConfigListenPacketErrors(t *testing.T) {
	ctx := testCtx(t)
	errNoSocket := errors.New("no socket today")
	failing := transports.Config{ListenPacket: func(context.Context, string, string) (net.PacketConn, error) {
		return nil, errNoSocket
	}}
	silent := transports.Config{ListenPacket: func(context.Context, string, string) (net.PacketConn, error) {
		return nil, nil
	}}
	good, err := Stream().Listen(ctx, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer good.Close()
	for _, c := range constructors {
		for _, tt := range []struct {
			name string
			cfg  transports.Config
			is   func(error) bool
		}{
			{"error", failing, func(err error) bool { return errors.Is(err, errNoSocket) }},
			{"nil", silent, func(err error) bool {
				return err != nil && strings.Contains(err.Error(), "neither a socket nor an error")
			}},
		} {
			tr := build(t, c.newT, tt.cfg)
			if ln, err := tr.Listen(ctx, "127.0.0.1:0"); !tt.is(err) {
				if err == nil {
					ln.Close()
				}
				t.Errorf("%s/%s: Listen = %v", c.name, tt.name, err)
			}
			if conn, err := tr.Dial(ctx, good.Addr().String()); !tt.is(err) {
				if err == nil {
					conn.Close()
				}
				t.Errorf("%s/%s: Dial = %v", c.name, tt.name, err)
			}
		}
	}
}

// TestConfigTLS checks that both ends take their TLS configuration from the
// Config: a client trusting no certificate fails, one that skips
// verification connects, and the server's own configuration is the one used.
func TestConfigTLS(t *testing.T) {
	ctx := testCtx(t)
	for _, c := range constructors {
		t.Run(c.name, func(t *testing.T) {
			serverTLS, err := selfsigned.ServerConfig()
			if err != nil {
				t.Fatal(err)
			}
			var verified atomic.Int64
			serverTLS.VerifyConnection = func(cs tls.ConnectionState) error {
				verified.Add(1)
				if cs.NegotiatedProtocol != ALPN || cs.Version != tls.VersionTLS13 {
					return fmt.Errorf("ALPN %q, version %s", cs.NegotiatedProtocol, tls.VersionName(cs.Version))
				}
				return nil
			}
			server := build(t, c.newT, transports.Config{ServerTLS: serverTLS})
			ln, err := server.Listen(ctx, "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()

			distrustful := build(t, c.newT, transports.Config{ClientTLS: &tls.Config{RootCAs: x509.NewCertPool()}})
			if conn, err := distrustful.Dial(ctx, ln.Addr().String()); err == nil {
				conn.Close()
				t.Fatal("Dial succeeded with a ClientTLS that trusts no certificate")
			} else if _, ok := errors.AsType[x509.UnknownAuthorityError](err); !ok && !strings.Contains(err.Error(), "certificate") {
				t.Fatalf("Dial with a ClientTLS that trusts no certificate: %v, want a certificate error", err)
			}

			trusting := build(t, c.newT, transports.Config{ClientTLS: &tls.Config{InsecureSkipVerify: true}})
			conn, err := trusting.Dial(ctx, ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			accepted, err := ln.Accept(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer accepted.Close()
			if verified.Load() == 0 {
				t.Fatal("the server's TLS configuration from the Config was not used")
			}
		})
	}
}

// lossyFrames is how many frames each direction of the lossy-network tests
// writes with WriteFrame.
const lossyFrames = 1000

// numberedFrame returns frame i of a lossy-network test: i in 4 bytes and a
// filler derived from it, 20 to 1019 bytes in all.
func numberedFrame(i int) []byte {
	p := binary.BigEndian.AppendUint32(nil, uint32(i))
	for j := range 16 + i*37%1000 {
		p = append(p, byte(i*131)^byte(j*7+1))
	}
	return p
}

// checkDrops fails the test unless the server's socket (the first opened)
// and each client's dropped datagrams.
func checkDrops(t *testing.T, n *testNet) {
	t.Helper()
	addrs, conns := n.opened()
	for i, c := range conns {
		side := "client"
		if i == 0 {
			side = "server"
		}
		t.Logf("%s socket (%s): %d datagrams sent, %d of them dropped", side, addrs[i], c.sent.Load(), c.dropped.Load())
		if c.dropped.Load() == 0 {
			t.Errorf("the %s's socket dropped nothing", side)
		}
	}
}

// TestStreamOverLossyNetwork runs "quic" over sockets that drop every 10th
// datagram they send, on both ends: QUIC's retransmissions deliver every
// frame, in order, both ways.
func TestStreamOverLossyNetwork(t *testing.T) {
	n := &testNet{dropEvery: 10}
	client, server := pair(t, build(t, NewStream, n.config()))
	for _, dir := range []struct {
		name     string
		from, to transports.Conn
	}{{"client to server", client, server}, {"server to client", server, client}} {
		errc := make(chan error, 1)
		go func() {
			for i := range lossyFrames {
				if err := dir.from.WriteFrame(numberedFrame(i)); err != nil {
					errc <- fmt.Errorf("WriteFrame #%d: %w", i, err)
					return
				}
				if i%16 == 15 {
					if err := transports.Flush(dir.from); err != nil {
						errc <- fmt.Errorf("Flush after #%d: %w", i, err)
						return
					}
				}
			}
			errc <- transports.Flush(dir.from)
		}()
		for i := range lossyFrames {
			got, err := readWithin(t, dir.to)
			if err != nil {
				t.Fatalf("%s: frame %d: ReadFrame: %v", dir.name, i, err)
			}
			if want := numberedFrame(i); !bytes.Equal(got, want) {
				t.Fatalf("%s: frame %d of %d: got %d bytes, want the %d bytes of frame %d", dir.name, i, lossyFrames, len(got), len(want), i)
			}
		}
		select {
		case err := <-errc:
			if err != nil {
				t.Fatalf("%s: %v", dir.name, err)
			}
		case <-time.After(testTimeout):
			t.Fatalf("%s: the writer has not finished after every frame arrived", dir.name)
		}
	}
	checkDrops(t, n)
}

// lossyEvent encodes an EVENT frame of a lossy-network test: room names the
// way it was written ("stream", "datagram" or "end"), Seq is i.
func lossyEvent(t *testing.T, room string, i int) []byte {
	t.Helper()
	f := transports.Frame{
		Type: transports.FrameEvent, Namespace: []byte("/"), Room: []byte(room), Name: []byte("m"),
		Sender: 1, Seq: uint64(i), Payload: bytes.Repeat([]byte{byte(i)}, i%500),
	}
	p, err := transports.AppendFrame(nil, &f)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestDatagramOverLossyNetwork runs "quic-dgram" over sockets that drop
// every 10th datagram they send, on both ends. Each direction writes
// lossyFrames EVENT frames with WriteFrame and as many with WriteDatagram,
// interleaved, then an end marker with WriteFrame. Every WriteFrame frame
// arrives, in order, although it is shaped like an event (the transport does
// not look inside); WriteDatagram's frames may be lost, but each that
// arrives is intact and arrives once.
func TestDatagramOverLossyNetwork(t *testing.T) {
	n := &testNet{dropEvery: 10}
	client, server := pair(t, build(t, NewDatagram, n.config()))
	for _, dir := range []struct {
		name     string
		from, to transports.Conn
	}{{"client to server", client, server}, {"server to client", server, client}} {
		stream, datagram := make([][]byte, lossyFrames), make([][]byte, lossyFrames)
		for i := range lossyFrames {
			stream[i], datagram[i] = lossyEvent(t, "stream", i), lossyEvent(t, "datagram", i)
		}
		end := lossyEvent(t, "end", 0)
		errc := make(chan error, 1)
		go func() {
			w := dir.from.(transports.DatagramConn)
			for i := range lossyFrames {
				if err := w.WriteFrame(stream[i]); err != nil {
					errc <- fmt.Errorf("WriteFrame #%d: %w", i, err)
					return
				}
				if err := w.WriteDatagram(datagram[i]); err != nil {
					errc <- fmt.Errorf("WriteDatagram #%d: %w", i, err)
					return
				}
			}
			errc <- w.WriteFrame(end)
		}()
		nextStream, arrived := 0, 0
		seen := make([]bool, lossyFrames)
		for done := false; !done; {
			got, err := readWithin(t, dir.to)
			if err != nil {
				t.Fatalf("%s: after %d WriteFrame and %d WriteDatagram frames: ReadFrame: %v", dir.name, nextStream, arrived, err)
			}
			var f transports.Frame
			if err := transports.DecodeFrame(got, &f); err != nil {
				t.Fatalf("%s: %v", dir.name, err)
			}
			i := int(f.Seq)
			switch string(f.Room) {
			case "stream":
				if i != nextStream || !bytes.Equal(got, stream[i]) {
					t.Fatalf("%s: WriteFrame frame #%d arrived where #%d was due, or damaged", dir.name, i, nextStream)
				}
				nextStream++
			case "datagram":
				if i >= lossyFrames || seen[i] || !bytes.Equal(got, datagram[i]) {
					t.Fatalf("%s: WriteDatagram frame #%d arrived twice or damaged", dir.name, i)
				}
				seen[i] = true
				arrived++
			case "end":
				done = true
			default:
				t.Fatalf("%s: a frame for room %q", dir.name, f.Room)
			}
		}
		if nextStream != lossyFrames {
			t.Fatalf("%s: the end marker arrived after %d of %d WriteFrame frames", dir.name, nextStream, lossyFrames)
		}
		t.Logf("%s: %d of %d WriteFrame frames, %d of %d WriteDatagram frames arrived before the end marker", dir.name, nextStream, lossyFrames, arrived, lossyFrames)
		if arrived > lossyFrames {
			t.Fatalf("%s: %d WriteDatagram frames arrived, %d were written", dir.name, arrived, lossyFrames)
		}
		select {
		case err := <-errc:
			if err != nil {
				t.Fatalf("%s: %v", dir.name, err)
			}
		case <-time.After(testTimeout):
			t.Fatalf("%s: the writer has not finished after the end marker arrived", dir.name)
		}
	}
	checkDrops(t, n)
}

// TestConformanceConfig runs the conformance suite against both transports
// built from a Config whose sockets are wrappers (not *net.UDPConn), then
// checks that every socket came from the Config, carried traffic and was
// closed.
func TestConformanceConfig(t *testing.T) {
	for _, c := range constructors {
		t.Run(c.name, func(t *testing.T) {
			n := &testNet{}
			transporttest.Run(t, build(t, c.newT, n.config()))
			addrs, conns := n.opened()
			if len(conns) == 0 {
				t.Fatal("no socket came from the Config")
			}
			for i, pc := range conns {
				if pc.closes.Load() == 0 {
					t.Errorf("socket %d of %d (%s) is still open after the suite", i, len(conns), addrs[i])
				}
			}
		})
	}
}

// TestDialServerName checks that a client dialling a host name verifies
// the server's certificate against that name (the in-memory certificate
// names localhost), not against the address it resolves to, unless the
// client configuration names a ServerName of its own.
func TestDialServerName(t *testing.T) {
	if ips, err := net.LookupIP("localhost"); err != nil || len(ips) == 0 || !ips[0].IsLoopback() {
		t.Skipf("localhost does not resolve to a loopback address here (%v, %v)", ips, err)
	}
	ctx := testCtx(t)
	ln, err := Stream().Listen(ctx, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, err := net.SplitHostPort(ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ serverName, want string }{{"", "localhost"}, {"evbench.invalid", "evbench.invalid"}} {
		clientTLS, err := selfsigned.ClientConfig()
		if err != nil {
			t.Fatal(err)
		}
		clientTLS.ServerName = tt.serverName
		// The certificate does not name evbench.invalid; VerifyConnection
		// still sees the name.
		clientTLS.InsecureSkipVerify = tt.serverName != ""
		var got atomic.Value
		clientTLS.VerifyConnection = func(cs tls.ConnectionState) error {
			got.Store(cs.ServerName)
			return nil
		}
		c, err := build(t, NewStream, transports.Config{ClientTLS: clientTLS}).Dial(ctx, net.JoinHostPort("localhost", port))
		if err != nil {
			t.Fatalf("ServerName %q: Dial(localhost): %v", tt.serverName, err)
		}
		c.(conn).abort()
		if got.Load() != tt.want {
			t.Errorf("ServerName %q: the handshake verified %v, want %q", tt.serverName, got.Load(), tt.want)
		}
	}
}
