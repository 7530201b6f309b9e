// Package all registers the constructor of every transport evbench ships,
// in the order reports list them: import it for its side effects. This is
// the one list of transports; adding one is a package and a line here.
package all

import (
	"github.com/evbench/evbench/transports"
	"github.com/evbench/evbench/transports/quic"
	"github.com/evbench/evbench/transports/tcp"
	"github.com/evbench/evbench/transports/udp"
	"github.com/evbench/evbench/transports/ws"
)

func init() {
	for _, t := range []struct {
		name string
		newT transports.Constructor
	}{
		{tcp.NamePlain, tcp.NewPlain},
		{tcp.NameTLS, tcp.NewTLS},
		{udp.Name, udp.NewFromConfig},
		{ws.NamePlain, ws.NewPlain},
		{ws.NameTLS, ws.NewTLS},
		{quic.NameStream, quic.NewStream},
		{quic.NameDatagram, quic.NewDatagram},
	} {
		transports.Register(t.name, t.newT)
	}
}
