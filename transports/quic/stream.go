package quic

import (
	"bufio"
	"io"
	"time"

	"github.com/evbench/evbench/transports"
	"github.com/evbench/evbench/transports/internal/lenprefix"
)

// Sizes, in bytes, of the buffers between a Conn and its stream.
const (
	readBufferBytes  = 32 << 10 // bufio.Reader over the "quic" stream (as tcp's)
	writeBufferBytes = 32 << 10 // bufio.Writer over the "quic" stream (as tcp's)
)

// streamConn is a "quic" Conn: every frame on the stream, writes buffered.
type streamConn struct {
	*base
	fr *lenprefix.Reader
	bw *bufio.Writer
}

var (
	_ transports.Conn    = (*streamConn)(nil)
	_ transports.Flusher = (*streamConn)(nil)
)

// newStreamConn reads frames from src (b's stream, or a test's wrapper of
// it), each of which must arrive whole within readTimeout once started.
func newStreamConn(b *base, src io.Reader, readTimeout time.Duration) *streamConn {
	c := &streamConn{
		base: b,
		fr:   lenprefix.NewReader(bufio.NewReaderSize(src, readBufferBytes), StreamMaxFrameBytes),
		bw:   bufio.NewWriterSize(b.st, writeBufferBytes),
	}
	c.fr.SetReadTimeout(b.st, readTimeout)
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
	if err := lenprefix.WriteFrame(c.bw, p); err != nil {
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
// can no longer be parsed; so does a frame not complete within
// Config.ReadTimeout of its first byte, an error wrapping
// transports.ErrReadTimeout.
func (c *streamConn) ReadFrame() ([]byte, error) {
	p, err := c.fr.Next()
	if err != nil {
		c.streamEnded(err)
		return nil, c.wrap("read", err)
	}
	return p, nil
}
