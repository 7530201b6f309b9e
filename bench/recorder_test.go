package bench_test

import (
	"errors"
	"math"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"

	"github.com/evbench/evbench/bench"
)

// TestRecorderC2 is docs/cases.md C2: a sample above the histograms' highest
// trackable value is counted in LatOverflow and raises MaxLatNs, nothing is
// dropped silently, and merging the shards loses nothing: the merged total
// is the sum of the inputs and MergeDropped is 0.
func TestRecorderC2(t *testing.T) {
	const maxLat = time.Millisecond
	const shards, perShard = 4, 1000
	rec := bench.NewRecorder(0, math.MaxInt64, shards, maxLat)
	// The reference holds every in-range sample in one histogram with the
	// Recorder's settings (1 ns .. maxLat, 3 significant digits).
	ref := hdrhistogram.New(1, int64(maxLat), 3)
	for r := range uint32(shards) {
		for i := range perShard {
			lat := int64(r+1)*100_000 + int64(i) // shard r: (r+1)·100 µs and up
			rec.RecordDelivery(&bench.Delivery{Receiver: r, Sender: 9, Seq: uint64(i), IntendedNs: 1, SentNs: 1, RecvNs: 1 + lat, PayloadBytes: 10})
			ref.RecordValue(lat)
		}
	}
	overflow := []time.Duration{5 * time.Millisecond, time.Hour}
	for i, lat := range overflow {
		rec.RecordDelivery(&bench.Delivery{Receiver: uint32(i), Sender: 10, IntendedNs: 1, SentNs: 1, RecvNs: 1 + int64(lat)})
	}
	sn := rec.Snapshot()

	total := int64(shards*perShard + len(overflow))
	if sn.Delivered != total {
		t.Errorf("delivered %d, want %d: an out-of-range sample is still a delivery", sn.Delivered, total)
	}
	if sn.LatOverflow != int64(len(overflow)) {
		t.Errorf("LatOverflow = %d, want %d", sn.LatOverflow, len(overflow))
	}
	if got := time.Duration(sn.MaxLatNs); got != time.Hour {
		t.Errorf("MaxLatNs = %v, want the exact overflowed maximum 1h", got)
	}
	if got := sn.Latency.TotalCount() + sn.LatOverflow; got != sn.Delivered {
		t.Errorf("histogram %d + overflow %d = %d, want every delivery (%d)", sn.Latency.TotalCount(), sn.LatOverflow, got, sn.Delivered)
	}
	if sn.MergeDropped != 0 {
		t.Errorf("MergeDropped = %d", sn.MergeDropped)
	}
	if got, want := sn.Latency.TotalCount(), ref.TotalCount(); got != want || got != shards*perShard {
		t.Errorf("merged total %d, want the sum of the inputs %d", got, want)
	}
	if !sn.Latency.Equals(ref) {
		t.Errorf("merged histogram differs from one holding every sample")
	}
	for q, want := range map[float64]time.Duration{25: 100 * time.Microsecond, 50: 200 * time.Microsecond, 75: 300 * time.Microsecond, 100: 400 * time.Microsecond} {
		if got := time.Duration(sn.Latency.ValueAtQuantile(q)); got < want || got > want+want/100+time.Microsecond {
			t.Errorf("merged p%v = %v, want ≈ %v", q, got, want)
		}
	}
	// The raw figure saturates at the highest value rather than vanishing.
	if got := sn.RawLatency.TotalCount(); got != total {
		t.Errorf("raw histogram holds %d samples, want %d", got, total)
	}
}

