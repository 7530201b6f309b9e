package udp

import (
	"bytes"
	"errors"
	"testing"

	"github.com/evbench/evbench/transports"
)

func TestMaxFrameBytes(t *testing.T) {
	// 1500-byte MTU − 20-byte IPv4 header − 8-byte UDP header − 1 kind byte.
	if MaxFrameBytes != 1471 {
		t.Fatalf("MaxFrameBytes = %d, want 1471", MaxFrameBytes)
	}
	if headerBytes+MaxFrameBytes+ipv4HeaderBytes+udpHeaderBytes != mtuBytes {
		t.Fatal("a full DATA datagram does not fill the 1500-byte MTU exactly")
	}
	if bufferBytes <= headerBytes+MaxFrameBytes {
		t.Fatalf("bufferBytes = %d cannot tell a full DATA datagram from a truncated larger one", bufferBytes)
	}
}

func TestParseDatagram(t *testing.T) {
	nonce := []byte{1, 2, 3, 4, 5, 6, 7, 8}
	cookie := bytes.Repeat([]byte{0xc0}, cookieBytes)
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	tests := []struct {
		name     string
		in       []byte
		wantKind kind
		wantBody []byte
		wantErr  error // nil: valid
	}{
		{"empty datagram", nil, 0, nil, errTruncated},
		{"DATA with an empty frame", []byte{1}, kindData, []byte{}, nil},
		{"DATA with one byte", []byte{1, 0xaa}, kindData, []byte{0xaa}, nil},
		{"DATA at MaxFrameBytes", cat([]byte{1}, make([]byte, MaxFrameBytes)), kindData, make([]byte, MaxFrameBytes), nil},
		{"DATA one byte over MaxFrameBytes", cat([]byte{1}, make([]byte, MaxFrameBytes+1)), 0, nil, errOversize},
		{"HELLO", cat([]byte{2}, nonce), kindHello, nonce, nil},
		{"HELLO without nonce", []byte{2}, 0, nil, errTruncated},
		{"HELLO with a truncated nonce", cat([]byte{2}, nonce[:7]), 0, nil, errTruncated},
		{"HELLO with one cookie byte", cat([]byte{2}, nonce, []byte{0}), 0, nil, errCookieSize},
		{"HELLO with a truncated cookie", cat([]byte{2}, nonce, cookie[1:]), 0, nil, errCookieSize},
		{"HELLO with a cookie", cat([]byte{2}, nonce, cookie), kindHello, cat(nonce, cookie), nil},
		{"HELLO with a cookie and a byte too many", cat([]byte{2}, nonce, cookie, []byte{0}), 0, nil, errTrailing},
		{"HELLO-ACK", cat([]byte{3}, nonce), kindHelloAck, nonce, nil},
		{"HELLO-ACK with a truncated nonce", cat([]byte{3}, nonce[:1]), 0, nil, errTruncated},
		{"KEEPALIVE", []byte{4}, kindKeepalive, []byte{}, nil},
		{"KEEPALIVE with a body", []byte{4, 0}, 0, nil, errTrailing},
		{"BYE", []byte{5}, kindBye, []byte{}, nil},
		{"BYE with a body", []byte{5, 1, 2}, 0, nil, errTrailing},
		{"COOKIE", cat([]byte{6}, nonce, cookie), kindCookie, cat(nonce, cookie), nil},
		{"COOKIE without its cookie", cat([]byte{6}, nonce), 0, nil, errTruncated},
		{"COOKIE with a byte too many", cat([]byte{6}, nonce, cookie, []byte{0}), 0, nil, errTrailing},
		{"kind 0", []byte{0, 1, 2}, 0, nil, errUnknownKind},
		{"kind 7 (one past COOKIE)", []byte{7}, 0, nil, errUnknownKind},
		{"kind 255", []byte{255, 0}, 0, nil, errUnknownKind},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			k, body, err := parseDatagram(tc.in)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) || !errors.Is(err, errMalformed) {
					t.Fatalf("parseDatagram(% x) error = %v, want %v (wrapping errMalformed)", tc.in, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseDatagram(% x) error = %v, want none", tc.in, err)
			}
			if k != tc.wantKind || !bytes.Equal(body, tc.wantBody) {
				t.Fatalf("parseDatagram(% x) = %v, % x; want %v, % x", tc.in, k, body, tc.wantKind, tc.wantBody)
			}
		})
	}
}

