package transporttest

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/evbench/evbench/transports"
)

// Time bounds of the suite. Every wait has one, so a broken transport fails
// a subtest instead of hanging the test binary.
const (
	setupTimeout = 5 * time.Second        // Listen, Dial, Accept and the first frame
	frameTimeout = 5 * time.Second        // one frame on a reliable transport
	closeTimeout = 2 * time.Second        // Close itself, and what it must unblock
	settleDelay  = 50 * time.Millisecond  // lets a goroutine block in ReadFrame or Accept
	resendAfter  = 200 * time.Millisecond // unreliable path: resend a frame not seen by then
	maxSends     = 10                     // unreliable: tries before a frame counts as lost
	quietTimeout = time.Second            // unreliable: no frame for this long ends a count
	countTimeout = 20 * time.Second       // receiving one batch of numbered frames
)

// ErrStillBlocked is wrapped by Within's error when fn has not returned.
var ErrStillBlocked = errors.New("still blocked")

// Within runs fn on its own goroutine and returns its error, or an error
// wrapping ErrStillBlocked when fn has not returned after d. A call that
// never returns leaves its goroutine behind; the subtest's leak check then
// reports it as well.
func Within(d time.Duration, fn func() error) error {
	done := make(chan error, 1)
	go func() { done <- fn() }()
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case err := <-done:
		return err
	case <-timer.C:
		return fmt.Errorf("%w after %v", ErrStillBlocked, d)
	}
}

// closeIn closes c, failing the test if Close does not return within
// closeTimeout. The error of Close itself is not checked: a second Close may
// report one.
func closeIn(t *testing.T, what string, close func() error) {
	t.Helper()
	if err := Within(closeTimeout, close); errors.Is(err, ErrStillBlocked) {
		t.Errorf("%s: %v", what, err)
	}
}

// writeFlush writes p and flushes c.
func writeFlush(c transports.Conn, p []byte) error {
	if err := c.WriteFrame(p); err != nil {
		return err
	}
	return transports.Flush(c)
}

// write writes p on c: with transports.WriteEvent when event (so with
// WriteDatagram on a transports.DatagramConn), otherwise with WriteFrame.
func write(c transports.Conn, p []byte, event bool) error {
	if event {
		return transports.WriteEvent(c, p)
	}
	return c.WriteFrame(p)
}

// reliableFrames reports whether caps promise to deliver every frame
// written with WriteFrame: Reliable, or ReliableControl (reliable and in
// order, although events written with WriteDatagram are not).
func reliableFrames(caps transports.Caps) bool { return caps.Reliable || caps.ReliableControl }

// reliablePath reports whether caps promise to deliver every frame written
// with write(c, p, event).
func reliablePath(caps transports.Caps, event bool) bool {
	return caps.Reliable || (!event && caps.ReliableControl)
}

// syncFrame is the first frame every client sends. It makes the connection
// visible to Accept on transports that announce a peer only with its first
// data (a UDP peer, a QUIC stream). Readers skip it, because an unreliable
// transport may deliver a resent copy late; no test frame equals it.
var syncFrame = []byte("\xfetransporttest sync\xfe")

// pair is one connection under test: a listener and both ends.
type pair struct {
	t       *testing.T
	caps    transports.Caps
	ln      transports.Listener
	client  transports.Conn
	server  transports.Conn
	readers map[transports.Conn]*reader
}

// conns returns the writing and the reading end of one direction.
func (p *pair) conns(clientToServer bool) (w, r transports.Conn) {
	if clientToServer {
		return p.client, p.server
	}
	return p.server, p.client
}

// directions names the two directions of a pair for subtests.
var directions = []struct {
	name           string
	clientToServer bool
}{
	{"client-to-server", true},
	{"server-to-client", false},
}

// listen starts a listener of tr on 127.0.0.1:0 and closes it when the test
// ends. It fails the test unless the listener's address is a loopback one.
func listen(t *testing.T, tr transports.Transport) transports.Listener {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	var ln transports.Listener
	err := Within(setupTimeout, func() (err error) {
		ln, err = tr.Listen(ctx, "127.0.0.1:0")
		return err
	})
	if err != nil {
		t.Fatalf("Listen(127.0.0.1:0): %v", err)
	}
	t.Cleanup(func() { closeIn(t, "Listener.Close", ln.Close) })
	checkLoopback(t, ln.Addr())
	return ln
}

