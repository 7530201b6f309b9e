package bench

// seqWindow is how many sequence numbers, up to and including the highest
// one seen, a SeqTracker remembers, to tell a duplicate from a late arrival.
const seqWindow = 512

// SeqVerdict classifies one arrival on a sequenced stream.
type SeqVerdict uint8

const (
	// SeqInOrder: the highest sequence number so far (possibly after a gap).
	SeqInOrder SeqVerdict = iota
	// SeqLate: below the highest seen and not seen before, i.e. reordered.
	SeqLate
	// SeqDuplicate: seen before.
	SeqDuplicate
)

// SeqTracker follows one (sender, room) stream as one receiver sees it, in
// the manner of iperf3's UDP loss accounting but with 64-bit sequence
// numbers, so a stream that starts near 2³² does not wrap (iperf #1534).
// It remembers the seqWindow numbers up to and including the highest one
// seen; an arrival older than that is classified SeqLate (it cannot be
// checked for duplication, and a duplicate that old is much rarer than a
// late arrival).
// Loss is not decided here: missed = expected − unique deliveries, counted
// after the drain, so that a late arrival is never also counted as lost.
// The zero value is ready to use.
type SeqTracker struct {
	started bool
	hi      uint64 // highest sequence number seen
	seen    [seqWindow / 64]uint64
}

// Observe classifies the arrival of seq and remembers it. It takes bounded
// time (at most seqWindow steps) whatever the jump, and is correct over the
// whole uint64 range: nothing wraps at 2⁶⁴−1.
func (t *SeqTracker) Observe(seq uint64) SeqVerdict {
	if !t.started {
		t.started, t.hi = true, seq
		t.mark(seq)
		return SeqInOrder
	}
	if seq > t.hi {
		// Forget the window's bits that the jump pushes out.
		if gap := seq - t.hi; gap >= seqWindow {
			t.seen = [seqWindow / 64]uint64{}
		} else {
			for i := uint64(1); i <= gap; i++ {
				t.clear(t.hi + i)
			}
		}
		t.hi = seq
		t.mark(seq)
		return SeqInOrder
	}
	if t.hi-seq >= seqWindow {
		return SeqLate
	}
	if t.isSet(seq) {
		return SeqDuplicate
	}
	t.mark(seq)
	return SeqLate
}

func (t *SeqTracker) mark(s uint64)       { t.seen[(s/64)%(seqWindow/64)] |= 1 << (s % 64) }
func (t *SeqTracker) clear(s uint64)      { t.seen[(s/64)%(seqWindow/64)] &^= 1 << (s % 64) }
func (t *SeqTracker) isSet(s uint64) bool { return t.seen[(s/64)%(seqWindow/64)]&(1<<(s%64)) != 0 }
