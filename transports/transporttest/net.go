package transporttest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"net"
	"sync/atomic"
	"testing"
	"time"
)

// WrappedConn hides the *net.TCPConn under it, so that a transport given
// it may use it through net.Conn's methods only.
type WrappedConn struct{ net.Conn }

// CountingNet provides a transports.Config's Dial and Listen (its methods
// of those names) that wrap every connection in a WrappedConn and count the
// calls. They refuse any address but 127.0.0.1, so that no test reaches
// beyond loopback.
type CountingNet struct {
	Dials, Listens, Accepts atomic.Int64
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

// Dial dials addr and returns the connection as a WrappedConn.
func (n *CountingNet) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	if err := loopbackOnly(addr); err != nil {
		return nil, err
	}
	n.Dials.Add(1)
	var d net.Dialer
	nc, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return WrappedConn{nc}, nil
}

// Listen listens on addr; the listener hands out WrappedConns.
func (n *CountingNet) Listen(ctx context.Context, network, addr string) (net.Listener, error) {
	if err := loopbackOnly(addr); err != nil {
		return nil, err
	}
	n.Listens.Add(1)
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return wrappedListener{Listener: ln, accepts: &n.Accepts}, nil
}

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
	return WrappedConn{nc}, nil
}

// CertName is the DNS name a Cert is valid for, besides 127.0.0.1.
const CertName = "evbench.test"

// Cert is a self-signed ECDSA P-256 certificate other than the process's
// default one, valid for 127.0.0.1 and CertName for an hour, and a pool
// that trusts it alone.
type Cert struct {
	Cert tls.Certificate
	Pool *x509.CertPool
}

// NewCert makes a Cert, failing the test on an error.
func NewCert(tb testing.TB) Cert {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
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
		DNSNames:              []string{CertName},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return Cert{Cert: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, Pool: pool}
}
