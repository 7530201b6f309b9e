package bench

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/evbench/evbench/results"
	"github.com/evbench/evbench/transports"
)

// ErrMeasurement is wrapped by the error Run returns with a row whose
// measurement does not describe the scenario asked for (clients dropped out,
// nothing was expected, the server could not accept); the row is returned
// too, with its Error set.
var ErrMeasurement = errors.New("measurement failed")

// ListenAddr is where an in-process run's server listens: loopback only.
const ListenAddr = "127.0.0.1:0"

// InProcess is the Result.Server of a run whose server ran in its own
// process.
const InProcess = "in-process"

// Options say where and how a run is carried out, beside what it measures
// (the Scenario). The zero value runs the server in this process.
type Options struct {
	// Server is the address of a running server (`evbench serve`) for the
	// fleet to dial, such as "10.0.0.2:7000"; "" starts a Hub in this
	// process on ListenAddr, configured by the Scenario's SendQueue and
	// SlowConsumer. A remote server's own settings apply instead, and the
	// row records them. The fleet reads a remote server's counters with a
	// STATS request over the protocol, from a control connection of its
	// own, at the start and after the drain, and reports the difference: it
	// is exact when one fleet at a time uses the server.
	Server string
	// Final, when not nil, is called once with the row and the error Run is
	// about to return as soon as the row is final, before the run closes
	// its connections and waits for its goroutines. On a saturated machine
	// that teardown can take seconds; a caller that exits after an
	// interrupt can write the row from Final and not wait for it.
	Final func(results.Result, error)
}

// StatsTimeout bounds each STATS request to a remote server.
const StatsTimeout = 5 * time.Second

// Run measures sc over tr with the server in this process: it is
// RunWith(ctx, tr, sc, Options{}).
func Run(ctx context.Context, tr transports.Transport, sc Scenario) (results.Result, error) {
	return RunWith(ctx, tr, sc, Options{})
}

