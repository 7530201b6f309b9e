package bench

import (
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// fineTimer sleeps precisely on Linux: a timerfd(2) armed with the wait and
// read through Go's network poller, so the goroutine parks without holding an
// OS thread or a P, and wakes when the kernel's high-resolution timer fires
// (tens of microseconds) rather than when a Go timer does (up to a
// millisecond late: the poller's epoll_pwait timeout has millisecond
// resolution).
type fineTimer struct {
	f  *os.File
	fd int
}

// newFineTimer returns a fineTimer, or nil when the kernel refuses a
// timerfd (the caller then sleeps with Go timers).
func newFineTimer() *fineTimer {
	fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
	if err != nil {
		return nil
	}
	return &fineTimer{f: os.NewFile(uintptr(fd), "timerfd"), fd: fd}
}

// sleep waits for d (> 0). It reports false if the timer failed, in which
// case the caller falls back to a Go timer.
func (t *fineTimer) sleep(d time.Duration) bool {
	its := unix.ItimerSpec{Value: unix.NsecToTimespec(int64(d))}
	if unix.TimerfdSettime(t.fd, 0, &its, nil) != nil {
		return false
	}
	var expirations [8]byte
	_, err := t.f.Read(expirations[:])
	return err == nil
}

func (t *fineTimer) close() { t.f.Close() }
