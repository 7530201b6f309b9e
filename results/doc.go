// Package results holds evbench's result row and the formats it is saved and
// shown in: one [Result] per (scenario, transport, repeat), a CSV encoding
// ([CSVWriter], [ReadCSV], [WriteCSVFile]), the same columns as JSON Lines
// ([JSONWriter], [ReadJSON]), the Go benchmark format for benchstat
// ([GoBenchWriter], [WriteGoBench]), atomic file replacement
// ([WriteFileAtomic]) and a text table for terminals ([WriteTable]).
//
// The package imports nothing of evbench's own, so reports and comparisons
// work on saved files without the code that produced them.
//
// # CSV format
//
// A results file is CSV as RFC 4180 describes it: comma-separated fields, a
// field holding a comma, a double quote or a line break is enclosed in double
// quotes with inner quotes doubled. The first record is the header; every
// record has as many fields as the header. Lines end in LF; readers accept
// CRLF too. Numbers are formatted by strconv, never by a locale: the decimal
// separator is always '.', there is no digit grouping and no exponent. A
// decimal column that holds no finite number reads NaN, +Inf or -Inf.
//
// Columns appear in the order listed below. Later schema versions only append
// columns, and readers map columns by header name, so a reader tolerates
// unknown extra columns, columns in another order, and a file that lacks
// columns appended after v1 (they read as 0, false or empty, whatever the
// row's schema says); every v1 column is required. A column name ends in its
// unit: _us microseconds, _s seconds, _eps events (or deliveries) per second,
// _Bps bytes per second, _bytes bytes. Every _us value is a decimal with
// exactly three fraction digits, so it carries nanosecond precision. A
// boolean is true or false; a _s value is a decimal with trailing fraction
// zeros left out (30, 1.5).
//
// # JSON Lines format
//
// [JSONWriter] writes one JSON object per row, each on its own line ending in
// LF, and hands each line to the underlying writer as soon as the row is
// written, so a long run can be followed and, cut short, leaves only complete
// lines. An object's keys are exactly the CSV columns, in the same order, with
// the same units and formatting: a column's JSON value is its CSV text, as a
// JSON number for integers, counts and the _us and _s durations (lat_p50_us
// is 85.300, microseconds with three fraction digits; duration_s is 30,
// seconds), as a JSON number for the other decimal columns too except that a
// value that is not finite is the string "NaN", "+Inf" or "-Inf", as true or
// false for booleans, and as a JSON string for text and for started_at (RFC
// 3339, UTC). Text is escaped as JSON requires (<, > and & are left as they
// are); invalid UTF-8 in text becomes U+FFFD. For example (shortened):
//
//	{"schema":2,"run_id":"run-1","started_at":"2025-01-02T03:04:05.123456789Z","transport":"tcp",...,"lat_p50_us":85.300,...,"saturated":false,...}
//
// [ReadJSON] follows [ReadCSV]'s rules: values are mapped by key, unknown keys
// are ignored, keys appended after schema v1 may be missing, every v1 key is
// required, and each row's schema is its own. A value of the wrong JSON type
// (a duration as a string, a boolean as "true") or against its column's
// formatting (an exponent in a _us value) is an error naming the line and the
// key, as is a key that appears twice in one object. Blank lines are skipped.
//
// # Go benchmark format
//
// [WriteGoBench] and [GoBenchWriter] write the format of `go test -bench`,
// as golang.org/x/perf/benchfmt reads it, so benchstat can compare two runs.
// First come configuration lines taken from the row's environment columns:
// goos and goarch (from platform), pkg (always github.com/evbench/evbench),
// evbench-version, vcs-revision, go-version and kernel (line breaks in a
// value become spaces). They are written again, key by key, whenever a row's
// environment differs from the previous row's; a key the row does not record
// is cleared with an empty "key:" line. Before the first row come the Unit
// lines, saying which way is better for each unit:
//
//	Unit p50-ns better=lower
//	Unit deliveries/s better=higher
//
// Then one line per row, with an iteration count of 1:
//
//	BenchmarkFanout/transport=tcp+tls/clients=100/rooms=10/rooms-per-client=1/publishers=10/rate=1000/payload=256-8 1 85300 p50-ns 140000 p90-ns 412345 p99-ns 1234567 p999-ns 9876543 max-ns 99000 deliveries/s 25344000 goodput-B/s 0 loss-ratio 0 missed 120500 ack-rtt-p50-ns 250000 connect-p50-ns
//
// The name holds the scenario's keys only, in this order: transport; server,
// only when the server was not in-process (an address as host:port); clients;
// rooms; rooms-per-client; publishers; rate (rate_eps); payload
// (payload_bytes); and, as `go test` does, a -GOMAXPROCS suffix when the row
// records gomaxprocs. The repeat, run_id and started_at are never in the
// name, so benchstat takes the repeats of a scenario as samples of one
// benchmark; other scenario columns (duration_s, ack_every, seed, send_queue,
// slow_consumer) are not in it either, so compare runs made with the same
// ones. In a value, a byte that is not printable ASCII, and '%' and '/', is
// written as %XX, so a name has no space and its '/' only separate keys;
// transport names such as tcp+tls and quic-dgram are kept as they are.
//
// The units, in line order: p50-ns, p90-ns, p99-ns, p999-ns and max-ns (the
// fan-out latency percentiles lat_p50_us to lat_max_us), deliveries/s
// (throughput_eps), goodput-B/s (goodput_Bps), loss-ratio (loss_ratio),
// missed (missed), ack-rtt-p50-ns (ack_rtt_p50_us) and connect-p50-ns
// (connect_p50_us). Durations are integer nanoseconds (benchfmt reads -ns
// units as seconds, -sec); better=lower for all but deliveries/s and
// goodput-B/s. A duration of 0 means nothing was measured (no emit asked for
// an ACK, nothing was delivered, a v1 row) and is left out of the line, as is
// a decimal that is not finite.
//
// A row whose error is not empty is skipped: its numbers do not measure the
// scenario. [GoBenchWriter.Skipped] counts them; the caller reports them.
//
// To compare two builds, tell benchstat to ignore the configuration keys that
// name the build, or it puts each file in a table of its own:
//
//	benchstat -ignore evbench-version,vcs-revision old.txt new.txt
//
// # Schema versions
//
// Schema v1 is the columns from schema to saturated, plus the columns
// appended while the version was 1 (not_sent to error), which a v1 file may
// lack. Schema v2 appends the columns from rooms_per_client to platform, so
// that every row describes its whole scenario: the scenario as run, the
// transport's capabilities, where the server ran and what it counted, and
// the build and machine that produced the row. Nothing of v1 changed: no
// column was renamed, moved or given another unit. A v1 file still reads;
// its rows report schema 1 and their v2 columns read as 0, false or empty,
// which means not recorded, not measured as zero. Schema v3 appends the
// columns from send_queue_bytes to reconnects, likewise. This package writes
// every column with the current schema, so an older row written again
// claims it: keep the original file.
//
// # CSV columns
//
// Schema v1, in this order:
//
//   - schema (integer): the version of the column set the row was written
//     with: 3 for every column below, 2 or 1 for a file of an older version (see Schema
//     versions). A reader reports each row's own value.
//   - run_id (text): identifies the run that produced the row; every row of
//     one evbench invocation has the same run_id.
//   - started_at (RFC 3339 timestamp, UTC, nanoseconds): when this row's
//     measurement started, e.g. 2025-01-02T03:04:05.123456789Z (trailing
//     zeros of the fraction are left out, as time.RFC3339Nano does).
//   - transport (text): the transport's registry name: tcp, tcp+tls, udp, ws,
//     wss, quic or quic-dgram.
//   - clients (count): simulated clients in the scenario.
//   - rooms (count): rooms the clients join, besides the room named by each
//     client's own id.
//   - publishers (count): clients that emit events.
//   - rate_eps (events per second, decimal): target emit rate of each
//     publisher.
//   - payload_bytes (bytes): payload size of every event.
//   - duration_s (seconds, decimal): length of the measurement window,
//     excluding warm-up and drain.
//   - repeat (integer, counting from 0): which repetition of this
//     (scenario, transport) pair the row describes.
//   - sent (events): events the publishers emitted in the measurement window.
//   - expected (deliveries): for each sent event, the members of its room at
//     send time (join acknowledged, not yet left) minus the sender, summed.
//   - delivered (deliveries): expected deliveries that arrived by the end of
//     the drain window, each counted once.
//   - missed (deliveries): expected minus delivered.
//   - duplicates (deliveries): deliveries that arrived again with a
//     (sender, room) sequence number already received.
//   - reordered (deliveries): deliveries that arrived after a later sequence
//     number of the same (sender, room).
//   - loss_ratio (ratio from 0 to 1, decimal): missed / expected.
//   - throughput_eps (deliveries per second, decimal): deliveries received
//     during the measurement window (duplicates excluded), divided by its
//     length; a backlog delivered during the drain does not count.
//   - goodput_Bps (bytes per second, decimal): payload bytes of those
//     deliveries per second.
//   - lat_p50_us (microseconds): median fan-out latency, receive time minus
//     intended send time (corrected for coordinated omission).
//   - lat_p90_us (microseconds): 90th percentile of the fan-out latency.
//   - lat_p99_us (microseconds): 99th percentile of the fan-out latency.
//   - lat_p999_us (microseconds): 99.9th percentile of the fan-out latency.
//   - lat_max_us (microseconds): largest fan-out latency recorded.
//   - lat_mean_us (microseconds): mean fan-out latency.
//   - lat_raw_p99_us (microseconds): 99th percentile of the raw latency,
//     receive time minus actual send time (not corrected for coordinated
//     omission).
//   - connect_p50_us (microseconds): median time for a client to connect,
//     from the start of the dial until the connection is usable.
//   - connect_p99_us (microseconds): 99th percentile of the connect time.
//   - ack_rtt_p50_us (microseconds): median time from an emit that asks for
//     an acknowledgement until its ACK arrives.
//   - ack_rtt_p99_us (microseconds): 99th percentile of the ack round trip.
//   - sched_lag_p99_us (microseconds): 99th percentile of the publishers'
//     scheduling lag, actual minus intended send time.
//   - saturated (true or false): true when the load generator did not keep
//     up (its scheduling lag exceeded the stated bound or slots went unsent);
//     the row's latencies then describe the generator, not the transport.
//
// Appended after v1 (a reader treats them as 0 or empty when absent):
//
//   - not_sent (send slots): slots of the publishers' schedule in the
//     measurement window that were never sent.
//   - lat_overflow (samples): latency samples above the latency histogram's
//     highest trackable value; they are counted here instead of being dropped
//     silently. They are not in the percentiles, so when this is not 0 the
//     upper percentiles are lower bounds.
//   - queue_drops (deliveries): deliveries the server dropped under its
//     slow-consumer policy or because they were over the transport's frame
//     limit, warm-up included (in the window they are part of missed).
//   - ack_timeouts (emits): emits that asked for an acknowledgement and had
//     none by the end of the drain window.
//   - send_errors (emits): emits in the measurement window whose write
//     failed; they are not counted in sent and owe no deliveries.
//   - disconnects (clients): clients whose connection ended during the run
//     before the harness closed it (for example under the disconnect
//     slow-consumer policy). A client that is gone is not a member of its
//     rooms, so later events do not expect it; when this is not 0 the row's
//     error says so, because the fan-out measured is not the one asked for.
//   - error (text): why the row's measurement failed; empty when it did not.
//     May hold commas, quotes and line breaks, quoted as RFC 4180 says.
//
// Added in schema v2 (absent from v1 files; a reader treats them as 0, false
// or empty when absent). First the scenario, as run (defaults filled in):
//
//   - rooms_per_client (rooms): how many of the rooms each client joins,
//     besides the room named by its own id.
//   - ack_every (emits): every ack_every-th emit of a publisher asks for an
//     acknowledgement, whose round trip ack_rtt_p50_us and ack_rtt_p99_us
//     measure; 0 means no emit asks for one (so those columns are 0 too).
//   - warmup_s (seconds, decimal): how long the publishers ran before the
//     measurement window; their events were delivered but not counted. 0
//     means no warm-up.
//   - drain_s (seconds, decimal): the bound on the wait after the window for
//     deliveries still in flight; the run ends sooner once every expected
//     delivery has arrived. 0 means no wait.
//   - seed (integer): the seed of the publishers' start phases and of the
//     payload bytes.
//   - send_queue (frames): the server's send queue per connection.
//   - slow_consumer (text): the server's policy for a full send queue:
//     drop-oldest (discard the oldest queued event) or disconnect (close the
//     connection).
//   - max_sched_lag_us (microseconds): the bound on the publishers' p99
//     scheduling lag (sched_lag_p99_us) above which the row is saturated.
//   - connect_timeout_s (seconds, decimal): the bound on each client's
//     connection set-up and joins.
//
// Then the transport's capabilities, as the transport states them:
//
//   - reliable (true or false): every event frame written is delivered unless
//     the connection fails (tcp, tcp+tls, ws, wss, quic).
//   - reliable_control (true or false): control frames (HELLO, JOIN, LEAVE,
//     PING) are delivered reliably and in order even where events are not
//     (every transport but udp).
//   - ordered (true or false): frames arrive in the order they were written.
//   - encrypted (true or false): frames travel under TLS 1.3 (tcp+tls, wss,
//     quic, quic-dgram).
//   - datagram (true or false): frames (udp) or event frames (quic-dgram)
//     travel as datagrams the network may drop, duplicate or reorder.
//   - max_frame_bytes (bytes): the largest frame the transport accepts; a
//     larger one is refused, never truncated.
//
// Then the server: where it ran and its counters over the row's run, warm-up
// and drain included, whether the server ran in-process or reported them
// from elsewhere:
//
//   - server (text): in-process when the server ran in the process of the
//     client fleet, otherwise the address the fleet dialled, as host:port.
//   - reply_drops (replies): replies (ACK, PONG) the server dropped under its
//     slow-consumer policy because a connection's reply queue was full too; a
//     dropped ACK shows as an ack timeout.
//   - oversize_drops (frames): frames the server's transport refused as
//     larger than its frame limit; the connection stayed open.
//   - protocol_errors (connections): connections the server closed because
//     they sent a malformed or unexpected frame.
//   - accept_errors (accepts): the server's failed accepts, other than its
//     listener closing.
//   - server_closed_clean (connections): connections the server saw end
//     cleanly after their HELLO: a BYE, the end of the stream, or the server
//     closing.
//   - server_closed_error (connections): connections that ended with a
//     transport error or a protocol error (the latter are in protocol_errors
//     as well).
//   - server_closed_slow (connections): connections the server closed under
//     the disconnect slow-consumer policy.
//
// Then the environment: the build that wrote the row and the machine of the
// client fleet:
//
//   - evbench_version (text): evbench's version.
//   - vcs_revision (text): the version-control revision evbench was built
//     from; it may end in +dirty, meaning the working tree had local
//     changes. Empty when the build recorded none.
//   - go_version (text): the Go toolchain evbench was built with, e.g.
//     go1.26.0.
//   - gomaxprocs (integer): the GOMAXPROCS the fleet ran with.
//   - kernel (text): the operating system's name and kernel release, e.g.
//     Linux 6.1.0-x86_64.
//   - platform (text): GOOS/GOARCH, e.g. linux/amd64.
//
// Added in schema v3 (absent from v1 and v2 files; a reader treats them as
// 0): the server's limits against hostile or broken peers, what they cut
// off over the run, and the fleet's reconnections:
//
//   - send_queue_bytes (bytes): the server's bound on the bytes queued for
//     one connection, beside send_queue's bound in frames.
//   - handshake_timeouts (connections): connections the server closed
//     because their HELLO did not arrive within its handshake timeout.
//   - read_timeouts (connections): connections the server closed because a
//     frame that had started to arrive was not complete within its read
//     timeout.
//   - idle_closes (connections): connections the server closed because it
//     received nothing from them for its idle timeout.
//   - write_timeouts (connections): connections the server closed because
//     one write to them did not complete within its write timeout (slow
//     consumers, also in server_closed_slow).
//   - unvalidated_drops (datagrams): datagrams the server dropped because
//     their source address had not proven it receives there (udp).
//   - limit_refusals (requests): requests the server refused for crossing a
//     per-connection limit (rooms, namespaces, name length, payload size).
//   - reconnect_attempts (dials): the fleet's dials to reconnect clients
//     whose connection ended without the harness ending it.
//   - reconnects (connections): those attempts that connected and joined
//     the client's rooms again.
//
// # Invariants
//
// Every row holds these, and [Check] (or `evbench check FILE`) checks them:
// delivered + missed = expected; loss_ratio is missed / expected, from 0 to
// 1; the latency percentiles do not decrease from lat_p50_us to lat_max_us
// and are positive when anything was delivered; no counter is negative;
// saturated is true when not_sent > 0; and expected > 0 unless the row's
// error says why not. With [CheckOptions].Reliable (check's
// --reliable-zero-missed) it also checks that a reliable transport missed
// nothing, which holds at a load the server keeps up with.
package results

// SchemaVersion is the version of the CSV column set this package writes.
// Versions only append columns; see the package documentation. Version 2
// added the scenario, capability, server and environment columns; version 3
// the server's limits and the fleet's reconnections.
const SchemaVersion = 3