// RunWith measures sc over tr against the server opts names: it starts a
// Hub in this process unless opts.Server is set, connects sc.Clients
// clients (recording connect times), waits until every join is
// acknowledged, runs the open-loop publishers through warm-up and the
// measurement window, drains, reads the server's counters and returns one
// results.Result (Repeat 0) that describes its whole scenario.
//
// When ctx is cancelled (the first Ctrl-C) the window ends at once: the
// publishers stop before their next slot, and the deliveries in flight are
// drained for at most InterruptGrace after the cancel (not at all when the
// publishers were behind their schedule, so the server is behind too). The
// row is then final: a send still blocked in a write counts as sent and
// missed. It is returned with Error "interrupted" and Duration cut to the
// part measured. An error is returned, with the row's Error set too, when the
// run could not be set up, or wrapping ErrMeasurement when what it measured
// is not the scenario asked for.
func RunWith(ctx context.Context, tr transports.Transport, sc Scenario, opts Options) (results.Result, error) {
	sc = sc.WithDefaults()
	caps := tr.Caps()
	res := describe(sc, tr.Name(), caps, opts.Server)
	done := func(err error) (results.Result, error) {
		if err != nil && res.Error == "" {
			res.Error = err.Error()
		}
		if opts.Final != nil {
			opts.Final(res, err)
		}
		return res, err
	}
	if err := sc.Validate(tr.Name(), &caps); err != nil {
		return done(err)
	}
	checkCaps, clients := caps, sc.Clients
	if opts.Server != "" {
		// The server's descriptors are another process's; the fleet holds
		// one control connection besides its clients.
		checkCaps.ServerFDs, clients = 0, clients+1
	}
	if err := CheckCapacity(clients, checkCaps, tr.Name()); err != nil {
		return done(err)
	}
	r := newRun(sc, tr)
	defer context.AfterFunc(ctx, r.interrupt)()
	srv, err := r.startServer(ctx, opts.Server)
	if err != nil {
		return done(err)
	}
	defer r.teardown(srv)
	base, err := srv.stats(ctx)
	if err != nil {
		return done(err)
	}
	res.SendQueue, res.SlowConsumer, res.SendQueueBytes = base.SendQueue, base.SlowConsumer, base.SendQueueBytes
	if err := sc.fitsServer(base, srv.addr); err != nil {
		return done(err)
	}
	if err := r.connect(ctx, srv.addr); err != nil {
		return done(err)
	}

	windowStart, windowEnd := r.publishAll(ctx)
	interrupted := ctx.Err() != nil
	if r.drain(ctx) {
		interrupted = true // the drain was cut short: deliveries may still have been in flight
	}
	if interrupted {
		// The row is what was recorded until now; publishers still blocked in
		// a write are released by the teardown and change nothing. The window
		// ends at the cut, or after the last slot sent if a send raced the
		// cancel, so that everything counted as sent lies inside it.
		r.rec.Seal()
		<-r.cut // interrupt runs in a goroutine of its own after the cancel
		end := max(r.cutNs.Load(), r.lastDue.Load()+1, windowStart)
		res.Duration = time.Duration(min(end, windowEnd) - windowStart)
	}
	for _, fc := range r.clients {
		r.ackTimeouts += int64(fc.pendingAcks())
	}
	// An interrupted run still asks, briefly: the counters explain its row.
	statsCtx := context.WithoutCancel(ctx)
	if interrupted {
		var cancel context.CancelFunc
		statsCtx, cancel = context.WithTimeout(statsCtx, InterruptGrace)
		defer cancel()
	}
	// Without the counters (the server went away) the row keeps zeros and
	// says why, unless its verdict already names a cause.
	var st transports.HubStats
	end, statsErr := srv.stats(statsCtx)
	if statsErr == nil {
		st = end.Sub(base.HubStats)
	}
	sn := r.rec.Snapshot()
	r.fill(&res, sn, st)
	res.Error = r.verdict(&res, sn, st, interrupted)
	if statsErr != nil {
		// The server's counters in the row are then 0 for "unknown".
		res.Error = strings.TrimPrefix(res.Error+"; ", "; ") + statsErr.Error() + " (the server's counters in this row are unknown, written as 0)"
	}
	if res.Error != "" && !interrupted {
		return done(fmt.Errorf("%w: %s", ErrMeasurement, res.Error))
	}
	return done(nil)
}

// fitsServer reports a scenario that the server's per-connection limits,
// as its STATS answer states them, would refuse, before any client
// connects. A limit of 0 is a server that does not state it.
func (sc Scenario) fitsServer(st transports.ServerStats, addr string) error {
	switch {
	case st.MaxPayloadBytes > 0 && sc.PayloadBytes > st.MaxPayloadBytes:
		return fmt.Errorf("the server at %s accepts payloads of at most %d bytes, and --payload is %d: lower --payload, or raise the server's limit (evbench serve --max-payload)",
			addr, st.MaxPayloadBytes, sc.PayloadBytes)
	case st.MaxRooms > 0 && sc.RoomsPerClient > st.MaxRooms:
		return fmt.Errorf("the server at %s lets a connection join at most %d rooms, and --rooms-per-client is %d: lower it, or raise the server's limit (evbench serve --max-rooms)",
			addr, st.MaxRooms, sc.RoomsPerClient)
	case st.MaxNamespaces == 1:
		return fmt.Errorf("the server at %s lets a connection use only the namespace /, and the fleet's rooms are in %s: raise the server's limit (evbench serve --max-namespaces)",
			addr, Namespace)
	}
	return nil
}

