package redisbroker

import (
	"encoding/binary"
	"errors"
	"unsafe"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/primusgo/primus"
)

// EnvelopeVersion is the version byte of the native envelope this package
// writes and the only one it accepts.
const EnvelopeVersion = 1

// Errors reported by the decoders (and counted as decode errors by a
// running Broker).
var (
	ErrMalformed      = errors.New("redisbroker: malformed payload")
	ErrUnknownVersion = errors.New("redisbroker: unknown envelope version")
)

// envelope is a decoded native envelope. Its strings point into the
// payload (no copies).
type envelope struct {
	id, origin string
	rooms      []string
	except     []string
	data       string
}

// AppendEnvelope appends the native envelope (version 1) of m to dst:
//
//	version  1 byte, = 1
//	id       uvarint length, bytes
//	origin   uvarint length, bytes
//	rooms    uvarint count, then per room: uvarint length, bytes
//	except   uvarint count, then per id:   uvarint length, bytes
//	data     the rest of the payload: the JSON text, unframed
//
// Lengths are unsigned LEB128 varints (protobuf's encoding) in their
// shortest form; decoders reject over-long forms, so every message has
// exactly one encoding. m.Rooms is encoded as given, so callers should
// remove duplicates first.
func AppendEnvelope(dst []byte, m *primus.Message) []byte {
	dst = append(dst, EnvelopeVersion)
	dst = appendString(dst, m.ID)
	dst = appendString(dst, m.Origin)
	dst = binary.AppendUvarint(dst, uint64(len(m.Rooms)))
	for _, r := range m.Rooms {
		dst = appendString(dst, r)
	}
	dst = binary.AppendUvarint(dst, uint64(len(m.Except)))
	for _, x := range m.Except {
		dst = appendString(dst, x)
	}
	return append(dst, m.Data...)
}

func envelopeSize(m *primus.Message) int {
	n := 1 + uvarintLen(len(m.ID)) + len(m.ID) + uvarintLen(len(m.Origin)) + len(m.Origin)
	n += uvarintLen(len(m.Rooms))
	for _, r := range m.Rooms {
		n += uvarintLen(len(r)) + len(r)
	}
	n += uvarintLen(len(m.Except))
	for _, x := range m.Except {
		n += uvarintLen(len(x)) + len(x)
	}
	return n + len(m.Data)
}

func uvarintLen(n int) int {
	l := 1
	for n >= 0x80 {
		n >>= 7
		l++
	}
	return l
}

func appendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

// DecodeEnvelope decodes a native envelope. The returned message has the
// envelope's rooms in Rooms and copies nothing: its strings and
// Data alias payload, which must not be modified while it is in use.
func DecodeEnvelope(payload []byte) (*primus.Message, error) {
	env, err := decodeEnvelope(unsafe.String(unsafe.SliceData(payload), len(payload)))
	if err != nil {
		return nil, err
	}
	return &primus.Message{
		ID:     env.id,
		Origin: env.origin,
		Rooms:  env.rooms,
		Except: env.except,
		Data:   bytesOf(env.data),
	}, nil
}

// decodeEnvelope parses p, which it aliases. It checks the structure, that
// the data is non-empty valid JSON, and that no length or count points past
// the end (so a hostile count cannot make it allocate much).
func decodeEnvelope(p string) (env envelope, err error) {
	if len(p) == 0 {
		return env, ErrMalformed
	}
	if p[0] != EnvelopeVersion {
		return env, ErrUnknownVersion
	}
	d := decoder{p: p, i: 1}
	env.id = d.str()
	env.origin = d.str()
	env.rooms = d.list()
	env.except = d.list()
	if d.bad {
		return envelope{}, ErrMalformed
	}
	env.data = p[d.i:]
	if !validJSON(env.data) {
		return envelope{}, ErrMalformed
	}
	return env, nil
}

// envelopeOrigin reads the origin of an envelope without decoding the
// rest; ok is false if the header is malformed.
func envelopeOrigin(p string) (origin string, ok bool) {
	if len(p) == 0 || p[0] != EnvelopeVersion {
		return "", false
	}
	d := decoder{p: p, i: 1}
	d.str() // id
	origin = d.str()
	return origin, !d.bad
}

type decoder struct {
	p   string
	i   int
	bad bool
}

func (d *decoder) uvarint() int {
	var x uint64
	for shift := 0; shift < 64; shift += 7 {
		if d.i >= len(d.p) {
			d.bad = true
			return 0
		}
		b := d.p[d.i]
		d.i++
		if (b == 0 && shift > 0) || (shift == 63 && b > 1) {
			// Over-long or overflowing: every value has one encoding.
			d.bad = true
			return 0
		}
		x |= uint64(b&0x7f) << shift
		if b < 0x80 {
			if x > uint64(len(d.p)-d.i) {
				// No length or count can exceed what is left.
				d.bad = true
				return 0
			}
			return int(x)
		}
	}
	d.bad = true
	return 0
}

func (d *decoder) str() string {
	n := d.uvarint()
	if d.bad {
		return ""
	}
	s := d.p[d.i : d.i+n]
	d.i += n
	return s
}

func (d *decoder) list() []string {
	n := d.uvarint()
	if d.bad || n == 0 {
		return nil
	}
	out := make([]string, n)
	for i := range out {
		out[i] = d.str()
		if d.bad {
			return nil
		}
	}
	return out
}

// jsonOptions make jsontext accept what encoding/json.Valid accepts
// (duplicate names, invalid UTF-8): it is about seven times faster.
var jsonOptions = []jsontext.Options{jsontext.AllowInvalidUTF8(true), jsontext.AllowDuplicateNames(true)}

// validJSON reports whether s is exactly one JSON value (surrounding
// whitespace allowed), as encoding/json.Valid does.
func validJSON(s string) bool {
	return len(s) > 0 && jsontext.Value(bytesOf(s)).IsValid(jsonOptions...)
}

// bytesOf views s as a byte slice without copying; the result must not be
// modified.
func bytesOf(s string) []byte {
	return unsafe.Slice(unsafe.StringData(s), len(s))
}
