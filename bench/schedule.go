package bench

import (
	"context"
	"time"
)

// Clock is the run's single monotonic clock: Now returns nanoseconds since
// an arbitrary origin, and Sleep waits until a time on that clock. Tests
// substitute a fake to check schedules exactly.
type Clock interface {
	Now() int64
	// SleepUntil returns when Now() >= t or ctx is done (then ctx.Err()).
	SleepUntil(ctx context.Context, t int64) error
}

// realClock measures from origin with Go's monotonic clock. Its timers are
// reused for every wait, so pacing never allocates a timer per event; a
// realClock's SleepUntil must therefore be used by one goroutine at a time.
type realClock struct {
	origin time.Time
	timer  *time.Timer
	fine   *fineTimer // nil where unavailable
}

func newRealClock(origin time.Time) *realClock {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return &realClock{origin: origin, timer: t}
}

// newPacingClock returns a realClock that also has a fineTimer for the last
// stretch of each wait; close it when done.
func newPacingClock(origin time.Time) *realClock {
	c := newRealClock(origin)
	c.fine = newFineTimer()
	return c
}

func (c *realClock) close() {
	if c.fine != nil {
		c.fine.close()
	}
}

func (c *realClock) Now() int64 { return int64(time.Since(c.origin)) }

// fineSleep is the last stretch of a wait that SleepUntil sleeps with the
// fineTimer instead of a Go timer. Go's timers wake up to a millisecond late
// on Linux (measured on a 2-core VM: p50 0.9 ms late for a 200 µs sleep),
// which would be added to every event's latency and mistaken for the
// transport's.
const fineSleep = 2 * time.Millisecond

// SleepUntil waits with the reused Go timer until fineSleep before t, then
// with the fineTimer until t. ctx is checked before the final stretch, which
// is at most fineSleep long.
func (c *realClock) SleepUntil(ctx context.Context, t int64) error {
	d := time.Duration(t - c.Now())
	if c.fine != nil {
		d -= fineSleep
	}
	if d > 0 {
		c.timer.Reset(d)
		select {
		case <-c.timer.C:
		case <-ctx.Done():
			c.timer.Stop()
			return ctx.Err()
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if d := time.Duration(t - c.Now()); d > 0 && c.fine != nil && !c.fine.sleep(d) {
		c.fine.close()
		c.fine = nil
		return c.SleepUntil(ctx, t)
	}
	return nil
}

// Schedule is an open-loop constant-rate schedule (the model wrk2 and
// Vegeta use against coordinated omission): slot k is due at
// StartNs + k·Interval on the run clock, whatever happened to earlier slots.
// A late sender does not skip slots and does not shift later ones; it sends
// each one late, and its lag is the measure of how far behind it is.
type Schedule struct {
	StartNs  int64         // due time of slot 0
	Interval time.Duration // time between slots; 1s / rate
	EndNs    int64         // slots due at or after EndNs are not part of the schedule
	// Grace is how long after EndNs a late slot may still be sent; a slot
	// not sent by EndNs+Grace is counted as not sent. The Runner uses the
	// saturation bound (Scenario.MaxSchedLag), so that ordinary timer
	// wake-up jitter on the last slot is not mistaken for saturation.
	Grace time.Duration
}

// Due is the due time of slot k in nanoseconds.
func (s Schedule) Due(k int64) int64 { return s.StartNs + k*int64(s.Interval) }

// Slots is the number of slots due in [StartNs, EndNs).
func (s Schedule) Slots() int64 {
	if s.EndNs <= s.StartNs || s.Interval <= 0 {
		return 0
	}
	return (s.EndNs - s.StartNs + int64(s.Interval) - 1) / int64(s.Interval)
}

// PaceStats is what one publisher did with its schedule.
type PaceStats struct {
	Sent    int64 // slots sent (on time or late)
	NotSent int64 // slots due before EndNs that were never sent
	Failed  int64 // slots whose send returned an error (counted in Sent too)
	// Cancelled is true when ctx ended the schedule; NotSent then counts
	// the slots left, which were never due to be sent in the run.
	Cancelled bool
}

// Pace runs the schedule: for each slot it waits until the slot is due, then
// calls send(k, due, lag) where lag = start of the send − due time (≥ 0).
// When a send overruns, later slots are sent back to back until the
// schedule is caught up. Pace stops at EndNs+Grace: slots due before EndNs
// that were not sent by then are counted in NotSent, so every slot is either sent
// or counted. It stops early when ctx is done (the unsent remainder is
// counted the same way). A send that returns an error is counted in Sent and
// Failed.
func (s Schedule) Pace(ctx context.Context, clk Clock, send func(k, dueNs int64, lag time.Duration) error) PaceStats {
	var st PaceStats
	slots := s.Slots()
	for k := int64(0); k < slots; k++ {
		due := s.Due(k)
		if err := clk.SleepUntil(ctx, due); err != nil {
			st.NotSent, st.Cancelled = slots-k, true
			return st
		}
		now := clk.Now()
		if now >= s.EndNs+int64(s.Grace) {
			st.NotSent = slots - k
			return st
		}
		st.Sent++
		if err := send(k, due, time.Duration(now-due)); err != nil {
			st.Failed++
		}
	}
	return st
}
