package transports_test

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/evbench/evbench/transports"
	"github.com/evbench/evbench/transports/tcp"
	"github.com/evbench/evbench/transports/transporttest"
	"github.com/evbench/evbench/transports/udp"
)

// promptly bounds a Close that has nothing to wait for.
const promptly = time.Second

// TestClientClose: Close returns promptly; before it Done is open and Err
// nil; after it Done is closed, Err wraps net.ErrClosed, a second Close
// returns nil, and Emit and Join fail with an error wrapping net.ErrClosed.
// The Hub sees a clean end: the session is gone and nothing is reported.
func TestClientClose(t *testing.T) {
	for _, tr := range bothTransports {
		t.Run(tr.Name(), func(t *testing.T) {
			var mu sync.Mutex
			var connErrs []error
			s := startHub(t, tr, transports.HubConfig{OnConnError: func(_ uint64, err error) {
				mu.Lock()
				connErrs = append(connErrs, err)
				mu.Unlock()
			}})
			m := s.dial(t, transports.ClientConfig{})
			m.join(t, "/", "r")
			select {
			case <-m.c.Done():
				t.Fatalf("Done closed before Close: %v", m.c.Err())
			default:
			}
			if err := m.c.Err(); err != nil {
				t.Fatalf("Err before Close = %v, want nil", err)
			}

			start := time.Now()
			if err := transporttest.Within(promptly, m.c.Close); err != nil {
				t.Fatalf("Close = %v, want nil within %v", err, promptly)
			}
			t.Logf("Close took %v", time.Since(start))
			select {
			case <-m.c.Done():
			default:
				t.Fatal("Done still open after Close returned")
			}
			if err := m.c.Err(); !errors.Is(err, net.ErrClosed) {
				t.Errorf("Err after Close = %v, want an error wrapping net.ErrClosed", err)
			}
			if err := transporttest.Within(promptly, m.c.Close); err != nil {
				t.Errorf("second Close = %v, want nil", err)
			}
			ev := transports.Frame{Namespace: []byte("/"), Room: []byte("r"), Name: []byte("msg")}
			if err := m.c.Emit(&ev, true); !errors.Is(err, net.ErrClosed) {
				t.Errorf("Emit after Close = %v, want an error wrapping net.ErrClosed", err)
			}
			if n := m.c.PendingAcks(); n != 0 {
				t.Errorf("PendingAcks after a failed Emit = %d, want 0", n)
			}
			ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
			defer cancel()
			if err := m.c.Join(ctx, "/", "other"); !errors.Is(err, net.ErrClosed) {
				t.Errorf("Join after Close = %v, want an error wrapping net.ErrClosed", err)
			}

			waitGone(t, s.hub)
			if st := s.hub.Stats(); st != (transports.HubStats{ClosedClean: 1}) {
				t.Errorf("Stats after the only client closed = %+v, want all zero but one clean close", st)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(connErrs) != 0 {
				t.Errorf("OnConnError called for a clean Close: %v", connErrs)
			}
		})
	}
}

// TestClientSeesServerGo: when the Hub closes, Done closes promptly and Err
// says why; Close afterwards returns promptly with nil (a clean end).
func TestClientSeesServerGo(t *testing.T) {
	s := startHub(t, tcp.Plain(), transports.HubConfig{})
	m := s.dial(t, transports.ClientConfig{})
	if err := transporttest.Within(closeTimeout, s.hub.Close); err != nil {
		t.Fatalf("Hub.Close: %v", err)
	}
	select {
	case <-m.c.Done():
	case <-time.After(closeTimeout):
		t.Fatal("Done still open after the Hub closed")
	}
	if err := m.c.Err(); err == nil {
		t.Error("Err = nil after the connection ended")
	}
	if err := transporttest.Within(promptly, m.c.Close); err != nil {
		t.Errorf("Close after the server went = %v, want nil", err)
	}
}

// TestClientCloseRacesServerEOF: Err wraps net.ErrClosed after Close even
// when the server, answering the BYE, ends the connection before Close
// closes its own side (the fake conn below forces that order).
func TestClientCloseRacesServerEOF(t *testing.T) {
	conn := newByeConn()
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	c, err := transports.Dial(ctx, fakeTransport{conn}, "fake", transports.ClientConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if c.ID() != byeConnID {
		t.Errorf("ID() = %d, want %d from the HELLO reply", c.ID(), byeConnID)
	}
	if err := transporttest.Within(promptly, c.Close); err != nil {
		t.Fatalf("Close = %v, want nil", err)
	}
	if err := c.Err(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Err after Close = %v, want an error wrapping net.ErrClosed", err)
	}
}

// TestDialTimesOutOnSilentServer: Dial to a server that accepts but never
// answers HELLO fails with the ctx's error once ctx ends, and leaves no
// goroutine behind.
func TestDialTimesOutOnSilentServer(t *testing.T) {
	ln, err := tcp.Plain().Listen(context.Background(), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan transports.Conn, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
		defer cancel()
		if c, err := ln.Accept(ctx); err == nil {
			accepted <- c
		}
		close(accepted)
	}()
	defer func() {
		for c := range accepted {
			c.Close()
		}
	}()
	const wait = 200 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	start := time.Now()
	c, err := transports.Dial(ctx, tcp.Plain(), ln.Addr().String(), transports.ClientConfig{})
	if err == nil {
		c.Close()
		t.Fatal("Dial succeeded without a HELLO reply")
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Dial = %v, want an error wrapping context.DeadlineExceeded", err)
	}
	if took := time.Since(start); took > wait+promptly {
		t.Errorf("Dial took %v with a %v deadline", took, wait)
	}
}

// TestDialIDInUse: a client asking for an id that is connected is refused
// (Dial fails promptly); the client holding the id is not disturbed.
func TestDialIDInUse(t *testing.T) {
	s := startHub(t, tcp.Plain(), transports.HubConfig{})
	first := s.dial(t, transports.ClientConfig{ID: 42})
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	c, err := transports.Dial(ctx, s.tr, s.addr, transports.ClientConfig{ID: 42})
	if err == nil {
		c.Close()
		t.Fatal("a second client got id 42")
	}
	if errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Dial = %v, want a prompt refusal, not the deadline", err)
	}
	select {
	case <-first.c.Done():
		t.Errorf("the client holding id 42 was disconnected: %v", first.c.Err())
	default:
	}
}

// TestEmitOverTransportLimit: an event over the transport's MaxFrame is
// refused by Emit with an error wrapping ErrFrameTooLarge (never truncated,
// never sent), and the connection stays usable.
func TestEmitOverTransportLimit(t *testing.T) {
	tr := udp.New(udp.Options{})
	s := startHub(t, tr, transports.HubConfig{})
	pub := s.dial(t, transports.ClientConfig{})
	sub := s.dial(t, transports.ClientConfig{})
	sub.join(t, "/", "r")
	big := make([]byte, tr.Caps().MaxFrame)
	ev := transports.Frame{Namespace: []byte("/"), Room: []byte("r"), Name: []byte("msg"), Payload: big}
	if err := pub.c.Emit(&ev, true); !errors.Is(err, transports.ErrFrameTooLarge) {
		t.Fatalf("Emit of a %d-byte payload over udp = %v, want an error wrapping ErrFrameTooLarge", len(big), err)
	}
	if n := pub.c.PendingAcks(); n != 0 {
		t.Errorf("PendingAcks after a refused Emit = %d, want 0", n)
	}
	pub.emit(t, "/", "r", 1, "small")
	got := expectCounts(t, []*inbox{sub.in}, []int{1})
	if len(got[0]) == 1 && got[0][0].payload != "small" {
		t.Errorf("received %+v, want only the small event", got[0][0])
	}
}

// fakeTransport dials one prepared Conn.
type fakeTransport struct{ c transports.Conn }

func (f fakeTransport) Name() string { return "fake" }
func (f fakeTransport) Caps() transports.Caps {
	return transports.Caps{Reliable: true, Ordered: true, MaxFrame: 1 << 16}
}
func (f fakeTransport) Listen(context.Context, string) (transports.Listener, error) {
	return nil, errors.New("fake: no Listen")
}
func (f fakeTransport) Dial(context.Context, string) (transports.Conn, error) { return f.c, nil }

const byeConnID = 99

// byeConn plays a server that answers HELLO with id byeConnID and, when
// the client writes BYE, ends the stream (io.EOF) before WriteFrame returns,
// that is before the client's Close can close the Conn itself.
type byeConn struct {
	hello     chan struct{} // closed when HELLO was written
	bye       chan struct{} // closed when BYE was written
	eofRead   chan struct{} // closed when ReadFrame returned io.EOF
	closed    chan struct{}
	helloSent bool // read side only
	once      sync.Once
	helloOnce sync.Once
}

func newByeConn() *byeConn {
	return &byeConn{hello: make(chan struct{}), bye: make(chan struct{}), eofRead: make(chan struct{}), closed: make(chan struct{})}
}

func (c *byeConn) WriteFrame(p []byte) error {
	var f transports.Frame
	if err := transports.DecodeFrame(p, &f); err != nil {
		return err
	}
	switch f.Type {
	case transports.FrameHello:
		c.helloOnce.Do(func() { close(c.hello) })
	case transports.FrameBye:
		close(c.bye)
		select {
		case <-c.eofRead:
		case <-time.After(closeTimeout):
			return errors.New("byeConn: the reader did not see the end of stream")
		}
	}
	return nil
}

func (c *byeConn) ReadFrame() ([]byte, error) {
	if !c.helloSent {
		select {
		case <-c.hello:
			c.helloSent = true
			return transports.AppendFrame(nil, &transports.Frame{Type: transports.FrameHello, Sender: byeConnID})
		case <-c.closed:
			return nil, net.ErrClosed
		}
	}
	select {
	case <-c.bye:
		close(c.eofRead)
		return nil, io.EOF
	case <-c.closed:
		return nil, net.ErrClosed
	}
}

func (c *byeConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return nil
}

func (c *byeConn) RemoteAddr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }

func TestClientPing(t *testing.T) {
	for _, tr := range []transports.Transport{tcp.Plain(), udp.New(udp.Options{})} {
		t.Run(tr.Name(), func(t *testing.T) {
			c := startHub(t, tr, transports.HubConfig{}).dial(t, transports.ClientConfig{}).c
			for range 3 {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				rtt, err := c.Ping(ctx)
				cancel()
				if err != nil {
					t.Fatal(err)
				}
				if rtt <= 0 || rtt > 5*time.Second {
					t.Errorf("ping RTT = %v, want a positive figure under the timeout", rtt)
				}
			}
		})
	}
}
