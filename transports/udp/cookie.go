package udp

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"hash"
	"net/netip"
	"time"
)

// CookieLifetime is how long a Listener accepts a cookie after it issued
// it: a HELLO that echoes an older one is refused (counted in
// Stats.UnvalidatedDrops) and answered with a fresh COOKIE, which Dial
// adopts. 10 s is a hundred of Dial's default HelloIntervals, so an honest
// client's resends stay well inside it, and it bounds how long a cookie
// that leaked from the path stays usable.
const CookieLifetime = 10 * time.Second

// cookieSecretBytes is the size of a Listener's HMAC-SHA256 key, the hash's
// output size (RFC 2104 §3 recommends at least that).
const cookieSecretBytes = sha256.Size

// cookieInputBytes is what the MAC covers: the client's address (16-byte
// IPv6 form and 2-byte port), the nonce and the timestamp.
const cookieInputBytes = 16 + 2 + nonceBytes + cookieTimeBytes

// cookieTimeMask keeps a timestamp in its 48 bits: 2^48 ms is about 8,900
// years of a process's life.
const cookieTimeMask = 1<<(8*cookieTimeBytes) - 1

// cookieJar mints and checks the cookies of one Listener (see the wire
// format in header.go). It keeps no state per client: a cookie proves
// itself. It is not safe for concurrent use; the Listener's read goroutine
// owns it, and it allocates nothing after newCookieJar.
type cookieJar struct {
	secret [cookieSecretBytes]byte // immutable
	mac    hash.Hash               // HMAC-SHA256 under secret
	in     [cookieInputBytes]byte
	sum    [sha256.Size]byte
}

// newCookieJar returns a jar under a random secret (crypto/rand), or under
// secret when it is given (tests: a second jar that mints what the first
// accepts).
func newCookieJar(secret ...[cookieSecretBytes]byte) *cookieJar {
	j := &cookieJar{}
	if len(secret) > 0 {
		j.secret = secret[0]
	} else {
		rand.Read(j.secret[:]) // never fails (crypto/rand.Read's contract)
	}
	j.mac = hmac.New(sha256.New, j.secret[:])
	return j
}

// cookieNow is the time a cookie carries, in milliseconds since the
// package's epoch on the monotonic clock.
func cookieNow() int64 { return now() / int64(time.Millisecond) }

// tag computes the truncated MAC of (addr, nonce, ts) into j.sum and
// returns it.
func (j *cookieJar) tag(addr netip.AddrPort, nonce uint64, ts int64) []byte {
	ip := addr.Addr().Unmap().As16()
	in := j.in[:0]
	in = append(in, ip[:]...)
	in = binary.BigEndian.AppendUint16(in, addr.Port())
	in = binary.BigEndian.AppendUint64(in, nonce)
	in = appendUint48(in, uint64(ts))
	j.mac.Reset()
	j.mac.Write(in)
	return j.mac.Sum(j.sum[:0])[:cookieMACBytes]
}

// mint writes the cookie for a HELLO from addr carrying nonce at time nowMs
// (cookieNow) into dst, which must hold cookieBytes.
func (j *cookieJar) mint(dst []byte, addr netip.AddrPort, nonce uint64, nowMs int64) {
	ts := nowMs & cookieTimeMask
	putUint48(dst, uint64(ts))
	copy(dst[cookieTimeBytes:cookieBytes], j.tag(addr, nonce, ts))
}

// check reports whether cookie is one that j minted for addr and nonce no
// more than CookieLifetime before nowMs. The MAC is compared in constant
// time (hmac.Equal).
func (j *cookieJar) check(cookie []byte, addr netip.AddrPort, nonce uint64, nowMs int64) bool {
	if len(cookie) != cookieBytes {
		return false
	}
	ts := int64(uint48(cookie))
	if age := nowMs&cookieTimeMask - ts; age < 0 || age >= CookieLifetime.Milliseconds() {
		return false
	}
	return hmac.Equal(j.tag(addr, nonce, ts), cookie[cookieTimeBytes:])
}

// putUint48, uint48 and appendUint48 handle a 6-byte big-endian number.
func putUint48(b []byte, v uint64) {
	_ = b[5]
	b[0], b[1], b[2], b[3], b[4], b[5] = byte(v>>40), byte(v>>32), byte(v>>24), byte(v>>16), byte(v>>8), byte(v)
}

func uint48(b []byte) uint64 {
	_ = b[5]
	return uint64(b[0])<<40 | uint64(b[1])<<32 | uint64(b[2])<<24 | uint64(b[3])<<16 | uint64(b[4])<<8 | uint64(b[5])
}

func appendUint48(b []byte, v uint64) []byte {
	return append(b, byte(v>>40), byte(v>>32), byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
}
