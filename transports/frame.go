package transports

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Version is the codec version carried in the first byte of every frame. A
// decoder rejects any other version with ErrVersion.
const Version = 1

// FrameType is the second byte of every frame.
type FrameType uint8

// The frame types of the event protocol. Clients send HELLO, JOIN, LEAVE,
// EMIT, PING, STATS and BYE; the server sends HELLO (the assigned id), EVENT
// (a delivery), ACK, PONG, STATS (its counters, answering a STATS request)
// and BYE. NACK (gap repair from the room's replay
// buffer) is reserved in the codec; until the Hub keeps a replay buffer it
// treats a NACK as an unexpected frame and closes that connection.
const (
	FrameHello FrameType = 1 + iota // Sender = client id (0 asks the server to assign one)
	FrameJoin                       // Namespace, Room, AckID
	FrameLeave                      // Namespace, Room, AckID
	FrameEmit                       // an event from its sender; AckID != 0 asks for an ACK
	FrameEvent                      // an event delivered to a room member; Offset stamped by the Hub
	FrameAck                        // AckID, Status
	FramePing                       // AckID = nonce, SentNs
	FramePong                       // echoes a PING's AckID and SentNs
	FrameNack                       // Namespace, Room, Offset = first missing, Seq = last missing
	FrameBye                        // Status = reason
	FrameStats                      // client: AckID; server: AckID, Payload = its counters (see Hub)
	frameTypeEnd
)

var frameTypeNames = [...]string{"invalid", "HELLO", "JOIN", "LEAVE", "EMIT", "EVENT", "ACK", "PING", "PONG", "NACK", "BYE", "STATS"}

// String returns the frame type's protocol name, e.g. "EMIT".
func (t FrameType) String() string {
	if t < frameTypeEnd {
		return frameTypeNames[t]
	}
	return fmt.Sprintf("FrameType(%d)", uint8(t))
}

// Ack statuses carried in Frame.Status of an ACK.
const (
	AckOK       uint8 = 0 // done
	AckRejected uint8 = 1 // the request was malformed or not allowed (e.g. an empty room name)
	AckLimit    uint8 = 2 // the request crosses one of the server's per-connection limits (rooms, namespaces, payload)
)

// BYE reasons carried in Frame.Status of a BYE.
const (
	ByeNormal  uint8 = 0 // the sender is closing the connection
	ByeIDInUse uint8 = 1 // server: the HELLO's client id is already connected
)

// ErrIDInUse is wrapped by the error of a Dial whose client id the server
// refused because a connection with that id is open (another fleet using
// the same ids on the same server, or a client that did not leave yet).
var ErrIDInUse = errors.New("client id already connected to the server")

// ErrLimit is wrapped by the error of a request the server refused with
// AckLimit: it would cross one of the server's per-connection limits
// (HubConfig's MaxRooms, MaxNamespaces, MaxPayloadBytes).
var ErrLimit = errors.New("over the server's per-connection limit")

// Limits enforced by the codec, in bytes.
const (
	MaxNameBytes    = 255      // namespace, room and event names
	MaxPayloadBytes = 16 << 20 // payload of one event
	MaxStatsBytes   = 1024     // payload of a STATS answer: fits one udp datagram
)

// Fixed sizes, in bytes, of the parts of a frame.
const (
	headerBytes     = 2                             // version, type
	eventFixedBytes = 3 + 6*8 + 4                   // 3 name lengths, 6 numbers, payload length
	EventOverhead   = headerBytes + eventFixedBytes // an EMIT/EVENT frame minus its names and payload
)

// Errors returned by DecodeFrame; each decode error wraps ErrMalformed.
var (
	ErrMalformed = errors.New("malformed frame")
	ErrVersion   = fmt.Errorf("%w: unsupported codec version", ErrMalformed)
)

