//go:build race

package lenprefix

const raceEnabled = true
