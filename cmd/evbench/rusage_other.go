//go:build !unix

package main

import (
	"errors"
	"runtime"
)

// processUsage reports that this system (Windows) has no getrusage: serve
// runs, and its stats leave CPU time and peak RSS at 0.
func processUsage() (user, system float64, peakRSS int64, err error) {
	return 0, 0, 0, errors.New("CPU time and peak RSS are not measured on " + runtime.GOOS)
}
