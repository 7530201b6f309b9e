package bench_test

import (
	"math"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/evbench/evbench/bench"
)

const (
	in   = bench.SeqInOrder
	late = bench.SeqLate
	dup  = bench.SeqDuplicate
)

// seqRange returns lo, lo+1, ..., hi.
func seqRange(lo, hi uint64) []uint64 {
	var s []uint64
	for v := lo; v <= hi; v++ {
		s = append(s, v)
	}
	return s
}

func TestSeqTracker(t *testing.T) {
	type obs struct {
		seq  uint64
		want bench.SeqVerdict
	}
	// prefix is observed first and must all be in order; then steps.
	tests := []struct {
		name   string
		prefix []uint64
		steps  []obs
	}{
		{"first arrival is in order whatever its number", nil, []obs{{5, in}, {6, in}}},
		{"gap then the missing one: late, not lost", nil, []obs{{0, in}, {2, in}, {1, late}, {3, in}}},
		{"duplicate of the highest", nil, []obs{{0, in}, {0, dup}, {1, in}, {1, dup}}},
		{"duplicate of a late arrival", nil, []obs{{0, in}, {3, in}, {1, late}, {1, dup}, {2, late}, {2, dup}}},
		{"first arrival late: earlier numbers are late, then duplicates", nil,
			[]obs{{10, in}, {9, late}, {8, late}, {9, dup}, {10, dup}, {11, in}}},
		// After 0..600 in order, a jump of ≥ seqWindow (512) forgets the
		// whole window: 1999 shares a bit with 463 but is late, not a
		// duplicate. 1489 is the oldest number still remembered; 1488 and
		// 600 are too old to check, so even a repeat is classified late.
		{"jump beyond the window", seqRange(0, 600),
			[]obs{{2000, in}, {1999, late}, {1999, dup}, {1489, late}, {1489, dup}, {1488, late}, {1488, late}, {600, late}}},
		// A jump inside the window forgets only the numbers it passes over.
		{"jump within the window", seqRange(0, 511),
			[]obs{{1000, in}, {999, late}, {600, late}, {500, dup}, {489, dup}, {488, late}}},
		// The window is the 512 numbers up to and including the highest.
		{"window edge", seqRange(0, 1000),
			[]obs{{489, dup}, {488, late}, {1000, dup}}},
		{"across 2³² (iperf #1534)", nil,
			[]obs{{1<<32 - 3, in}, {1<<32 - 1, in}, {1<<32 - 2, late}, {1 << 32, in}, {1<<32 - 1, dup}, {1<<32 + 1, in}}},
		// Near 2⁶⁴ nothing wraps: the highest number is still in order, a
		// repeat of it is a duplicate, and no step loops forever.
		{"up to 2⁶⁴−1", nil,
			[]obs{{math.MaxUint64 - 10, in}, {math.MaxUint64, in}, {math.MaxUint64, dup}, {math.MaxUint64 - 1, late}, {math.MaxUint64 - 10, dup}, {0, late}}},
		{"from 0 to 2⁶⁴−1 in one jump", nil, []obs{{0, in}, {math.MaxUint64, in}, {0, late}, {math.MaxUint64, dup}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var tr bench.SeqTracker
			for _, s := range tt.prefix {
				if v := tr.Observe(s); v != in {
					t.Fatalf("prefix seq %d: verdict %d, want in order", s, v)
				}
			}
			for i, o := range tt.steps {
				if v := tr.Observe(o.seq); v != o.want {
					t.Errorf("step %d, seq %d: verdict %d, want %d", i, o.seq, v, o.want)
				}
			}
		})
	}
}

// c9Stream builds docs/cases.md C9's arrival order: sequence numbers from
// 2³²−3, 10,000 datagrams, 2 dropped, 3 delivered after later ones (one of
// them across 2³²), 1 delivered twice.
func c9Stream() (base uint64, n int, arrivals []uint64) {
	base, n = 1<<32-3, 10_000
	dropped := map[int]bool{4000: true, 7777: true}
	lateAfter := map[int]int{2: 5, 5000: 5003, 9000: 9002} // i is delivered right after lateAfter[i]
	held := map[int][]int{}
	for i, after := range lateAfter {
		held[after] = append(held[after], i)
	}
	for i := range n {
		if dropped[i] {
			continue
		}
		if _, ok := lateAfter[i]; !ok {
			arrivals = append(arrivals, base+uint64(i))
		}
		for _, j := range held[i] {
			arrivals = append(arrivals, base+uint64(j))
		}
		if i == 6010 {
			arrivals = append(arrivals, base+6000) // the duplicate
		}
	}
	return base, n, arrivals
}

