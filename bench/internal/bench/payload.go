package bench

import "strconv"

// A benchmark message is a JSON object with a fixed key order, which both
// stacks deliver byte for byte (Go keeps the raw JSON, Node re-stringifies
// with the same order):
//
//	{"s":<seq>,"t":<send time>,"r":<room index>,"w":<writer>,"p":"xxx..."}
//
// s is the per-(room, writer) sequence number, from 1 (0 marks warm-up
// messages, which are not counted); t is the send time in nanoseconds on
// the generator's monotonic clock (small enough to survive JavaScript's
// doubles exactly); w is the writer's slot in the room (0 for an outside
// publisher). "p" pads the object to the requested size.

// minPayload is the size of the longest message without padding that the
// benchmark sends in practice; smaller sizes are not padded.
const minPayload = 48

// appendPayload appends the message to dst, padded to size bytes when size
// allows it.
func appendPayload(dst []byte, seq, t int64, room, writer, size int) []byte {
	start := len(dst)
	dst = append(dst, `{"s":`...)
	dst = strconv.AppendInt(dst, seq, 10)
	dst = append(dst, `,"t":`...)
	dst = strconv.AppendInt(dst, t, 10)
	dst = append(dst, `,"r":`...)
	dst = strconv.AppendInt(dst, int64(room), 10)
	dst = append(dst, `,"w":`...)
	dst = strconv.AppendInt(dst, int64(writer), 10)
	if pad := size - (len(dst) - start) - len(`,"p":""}`); pad > 0 {
		dst = append(dst, `,"p":"`...)
		for range pad {
			dst = append(dst, 'x')
		}
		dst = append(dst, '"')
	}
	return append(dst, '}')
}

// message is a parsed benchmark message.
type message struct {
	seq, t       int64
	room, writer int
}

// parsePayload parses a benchmark message; ok is false for anything else.
func parsePayload(p []byte) (m message, ok bool) {
	i := len(msgPrefix)
	if len(p) < i || string(p[:i]) != string(msgPrefix) {
		return m, false
	}
	var v int64
	if v, i, ok = parseField(p, i, ""); !ok {
		return m, false
	}
	m.seq = v
	if v, i, ok = parseField(p, i, `,"t":`); !ok {
		return m, false
	}
	m.t = v
	if v, i, ok = parseField(p, i, `,"r":`); !ok {
		return m, false
	}
	m.room = int(v)
	if v, _, ok = parseField(p, i, `,"w":`); !ok {
		return m, false
	}
	m.writer = int(v)
	return m, true
}

// parseField expects key at p[i:] followed by a non-negative integer.
func parseField(p []byte, i int, key string) (v int64, next int, ok bool) {
	if len(p) < i+len(key) || string(p[i:i+len(key)]) != key {
		return 0, i, false
	}
	i += len(key)
	start := i
	for i < len(p) && p[i] >= '0' && p[i] <= '9' && i-start < 19 {
		v = v*10 + int64(p[i]-'0')
		i++
	}
	return v, i, i > start
}
