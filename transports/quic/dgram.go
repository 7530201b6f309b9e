package quic

import (
	"bufio"
	"errors"
	"io"
	"time"

	quicgo "github.com/quic-go/quic-go"

	"github.com/evbench/evbench/transports"
	"github.com/evbench/evbench/transports/internal/lenprefix"
)

const (
	// inboundFrames is the capacity of the channel between a "quic-dgram"
	// Conn's two reading goroutines and ReadFrame.
	inboundFrames = 16
)

// inbound is one frame on its way to ReadFrame.
type inbound struct {
	p      []byte
	stream bool // p is a stream buffer, to be handed back to free
}

// dgramConn is a "quic-dgram" Conn. WriteFrame's frames travel on the
// stream, WriteDatagram's as DATAGRAM frames; one goroutine reads the stream
// and one receives datagrams, both feeding in.
type dgramConn struct {
	*base
	in        chan inbound
	free      chan []byte   // the stream reader's two buffers, when not in use
	readDone  chan struct{} // closed when the stream reader stops; readErr is then set
	readErr   error
	dgramDone chan struct{} // closed when the datagram receiver stops

	held    []byte // stream buffer last returned by ReadFrame
	holding bool   // held is to be handed back to free
	wbuf    []byte // length + frame for the stream, reused
}

var _ transports.DatagramConn = (*dgramConn)(nil)

// newDgramConn reads stream frames from src (b's stream, or a test's
// wrapper of it), each of which must arrive whole within readTimeout once
// started, and datagrams from b's connection.
func newDgramConn(b *base, src io.Reader, readTimeout time.Duration) *dgramConn {
	c := &dgramConn{
		base:      b,
		in:        make(chan inbound, inboundFrames),
		free:      make(chan []byte, 2),
		readDone:  make(chan struct{}),
		dgramDone: make(chan struct{}),
	}
	// Two buffers: the reader fills one while ReadFrame's caller holds the
	// other.
	c.free <- make([]byte, 0, DatagramMaxFrameBytes)
	c.free <- make([]byte, 0, DatagramMaxFrameBytes)
	go c.readStream(src, readTimeout)
	go c.receiveDatagrams()
	return c
}

// readStream feeds the frames from the stream to in until the stream
// fails or the Conn is closed.
func (c *dgramConn) readStream(src io.Reader, readTimeout time.Duration) {
	fr := lenprefix.NewReader(bufio.NewReaderSize(src, DatagramMaxFrameBytes+lenprefix.PrefixBytes), DatagramMaxFrameBytes)
	fr.SetReadTimeout(c.st, readTimeout)
	defer close(c.readDone)
	for {
		var buf []byte
		select {
		case buf = <-c.free:
		case <-c.ctx.Done():
			c.readErr = c.ctx.Err()
			return
		}
		p, err := fr.Next()
		if err != nil {
			c.readErr = err
			c.streamEnded(err)
			return
		}
		// p is valid only until the next Next, which runs while
		// ReadFrame's caller still holds this frame: hand on a copy.
		select {
		case c.in <- inbound{p: append(buf[:0], p...), stream: true}:
		case <-c.ctx.Done():
			c.readErr = c.ctx.Err()
			return
		}
	}
}

// receiveDatagrams feeds received datagrams to in until the connection is
// closed. quic-go allocates each datagram; it is handed on without a copy.
func (c *dgramConn) receiveDatagrams() {
	defer close(c.dgramDone)
	for {
		p, err := c.qc.ReceiveDatagram(c.ctx)
		if err != nil {
			return // the stream reader reports why
		}
		select {
		case c.in <- inbound{p: p}:
		case <-c.ctx.Done():
			return
		}
	}
}

// WriteFrame sends p on the stream, length-prefixed: reliably and in order
// with the other frames WriteFrame sends (Caps().ReliableControl), whatever
// p holds. A frame over DatagramMaxFrameBytes (Caps().MaxFrame) is an error
// wrapping transports.ErrFrameTooLarge and nothing is sent. It blocks while
// flow control holds the stream (a peer that does not read). After Close the
// error wraps net.ErrClosed.
func (c *dgramConn) WriteFrame(p []byte) error {
	if len(p) > DatagramMaxFrameBytes {
		return tooLarge("frame", len(p), DatagramMaxFrameBytes)
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.ctx.Err() != nil {
		return c.wrap("write", nil)
	}
	c.wbuf = lenprefix.Append(c.wbuf[:0], p)
	if _, err := c.st.Write(c.wbuf); err != nil {
		return c.wrap("write", err)
	}
	return nil
}

// WriteDatagram sends p as one QUIC DATAGRAM frame (RFC 9221), which the
// network may lose and quic-go never retransmits (transports.DatagramConn).
// A frame over DatagramMaxFrameBytes is an error wrapping
// transports.ErrFrameTooLarge and nothing is sent; so is a frame quic-go
// refuses because the path's packets are smaller than 1280 bytes. It blocks
// while quic-go's datagram send queue (32 frames) is full. quic-go copies
// p. After Close the error wraps net.ErrClosed.
func (c *dgramConn) WriteDatagram(p []byte) error {
	if len(p) > DatagramMaxFrameBytes {
		return tooLarge("datagram", len(p), DatagramMaxFrameBytes)
	}
	if c.ctx.Err() != nil {
		return c.wrap("write", nil)
	}
	if err := c.qc.SendDatagram(p); err != nil {
		if tl, ok := errors.AsType[*quicgo.DatagramTooLargeError](err); ok {
			return tooLarge("datagram", len(p), int(tl.MaxDatagramPayloadSize))
		}
		return c.wrap("write", err)
	}
	return nil
}

// ReadFrame returns the next frame from either the stream or a datagram, in
// the order they reach this package; the slice is valid until the next
// call. After the peer's Close the error wraps io.EOF, after Close
// net.ErrClosed.
func (c *dgramConn) ReadFrame() ([]byte, error) {
	if c.holding {
		c.free <- c.held // never blocks: there are two buffers
		c.held, c.holding = nil, false
	}
	select {
	case m := <-c.in:
		return c.take(m), nil
	case <-c.ctx.Done():
		return nil, c.wrap("read", nil)
	case <-c.readDone:
		// The stream reader closed the connection (or it was closed), so
		// the datagram receiver ends too, once it has handed on what
		// quic-go still held.
		for {
			select {
			case m := <-c.in:
				return c.take(m), nil
			case <-c.ctx.Done():
				return nil, c.wrap("read", nil)
			case <-c.dgramDone:
				select {
				case m := <-c.in:
					return c.take(m), nil
				default:
				}
				return nil, c.wrap("read", c.readErr)
			}
		}
	}
}

func (c *dgramConn) take(m inbound) []byte {
	if m.stream {
		c.held, c.holding = m.p[:0], true
	}
	return m.p
}
