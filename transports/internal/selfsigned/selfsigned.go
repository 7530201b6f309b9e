// Package selfsigned makes the in-memory TLS 1.3 certificate that tcp+tls,
// wss and QUIC share, so that encrypted transports are compared with the
// same key type (ECDSA P-256) and cipher negotiation. The certificate is made
// once per process, is valid for 127.0.0.1, ::1 and "localhost", and is
// never written to disk.
package selfsigned

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"sync"
	"time"
)

var made = sync.OnceValues(func() (*tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(now.UnixNano()),
		Subject:               pkix.Name{CommonName: "evbench"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(30 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
})

// ServerConfig returns a new TLS 1.3-only server config holding the
// process's self-signed certificate, with NextProtos set to alpn (RFC 7301).
func ServerConfig(alpn ...string) (*tls.Config, error) {
	cert, err := made()
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		Certificates: []tls.Certificate{*cert},
		MinVersion:   tls.VersionTLS13,
		NextProtos:   alpn,
	}, nil
}

// ClientConfig returns a new TLS 1.3-only client config that trusts only the
// process's self-signed certificate, with NextProtos set to alpn. Verification
// stays on: the certificate names 127.0.0.1, ::1 and localhost.
func ClientConfig(alpn ...string) (*tls.Config, error) {
	cert, err := made()
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert.Leaf)
	return &tls.Config{
		RootCAs:    pool,
		MinVersion: tls.VersionTLS13,
		NextProtos: alpn,
	}, nil
}

// CertPEM returns the process's self-signed certificate as one PEM block
// ("CERTIFICATE"), for a peer in another process to trust.
func CertPEM() ([]byte, error) {
	cert, err := made()
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}), nil
}