// checkLoopback fails the test unless a is a loopback host:port (or a URL
// whose host is loopback): the suite dials nothing else.
func checkLoopback(t *testing.T, a net.Addr) {
	t.Helper()
	if a == nil {
		t.Fatal("Listener.Addr() is nil")
	}
	s := a.String()
	hostport := s
	if strings.Contains(s, "://") {
		u, err := url.Parse(s)
		if err != nil {
			t.Fatalf("Listener.Addr() = %q: %v", s, err)
		}
		hostport = u.Host
	}
	host, _, err := net.SplitHostPort(hostport)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
		t.Fatalf("Listener.Addr() = %q, want a loopback address such as 127.0.0.1:port", s)
	}
}

// newPair listens on loopback, dials, accepts, and has the server read the
// client's sync frame, so both ends exist and carry frames. Everything is
// closed when the test ends. The sync frame is written with WriteFrame;
// where that may lose it (neither Reliable nor ReliableControl) it is
// resent until the server has it.
func newPair(t *testing.T, tr transports.Transport) *pair {
	t.Helper()
	p := &pair{t: t, caps: tr.Caps(), ln: listen(t, tr), readers: map[transports.Conn]*reader{}}
	// The contexts bound the set-up only; cancelling them afterwards must not
	// disturb the connection, and here it happens as newPair returns.
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()

	accepted := make(chan transports.Conn, 1)
	acceptErr := make(chan error, 1)
	syncErr := make(chan error, 1)
	go func() {
		c, err := p.ln.Accept(ctx)
		if err != nil {
			acceptErr <- err
			return
		}
		accepted <- c // hand it over first, so the test can close it
		syncErr <- readSync(c)
	}()

	addr := p.ln.Addr().String()
	err := Within(setupTimeout, func() (err error) {
		p.client, err = tr.Dial(ctx, addr)
		return err
	})
	if err != nil {
		t.Fatalf("Dial(%s): %v", addr, err)
	}
	t.Cleanup(func() { closeIn(t, "client Close", p.client.Close) })
	if p.client.RemoteAddr() == nil {
		t.Error("client RemoteAddr() is nil")
	}

	sendSync := func() {
		t.Helper()
		if err := Within(setupTimeout, func() error { return writeFlush(p.client, syncFrame) }); err != nil {
			t.Fatalf("client writing its first frame: %v", err)
		}
	}
	sendSync()
	resend := time.NewTicker(resendAfter)
	defer resend.Stop()
	deadline := time.NewTimer(setupTimeout)
	defer deadline.Stop()
	for synced := false; p.server == nil || !synced; {
		select {
		case c := <-accepted:
			p.server = c
			t.Cleanup(func() { closeIn(t, "server Close", c.Close) })
			if c.RemoteAddr() == nil {
				t.Error("server RemoteAddr() is nil")
			}
		case err := <-acceptErr:
			t.Fatalf("Accept: %v", err)
		case err := <-syncErr:
			if err != nil {
				t.Fatalf("server reading the client's first frame: %v", err)
			}
			synced = true
		case <-resend.C:
			if !reliableFrames(p.caps) {
				sendSync()
			}
		case <-deadline.C:
			if p.server == nil {
				t.Fatalf("Accept has not returned %v after Dial and the client's first frame", setupTimeout)
			}
			t.Fatalf("the server has not read the client's first frame after %v", setupTimeout)
		}
	}
	return p
}

// readSync reads c's first frame, which must be syncFrame.
func readSync(c transports.Conn) error {
	b, err := c.ReadFrame()
	if err != nil {
		return err
	}
	if !bytes.Equal(b, syncFrame) {
		return fmt.Errorf("got a %d-byte frame, want the %d-byte frame the client wrote", len(b), len(syncFrame))
	}
	return nil
}

// readResult is one ReadFrame outcome: a copy of the frame, or the error.
type readResult struct {
	p   []byte
	err error
}

