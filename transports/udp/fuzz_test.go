package udp

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/evbench/evbench/transports"
)

// checkParsed checks parseDatagram's promises for d: an error wraps
// errMalformed; a kind it accepts is known, its body aliases d after the
// kind byte and has a length that fits the kind, and re-encoding a control
// datagram gives d back.
func checkParsed(t *testing.T, d []byte) {
	t.Helper()
	k, body, err := parseDatagram(d)
	if err != nil {
		if !errors.Is(err, errMalformed) {
			t.Fatalf("parseDatagram(% x): error %v does not wrap errMalformed", d, err)
		}
		if k != 0 || body != nil {
			t.Fatalf("parseDatagram(% x) failed with kind %v, body % x", d, k, body)
		}
		return
	}
	if k == 0 || k >= kindEnd || byte(k) != d[0] {
		t.Fatalf("parseDatagram(% x) = kind %v", d, k)
	}
	if len(body) != len(d)-headerBytes || (len(body) > 0 && &body[0] != &d[headerBytes]) {
		t.Fatalf("parseDatagram(% x): body % x is not the rest of the datagram", d, body)
	}
	var again []byte
	switch k {
	case kindData:
		if len(body) > MaxFrameBytes {
			t.Fatalf("DATA of %d bytes accepted", len(body))
		}
		return
	case kindHello:
		if c := cookieOf(body); c != nil {
			a := cookieHelloDatagram(kindHello, nonceOf(body), c)
			again = a[:]
		} else {
			a := helloDatagram(kindHello, nonceOf(body))
			again = a[:]
		}
	case kindHelloAck:
		a := helloDatagram(kindHelloAck, nonceOf(body))
		again = a[:]
	case kindCookie:
		a := cookieHelloDatagram(kindCookie, nonceOf(body), cookieOf(body))
		again = a[:]
	case kindKeepalive:
		again = keepaliveDatagram
	case kindBye:
		again = byeDatagram
	}
	if !bytes.Equal(again, d) {
		t.Fatalf("%v % x re-encodes as % x", k, d, again)
	}
}

// parseSeeds are datagrams of every kind and length class.
func parseSeeds() [][]byte {
	hello := helloDatagram(kindHello, 0x0102030405060708)
	ack := helloDatagram(kindHelloAck, 7)
	cookie := cookieHelloDatagram(kindCookie, 7, bytes.Repeat([]byte{0xc}, cookieBytes))
	second := cookieHelloDatagram(kindHello, 7, bytes.Repeat([]byte{0xc}, cookieBytes))
	return [][]byte{
		nil, {0}, {byte(kindData)}, {byte(kindData), 'x'},
		append([]byte{byte(kindData)}, make([]byte, MaxFrameBytes)...),
		append([]byte{byte(kindData)}, make([]byte, MaxFrameBytes+1)...),
		hello[:], hello[:5], append(hello[:], 0), ack[:], cookie[:], cookie[:20],
		second[:], append(second[:], 1), keepaliveDatagram, byeDatagram, {byte(kindBye), 0}, {7}, {255, 1, 2},
	}
}

// FuzzParseDatagram: parseDatagram never panics and keeps its promises
// (checkParsed) for any datagram.
func FuzzParseDatagram(f *testing.F) {
	for _, d := range parseSeeds() {
		f.Add(d)
	}
	f.Fuzz(func(t *testing.T, d []byte) { checkParsed(t, d) })
}

// FuzzParseDatagramSplit splits the input at a fuzzed index into two
// datagrams, as a boundary would cut a stream, and checks each; parsing
// one leaves the other's bytes alone.
func FuzzParseDatagramSplit(f *testing.F) {
	for i, d := range parseSeeds() {
		f.Add(d, uint16(i))
	}
	f.Fuzz(func(t *testing.T, d []byte, at uint16) {
		i := int(at) % (len(d) + 1)
		orig := bytes.Clone(d)
		checkParsed(t, d[:i:i])
		checkParsed(t, d[i:])
		if !bytes.Equal(d, orig) {
			t.Fatal("parseDatagram modified its input")
		}
	})
}