// newRun prepares the state of one Run. The Recorder exists before any
// client, so that connect times land in it; its window is set once the
// fleet is ready.
func newRun(sc Scenario, tr transports.Transport) *run {
	r := &run{
		sc: sc, tr: tr, clk: newRealClock(time.Now()), rec: NewRecorder(0, 0, 0, 0),
		members: make([]roomState, sc.Rooms), roomIndex: make(map[string]uint32, sc.Rooms),
		cut: make(chan struct{}), sending: make([]atomic.Int64, sc.PublisherCount()),
	}
	for i := range sc.Rooms {
		r.roomIndex[roomName(i)] = uint32(i)
	}
	return r
}

// target is the server a run's fleet dials: a Server in this process, or a
// remote one read through a control connection.
type target struct {
	addr    string
	local   *Server            // nil for a remote server
	control *transports.Client // remote only: asks for the server's counters
}

// stats returns the server's settings and counters: a local Server's read
// directly, a remote one's by a STATS request bounded by StatsTimeout.
func (t *target) stats(ctx context.Context) (transports.ServerStats, error) {
	if t.local != nil {
		return t.local.Stats(), nil
	}
	ctx, cancel := context.WithTimeout(ctx, StatsTimeout)
	defer cancel()
	st, err := t.control.ServerStats(ctx)
	if err != nil {
		select {
		case <-t.control.Done():
			return st, fmt.Errorf("the server at %s went away during the run: its control connection ended (%w)", t.addr, t.control.Err())
		default:
		}
		return st, fmt.Errorf("reading the counters of the server at %s: %w", t.addr, err)
	}
	return st, nil
}

// startServer starts a Server on loopback when remote is "", and otherwise
// dials a control connection to the server at remote.
func (r *run) startServer(ctx context.Context, remote string) (*target, error) {
	if remote != "" {
		cctx, cancel := context.WithTimeout(ctx, r.sc.ConnectTimeout)
		defer cancel()
		c, err := transports.Dial(cctx, r.tr, remote, transports.ClientConfig{Clock: r.clk.Now})
		if err != nil {
			var verify *tls.CertificateVerificationError
			if errors.As(err, &verify) {
				return nil, fmt.Errorf("connecting to the server at %s: %w", remote, err)
			}
			return nil, fmt.Errorf("connecting to the server at %s (is it serving %s there?): %w", remote, r.tr.Name(), err)
		}
		return &target{addr: remote, control: c}, nil
	}
	// The server in this process takes whatever the scenario asks of it:
	// its per-connection limits grow to the scenario's payload and rooms.
	srv, err := StartServer(ctx, r.tr, ListenAddr, transports.HubConfig{
		SendQueue: r.sc.SendQueue, SlowConsumer: r.sc.SlowConsumer, OnAcceptError: r.failures.AcceptError,
		MaxPayloadBytes: max(r.sc.PayloadBytes, transports.DefaultMaxPayloadBytes),
		MaxRooms:        max(r.sc.RoomsPerClient, transports.DefaultMaxRooms),
	})
	if err != nil {
		return nil, err
	}
	return &target{addr: srv.Addr().String(), local: srv}, nil
}

// teardown closes the clients, waits for the publishers (the closed
// connections ended any blocked write), then closes the control connection
// or the in-process server.
func (r *run) teardown(t *target) {
	r.closeClients()
	r.publishers.Wait()
	if t.control != nil {
		t.control.Close()
	}
	if t.local != nil {
		t.local.Close()
	}
}

