package udp

import (
	"sync"
	"sync/atomic"
)

// buffer holds one received datagram: b[:n], kind byte included.
type buffer struct {
	b [bufferBytes]byte
	n int
}

// frame is the DATA body of a received datagram.
func (b *buffer) frame() []byte { return b.b[headerBytes:b.n] }

// buffers recycles receive buffers between the Listener's read goroutine
// and the Conns' readers, so that steady-state receiving does not allocate.
var buffers = sync.Pool{New: func() any { return new(buffer) }}

func getBuffer() *buffer  { return buffers.Get().(*buffer) }
func putBuffer(b *buffer) { buffers.Put(b) }

// ring is a FIFO of buffers that grows on demand up to a bound, so that an
// idle peer costs little memory and a busy one up to the bound. It is not
// safe for concurrent use; Conn guards it with its mutex.
type ring struct {
	buf  []*buffer
	head int
	n    int
}

// push appends b and reports whether there was room under limit.
func (r *ring) push(b *buffer, limit int) bool {
	if r.n == len(r.buf) {
		if r.n >= limit {
			return false
		}
		grown := make([]*buffer, min(max(2*len(r.buf), 16), limit))
		for i := range r.n {
			grown[i] = r.buf[(r.head+i)%len(r.buf)]
		}
		r.buf, r.head = grown, 0
	}
	r.buf[(r.head+r.n)%len(r.buf)] = b
	r.n++
	return true
}

// pop removes and returns the oldest buffer, or nil when r is empty.
func (r *ring) pop() *buffer {
	if r.n == 0 {
		return nil
	}
	b := r.buf[r.head]
	r.buf[r.head] = nil
	r.head = (r.head + 1) % len(r.buf)
	r.n--
	return b
}

// dropCounter turns the kernel's cumulative 32-bit SO_RXQ_OVFL counter into
// a 64-bit total. note belongs to the socket's single reader; total may be
// read from anywhere.
type dropCounter struct {
	last  uint32
	total atomic.Uint64
}

// note accounts for the counter carried in oob, if there is one. The
// subtraction is modulo 2^32, so the counter may wrap.
func (d *dropCounter) note(oob []byte) {
	if v, ok := kernelDropCount(oob); ok {
		d.total.Add(uint64(v - d.last))
		d.last = v
	}
}
