package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"

	"github.com/spf13/pflag"
)

// versionCmd is `evbench version` (and `evbench --version`): the module
// version, the VCS revision and time the binary was built from, and the Go
// toolchain, from the build information Go stamps into every binary
// (runtime/debug.ReadBuildInfo; `go build` records vcs.* settings in a Git
// checkout).
func versionCmd(args []string, stdout, stderr io.Writer) int {
	fs := pflag.NewFlagSet("evbench version", pflag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "Usage: evbench version\n\nPrints evbench's module version, the VCS revision it was built from\n(with \"+dirty\" when the checkout had changes) and the Go version.\n")
	}
	help, err := parseFlags(fs, args, stdout)
	if help {
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "evbench version: %v\n", err)
		return exitUsage
	}
	fmt.Fprintln(stdout, versionLine())
	return exitOK
}

// versionLine is e.g. "evbench v0.0.0-20261201211433-895e532a1b2c+dirty
// (revision 895e532a1b2c, 2026-12-01T21:14:33Z, modified) go1.26.8
// linux/amd64"; what the build did not record is said to be unknown.
func versionLine() string {
	version, rev := "(unknown)", " (revision unknown: built without VCS information, as by go run or -buildvcs=false)"
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Version != "" {
			version = bi.Main.Version
		}
		var revision, at string
		var modified bool
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				revision = s.Value
			case "vcs.time":
				at = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
		if revision != "" {
			rev = " (revision " + revision
			if at != "" {
				rev += ", " + at
			}
			if modified {
				rev += ", modified"
			}
			rev += ")"
		}
	}
	return fmt.Sprintf("%s %s%s %s %s/%s", programName, version, rev, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
