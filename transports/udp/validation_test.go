package udp

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/evbench/evbench/transports"
)

// TestAmplificationSizes checks the sizes of the answers to an address that
// is not validated against RFC 9000 §8.1's 3× (header.go checks the same
// at compile time), and the cookie's layout.
func TestAmplificationSizes(t *testing.T) {
	first := helloDatagram(kindHello, 1)
	cookie := cookieHelloDatagram(kindCookie, 1, make([]byte, cookieBytes))
	second := cookieHelloDatagram(kindHello, 1, make([]byte, cookieBytes))
	ack := helloDatagram(kindHelloAck, 1)
	answers := []struct {
		name     string
		in, out  int
		wantIn   int
		wantOut  int
		inIsFrom string
	}{
		{"COOKIE for a first HELLO", len(first), len(cookie), 9, 27, "HELLO"},
		{"COOKIE for a refused cookie", len(second), len(cookie), 27, 27, "HELLO with a cookie"},
		{"BYE from a closing Listener", len(first), len(byeDatagram), 9, 1, "HELLO"},
		{"HELLO-ACK that validates", len(second), len(ack), 27, 9, "HELLO with a cookie"},
	}
	for _, a := range answers {
		if a.in != a.wantIn || a.out != a.wantOut {
			t.Errorf("%s: %d bytes for a %d-byte %s, want %d for %d", a.name, a.out, a.in, a.inIsFrom, a.wantOut, a.wantIn)
		}
		if a.out > amplificationFactor*a.in {
			t.Errorf("%s: %d bytes for %d received, over %d×", a.name, a.out, a.in, amplificationFactor)
		}
	}
	if amplificationFactor != 3 || cookieBytes != 18 || cookieMACBytes*8 != 96 {
		t.Errorf("factor %d, cookie %d bytes, MAC %d bits; want 3, 18, 96", amplificationFactor, cookieBytes, cookieMACBytes*8)
	}
	if CookieLifetime != 10*time.Second {
		t.Errorf("CookieLifetime = %v, want the documented 10s", CookieLifetime)
	}
}