// fakeAddr is a source that is no IP address and port, as a net.PacketConn
// may report.
type fakeAddr struct{}

func (fakeAddr) Network() string { return "fake" }
func (fakeAddr) String() string  { return "nowhere" }

// fuzzSources are the fake peers of the Listener fuzz targets: three
// addresses and one source that is not an address.
var fuzzSources = [...]net.Addr{
	net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:1001")),
	net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:1002")),
	net.UDPAddrFromAddrPort(netip.MustParseAddrPort("[::1]:1003")),
	fakeAddr{},
}

// fakeDatagram is one datagram a fakePacketConn delivers.
type fakeDatagram struct {
	b    []byte
	from net.Addr
}

// fakePacketConn is a net.PacketConn with no socket behind it: the test
// hands it datagrams one at a time, and it records what is written to it.
// ReadFrom first tells the feeder, on idle, that the Listener's read
// goroutine is back for another datagram, so that the previous one has
// been handled in full.
type fakePacketConn struct {
	in        chan fakeDatagram
	idle      chan struct{}
	closed    chan struct{}
	closeOnce sync.Once

	mu    sync.Mutex
	wrote map[netip.AddrPort][][]byte // by destination
	bytes map[netip.AddrPort]int
	other int // writes to something that is not an address
}

func newFakePacketConn() *fakePacketConn {
	return &fakePacketConn{
		in: make(chan fakeDatagram), idle: make(chan struct{}), closed: make(chan struct{}),
		wrote: map[netip.AddrPort][][]byte{}, bytes: map[netip.AddrPort]int{},
	}
}

func (f *fakePacketConn) ReadFrom(b []byte) (int, net.Addr, error) {
	select {
	case f.idle <- struct{}{}:
	case <-f.closed:
		return 0, nil, net.ErrClosed
	}
	select {
	case d := <-f.in:
		return copy(b, d.b), d.from, nil
	case <-f.closed:
		return 0, nil, net.ErrClosed
	}
}

func (f *fakePacketConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ap := addrPortOf(addr)
	if !ap.IsValid() {
		f.other++
		return len(p), nil
	}
	f.wrote[ap] = append(f.wrote[ap], bytes.Clone(p))
	f.bytes[ap] += len(p)
	return len(p), nil
}

func (f *fakePacketConn) Close() error {
	f.closeOnce.Do(func() { close(f.closed) })
	return nil
}

func (f *fakePacketConn) LocalAddr() net.Addr {
	return net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:9"))
}
func (f *fakePacketConn) SetDeadline(time.Time) error      { return nil }
func (f *fakePacketConn) SetReadDeadline(time.Time) error  { return nil }
func (f *fakePacketConn) SetWriteDeadline(time.Time) error { return nil }

// sentTo returns the bytes and datagrams written to a so far.
func (f *fakePacketConn) sentTo(a netip.AddrPort) (int, [][]byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.bytes[a], f.wrote[a]
}

// issued is a cookie the Listener sent to an address, with the nonce it
// answered and when.
type issued struct {
	nonce  uint64
	cookie string
	at     time.Time
}

// listenerHarness runs a Listener over a fakePacketConn and a model of
// what each source did, and checks the invariants of address validation
// after every datagram.
type listenerHarness struct {
	t      *testing.T
	pc     *fakePacketConn
	ln     *Listener
	primed bool // the read goroutine's first idle signal was taken
	src    [len(fuzzSources)]struct {
		ap        netip.AddrPort // invalid for the fake source
		recvd     int            // bytes it sent the Listener
		cookies   []issued       // COOKIEs the Listener sent it, oldest first
		seen      int            // datagrams of the Listener's to it already scanned
		validated bool           // it echoed a cookie issued to it
	}
}