// publishAll runs every publisher through warm-up and the window and
// returns the window on the run clock. Publishers start after a short lead,
// each at a random phase within its first interval so that they do not fire
// in lockstep. After an interrupt it returns once the publishers have
// stopped or the interrupt's grace has passed, whichever is first: a
// publisher blocked in a write (a full send buffer towards a server that is
// far behind) would otherwise hold the run for as long as the backlog takes.
// The teardown (startServer's stop) releases and waits for those.
func (r *run) publishAll(ctx context.Context) (windowStart, windowEnd int64) {
	sc := r.sc
	interval := time.Duration(float64(time.Second) / sc.RateEPS)
	startNs := r.clk.Now() + int64(20*time.Millisecond)
	windowStart = startNs + int64(max(sc.Warmup, 0))
	windowEnd = windowStart + int64(sc.Duration)
	r.rec.SetWindow(windowStart, windowEnd)
	r.reconnectUntil.Store(windowEnd + int64(max(sc.Drain, 0)))

	rng := rand.New(rand.NewPCG(uint64(sc.Seed), 0x65766265))
	for p := range sc.PublisherCount() {
		sched := Schedule{StartNs: startNs + rng.Int64N(int64(interval)), Interval: interval, EndNs: windowEnd, Grace: sc.MaxSchedLag}
		payloadSeed := rng.Uint64() // drawn here: rng is not safe for concurrent use
		r.publishers.Go(func() { r.publish(ctx, p, sched, payloadSeed) })
	}
	done := make(chan struct{})
	go func() { r.publishers.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		select {
		case <-done:
		case <-r.interruptDeadline():
		}
	}
	return windowStart, windowEnd
}

// InterruptGrace bounds how long a run goes on after ctx is cancelled to
// let the deliveries in flight arrive.
const InterruptGrace = time.Second

// interrupt records when ctx was cancelled: the end of the measured window
// on the run clock (also for receptions), and when the grace that follows
// ends. Run registers it with context.AfterFunc.
func (r *run) interrupt() {
	now := r.clk.Now()
	r.cutNs.Store(now)
	r.rec.EndReception(now)
	r.graceEnd = time.Now().Add(InterruptGrace)
	if r.behind(now) {
		// The publishers are behind their schedule, so the server is behind
		// too: what is in flight would not land within the grace.
		r.graceEnd = time.Now()
	}
	close(r.cut)
}

// behind reports whether the publishers are behind their schedule at now:
// the latest send started later than MaxSchedLag after it was due, or a
// send has been in its write for longer than that.
func (r *run) behind(now int64) bool {
	bound := int64(r.sc.MaxSchedLag)
	if r.lastLag.Load() > bound {
		return true
	}
	for i := range r.sending {
		if start := r.sending[i].Load(); start != 0 && now-start > bound {
			return true
		}
	}
	return false
}

// interruptDeadline returns a channel closed when the interrupt's grace
// ends. Call it only once ctx is done.
func (r *run) interruptDeadline() <-chan time.Time {
	<-r.cut // interrupt runs in a goroutine of its own right after the cancel
	return time.After(time.Until(r.graceEnd))
}

// verdict records the clients lost in res.Disconnects and returns the
// row's error: why its measurement does not describe the scenario asked
// for, or "" when it does.
func (r *run) verdict(res *results.Result, sn Snapshot, st transports.HubStats, interrupted bool) string {
	r.lost.Lock()
	defer r.lost.Unlock()
	res.Disconnects = r.lost.n
	switch {
	case interrupted:
		return "interrupted"
	case r.lost.n > 0:
		times := ""
		if r.lost.n > int64(len(r.lost.clients)) {
			times = fmt.Sprintf(" (%d times in all)", r.lost.n)
		}
		return fmt.Sprintf("%d of %d clients disconnected during the run%s, so the fan-out measured is not the one asked for (first: %v); %d reconnected (%d reconnect attempts)",
			len(r.lost.clients), r.sc.Clients, times, r.lost.first, res.Reconnects, res.ReconnectAttempts)
	case res.Expected == 0 && res.NotSent > 0:
		return fmt.Sprintf("no delivery was expected in the measurement window: the publishers fell behind and sent none of its slots (%d not sent; lower --rate)", res.NotSent)
	case res.Expected == 0:
		return "no delivery was expected in the measurement window: no event was sent to a room with another member (raise --rate or --duration)"
	case st.AcceptErrors > 0 && res.Server != InProcess:
		return fmt.Sprintf("the server at %s failed %d accepts during the run (out of file descriptors?)", res.Server, st.AcceptErrors)
	case st.AcceptErrors > 0:
		return r.failures.Error(r.sc.Clients)
	case sn.MergeDropped > 0:
		return fmt.Sprintf("%d histogram samples were lost merging shards", sn.MergeDropped)
	}
	return ""
}

