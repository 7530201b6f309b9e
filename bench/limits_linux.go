//go:build linux

package bench

import (
	"fmt"
	"syscall"
)

// FileLimit returns the soft and hard RLIMIT_NOFILE now in force, in file
// descriptors (Unlimited for RLIM_INFINITY).
func FileLimit() (soft, hard uint64, err error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, 0, fmt.Errorf("getrlimit(RLIMIT_NOFILE): %w", err)
	}
	return lim.Cur, lim.Max, nil
}

// RaiseFileLimit raises the soft RLIMIT_NOFILE to the hard limit, which
// needs no privilege, and returns the soft and hard limits now in force, in
// file descriptors (Unlimited for RLIM_INFINITY). Go's own start-up (Go
// 1.19 and later) already raises the soft limit to one below the hard one;
// this takes the last step and makes the limit explicit for a report. Once
// it has changed the limit, child processes inherit the raised soft limit
// instead of the one this process started with.
func RaiseFileLimit() (soft, hard uint64, err error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, 0, fmt.Errorf("getrlimit(RLIMIT_NOFILE): %w", err)
	}
	if lim.Cur < lim.Max {
		raised := syscall.Rlimit{Cur: lim.Max, Max: lim.Max}
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &raised); err != nil {
			return lim.Cur, lim.Max, fmt.Errorf("setrlimit(RLIMIT_NOFILE) to %d: %w", lim.Max, err)
		}
	}
	return FileLimit()
}
