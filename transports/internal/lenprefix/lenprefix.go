// Package lenprefix reads and writes the framing shared by the stream
// transports (tcp, tcp+tls, and the stream of quic and quic-dgram): each
// frame is a 4-byte big-endian length followed by that many bytes.
//
// A Reader is safe to expose to a hostile peer: it never allocates what a
// length prefix announces before the bytes arrive (a frame's buffer grows
// geometrically from the bytes received, see Reader.Next), it does not keep
// a buffer over RetainBytes past its frame, and with SetReadTimeout a frame
// that has started to arrive must arrive whole in bounded time.
package lenprefix

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"time"

	"github.com/evbench/evbench/transports"
)

// PrefixBytes is the size of the big-endian length before every frame.
const PrefixBytes = 4

// RetainBytes is the largest frame buffer, in bytes (1 MiB), that a Reader
// keeps for the next frame once the frame read into it has been handed
// out: a larger one is dropped at the next call to Next, so one huge frame
// does not pin its memory for the connection's life, and the next large
// frame starts small again.
const RetainBytes = 1 << 20

// Deadliner is the read-deadline half of a net.Conn, which quic-go's
// Stream implements too. SetReadDeadline(t) makes reads blocked at or
// after t fail with an error wrapping os.ErrDeadlineExceeded; the zero t
// removes the deadline.
type Deadliner interface {
	SetReadDeadline(t time.Time) error
}

// Reader reads frames from a bufio.Reader. It is not safe for concurrent
// use; it is meant to be owned by a Conn's reading side.
type Reader struct {
	br       *bufio.Reader
	maxBytes int

	// discard is the number of bytes of the previous frame still in br,
	// handed out by Peek and dropped at the start of the next call.
	discard int
	buf     []byte // frames too large for br, reused and grown as needed
	err     error  // sticky: once set, the stream is out of step or gone

	// Read timeout (SetReadTimeout); dl is nil without one.
	dl      Deadliner
	timeout time.Duration
	armed   bool // dl holds a deadline, perhaps of an earlier frame
	started bool // the current frame's deadline is set
}

// NewReader returns a Reader of frames of at most maxBytes bytes from br.
// It becomes the only reader of br. br's buffer must hold at least
// PrefixBytes bytes.
func NewReader(br *bufio.Reader, maxBytes int) *Reader {
	return &Reader{br: br, maxBytes: maxBytes}
}

// SetReadTimeout bounds each frame, from the moment its first byte is seen
// to its last, by d: dl (the connection under br) gets a read deadline of
// that moment plus d whenever a frame is not wholly in br's buffer, and a
// read that misses it makes Next return an error wrapping
// transports.ErrReadTimeout (and os.ErrDeadlineExceeded). The wait for a
// frame to start is not bounded: before it, a deadline left by an earlier
// frame is removed. Deadlines are set only when a read has to wait for
// more of a frame, so frames that arrive wholly in one read cost no call on
// dl. d <= 0 or a nil dl turns the timeout off. Call it before the first
// Next.
func (r *Reader) SetReadTimeout(dl Deadliner, d time.Duration) {
	if dl == nil || d <= 0 {
		r.dl, r.timeout = nil, 0
		return
	}
	r.dl, r.timeout = dl, d
}

// Next returns the next frame. The slice is valid until the next call to
// Next. A clean end of stream between frames is io.EOF; an end inside a
// prefix or frame is io.ErrUnexpectedEOF. A length over the Reader's
// maximum is an error wrapping transports.ErrFrameTooLarge. A frame not
// complete within the read timeout (SetReadTimeout) is an error wrapping
// transports.ErrReadTimeout. Other errors of the underlying reader are
// returned as they are. Every error is sticky: the stream cannot be
// resynchronised, so every later call returns it.
//
// Memory: a frame that fits br's buffer with its prefix is returned in
// place. A larger one is copied into a buffer of the Reader's that is
// allocated only once br's buffer is full of the frame, and then grows to
// twice the frame's bytes received whenever it is full (up to the maximum,
// and to no more than the announced length once over RetainBytes): a peer
// that announces a large frame and sends a few bytes makes the Reader
// allocate nothing, and one that sends k bytes of it makes it hold at most
// about 2k. A buffer of up to RetainBytes is reused by later frames; a
// larger one is dropped. In steady state (frames that fit br's buffer, or
// frames up to RetainBytes of sizes already seen) Next does not allocate.
func (r *Reader) Next() ([]byte, error) {
	if r.err != nil {
		return nil, r.err
	}
	p, err := r.next()
	if err != nil {
		r.err = err
		return nil, err
	}
	return p, nil
}

