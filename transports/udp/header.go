package udp

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/evbench/evbench/transports"
)

// The wire format. Every datagram starts with one kind byte:
//
//	DATA       kind=1, then one frame of 0..MaxFrameBytes bytes
//	HELLO      kind=2, then an 8-byte big-endian session nonce (client → server)
//	           and, in its second form, the 18-byte cookie of a COOKIE
//	           carrying that nonce: 9 or 27 bytes in all
//	HELLO-ACK  kind=3, then the nonce of the HELLO it answers (server → client)
//	KEEPALIVE  kind=4, nothing else
//	BYE        kind=5, nothing else
//	COOKIE     kind=6, then the nonce of the HELLO it answers and an 18-byte
//	           cookie (server → client): 27 bytes in all
//
// The cookie is a 6-byte big-endian timestamp, in milliseconds on the
// issuing process's monotonic clock, then the first 12 bytes (96 bits, the
// truncation of HMAC-SHA1-96, RFC 2404) of HMAC-SHA256 (RFC 2104) under
// the Listener's random 32-byte secret over the client's address (16 bytes,
// an IPv4 address in its IPv4-mapped IPv6 form, then the 2-byte port), the
// nonce and the timestamp. A Listener accepts it for CookieLifetime; it
// keeps no state for it (see "Sessions" in the package doc).
//
// Sizes obey RFC 9000 §8.1's limit on what a server sends to an address it
// has not validated, 3 × what it received from it: a COOKIE (27 bytes)
// answers a HELLO of 9 or 27; a BYE (1) answers a HELLO to a closing
// Listener; a HELLO-ACK (9) answers the HELLO (27) whose cookie validates
// the address; nothing else goes to an address without a Conn. The
// constant checks below refuse to compile sizes that break this.
//
// Any other first byte, or a length that does not fit the kind, makes the
// datagram malformed; it is dropped and counted.
const (
	headerBytes = 1 // the kind byte
	nonceBytes  = 8 // the session nonce of HELLO, HELLO-ACK and COOKIE

	// cookieTimeBytes and cookieMACBytes make up a cookie: the timestamp
	// and the truncated HMAC-SHA256.
	cookieTimeBytes = 6
	cookieMACBytes  = 12
	cookieBytes     = cookieTimeBytes + cookieMACBytes

	// helloBytes is the first HELLO, helloCookieBytes the HELLO that
	// echoes a cookie, cookieDatagramBytes a COOKIE, all kind byte
	// included.
	helloBytes          = headerBytes + nonceBytes
	helloCookieBytes    = headerBytes + nonceBytes + cookieBytes
	cookieDatagramBytes = headerBytes + nonceBytes + cookieBytes

	// amplificationFactor is RFC 9000 §8.1's bound: before an address is
	// validated, the server sends it at most this many times the bytes it
	// received from it.
	amplificationFactor = 3

	// ipv4HeaderBytes and udpHeaderBytes are the minimal IPv4 header
	// (RFC 791, no options) and the UDP header (RFC 768).
	ipv4HeaderBytes = 20
	udpHeaderBytes  = 8
	// mtuBytes is the Ethernet MTU that one datagram must fit unfragmented.
	mtuBytes = 1500
)

// Compile-time checks of the amplification bound: each constant is
// negative, which a uint cannot hold, if an answer to an unvalidated
// address outgrows amplificationFactor × the datagram it answers.
const (
	_ = uint(amplificationFactor*helloBytes - cookieDatagramBytes)       // COOKIE for a first HELLO
	_ = uint(amplificationFactor*helloCookieBytes - cookieDatagramBytes) // COOKIE for a refused cookie
	_ = uint(amplificationFactor*helloBytes - 1)                         // BYE from a closing Listener
	_ = uint(amplificationFactor*helloCookieBytes - helloBytes)          // HELLO-ACK that validates
)

// MaxFrameBytes is the largest frame WriteFrame accepts, in bytes: one
// DATA datagram must fit a 1500-byte-MTU IPv4 packet without fragmentation,
// so 1500 − 20 (IPv4 header) − 8 (UDP header) − 1 (kind byte) = 1471.
const MaxFrameBytes = mtuBytes - ipv4HeaderBytes - udpHeaderBytes - headerBytes

