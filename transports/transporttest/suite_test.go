package transporttest

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/evbench/evbench/transports"
)

// TestRunFake runs the suite against the correct fake transport.
func TestRunFake(t *testing.T) {
	Run(t, &fakeTransport{})
}

// TestRunFakeDatagram runs the suite against the correct datagram fake, whose
// Conns are transports.DatagramConns that lose some of WriteDatagram's
// frames, as ReliableControl without Reliable allows: the suite must pass
// it, and the frames written with transports.WriteEvent must have gone
// through WriteDatagram.
func TestRunFakeDatagram(t *testing.T) {
	before := fakeDatagramsDropped.Load()
	Run(t, &fakeTransport{datagram: true})
	if fakeDatagramsDropped.Load() == before {
		t.Fatal("no frame written with transports.WriteEvent was lost: the suite did not use WriteDatagram")
	}
}

// TestRunKeepsDiscipline runs the suite with every Conn wrapped by
// CheckSingleWriter: the suite itself must never call WriteFrame, Flush or
// ReadFrame on one Conn from two goroutines at once, or it would report
// races that are its own. It also exercises the wrapper's Flush delegation,
// since the fake sends nothing until flushed.
func TestRunKeepsDiscipline(t *testing.T) {
	tr := &checkedTransport{Transport: &fakeTransport{}}
	Run(t, tr)
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if len(tr.conns) == 0 {
		t.Fatal("no Conn was wrapped")
	}
	for i, c := range tr.conns {
		if v := c.Violations(); v != 0 {
			t.Errorf("conn %d of %d: %d violations", i, len(tr.conns), v)
		}
	}
}

// checkedTransport wraps every Conn its Transport makes in CheckSingleWriter.
type checkedTransport struct {
	transports.Transport
	mu    sync.Mutex
	conns []*SingleWriterConn
}

func (tr *checkedTransport) track(c transports.Conn) transports.Conn {
	w := CheckSingleWriter(c)
	tr.mu.Lock()
	tr.conns = append(tr.conns, w)
	tr.mu.Unlock()
	return w
}

func (tr *checkedTransport) Listen(ctx context.Context, addr string) (transports.Listener, error) {
	ln, err := tr.Transport.Listen(ctx, addr)
	if err != nil {
		return nil, err
	}
	return &checkedListener{Listener: ln, tr: tr}, nil
}

func (tr *checkedTransport) Dial(ctx context.Context, addr string) (transports.Conn, error) {
	c, err := tr.Transport.Dial(ctx, addr)
	if err != nil {
		return nil, err
	}
	return tr.track(c), nil
}

type checkedListener struct {
	transports.Listener
	tr *checkedTransport
}

func (l *checkedListener) Accept(ctx context.Context) (transports.Conn, error) {
	c, err := l.Listener.Accept(ctx)
	if err != nil {
		return nil, err
	}
	return l.tr.track(c), nil
}

// flawEnv names the flaw TestFlawedFake gives the fake transport.
const flawEnv = "TRANSPORTTEST_FLAW"

// TestFlawedFake runs the suite against a fake with the flaw named in
// $TRANSPORTTEST_FLAW. It is meant to fail; TestSuiteCatchesFlaws runs it in
// a child process and checks that it does.
func TestFlawedFake(t *testing.T) {
	f := os.Getenv(flawEnv)
	if f == "" {
		t.Skip("run by TestSuiteCatchesFlaws in a child process, with " + flawEnv + " set")
	}
	Run(t, &fakeTransport{flaw: flaw(f)})
}