func (r *Reader) next() ([]byte, error) {
	if r.discard > 0 {
		// The bytes were peeked, so Discard cannot fail.
		r.br.Discard(r.discard)
		r.discard = 0
	}
	if cap(r.buf) > RetainBytes {
		r.buf = nil
	}
	r.started = false
	if r.br.Buffered() == 0 {
		// Between frames: waiting for the next one to start is not
		// bounded, so an earlier frame's deadline must go.
		if r.armed {
			// An error (a connection already closed) shows in the read.
			r.dl.SetReadDeadline(time.Time{})
			r.armed = false
		}
		if _, err := r.br.Peek(1); err != nil {
			return nil, err // io.EOF here is a clean end
		}
	}
	hdr, err := r.peek(PrefixBytes)
	if err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr)
	if uint64(n) > uint64(r.maxBytes) {
		return nil, fmt.Errorf("length prefix of %d bytes: %w (max %d)", n, transports.ErrFrameTooLarge, r.maxBytes)
	}
	total := PrefixBytes + int(n)
	if total <= r.br.Size() {
		p, err := r.peek(total)
		if err != nil {
			return nil, err
		}
		r.discard = total
		return p[PrefixBytes:], nil
	}
	r.br.Discard(PrefixBytes)
	return r.readLarge(int(n))
}

// peek returns the next n bytes of the current frame (n <= br.Size()),
// setting the frame's deadline first when they are not all buffered.
func (r *Reader) peek(n int) ([]byte, error) {
	if r.br.Buffered() < n {
		r.start()
	}
	p, err := r.br.Peek(n)
	if err != nil {
		return nil, r.inFrame(err)
	}
	return p, nil
}

// start sets the current frame's read deadline, once per frame, when the
// Reader has a timeout. An error setting it comes from a connection that
// is already closed (net.Pipe refuses deadlines once either end is), which
// the read that follows reports, so it is not returned.
func (r *Reader) start() {
	if r.dl == nil || r.started {
		return
	}
	r.dl.SetReadDeadline(time.Now().Add(r.timeout))
	r.armed, r.started = true, true
}

// readLarge reads a frame of n bytes, more than br's buffer holds after the
// prefix, into r.buf, growing it only as the frame's bytes arrive.
func (r *Reader) readLarge(n int) ([]byte, error) {
	p := r.buf[:0]
	for len(p) < n {
		if len(p) == cap(p) {
			// Full (or none yet): wait until br's buffer holds as much
			// of the frame as it can before allocating more room.
			if _, err := r.peek(min(n-len(p), r.br.Size())); err != nil {
				r.buf = p[:0]
				return nil, err
			}
			p = r.grow(p, min(len(p)+r.br.Buffered(), n), n)
		}
		if r.br.Buffered() == 0 {
			r.start()
		}
		m, err := r.br.Read(p[len(p):min(cap(p), n)])
		p = p[:len(p)+m]
		if err != nil {
			r.buf = p[:0]
			return nil, r.inFrame(err)
		}
	}
	r.buf = p[:0]
	return p, nil
}

// grow returns p's bytes in a new buffer for a frame of n bytes of which
// arrived have been received: twice arrived, up to the Reader's maximum,
// and up to n once that is over RetainBytes (a buffer that will not be
// kept need not be larger than its frame).
func (r *Reader) grow(p []byte, arrived, n int) []byte {
	c := min(2*arrived, r.maxBytes)
	if c > RetainBytes {
		c = min(c, n)
	}
	c = max(c, arrived)
	b := make([]byte, len(p), c)
	copy(b, p)
	return b
}

// inFrame maps an error met inside a frame: io.EOF to io.ErrUnexpectedEOF,
// a missed deadline of the frame's own to one wrapping
// transports.ErrReadTimeout.
func (r *Reader) inFrame(err error) error {
	switch {
	case err == io.EOF:
		return io.ErrUnexpectedEOF
	case r.started && errors.Is(err, os.ErrDeadlineExceeded):
		return fmt.Errorf("%w (%v): %w", transports.ErrReadTimeout, r.timeout, err)
	}
	return err
}

// Append appends p with its length prefix to dst and returns the result,
// for a writer that sends each frame in one write. len(p) must fit in 32
// bits; callers enforce their own, smaller, maximum first.
func Append(dst, p []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(p)))
	return append(dst, p...)
}

// WriteFrame writes p with its length prefix to bw; the bytes reach bw's
// writer when bw is flushed or fills. Callers check p against their maximum
// first; a p whose length does not fit in 32 bits is an error wrapping
// transports.ErrFrameTooLarge and nothing is written. Errors of bw are
// returned as they are. It does not allocate (given a bw of at least
// PrefixBytes bytes).
func WriteFrame(bw *bufio.Writer, p []byte) error {
	if uint64(len(p)) > math.MaxUint32 {
		return fmt.Errorf("frame of %d bytes: %w (max %d)", len(p), transports.ErrFrameTooLarge, uint64(math.MaxUint32))
	}
	if bw.Available() < PrefixBytes {
		if err := bw.Flush(); err != nil {
			return err
		}
	}
	// The prefix is built in bw's own free space, as AvailableBuffer
	// intends, so that nothing escapes to the heap.
	if _, err := bw.Write(binary.BigEndian.AppendUint32(bw.AvailableBuffer(), uint32(len(p)))); err != nil {
		return err
	}
	_, err := bw.Write(p)
	return err
}