// TestRecordDelivery: what is counted for warm-up and measured events,
// duplicates and late arrivals; Delivered() agrees with Snapshot.
func TestRecordDelivery(t *testing.T) {
	rec := bench.NewRecorder(1000, 2000, 0, 0) // window [1000, 2000) ns
	steps := []struct {
		name string
		d    bench.Delivery
	}{
		{"warm-up", bench.Delivery{Seq: 0, IntendedNs: 500, RecvNs: 600}},
		{"warm-up, just before the window", bench.Delivery{Seq: 1, IntendedNs: 999, RecvNs: 1100}},
		{"first measured (window start is inclusive)", bench.Delivery{Seq: 2, IntendedNs: 1000, RecvNs: 1010}},
		{"duplicate of a measured event", bench.Delivery{Seq: 2, IntendedNs: 1000, RecvNs: 1020}},
		{"duplicate of a warm-up event", bench.Delivery{Seq: 0, IntendedNs: 500, RecvNs: 1500}},
		{"after a gap", bench.Delivery{Seq: 4, IntendedNs: 1500, RecvNs: 1540}},
		{"late arrival: delivered and reordered", bench.Delivery{Seq: 3, IntendedNs: 1400, RecvNs: 1560}},
		{"window end is exclusive", bench.Delivery{Seq: 5, IntendedNs: 2000, RecvNs: 2010}},
		{"same seq, another receiver: its own stream", bench.Delivery{Receiver: 1, Seq: 4, IntendedNs: 1500, RecvNs: 1530}},
		{"same seq, another room: its own stream", bench.Delivery{Room: 1, Seq: 4, IntendedNs: 1500, RecvNs: 1530}},
		{"same seq, another sender: its own stream", bench.Delivery{Sender: 1, Seq: 4, IntendedNs: 1500, RecvNs: 1530}},
		{"received before intended (clock skew): latency 0", bench.Delivery{Sender: 2, Seq: 0, IntendedNs: 1500, RecvNs: 1400}},
	}
	for _, s := range steps {
		d := s.d
		d.SentNs, d.PayloadBytes = d.IntendedNs, 100
		rec.RecordDelivery(&d)
	}
	sn := rec.Snapshot()
	want := bench.Counts{Delivered: 7, Duplicates: 1, Reordered: 1, Bytes: 700, MaxLatNs: 160, WindowRecv: 8, WindowBytes: 800}
	if sn.Counts != want {
		t.Errorf("counts\n got %+v\nwant %+v", sn.Counts, want)
	}
	if sn.Latency.TotalCount() != 7 || sn.RawLatency.TotalCount() != 7 || sn.Latency.Min() != 0 {
		t.Errorf("latency samples %d (min %d), raw %d; want 7, min 0", sn.Latency.TotalCount(), sn.Latency.Min(), sn.RawLatency.TotalCount())
	}

	// Sends: Delivered() reports the same delivered and expected counts as
	// Snapshot.
	rec.RecordSend(0, 3*time.Millisecond, 4, nil)
	rec.RecordSend(1, 0, 0, errTest)
	rec.RecordNotSent(2, 5)
	rec.RecordAck(0, 2*time.Millisecond)
	rec.RecordConnect(time.Millisecond)
	sn = rec.Snapshot()
	d, e := rec.Delivered()
	if d != sn.Delivered || e != sn.Expected || e != 4 {
		t.Errorf("Delivered() = (%d, %d), Snapshot has (%d, %d), want expected 4", d, e, sn.Delivered, sn.Expected)
	}
	if sn.Sent != 1 || sn.SendErrors != 1 || sn.NotSent != 5 || sn.AckRTT.TotalCount() != 1 || sn.Connect.TotalCount() != 1 || sn.SchedLag.TotalCount() != 2 {
		t.Errorf("after sends: %+v, acks %d, connects %d, lags %d", sn.Counts, sn.AckRTT.TotalCount(), sn.Connect.TotalCount(), sn.SchedLag.TotalCount())
	}
}

var errTest = errors.New("test error")

