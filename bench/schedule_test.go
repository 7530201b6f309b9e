package bench_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/evbench/evbench/bench"
)

func TestScheduleSlotsAndDue(t *testing.T) {
	tests := []struct {
		name  string
		s     bench.Schedule
		slots int64
	}{
		{"C3: 20,000/s for 10 s", bench.Schedule{StartNs: 1_234_567, Interval: 50 * time.Microsecond, EndNs: 1_234_567 + int64(10*time.Second)}, 200_000},
		{"empty window", bench.Schedule{StartNs: 100, Interval: 10, EndNs: 100}, 0},
		{"end before start", bench.Schedule{StartNs: 100, Interval: 10, EndNs: 50}, 0},
		{"zero interval", bench.Schedule{StartNs: 0, Interval: 0, EndNs: 1000}, 0},
		{"negative interval", bench.Schedule{StartNs: 0, Interval: -10, EndNs: 1000}, 0},
		{"window shorter than one interval", bench.Schedule{StartNs: 0, Interval: time.Second, EndNs: 1}, 1},
		{"exact multiple: the slot at EndNs is excluded", bench.Schedule{StartNs: 0, Interval: 10, EndNs: 30}, 3},
		{"one past a multiple", bench.Schedule{StartNs: 0, Interval: 10, EndNs: 31}, 4},
		{"one short of a multiple", bench.Schedule{StartNs: 0, Interval: 10, EndNs: 29}, 3},
		{"negative start", bench.Schedule{StartNs: -100, Interval: 30, EndNs: 0}, 4}, // -100, -70, -40, -10
		{"C1: 5/s for 30 s", bench.Schedule{StartNs: 7, Interval: 200 * time.Millisecond, EndNs: 7 + int64(30*time.Second)}, 150},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.s.Slots(); got != tt.slots {
				t.Fatalf("Slots() = %d, want %d", got, tt.slots)
			}
			if got := tt.s.Due(0); got != tt.s.StartNs {
				t.Errorf("Due(0) = %d, want StartNs %d", got, tt.s.StartNs)
			}
			if tt.slots == 0 {
				return
			}
			// Every slot is due inside [StartNs, EndNs) at StartNs + k·Interval,
			// and the next one would not be.
			for _, k := range []int64{0, tt.slots / 2, tt.slots - 1} {
				if got, want := tt.s.Due(k), tt.s.StartNs+k*int64(tt.s.Interval); got != want {
					t.Errorf("Due(%d) = %d, want %d", k, got, want)
				}
			}
			if last := tt.s.Due(tt.slots - 1); last >= tt.s.EndNs {
				t.Errorf("last slot due at %d, not before EndNs %d", last, tt.s.EndNs)
			}
			if next := tt.s.Due(tt.slots); next < tt.s.EndNs {
				t.Errorf("slot %d due at %d is before EndNs %d but not counted", tt.slots, next, tt.s.EndNs)
			}
		})
	}
}

// TestPaceGrace: a slot that became late is still sent if the publisher gets
// to it before EndNs+Grace, and is counted NotSent otherwise.
func TestPaceGrace(t *testing.T) {
	const ms = int64(time.Millisecond)
	tests := []struct {
		name      string
		grace     time.Duration
		stallSlot int64         // this slot's send takes stall; the others take no time
		stall     time.Duration // the stalled send's duration
		sent      int64
	}{
		{"no grace, caught up before the end", 0, 0, 99 * time.Millisecond, 10},
		{"no grace, stalled until the end", 0, 0, 100 * time.Millisecond, 1},
		{"grace covers the stall", 5 * time.Millisecond, 0, 105*time.Millisecond - 1, 10},
		{"stall reaches end+grace", 5 * time.Millisecond, 0, 105 * time.Millisecond, 1},
		{"stall in the middle, grace covers", 5 * time.Millisecond, 4, 64 * time.Millisecond, 10},
		{"stall in the middle, past grace", 5 * time.Millisecond, 4, 65 * time.Millisecond, 5},
		{"stall on the last slot: nothing after it", 0, 9, time.Hour, 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// 10 slots due at 0, 10, ..., 90 ms.
			s := bench.Schedule{StartNs: 0, Interval: 10 * time.Millisecond, EndNs: 100 * ms, Grace: tt.grace}
			clk := &fakeClock{}
			st := s.Pace(context.Background(), clk, func(k, _ int64, _ time.Duration) error {
				if k == tt.stallSlot {
					clk.advance(tt.stall)
				}
				return nil
			})
			if st.Sent != tt.sent || st.NotSent != 10-tt.sent || st.Failed != 0 {
				t.Errorf("got %+v, want Sent %d NotSent %d", st, tt.sent, 10-tt.sent)
			}
		})
	}
}

type sendRec struct {
	k, due, now int64
	lag         time.Duration
}

