package ws

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/evbench/evbench/transports"
)

// TestC19CloseCodes serves ws with a Hub: 100 clients close cleanly (close
// status 1000), 100 drop their TCP connection without a close frame
// (1006), and one mute peer never answers the server's close. The Hub's
// Stats must count the first two groups apart (ClosedClean, ClosedError),
// and the Hub's close of the mute peer must return within CloseTimeout and
// a second.
func TestC19CloseCodes(t *testing.T) {
	const clean, dropped = 100, 100
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tr := Plain()
	// The clients that drop dial through a Config whose Dial hook keeps
	// their TCP connections, so that the test can close them directly.
	var mu sync.Mutex
	var raws []net.Conn
	dropTr, err := NewPlain(transports.Config{Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
		var d net.Dialer
		nc, err := d.DialContext(ctx, network, addr)
		if err == nil {
			mu.Lock()
			raws = append(raws, nc)
			mu.Unlock()
		}
		return nc, err
	}})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tr.Listen(ctx, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	hub := transports.NewHub(transports.HubConfig{})
	served := make(chan error, 1)
	go func() { served <- hub.Serve(ctx, ln) }()

	clients := make([]*transports.Client, clean+dropped)
	errs := make([]error, len(clients))
	var dials sync.WaitGroup
	for i := range clients {
		dials.Go(func() {
			via := tr
			if i >= clean {
				via = dropTr
			}
			clients[i], errs[i] = transports.Dial(ctx, via, ln.Addr().String(), transports.ClientConfig{ID: uint64(i + 1)})
		})
	}
	dials.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("client %d: %v", i, err)
		}
	}
	// The mute peer: a Conn that says HELLO and then never reads, so it
	// never answers a close frame.
	mute, err := tr.Dial(ctx, ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer mute.Close()
	hello, err := transports.AppendFrame(nil, &transports.Frame{Type: transports.FrameHello, Sender: 1 << 40})
	if err != nil {
		t.Fatal(err)
	}
	if err := mute.WriteFrame(hello); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "every connection to be registered", func() bool {
		return hub.Stats().Conns == clean+dropped+1
	})
	base := hub.Stats()

	if len(raws) != dropped {
		t.Fatalf("%d TCP connections recorded, want %d", len(raws), dropped)
	}
	var closing sync.WaitGroup
	for _, nc := range raws {
		nc.Close() // no close frame: 1006 at the server
	}
	for _, c := range clients {
		closing.Go(func() { c.Close() })
	}
	closing.Wait()
	waitFor(t, 10*time.Second, "the Hub to count every closed connection", func() bool {
		st := hub.Stats().Sub(base)
		return st.ClosedClean+st.ClosedError == clean+dropped
	})
	st := hub.Stats().Sub(base)
	t.Logf("%d clean closes (1000) and %d drops (1006): ClosedClean %d, ClosedError %d", clean, dropped, st.ClosedClean, st.ClosedError)
	if st.ClosedClean != clean || st.ClosedError != dropped {
		t.Errorf("ClosedClean = %d, ClosedError = %d; want %d and %d", st.ClosedClean, st.ClosedError, clean, dropped)
	}

	start := time.Now()
	hub.Close()
	took := time.Since(start)
	t.Logf("closing the Hub with a peer that never answers the close: %v (CloseTimeout %v)", took.Round(time.Millisecond), CloseTimeout)
	if took > CloseTimeout+time.Second {
		t.Errorf("Hub.Close took %v, want at most CloseTimeout + 1 s = %v", took, CloseTimeout+time.Second)
	}
	cancel()
	ln.Close()
	<-served
}