// run is the state of one Run.
type run struct {
	sc        Scenario
	tr        transports.Transport
	clk       *realClock
	rec       *Recorder
	roomIndex map[string]uint32
	members   []roomState // per room: clients whose join is acknowledged and who have not left, and the rejoins so far

	publishers sync.WaitGroup
	lastLag    atomic.Int64   // scheduling lag of the latest send of any publisher, ns
	sending    []atomic.Int64 // per publisher: when its current write started (run clock), 0 between writes
	lastDue    atomic.Int64   // latest due time of a measured slot sent, on the run clock

	cut      chan struct{} // closed by interrupt, once it has set cutNs and graceEnd
	cutNs    atomic.Int64  // when ctx was cancelled, on the run clock
	graceEnd time.Time     // read after cut is closed

	clients     []*fleetClient  // by index; each set before its first join, never changed after connect
	failures    ConnectFailures // clients that failed to connect, and the server's failed Accepts
	ackTimeouts int64
	closing     atomic.Bool // the harness is closing the clients
	lost        struct {    // connections that ended before closing
		sync.Mutex
		n       int64        // connections
		clients map[int]bool // the clients they belonged to
		first   error
	}

	life              context.Context // cancelled when the harness closes the fleet: reconnecting stops
	stopLife          context.CancelFunc
	watchers          sync.WaitGroup // one watch per connected client
	reconnectUntil    atomic.Int64   // end of the window and drain on the run clock; 0 until the window is set
	reconnectAttempts atomic.Int64
	reconnects        atomic.Int64
}

// connect dials every client, at most 32 at a time, and joins its rooms.
func (r *run) connect(ctx context.Context, addr string) error {
	sc := r.sc
	r.clients = make([]*fleetClient, sc.Clients)
	for i := range sc.Clients {
		fc := &fleetClient{i: i, rooms: sc.rooms(i)}
		fc.from = make([]atomic.Uint64, len(fc.rooms))
		if i < sc.PublisherCount() {
			fc.logs = make([]epochLog, len(fc.rooms))
		}
		r.clients[i] = fc
	}
	// An interrupt stops reconnecting too. connect's own ctx, bounded by
	// ConnectTimeout, is not the parent: it ends when connect returns.
	r.life, r.stopLife = context.WithCancel(ctx)
	ctx, cancel := context.WithTimeout(ctx, sc.ConnectTimeout)
	defer cancel()
	// At most 32 at a time: quic-go refuses handshakes beyond its accept
	// queue of 32 (protocol.MaxAcceptQueueSize) when they complete faster
	// than they are accepted.
	sem := make(chan struct{}, 32)
	var wg sync.WaitGroup
	for i := range sc.Clients {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			r.failures.Add(i, r.connectOne(ctx, addr, i))
		}()
	}
	wg.Wait()
	if r.failures.Failed() > 0 {
		return r.failures.Err(sc.Clients)
	}
	return nil
}

// connectOne makes client i's first connection and joins, then watches
// it: see reconnect.go for what happens when a connection ends.
func (r *run) connectOne(ctx context.Context, addr string, i int) error {
	fc := r.clients[i]
	c, err := r.dial(ctx, addr, fc, false)
	if err != nil {
		return err
	}
	r.watchers.Go(func() { r.watch(addr, fc, c) })
	return nil
}