// TestPaceC3 is docs/cases.md C3: 20,000 events/s for 10 s with a 1.5 s pause
// injected into one send. Sends follow the absolute times start + k·50 µs,
// no slot is skipped, each late slot has its lag recorded and the lag falls
// back to 0 as the publisher catches up, and every one of the 200,000 slots
// is either sent or counted NotSent.
func TestPaceC3(t *testing.T) {
	const (
		start    = int64(1_234_567_890) // an arbitrary origin: due times are absolute
		interval = 50 * time.Microsecond
		slots    = 200_000
		cost     = 10 * time.Microsecond // an ordinary send
		pause    = 1500 * time.Millisecond
		grace    = 10 * time.Millisecond
	)
	tests := []struct {
		name      string
		pauseSlot int64
		sent      int64
		// catchUp is the slot after the pause from which lag is 0 again
		// (0: the schedule ends first). The publisher gains interval−cost =
		// 40 µs per slot, so it is back on time 1.5 s/40 µs = 37,500 slots on.
		catchUp int64
	}{
		// A pause at 2.5 s: all slots sent, the backlog cleared by 4.375 s.
		{"pause early", 50_000, slots, 50_000 + 37_500},
		// The pause ends exactly at EndNs: in the 10 ms grace, 1,000 sends
		// of 10 µs go out back to back; the rest are not sent.
		{"pause ends at the window's end", 170_000, 170_001 + 1_000, 0},
		// The pause ends after EndNs+Grace: nothing more is sent.
		{"pause past the end", 180_000, 180_001, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := bench.Schedule{StartNs: start, Interval: interval, EndNs: start + int64(10*time.Second), Grace: grace}
			if s.Slots() != slots {
				t.Fatalf("Slots() = %d, want %d", s.Slots(), slots)
			}
			clk := &fakeClock{now: start - int64(time.Millisecond)}
			rec := bench.NewRecorder(start, s.EndNs, 4, 0)
			sends := make([]sendRec, 0, slots)
			st := s.Pace(context.Background(), clk, func(k, due int64, lag time.Duration) error {
				sends = append(sends, sendRec{k: k, due: due, now: clk.Now(), lag: lag})
				rec.RecordSend(0, lag, 1, nil)
				if k == tt.pauseSlot {
					clk.advance(pause)
				} else {
					clk.advance(cost)
				}
				return nil
			})
			// As the Runner does: every slot Pace gave up on is counted.
			rec.RecordNotSent(0, st.NotSent)

			if st.Sent+st.NotSent != slots {
				t.Fatalf("Sent %d + NotSent %d = %d, want every one of %d slots", st.Sent, st.NotSent, st.Sent+st.NotSent, slots)
			}
			if st.Sent != tt.sent || st.NotSent != slots-tt.sent || st.Failed != 0 {
				t.Errorf("got %+v, want Sent %d NotSent %d", st, tt.sent, slots-tt.sent)
			}
			if int64(len(sends)) != st.Sent {
				t.Fatalf("send called %d times, Sent = %d", len(sends), st.Sent)
			}
			for i, sr := range sends {
				if sr.k != int64(i) {
					t.Fatalf("send %d got slot %d: a slot was skipped or repeated", i, sr.k)
				}
				if want := start + int64(i)*int64(interval); sr.due != want {
					t.Fatalf("slot %d due at %d, want start + k·50µs = %d", i, sr.due, want)
				}
				if sr.lag < 0 || sr.lag != time.Duration(sr.now-sr.due) {
					t.Fatalf("slot %d: lag %v, want now−due = %v ≥ 0", i, sr.lag, time.Duration(sr.now-sr.due))
				}
				if int64(i) <= tt.pauseSlot && sr.lag != 0 {
					t.Fatalf("slot %d before the pause is %v late", i, sr.lag)
				}
			}
			// After the pause: the first slot is 1.5 s − 50 µs late, each later
			// one 40 µs less (sent back to back, no burst skipped), until the
			// publisher is on time again.
			if first := tt.pauseSlot + 1; first < int64(len(sends)) {
				if got, want := sends[first].lag, pause-interval; got != want {
					t.Errorf("slot %d after the pause: lag %v, want %v", first, got, want)
				}
			}
			for k := tt.pauseSlot + 2; k < int64(len(sends)); k++ {
				prev, cur := sends[k-1].lag, sends[k].lag
				switch {
				case tt.catchUp != 0 && k >= tt.catchUp:
					if cur != 0 {
						t.Fatalf("slot %d: lag %v after catching up at slot %d", k, cur, tt.catchUp)
					}
				case cur != prev-(interval-cost):
					t.Fatalf("slot %d: lag %v after %v, want it to fall by %v", k, cur, prev, interval-cost)
				}
			}

			sn := rec.Snapshot()
			if sn.Sent != st.Sent || sn.NotSent != st.NotSent || sn.Sent+sn.NotSent != slots {
				t.Errorf("recorder: Sent %d NotSent %d, want %d and %d", sn.Sent, sn.NotSent, st.Sent, st.NotSent)
			}
			if sn.SchedLag.TotalCount() != st.Sent {
				t.Errorf("lag histogram holds %d samples, want one per send (%d)", sn.SchedLag.TotalCount(), st.Sent)
			}
			if maxLag := time.Duration(sn.SchedLag.Max()); len(sends) > int(tt.pauseSlot)+1 && (maxLag < pause-interval || maxLag > pause+pause/500) {
				t.Errorf("max scheduling lag %v, want %v (within the histogram's 0.1%%)", maxLag, pause-interval)
			}
		})
	}
}

