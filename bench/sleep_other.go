//go:build !linux

package bench

import "time"

// fineTimer is Linux-only; elsewhere the Go timer does all the waiting.
type fineTimer struct{}

func newFineTimer() *fineTimer                  { return nil }
func (t *fineTimer) sleep(d time.Duration) bool { return false }
func (t *fineTimer) close()                     {}
