package transporttest

import (
	"net"
	"sync/atomic"

	"github.com/evbench/evbench/transports"
)

// SingleWriterConn wraps a transports.Conn and counts breaches of the
// discipline the Conn contract asks of its callers: one goroutine at a time
// in WriteFrame, WriteDatagram and Flush (which drains the same write
// buffer), one at a time in ReadFrame. A reader and a writer running at once
// are allowed, and so is Close from any goroutine. It is made by
// CheckSingleWriter.
//
// A breach is counted when a goroutine enters WriteFrame, WriteDatagram or
// Flush while another goroutine is inside one of them, or enters ReadFrame
// while another is inside ReadFrame. Only overlaps that actually happen are
// seen, so a zero count is evidence, not proof; run under -race as well.
//
// SingleWriterConn implements transports.DatagramConn whatever it wraps:
// its WriteDatagram is transports.WriteEvent on the wrapped Conn, so a
// caller's transports.WriteEvent through the wrapper does what it does on
// the wrapped Conn itself (WriteDatagram on a DatagramConn, WriteFrame on
// any other).
//
// The wrapper adds two atomic operations per call and does not allocate.
type SingleWriterConn struct {
	inner      transports.Conn
	writers    atomic.Int32 // goroutines now inside WriteFrame or Flush
	readers    atomic.Int32 // goroutines now inside ReadFrame
	violations atomic.Int64
}

var (
	_ transports.DatagramConn = (*SingleWriterConn)(nil)
	_ transports.Flusher      = (*SingleWriterConn)(nil)
)

// CheckSingleWriter returns c wrapped so that concurrent WriteFrame,
// WriteDatagram or Flush calls, and concurrent ReadFrame calls, are counted
// as violations; see SingleWriterConn. Use the wrapper in place of c.
func CheckSingleWriter(c transports.Conn) *SingleWriterConn {
	return &SingleWriterConn{inner: c}
}

// Violations is the number of breaches counted so far: each time a
// goroutine entered WriteFrame, WriteDatagram or Flush while another writer
// was inside, or
// entered ReadFrame while another reader was inside.
func (s *SingleWriterConn) Violations() int64 { return s.violations.Load() }

// enter marks one more goroutine inside a section counted by n and records
// a violation when another one is already there.
func (s *SingleWriterConn) enter(n *atomic.Int32) {
	if n.Add(1) > 1 {
		s.violations.Add(1)
	}
}

// WriteFrame calls the wrapped Conn's WriteFrame, counting overlaps with
// other WriteFrame, WriteDatagram or Flush calls.
func (s *SingleWriterConn) WriteFrame(p []byte) error {
	s.enter(&s.writers)
	defer s.writers.Add(-1)
	return s.inner.WriteFrame(p)
}

// WriteDatagram calls transports.WriteEvent on the wrapped Conn: its
// WriteDatagram when it is a transports.DatagramConn, its WriteFrame
// otherwise. Overlaps with other WriteFrame, WriteDatagram or Flush calls
// are counted.
func (s *SingleWriterConn) WriteDatagram(p []byte) error {
	s.enter(&s.writers)
	defer s.writers.Add(-1)
	return transports.WriteEvent(s.inner, p)
}

// Flush flushes the wrapped Conn if it implements transports.Flusher and
// returns nil otherwise, counting overlaps with WriteFrame, WriteDatagram or
// Flush calls.
func (s *SingleWriterConn) Flush() error {
	s.enter(&s.writers)
	defer s.writers.Add(-1)
	return transports.Flush(s.inner)
}

// ReadFrame calls the wrapped Conn's ReadFrame, counting overlaps with other
// ReadFrame calls.
func (s *SingleWriterConn) ReadFrame() ([]byte, error) {
	s.enter(&s.readers)
	defer s.readers.Add(-1)
	return s.inner.ReadFrame()
}

// Close closes the wrapped Conn; it may be called at any time.
func (s *SingleWriterConn) Close() error { return s.inner.Close() }

// RemoteAddr is the wrapped Conn's RemoteAddr.
func (s *SingleWriterConn) RemoteAddr() net.Addr { return s.inner.RemoteAddr() }
