package bench

import (
	"slices"
	"sync"
	"testing"

	"github.com/evbench/evbench/results"
	"github.com/evbench/evbench/transports"
)

// TestEpochLog: a member that rejoined at epoch e counts the events its
// publisher sent under epoch e or later, whatever the publisher's seqs.
func TestEpochLog(t *testing.T) {
	var l epochLog
	// seqs 0-2 under epoch 0, 3-4 under 2, 5 on under 5.
	for seq, epoch := range []uint64{0, 0, 0, 2, 2, 5, 5} {
		l.note(epoch, uint64(seq))
	}
	tests := []struct {
		from, seq uint64
		want      bool
	}{
		{0, 0, true}, {0, 6, true}, // first joins count everything
		{1, 2, false}, {1, 3, true}, // epoch 1 came between 2 and 3
		{2, 3, true}, {3, 4, false}, {3, 5, true}, {5, 5, true}, {5, 4, false},
		{6, 6, false}, // nothing sent under epoch 6 yet
		{ignoreAll, 6, false},
	}
	for _, tt := range tests {
		if got := l.counted(tt.from, tt.seq); got != tt.want {
			t.Errorf("counted(from %d, seq %d) = %v, want %v", tt.from, tt.seq, got, tt.want)
		}
	}
	var empty epochLog
	if !empty.counted(0, 9) || empty.counted(1, 9) {
		t.Error("an empty log: want every event counted from epoch 0, none from a later one")
	}
}

// TestRoomState: members and epoch move together, and a rejoin raises the
// epoch a publisher reads.
func TestRoomState(t *testing.T) {
	var s roomState
	if e := s.join(false); e != 0 {
		t.Fatalf("first join: epoch %d", e)
	}
	if e := s.join(true); e != 1 {
		t.Fatalf("rejoin: epoch %d, want 1", e)
	}
	s.leave()
	if m, e := s.read(); m != 1 || e != 1 {
		t.Fatalf("read = %d members, epoch %d; want 1, 1", m, e)
	}
}

// TestEpochLogConcurrent: readers race a publisher appending (run with
// -race): a reader sees a prefix of the marks, never one being written.
func TestEpochLogConcurrent(t *testing.T) {
	var l epochLog
	var wg sync.WaitGroup
	done := make(chan struct{})
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				l.counted(3, 100)
			}
		})
	}
	for seq := range uint64(2000) {
		l.note(seq/2, seq)
	}
	close(done)
	wg.Wait()
	if !l.counted(3, 6) || l.counted(3, 5) {
		t.Error("epoch 3 starts at seq 6")
	}
}

// TestFillServerCounters: every counter of the server's HubStats lands in
// its column of the row, and the fleet's reconnections in theirs.
func TestFillServerCounters(t *testing.T) {
	r := newRun(Scenario{}.WithDefaults(), nil)
	r.reconnectAttempts.Store(12)
	r.reconnects.Store(5)
	st := transports.HubStats{
		QueueDrops: 1, ReplyDrops: 2, OversizeDrops: 3, AcceptErrors: 4, ProtocolErrors: 5,
		ClosedClean: 6, ClosedError: 7, ClosedSlow: 8, HandshakeTimeouts: 9, ReadTimeouts: 10,
		IdleCloses: 11, WriteTimeouts: 12, UnvalidatedDrops: 13, LimitRefusals: 14,
	}
	var res results.Result
	r.fill(&res, r.rec.Snapshot(), st)
	got := []int64{res.QueueDrops, res.ReplyDrops, res.OversizeDrops, res.AcceptErrors, res.ProtocolErrors,
		res.ServerClosedClean, res.ServerClosedError, res.ServerClosedSlow, res.HandshakeTimeouts, res.ReadTimeouts,
		res.IdleCloses, res.WriteTimeouts, res.UnvalidatedDrops, res.LimitRefusals, res.ReconnectAttempts, res.Reconnects}
	want := []int64{1 + 3, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 12, 5}
	if !slices.Equal(got, want) {
		t.Errorf("row counters %v, want %v", got, want)
	}
}