// publish runs publisher p's schedule: event k goes to the publisher's
// rooms in turn, with a per-(sender, room) sequence number.
func (r *run) publish(ctx context.Context, p int, sched Schedule, payloadSeed uint64) {
	fc := r.clients[p]
	payload := make([]byte, r.sc.PayloadBytes)
	prng := rand.New(rand.NewPCG(payloadSeed, uint64(p)))
	for i := range payload {
		payload[i] = byte(prng.Uint32())
	}
	seqs := make([]uint64, len(fc.rooms))
	names := make([][]byte, len(fc.rooms))
	for j, room := range fc.rooms {
		names[j] = []byte(roomName(room))
	}
	ev := transports.Frame{Namespace: []byte(Namespace), Name: []byte(EventName), Payload: payload}
	// Each publisher has its own clock (same origin): its timers are reused
	// for every wait and shared with no one.
	clk := newPacingClock(r.clk.origin)
	defer clk.close()
	st := sched.Pace(ctx, clk, func(k, due int64, lag time.Duration) error {
		j := int(k % int64(len(fc.rooms)))
		measured := r.rec.Measured(due)
		r.lastLag.Store(int64(lag))
		c := fc.live.Load()
		if c == nil {
			// Away (reconnecting): nothing is written, and a measured
			// slot is a send error that owes no delivery (reconnect.go).
			if measured {
				r.rec.RecordSend(p, lag, 0, errAway)
			}
			return errAway
		}
		ev.Room, ev.Seq, ev.IntendedNs = names[j], seqs[j], due
		// Expected deliveries: the room's acknowledged members now, minus
		// the sender (docs/design.md); the epoch they were read under is
		// noted before the write, for the members who rejoined.
		members, epoch := r.members[fc.rooms[j]].read()
		fc.logs[j].note(epoch, seqs[j])
		seqs[j]++
		expected := max(members-1, 0)
		wantAck := r.sc.AckEvery > 0 && k%int64(r.sc.AckEvery) == 0
		if measured {
			// Counted before the write, so that no delivery is ever recorded
			// ahead of its send; a failed write takes it back.
			r.rec.RecordSend(p, lag, expected, nil)
			storeMax(&r.lastDue, due)
		}
		r.sending[p].Store(max(r.clk.Now(), 1))
		err := c.Emit(&ev, wantAck)
		r.sending[p].Store(0)
		if measured && err != nil {
			r.rec.RecordSendFailed(p, expected)
		}
		return err
	})
	// Count the measured slots that were never sent (docs/cases.md C1, C3). A
	// cancelled run (Ctrl-C) did not fall behind: its window ends where it
	// stopped, and the slots after that are not owed.
	if st.Cancelled {
		return
	}
	stopNs := r.clk.Now()
	for k := sched.Slots() - st.NotSent; k < sched.Slots(); k++ {
		if due := sched.Due(k); r.rec.Measured(due) && due < stopNs {
			r.rec.RecordNotSent(p, 1)
		}
	}
}

// storeMax raises v to x if x is larger.
func storeMax(v *atomic.Int64, x int64) {
	for old := v.Load(); x > old && !v.CompareAndSwap(old, x); old = v.Load() {
	}
}

// drain waits until every expected delivery has arrived or sc.Drain has
// passed since the window closed. After an interrupt it waits at most until
// InterruptGrace after it, and an interrupt during the drain ends it at
// once; it reports whether it was cut short that way.
func (r *run) drain(ctx context.Context) (cut bool) {
	deadline := time.Now().Add(max(r.sc.Drain, 0))
	if ctx.Err() != nil {
		<-r.cut
		if r.graceEnd.Before(deadline) {
			deadline = r.graceEnd
		}
		ctx = context.Background() // already interrupted: the bound above is the limit
	}
	poll := time.NewTicker(2 * time.Millisecond)
	defer poll.Stop()
	for time.Now().Before(deadline) {
		if d, e := r.rec.Delivered(); d >= e {
			return false
		}
		select {
		case <-ctx.Done():
			return true
		case <-poll.C:
		}
	}
	return false
}

