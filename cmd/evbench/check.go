package main

import (
	"context"
	"fmt"
	"io"
)

// checkCmd is `evbench check`; see checkUsage.
func checkCmd(_ context.Context, args []string, stdout, stderr io.Writer) int {
	fmt.Fprintln(stderr, "evbench check: being written")
	return exitUsage
}
