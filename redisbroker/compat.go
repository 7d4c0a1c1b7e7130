package redisbroker

import (
	"encoding/json"
	"strings"
	"unicode/utf8"
)

// appendCompat appends the primus-redis-rooms 0.3 payload for one room:
// exactly what JavaScript's JSON.stringify({room, data}) produces for a
// string room and a JSON data value.
func appendCompat(dst []byte, room string, data []byte) []byte {
	dst = append(dst, `{"room":`...)
	dst = appendJSString(dst, room)
	dst = append(dst, `,"data":`...)
	dst = append(dst, data...)
	return append(dst, '}')
}

// compatPayloads returns the payload of each room. The format repeats the
// data per room, so the payloads must add up to at most limit (ErrTooLarge
// otherwise): one write can then never push a subscriber past Redis's
// Pub/Sub output buffer limit. Nothing much larger than limit is allocated.
func compatPayloads(rooms []string, data []byte, limit int) ([][]byte, error) {
	if len(data) > limit/len(rooms) {
		return nil, ErrTooLarge
	}
	payloads := make([][]byte, len(rooms))
	total := 0
	for i, r := range rooms {
		p := appendCompat(make([]byte, 0, len(r)+len(data)+20), r, data)
		if total += len(p); total > limit {
			return nil, ErrTooLarge
		}
		payloads[i] = p
	}
	return payloads, nil
}

// appendJSString quotes s the way JSON.stringify does: only '"', '\\' and
// control characters are escaped (short forms \b \f \n \r \t, otherwise
// \u00xx with lowercase hex); everything else, including U+2028/U+2029 and
// '<' '>' '&', is written raw (Go's encoding/json would escape those).
// Invalid UTF-8, which a JavaScript string cannot hold, becomes \ufffd.
func appendJSString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			i++
			continue
		}
		if c >= utf8.RuneSelf {
			r, size := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && size == 1 {
				dst = append(dst, s[start:i]...)
				dst = append(dst, `\ufffd`...)
				i++
				start = i
				continue
			}
			i += size
			continue
		}
		dst = append(dst, s[start:i]...)
		switch c {
		case '"':
			dst = append(dst, '\\', '"')
		case '\\':
			dst = append(dst, '\\', '\\')
		case '\b':
			dst = append(dst, '\\', 'b')
		case '\f':
			dst = append(dst, '\\', 'f')
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\r':
			dst = append(dst, '\\', 'r')
		case '\t':
			dst = append(dst, '\\', 't')
		default:
			dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		}
		i++
		start = i
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// compatMessage is a decoded primus-redis-rooms payload.
type compatMessage struct {
	room    string
	data    string // raw JSON text; valid only if hasData
	hasData bool
}

const (
	compatRoomPrefix = `{"room":"`
	compatDataSep    = `","data":`
)

// decodeCompat parses a primus-redis-rooms payload {"room":..,"data":..}.
// It accepts what JSON.parse accepts and primus-redis-rooms would deliver:
// an object whose "room" is a string; other keys are ignored, the last of
// duplicate keys wins (as in JavaScript), key names are case-sensitive. A
// missing "data" is not an error (primus-redis-rooms then writes nothing).
// Anything else (null, arrays, numbers, a missing or non-string room,
// invalid JSON) is ErrMalformed, where the Node original either drops the
// message or, for null, crashes.
func decodeCompat(p string) (compatMessage, error) {
	// Fast path: the exact shape JSON.stringify produces, with a room name
	// needing no unescaping. The data part must be exactly one JSON value,
	// which also rules out further keys after it.
	if rest, ok := strings.CutPrefix(p, compatRoomPrefix); ok {
		if end := strings.IndexByte(rest, '"'); end >= 0 {
			room := rest[:end]
			if data, ok := strings.CutPrefix(rest[end:], compatDataSep); ok && plainString(room) &&
				len(data) > 1 && data[len(data)-1] == '}' {
				data = data[:len(data)-1]
				if validJSON(data) {
					return compatMessage{room: room, data: data, hasData: true}, nil
				}
			}
		}
	}
	return decodeCompatSlow(p)
}

// plainString reports whether s can stand for itself inside JSON quotes:
// valid UTF-8 without control characters or backslashes.
func plainString(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '\\' {
			return false
		}
	}
	return utf8.ValidString(s)
}

func decodeCompatSlow(p string) (compatMessage, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(bytesOf(p), &obj); err != nil || obj == nil {
		// Not JSON, or not an object (null decodes to a nil map).
		return compatMessage{}, ErrMalformed
	}
	rawRoom, ok := obj["room"]
	if !ok || len(rawRoom) == 0 || rawRoom[0] != '"' {
		return compatMessage{}, ErrMalformed
	}
	var m compatMessage
	if err := json.Unmarshal(rawRoom, &m.room); err != nil {
		return compatMessage{}, ErrMalformed
	}
	if data, ok := obj["data"]; ok {
		m.data, m.hasData = string(data), true
	}
	return m, nil
}
