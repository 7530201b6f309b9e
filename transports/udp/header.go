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
//	HELLO-ACK  kind=3, then the nonce of the HELLO it answers (server → client)
//	KEEPALIVE  kind=4, nothing else
//	BYE        kind=5, nothing else
//
// Any other first byte, or a length that does not fit the kind, makes the
// datagram malformed; it is dropped and counted.
const (
	headerBytes = 1 // the kind byte
	nonceBytes  = 8 // HELLO and HELLO-ACK body

	// ipv4HeaderBytes and udpHeaderBytes are the minimal IPv4 header
	// (RFC 791, no options) and the UDP header (RFC 768).
	ipv4HeaderBytes = 20
	udpHeaderBytes  = 8
	// mtuBytes is the Ethernet MTU that one datagram must fit unfragmented.
	mtuBytes = 1500
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
	kindEnd
)

var kindNames = [...]string{"invalid", "DATA", "HELLO", "HELLO-ACK", "KEEPALIVE", "BYE"}

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
	case kindHello, kindHelloAck:
		if len(body) < nonceBytes {
			return 0, nil, errTruncated
		}
		if len(body) > nonceBytes {
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

// nonceOf reads the nonce from a parsed HELLO or HELLO-ACK body.
func nonceOf(body []byte) uint64 { return binary.BigEndian.Uint64(body) }

// Control datagrams without a body. They are only ever read, so every
// goroutine may pass them to a socket write.
var (
	keepaliveDatagram = []byte{byte(kindKeepalive)}
	byeDatagram       = []byte{byte(kindBye)}
)
