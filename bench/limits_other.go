//go:build !linux

package bench

import (
	"errors"
	"fmt"
)

// FileLimit returns the soft and hard RLIMIT_NOFILE now in force; off Linux
// it reports errors.ErrUnsupported, and CheckCapacity does not check file
// descriptors.
func FileLimit() (soft, hard uint64, err error) {
	return 0, 0, fmt.Errorf("open-file limit: %w", errors.ErrUnsupported)
}

// RaiseFileLimit raises the soft RLIMIT_NOFILE to the hard limit and
// returns both; off Linux it changes nothing and reports
// errors.ErrUnsupported.
func RaiseFileLimit() (soft, hard uint64, err error) {
	return FileLimit()
}