// Frame is one protocol message. Which fields are meaningful depends on
// Type (see the FrameType constants). After DecodeFrame, the byte-slice
// fields alias the decoded buffer and are valid only as long as it is.
type Frame struct {
	Type      FrameType
	Namespace []byte // e.g. "/" or "/chat"
	Room      []byte
	Name      []byte // event name, e.g. "message"
	Sender    uint64 // client id of the event's sender; the client's own id in HELLO
	Seq       uint64 // sender's sequence number, per (sender, room)
	Offset    uint64 // room offset, stamped by the Hub on EVENT
	// IntendedNs is the publisher's scheduled send time and SentNs the time
	// it actually wrote the frame, in nanoseconds on the sender's clock.
	IntendedNs int64
	SentNs     int64
	AckID      uint64 // nonzero asks for an ACK carrying the same id
	Status     uint8  // ACK status or BYE reason
	Payload    []byte
}

// EventFrameBytes is the encoded size of an EMIT or EVENT frame with names
// of the given total length (namespace + room + name) and payload bytes.
func EventFrameBytes(nameBytes, payloadBytes int) int {
	return EventOverhead + nameBytes + payloadBytes
}

// AppendFrame appends the encoding of f to dst and returns the extended
// slice. It returns an error wrapping ErrFrameTooLarge when a name is over
// MaxNameBytes or the payload over MaxPayloadBytes, and an error for an
// unknown Type. It does not allocate when dst has room.
func AppendFrame(dst []byte, f *Frame) ([]byte, error) {
	dst = append(dst, Version, byte(f.Type))
	switch f.Type {
	case FrameHello:
		dst = binary.BigEndian.AppendUint64(dst, f.Sender)
	case FrameJoin, FrameLeave:
		var err error
		if dst, err = appendNames(dst, f.Namespace, f.Room); err != nil {
			return dst, err
		}
		dst = binary.BigEndian.AppendUint64(dst, f.AckID)
	case FrameEmit, FrameEvent:
		if len(f.Payload) > MaxPayloadBytes {
			return dst, fmt.Errorf("payload of %d bytes: %w (max %d)", len(f.Payload), ErrFrameTooLarge, MaxPayloadBytes)
		}
		var err error
		if dst, err = appendNames(dst, f.Namespace, f.Room, f.Name); err != nil {
			return dst, err
		}
		dst = binary.BigEndian.AppendUint64(dst, f.Sender)
		dst = binary.BigEndian.AppendUint64(dst, f.Seq)
		dst = binary.BigEndian.AppendUint64(dst, f.Offset)
		dst = binary.BigEndian.AppendUint64(dst, uint64(f.IntendedNs))
		dst = binary.BigEndian.AppendUint64(dst, uint64(f.SentNs))
		dst = binary.BigEndian.AppendUint64(dst, f.AckID)
		dst = binary.BigEndian.AppendUint32(dst, uint32(len(f.Payload)))
		dst = append(dst, f.Payload...)
	case FrameAck:
		dst = binary.BigEndian.AppendUint64(dst, f.AckID)
		dst = append(dst, f.Status)
	case FramePing, FramePong:
		dst = binary.BigEndian.AppendUint64(dst, f.AckID)
		dst = binary.BigEndian.AppendUint64(dst, uint64(f.SentNs))
	case FrameNack:
		var err error
		if dst, err = appendNames(dst, f.Namespace, f.Room); err != nil {
			return dst, err
		}
		dst = binary.BigEndian.AppendUint64(dst, f.Offset)
		dst = binary.BigEndian.AppendUint64(dst, f.Seq)
	case FrameBye:
		dst = append(dst, f.Status)
	case FrameStats:
		if len(f.Payload) > MaxStatsBytes {
			return dst, fmt.Errorf("STATS payload of %d bytes: %w (max %d)", len(f.Payload), ErrFrameTooLarge, MaxStatsBytes)
		}
		dst = binary.BigEndian.AppendUint64(dst, f.AckID)
		dst = binary.BigEndian.AppendUint32(dst, uint32(len(f.Payload)))
		dst = append(dst, f.Payload...)
	default:
		return dst, fmt.Errorf("encode: unknown frame type %v", f.Type)
	}
	return dst, nil
}

