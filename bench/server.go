package bench

import (
	"context"
	"fmt"
	"net"
	"sync"

	"github.com/evbench/evbench/transports"
)

// Server is the server side of a run: a transports.Hub served on one
// transport's Listener. `evbench serve` runs one per transport; a run
// without a remote server starts one in its own process, on loopback.
type Server struct {
	hub    *transports.Hub
	ln     transports.Listener
	served chan struct{}
	once   sync.Once
}

// StartServer listens on addr over tr ("127.0.0.1:0" picks a free port)
// and serves a Hub configured by cfg until Close. ctx bounds only the
// listen; the error names the transport and the address.
func StartServer(ctx context.Context, tr transports.Transport, addr string, cfg transports.HubConfig) (*Server, error) {
	ln, err := tr.Listen(ctx, addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	s := &Server{hub: transports.NewHub(cfg), ln: ln, served: make(chan struct{})}
	go func() {
		defer close(s.served)
		s.hub.Serve(context.Background(), ln)
	}()
	return s, nil
}

// Addr is the address the Server listens on, the one clients dial.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Stats returns the Hub's settings and a snapshot of its counters, the same
// values a STATS request over the protocol returns.
func (s *Server) Stats() transports.ServerStats { return s.hub.ServerStats() }

// Close stops accepting, closes every connection and waits until the Hub's
// goroutines have ended. It is safe to call more than once.
func (s *Server) Close() error {
	s.once.Do(func() {
		s.ln.Close()
		<-s.served
		s.hub.Close()
	})
	return nil
}