// TestSuiteCatchesFlaws shows that the suite fails each kind of broken
// transport, in the subtest meant to catch it and with a message that says
// what broke. Each case runs one subtest of TestFlawedFake in a child
// process (this test binary), since a failing subtest cannot be contained
// inside this process.
func TestSuiteCatchesFlaws(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the test binary once per flaw")
	}
	tests := []struct {
		flaw    flaw
		subtest string
		want    string // in the child's output
	}{
		{flawTruncates, "SizeLimit", "want an error wrapping transports.ErrFrameTooLarge"},
		{flawKeepsBuffer, "RoundTrip", "first difference at byte 0"},
		{flawDrops, "Ordered", "arrived where #99 was due"},
		{flawCloseNoUnblk, "CloseUnblocksRead", "ReadFrame still blocked 2s after Close"},
		{flawCloseNoUnblk, "CloseUnblocksWrite", "write still blocked 2s after Close"},
		{flawPlainCloseErr, "CloseUnblocksRead", "want an error wrapping net.ErrClosed"},
		{flawResetOnClose, "PeerClose", "want an error wrapping io.EOF"},
		{flawAcceptNoCtx, "ListenerClose", "want ctx.Err()"},
		{flawDialNoCtx, "DialContext", "Dial with a cancelled ctx succeeded"},
		{flawLeaks, "RoundTrip", "goroutines left behind after everything was closed"},
		{flawControlDrops, "Ordered", "written with WriteFrame, arrived where #196 was due"},
	}
	for _, tt := range tests {
		t.Run(string(tt.flaw)+"/"+tt.subtest, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, os.Args[0],
				"-test.run=^TestFlawedFake$/^"+tt.subtest+"$", "-test.count=1", "-test.timeout=50s")
			cmd.Env = append(os.Environ(), flawEnv+"="+string(tt.flaw))
			out, err := cmd.CombinedOutput()
			if err == nil {
				t.Fatalf("the suite passed a fake that %s:\n%s", tt.flaw, out)
			}
			if s := "--- FAIL: TestFlawedFake/" + tt.subtest; !strings.Contains(string(out), s) {
				t.Fatalf("child failed (%v) without %q in its output:\n%s", err, s, out)
			}
			if !strings.Contains(string(out), tt.want) {
				t.Fatalf("child output lacks %q:\n%s", tt.want, out)
			}
		})
	}
}

// TestNumbered checks that numbered frames parse back, that each way of
// writing them carries both shapes (EVENT-like and opaque), and that damage
// of each kind is reported, since Ordered and Concurrent rely on it.
func TestNumbered(t *testing.T) {
	const maxLen = 300
	for seq := range uint64(1000) {
		p := appendNumbered(nil, seq, maxLen)
		if len(p) < numberedHeader || len(p) > maxLen {
			t.Fatalf("frame #%d has %d bytes, want %d..%d", seq, len(p), numberedHeader, maxLen)
		}
		if got, err := parseNumbered(p, maxLen); err != nil || got != seq {
			t.Fatalf("parseNumbered(#%d) = %d, %v", seq, got, err)
		}
		if event := numberedEvent(seq); event != (seq%2 == 1) {
			t.Fatalf("frame #%d: written with WriteEvent: %v, want %v", seq, event, seq%2 == 1)
		}
		eventShaped := p[0] == transports.Version && p[1] == byte(transports.FrameEvent)
		if want := seq%4 == 1 || seq%4 == 2; eventShaped != want {
			t.Fatalf("frame #%d: shaped like an EVENT frame: %v, want %v", seq, eventShaped, want)
		}
	}
	good := appendNumbered(nil, 7, maxLen)
	tests := []struct {
		name   string
		damage func([]byte) []byte
	}{
		{"flipped filler byte", func(p []byte) []byte { p[len(p)-1] ^= 1; return p }},
		{"flipped kind byte", func(p []byte) []byte { p[0] ^= 1; return p }},
		{"other number", func(p []byte) []byte { p[9] = 8; return p }},
		{"truncated", func(p []byte) []byte { return p[:len(p)-1] }},
		{"extended", func(p []byte) []byte { return append(p, 0) }},
		{"shorter than the header", func(p []byte) []byte { return p[:numberedHeader-1] }},
		{"empty", func(p []byte) []byte { return p[:0] }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := tt.damage(append([]byte(nil), good...))
			if seq, err := parseNumbered(p, maxLen); err == nil {
				t.Errorf("parseNumbered accepted a damaged frame as #%d", seq)
			}
		})
	}
}

// TestSyncFrameIsDistinct guards the readers' skipping of sync frames: no
// test frame may equal syncFrame.
func TestSyncFrameIsDistinct(t *testing.T) {
	for _, maxFrame := range []int{minMaxFrame, len(syncFrame), 1471, fakeMaxFrame} {
		for _, f := range testFrames(maxFrame) {
			if string(f) == string(syncFrame) {
				t.Fatalf("a RoundTrip frame for MaxFrame %d equals the sync frame", maxFrame)
			}
		}
	}
	for seq := range uint64(2000) {
		if string(appendNumbered(nil, seq, 1024)) == string(syncFrame) {
			t.Fatalf("numbered frame #%d equals the sync frame", seq)
		}
	}
}
