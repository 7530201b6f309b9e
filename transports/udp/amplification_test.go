package udp

import (
	"context"
	"errors"
	"net"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/evbench/evbench/transports"
)

// TestBlindJoinIsNotAmplified is the regression test of the reflection
// attack that address validation closes: an attacker on loopback that never
// reads its replies (as one that forged its source address could not) sends
// HELLO, then blind the protocol's HELLO frame and a JOIN of a busy room as
// DATA, and KEEPALIVEs, while an honest publisher in that room emits many
// events to an honest member. Without the cookie exchange the attacker's
// address would receive every broadcast; with it, it receives at most 3×
// what it sent (RFC 9000 §8.1).
func TestBlindJoinIsNotAmplified(t *testing.T) {
	const (
		room    = "busy"
		events  = 500
		payload = 200
	)
	tr := New(Options{})
	ln := listenWith(t, tr)
	hub := transports.NewHub(transports.HubConfig{})
	ctx, cancel := context.WithTimeout(context.Background(), 4*waitTimeout)
	defer cancel()
	served := make(chan error, 1)
	go func() { served <- hub.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		hub.Close()
		<-served
	})

	// The attacker.
	atk := newRawPeer(t)
	atk.sock.SetReadBuffer(4 << 20) // keep everything it is sent, to count it
	var sent, datagrams int
	send := func(d []byte) {
		atk.send(ln.Addr(), d)
		sent += len(d)
		datagrams++
	}
	hello := helloDatagram(kindHello, 0xbad)
	helloFrame, err := transports.AppendFrame([]byte{byte(kindData)}, &transports.Frame{Type: transports.FrameHello})
	if err != nil {
		t.Fatal(err)
	}
	join, err := transports.AppendFrame([]byte{byte(kindData)}, &transports.Frame{
		Type: transports.FrameJoin, Namespace: []byte(transports.DefaultNamespace), Room: []byte(room), AckID: 1,
	})
	if err != nil {
		t.Fatal(err)
	}
	guessed := cookieHelloDatagram(kindHello, 0xbad, make([]byte, cookieBytes)) // a blind guess at a cookie
	send(hello[:])
	const rounds = 3
	for range rounds {
		send(helloFrame)
		send(join)
		send(keepaliveDatagram)
	}
	send(guessed[:])
	// Every datagram but the first HELLO is dropped as unvalidated.
	eventually(t, "the attacker's datagrams dropped as unvalidated", func() bool {
		return ln.UnvalidatedDrops() == uint64(datagrams-1)
	})

	// The honest publisher and member of the room.
	var got, gotBytes atomic.Int64
	member, err := transports.Dial(ctx, tr, ln.Addr().String(), transports.ClientConfig{
		OnEvent: func(f *transports.Frame, _ int64) {
			got.Add(1)
			gotBytes.Add(int64(transports.EventFrameBytes(len(f.Namespace)+len(f.Room)+len(f.Name), len(f.Payload))))
		},
	})
	if err != nil {
		t.Fatalf("honest member's Dial: %v", err)
	}
	defer member.Close()
	pub, err := transports.Dial(ctx, tr, ln.Addr().String(), transports.ClientConfig{})
	if err != nil {
		t.Fatalf("honest publisher's Dial: %v", err)
	}
	defer pub.Close()
	for _, c := range []*transports.Client{member, pub} {
		if err := c.Join(ctx, transports.DefaultNamespace, room); err != nil {
			t.Fatalf("honest Join: %v", err)
		}
	}
	body := make([]byte, payload)
	for i := range events {
		ev := transports.Frame{Namespace: []byte(transports.DefaultNamespace), Room: []byte(room), Name: []byte("tick"), Seq: uint64(i), Payload: body}
		if err := pub.Emit(&ev, false); err != nil {
			t.Fatalf("Emit %d: %v", i, err)
		}
		if i%50 == 49 {
			// Let the Hub keep up, so that loopback loses little; the
			// PONG also proves every EMIT so far was broadcast.
			if _, err := pub.Ping(ctx); err != nil {
				t.Fatalf("Ping: %v", err)
			}
		}
	}
	eventually(t, "the honest member received events", func() bool { return got.Load() > 0 })

	// What reached the attacker's socket, which it never read until now.
	var recvd, recvDatagrams int
	buf := make([]byte, bufferBytes)
	for {
		atk.sock.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		n, _, err := atk.sock.ReadFrom(buf)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			break
		}
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				break
			}
			t.Fatalf("attacker read: %v", err)
		}
		recvd += n
		recvDatagrams++
	}
	perMember := events * (headerBytes + transports.EventFrameBytes(len(transports.DefaultNamespace)+len(room)+len("tick"), payload))
	t.Logf("attacker sent %d bytes in %d datagrams and received %d bytes in %d datagrams (%.2f×, bound %d×); "+
		"the honest member received %d of %d events (%d bytes of frames); a room member is sent %d bytes of DATA for them; "+
		"UnvalidatedDrops %d",
		sent, datagrams, recvd, recvDatagrams, float64(recvd)/float64(sent), amplificationFactor,
		got.Load(), events, gotBytes.Load(), perMember, ln.UnvalidatedDrops())
	if recvd > amplificationFactor*sent {
		t.Fatalf("attacker received %d bytes for %d sent: over %d×", recvd, sent, amplificationFactor)
	}
	// Two COOKIEs, for the HELLO and for the guessed cookie, and nothing else.
	if recvDatagrams != 2 || recvd != 2*cookieDatagramBytes {
		t.Errorf("attacker received %d datagrams of %d bytes, want 2 COOKIEs of %d", recvDatagrams, recvd, cookieDatagramBytes)
	}
}
