package transporttest

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"

	"github.com/evbench/evbench/transports"
)

// fakeTransport is an in-memory transport for testing the suite itself: each
// connection is a net.Pipe carrying frames behind a 4-byte big-endian length.
// Like tcp it buffers writes until Flush (or fakeFlushBytes), and net.Pipe's
// unbuffered Write gives it flow control: a writer blocks until the peer
// reads. With flaw == "" it meets the whole contract; each other flaw breaks
// one promise, so that tests can show the suite catches it.
//
// With datagram (or flawControlDrops) it stands for quic-dgram instead: its
// Conns are transports.DatagramConns whose WriteDatagram loses every
// fakeDatagramDropEvery-th frame, as the network may, and its Caps promise
// ReliableControl but neither Reliable nor Ordered.
type fakeTransport struct {
	flaw     flaw
	datagram bool
}

// flaw names one way a fake transport breaks the contract.
type flaw string

const (
	flawNone          flaw = ""
	flawTruncates     flaw = "truncates"        // cuts oversized frames to MaxFrame instead of refusing them
	flawKeepsBuffer   flaw = "keeps-buffer"     // WriteFrame keeps p until Flush instead of copying it
	flawDrops         flaw = "drops"            // silently drops every 100th frame while claiming Reliable
	flawCloseNoUnblk  flaw = "close-no-unblock" // Close leaves a blocked ReadFrame or WriteFrame blocked
	flawPlainCloseErr flaw = "plain-close-err"  // errors after Close do not wrap net.ErrClosed
	flawResetOnClose  flaw = "reset-on-close"   // a peer's close reads as a reset, not io.EOF
	flawAcceptNoCtx   flaw = "accept-no-ctx"    // Accept ignores its ctx
	flawDialNoCtx     flaw = "dial-no-ctx"      // Dial ignores its ctx
	flawLeaks         flaw = "leaks"            // every Dial leaves a goroutine behind
	flawControlDrops  flaw = "control-drops"    // a datagram fake that drops every 100th WriteFrame frame while claiming ReliableControl
)

const (
	fakeMaxFrame          = 64 << 10
	fakeFlushBytes        = 64 << 10
	fakeDatagramDropEvery = 10
)

// fakeDatagramsDropped counts the frames every datagram fake's WriteDatagram
// has lost.
var fakeDatagramsDropped atomic.Int64

// fakeNet maps the addresses of open fake listeners to them. The ports are
// made up; no socket is opened.
var fakeNet = struct {
	sync.Mutex
	listeners map[string]*fakeListener
	lastPort  int
}{listeners: map[string]*fakeListener{}, lastPort: 40000}

// leaked is never closed: flawLeaks goroutines wait on it forever.
var leaked = make(chan struct{})

func (f *fakeTransport) Name() string { return "fake-" + string(f.flaw) }

// datagrams reports whether f stands for quic-dgram (see fakeTransport).
func (f *fakeTransport) datagrams() bool { return f.datagram || f.flaw == flawControlDrops }

func (f *fakeTransport) Caps() transports.Caps {
	if f.datagrams() {
		return transports.Caps{ReliableControl: true, Datagram: true, MaxFrame: fakeMaxFrame}
	}
	return transports.Caps{Reliable: true, ReliableControl: true, Ordered: true, MaxFrame: fakeMaxFrame}
}

func (f *fakeTransport) Listen(ctx context.Context, addr string) (transports.Listener, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	fakeNet.Lock()
	defer fakeNet.Unlock()
	fakeNet.lastPort++
	l := &fakeListener{
		flaw:   f.flaw,
		addr:   &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: fakeNet.lastPort},
		queue:  make(chan *fakeConn, 16),
		closed: make(chan struct{}),
	}
	fakeNet.listeners[l.addr.String()] = l
	return l, nil
}

func (f *fakeTransport) Dial(ctx context.Context, addr string) (transports.Conn, error) {
	if f.flaw != flawDialNoCtx {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("fake dial %s: %w", addr, err)
		}
	}
	a, b := net.Pipe()
	client := &fakeConn{flaw: f.flaw, datagram: f.datagrams(), pipe: a}
	server := &fakeConn{flaw: f.flaw, datagram: f.datagrams(), pipe: b}
	fakeNet.Lock()
	defer fakeNet.Unlock()
	l := fakeNet.listeners[addr]
	queued := false
	if l != nil {
		fakeNet.lastPort++
		client.remote = l.addr
		server.remote = &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: fakeNet.lastPort}
		select {
		case l.queue <- server:
			queued = true
		default: // backlog full
		}
	}
	if !queued {
		client.Close()
		server.Close()
		return nil, fmt.Errorf("fake dial %s: connection refused", addr)
	}
	if f.flaw == flawLeaks {
		go func() { <-leaked }()
	}
	return client.conn(), nil
}

type fakeListener struct {
	flaw      flaw
	addr      net.Addr
	queue     chan *fakeConn // dialled, not yet accepted
	closeOnce sync.Once
	closed    chan struct{}
}

func (l *fakeListener) Accept(ctx context.Context) (transports.Conn, error) {
	done := ctx.Done()
	if l.flaw == flawAcceptNoCtx {
		done = nil
	} else if err := ctx.Err(); err != nil {
		return nil, err
	}
	select {
	case <-l.closed:
		return nil, fmt.Errorf("fake accept: %w", net.ErrClosed)
	default:
	}
	select {
	case c := <-l.queue:
		return c.conn(), nil
	case <-l.closed:
		return nil, fmt.Errorf("fake accept: %w", net.ErrClosed)
	case <-done:
		return nil, ctx.Err()
	}
}

func (l *fakeListener) Addr() net.Addr { return l.addr }

