// Package all registers every transport evbench ships: import it for its
// side effects. Adding a transport is one package and one line here.
package all

import (
	_ "github.com/evbench/evbench/transports/quic" // quic, quic-dgram
	_ "github.com/evbench/evbench/transports/tcp"  // tcp, tcp+tls
	_ "github.com/evbench/evbench/transports/udp"  // udp
	_ "github.com/evbench/evbench/transports/ws"   // ws, wss
)
