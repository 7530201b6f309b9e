package bench

import (
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
)

// Environment describes the machine and the build that made a row, so that
// a saved results file says how it was made.
type Environment struct {
	// Version is evbench's module version ("(devel)" for a build of a
	// checkout, "" when the binary records no build information).
	Version string
	// Revision is the VCS revision the binary was built from, with
	// "+dirty" when the checkout had changes; "" when not recorded (go run,
	// -buildvcs=false).
	Revision string
	// GoVersion is the Go toolchain, e.g. "go1.26.0".
	GoVersion string
	// GOMAXPROCS is the number of threads that run Go code at once.
	GOMAXPROCS int
	// Kernel is the operating system and its release, e.g.
	// "Linux 6.1.0-18-amd64"; the GOOS alone where the release is unknown.
	Kernel string
	// Platform is GOOS/GOARCH, e.g. "linux/amd64".
	Platform string
}

// HostEnvironment returns this process's Environment. The build and kernel
// are read once; GOMAXPROCS is read at each call.
func HostEnvironment() Environment {
	e := hostEnv()
	e.GOMAXPROCS = runtime.GOMAXPROCS(0)
	return e
}

var hostEnv = sync.OnceValue(func() Environment {
	e := Environment{GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH, Kernel: kernel()}
	if bi, ok := debug.ReadBuildInfo(); ok {
		e.Version = bi.Main.Version
		var modified bool
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				e.Revision = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
		if e.Revision != "" && modified {
			e.Revision += "+dirty"
		}
	}
	return e
})

// kernel reads the kernel's name and release from /proc (Linux), or
// returns GOOS.
func kernel() string {
	osType, err1 := os.ReadFile("/proc/sys/kernel/ostype")
	release, err2 := os.ReadFile("/proc/sys/kernel/osrelease")
	if err1 != nil || err2 != nil {
		return runtime.GOOS
	}
	return strings.TrimSpace(string(osType)) + " " + strings.TrimSpace(string(release))
}