// Close unblocks Accept and closes the Conns not yet accepted; accepted ones
// stay open. Dial queues a Conn under the fakeNet lock, which Close takes to
// unregister the listener, so after Close no Dial can queue one.
func (l *fakeListener) Close() error {
	err := fmt.Errorf("fake listener close: %w", net.ErrClosed)
	l.closeOnce.Do(func() {
		err = nil
		fakeNet.Lock()
		delete(fakeNet.listeners, l.addr.String())
		close(l.closed)
		fakeNet.Unlock()
		for {
			select {
			case c := <-l.queue:
				c.Close()
			default:
				return
			}
		}
	})
	return err
}

// fakeConn is one end of a fake connection. WriteFrame and Flush touch only
// the write side, ReadFrame only the read side; Close may run at any time.
type fakeConn struct {
	flaw     flaw
	datagram bool // handed out as a fakeDatagramConn
	pipe     net.Conn
	remote   net.Addr
	closed   atomic.Bool

	wbuf    []byte   // encoded frames not yet flushed (writer only)
	pending [][]byte // flawKeepsBuffer: frames kept by reference (writer only)
	writes  int      // frames written with WriteFrame (writer only)
	dgrams  int      // frames written with WriteDatagram (writer only)

	hdr  [4]byte // reader only
	rbuf []byte  // reader only
}

// conn returns c as the Conn the transport hands out.
func (c *fakeConn) conn() transports.Conn {
	if c.datagram {
		return &fakeDatagramConn{c}
	}
	return c
}

func (c *fakeConn) WriteFrame(p []byte) error {
	if c.closed.Load() {
		return c.wrap("write", io.ErrClosedPipe)
	}
	if len(p) > fakeMaxFrame {
		if c.flaw != flawTruncates {
			return fmt.Errorf("fake write: %d-byte frame: %w (max %d)", len(p), transports.ErrFrameTooLarge, fakeMaxFrame)
		}
		p = p[:fakeMaxFrame]
	}
	c.writes++
	if (c.flaw == flawDrops || c.flaw == flawControlDrops) && c.writes%100 == 0 {
		return nil
	}
	return c.queue(p)
}

// queue adds p to the frames a Flush sends.
func (c *fakeConn) queue(p []byte) error {
	if c.flaw == flawKeepsBuffer {
		c.pending = append(c.pending, p)
		return nil
	}
	c.wbuf = binary.BigEndian.AppendUint32(c.wbuf, uint32(len(p)))
	c.wbuf = append(c.wbuf, p...)
	if len(c.wbuf) >= fakeFlushBytes {
		return c.Flush()
	}
	return nil
}

func (c *fakeConn) Flush() error {
	for _, p := range c.pending {
		c.wbuf = binary.BigEndian.AppendUint32(c.wbuf, uint32(len(p)))
		c.wbuf = append(c.wbuf, p...)
	}
	c.pending = c.pending[:0]
	if c.closed.Load() {
		c.wbuf = c.wbuf[:0]
		return c.wrap("flush", io.ErrClosedPipe)
	}
	if len(c.wbuf) == 0 {
		return nil
	}
	_, err := c.pipe.Write(c.wbuf)
	c.wbuf = c.wbuf[:0]
	return c.wrap("write", err)
}

func (c *fakeConn) ReadFrame() ([]byte, error) {
	if _, err := io.ReadFull(c.pipe, c.hdr[:]); err != nil {
		return nil, c.wrap("read", err)
	}
	n := binary.BigEndian.Uint32(c.hdr[:])
	if n > fakeMaxFrame {
		return nil, fmt.Errorf("fake read: %d-byte frame: %w", n, transports.ErrFrameTooLarge)
	}
	if cap(c.rbuf) < int(n) {
		c.rbuf = make([]byte, n)
	}
	b := c.rbuf[:n]
	if _, err := io.ReadFull(c.pipe, b); err != nil {
		return nil, c.wrap("read", err)
	}
	return b, nil
}

// wrap turns a pipe error into the error the contract asks for: net.ErrClosed
// after our own Close, io.EOF (wrapped) after the peer's.
func (c *fakeConn) wrap(op string, err error) error {
	switch {
	case err == nil:
		return nil
	case c.closed.Load() && c.flaw == flawPlainCloseErr:
		return errors.New("fake " + op + ": connection closed")
	case c.closed.Load():
		return fmt.Errorf("fake %s: %w", op, net.ErrClosed)
	case errors.Is(err, io.EOF) && c.flaw == flawResetOnClose:
		return errors.New("fake " + op + ": connection reset by peer")
	default:
		return fmt.Errorf("fake %s: %w", op, err)
	}
}

func (c *fakeConn) Close() error {
	c.closed.Store(true)
	if c.flaw == flawCloseNoUnblk {
		return nil
	}
	return c.pipe.Close()
}

func (c *fakeConn) RemoteAddr() net.Addr { return c.remote }

// fakeDatagramConn is a fakeConn of a datagram fake: a
// transports.DatagramConn.
type fakeDatagramConn struct{ *fakeConn }

var _ transports.DatagramConn = (*fakeDatagramConn)(nil)

// WriteDatagram queues p like WriteFrame, but loses every
// fakeDatagramDropEvery-th frame, which DatagramConn allows.
func (c *fakeDatagramConn) WriteDatagram(p []byte) error {
	if c.closed.Load() {
		return c.wrap("write", io.ErrClosedPipe)
	}
	if len(p) > fakeMaxFrame {
		return fmt.Errorf("fake datagram: %d-byte frame: %w (max %d)", len(p), transports.ErrFrameTooLarge, fakeMaxFrame)
	}
	c.dgrams++
	if c.dgrams%fakeDatagramDropEvery == 0 {
		fakeDatagramsDropped.Add(1)
		return nil
	}
	return c.queue(p)
}
