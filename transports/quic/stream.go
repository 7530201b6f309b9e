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
	readBufferBytes  = 64 << 10 // bufio.Reader over the stream
	writeBufferBytes = 64 << 10 // bufio.Writer over the "quic" stream
)

// frameReader reads length-prefixed frames from a stream into one buffer
// that it reuses and grows to the largest frame seen.
type frameReader struct {
	r   *bufio.Reader
	err error // sticky: once set, the stream is out of step or gone
}

// next reads one frame into buf, growing it when needed, and returns the
// frame and the (possibly new) buffer. Lengths over StreamMaxFrameBytes are
// an error wrapping transports.ErrFrameTooLarge, after which every call
// fails, because the stream can no longer be parsed.
func (fr *frameReader) next(buf []byte) (frame, grown []byte, err error) {
	if fr.err != nil {
		return nil, buf, fr.err
	}
	hdr, err := fr.r.Peek(lengthBytes)
	if err != nil {
		fr.err = err
		return nil, buf, err
	}
	n := int(binary.BigEndian.Uint32(hdr))
	if n > StreamMaxFrameBytes {
		fr.err = fmt.Errorf("peer sent a %w", tooLarge("frame", n, StreamMaxFrameBytes))
		return nil, buf, fr.err
	}
	fr.r.Discard(lengthBytes)
	if n > cap(buf) {
		buf = make([]byte, n)
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
	return &streamConn{
		base: b,
		fr:   frameReader{r: bufio.NewReaderSize(b.st, readBufferBytes)},
		bw:   bufio.NewWriterSize(b.st, writeBufferBytes),
	}
}

// WriteFrame buffers one frame; Flush (or a full buffer) sends it. A frame
// over StreamMaxFrameBytes is an error wrapping transports.ErrFrameTooLarge
// and nothing is written. After Close the error wraps net.ErrClosed.
func (c *streamConn) WriteFrame(p []byte) error {
	if len(p) > StreamMaxFrameBytes {
		return tooLarge("frame", len(p), StreamMaxFrameBytes)
	}
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
	if err := c.bw.Flush(); err != nil {
		return c.wrap("write", err)
	}
	return nil
}

// ReadFrame returns the next frame; the slice is valid until the next call.
// After the peer's Close the error wraps io.EOF, after Close net.ErrClosed.
func (c *streamConn) ReadFrame() ([]byte, error) {
	p, buf, err := c.fr.next(c.rbuf)
	c.rbuf = buf
	if err != nil {
		return nil, c.wrap("read", err)
	}
	return p, nil
}
