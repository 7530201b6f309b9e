package ws

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/evbench/evbench/transports"
	"github.com/evbench/evbench/transports/transporttest"
)

// constructors lists this package's two constructors.
var constructors = []struct {
	name string
	newT transports.Constructor
}{
	{NamePlain, NewPlain},
	{NameTLS, NewTLS},
}

// build is newT(cfg), failing the test on an error.
func build(t *testing.T, newT transports.Constructor, cfg transports.Config) transports.Transport {
	t.Helper()
	tr, err := newT(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

// netConn is the TCP connection under c (under TLS for wss), as dialled or
// accepted.
func netConn(c transports.Conn) net.Conn { return c.(*conn).raw.Conn }

// TestConformanceWrappedNet runs the conformance suite on transports whose
// Config's Dial and Listen hand out connections that are not *net.TCPConn,
// and checks that the transport went through them on both sides.
func TestConformanceWrappedNet(t *testing.T) {
	for _, c := range constructors {
		t.Run(c.name, func(t *testing.T) {
			var n transporttest.CountingNet
			tr := build(t, c.newT, transports.Config{Dial: n.Dial, Listen: n.Listen, ReadBufferBytes: 64 << 10})
			transporttest.Run(t, tr)
			if t.Failed() {
				return
			}
			dials, listens, accepts := n.Dials.Load(), n.Listens.Load(), n.Accepts.Load()
			if dials == 0 || listens == 0 || accepts == 0 {
				t.Errorf("Config used for %d dials, %d listens, %d accepts; want all nonzero", dials, listens, accepts)
			}

			// And the Conns of both ends sit on the wrapped connections.
			client, server, _ := pair(t, tr)
			for _, end := range []struct {
				name string
				c    transports.Conn
			}{{"client", client}, {"server", server}} {
				if _, ok := netConn(end.c).(transporttest.WrappedConn); !ok {
					t.Errorf("%s Conn is over a %T, want the Config's WrappedConn", end.name, netConn(end.c))
				}
			}
		})
	}
}

// TestTLSConfig serves wss with the Config's ServerTLS and dials with
// its ClientTLS, checking which pairings connect, and that a refused one
// fails with the x509 error of certificate verification.
func TestTLSConfig(t *testing.T) {
	tc := transporttest.NewCert(t)
	custom := &tls.Config{Certificates: []tls.Certificate{tc.Cert}}
	tests := []struct {
		name    string
		server  *tls.Config
		client  *tls.Config
		wantErr error // nil: the connection works; else the x509 error errors.As finds
	}{
		{"custom server, client trusts it", custom, &tls.Config{RootCAs: tc.Pool}, nil},
		{"custom server, client trusts it, ServerName set", custom, &tls.Config{RootCAs: tc.Pool, ServerName: transporttest.CertName}, nil},
		{"custom server, ServerName not in the certificate", custom, &tls.Config{RootCAs: tc.Pool, ServerName: "other.test"}, x509.HostnameError{}},
		{"custom server, default client", custom, nil, x509.UnknownAuthorityError{}},
		{"custom server, InsecureSkipVerify", custom, &tls.Config{InsecureSkipVerify: true}, nil},
		{"default server, client trusts only the custom one", nil, &tls.Config{RootCAs: tc.Pool}, x509.UnknownAuthorityError{}},
		{"default server, default client", nil, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := build(t, NewTLS, transports.Config{ServerTLS: tt.server, ClientTLS: tt.client})
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			ln, err := tr.Listen(ctx, "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			client, err := tr.Dial(ctx, ln.Addr().String())
			if tt.wantErr != nil {
				if client != nil {
					client.Close()
				}
				if err == nil {
					t.Fatalf("Dial succeeded, want an error wrapping %T", tt.wantErr)
				}
				var verr *tls.CertificateVerificationError
				ok := errors.As(err, &verr)
				switch tt.wantErr.(type) {
				case x509.HostnameError:
					var he x509.HostnameError
					ok = ok && errors.As(err, &he)
				case x509.UnknownAuthorityError:
					var ue x509.UnknownAuthorityError
					ok = ok && errors.As(err, &ue)
				}
				if !ok {
					t.Fatalf("Dial = %v, want a certificate verification error wrapping %T", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			server, err := ln.Accept(ctx)
			if err != nil {
				client.Close()
				t.Fatal(err)
			}
			defer closeBoth(client, server)
			got := readAsync(server)
			if err := client.WriteFrame([]byte("hello")); err != nil {
				t.Fatal(err)
			}
			if r := wait(t, got, "ReadFrame"); r.err != nil || string(r.p) != "hello" {
				t.Fatalf("ReadFrame = %q, %v; want %q", r.p, r.err, "hello")
			}
		})
	}
}

// TestNewRejectsInvalidConfig checks that both constructors return
// Config.Validate's error, and no transport, for a Config none can use.
func TestNewRejectsInvalidConfig(t *testing.T) {
	tests := []struct {
		name    string
		cfg     transports.Config
		wantErr bool
	}{
		{"zero", transports.Config{}, false},
		{"buffers set", transports.Config{ReadBufferBytes: 1 << 20, WriteBufferBytes: 1 << 20}, false},
		{"negative ReadBufferBytes", transports.Config{ReadBufferBytes: -1}, true},
		{"negative WriteBufferBytes", transports.Config{WriteBufferBytes: -4096}, true},
		{"ServerTLS without a certificate", transports.Config{ServerTLS: &tls.Config{}}, true},
	}
	for _, c := range constructors {
		for _, tt := range tests {
			t.Run(c.name+"/"+tt.name, func(t *testing.T) {
				tr, err := c.newT(tt.cfg)
				if tt.wantErr {
					if err == nil || tr != nil {
						t.Fatalf("%s(%+v) = %v, %v; want nil and an error", c.name, tt.cfg, tr, err)
					}
					if want := tt.cfg.Validate(); want == nil || !strings.Contains(err.Error(), want.Error()) {
						t.Errorf("error %q does not carry Validate's %q", err, want)
					}
					return
				}
				if err != nil {
					t.Fatalf("%s(%+v): %v", c.name, tt.cfg, err)
				}
				if tr.Name() != c.name {
					t.Errorf("Name() = %q, want %q", tr.Name(), c.name)
				}
			})
		}
	}
}