// bufferBytes is the size of every receive buffer. A datagram longer than
// headerBytes+MaxFrameBytes is malformed; one longer than bufferBytes is
// truncated by the kernel and then rejected by length.
const bufferBytes = 2048

// kind is the first byte of every datagram.
type kind uint8

const (
	kindData      kind = 1 + iota // one frame
	kindHello                     // client asks for a session
	kindHelloAck                  // server grants it
	kindKeepalive                 // liveness only
	kindBye                       // the sender closed its end
	kindCookie                    // server asks the client to prove its address
	kindEnd
)

var kindNames = [...]string{"invalid", "DATA", "HELLO", "HELLO-ACK", "KEEPALIVE", "BYE", "COOKIE"}

func (k kind) String() string {
	if k < kindEnd {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Parse errors. They are static values so that dropping a malformed
// datagram on the hot path does not allocate.
var (
	errMalformed   = errors.New("udp: malformed datagram")
	errTruncated   = fmt.Errorf("%w: truncated", errMalformed)
	errUnknownKind = fmt.Errorf("%w: unknown kind", errMalformed)
	errTrailing    = fmt.Errorf("%w: unexpected bytes after the body", errMalformed)
	errCookieSize  = fmt.Errorf("%w: HELLO with a truncated cookie", errMalformed)
	errOversize    = fmt.Errorf("%w: DATA over %d bytes: %w", errMalformed, MaxFrameBytes, transports.ErrFrameTooLarge)
)

// parseDatagram splits d into its kind and body. The body aliases d. Errors
// wrap errMalformed.
func parseDatagram(d []byte) (kind, []byte, error) {
	if len(d) < headerBytes {
		return 0, nil, errTruncated
	}
	k, body := kind(d[0]), d[headerBytes:]
	switch k {
	case kindData:
		if len(body) > MaxFrameBytes {
			return 0, nil, errOversize
		}
	case kindHello:
		switch {
		case len(body) == nonceBytes, len(body) == nonceBytes+cookieBytes:
		case len(body) < nonceBytes:
			return 0, nil, errTruncated
		case len(body) < nonceBytes+cookieBytes:
			return 0, nil, errCookieSize
		default:
			return 0, nil, errTrailing
		}
	case kindHelloAck:
		if len(body) < nonceBytes {
			return 0, nil, errTruncated
		}
		if len(body) > nonceBytes {
			return 0, nil, errTrailing
		}
	case kindCookie:
		if len(body) < nonceBytes+cookieBytes {
			return 0, nil, errTruncated
		}
		if len(body) > nonceBytes+cookieBytes {
			return 0, nil, errTrailing
		}
	case kindKeepalive, kindBye:
		if len(body) != 0 {
			return 0, nil, errTrailing
		}
	default:
		return 0, nil, errUnknownKind
	}
	return k, body, nil
}

// helloDatagram returns a HELLO or HELLO-ACK carrying nonce.
func helloDatagram(k kind, nonce uint64) [headerBytes + nonceBytes]byte {
	var d [headerBytes + nonceBytes]byte
	d[0] = byte(k)
	binary.BigEndian.PutUint64(d[headerBytes:], nonce)
	return d
}

// nonceOf reads the nonce from a parsed HELLO, HELLO-ACK or COOKIE body.
func nonceOf(body []byte) uint64 { return binary.BigEndian.Uint64(body) }

// cookieOf is the cookie of a parsed COOKIE body, or of a HELLO body in
// its second form (nil for a first HELLO). It aliases body.
func cookieOf(body []byte) []byte {
	if len(body) < nonceBytes+cookieBytes {
		return nil
	}
	return body[nonceBytes : nonceBytes+cookieBytes]
}

// cookieHelloDatagram returns a COOKIE (k = kindCookie) or a HELLO in its
// second form (k = kindHello) carrying nonce and cookie, which must be
// cookieBytes long.
func cookieHelloDatagram(k kind, nonce uint64, cookie []byte) [cookieDatagramBytes]byte {
	var d [cookieDatagramBytes]byte
	d[0] = byte(k)
	binary.BigEndian.PutUint64(d[headerBytes:], nonce)
	copy(d[headerBytes+nonceBytes:], cookie)
	return d
}

// Control datagrams without a body. They are only ever read, so every
// goroutine may pass them to a socket write.
var (
	keepaliveDatagram = []byte{byte(kindKeepalive)}
	byeDatagram       = []byte{byte(kindBye)}
)
