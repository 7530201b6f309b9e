package quic

import (
	"bufio"
	"context"
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
// stream, WriteDatagram's as DATAGRAM frames; its dgramReader merges what
// arrives on both for ReadFrame.
type dgramConn struct {
	*base
	r    *dgramReader
	wbuf []byte // length + frame for the stream, reused
}

var _ transports.DatagramConn = (*dgramConn)(nil)

// newDgramConn reads stream frames from src (b's stream, or a test's
// wrapper of it), each of which must arrive whole within readTimeout once
// started, and datagrams from b's connection.
func newDgramConn(b *base, src io.Reader, readTimeout time.Duration) *dgramConn {
	return &dgramConn{
		base: b,
		r:    newDgramReader(b.ctx, src, b.st, readTimeout, b.qc.ReceiveDatagram, b.streamEnded),
	}
}

// dgramReader is the receiving side of a "quic-dgram" Conn, written
// against plain functions and byte streams rather than quic-go's types, so
// that it can be driven without a QUIC connection (see FuzzDgramReader):
// one goroutine parses length-prefixed frames of at most
// DatagramMaxFrameBytes from the stream, one receives datagrams, and next
// returns their frames in the order they reach it. A received datagram is
// a frame as it is, whatever its length (quic-go has already bounded it by
// what one packet holds).
type dgramReader struct {
	ctx       context.Context // ends both goroutines when done (the Conn's Close)
	in        chan inbound
	free      chan []byte   // the stream reader's two buffers, when not in use
	readDone  chan struct{} // closed when the stream reader stops; readErr is then set
	readErr   error
	dgramDone chan struct{} // closed when the datagram receiver stops

	held    []byte // stream buffer last returned by next
	holding bool   // held is to be handed back to free
}

// newDgramReader starts reading frames from src, each of which must arrive
// whole within readTimeout once started (enforced through dl, which may be
// nil for none), and datagrams from receive, until ctx is done. When src
// fails for a reason other than ctx, streamEnded is called with the error;
// it is expected to make receive fail too (by closing the connection), so
// that next reports the stream's error once both have stopped.
func newDgramReader(ctx context.Context, src io.Reader, dl lenprefix.Deadliner, readTimeout time.Duration,
	receive func(context.Context) ([]byte, error), streamEnded func(error)) *dgramReader {
	r := &dgramReader{
		ctx:       ctx,
		in:        make(chan inbound, inboundFrames),
		free:      make(chan []byte, 2),
		readDone:  make(chan struct{}),
		dgramDone: make(chan struct{}),
	}
	// Two buffers: the reader fills one while next's caller holds the
	// other.
	r.free <- make([]byte, 0, DatagramMaxFrameBytes)
	r.free <- make([]byte, 0, DatagramMaxFrameBytes)
	go r.readStream(src, dl, readTimeout, streamEnded)
	go r.receiveDatagrams(receive)
	return r
}

// readStream feeds the frames from the stream to in until the stream
// fails or ctx is done.
func (r *dgramReader) readStream(src io.Reader, dl lenprefix.Deadliner, readTimeout time.Duration, streamEnded func(error)) {
	fr := lenprefix.NewReader(bufio.NewReaderSize(src, DatagramMaxFrameBytes+lenprefix.PrefixBytes), DatagramMaxFrameBytes)
	fr.SetReadTimeout(dl, readTimeout)
	defer close(r.readDone)
	for {
		var buf []byte
		select {
		case buf = <-r.free:
		case <-r.ctx.Done():
			r.readErr = r.ctx.Err()
			return
		}
		p, err := fr.Next()
		if err != nil {
			r.readErr = err
			streamEnded(err)
			return
		}
		// p is valid only until the next Next, which runs while next's
		// caller still holds this frame: hand on a copy.
		select {
		case r.in <- inbound{p: append(buf[:0], p...), stream: true}:
		case <-r.ctx.Done():
			r.readErr = r.ctx.Err()
			return
		}
	}
}

// receiveDatagrams feeds received datagrams to in until receive fails
// (the connection is closed) or ctx is done. quic-go allocates each
// datagram; it is handed on without a copy.
func (r *dgramReader) receiveDatagrams(receive func(context.Context) ([]byte, error)) {
	defer close(r.dgramDone)
	for {
		p, err := receive(r.ctx)
		if err != nil {
			return // the stream reader reports why
		}
		select {
		case r.in <- inbound{p: p}:
		case <-r.ctx.Done():
			return
		}
	}
}

// next returns the next frame from either the stream or a datagram; the
// slice is valid until the next call. Its error is ctx's once ctx is
// done, and otherwise, once the stream has failed and the datagram
// receiver has stopped with nothing left to hand on, the stream's error;
// every later call fails too. A call that starts after ctx is done fails
// at once, even with frames still on their way: without that check its
// select chose at random between them and ctx, so that ReadFrame after
// Close could return a frame, even after it had returned net.ErrClosed
// (found by FuzzDgramReader).
func (r *dgramReader) next() ([]byte, error) {
	if r.holding {
		r.free <- r.held // never blocks: there are two buffers
		r.held, r.holding = nil, false
	}
	if err := r.ctx.Err(); err != nil {
		return nil, err
	}
	select {
	case m := <-r.in:
		return r.take(m), nil
	case <-r.ctx.Done():
		return nil, r.ctx.Err()
	case <-r.readDone:
		// The stream reader closed the connection (or it was closed), so
		// the datagram receiver ends too, once it has handed on what
		// quic-go still held.
		for {
			select {
			case m := <-r.in:
				return r.take(m), nil
			case <-r.ctx.Done():
				return nil, r.ctx.Err()
			case <-r.dgramDone:
				select {
				case m := <-r.in:
					return r.take(m), nil
				default:
				}
				return nil, r.readErr
			}
		}
	}
}

func (r *dgramReader) take(m inbound) []byte {
	if m.stream {
		r.held, r.holding = m.p[:0], true
	}
	return m.p
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
	p, err := c.r.next()
	if err != nil {
		// After Close, wrap ignores err (ctx's) and reports net.ErrClosed.
		return nil, c.wrap("read", err)
	}
	return p, nil
}
