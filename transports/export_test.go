package transports

// Handle runs the Client's per-frame work of its read loop (handle) on p,
// received at now, decoding into f: for tests that measure that work
// synchronously, on their own goroutine. The Client's own read loop must be
// blocked in ReadFrame meanwhile (its Conn has nothing to read).
func (c *Client) Handle(p []byte, f *Frame, now int64) error { return c.handle(p, f, now) }

// CountRooms counts h's namespaces, rooms and memberships by walking every
// room, as Stats did before it kept them as gauges.
func CountRooms(h *Hub) HubStats {
	h.mu.RLock()
	defer h.mu.RUnlock()
	st := HubStats{Namespaces: len(h.namespaces)}
	for _, ns := range h.namespaces {
		st.Rooms += len(ns.rooms)
		for _, r := range ns.rooms {
			st.Members += len(*r.members.Load())
		}
	}
	return st
}