func newListenerHarness(t *testing.T) *listenerHarness {
	h := &listenerHarness{t: t, pc: newFakePacketConn()}
	for i, a := range fuzzSources {
		h.src[i].ap = addrPortOf(a)
	}
	// No timer fires during an iteration: nothing is sent but answers.
	opts := Options{KeepaliveInterval: time.Hour, IdleTimeout: 2 * time.Hour, AcceptBacklog: 4096}
	tr, err := NewWithConfig(transports.Config{ListenPacket: func(context.Context, string, string) (net.PacketConn, error) {
		return h.pc, nil
	}}, opts)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tr.Listen(context.Background(), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.ln = ln.(*Listener)
	t.Cleanup(func() { h.ln.Close() })
	return h
}

// conn returns the Conn of source i, or nil.
func (h *listenerHarness) conn(i int) *Conn {
	if !h.src[i].ap.IsValid() {
		return nil
	}
	h.ln.mu.Lock()
	defer h.ln.mu.Unlock()
	return h.ln.peers[h.src[i].ap]
}

// lastCookie returns the newest cookie issued to source i.
func (h *listenerHarness) lastCookie(i int) (issued, bool) {
	cs := h.src[i].cookies
	if len(cs) == 0 {
		return issued{}, false
	}
	return cs[len(cs)-1], true
}

// send delivers d from source i, waits until the Listener has handled it,
// and checks the invariants.
func (h *listenerHarness) send(i int, d []byte) {
	t := h.t
	t.Helper()
	s := &h.src[i]
	hadConn := h.conn(i) != nil
	before, _ := h.pc.sentTo(s.ap)
	// What the model expects: an echo of a cookie issued to this source
	// for this nonce validates it.
	echo, echoNonce := false, uint64(0)
	if k, body, err := parseDatagram(d); err == nil && k == kindHello {
		if c := cookieOf(body); c != nil {
			for _, is := range s.cookies {
				if is.nonce == nonceOf(body) && is.cookie == string(c) && time.Since(is.at) < CookieLifetime-time.Second {
					echo, echoNonce = true, is.nonce
				}
			}
		}
	}
	if !h.primed {
		<-h.pc.idle // the read goroutine waits for its first datagram
		h.primed = true
	}
	h.pc.in <- fakeDatagram{b: bytes.Clone(d), from: fuzzSources[i]}
	<-h.pc.idle // it has handled d and waits for the next
	s.recvd += len(d)
	if echo {
		s.validated = true
	}

	after, wrote := h.pc.sentTo(s.ap)
	for _, w := range wrote[s.seen:] {
		if k, body, err := parseDatagram(w); err == nil && k == kindCookie {
			s.cookies = append(s.cookies, issued{nonceOf(body), string(cookieOf(body)), time.Now()})
		} else if err != nil {
			t.Fatalf("the Listener sent a malformed datagram % x: %v", w, err)
		}
	}
	s.seen = len(wrote)
	if !hadConn && after-before > amplificationFactor*len(d) {
		t.Fatalf("source %d without a Conn sent %d bytes (% x) and was sent %d: over %d×", i, len(d), d, after-before, amplificationFactor)
	}
	for j := range h.src {
		o := &h.src[j]
		if !o.ap.IsValid() {
			continue
		}
		c := h.conn(j)
		if c != nil && !o.validated {
			t.Fatalf("source %d has a Conn but never echoed a cookie issued to it", j)
		}
		if n, _ := h.pc.sentTo(o.ap); !o.validated && n > amplificationFactor*o.recvd {
			t.Fatalf("unvalidated source %d sent %d bytes in all and was sent %d", j, o.recvd, n)
		}
	}
	if echo {
		if c := h.conn(i); c == nil || c.nonce != echoNonce {
			t.Fatalf("source %d echoed a cookie issued to it for nonce %#x, and has Conn %v", i, echoNonce, c)
		}
	}
	h.pc.mu.Lock()
	other := h.pc.other
	h.pc.mu.Unlock()
	if other != 0 {
		t.Fatalf("the Listener wrote %d datagrams to a source that is not an address", other)
	}
	if n := peerConns(h.ln); n > 3 {
		t.Fatalf("%d Conns for 3 addresses", n)
	}
}

// handshake completes the cookie exchange for source i with nonce.
func (h *listenerHarness) handshake(i int, nonce uint64) {
	first := helloDatagram(kindHello, nonce)
	h.send(i, first[:])
	if is, ok := h.lastCookie(i); ok && is.nonce == nonce {
		second := cookieHelloDatagram(kindHello, nonce, []byte(is.cookie))
		h.send(i, second[:])
	}
}

// Script operations of FuzzListener (bits 2-3 of a record's control byte).
const (
	opRaw        = iota // send the record's bytes
	opEcho              // echo the newest cookie issued to the source
	opEchoXor           // echo it with the record's bytes XORed over the datagram
	opEchoOthers        // echo the newest cookie issued to the next source
)

// runScript interprets a FuzzListener input: records of a control byte
// (bits 0-1 the source, bits 2-3 the operation), a 2-byte big-endian length
// and that many bytes (fewer at the end of the input), at most 64 of them.
func (h *listenerHarness) runScript(script []byte) {
	for n := 0; len(script) >= 3 && n < 64; n++ {
		ctl, l := script[0], int(binary.BigEndian.Uint16(script[1:3]))
		script = script[3:]
		l = min(l, len(script), bufferBytes)
		payload := script[:l]
		script = script[l:]
		i, op := int(ctl&3), int(ctl>>2&3)
		d := payload
		if op != opRaw {
			from := i
			if op == opEchoOthers {
				from = (i + 1) % len(fuzzSources)
			}
			if is, ok := h.lastCookie(from); ok {
				e := cookieHelloDatagram(kindHello, is.nonce, []byte(is.cookie))
				d = e[:]
				if op == opEchoXor {
					for j := range min(len(payload), len(d)) {
						d[j] ^= payload[j]
					}
				}
			}
		}
		h.send(i, d)
	}
}

// record encodes one FuzzListener script record.
func record(src, op int, d []byte) []byte {
	r := []byte{byte(src | op<<2)}
	r = binary.BigEndian.AppendUint16(r, uint16(len(d)))
	return append(r, d...)
}

func listenerSeeds() [][]byte {
	cat := func(rs ...[]byte) []byte { return bytes.Join(rs, nil) }
	hello := func(n uint64) []byte { d := helloDatagram(kindHello, n); return d[:] }
	data := []byte{byte(kindData), 'h', 'i'}
	forged := cookieHelloDatagram(kindHello, 1, make([]byte, cookieBytes))
	return [][]byte{
		{},
		record(0, opRaw, hello(1)),
		cat(record(0, opRaw, hello(1)), record(0, opEcho, nil), record(0, opRaw, data)),
		cat(record(0, opRaw, hello(1)), record(0, opEcho, nil), record(0, opRaw, byeDatagram), record(0, opRaw, data)),
		cat(record(1, opRaw, data), record(1, opRaw, keepaliveDatagram), record(1, opRaw, byeDatagram)),
		record(2, opRaw, forged[:]),
		cat(record(0, opRaw, hello(5)), record(1, opEchoOthers, nil), record(1, opRaw, data)),
		cat(record(0, opRaw, hello(1)), record(0, opEcho, nil), record(1, opRaw, hello(2)), record(1, opEcho, nil),
			record(0, opRaw, hello(3)), record(0, opEcho, nil), record(0, opRaw, hello(1))),
		cat(record(0, opRaw, []byte{byte(kindHelloAck), 0, 0, 0, 0, 0, 0, 0, 1}), record(0, opRaw, forged[:]), record(0, opRaw, []byte{9})),
		cat(record(3, opRaw, hello(1)), record(3, opRaw, data), record(3, opEcho, nil)),
		cat(record(2, opRaw, hello(9)), record(2, opEchoXor, []byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1})),
		cat(record(2, opRaw, hello(9)), record(2, opEchoXor, []byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})),
		cat(record(0, opRaw, hello(1)), record(0, opEcho, nil), record(0, opEcho, nil), record(0, opRaw, hello(1)), record(0, opEcho, nil)),
	}
}