func TestCookieJar(t *testing.T) {
	j := newCookieJar()
	addr := netip.MustParseAddrPort("127.0.0.1:4000")
	const nonce, at = 0x0102030405060708, 123456
	var c [cookieBytes]byte
	j.mint(c[:], addr, nonce, at)
	life := CookieLifetime.Milliseconds()
	flip := func(i int) []byte { d := bytes.Clone(c[:]); d[i] ^= 1; return d }
	other := newCookieJar()
	same := newCookieJar(j.secret)
	tests := []struct {
		name   string
		jar    *cookieJar
		cookie []byte
		addr   netip.AddrPort
		nonce  uint64
		now    int64
		want   bool
	}{
		{"fresh", j, c[:], addr, nonce, at, true},
		{"just before expiry", j, c[:], addr, nonce, at + life - 1, true},
		{"expired", j, c[:], addr, nonce, at + life, false},
		{"from the future", j, c[:], addr, nonce, at - 1, false},
		{"IPv4-mapped form of the address", j, c[:], netip.MustParseAddrPort("[::ffff:127.0.0.1]:4000"), nonce, at, true},
		{"other port", j, c[:], netip.MustParseAddrPort("127.0.0.1:4001"), nonce, at, false},
		{"other address", j, c[:], netip.MustParseAddrPort("127.0.0.2:4000"), nonce, at, false},
		{"other nonce", j, c[:], addr, nonce + 1, at, false},
		{"timestamp changed", j, flip(cookieTimeBytes - 1), addr, nonce, at + 1, false},
		{"MAC changed", j, flip(cookieBytes - 1), addr, nonce, at, false},
		{"other Listener's secret", other, c[:], addr, nonce, at, false},
		{"same secret, other jar", same, c[:], addr, nonce, at, true},
		{"truncated", j, c[:cookieBytes-1], addr, nonce, at, false},
		{"all zero", j, make([]byte, cookieBytes), addr, nonce, 0, false},
	}
	for _, tc := range tests {
		if got := tc.jar.check(tc.cookie, tc.addr, tc.nonce, tc.now); got != tc.want {
			t.Errorf("%s: check = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestCookieJarDoesNotAllocate: the read goroutine answers a flood of
// HELLOs without allocating.
func TestCookieJarDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	j := newCookieJar()
	addr := netip.MustParseAddrPort("[::1]:4000")
	var c [cookieBytes]byte
	n := testing.AllocsPerRun(200, func() {
		j.mint(c[:], addr, 7, 1000)
		if !j.check(c[:], addr, 7, 1001) {
			t.Fatal("a fresh cookie is refused")
		}
	})
	if n != 0 {
		t.Fatalf("mint+check allocates %v times, want 0", n)
	}
}

// peerConns returns how many addresses have a Conn on l.
func peerConns(l *Listener) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.peers)
}

// TestUnvalidatedHellos: only a HELLO echoing the cookie the Listener
// issued to that address for that nonce, within CookieLifetime, creates a
// Conn; every other one is answered with a fresh COOKIE (no more than 3×
// its size), counted, and creates nothing.
func TestUnvalidatedHellos(t *testing.T) {
	ln := listenT(t, Options{})
	a, b := newRawPeer(t), newRawPeer(t)
	const nonce = 42
	valid := a.cookieHello(ln.Addr(), nonce) // a's cookie for nonce
	forge := func(mut func(d []byte)) []byte {
		d := bytes.Clone(valid[:])
		mut(d)
		return d
	}
	expired := newCookieJar(ln.cookies.secret) // the Listener's secret, an old time
	var old [cookieBytes]byte
	expired.mint(old[:], a.addr(), nonce, cookieNow()-CookieLifetime.Milliseconds()-1)
	refused := []struct {
		name string
		from *rawPeer
		d    []byte
	}{
		{"forged MAC", a, forge(func(d []byte) { d[len(d)-1] ^= 0x80 })},
		{"forged timestamp", a, forge(func(d []byte) { d[headerBytes+nonceBytes+cookieTimeBytes-1]++ })},
		{"other nonce", a, forge(func(d []byte) { d[headerBytes]++ })},
		{"expired", a, func() []byte { d := cookieHelloDatagram(kindHello, nonce, old[:]); return d[:] }()},
		{"another address's cookie", b, valid[:]},
	}
	for i, tc := range refused {
		tc.from.send(ln.Addr(), tc.d)
		dg, _, ok := tc.from.recv(waitTimeout)
		if !ok {
			t.Fatalf("%s: no answer", tc.name)
		}
		k, body, err := parseDatagram(dg)
		if err != nil || k != kindCookie || nonceOf(body) != nonceOf(tc.d[headerBytes:]) {
			t.Fatalf("%s: answered with % x (%v, %v), want a fresh COOKIE", tc.name, dg, k, err)
		}
		if len(dg) > amplificationFactor*len(tc.d) {
			t.Fatalf("%s: %d bytes answered %d", tc.name, len(dg), len(tc.d))
		}
		if got := ln.UnvalidatedDrops(); got != uint64(i+1) {
			t.Fatalf("%s: UnvalidatedDrops = %d, want %d", tc.name, got, i+1)
		}
		if n := peerConns(ln); n != 0 {
			t.Fatalf("%s: %d Conns exist", tc.name, n)
		}
	}
	// The genuine one validates a.
	a.send(ln.Addr(), valid[:])
	body, _, ok := a.recvKind(kindHelloAck, waitTimeout)
	if !ok || nonceOf(body) != nonce {
		t.Fatalf("no HELLO-ACK for the valid cookie")
	}
	s := acceptT(t, ln)
	if s.RemoteAddr().String() != a.sock.LocalAddr().String() {
		t.Fatalf("accepted %v, want %v", s.RemoteAddr(), a.sock.LocalAddr())
	}
	// A resend of either form is acknowledged again, and creates nothing.
	first := helloDatagram(kindHello, nonce)
	for _, d := range [][]byte{valid[:], first[:]} {
		a.send(ln.Addr(), d)
		if _, _, ok := a.recvKind(kindHelloAck, waitTimeout); !ok {
			t.Fatal("a resent HELLO was not acknowledged again")
		}
	}
	if n, st := peerConns(ln), ln.Stats(); n != 1 || st.UnvalidatedDrops != 5 || st.Dropped() != 5 {
		t.Fatalf("%d Conns, stats %+v; want 1 Conn and the 5 refused HELLOs dropped", n, st)
	}
	// A new nonce from the validated address needs a cookie of its own: a
	// first HELLO gets a COOKIE and leaves the session alone.
	a.cookieHello(ln.Addr(), nonce+1)
	if err := s.WriteFrame([]byte("still")); err != nil {
		t.Fatal(err)
	}
	if body, _, ok := a.recvKind(kindData, waitTimeout); !ok || string(body) != "still" {
		t.Fatalf("session after another nonce's first HELLO: %q, %v", body, ok)
	}
}

// recording is a net.PacketConn wrapper that records every datagram
// written through it, in order, and drops those dropWrite picks.
type recording struct {
	net.PacketConn
	mu        sync.Mutex
	wrote     [][]byte
	dropWrite func(d []byte, nth map[kind]int) bool // nth counts writes by kind, this one included
	nth       map[kind]int
}

func (r *recording) WriteTo(p []byte, addr net.Addr) (int, error) {
	r.mu.Lock()
	r.wrote = append(r.wrote, bytes.Clone(p))
	drop := false
	if r.dropWrite != nil && len(p) > 0 {
		if r.nth == nil {
			r.nth = map[kind]int{}
		}
		r.nth[kind(p[0])]++
		drop = r.dropWrite(p, r.nth)
	}
	r.mu.Unlock()
	if drop {
		return len(p), nil
	}
	return r.PacketConn.WriteTo(p, addr)
}

// written returns the kinds and sizes written so far.
func (r *recording) written() (kinds []kind, sizes []int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, d := range r.wrote {
		kinds = append(kinds, kind(d[0]))
		sizes = append(sizes, len(d))
	}
	return kinds, sizes
}

// recordingConfig wraps every socket in a recording made by mk and
// publishes it on ch.
func recordingConfig(mk func() *recording, ch chan<- *recording) transports.Config {
	return wrapConfig(func(pc net.PacketConn) net.PacketConn {
		r := mk()
		r.PacketConn = pc
		ch <- r
		return r
	})
}

// TestDialCostsOneRoundTrip: an honest client's Dial sends exactly two
// datagrams (HELLO, then HELLO with the cookie) and the server answers
// each once (COOKIE, HELLO-ACK); then frames flow both ways.
func TestDialCostsOneRoundTrip(t *testing.T) {
	// No resend and no KEEPALIVE can happen within the test.
	opts := Options{HelloInterval: time.Minute, KeepaliveInterval: time.Minute, IdleTimeout: 2 * time.Minute}
	cch, sch := make(chan *recording, 1), make(chan *recording, 1)
	srvT := newT(t, recordingConfig(func() *recording { return &recording{} }, sch), opts)
	cliT := newT(t, recordingConfig(func() *recording { return &recording{} }, cch), opts)
	ln := listenWith(t, srvT)
	sr := <-sch
	start := time.Now()
	client := dialWith(t, cliT, ln.Addr())
	took := time.Since(start)
	cr := <-cch
	kinds, sizes := cr.written()
	if len(kinds) != 2 || kinds[0] != kindHello || sizes[0] != helloBytes || kinds[1] != kindHello || sizes[1] != helloCookieBytes {
		t.Fatalf("Dial wrote %v of %v bytes, want HELLO of %d and HELLO of %d (with the cookie)", kinds, sizes, helloBytes, helloCookieBytes)
	}
	server := acceptT(t, ln)
	skinds, ssizes := sr.written()
	if len(skinds) != 2 || skinds[0] != kindCookie || ssizes[0] != cookieDatagramBytes || skinds[1] != kindHelloAck || ssizes[1] != helloBytes {
		t.Fatalf("the Listener wrote %v of %v bytes, want COOKIE of %d and HELLO-ACK of %d", skinds, ssizes, cookieDatagramBytes, helloBytes)
	}
	t.Logf("Dial: %v, %d datagrams sent (%v bytes), %d answered (%v bytes): one round trip more than HELLO/HELLO-ACK", took, len(kinds), sizes, len(skinds), ssizes)
	if err := client.WriteFrame([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	if got := readT(t, server); string(got) != "ping" {
		t.Fatalf("server read %q", got)
	}
	if err := server.WriteFrame([]byte("pong")); err != nil {
		t.Fatal(err)
	}
	if got := readT(t, client); string(got) != "pong" {
		t.Fatalf("client read %q", got)
	}
	if st := ln.Stats(); st.Dropped() != 0 {
		t.Errorf("Listener stats %+v: an honest client's datagrams dropped", st)
	}
}

// TestDialSurvivesLostHandshake: the Listener's first COOKIE and first
// HELLO-ACK are lost; Dial resends the first HELLO, then the HELLO with
// the cookie it holds, and completes.
func TestDialSurvivesLostHandshake(t *testing.T) {
	opts := Options{HelloInterval: 20 * time.Millisecond, KeepaliveInterval: time.Minute, IdleTimeout: 2 * time.Minute}
	sch := make(chan *recording, 1)
	lossy := func() *recording {
		return &recording{dropWrite: func(d []byte, nth map[kind]int) bool {
			k := kind(d[0])
			return (k == kindCookie || k == kindHelloAck) && nth[k] == 1
		}}
	}
	ln := listenWith(t, newT(t, recordingConfig(lossy, sch), opts))
	sr := <-sch
	cch := make(chan *recording, 1)
	client := dialWith(t, newT(t, recordingConfig(func() *recording { return &recording{} }, cch), opts), ln.Addr())
	server := acceptT(t, ln)
	kinds, sizes := (<-cch).written()
	var firsts, seconds int
	for i, k := range kinds {
		if k != kindHello {
			t.Fatalf("Dial wrote %v (%v bytes), want HELLOs only", kinds, sizes)
		}
		if sizes[i] == helloBytes {
			if seconds > 0 {
				t.Fatalf("Dial went back to the first HELLO after a COOKIE: %v bytes", sizes)
			}
			firsts++
		} else {
			seconds++
		}
	}
	if firsts < 2 || seconds < 2 {
		t.Fatalf("Dial wrote HELLOs of %v bytes, want the first resent (its COOKIE was lost) and the second resent (its HELLO-ACK was lost)", sizes)
	}
	if skinds, _ := sr.written(); len(skinds) < 4 {
		t.Fatalf("the Listener wrote %v, want at least two COOKIEs and two HELLO-ACKs", skinds)
	}
	if n := peerConns(ln); n != 1 {
		t.Fatalf("%d Conns for one client", n)
	}
	if err := client.WriteFrame([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if got := readT(t, server); string(got) != "x" {
		t.Fatalf("server read %q", got)
	}
}

// TestDialRestartsOnRefusedCookie: a server that refuses the cookie it
// gets (expired, or issued before it restarted) answers with a fresh
// COOKIE; Dial adopts it at once and completes.
func TestDialRestartsOnRefusedCookie(t *testing.T) {
	srv := newRawPeer(t)
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		// A long HelloInterval: only the COOKIEs move this Dial on.
		c, err := New(Options{HelloInterval: time.Minute}).Dial(ctx, srv.sock.LocalAddr().String())
		if err == nil {
			c.Close()
		}
		done <- err
	}()
	cookieA, cookieB := bytes.Repeat([]byte{0xa}, cookieBytes), bytes.Repeat([]byte{0xb}, cookieBytes)
	var got [][]byte
	for len(got) < 3 {
		dg, from, ok := srv.recv(waitTimeout)
		if !ok {
			t.Fatalf("after %d HELLOs, no more", len(got))
		}
		k, body, err := parseDatagram(dg)
		if err != nil || k != kindHello {
			continue
		}
		got = append(got, bytes.Clone(cookieOf(body)))
		nonce := nonceOf(body)
		var answer []byte
		switch c := cookieOf(body); {
		case c == nil:
			d := cookieHelloDatagram(kindCookie, nonce, cookieA)
			answer = d[:]
		case bytes.Equal(c, cookieA): // "expired": here is a new one
			d := cookieHelloDatagram(kindCookie, nonce, cookieB)
			answer = d[:]
		case bytes.Equal(c, cookieB):
			d := helloDatagram(kindHelloAck, nonce)
			answer = d[:]
		}
		srv.sock.WriteToUDPAddrPort(answer, from)
	}
	if err := <-done; err != nil {
		t.Fatalf("Dial: %v", err)
	}
	if got[0] != nil || !bytes.Equal(got[1], cookieA) || !bytes.Equal(got[2], cookieB) {
		t.Fatalf("HELLOs carried cookies % x, want none, A, B", got)
	}
}

// TestClosedListenerRefusesWithBye: a closing Listener answers a first
// HELLO with a 1-byte BYE (within the bound), which Dial reports as
// ECONNREFUSED.
func TestClosedListenerRefusesWithBye(t *testing.T) {
	ln, _, _ := pairT(t, Options{}) // the accepted Conn keeps the socket open
	ln.Close()
	raw := newRawPeer(t)
	d := helloDatagram(kindHello, 9)
	raw.send(ln.Addr(), d[:])
	dg, _, ok := raw.recv(waitTimeout)
	if !ok || !bytes.Equal(dg, byeDatagram) {
		t.Fatalf("closed Listener answered % x (ok %v), want BYE", dg, ok)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if _, err := New(Options{}).Dial(ctx, ln.Addr().String()); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("Dial to a closed Listener: %v, want ECONNREFUSED", err)
	}
}
