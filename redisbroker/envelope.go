package redisbroker

import (
	"encoding/binary"
	"errors"
	"unsafe"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/primusgo/primus"
)

// EnvelopeVersion is the version byte of the native envelope this package
// writes for plain room writes. Version 2 (EnvelopeVersion2) adds a history
// write's offset and epoch and the rooms to skip; decoders accept both.
const EnvelopeVersion = 1

// EnvelopeVersion2 is the version byte of envelopes that carry an offset
// and epoch (history writes) or rooms to skip (primus.Message.Skip).
const EnvelopeVersion2 = 2

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
	// Version 2: rooms[:lead] are rooms to skip, rooms[lead:] the targets.
	offset uint64
	epoch  string
	lead   int
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
//
// A message with an Offset or rooms to Skip is encoded as version 2:
//
//	version  1 byte, = 2
//	offset   uvarint: the write's offset in its room's history (0: none)
//	epoch    uvarint length, bytes (at most primus.MaxEpochLength)
//	lead     uvarint: how many of the rooms below are rooms to skip
//	id, origin, rooms, except, data as in version 1, where rooms lists
//	         m.Skip and then m.Rooms
func AppendEnvelope(dst []byte, m *primus.Message) []byte {
	if m.Offset != 0 || len(m.Skip) > 0 {
		dst = append(dst, EnvelopeVersion2)
		dst = binary.AppendUvarint(dst, m.Offset)
		dst = appendString(dst, m.Epoch)
		return appendEnvelopeTail(dst, m)
	}
	dst = append(dst, EnvelopeVersion)
	return appendEnvelopeBody(dst, m, nil)
}

// appendEnvelopeTail appends what follows a version 2 envelope's epoch:
// lead, then the version 1 fields with m.Skip before m.Rooms (the script
// that stores history writes puts the version, offset and epoch before it).
func appendEnvelopeTail(dst []byte, m *primus.Message) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(m.Skip)))
	return appendEnvelopeBody(dst, m, m.Skip)
}

// appendEnvelopeBody appends the version 1 fields, skip rooms first.
func appendEnvelopeBody(dst []byte, m *primus.Message, skip []string) []byte {
	dst = appendString(dst, m.ID)
	dst = appendString(dst, m.Origin)
	dst = binary.AppendUvarint(dst, uint64(len(skip)+len(m.Rooms)))
	for _, r := range skip {
		dst = appendString(dst, r)
	}
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
	if m.Offset != 0 || len(m.Skip) > 0 {
		n += len(binary.AppendUvarint(nil, m.Offset)) + uvarintLen(len(m.Epoch)) + len(m.Epoch) + uvarintLen(len(m.Skip))
		for _, r := range m.Skip {
			n += uvarintLen(len(r)) + len(r)
		}
	}
	n += uvarintLen(len(m.Skip) + len(m.Rooms))
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

// DecodeEnvelope decodes a native envelope (version 1 or 2). The returned
// message has the envelope's target rooms in Rooms (version 2: its rooms to
// skip in Skip, its offset and epoch) and copies nothing: its strings and
// Data alias payload, which must not be modified while it is in use.
func DecodeEnvelope(payload []byte) (*primus.Message, error) {
	env, err := decodeEnvelope(unsafe.String(unsafe.SliceData(payload), len(payload)))
	if err != nil {
		return nil, err
	}
	m := env.message()
	if len(m.Rooms) == 0 {
		m.Rooms = nil
	}
	return m, nil
}

// decodeEnvelope parses p, which it aliases. It checks the structure, that
// the data is non-empty valid JSON, and that no length or count points past
// the end (so a hostile count cannot make it allocate much).
func decodeEnvelope(p string) (env envelope, err error) {
	if len(p) == 0 {
		return env, ErrMalformed
	}
	if p[0] != EnvelopeVersion && p[0] != EnvelopeVersion2 {
		return env, ErrUnknownVersion
	}
	d := decoder{p: p, i: 1}
	if p[0] == EnvelopeVersion2 {
		env.offset = d.uvarint64()
		env.epoch = d.str()
		env.lead = d.uvarint()
		if len(env.epoch) > primus.MaxEpochLength || (env.offset > 0) != (env.epoch != "") ||
			(env.offset == 0 && env.lead == 0) { // version 1 carries that: one encoding per message
			return envelope{}, ErrMalformed
		}
	}
	env.id = d.str()
	env.origin = d.str()
	env.rooms = d.list()
	env.except = d.list()
	if d.bad || env.lead > len(env.rooms) {
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
	if len(p) == 0 || (p[0] != EnvelopeVersion && p[0] != EnvelopeVersion2) {
		return "", false
	}
	d := decoder{p: p, i: 1}
	if p[0] == EnvelopeVersion2 {
		d.uvarint64() // offset
		d.str()       // epoch
		d.uvarint()   // lead
	}
	d.str() // id
	origin = d.str()
	return origin, !d.bad
}

// message is env as a primus.Message: its target rooms in Rooms, the
// rooms to skip (version 2) in Skip, its offset and epoch. It copies
// nothing: strings and Data alias the payload env was decoded from.
func (env *envelope) message() *primus.Message {
	m := &primus.Message{
		ID:     env.id,
		Origin: env.origin,
		Rooms:  env.rooms[env.lead:],
		Except: env.except,
		Data:   bytesOf(env.data),
		Offset: env.offset,
		Epoch:  env.epoch,
	}
	if env.lead > 0 {
		m.Skip = env.rooms[:env.lead]
	}
	return m
}

type decoder struct {
	p   string
	i   int
	bad bool
}

func (d *decoder) uvarint() int {
	x := d.uvarint64()
	if x > uint64(len(d.p)-d.i) {
		// No length or count can exceed what is left.
		d.bad = true
		return 0
	}
	return int(x)
}

// uvarint64 reads a number that is not a length (an offset).
func (d *decoder) uvarint64() uint64 {
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
			return x
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