// TestSeqC9 is docs/cases.md C9: lost = expected − unique delivered = 2,
// reordered = 3, duplicates = 1, with 64-bit counters; the stream split into
// 10 intervals gives per-interval totals that sum to the overall totals, and
// nothing is negative.
func TestSeqC9(t *testing.T) {
	base, n, arrivals := c9Stream()
	if len(arrivals) != n-2+1 {
		t.Fatalf("built %d arrivals, want %d", len(arrivals), n-1)
	}
	const payload = 1 << 20 // 9,998 MiB delivered: the byte count needs 64 bits
	rec := bench.NewRecorder(0, math.MaxInt64, 0, 0)
	for range n {
		rec.RecordSend(0, 0, 1, nil) // one receiver: each event expects 1 delivery
	}
	type tally struct{ delivered, reordered, duplicates, bytes int64 }
	var tr bench.SeqTracker
	var verdicts []tally      // per interval, from the tracker's verdicts
	var fromRecorder []tally  // per interval, from Recorder snapshot deltas
	var prev bench.Snapshot   // zero: the counts before the first interval
	per := len(arrivals) / 10 // the last interval takes the remainder
	for iv := range 10 {
		lo, hi := iv*per, (iv+1)*per
		if iv == 9 {
			hi = len(arrivals)
		}
		var v tally
		for _, seq := range arrivals[lo:hi] {
			switch tr.Observe(seq) {
			case bench.SeqLate:
				v.reordered++
				v.delivered, v.bytes = v.delivered+1, v.bytes+payload
			case bench.SeqDuplicate:
				v.duplicates++
			default:
				v.delivered, v.bytes = v.delivered+1, v.bytes+payload
			}
			rec.RecordDelivery(&bench.Delivery{Sender: 42, Seq: seq, IntendedNs: int64(seq - base), RecvNs: int64(seq-base) + 1000, SentNs: int64(seq - base), PayloadBytes: payload})
		}
		verdicts = append(verdicts, v)
		sn := rec.Snapshot()
		d := tally{sn.Delivered - prev.Delivered, sn.Reordered - prev.Reordered, sn.Duplicates - prev.Duplicates, sn.Bytes - prev.Bytes}
		if d.delivered < 0 || d.reordered < 0 || d.duplicates < 0 || d.bytes < 0 {
			t.Errorf("interval %d: negative delta %+v", iv, d)
		}
		fromRecorder = append(fromRecorder, d)
		prev = sn
	}
	if !slices.Equal(verdicts, fromRecorder) {
		t.Errorf("per-interval totals differ:\ntracker  %+v\nrecorder %+v", verdicts, fromRecorder)
	}
	var sum tally
	for _, v := range fromRecorder {
		sum.delivered += v.delivered
		sum.reordered += v.reordered
		sum.duplicates += v.duplicates
		sum.bytes += v.bytes
	}

	sn := rec.Snapshot()
	lost := sn.Expected - sn.Delivered
	if sn.Expected != int64(n) || lost != 2 || sn.Reordered != 3 || sn.Duplicates != 1 {
		t.Errorf("expected %d lost %d reordered %d duplicates %d; want %d, 2, 3, 1", sn.Expected, lost, sn.Reordered, sn.Duplicates, n)
	}
	if want := int64(n-2) * payload; sn.Bytes != want || sn.Bytes <= math.MaxUint32 {
		t.Errorf("bytes %d, want %d (over 2³²)", sn.Bytes, want)
	}
	if got := (tally{sn.Delivered, sn.Reordered, sn.Duplicates, sn.Bytes}); got != sum {
		t.Errorf("interval totals %+v do not sum to the overall %+v", sum, got)
	}
	// The late ones fall in the intervals where they arrived.
	for iv, want := range map[int]tally{0: {reordered: 1}, 5: {reordered: 1}, 6: {duplicates: 1}, 9: {reordered: 1}} {
		if got := fromRecorder[iv]; got.reordered != want.reordered || got.duplicates != want.duplicates {
			t.Errorf("interval %d: reordered %d duplicates %d, want %d and %d", iv, got.reordered, got.duplicates, want.reordered, want.duplicates)
		}
	}
	// Every counter is 64-bit and none is negative.
	c := reflect.ValueOf(sn.Counts)
	for i := range c.NumField() {
		f := c.Type().Field(i)
		if f.Type.Kind() != reflect.Int64 {
			t.Errorf("Counts.%s is %v, want int64", f.Name, f.Type)
		}
		if c.Field(i).Int() < 0 {
			t.Errorf("Counts.%s = %d is negative", f.Name, c.Field(i).Int())
		}
	}
	if lat := time.Duration(sn.MaxLatNs); lat != time.Microsecond {
		t.Errorf("max latency %v, want 1µs", lat)
	}
}