func appendNames(dst []byte, names ...[]byte) ([]byte, error) {
	for _, n := range names {
		if len(n) > MaxNameBytes {
			return dst, fmt.Errorf("name of %d bytes: %w (max %d)", len(n), ErrFrameTooLarge, MaxNameBytes)
		}
		dst = append(dst, byte(len(n)))
		dst = append(dst, n...)
	}
	return dst, nil
}

// DecodeFrame parses p into f. Byte-slice fields of f alias p. It checks
// every length against what remains of p and rejects trailing bytes, an
// unknown version or type, and a payload over MaxPayloadBytes; every error
// wraps ErrMalformed. It never allocates.
func DecodeFrame(p []byte, f *Frame) error {
	if len(p) < headerBytes {
		return fmt.Errorf("%w: %d bytes, shorter than the header", ErrMalformed, len(p))
	}
	if p[0] != Version {
		return fmt.Errorf("%w: got version %d, want %d", ErrVersion, p[0], Version)
	}
	*f = Frame{Type: FrameType(p[1])}
	d := decoder{b: p[headerBytes:]}
	switch f.Type {
	case FrameHello:
		f.Sender = d.u64()
	case FrameJoin, FrameLeave:
		f.Namespace, f.Room = d.name(), d.name()
		f.AckID = d.u64()
	case FrameEmit, FrameEvent:
		f.Namespace, f.Room, f.Name = d.name(), d.name(), d.name()
		f.Sender, f.Seq, f.Offset = d.u64(), d.u64(), d.u64()
		f.IntendedNs, f.SentNs = int64(d.u64()), int64(d.u64())
		f.AckID = d.u64()
		n := d.u32()
		if n > MaxPayloadBytes {
			return fmt.Errorf("%w: payload length %d over %d", ErrMalformed, n, MaxPayloadBytes)
		}
		f.Payload = d.bytes(int(n))
	case FrameAck:
		f.AckID = d.u64()
		f.Status = d.u8()
	case FramePing, FramePong:
		f.AckID, f.SentNs = d.u64(), int64(d.u64())
	case FrameNack:
		f.Namespace, f.Room = d.name(), d.name()
		f.Offset, f.Seq = d.u64(), d.u64()
	case FrameBye:
		f.Status = d.u8()
	case FrameStats:
		f.AckID = d.u64()
		n := d.u32()
		if n > MaxStatsBytes {
			return fmt.Errorf("%w: STATS payload length %d over %d", ErrMalformed, n, MaxStatsBytes)
		}
		f.Payload = d.bytes(int(n))
	default:
		return fmt.Errorf("%w: unknown frame type %d", ErrMalformed, p[1])
	}
	if d.short {
		return fmt.Errorf("%w: %v frame of %d bytes is truncated", ErrMalformed, f.Type, len(p))
	}
	if len(d.b) != 0 {
		return fmt.Errorf("%w: %d trailing bytes after %v frame", ErrMalformed, len(d.b), f.Type)
	}
	return nil
}

// decoder reads big-endian fields; once a read runs past the end it sets
// short and every later read returns zero values.
type decoder struct {
	b     []byte
	short bool
}

func (d *decoder) bytes(n int) []byte {
	if d.short || n > len(d.b) {
		d.short = true
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) u8() uint8 {
	if v := d.bytes(1); v != nil {
		return v[0]
	}
	return 0
}

func (d *decoder) u32() uint32 {
	if v := d.bytes(4); v != nil {
		return binary.BigEndian.Uint32(v)
	}
	return 0
}

func (d *decoder) u64() uint64 {
	if v := d.bytes(8); v != nil {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

func (d *decoder) name() []byte { return d.bytes(int(d.u8())) }
