package quic

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

// preambleSeeds are streams a peer may open with: both preambles, the
// other transport's, nothing, and frames sent without a preamble.
var preambleSeeds = [][]byte{
	{'S'}, {'D'}, {}, {'S', 0, 0, 0, 1, 'x'}, {'D', 0, 0, 0, 0}, {0}, {0xff},
	{0, 0, 0, 1, 'S'}, []byte("SD"), []byte("GET / HTTP/1.1\r\n"), {'s'},
}

// checkPreamble checks readPreamble against the direct reading of data:
// accepted exactly when the first byte is want, and never consuming more
// than that byte.
func checkPreamble(t *testing.T, r io.Reader, data []byte, rest *bytes.Reader, want byte) {
	err := readPreamble(r, want)
	if ok := len(data) > 0 && data[0] == want; ok != (err == nil) {
		t.Fatalf("readPreamble(%q, %q) = %v", data, want, err)
	}
	if len(data) == 0 && !errors.Is(err, io.EOF) {
		t.Fatalf("empty stream: %v, want io.EOF", err)
	}
	if len(data) > 0 && rest.Len() != len(data)-1 {
		t.Fatalf("readPreamble consumed %d bytes, want 1", len(data)-rest.Len())
	}
}

// FuzzPreamble feeds readPreamble arbitrary stream openings.
func FuzzPreamble(f *testing.F) {
	for i, s := range preambleSeeds {
		f.Add(s, i%2 == 0)
	}
	f.Fuzz(func(t *testing.T, data []byte, stream bool) {
		want := preambleDatagram
		if stream {
			want = preambleStream
		}
		r := bytes.NewReader(data)
		checkPreamble(t, r, data, r, want)
	})
}

// FuzzPreambleSplit is FuzzPreamble with the stream arriving in two reads
// split at a fuzzed point (the first possibly empty).
func FuzzPreambleSplit(f *testing.F) {
	for i, s := range preambleSeeds {
		f.Add(s, uint8(i%3))
	}
	f.Fuzz(func(t *testing.T, data []byte, split uint8) {
		at := min(int(split), len(data))
		rest := bytes.NewReader(data[at:])
		r := io.MultiReader(bytes.NewReader(data[:at]), rest)
		if at > 0 {
			// The first chunk holds the preamble; rest is untouched.
			err := readPreamble(r, preambleStream)
			if ok := data[0] == preambleStream; ok != (err == nil) {
				t.Fatalf("readPreamble(%q) = %v", data, err)
			}
			return
		}
		checkPreamble(t, r, data, rest, preambleStream)
	})
}