// FuzzListener feeds a script of datagrams from a few fake sources into a
// Listener over a fakePacketConn, with operations that echo the cookies it
// issued (as they are, altered, or from another source), and checks after
// every datagram: no panic, no source without a Conn is sent more than 3×
// the datagram it sent (nor, over the script, 3× all it sent), no Conn
// exists for a source that never echoed a cookie issued to it, and one
// that echoed a valid one has its Conn.
func FuzzListener(f *testing.F) {
	for _, s := range listenerSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, script []byte) {
		newListenerHarness(t).runScript(script)
	})
}

// FuzzListenerSplit splits one input at a fuzzed index into two datagrams
// from one source (bits 0-1 of src), after that source completed the
// cookie exchange when bit 2 of src is set, and checks the invariants of
// FuzzListener.
func FuzzListenerSplit(f *testing.F) {
	hello := helloDatagram(kindHello, 1)
	ack := helloDatagram(kindHelloAck, 1)
	second := cookieHelloDatagram(kindHello, 1, make([]byte, cookieBytes))
	seeds := []struct {
		d   []byte
		at  uint16
		src uint8
	}{
		{nil, 0, 0},
		{hello[:], 9, 0},
		{append(hello[:], hello[:]...), 9, 1},
		{append(hello[:], byte(kindData), 'x'), 9, 4},
		{[]byte{byte(kindData), 'a', byte(kindData), 'b'}, 2, 4},
		{[]byte{byte(kindData), 'a', byte(kindBye)}, 2, 5},
		{[]byte{byte(kindBye), byte(kindData), 'a'}, 1, 6},
		{second[:], 9, 2},
		{append(second[:], ack[:]...), 27, 4},
		{[]byte{byte(kindKeepalive), byte(kindKeepalive)}, 1, 3},
		{[]byte{byte(kindData), 'z'}, 1, 7},
		{append(hello[:], second[:]...), 5, 4},
	}
	for _, s := range seeds {
		f.Add(s.d, s.at, s.src)
	}
	f.Fuzz(func(t *testing.T, d []byte, at uint16, src uint8) {
		h := newListenerHarness(t)
		i := int(src & 3)
		if src&4 != 0 {
			h.handshake(i, 1)
		}
		cut := int(at) % (len(d) + 1)
		h.send(i, d[:cut])
		h.send(i, d[cut:])
	})
}

