// Package lenprefix reads and writes the framing shared by the stream
// transports (tcp, tcp+tls, and the stream of quic and quic-dgram): each
// frame is a 4-byte big-endian length followed by that many bytes.
package lenprefix

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"math"

	"github.com/evbench/evbench/transports"
)

// PrefixBytes is the size of the big-endian length before every frame.
const PrefixBytes = 4

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
}

// NewReader returns a Reader of frames of at most maxBytes bytes from br.
// It becomes the only reader of br.
func NewReader(br *bufio.Reader, maxBytes int) *Reader {
	return &Reader{br: br, maxBytes: maxBytes}
}

// Next returns the next frame. The slice is valid until the next call to
// Next. A clean end of stream between frames is io.EOF; an end inside a
// prefix or frame is io.ErrUnexpectedEOF. A length over the Reader's
// maximum is an error wrapping transports.ErrFrameTooLarge. Errors of the
// underlying reader are returned as they are. Every error is sticky:
// the stream cannot be resynchronised, so every later call returns it.
//
// In steady state Next does not allocate: a frame that fits br's buffer
// with its prefix is returned in place, a larger one is copied into a
// buffer that grows geometrically (up to the maximum) and is reused.
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
	hdr, err := r.br.Peek(PrefixBytes)
	if err != nil {
		if err == io.EOF && len(hdr) > 0 {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr)
	if uint64(n) > uint64(r.maxBytes) {
		return nil, fmt.Errorf("length prefix of %d bytes: %w (max %d)", n, transports.ErrFrameTooLarge, r.maxBytes)
	}
	total := PrefixBytes + int(n)
	if total <= r.br.Size() {
		p, err := r.br.Peek(total)
		if err != nil {
			return nil, unexpected(err)
		}
		r.discard = total
		return p[PrefixBytes:], nil
	}
	r.br.Discard(PrefixBytes)
	if int(n) > cap(r.buf) {
		r.buf = make([]byte, max(int(n), min(2*cap(r.buf), r.maxBytes)))
	}
	p := r.buf[:n]
	if _, err := io.ReadFull(r.br, p); err != nil {
		return nil, unexpected(err)
	}
	return p, nil
}

// unexpected maps io.EOF inside a frame to io.ErrUnexpectedEOF.
func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
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
