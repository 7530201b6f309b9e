package results

import (
	"time"
)

// Result is one row of results: the measurement of one (scenario, transport,
// repeat). Each field's comment names its CSV column; the package
// documentation defines every column. Counters are 64-bit so long runs do not
// wrap. Durations are time.Duration (nanoseconds); the CSV writes them in
// microseconds.
type Result struct {
	// Schema is the schema version of the column set the row was written
	// with (column schema). A reader reports each row's own value, so a row
	// read from a v1 file says 1 and its v2 fields are zero: not recorded,
	// rather than measured as zero. Writers always write SchemaVersion,
	// because they write every column of this package; a v1 row written
	// again becomes a v2 row whose v2 columns are zero, so keep the original
	// file.
	Schema int
	// RunID identifies the run; rows of one invocation share it (run_id).
	RunID string
	// StartedAt is when the row's measurement started (started_at, written in
	// UTC as RFC 3339 with nanoseconds).
	StartedAt time.Time
	// Transport is the transport's registry name, e.g. "tcp+tls" (transport).
	Transport string

	// Clients is the number of simulated clients (clients).
	Clients int
	// Rooms is the number of rooms joined besides each client's own (rooms).
	Rooms int
	// Publishers is the number of clients that emit (publishers).
	Publishers int
	// RateEPS is the target emit rate of each publisher, in events per second
	// (rate_eps).
	RateEPS float64
	// PayloadBytes is the payload size of every event, in bytes
	// (payload_bytes).
	PayloadBytes int
	// Duration is the length of the measurement window (duration_s).
	Duration time.Duration
	// Repeat is the repetition of this (scenario, transport), counting from 0
	// (repeat).
	Repeat int

	// Sent is the number of events emitted in the window (sent).
	Sent int64
	// Expected is the number of deliveries the sent events call for (expected).
	Expected int64
	// Delivered is the number of expected deliveries that arrived, each
	// counted once (delivered).
	Delivered int64
	// Missed is Expected - Delivered (missed).
	Missed int64
	// Duplicates counts deliveries of a (sender, room) sequence number
	// already received (duplicates).
	Duplicates int64
	// Reordered counts deliveries that arrived after a later sequence number
	// of the same (sender, room) (reordered).
	Reordered int64
	// LossRatio is Missed / Expected, from 0 to 1 (loss_ratio).
	LossRatio float64
	// ThroughputEPS is deliveries received during the window per second
	// (throughput_eps).
	ThroughputEPS float64
	// GoodputBps is payload bytes delivered per second (goodput_Bps).
	GoodputBps float64

	// LatP50 is the median fan-out latency, receive time minus intended send
	// time (lat_p50_us).
	LatP50 time.Duration
	// LatP90 is the 90th percentile fan-out latency (lat_p90_us).
	LatP90 time.Duration
	// LatP99 is the 99th percentile fan-out latency (lat_p99_us).
	LatP99 time.Duration
	// LatP999 is the 99.9th percentile fan-out latency (lat_p999_us).
	LatP999 time.Duration
	// LatMax is the largest fan-out latency recorded (lat_max_us).
	LatMax time.Duration
	// LatMean is the mean fan-out latency (lat_mean_us).
	LatMean time.Duration
	// LatRawP99 is the 99th percentile of receive time minus actual send time
	// (lat_raw_p99_us).
	LatRawP99 time.Duration
	// ConnectP50 is the median connect time (connect_p50_us).
	ConnectP50 time.Duration
	// ConnectP99 is the 99th percentile connect time (connect_p99_us).
	ConnectP99 time.Duration
	// AckRTTP50 is the median emit-to-ACK round trip (ack_rtt_p50_us).
	AckRTTP50 time.Duration
	// AckRTTP99 is the 99th percentile emit-to-ACK round trip
	// (ack_rtt_p99_us).
	AckRTTP99 time.Duration
	// SchedLagP99 is the 99th percentile of the publishers' scheduling lag,
	// actual minus intended send time (sched_lag_p99_us).
	SchedLagP99 time.Duration
	// Saturated is true when the load generator did not keep up, so the
	// latencies describe the generator rather than the transport (saturated).
	Saturated bool

	// Columns appended after schema v1.

	// NotSent counts scheduled send slots in the window that the publishers
	// never sent (not_sent).
	NotSent int64
	// LatOverflow counts latency samples above the histogram's highest
	// trackable value, counted instead of dropped (lat_overflow).
	LatOverflow int64
	// QueueDrops counts deliveries dropped by the server's slow-consumer
	// policy (queue_drops).
	QueueDrops int64
	// AckTimeouts counts emits that asked for an ACK and had none by the
	// end of the drain window (ack_timeouts).
	AckTimeouts int64
	// SendErrors counts emits in the window whose write failed; they are
	// not in Sent and owe no deliveries (send_errors).
	SendErrors int64
	// Disconnects counts clients whose connection ended during the run
	// before the harness closed it, e.g. under the disconnect slow-consumer
	// policy; from then on they are not expected to receive (disconnects).
	Disconnects int64
	// Error says why the row's measurement failed; empty when it did not
	// (error). It may hold any text; the CSV quotes it. A CSV reader turns a
	// CRLF inside it into LF.
	Error string

	// Columns added in schema v2: every row describes its whole scenario,
	// the transport's capabilities, the server, and the environment it ran
	// in. A row read from a v1 file has them all zero.

	// RoomsPerClient is how many of the rooms each client joins, besides
	// the room named by its own id (rooms_per_client).
	RoomsPerClient int
	// AckEvery is how often a publisher asks for an ACK: every AckEvery-th
	// emit does; 0 means no emit asks for one (ack_every).
	AckEvery int
	// Warmup is how long the publishers ran before the measurement window;
	// 0 means no warm-up (warmup_s, seconds, like duration_s).
	Warmup time.Duration
	// Drain is the bound on the wait after the window for deliveries still
	// in flight; the run ends sooner when all have arrived; 0 means no wait
	// (drain_s, seconds).
	Drain time.Duration
	// Seed seeded the publishers' start phases and the payload bytes
	// (seed).
	Seed int64
	// SendQueue is the server's send queue per connection, in frames
	// (send_queue).
	SendQueue int
	// SlowConsumer is the server's policy for a full send queue,
	// "drop-oldest" or "disconnect" (slow_consumer).
	SlowConsumer string
	// MaxSchedLag is the bound on the publishers' p99 scheduling lag above
	// which the row is saturated (max_sched_lag_us, microseconds).
	MaxSchedLag time.Duration
	// ConnectTimeout bounds each client's connection set-up and joins
	// (connect_timeout_s, seconds).
	ConnectTimeout time.Duration

	// CapsReliable is the transport's promise that every event frame
	// written is delivered unless the connection fails (reliable).
	CapsReliable bool
	// CapsReliableControl is the transport's promise that control frames
	// (HELLO, JOIN, LEAVE, PING) are delivered reliably and in order, even
	// where events are not (reliable_control).
	CapsReliableControl bool
	// CapsOrdered is the transport's promise that frames arrive in the
	// order they were written (ordered).
	CapsOrdered bool
	// CapsEncrypted is true when frames travel under TLS 1.3 (encrypted).
	CapsEncrypted bool
	// CapsDatagram is true when frames, or event frames, travel as
	// datagrams the network may drop, duplicate or reorder (datagram).
	CapsDatagram bool
	// MaxFrameBytes is the largest frame the transport accepts, in bytes
	// (max_frame_bytes).
	MaxFrameBytes int

	// Server is where the server ran: "in-process", or the address the
	// fleet dialled, as host:port (server).
	Server string
	// ReplyDrops counts replies (ACK, PONG) the server dropped under its
	// slow-consumer policy because a connection's reply queue was full
	// (reply_drops).
	ReplyDrops int64
	// OversizeDrops counts frames the server's transport refused as over
	// its frame limit; the connection stayed open (oversize_drops).
	OversizeDrops int64
	// ProtocolErrors counts connections the server closed because they
	// sent a malformed or unexpected frame (protocol_errors).
	ProtocolErrors int64
	// AcceptErrors counts the server's failed accepts, other than its
	// listener closing (accept_errors).
	AcceptErrors int64
	// ServerClosedClean counts connections that the server saw end
	// cleanly: a BYE, the end of the stream, or the server closing
	// (server_closed_clean).
	ServerClosedClean int64
	// ServerClosedError counts connections that ended with a transport
	// error or a protocol error (server_closed_error).
	ServerClosedError int64
	// ServerClosedSlow counts connections the server closed under the
	// disconnect slow-consumer policy (server_closed_slow).
	ServerClosedSlow int64

	// Version is the version of the evbench that wrote the row
	// (evbench_version).
	Version string
	// Revision is the VCS revision evbench was built from; it may end in
	// "+dirty" (vcs_revision).
	Revision string
	// GoVersion is the Go toolchain evbench was built with, e.g. "go1.26.0"
	// (go_version).
	GoVersion string
	// GOMAXPROCS is the GOMAXPROCS the fleet ran with (gomaxprocs).
	GOMAXPROCS int
	// Kernel is the operating system's name and kernel release, e.g.
	// "Linux 6.1.0-x86_64" (kernel).
	Kernel string
	// Platform is GOOS/GOARCH, e.g. "linux/amd64" (platform).
	Platform string

	// Columns added in schema v3: the server's limits against hostile or
	// broken peers, what they cut off, and the fleet's reconnections. A row
	// read from a v1 or v2 file has them all zero.

	// SendQueueBytes is the server's bound on the bytes queued for one
	// connection, beside SendQueue's bound in frames
	// (send_queue_bytes).
	SendQueueBytes int64
	// HandshakeTimeouts counts connections the server closed because
	// their HELLO did not arrive within its handshake timeout
	// (handshake_timeouts).
	HandshakeTimeouts int64
	// ReadTimeouts counts connections the server closed because a frame
	// that had started to arrive was not complete within its read timeout
	// (read_timeouts).
	ReadTimeouts int64
	// IdleCloses counts connections the server closed because it received
	// nothing from them for its idle timeout (idle_closes).
	IdleCloses int64
	// WriteTimeouts counts connections the server closed because one write
	// to them did not complete within its write timeout; they are slow
	// consumers and in server_closed_slow as well (write_timeouts).
	WriteTimeouts int64
	// UnvalidatedDrops counts datagrams the server dropped because their
	// source address had not proven it receives there (udp's cookie
	// exchange) (unvalidated_drops).
	UnvalidatedDrops int64
	// LimitRefusals counts requests the server refused for crossing a
	// per-connection limit: rooms joined, namespaces, name length, payload
	// size (limit_refusals).
	LimitRefusals int64
	// ReconnectAttempts counts the fleet's dials to reconnect clients whose
	// connection the harness did not end (reconnect_attempts).
	ReconnectAttempts int64
	// Reconnects counts those attempts that connected and joined the
	// client's rooms again (reconnects).
	Reconnects int64
}