func TestOversizeWrapsErrFrameTooLarge(t *testing.T) {
	if !errors.Is(errOversize, transports.ErrFrameTooLarge) {
		t.Fatal("an oversized DATA datagram's error does not wrap transports.ErrFrameTooLarge")
	}
}

func TestHelloDatagramRoundTrip(t *testing.T) {
	for _, nonce := range []uint64{0, 1, 0x0102030405060708, ^uint64(0)} {
		for _, k := range []kind{kindHello, kindHelloAck} {
			d := helloDatagram(k, nonce)
			gotKind, body, err := parseDatagram(d[:])
			if err != nil || gotKind != k || nonceOf(body) != nonce {
				t.Errorf("helloDatagram(%v, %#x) parses as %v, nonce %#x, %v", k, nonce, gotKind, nonceOf(body), err)
			}
		}
	}
	cookie := bytes.Repeat([]byte{0xc0}, cookieBytes)
	for _, k := range []kind{kindHello, kindCookie} {
		d := cookieHelloDatagram(k, 0x0102030405060708, cookie)
		gotKind, body, err := parseDatagram(d[:])
		if err != nil || gotKind != k || nonceOf(body) != 0x0102030405060708 || !bytes.Equal(cookieOf(body), cookie) {
			t.Errorf("cookieHelloDatagram(%v) parses as %v, % x, %v", k, gotKind, body, err)
		}
	}
	for _, d := range [][]byte{keepaliveDatagram, byeDatagram} {
		if _, _, err := parseDatagram(d); err != nil {
			t.Errorf("control datagram % x: %v", d, err)
		}
	}
}

func TestKindString(t *testing.T) {
	tests := []struct {
		k    kind
		want string
	}{
		{0, "invalid"}, {kindData, "DATA"}, {kindHello, "HELLO"}, {kindHelloAck, "HELLO-ACK"},
		{kindKeepalive, "KEEPALIVE"}, {kindBye, "BYE"}, {kindCookie, "COOKIE"}, {7, "kind(7)"},
	}
	for _, tc := range tests {
		if got := tc.k.String(); got != tc.want {
			t.Errorf("kind(%d).String() = %q, want %q", uint8(tc.k), got, tc.want)
		}
	}
}

func TestRing(t *testing.T) {
	const limit = 40
	var r ring
	bufs := make([]*buffer, limit)
	for i := range bufs {
		bufs[i] = &buffer{n: i}
	}
	// Interleave pushes and pops so that the ring wraps while it grows.
	next, popped := 0, 0
	for round := range 3 {
		for range 15 {
			if !r.push(bufs[next%limit], limit) {
				t.Fatalf("round %d: push %d refused below the limit (len %d)", round, next, r.n)
			}
			next++
		}
		for range 10 {
			b := r.pop()
			if b == nil || b.n != popped%limit {
				t.Fatalf("round %d: pop = %v, want buffer %d", round, b, popped%limit)
			}
			popped++
		}
	}
	for r.n < limit {
		if !r.push(bufs[next%limit], limit) {
			t.Fatalf("push refused at %d of %d", r.n, limit)
		}
		next++
	}
	if r.push(bufs[0], limit) {
		t.Fatal("push accepted past the limit")
	}
	for range limit {
		if b := r.pop(); b == nil || b.n != popped%limit {
			t.Fatalf("pop = %v, want buffer %d", b, popped%limit)
		}
		popped++
	}
	if r.pop() != nil {
		t.Fatal("pop of an empty ring returned a buffer")
	}
}
