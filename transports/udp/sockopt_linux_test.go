//go:build linux

package udp

import (
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/evbench/evbench/transports"
)

// sysctlInt reads /proc/sys/<name>; ok is false if it cannot.
func sysctlInt(name string) (int, bool) {
	b, err := os.ReadFile("/proc/sys/" + name)
	if err != nil {
		return 0, false
	}
	v, err := strconv.Atoi(strings.TrimSpace(string(b)))
	return v, err == nil
}

// TestSocketBuffers checks the buffer sizes requested (Options, then
// Config, then the default) and granted, over kernel sockets and over
// wrappers that do or do not forward SetReadBuffer, SetWriteBuffer and
// SyscallConn.
func TestSocketBuffers(t *testing.T) {
	const small, smaller = 64 << 10, 48 << 10
	tests := []struct {
		name      string
		cfg       transports.Config
		opts      Options
		wantRead  int // requested; 0: nothing asked for
		wantWrite int
		readBack  bool // granted sizes can be read back
	}{
		{"defaults", transports.Config{}, Options{}, DefaultSocketBufferBytes, DefaultSocketBufferBytes, true},
		{"options", transports.Config{}, Options{ReadBufferBytes: small, WriteBufferBytes: small}, small, small, true},
		{"config", transports.Config{ReadBufferBytes: small, WriteBufferBytes: smaller}, Options{}, small, smaller, true},
		{"options over config", transports.Config{ReadBufferBytes: small, WriteBufferBytes: small}, Options{ReadBufferBytes: smaller}, smaller, small, true},
		{"wrapper forwarding buffers", wrapConfig(buffered), Options{}, DefaultSocketBufferBytes, DefaultSocketBufferBytes, true},
		{"wrapper forwarding config buffers", withBuffers(wrapConfig(buffered), small, smaller), Options{}, small, smaller, true},
		{"plain wrapper", withBuffers(plainConfig, small, small), Options{}, 0, 0, false},
	}
	rmax, rok := sysctlInt("net/core/rmem_max")
	wmax, wok := sysctlInt("net/core/wmem_max")
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr := newT(t, tc.cfg, tc.opts)
			ln, client, server := pairWith(t, tr, tr)
			for _, s := range []struct {
				name string
				st   Stats
			}{{"listener", ln.Stats()}, {"client", client.Stats()}, {"server", server.Stats()}} {
				st := s.st
				if st.ReadBufferRequestedBytes != tc.wantRead || st.WriteBufferRequestedBytes != tc.wantWrite {
					t.Errorf("%s requested %d/%d bytes, want %d/%d", s.name, st.ReadBufferRequestedBytes, st.WriteBufferRequestedBytes, tc.wantRead, tc.wantWrite)
				}
				if !tc.readBack {
					if st.ReadBufferGrantedBytes != 0 || st.WriteBufferGrantedBytes != 0 {
						t.Errorf("%s granted %d/%d bytes, want 0 (unknown)", s.name, st.ReadBufferGrantedBytes, st.WriteBufferGrantedBytes)
					}
					continue
				}
				// Linux doubles the (capped) request for its bookkeeping.
				if rok && st.ReadBufferGrantedBytes != 2*min(tc.wantRead, rmax) {
					t.Errorf("%s SO_RCVBUF granted %d, want 2×min(%d, rmem_max %d)", s.name, st.ReadBufferGrantedBytes, tc.wantRead, rmax)
				}
				if wok && st.WriteBufferGrantedBytes != 2*min(tc.wantWrite, wmax) {
					t.Errorf("%s SO_SNDBUF granted %d, want 2×min(%d, wmem_max %d)", s.name, st.WriteBufferGrantedBytes, tc.wantWrite, wmax)
				}
			}
			req, got := ln.ReadBufferBytes()
			if req != tc.wantRead || got != ln.Stats().ReadBufferGrantedBytes {
				t.Errorf("Listener.ReadBufferBytes() = %d, %d", req, got)
			}
			req, got = client.ReadBufferBytes()
			if req != tc.wantRead || got != client.Stats().ReadBufferGrantedBytes {
				t.Errorf("Conn.ReadBufferBytes() = %d, %d", req, got)
			}
		})
	}
}

