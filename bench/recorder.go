package bench

import (
	"math"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// Histogram bounds shared by every HDR histogram of a run: nanosecond
// values, 3 significant digits (docs/design.md), highest trackable value
// DefaultMaxLatency. A sample above the highest value is never dropped
// silently: it is counted as an overflow and still raises the exact maximum.
const (
	// maxDefaultShards caps the default shard count: four histograms of
	// about 250 KiB each per shard, so 64 shards are about 64 MiB.
	maxDefaultShards = 64

	histLowestNs      = 1
	histSigFigs       = 3
	DefaultMaxLatency = 10 * time.Minute
)

// Recorder collects one run's measurements. Deliveries, emits and lags are
// recorded into one of a fixed number of shards chosen by the caller (a
// receiver's or publisher's index), each with its own mutex and HDR
// histograms, so no single lock sits on the per-delivery path and memory
// does not grow with the number of clients. Shards are merged by Snapshot.
//
// An event is measured when its intended send time falls inside the
// measurement window [WindowStart, WindowEnd); warm-up events are tracked
// for sequence state but not counted.
type Recorder struct {
	windowStart, windowEnd atomic.Int64
	recvEnd                atomic.Int64 // receptions at or after it are outside the window; see EndReception
	sealed                 atomic.Bool  // see Seal
	maxLatNs               int64
	shards                 []recShard

	cmu     sync.Mutex // guards connect; connection set-up is not a hot path
	connect *hdrhistogram.Histogram
}

type recShard struct {
	mu      sync.Mutex
	lat     *hdrhistogram.Histogram // receive − intended send (CO-corrected)
	raw     *hdrhistogram.Histogram // receive − actual send
	ackRTT  *hdrhistogram.Histogram
	lag     *hdrhistogram.Histogram // publisher scheduling lag
	streams map[streamKey]*SeqTracker
	c       Counts
	_       [64]byte // keep neighbouring shards' locks off one cache line
}

type streamKey struct {
	receiver uint32
	room     uint32
	sender   uint64
}

// Counts are a run's event counters. All are 64-bit (iperf #1892).
type Counts struct {
	Sent        int64 // measured events written by publishers
	NotSent     int64 // measured slots never sent (publisher behind schedule)
	SendErrors  int64 // measured slots whose write failed (not in Sent)
	Expected    int64 // Σ over measured events of (room members at send time − 1)
	Delivered   int64 // unique measured deliveries
	Duplicates  int64
	Reordered   int64
	Bytes       int64 // payload bytes of unique measured deliveries
	LatOverflow int64 // latency samples above the histogram's highest value
	MaxLatNs    int64 // exact largest CO-corrected latency, overflow included
	// WindowRecv and WindowBytes count the unique deliveries, and their
	// payload bytes, received inside the window, whenever their events were
	// sent: the basis of throughput and goodput.
	WindowRecv  int64
	WindowBytes int64
}

func (c *Counts) add(o Counts) {
	c.Sent += o.Sent
	c.NotSent += o.NotSent
	c.SendErrors += o.SendErrors
	c.Expected += o.Expected
	c.Delivered += o.Delivered
	c.Duplicates += o.Duplicates
	c.Reordered += o.Reordered
	c.Bytes += o.Bytes
	c.LatOverflow += o.LatOverflow
	c.MaxLatNs = max(c.MaxLatNs, o.MaxLatNs)
	c.WindowRecv += o.WindowRecv
	c.WindowBytes += o.WindowBytes
}

// NewRecorder returns a Recorder for the window [windowStart, windowEnd) on
// the run clock (nanoseconds), with shards shards (0: 4 × GOMAXPROCS, at most 64) and
// histograms tracking up to maxLatency (0: DefaultMaxLatency).
func NewRecorder(windowStart, windowEnd int64, shards int, maxLatency time.Duration) *Recorder {
	if shards <= 0 {
		shards = min(4*runtime.GOMAXPROCS(0), maxDefaultShards)
	}
	if maxLatency <= 0 {
		maxLatency = DefaultMaxLatency
	}
	r := &Recorder{
		maxLatNs: int64(maxLatency),
		shards:   make([]recShard, shards),
		connect:  newHist(int64(maxLatency)),
	}
	r.SetWindow(windowStart, windowEnd)
	r.recvEnd.Store(math.MaxInt64)
	for i := range r.shards {
		s := &r.shards[i]
		s.lat, s.raw = newHist(r.maxLatNs), newHist(r.maxLatNs)
		s.ackRTT, s.lag = newHist(r.maxLatNs), newHist(r.maxLatNs)
		s.streams = map[streamKey]*SeqTracker{}
	}
	return r
}

func newHist(maxNs int64) *hdrhistogram.Histogram {
	return hdrhistogram.New(histLowestNs, maxNs, histSigFigs)
}

// SetWindow sets the measurement window [start, end) on the run clock, in
// nanoseconds. The Runner sets it once the fleet is connected, before any
// event is sent.
func (r *Recorder) SetWindow(start, end int64) {
	r.windowStart.Store(start)
	r.windowEnd.Store(end)
}

// Seal freezes the Recorder: every Record call after Seal returns records
// nothing, and Snapshot returns what was recorded until then. The Runner
// seals an interrupted run once its row is final, so that goroutines still
// winding down cannot change it.
func (r *Recorder) Seal() {
	r.sealed.Store(true)
	for i := range r.shards { // wait for the calls already inside a shard
		r.shards[i].mu.Lock()
		r.shards[i].mu.Unlock()
	}
	r.cmu.Lock()
	r.cmu.Unlock()
}

// EndReception ends the window at endNs for receptions (the basis of
// throughput and goodput), whatever SetWindow says: a run cut short by an
// interrupt stops counting what arrives from the cut on, while deliveries of
// events sent before it are still accounted.
func (r *Recorder) EndReception(endNs int64) { r.recvEnd.Store(endNs) }

// Measured reports whether an event intended for intendedNs is inside the
// measurement window.
func (r *Recorder) Measured(intendedNs int64) bool {
	return intendedNs >= r.windowStart.Load() && intendedNs < r.windowEnd.Load()
}

// receivedInWindow reports whether a delivery received at recvNs counts
// towards the window's throughput.
func (r *Recorder) receivedInWindow(recvNs int64) bool {
	return r.Measured(recvNs) && recvNs < r.recvEnd.Load()
}

func (r *Recorder) shard(i int) *recShard { return &r.shards[uint(i)%uint(len(r.shards))] }

// Delivery is one event as a receiver got it.
type Delivery struct {
	Receiver     uint32 // the receiver's index in the fleet
	Room         uint32 // the room's index in the run
	Sender       uint64 // the sender's client id
	Seq          uint64 // the sender's sequence number in that room
	IntendedNs   int64  // when the publisher's schedule said to send it
	SentNs       int64  // when the publisher actually wrote it
	RecvNs       int64  // when the receiver decoded it
	PayloadBytes int
}

// RecordDelivery accounts one delivery: sequence state always; counters and
// latencies only when the event is measured and not a duplicate.
// It does not allocate once the stream has been seen.
func (r *Recorder) RecordDelivery(d *Delivery) {
	s := r.shard(int(d.Receiver))
	s.mu.Lock()
	defer s.mu.Unlock()
	if r.sealed.Load() {
		return
	}
	k := streamKey{receiver: d.Receiver, room: d.Room, sender: d.Sender}
	t := s.streams[k]
	if t == nil {
		t = new(SeqTracker)
		s.streams[k] = t
	}
	v := t.Observe(d.Seq)
	if v != SeqDuplicate && r.receivedInWindow(d.RecvNs) {
		s.c.WindowRecv++
		s.c.WindowBytes += int64(d.PayloadBytes)
	}
	if !r.Measured(d.IntendedNs) {
		return
	}
	switch v {
	case SeqDuplicate:
		s.c.Duplicates++
		return
	case SeqLate:
		s.c.Reordered++
	}
	s.c.Delivered++
	s.c.Bytes += int64(d.PayloadBytes)
	lat := max(d.RecvNs-d.IntendedNs, 0)
	s.c.MaxLatNs = max(s.c.MaxLatNs, lat)
	if s.lat.RecordValue(lat) != nil {
		s.c.LatOverflow++
	}
	s.raw.RecordValue(min(max(d.RecvNs-d.SentNs, 0), r.maxLatNs))
}

// RecordSend accounts one slot of a publisher (shard = publisher index):
// how late its send started (lag) and, when the write succeeded (err nil),
// one event sent and the deliveries it is expected to make (room members at
// send time minus the sender); a failed write counts as a send error and
// owes nothing.
func (r *Recorder) RecordSend(publisher int, lag time.Duration, expected int64, err error) {
	s := r.shard(publisher)
	s.mu.Lock()
	defer s.mu.Unlock()
	if r.sealed.Load() {
		return
	}
	if err != nil {
		s.c.SendErrors++
	} else {
		s.c.Sent++
		s.c.Expected += expected
	}
	s.lag.RecordValue(min(int64(lag), r.maxLatNs))
}

// RecordSendFailed takes back a RecordSend of a publisher whose write then
// failed: the event is a send error and owes its expected deliveries no
// more. After Seal it changes nothing, so a write abandoned by the teardown
// of an interrupted run stays counted as sent (it was in flight).
func (r *Recorder) RecordSendFailed(publisher int, expected int64) {
	s := r.shard(publisher)
	s.mu.Lock()
	defer s.mu.Unlock()
	if r.sealed.Load() {
		return
	}
	s.c.Sent--
	s.c.Expected -= expected
	s.c.SendErrors++
}

// RecordNotSent counts n measured slots of a publisher that were never sent.
func (r *Recorder) RecordNotSent(publisher int, n int64) {
	s := r.shard(publisher)
	s.mu.Lock()
	defer s.mu.Unlock()
	if !r.sealed.Load() {
		s.c.NotSent += n
	}
}

// RecordAck records an emit's ack round-trip time (shard = publisher index).
func (r *Recorder) RecordAck(publisher int, rtt time.Duration) {
	s := r.shard(publisher)
	s.mu.Lock()
	defer s.mu.Unlock()
	if !r.sealed.Load() {
		s.ackRTT.RecordValue(min(max(int64(rtt), 0), r.maxLatNs))
	}
}

// RecordConnect records one client's connection set-up time (dial, TLS
// where used, and the HELLO round trip).
func (r *Recorder) RecordConnect(d time.Duration) {
	r.cmu.Lock()
	defer r.cmu.Unlock()
	if !r.sealed.Load() {
		r.connect.RecordValue(min(max(int64(d), 0), r.maxLatNs))
	}
}

// Delivered is the number of unique measured deliveries so far; the Runner
// polls it during the drain.
func (r *Recorder) Delivered() (delivered, expected int64) {
	for i := range r.shards {
		s := &r.shards[i]
		s.mu.Lock()
		delivered += s.c.Delivered
		expected += s.c.Expected
		s.mu.Unlock()
	}
	return delivered, expected
}

// Snapshot is the merged state of a Recorder.
type Snapshot struct {
	Counts
	Latency, RawLatency, AckRTT, SchedLag, Connect *hdrhistogram.Histogram
	// MergeDropped counts samples lost in merging shards; shards share one
	// range, so it is always 0 unless histograms were set up wrongly, and
	// it is reported rather than hidden (hdrhistogram-go #2).
	MergeDropped int64
}

// Snapshot merges every shard into new histograms. It may be called while
// recording continues.
func (r *Recorder) Snapshot() Snapshot {
	sn := Snapshot{
		Latency: newHist(r.maxLatNs), RawLatency: newHist(r.maxLatNs),
		AckRTT: newHist(r.maxLatNs), SchedLag: newHist(r.maxLatNs),
	}
	for i := range r.shards {
		s := &r.shards[i]
		s.mu.Lock()
		sn.Counts.add(s.c)
		sn.MergeDropped += sn.Latency.Merge(s.lat) + sn.RawLatency.Merge(s.raw) +
			sn.AckRTT.Merge(s.ackRTT) + sn.SchedLag.Merge(s.lag)
		s.mu.Unlock()
	}
	r.cmu.Lock()
	sn.Connect = hdrhistogram.Import(r.connect.Export())
	r.cmu.Unlock()
	return sn
}