// reader is the single goroutine that reads one Conn. It copies each frame
// (skipping sync frames) into a buffered channel, so tests can wait for a
// frame with a timeout, and it stops after the first error.
type reader struct {
	results chan readResult
	done    chan struct{}
}

// reader returns the reader of c, starting it on first use. The goroutine
// ends once c is closed (by the test or its cleanup).
func (p *pair) reader(c transports.Conn) *reader {
	if r, ok := p.readers[c]; ok {
		return r
	}
	r := &reader{results: make(chan readResult, 4096), done: make(chan struct{})}
	p.readers[c] = r
	go func() {
		for {
			b, err := c.ReadFrame()
			if err == nil && bytes.Equal(b, syncFrame) {
				continue
			}
			res := readResult{p: bytes.Clone(b), err: err}
			select {
			case r.results <- res:
			case <-r.done:
				return
			}
			if err != nil {
				return
			}
		}
	}()
	p.t.Cleanup(func() { close(r.done) })
	return r
}

// poll waits at most d for the next result; ok is false if none came.
func (r *reader) poll(d time.Duration) (res readResult, ok bool) {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case res = <-r.results:
		return res, true
	case <-timer.C:
		return readResult{}, false
	}
}

// next returns the next frame, failing the test on an error or when no frame
// comes within frameTimeout.
func (r *reader) next(t *testing.T, what string) []byte {
	t.Helper()
	res, ok := r.poll(frameTimeout)
	if !ok {
		t.Fatalf("%s: no frame within %v", what, frameTimeout)
	}
	if res.err != nil {
		t.Fatalf("%s: ReadFrame: %v", what, res.err)
	}
	return res.p
}

// deliver writes want on w with WriteFrame and waits until r returns it,
// byte for byte; see deliverWith.
func (p *pair) deliver(t *testing.T, w transports.Conn, r *reader, want []byte, earlier [][]byte) {
	t.Helper()
	p.deliverWith(t, w, r, want, earlier, false)
}

// deliverEvent writes want on w with transports.WriteEvent (WriteDatagram
// on a transports.DatagramConn) and waits until r returns it; see
// deliverWith.
func (p *pair) deliverEvent(t *testing.T, w transports.Conn, r *reader, want []byte, earlier [][]byte) {
	t.Helper()
	p.deliverWith(t, w, r, want, earlier, true)
}

// deliverWith writes want on w, with transports.WriteEvent when event and
// with WriteFrame otherwise, and waits until r returns it, byte for byte.
// The frame is written from a scratch copy that is zeroed as soon as the
// write returns (the caller may reuse p then), before the Flush. Where
// caps do not promise to deliver frames written that way (see reliablePath)
// deliverWith resends up to maxSends times. On a transport that is not
// Reliable it skips late copies of the frames in earlier, which an earlier
// resend may have left in flight. Any other frame fails the test.
func (p *pair) deliverWith(t *testing.T, w transports.Conn, r *reader, want []byte, earlier [][]byte, event bool) {
	t.Helper()
	how := "WriteFrame"
	if event {
		how = "transports.WriteEvent"
	}
	reliable := reliablePath(p.caps, event)
	scratch := make([]byte, len(want))
	sends := 1
	if !reliable {
		sends = maxSends
	}
	for range sends {
		copy(scratch, want)
		err := Within(frameTimeout, func() error {
			if err := write(w, scratch, event); err != nil {
				return err
			}
			clear(scratch)
			return transports.Flush(w)
		})
		if err != nil {
			t.Fatalf("writing a %d-byte frame with %s: %v", len(want), how, err)
		}
		wait := frameTimeout
		if !reliable {
			wait = resendAfter
		}
		for {
			res, ok := r.poll(wait)
			if !ok {
				break
			}
			if res.err != nil {
				t.Fatalf("waiting for a %d-byte frame written with %s: ReadFrame: %v", len(want), how, res.err)
			}
			if bytes.Equal(res.p, want) {
				return
			}
			if !p.caps.Reliable && containsFrame(earlier, res.p) {
				continue
			}
			t.Fatalf("waiting for a %d-byte frame written with %s: %s", len(want), how, diff(res.p, want))
		}
	}
	switch {
	case p.caps.Reliable:
		t.Fatalf("a %d-byte frame written with %s did not arrive within %v", len(want), how, frameTimeout)
	case reliable:
		t.Fatalf("a %d-byte frame written with %s did not arrive within %v; Caps().ReliableControl promises every frame written with WriteFrame", len(want), how, frameTimeout)
	}
	t.Fatalf("a %d-byte frame written with %s was lost %d times in a row on loopback", len(want), how, sends)
}

