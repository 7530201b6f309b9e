// Command evbench measures what happens to socket.io-style events over TCP,
// UDP, WebSocket and QUIC: fan-out latency, throughput and missed events,
// per transport, side by side. See `evbench --help`.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, cancel := context.WithCancel(context.Background())
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	note := interruptNote(os.Args[1:])
	go func() {
		<-sig
		// The first signal cancels ctx: a run ends its measurement window,
		// drains for at most a second and writes what it measured; serve
		// closes its listeners and connections and exits 0. The command
		// says which (interruptNote). From here on the default action
		// applies, so a second signal ends the process in the kernel at
		// once, however busy the process is.
		signal.Reset(os.Interrupt, syscall.SIGTERM)
		cancel()
		fmt.Fprintln(os.Stderr, note)
		<-sig // a second signal that arrived before Reset took effect
		os.Exit(exitSignal)
	}()
	os.Exit(mainExit(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Exit))
}
