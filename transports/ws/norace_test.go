//go:build !race

package ws

// raceEnabled is true under the race detector, whose sync.Pool drops items
// on purpose, so allocation counts mean nothing there.
const raceEnabled = false