// withBuffers returns cfg with its buffer sizes set.
func withBuffers(cfg transports.Config, read, write int) transports.Config {
	cfg.ReadBufferBytes, cfg.WriteBufferBytes = read, write
	return cfg
}

// cmsg returns one control message of level SOL_SOCKET, type typ, with a
// 4-byte payload v, laid out as the kernel does.
func cmsg(typ int32, v uint32) []byte {
	b := syscall.UnixRights(int(v)) // SOL_SOCKET/SCM_RIGHTS with one int32
	h := (*syscall.Cmsghdr)(unsafe.Pointer(&b[0]))
	h.Type = typ
	return b
}

func TestKernelDropCount(t *testing.T) {
	ovfl := cmsg(syscall.SO_RXQ_OVFL, 42)
	rights := cmsg(syscall.SCM_RIGHTS, 7)
	cat := func(bs ...[]byte) (out []byte) {
		for _, b := range bs {
			out = append(out, b...)
		}
		return out
	}
	tests := []struct {
		name   string
		oob    []byte
		want   uint32
		wantOK bool
	}{
		{"none", nil, 0, false},
		{"the counter", ovfl, 42, true},
		{"another message, then the counter", cat(rights, ovfl), 42, true},
		{"only another message", rights, 0, false},
		{"truncated header", ovfl[:syscall.SizeofCmsghdr-1], 0, false},
		{"length beyond the buffer", ovfl[:syscall.CmsgLen(2)], 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := kernelDropCount(tc.oob)
			if got != tc.want || ok != tc.wantOK {
				t.Fatalf("kernelDropCount = %d, %v; want %d, %v", got, ok, tc.want, tc.wantOK)
			}
		})
	}
}

func TestDropCounterWraps(t *testing.T) {
	var d dropCounter
	steps := []struct {
		kernel uint32
		total  uint64
	}{{5, 5}, {5, 5}, {1<<32 - 3, 1<<32 - 3}, {2, 1<<32 + 2}}
	for _, s := range steps {
		d.note(cmsg(syscall.SO_RXQ_OVFL, s.kernel))
		if got := d.total.Load(); got != s.total {
			t.Fatalf("after kernel counter %d: total %d, want %d", s.kernel, got, s.total)
		}
	}
}

// TestKernelDropsMatchLoss overflows a client's tiny receive buffer and
// checks the case of docs/cases.md C8: frames delivered + KernelDrops = frames
// sent, so loss in the receive buffer is told apart from other loss.
func TestKernelDropsMatchLoss(t *testing.T) {
	const sent = 200
	srv, client, clientAddr := fakeServer(t, Options{ReadBufferBytes: 16 << 10}) // room for a few datagrams
	frame := make([]byte, 1000)
	for i := range sent {
		frame[0] = byte(i)
		srv.send(clientAddr, append([]byte{byte(kindData)}, frame...))
	}
	// Read what the buffer kept, until nothing more comes.
	delivered := 0
	for {
		ch := readAsync(client)
		select {
		case r := <-ch:
			if r.err != nil {
				t.Fatal(r.err)
			}
			delivered++
			continue
		case <-time.After(200 * time.Millisecond):
		}
		// The buffer is empty now: a marker is delivered and carries the
		// drop count up to it.
		srv.send(clientAddr, []byte{byte(kindData), 'M'})
		if r := await(t, ch, waitTimeout); r.err != nil || string(r.p) != "M" {
			t.Fatalf("marker: %q, %v", r.p, r.err)
		}
		break
	}
	drops := client.Stats().KernelDrops
	t.Logf("sent %d, delivered %d, kernel drops %d", sent, delivered, drops)
	if drops == 0 || delivered == 0 || uint64(delivered)+drops != sent {
		t.Fatalf("delivered %d + kernel drops %d, want %d with both above 0", delivered, drops, sent)
	}
}
