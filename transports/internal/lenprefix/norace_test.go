//go:build !race

package lenprefix

const raceEnabled = false
