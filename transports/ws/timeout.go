package ws

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"sync/atomic"
	"time"
)

// frameConn is the TCP connection under a Conn (under TLS for wss), through
// which coder/websocket reads. It enforces Config.ReadTimeout: once a frame
// has started to arrive, reads get a deadline of its start plus the
// timeout, and the wait for a frame to start gets none.
//
// coder/websocket's Reader takes a context, but a context with a timeout
// per message costs a timer and a context.AfterFunc per message, and
// bounds only the reads after the header, not a header sent in part. So
// the bound is the socket's read deadline instead, set from here, where
// the reads happen: a frame has started when bytes arrive after the last
// complete frame (a whole message, or a ping or pong, which the Conn
// reports through frameDone), or when ReadFrame has its message's header
// (messageStarted), and it ends at frameDone. The deadline is set once per
// frame, and only when a read happens while a frame is incomplete, so
// messages that arrive whole with their reads cost no call; it is removed
// before a read that waits for the next frame to start.
//
// One case is not bounded here: bytes of a frame that arrived in the same
// read as the end of the frame before it, followed by silence (a partial
// header pipelined behind a message). They are at most one read buffer,
// and the wait is the wait for a frame to start, which the Hub bounds
// with its idle timeout.
//
// Once active, frameConn also reports the end of the TCP stream as
// io.ErrUnexpectedEOF rather than io.EOF, as noEOFConn does and for the
// same reason (on the client side, where nothing above it does; under wss
// a TLS close_notify still reaches coder/websocket there as io.EOF).
//
// Before activate (while the HTTP upgrade runs) frameConn does nothing:
// net/http sets its own deadlines then and needs io.EOF.
type frameConn struct {
	net.Conn
	timeout time.Duration

	active    atomic.Bool
	inMessage atomic.Bool  // ReadFrame has a message's header, not yet its end
	pending   atomic.Bool  // bytes have arrived since the last complete frame
	startNs   atomic.Int64 // when the current frame started, unix ns
	armed     atomic.Bool  // the socket has a read deadline
	frameSet  atomic.Bool  // it is the current frame's
	timedOut  atomic.Bool  // a read missed the current frame's deadline
}

func newFrameConn(nc net.Conn, timeout time.Duration) *frameConn {
	return &frameConn{Conn: nc, timeout: timeout}
}

// activate starts enforcing the timeout, once the connection carries
// WebSocket frames.
func (f *frameConn) activate() { f.active.Store(true) }

func (f *frameConn) Read(p []byte) (int, error) {
	if !f.active.Load() {
		return f.Conn.Read(p)
	}
	if f.inMessage.Load() || f.pending.Load() {
		if !f.frameSet.Load() {
			f.Conn.SetReadDeadline(time.Unix(0, f.startNs.Load()).Add(f.timeout))
			f.armed.Store(true)
			f.frameSet.Store(true)
		}
	} else if f.armed.Load() {
		f.Conn.SetReadDeadline(time.Time{})
		f.armed.Store(false)
	}
	n, err := f.Conn.Read(p)
	if err == io.EOF {
		err = io.ErrUnexpectedEOF // see noEOFConn
	}
	if n > 0 && !f.pending.Load() && !f.inMessage.Load() {
		f.startNs.Store(time.Now().UnixNano())
		f.pending.Store(true)
	}
	if err != nil && f.frameSet.Load() && errors.Is(err, os.ErrDeadlineExceeded) {
		f.timedOut.Store(true)
	}
	return n, err
}

// messageStarted is called by ReadFrame once it has a message's header.
func (f *frameConn) messageStarted() {
	if !f.pending.Load() {
		f.startNs.Store(time.Now().UnixNano())
	}
	f.inMessage.Store(true)
}

// frameDone is called when a frame has been consumed whole: a message by
// ReadFrame, a ping or pong by coder/websocket's callbacks.
func (f *frameConn) frameDone() {
	f.inMessage.Store(false)
	f.pending.Store(false)
	f.frameSet.Store(false)
}

// onControl is the OnPingReceived and OnPongReceived callback shape: a
// control frame has been read whole. It lets coder/websocket answer pings.
func (f *frameConn) onPing(context.Context, []byte) bool {
	f.frameDone()
	return true
}

func (f *frameConn) onPong(context.Context, []byte) { f.frameDone() }

// unwrapFrameConn returns the frameConn under nc (itself, or under a
// *tls.Conn), or nil.
func unwrapFrameConn(nc net.Conn) *frameConn {
	type netConner interface{ NetConn() net.Conn }
	if tc, ok := nc.(netConner); ok {
		nc = tc.NetConn()
	}
	f, _ := nc.(*frameConn)
	return f
}

// frameListener wraps every accepted connection in a frameConn.
type frameListener struct {
	net.Listener
	timeout time.Duration
}

func (l *frameListener) Accept() (net.Conn, error) {
	nc, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return newFrameConn(nc, l.timeout), nil
}

// noEOFConn is the connection a server Conn's coder/websocket reads: the
// hijacked TCP connection, or the TLS connection over it for wss. It
// reports the end of the stream as io.ErrUnexpectedEOF instead of io.EOF.
//
// A WebSocket connection has no clean end of stream: it ends with a close
// frame, and a stream that ends without one ends inside a message or
// between frames (status 1006), which ReadFrame reports as
// ErrAbnormalClosure either way. coder/websocket's message reader,
// however, takes any error wrapping io.EOF for the end of the message: a
// stream ending right where a frame's payload or the next fragment's
// header was due made it return the bytes received so far, and ReadFrame
// then returned a truncated frame as if it were whole (found by
// FuzzReadFrame; see TestTruncatedMessage). io.ErrUnexpectedEOF is an
// error to it, as it is to ReadFrame's classify.
type noEOFConn struct{ net.Conn }

func (c noEOFConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

// noEOFHijacker is the http.ResponseWriter handed to websocket.Accept: its
// Hijack wraps the connection in a noEOFConn.
type noEOFHijacker struct{ http.ResponseWriter }

func (w noEOFHijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	nc, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	return noEOFConn{nc}, brw, nil
}

// Unwrap returns the ResponseWriter under w (http.ResponseController).
func (w noEOFHijacker) Unwrap() http.ResponseWriter { return w.ResponseWriter }
