//go:build !race

package bench_test

// raceEnabled is true when the tests run under the race detector, whose
// sync.Pool drops items on purpose, so allocation counts mean nothing.
const raceEnabled = false
