//go:build unix

package main

import (
	"fmt"
	"runtime"
	"syscall"
	"time"
)

// processUsage returns the process's user and system CPU time, in seconds,
// and its peak resident set size, in bytes, from getrusage(RUSAGE_SELF).
func processUsage() (user, system float64, peakRSS int64, err error) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, 0, 0, fmt.Errorf("getrusage: %w", err)
	}
	user = time.Duration(ru.Utime.Nano()).Seconds()
	system = time.Duration(ru.Stime.Nano()).Seconds()
	peakRSS = int64(ru.Maxrss)
	if runtime.GOOS != "darwin" && runtime.GOOS != "ios" {
		peakRSS *= 1024 // KiB elsewhere; bytes on Apple's systems
	}
	return user, system, peakRSS, nil
}