// TestListenerHarness checks that the fuzz targets' harness drives the
// Listener through the paths they are meant to explore: a cookie exchange
// makes a Conn that queues DATA, and an unvalidated source gets a COOKIE
// only.
func TestListenerHarness(t *testing.T) {
	h := newListenerHarness(t)
	h.handshake(0, 1)
	c := h.conn(0)
	if c == nil || !h.src[0].validated {
		t.Fatal("the cookie exchange made no Conn")
	}
	h.send(0, []byte{byte(kindData), 'x'})
	c.mu.Lock()
	queued := c.q.n
	c.mu.Unlock()
	if queued != 1 {
		t.Fatalf("%d frames queued, want 1", queued)
	}
	h.send(1, []byte{byte(kindData), 'y'})
	first := helloDatagram(kindHello, 2)
	h.send(1, first[:])
	if _, wrote := h.pc.sentTo(h.src[1].ap); len(wrote) != 1 || kind(wrote[0][0]) != kindCookie || len(h.src[1].cookies) != 1 {
		t.Fatalf("unvalidated source was sent %d datagrams, want one COOKIE", len(wrote))
	}
	if st := h.ln.Stats(); st.UnvalidatedDrops != 1 || st.UnknownPeerDrops != 0 {
		t.Fatalf("stats %+v, want 1 unvalidated drop", st)
	}
	h.send(3, first[:]) // a source that is not an address
	if st := h.ln.Stats(); st.UnknownPeerDrops != 1 {
		t.Fatalf("stats %+v, want 1 unknown-peer drop", st)
	}
}