// TestPaceC1 is docs/cases.md C1 on the virtual clock: a target of 5 events/s
// whose every send takes 1 s, for 30 s. Event k is due at 0.2·k s but
// starts at k s, so its CO-corrected latency is exactly 1 + 0.8·k s while
// its raw latency stays 1 s; about 30 of 150 slots are sent and the rest are
// counted NotSent.
func TestPaceC1(t *testing.T) {
	tests := []struct {
		grace time.Duration
		sent  int64
	}{
		{0, 30}, // sends start at 0, 1, ..., 29 s; at 30 s the window is over
		// The 31st send starts at exactly 30 s, within the 10 ms grace.
		{10 * time.Millisecond, 31},
	}
	for _, tt := range tests {
		t.Run("grace="+tt.grace.String(), func(t *testing.T) {
			const start = int64(5 * time.Second)
			s := bench.Schedule{StartNs: start, Interval: 200 * time.Millisecond, EndNs: start + int64(30*time.Second), Grace: tt.grace}
			clk := &fakeClock{now: start}
			rec := bench.NewRecorder(start, s.EndNs, 0, 0)
			st := s.Pace(context.Background(), clk, func(k, due int64, lag time.Duration) error {
				sentNs := clk.Now()
				clk.advance(time.Second) // the slow send
				rec.RecordSend(0, lag, 1, nil)
				// The receiver gets it as the send completes.
				rec.RecordDelivery(&bench.Delivery{Receiver: 1, Sender: 1, Seq: uint64(k), IntendedNs: due, SentNs: sentNs, RecvNs: clk.Now()})
				if want := time.Second + time.Duration(k)*800*time.Millisecond; time.Duration(clk.Now()-due) != want {
					t.Errorf("event %d: CO-corrected latency %v, want 1 s + 0.8 s·k = %v", k, time.Duration(clk.Now()-due), want)
				}
				if raw := time.Duration(clk.Now() - sentNs); raw != time.Second {
					t.Errorf("event %d: raw latency %v, want 1 s", k, raw)
				}
				return nil
			})
			rec.RecordNotSent(0, st.NotSent)
			if st.Sent != tt.sent || st.NotSent != 150-tt.sent {
				t.Fatalf("got %+v, want Sent %d NotSent %d of 150", st, tt.sent, 150-tt.sent)
			}
			sn := rec.Snapshot()
			if sn.Sent != tt.sent || sn.NotSent != 150-tt.sent || sn.Delivered != tt.sent {
				t.Errorf("recorder counts %+v", sn.Counts)
			}
			wantMax := time.Second + time.Duration(tt.sent-1)*800*time.Millisecond
			if got := time.Duration(sn.MaxLatNs); got != wantMax {
				t.Errorf("max CO-corrected latency %v, want %v", got, wantMax)
			}
			if got := time.Duration(sn.RawLatency.ValueAtQuantile(99)); got < time.Second || got > 1001*time.Millisecond {
				t.Errorf("raw p99 %v, want 1 s (within the histogram's 0.1%%)", got)
			}
		})
	}
}

// TestPaceStops: when ctx is done, Pace returns at once and counts every
// remaining slot as not sent; a send's error counts in Sent and Failed.
func TestPaceStops(t *testing.T) {
	s := bench.Schedule{StartNs: 0, Interval: time.Millisecond, EndNs: int64(time.Second)}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	clk := &fakeClock{}
	errOdd := errors.New("odd")
	st := s.Pace(ctx, clk, func(k, _ int64, _ time.Duration) error {
		if k == 399 {
			cancel()
		}
		if k%2 == 1 {
			return errOdd
		}
		return nil
	})
	if st.Sent != 400 || st.NotSent != 600 || st.Failed != 200 {
		t.Errorf("got %+v, want Sent 400 NotSent 600 Failed 200", st)
	}
	// A context that is already done sends nothing.
	st = s.Pace(ctx, &fakeClock{}, func(int64, int64, time.Duration) error {
		t.Error("send called after ctx was done")
		return nil
	})
	if st.Sent != 0 || st.NotSent != 1000 {
		t.Errorf("done ctx: got %+v, want NotSent 1000", st)
	}
}