// TestRecorderConcurrent records from several goroutines while Delivered and
// Snapshot are read; the counts only grow and end exact.
func TestRecorderConcurrent(t *testing.T) {
	const writers, each = 8, 5000
	rec := bench.NewRecorder(0, math.MaxInt64, 4, 0)
	var wg sync.WaitGroup
	for w := range uint32(writers) {
		wg.Go(func() {
			for i := range each {
				rec.RecordSend(int(w), 0, 1, nil)
				rec.RecordDelivery(&bench.Delivery{Receiver: w, Sender: 1, Seq: uint64(i), IntendedNs: 1, RecvNs: 2})
			}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	var last int64
	for stop := false; !stop; {
		select {
		case <-done:
			stop = true
		default:
		}
		d, e := rec.Delivered()
		sn := rec.Snapshot()
		if d < last || sn.Delivered < d || d > e+writers {
			t.Fatalf("delivered went %d → %d (snapshot %d, expected %d)", last, d, sn.Delivered, e)
		}
		last = d
	}
	sn := rec.Snapshot()
	if sn.Delivered != writers*each || sn.Expected != writers*each || sn.Latency.TotalCount() != writers*each {
		t.Errorf("final %+v, latency samples %d", sn.Counts, sn.Latency.TotalCount())
	}
}

// heapAlloc returns the bytes f allocates.
func heapAlloc(f func()) uint64 {
	var a, b runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&a)
	f()
	runtime.ReadMemStats(&b)
	return b.TotalAlloc - a.TotalAlloc
}

// TestRecorderMemory: a Recorder's histograms are per shard, and the shard
// count is fixed; a client adds only its sequence trackers (a few hundred
// bytes per stream), never a histogram.
func TestRecorderMemory(t *testing.T) {
	const shards = 8
	var rec *bench.Recorder
	newBytes := heapAlloc(func() { rec = bench.NewRecorder(0, math.MaxInt64, shards, 0) })
	histBytes := heapAlloc(func() { _ = hdrhistogram.New(1, int64(bench.DefaultMaxLatency), 3) })
	t.Logf("NewRecorder(%d shards): %d KiB; one histogram: %d KiB; default shards here: %d", shards, newBytes>>10, histBytes>>10, 4*runtime.GOMAXPROCS(0))
	if newBytes > (4*shards+2)*histBytes {
		t.Errorf("NewRecorder allocated %d bytes, more than its %d histograms", newBytes, 4*shards+1)
	}
	for _, clients := range []int{10, 10_000} {
		perStream := heapAlloc(func() {
			for c := range uint32(clients) {
				rec.RecordDelivery(&bench.Delivery{Receiver: c + uint32(clients), Sender: 1, IntendedNs: 1, RecvNs: 2})
			}
		}) / uint64(clients)
		t.Logf("%d clients: %d bytes per new stream", clients, perStream)
		if perStream > 1024 {
			t.Errorf("%d clients: %d bytes per client stream; the Recorder must not grow a histogram per client", clients, perStream)
		}
	}
	// Snapshot costs the same whatever the number of streams.
	if snap := heapAlloc(func() { rec.Snapshot() }); snap > 8*histBytes {
		t.Errorf("Snapshot allocated %d bytes", snap)
	}
}

// TestRecordNoAlloc is docs/cases.md C13 for the Recorder: once a stream has been
// seen, recording a delivery, a send or an ack allocates nothing.
func TestRecordNoAlloc(t *testing.T) {
	rec := bench.NewRecorder(0, math.MaxInt64, 0, 0)
	d := bench.Delivery{Receiver: 3, Room: 1, Sender: 7, IntendedNs: 1, SentNs: 1, RecvNs: 1000, PayloadBytes: 128}
	rec.RecordDelivery(&d)
	allocs := testing.AllocsPerRun(1000, func() {
		d.Seq++
		d.RecvNs += 97
		rec.RecordDelivery(&d)
		rec.RecordSend(3, time.Microsecond, 9, nil)
		rec.RecordAck(3, time.Millisecond)
	})
	if allocs != 0 {
		t.Errorf("%v allocations per delivery+send+ack, want 0", allocs)
	}
}

func BenchmarkRecordDelivery(b *testing.B) {
	rec := bench.NewRecorder(0, math.MaxInt64, 0, 0)
	d := bench.Delivery{Receiver: 3, Room: 1, Sender: 7, IntendedNs: 1, SentNs: 1, RecvNs: 1000, PayloadBytes: 128}
	rec.RecordDelivery(&d)
	b.ReportAllocs()
	for b.Loop() {
		d.Seq++
		d.RecvNs = 1000 + int64(d.Seq%1_000_000)
		rec.RecordDelivery(&d)
	}
}

// BenchmarkRecordDeliveryParallel: each goroutine is one receiver, as in a
// run where every client's read loop records its own deliveries.
func BenchmarkRecordDeliveryParallel(b *testing.B) {
	rec := bench.NewRecorder(0, math.MaxInt64, 0, 0)
	var next atomic.Uint32
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		d := bench.Delivery{Receiver: next.Add(1), Sender: 7, IntendedNs: 1, SentNs: 1, RecvNs: 1000, PayloadBytes: 128}
		for pb.Next() {
			d.Seq++
			d.RecvNs = 1000 + int64(d.Seq%1_000_000)
			rec.RecordDelivery(&d)
		}
	})
}
