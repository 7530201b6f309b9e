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
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// The first Ctrl-C cancels ctx: the run drains and writes what it
	// measured. A second one exits at once.
	go func() {
		<-ctx.Done()
		stop()
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
		<-sig
		fmt.Fprintln(os.Stderr, "evbench: interrupted twice, exiting without writing results")
		os.Exit(130)
	}()
	os.Exit(Main(ctx, os.Args[1:], os.Stdout, os.Stderr))
}
