package transports

// Handle runs the Client's per-frame work of its read loop (handle) on p,
// received at now, decoding into f: for tests that measure that work
// synchronously, on their own goroutine. The Client's own read loop must be
// blocked in ReadFrame meanwhile (its Conn has nothing to read).
func (c *Client) Handle(p []byte, f *Frame, now int64) error { return c.handle(p, f, now) }
