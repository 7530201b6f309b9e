package tcp

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/evbench/evbench/transports"
	"github.com/evbench/evbench/transports/transporttest"
)

// wrappedConn hides the *net.TCPConn under it: the transport may use it
// through net.Conn's methods only.
type wrappedConn struct{ net.Conn }

// wrappedListener wraps every accepted connection and counts them.
type wrappedListener struct {
	net.Listener
	accepts *atomic.Int64
}

func (l wrappedListener) Accept() (net.Conn, error) {
	nc, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.accepts.Add(1)
	return wrappedConn{nc}, nil
}

// countingNet is a Config's Dial and Listen that wrap every connection in
// a wrappedConn and count their calls. They refuse any address but
// 127.0.0.1, so that no test reaches beyond loopback.
type countingNet struct {
	dials, listens, accepts atomic.Int64
}

func loopbackOnly(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if host != "127.0.0.1" {
		return fmt.Errorf("test network: %s is not 127.0.0.1", addr)
	}
	return nil
}

func (n *countingNet) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	if err := loopbackOnly(addr); err != nil {
		return nil, err
	}
	n.dials.Add(1)
	var d net.Dialer
	nc, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return wrappedConn{nc}, nil
}

func (n *countingNet) listen(ctx context.Context, network, addr string) (net.Listener, error) {
	if err := loopbackOnly(addr); err != nil {
		return nil, err
	}
	n.listens.Add(1)
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return wrappedListener{Listener: ln, accepts: &n.accepts}, nil
}

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

// netConn is the connection under c: the dialled or accepted one, under
// TLS for tcp+tls.
func netConn(c transports.Conn) net.Conn {
	nc := c.(*conn).nc
	if tc, ok := nc.(*tls.Conn); ok {
		return tc.NetConn()
	}
	return nc
}

// TestConformanceWrappedNet runs the conformance suite on transports whose
// Config's Dial and Listen hand out connections that are not *net.TCPConn,
// and checks that the transport went through them on both sides.
func TestConformanceWrappedNet(t *testing.T) {
	for _, c := range constructors {
		t.Run(c.name, func(t *testing.T) {
			var n countingNet
			tr := build(t, c.newT, transports.Config{Dial: n.dial, Listen: n.listen, ReadBufferBytes: 64 << 10})
			transporttest.Run(t, tr)
			if t.Failed() {
				return
			}
			dials, listens, accepts := n.dials.Load(), n.listens.Load(), n.accepts.Load()
			if dials == 0 || listens == 0 || accepts == 0 {
				t.Errorf("Config used for %d dials, %d listens, %d accepts; want all nonzero", dials, listens, accepts)
			}

			// And the Conns of both ends sit on the wrapped connections.
			client, server := pair(t, tr)
			for _, end := range []struct {
				name string
				c    transports.Conn
			}{{"client", client}, {"server", server}} {
				if _, ok := netConn(end.c).(wrappedConn); !ok {
					t.Errorf("%s Conn is over a %T, want the Config's wrappedConn", end.name, netConn(end.c))
				}
			}
		})
	}
}

// testCert is a self-signed certificate other than the process's default
// one, valid for 127.0.0.1 and the name certName.
type testCert struct {
	cert tls.Certificate
	pool *x509.CertPool // trusts cert alone
}

const certName = "evbench.test"

func newTestCert(t *testing.T) testCert {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "evbench test"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		DNSNames:              []string{certName},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return testCert{cert: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool: pool}
}

// TestTLSConfig serves tcp+tls with the Config's ServerTLS and dials with
// its ClientTLS, checking which pairings connect, and that a refused one
// fails with the x509 error of certificate verification.
func TestTLSConfig(t *testing.T) {
	tc := newTestCert(t)
	custom := &tls.Config{Certificates: []tls.Certificate{tc.cert}}
	tests := []struct {
		name      string
		server    *tls.Config
		client    *tls.Config
		wantErr   error // nil: the connection works; else the x509 error errors.As finds
		wantOwnCA bool  // the server presented tc.cert
	}{
		{"custom server, client trusts it", custom, &tls.Config{RootCAs: tc.pool}, nil, true},
		{"custom server, client trusts it, ServerName set", custom, &tls.Config{RootCAs: tc.pool, ServerName: certName}, nil, true},
		{"custom server, ServerName not in the certificate", custom, &tls.Config{RootCAs: tc.pool, ServerName: "other.test"}, x509.HostnameError{}, false},
		{"custom server, default client", custom, nil, x509.UnknownAuthorityError{}, false},
		{"custom server, InsecureSkipVerify", custom, &tls.Config{InsecureSkipVerify: true}, nil, true},
		{"default server, client trusts only the custom one", nil, &tls.Config{RootCAs: tc.pool}, x509.UnknownAuthorityError{}, false},
		{"default server, default client", nil, nil, nil, false},
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
			defer client.Close()
			server, err := ln.Accept(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer server.Close()
			state := client.(*conn).nc.(*tls.Conn).ConnectionState()
			if got := bytes.Equal(state.PeerCertificates[0].Raw, tc.cert.Leaf.Raw); got != tt.wantOwnCA {
				t.Errorf("server presented the test certificate: %v, want %v", got, tt.wantOwnCA)
			}
			if state.Version != tls.VersionTLS13 || state.NegotiatedProtocol != alpn {
				t.Errorf("negotiated version %x, ALPN %q; want TLS 1.3, %q", state.Version, state.NegotiatedProtocol, alpn)
			}
			if err := client.WriteFrame([]byte("hello")); err != nil {
				t.Fatal(err)
			}
			if err := transports.Flush(client); err != nil {
				t.Fatal(err)
			}
			if got, err := server.ReadFrame(); err != nil || string(got) != "hello" {
				t.Fatalf("ReadFrame = %q, %v; want %q", got, err, "hello")
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
