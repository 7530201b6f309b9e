package transports_test

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/evbench/evbench/transports"
)

// silentTransport dials Conns that count the frames written to them and
// never answer; caps are what the transport claims.
type silentTransport struct {
	caps   transports.Caps
	writes atomic.Int64
}

func (t *silentTransport) Name() string          { return "silent" }
func (t *silentTransport) Caps() transports.Caps { return t.caps }
func (t *silentTransport) Listen(context.Context, string) (transports.Listener, error) {
	return nil, errors.New("silent: no server")
}
func (t *silentTransport) Dial(context.Context, string) (transports.Conn, error) {
	return &silentConn{t: t, closed: make(chan struct{})}, nil
}

type silentConn struct {
	t      *silentTransport
	once   sync.Once
	closed chan struct{}
}

func (c *silentConn) WriteFrame([]byte) error { c.t.writes.Add(1); return nil }
func (c *silentConn) ReadFrame() ([]byte, error) {
	<-c.closed
	return nil, net.ErrClosed
}
func (c *silentConn) Close() error         { c.once.Do(func() { close(c.closed) }); return nil }
func (c *silentConn) RemoteAddr() net.Addr { return nil }

// TestControlRetries: the Client re-sends an unanswered HELLO only over a
// transport whose control frames may be lost (not Caps.ReliableControl),
// such as udp; over quic-dgram, whose events are datagrams but whose
// control frames travel on a stream, it sends HELLO once.
func TestControlRetries(t *testing.T) {
	for _, tc := range []struct {
		name   string
		caps   transports.Caps
		resent bool
	}{
		{"control frames may be lost (udp)", transports.Caps{Datagram: true}, true},
		{"reliable control, datagram events (quic-dgram)", transports.Caps{ReliableControl: true, Datagram: true}, false},
		{"reliable (tcp)", transports.Caps{Reliable: true, ReliableControl: true, Ordered: true}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := &silentTransport{caps: tc.caps}
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			defer cancel()
			_, err := transports.Dial(ctx, tr, "nowhere", transports.ClientConfig{RetryInterval: time.Millisecond})
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("Dial = %v, want the deadline (no server answers)", err)
			}
			// Dial's Close sends a BYE when the writer is idle: one write
			// besides the HELLOs.
			hellos := tr.writes.Load() - 1
			if tc.resent && hellos < 2 {
				t.Errorf("HELLO written %d times in 100 ms at a 1 ms retry interval, want it re-sent", hellos)
			}
			if !tc.resent && hellos != 1 {
				t.Errorf("HELLO written %d times, want once: the transport promises its control frames arrive", hellos)
			}
		})
	}
}
