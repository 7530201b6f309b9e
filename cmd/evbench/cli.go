package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/pflag"

	_ "github.com/evbench/evbench/transports/all"
)

// Exit codes (DESIGN.md).
const (
	exitOK      = 0
	exitFailed  = 1 // a failed measurement
	exitUsage   = 2 // a bad flag or an impossible scenario
	exitSignal  = 130
	programName = "evbench"
)

const usage = `evbench measures socket.io-style events over TCP, UDP, WebSocket and QUIC:
fan-out latency, throughput and missed events, per transport, side by side.

Usage:
  evbench run [flags]     run a benchmark of one or more transports on loopback
  evbench help [command]  show help

Run 'evbench run --help' for the flags of run.
`

// Main runs the evbench command line with args (without the program name),
// writing the results table and help to stdout and progress and errors to
// stderr, and returns the exit code: 0 ok, 1 failed measurement, 2 usage
// error, 130 interrupted (ctx cancelled; the rows measured so far are still
// reported and written).
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintf(stderr, "evbench: no command given\n\n%s", usage)
		return exitUsage
	}
	switch args[0] {
	case "run":
		return runCmd(ctx, args[1:], stdout, stderr)
	case "check":
		return checkCmd(ctx, args[1:], stdout, stderr)
	case "help", "-h", "--help":
		switch {
		case len(args) == 1:
			fmt.Fprint(stdout, usage)
			return exitOK
		case len(args) == 2 && args[1] == "run":
			return runCmd(ctx, []string{"--help"}, stdout, stderr)
		case len(args) == 2:
			fmt.Fprintf(stderr, "evbench: no help for unknown command %q\nRun 'evbench --help' for usage.\n", args[1])
		default:
			fmt.Fprintf(stderr, "evbench: %s takes at most one command, got %q\nRun 'evbench --help' for usage.\n", args[0], args[1:])
		}
		return exitUsage
	default:
		fmt.Fprintf(stderr, "evbench: unknown command %q\nRun 'evbench --help' for usage.\n", args[0])
		return exitUsage
	}
}

// usageError marks errors that exit 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// parseFlags parses args into fs, printing help to stdout for --help and
// returning a usageError otherwise.
func parseFlags(fs *pflag.FlagSet, args []string, stdout io.Writer) (help bool, err error) {
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			fs.SetOutput(stdout)
			fs.Usage()
			return true, nil
		}
		return false, usageError{err}
	}
	if fs.NArg() > 0 {
		return false, usageError{fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	}
	return false, nil
}
