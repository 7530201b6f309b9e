package tcp

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"time"

	"github.com/evbench/evbench/transports"
	"github.com/evbench/evbench/transports/internal/lenprefix"
)

// conn is a transports.Conn over one TCP connection (plain or TLS). Frames
// are a 4-byte big-endian length followed by that many bytes.
//
// The reading side (ReadFrame) owns fr; the writing side (WriteFrame,
// Flush) owns bw; closed is shared.
type conn struct {
	name string   // "tcp" or "tcp+tls", prefixed to errors
	nc   net.Conn // as dialled or accepted (*net.TCPConn by default), or a *tls.Conn over it
	fr   *lenprefix.Reader
	bw   *bufio.Writer

	closed atomic.Bool
}

var (
	_ transports.Conn    = (*conn)(nil)
	_ transports.Flusher = (*conn)(nil)
)

// newConn wraps nc; a frame that has started to arrive must arrive whole
// within readTimeout (see ReadFrame).
func newConn(name string, nc net.Conn, readTimeout time.Duration) *conn {
	c := &conn{
		name: name,
		nc:   nc,
		fr:   lenprefix.NewReader(bufio.NewReaderSize(nc, BufferBytes), MaxFrameBytes),
		bw:   bufio.NewWriterSize(nc, BufferBytes),
	}
	c.fr.SetReadTimeout(nc, readTimeout)
	return c
}

// WriteFrame appends the length prefix and p to the write buffer; the bytes
// reach the peer on Flush or when the buffer fills. A frame over
// MaxFrameBytes is refused with an error wrapping transports.ErrFrameTooLarge
// before anything is written, and the connection stays usable. After Close
// the error wraps net.ErrClosed. It does not allocate.
func (c *conn) WriteFrame(p []byte) error {
	if len(p) > MaxFrameBytes {
		return fmt.Errorf("%s: write frame of %d bytes: %w (max %d)", c.name, len(p), transports.ErrFrameTooLarge, MaxFrameBytes)
	}
	if c.closed.Load() {
		return c.closedErr("write")
	}
	if err := lenprefix.WriteFrame(c.bw, p); err != nil {
		return c.ioErr("write", err)
	}
	return nil
}

// Flush sends the buffered frames. It belongs to the writing side: call it
// from the goroutine that calls WriteFrame, typically when that goroutine's
// queue is empty. After Close the error wraps net.ErrClosed.
func (c *conn) Flush() error {
	if c.closed.Load() {
		return c.closedErr("flush")
	}
	if err := c.bw.Flush(); err != nil {
		return c.ioErr("flush", err)
	}
	return nil
}

// ReadFrame returns the next frame. The slice points into a buffer owned by
// the Conn and is valid until the next ReadFrame. A clean end of stream
// between frames is io.EOF; one inside a prefix or frame is
// io.ErrUnexpectedEOF (wrapped). A length prefix over MaxFrameBytes is a
// protocol error wrapping transports.ErrFrameTooLarge; the stream cannot be
// resynchronised, so every later ReadFrame fails the same way and the
// caller should Close. A frame whose first byte has arrived but which is not
// complete within the transport's Config.ReadTimeout (default
// transports.DefaultReadTimeout) is an error wrapping
// transports.ErrReadTimeout, final like the others; the wait for a frame
// to start is not bounded. After Close the error wraps net.ErrClosed.
//
// Memory: frames that fit the read buffer are returned in place; larger
// ones are copied into a buffer that grows as their bytes arrive, never to
// the announced length up front, and that is not kept past its frame when
// over lenprefix.RetainBytes (1 MiB). In steady state ReadFrame does not
// allocate, and it sets a read deadline only for a frame that has to wait
// for more of its bytes.
func (c *conn) ReadFrame() ([]byte, error) {
	if c.closed.Load() {
		return nil, c.closedErr("read")
	}
	p, err := c.fr.Next()
	if err != nil {
		if c.closed.Load() {
			return nil, c.closedErr("read")
		}
		if err != io.EOF {
			err = fmt.Errorf("%s: read: %w", c.name, err)
		}
		return nil, err
	}
	return p, nil
}

// Close closes the connection; frames written but not flushed are discarded.
// It unblocks a pending ReadFrame, WriteFrame or Flush, which then return an
// error wrapping net.ErrClosed. For tcp+tls it first sends a TLS close_notify
// alert (RFC 8446 section 6.1) unless a write is in flight; crypto/tls bounds
// that send by 5 s, and a failure to send it (the peer already gone) is not
// reported, since the connection is released either way. Calls after the
// first return nil.
func (c *conn) Close() error {
	if !c.closed.CompareAndSwap(false, true) {
		return nil
	}
	if tc, ok := c.nc.(*tls.Conn); ok {
		// tls.Conn.Close always closes the TCP connection; its error is
		// the failed close_notify, which the peer can no longer use.
		tc.Close()
		return nil
	}
	if err := c.nc.Close(); err != nil {
		return fmt.Errorf("%s: close: %w", c.name, err)
	}
	return nil
}

// RemoteAddr is the peer's TCP address.
func (c *conn) RemoteAddr() net.Addr { return c.nc.RemoteAddr() }

// closedErr is the error of an operation on a closed Conn.
func (c *conn) closedErr(op string) error {
	return fmt.Errorf("%s: %s: %w", c.name, op, net.ErrClosed)
}

// ioErr wraps a write-side error, reporting net.ErrClosed when Close caused it.
func (c *conn) ioErr(op string, err error) error {
	if c.closed.Load() && !errors.Is(err, net.ErrClosed) {
		return c.closedErr(op)
	}
	return fmt.Errorf("%s: %s: %w", c.name, op, err)
}
