package bench_test

import (
	"context"
	"os"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/evbench/evbench/bench"
	"github.com/evbench/evbench/transports"
)

// TestMain fails the package if any test leaves a goroutine behind: the
// Runner's hub, listener, clients and publishers must all be gone when Run
// returns.
func TestMain(m *testing.M) {
	if names := os.Getenv(serveEnv); names != "" {
		os.Exit(serveInChild(names)) // a server for TestServerInAnotherProcess
	}
	goleak.VerifyTestMain(m)
}

// fakeClock is a virtual run clock: SleepUntil jumps straight to the wake-up
// time and sends advance it by their cost, so schedules can be checked to the
// nanosecond. It is used by one goroutine at a time, like the Runner's clocks.
type fakeClock struct{ now int64 }

var _ bench.Clock = (*fakeClock)(nil)

func (c *fakeClock) Now() int64 { return c.now }

func (c *fakeClock) SleepUntil(ctx context.Context, t int64) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.now = max(c.now, t)
	return nil
}

// advance models a send that takes d.
func (c *fakeClock) advance(d time.Duration) { c.now += int64(d) }

// hookTransport wraps a real transport for the run-level tests. On the client
// side (Dial) it can delay every event frame (EMIT) by emitDelay before it is
// written, as a slow publisher's WriteFrame would, and it calls onWrite with
// every frame a client writes; the server side (Listen) is the wrapped
// transport's own.
type hookTransport struct {
	transports.Transport
	name      string
	emitDelay time.Duration
	dropEmits bool // a path that loses every event
	onWrite   func(c *hookConn, p []byte)
}

func (t *hookTransport) Name() string { return t.name }

func (t *hookTransport) Dial(ctx context.Context, addr string) (transports.Conn, error) {
	c, err := t.Transport.Dial(ctx, addr)
	if err != nil {
		return nil, err
	}
	return &hookConn{Conn: c, t: t, closed: make(chan struct{})}, nil
}

// hookConn is a client Conn of a hookTransport. Close interrupts a delayed
// WriteFrame, as the Conn contract requires.
type hookConn struct {
	transports.Conn
	t      *hookTransport
	closed chan struct{}
	once   sync.Once
}

var _ transports.Flusher = (*hookConn)(nil)

func (c *hookConn) WriteFrame(p []byte) error {
	if c.t.onWrite != nil {
		c.t.onWrite(c, p)
	}
	if c.t.dropEmits && isEvent(p) {
		return nil
	}
	if c.t.emitDelay > 0 && isEvent(p) {
		tm := time.NewTimer(c.t.emitDelay)
		select {
		case <-tm.C:
		case <-c.closed:
			tm.Stop()
		}
	}
	return c.Conn.WriteFrame(p)
}

// Flush passes through, so a buffering transport (tcp) still sends.
func (c *hookConn) Flush() error { return transports.Flush(c.Conn) }

func (c *hookConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return c.Conn.Close()
}

// isEvent reports whether the encoded frame p is an EMIT or an EVENT.
func isEvent(p []byte) bool {
	var f transports.Frame
	return transports.DecodeFrame(p, &f) == nil && (f.Type == transports.FrameEmit || f.Type == transports.FrameEvent)
}
