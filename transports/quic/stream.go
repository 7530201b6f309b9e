package quic

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"

	"github.com/evbench/evbench/transports"
)

// Sizes, in bytes, of the buffers between a Conn and its stream.
const (
	lengthBytes      = 4        // big-endian length before every frame on a stream
	readBufferBytes  = 32 << 10 // bufio.Reader over the "quic" stream (as tcp's)
	writeBufferBytes = 32 << 10 // bufio.Writer over the "quic" stream (as tcp's)
)

// frameReader reads length-prefixed frames from a stream into one buffer
// that it reuses and grows to the largest frame seen.
type frameReader struct {
	r   *bufio.Reader
	max int   // largest frame accepted, in bytes
	err error // sticky: once set, the stream is out of step or gone
}

// next reads one frame into buf, growing it when needed, and returns the
// frame and the (possibly new) buffer. Lengths over fr.max are
// an error wrapping transports.ErrFrameTooLarge, after which every call
// fails, because the stream can no longer be parsed.
func (fr *frameReader) next(buf []byte) (frame, grown []byte, err error) {
	if fr.err != nil {
		return nil, buf, fr.err
	}
	hdr, err := fr.r.Peek(lengthBytes)
	if err != nil {
		if err == io.EOF && len(hdr) > 0 {
			err = io.ErrUnexpectedEOF
		}
		fr.err = err
		return nil, buf, err
	}
	n := int(binary.BigEndian.Uint32(hdr))
	if n > fr.max {
		fr.err = fmt.Errorf("the peer sent a frame length of %d bytes: %w (max %d)", n, transports.ErrFrameTooLarge, fr.max)
		return nil, buf, fr.err
	}
	fr.r.Discard(lengthBytes)
	if n > cap(buf) {
		// Grow geometrically, so that slowly growing frames do not
		// reallocate each time.
		buf = make([]byte, n, max(n, min(2*cap(buf), fr.max), 1<<10))
	}
	buf = buf[:n]
	if _, err := io.ReadFull(fr.r, buf); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		fr.err = err
		return nil, buf, err
	}
	return buf, buf, nil
}

// streamConn is a "quic" Conn: every frame on the stream, writes buffered.
type streamConn struct {
	*base
	fr   frameReader
	rbuf []byte
	bw   *bufio.Writer
	hdr  [lengthBytes]byte
}

var (
	_ transports.Conn    = (*streamConn)(nil)
	_ transports.Flusher = (*streamConn)(nil)
)

func newStreamConn(b *base) *streamConn {
	c := &streamConn{
		base: b,
		fr:   frameReader{r: bufio.NewReaderSize(b.st, readBufferBytes), max: StreamMaxFrameBytes},
		bw:   bufio.NewWriterSize(b.st, writeBufferBytes),
	}
	b.flush = c.bw.Flush
	return c
}

// WriteFrame buffers one frame; Flush (or a full buffer) sends it. It blocks
// while quic-go's flow control holds the stream (a peer that does not read). A frame
// over StreamMaxFrameBytes is an error wrapping transports.ErrFrameTooLarge
// and nothing is written. After Close the error wraps net.ErrClosed.
func (c *streamConn) WriteFrame(p []byte) error {
	if len(p) > StreamMaxFrameBytes {
		return tooLarge("frame", len(p), StreamMaxFrameBytes)
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.ctx.Err() != nil {
		return c.wrap("write", nil)
	}
	binary.BigEndian.PutUint32(c.hdr[:], uint32(len(p)))
	if _, err := c.bw.Write(c.hdr[:]); err != nil {
		return c.wrap("write", err)
	}
	if _, err := c.bw.Write(p); err != nil {
		return c.wrap("write", err)
	}
	return nil
}

// Flush hands the buffered frames to quic-go, which sends them as flow and
// congestion control allow. It is called by the goroutine that writes.
func (c *streamConn) Flush() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.ctx.Err() != nil {
		return c.wrap("write", nil)
	}
	if err := c.bw.Flush(); err != nil {
		return c.wrap("write", err)
	}
	return nil
}

// ReadFrame returns the next frame; the slice is valid until the next call.
// After the peer's Close the error wraps io.EOF, after Close net.ErrClosed.
// A length over StreamMaxFrameBytes is an error wrapping
// transports.ErrFrameTooLarge and closes the connection, since the stream
// can no longer be parsed.
func (c *streamConn) ReadFrame() ([]byte, error) {
	p, buf, err := c.fr.next(c.rbuf)
	c.rbuf = buf
	if err != nil {
		c.streamEnded(err)
		return nil, c.wrap("read", err)
	}
	return p, nil
}
