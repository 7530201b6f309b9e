// Package all registers every transport evbench ships, in the order reports
// list them: import it for its side effects. This is the one list of
// transports; adding one is a package and a line here.
package all

import (
	"github.com/evbench/evbench/transports"
	"github.com/evbench/evbench/transports/quic"
	"github.com/evbench/evbench/transports/tcp"
	"github.com/evbench/evbench/transports/udp"
	"github.com/evbench/evbench/transports/ws"
)

func init() {
	for _, t := range []transports.Transport{
		tcp.Plain(),            // tcp
		tcp.TLS(),              // tcp+tls
		udp.New(udp.Options{}), // udp
		ws.Plain(),             // ws
		ws.TLS(),               // wss
		quic.Stream(),          // quic
		quic.Datagram(),        // quic-dgram
	} {
		transports.Register(t)
	}
}