func containsFrame(frames [][]byte, p []byte) bool {
	for _, f := range frames {
		if bytes.Equal(f, p) {
			return true
		}
	}
	return false
}

// diff describes how got differs from want.
func diff(got, want []byte) string {
	n := min(len(got), len(want))
	i := 0
	for i < n && got[i] == want[i] {
		i++
	}
	if i == n {
		return fmt.Sprintf("got %d bytes, want %d (one is a prefix of the other)", len(got), len(want))
	}
	return fmt.Sprintf("got %d bytes, want %d; first difference at byte %d (got %#02x, want %#02x)",
		len(got), len(want), i, got[i], want[i])
}

// Numbered frames carry a sequence number and a filler derived from it, so
// that a receiver can tell loss, duplication, reordering and corruption
// apart. Odd numbers are written with transports.WriteEvent (WriteDatagram
// on a transports.DatagramConn, the path that may lose them), even numbers
// with WriteFrame. Frames are opaque to a transport, so their first two
// bytes are those of an EVENT frame for numbers 1 and 2 modulo 4 and
// opaqueKind otherwise: both paths carry both shapes. Layout: 2 kind bytes,
// the number (8 bytes, big-endian), filler; the length varies with the
// number between numberedHeader and maxLen bytes.
const (
	numberedHeader = 10
	opaqueKind     = 0xee
)

// numberedEvent reports whether numbered frame seq is written with
// transports.WriteEvent rather than WriteFrame.
func numberedEvent(seq uint64) bool { return seq%2 == 1 }

// numberedMax is the largest numbered frame used with caps.
func numberedMax(caps transports.Caps) int { return min(caps.MaxFrame, 1024) }

func numberedLen(seq uint64, maxLen int) int {
	return numberedHeader + int(seq*37%uint64(maxLen-numberedHeader+1))
}

func fillerByte(seq uint64, i int) byte { return byte(seq*131) ^ byte(i*7+1) }

// appendNumbered appends numbered frame seq to dst.
func appendNumbered(dst []byte, seq uint64, maxLen int) []byte {
	if seq%4 == 1 || seq%4 == 2 {
		dst = append(dst, transports.Version, byte(transports.FrameEvent))
	} else {
		dst = append(dst, opaqueKind, opaqueKind)
	}
	dst = binary.BigEndian.AppendUint64(dst, seq)
	for i := range numberedLen(seq, maxLen) - numberedHeader {
		dst = append(dst, fillerByte(seq, i))
	}
	return dst
}

// parseNumbered returns the number of frame p, or an error saying how p is
// not an intact numbered frame.
func parseNumbered(p []byte, maxLen int) (uint64, error) {
	if len(p) < numberedHeader {
		return 0, fmt.Errorf("a %d-byte frame, shorter than any numbered frame", len(p))
	}
	seq := binary.BigEndian.Uint64(p[2:numberedHeader])
	if want := appendNumbered(nil, seq, maxLen); !bytes.Equal(p, want) {
		return seq, fmt.Errorf("frame #%d is corrupt: %s", seq, diff(p, want))
	}
	return seq, nil
}

