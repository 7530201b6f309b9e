package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/pflag"

	_ "github.com/evbench/evbench/transports/all"
)

// Exit codes.
const (
	exitOK      = 0
	exitFailed  = 1 // a failed measurement
	exitUsage   = 2 // a bad flag or an impossible scenario
	exitSignal  = 130
	programName = "evbench"
)

// usage is the top-level help, `evbench help`.
const usage = `evbench measures socket.io-style events over TCP, UDP, WebSocket and
QUIC: fan-out latency, throughput and missed events, per transport, side by
side.

Usage:
  evbench run [flags]       benchmark transports, with the server in-process or remote
  evbench serve [flags]     serve the Hub on each transport for remote clients
  evbench check FILE...     check the invariants of results files
  evbench report FILE...    print results files as a table, CSV, JSON or gobench
  evbench compare OLD NEW   compare two results files; exit 1 on a regression
  evbench version           print the version and VCS revision
  evbench help [command]    show help

Run 'evbench help COMMAND' (or 'evbench COMMAND --help') for its flags.
`

// interruptNote is what main prints to stderr on the first SIGINT or
// SIGTERM for the command line args (without the program name): what the
// command does on its way out. A second signal always exits at once.
func interruptNote(args []string) string {
	cmd := ""
	if len(args) > 0 {
		cmd = args[0]
	}
	switch cmd {
	case "run":
		return "evbench: interrupted: writing what was measured (interrupt again to exit at once)"
	case "serve":
		return "evbench: interrupted: closing the listeners and connections (interrupt again to exit at once)"
	}
	return "evbench: interrupted (interrupt again to exit at once)"
}

// Main runs the evbench command line with args (without the program name),
// writing the results table and help to stdout and progress and errors to
// stderr, and returns the exit code: 0 ok, 1 failed measurement, 2 usage
// error, 130 a run interrupted (ctx cancelled; the rows measured so far are
// still reported and written). Serve runs until ctx is cancelled and then
// returns 0. It returns only when everything it started has ended, so tests
// can call it in-process.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return mainExit(ctx, args, stdout, stderr, nil)
}

// mainExit is Main; exitEarly, when not nil, is called instead of waiting
// for a saturated run's teardown after an interrupt (see runCmd).
func mainExit(ctx context.Context, args []string, stdout, stderr io.Writer, exitEarly func(int)) int {
	if len(args) == 0 {
		fmt.Fprintf(stderr, "evbench: no command given\n\n%s", usage)
		return exitUsage
	}
	commands := map[string]func(args []string) int{
		"run":     func(args []string) int { return runCmd(ctx, args, stdout, stderr, exitEarly) },
		"check":   func(args []string) int { return checkCmd(ctx, args, stdout, stderr) },
		"version": func(args []string) int { return versionCmd(args, stdout, stderr) },
		"serve":   func(args []string) int { return runServe(ctx, args, stdout, stderr) },
		"report":  func(args []string) int { return reportCmd(ctx, args, stdout, stderr) },
		"compare": func(args []string) int { return compareCmd(ctx, args, stdout, stderr) },
	}
	switch name := args[0]; name {
	case "--version":
		return versionCmd(args[1:], stdout, stderr)
	case "help", "-h", "--help":
		switch {
		case len(args) == 1 || len(args) == 2 && args[1] == "help":
			fmt.Fprint(stdout, usage)
			return exitOK
		case len(args) > 2:
			fmt.Fprintf(stderr, "evbench: help takes at most one command, got %q\nRun 'evbench help' for usage.\n", args[1:])
		case commands[args[1]] != nil:
			return commands[args[1]]([]string{"--help"})
		default:
			fmt.Fprintf(stderr, "evbench: no help for unknown command %q\nRun 'evbench help' for usage.\n", args[1])
		}
		return exitUsage
	default:
		if cmd := commands[name]; cmd != nil {
			return cmd(args[1:])
		}
		fmt.Fprintf(stderr, "evbench: unknown command %q\nRun 'evbench help' for usage.\n", name)
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
	if help, err = parseFlagsAndArgs(fs, args, stdout); help || err != nil {
		return help, err
	}
	if fs.NArg() > 0 {
		return false, usageError{fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	}
	return false, nil
}

// parseFlagsAndArgs is parseFlags for a command that takes arguments after
// its flags (files): fs.Args() holds them.
func parseFlagsAndArgs(fs *pflag.FlagSet, args []string, stdout io.Writer) (help bool, err error) {
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			fs.SetOutput(stdout)
			fs.Usage()
			return true, nil
		}
		return false, usageError{err}
	}
	return false, nil
}