// closeClients closes every client that connected, concurrently: a
// transport's Close may wait for its peer (a WebSocket close handshake, a
// QUIC linger), and those waits should overlap, not add up.
//
// It first stops reconnecting; a dial still under way is cancelled, and a
// connection made after the client was closed is closed by its dialler. It
// returns once every watch has ended.
func (r *run) closeClients() {
	r.closing.Store(true)
	if r.stopLife != nil {
		r.stopLife()
	}
	var wg sync.WaitGroup
	for _, fc := range r.clients {
		wg.Go(fc.close)
	}
	wg.Wait()
	r.watchers.Wait()
}

// fill writes the measurements into res: the Recorder's snapshot sn and
// the server's counters st over the run.
func (r *run) fill(res *results.Result, sn Snapshot, st transports.HubStats) {
	res.Sent, res.NotSent, res.SendErrors = sn.Sent, sn.NotSent, sn.SendErrors
	res.Expected, res.Delivered = sn.Expected, sn.Delivered
	res.Missed = sn.Expected - sn.Delivered
	res.Duplicates, res.Reordered = sn.Duplicates, sn.Reordered
	if sn.Expected > 0 {
		res.LossRatio = float64(res.Missed) / float64(sn.Expected)
	}
	// Rates are what arrived during the window: a backlog delivered during
	// the drain does not count as if it had come in the window.
	if secs := res.Duration.Seconds(); secs > 0 {
		res.ThroughputEPS = float64(sn.WindowRecv) / secs
		res.GoodputBps = float64(sn.WindowBytes) / secs
	}
	q := func(h interface{ ValueAtQuantile(float64) int64 }, p float64) time.Duration {
		return time.Duration(h.ValueAtQuantile(p))
	}
	// An HDR percentile is the top of its bucket (within 0.1% at 3
	// significant digits), so it may exceed the exact maximum by that much;
	// clamp to the maximum, which the Recorder keeps exactly.
	res.LatMax = time.Duration(sn.MaxLatNs)
	lat := func(p float64) time.Duration { return min(q(sn.Latency, p), res.LatMax) }
	res.LatP50, res.LatP90, res.LatP99, res.LatP999 = lat(50), lat(90), lat(99), lat(99.9)
	res.LatMean = time.Duration(sn.Latency.Mean())
	res.LatRawP99 = q(sn.RawLatency, 99)
	res.ConnectP50, res.ConnectP99 = q(sn.Connect, 50), q(sn.Connect, 99)
	res.AckRTTP50, res.AckRTTP99 = q(sn.AckRTT, 50), q(sn.AckRTT, 99)
	res.SchedLagP99 = q(sn.SchedLag, 99)
	res.Saturated = sn.NotSent > 0 || res.SchedLagP99 > r.sc.MaxSchedLag
	res.LatOverflow = sn.LatOverflow
	res.QueueDrops = int64(st.QueueDrops + st.OversizeDrops)
	res.ReplyDrops, res.OversizeDrops = int64(st.ReplyDrops), int64(st.OversizeDrops)
	res.ProtocolErrors, res.AcceptErrors = int64(st.ProtocolErrors), int64(st.AcceptErrors)
	res.ServerClosedClean, res.ServerClosedError, res.ServerClosedSlow = int64(st.ClosedClean), int64(st.ClosedError), int64(st.ClosedSlow)
	res.HandshakeTimeouts, res.ReadTimeouts, res.IdleCloses = int64(st.HandshakeTimeouts), int64(st.ReadTimeouts), int64(st.IdleCloses)
	res.WriteTimeouts, res.UnvalidatedDrops, res.LimitRefusals = int64(st.WriteTimeouts), int64(st.UnvalidatedDrops), int64(st.LimitRefusals)
	res.AckTimeouts = r.ackTimeouts
	res.ReconnectAttempts, res.Reconnects = r.reconnectAttempts.Load(), r.reconnects.Load()
}