// sendNumbered writes frames 0..n-1 on w from a new goroutine, odd ones
// with transports.WriteEvent and even ones with WriteFrame (see
// numberedEvent), flushing every 16 frames and at the end, and reports the
// first error (or nil) on the returned channel. On a transport that is not
// Reliable it sleeps 1 ms every 20 frames so that loopback loss stays rare.
// A blocked write ends when the test closes w.
func sendNumbered(w transports.Conn, caps transports.Caps, n int) <-chan error {
	errc := make(chan error, 1)
	go func() {
		maxLen := numberedMax(caps)
		buf := make([]byte, 0, maxLen)
		for seq := range uint64(n) {
			buf = appendNumbered(buf[:0], seq, maxLen)
			if err := write(w, buf, numberedEvent(seq)); err != nil {
				how := "WriteFrame"
				if numberedEvent(seq) {
					how = "WriteEvent"
				}
				errc <- fmt.Errorf("%s #%d: %w", how, seq, err)
				return
			}
			if seq%16 == 15 {
				if err := transports.Flush(w); err != nil {
					errc <- fmt.Errorf("Flush after #%d: %w", seq, err)
					return
				}
			}
			if !caps.Reliable && seq%20 == 19 {
				time.Sleep(time.Millisecond)
			}
		}
		errc <- transports.Flush(w)
	}()
	return errc
}

// receiveNumbered reads the frames sendNumbered(n) wrote and checks them
// against caps. Every frame must be intact and numbered below n. On a
// Reliable transport all n arrive, once each, in order when Ordered. On any
// other, at least 90% arrive, in increasing order when Ordered; and when
// ReliableControl, every frame written with WriteFrame (the even numbers)
// arrives, once, in order among themselves, whatever becomes of the events
// written with transports.WriteEvent. It returns how many distinct frames
// arrived.
func receiveNumbered(t *testing.T, r *reader, caps transports.Caps, n int) int {
	t.Helper()
	maxLen := numberedMax(caps)
	controls := (n + 1) / 2 // frames written with WriteFrame: the even numbers below n
	seen := make([]bool, n)
	count, dups, controlCount := 0, 0, 0
	var last uint64
	deadline := time.Now().Add(countTimeout)
	for count < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d frames after %v", count, n, countTimeout)
		}
		// Wait for a frame as long as one that was promised is missing.
		owed := caps.Reliable || (caps.ReliableControl && controlCount < controls)
		wait := frameTimeout
		if !owed {
			wait = quietTimeout
		}
		res, ok := r.poll(wait)
		if !ok {
			if caps.Reliable {
				t.Fatalf("%d of %d frames arrived, then none for %v", count, n, wait)
			}
			if owed {
				t.Fatalf("%d of the %d frames written with WriteFrame arrived, then none for %v; Caps().ReliableControl promises them all", controlCount, controls, wait)
			}
			break
		}
		if res.err != nil {
			t.Fatalf("ReadFrame after %d of %d frames: %v", count, n, res.err)
		}
		seq, err := parseNumbered(res.p, maxLen)
		control := !numberedEvent(seq)
		switch {
		case err != nil:
			t.Fatalf("after %d of %d frames: %v", count, n, err)
		case seq >= uint64(n):
			t.Fatalf("frame #%d arrived, but only #0..#%d were written", seq, n-1)
		case seen[seq] && caps.Reliable:
			t.Fatalf("frame #%d arrived twice on a reliable transport", seq)
		case seen[seq] && control && caps.ReliableControl:
			t.Fatalf("frame #%d, written with WriteFrame, arrived twice; Caps().ReliableControl promises it once", seq)
		case seen[seq]:
			dups++
			continue
		case caps.Ordered && caps.Reliable && seq != uint64(count):
			t.Fatalf("frame #%d arrived where #%d was due (lost or reordered)", seq, count)
		case control && caps.ReliableControl && seq != 2*uint64(controlCount):
			t.Fatalf("frame #%d, written with WriteFrame, arrived where #%d was due (lost or reordered); Caps().ReliableControl promises every such frame, in order", seq, 2*controlCount)
		case caps.Ordered && count > 0 && seq < last:
			t.Fatalf("frame #%d arrived after #%d on an ordered transport", seq, last)
		}
		seen[seq] = true
		last = seq
		count++
		if control {
			controlCount++
		}
	}
	if !caps.Reliable {
		t.Logf("%d of %d frames arrived (%d of the %d written with WriteFrame), %d duplicates", count, n, controlCount, controls, dups)
		if count < n*9/10 {
			t.Fatalf("only %d of %d frames arrived on loopback, want at least 90%%", count, n)
		}
	}
	return count
}
