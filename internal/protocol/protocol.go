// Package protocol is the Primus 8 wire format with the JSON parser: values
// are JSON text, and control messages are JSON strings that start with
// "primus::" (see the spec, §1.2-1.3).
package protocol

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Prefix starts every protocol message.
const Prefix = "primus::"

// Kind is what a Primus peer makes of a message: a server of a client's
// (Classify) or a client of a server's (ClassifyFromServer). Each side knows
// only its own control messages and takes every other message as data.
type Kind int

const (
	// KindData is application data, including "primus::" strings of a type
	// the receiving side does not know.
	KindData Kind = iota
	// KindPong is, to a server, a heartbeat answer "primus::pong::<x>".
	KindPong
	// KindID is, to a server, an id request "primus::id::" (any value is
	// ignored); to a client, the reply "primus::id::<id>".
	KindID
	// KindPing is, to a client, a heartbeat "primus::ping::<x>", answered
	// with Pong(value).
	KindPing
	// KindServerClose is, to a client, "primus::server::close": the server
	// is ending the session, so the next close is final (no reconnect).
	KindServerClose
	// KindIgnored is, to a client, any other "primus::server::<x>": a
	// control message swallowed without effect.
	KindIgnored
)

func (k Kind) String() string {
	switch k {
	case KindData:
		return "data"
	case KindPong:
		return "pong"
	case KindID:
		return "id"
	case KindPing:
		return "ping"
	case KindServerClose:
		return "server close"
	case KindIgnored:
		return "ignored"
	}
	return "Kind(" + strconv.Itoa(int(k)) + ")"
}

// ErrInvalidJSON wraps decode failures of incoming text.
var ErrInvalidJSON = errors.New("invalid JSON")

var errDecode = fmt.Errorf("failed to decode incoming data: %w", ErrInvalidJSON)

// Classify decides what a frame from a client is to a Primus server
// (spark.js protocol()): KindPong, KindID or KindData. It returns an error
// wrapping ErrInvalidJSON when text is not one JSON value.
func Classify(text []byte) (Kind, error) {
	if !json.Valid(text) {
		return KindData, errDecode
	}
	s, ok := controlString(text)
	if !ok {
		return KindData, nil
	}
	switch typ, _, _ := Parse(s); typ {
	case "pong":
		return KindPong, nil
	case "id":
		return KindID, nil
	}
	return KindData, nil
}

// ClassifyFromServer decides what a frame from the server is to a Primus
// client (primus.js protocol()): KindPing with the ping's value, KindID with
// the id, KindServerClose, KindIgnored, or KindData. It returns an error
// wrapping ErrInvalidJSON when text is not one JSON value.
func ClassifyFromServer(text []byte) (kind Kind, value string, err error) {
	if !json.Valid(text) {
		return KindData, "", errDecode
	}
	s, ok := controlString(text)
	if !ok {
		return KindData, "", nil
	}
	typ, value, _ := Parse(s)
	switch typ {
	case "ping":
		return KindPing, value, nil
	case "id":
		return KindID, value, nil
	case "server":
		// Every server:: message is swallowed; only "close" ends the session.
		if value == "close" {
			return KindServerClose, value, nil
		}
		return KindIgnored, value, nil
	}
	return KindData, "", nil
}

// controlString returns the string held by text, which must be valid JSON,
// when it is a JSON string that starts with Prefix.
func controlString(text []byte) (string, bool) {
	t := bytes.Trim(text, " \t\r\n")
	if !IsControl(t) {
		return "", false
	}
	if inner := t[1 : len(t)-1]; bytes.IndexByte(inner, '\\') < 0 && utf8.Valid(inner) {
		// The common case: the string is the bytes between the quotes.
		return string(inner), true
	}
	var s string
	if json.Unmarshal(t, &s) != nil {
		return "", false
	}
	return s, true
}

// Parse splits a protocol string the way Primus does (both sides): type =
// characters after "primus::" up to the next ':', value = everything after
// that ':' and one more character (normally the second ':').
//
// Without a ':' after the prefix Primus's indexOf returns -1, so its type is
// msg.slice(8, -1) (all but the last UTF-16 code unit) and its value
// msg.slice(1): "primus::pong" is type "pon" (data, not a pong) while
// "primus::pongX" is type "pong" with value "rimus::pongX". Parse reproduces
// that. Where JavaScript would split a surrogate pair, the half it keeps
// becomes U+FFFD, which is what that half turns into in JSON and UTF-8, and
// which matches no known type, as in Primus.
func Parse(s string) (typ, value string, ok bool) {
	if len(s) < len(Prefix) || s[:len(Prefix)] != Prefix {
		return "", "", false
	}
	rest := s[len(Prefix):]
	i := strings.IndexByte(rest, ':')
	if i < 0 {
		if rest == "" {
			return "", s[1:], true
		}
		r, size := utf8.DecodeLastRuneInString(rest)
		typ = rest[:len(rest)-size]
		if r > 0xFFFF {
			typ += string(utf8.RuneError) // the high surrogate JavaScript keeps
		}
		return typ, s[1:], true
	}
	typ = rest[:i]
	// Skip one character (one UTF-16 code unit) after the ':'.
	after := rest[i+1:]
	if after == "" {
		return typ, "", true
	}
	r, size := utf8.DecodeRuneInString(after)
	value = after[size:]
	if r > 0xFFFF {
		value = string(utf8.RuneError) + value // the low surrogate JavaScript keeps
	}
	return typ, value, true
}

// Ping is the text of a heartbeat for the given Unix time in milliseconds.
func Ping(unixMilli int64) []byte {
	b := append([]byte(`"`+Prefix+"ping::"), strconv.FormatInt(unixMilli, 10)...)
	return append(b, '"')
}

// IDReply is the answer to an id request.
func IDReply(id string) []byte {
	b, _ := json.Marshal(Prefix + "id::" + id)
	return b
}

// Pong is a client's answer to a ping with the given value. Like the
// original client it sends 'primus::pong::' + Number(value): servers send
// their Date.now(), so this is normally an echo; anything JavaScript does
// not read as a number becomes "NaN" (servers do not check the value).
func Pong(pingValue string) []byte {
	return []byte(`"` + Prefix + "pong::" + numberString(pingValue) + `"`)
}

// IDRequest asks the server for the spark id; it answers with IDReply.
var IDRequest = []byte(`"` + Prefix + `id::"`)

// ServerClose is sent before an intentional close: the client must not reconnect.
var ServerClose = []byte(`"` + Prefix + `server::close"`)

// Encode returns the JSON text of v as Primus writes it: no HTML escaping,
// U+2028/U+2029 escaped. json.RawMessage values are validated and kept as they are.
func Encode(v any) ([]byte, error) {
	if raw, ok := v.(json.RawMessage); ok {
		if !json.Valid(raw) {
			return nil, fmt.Errorf("primus: encoding data: %w", ErrInvalidJSON)
		}
		return EscapeLineTerminators(raw), nil
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("primus: encoding data: %w", err)
	}
	return EscapeLineTerminators(bytes.TrimSuffix(buf.Bytes(), []byte("\n"))), nil
}

// EscapeLineTerminators replaces raw U+2028 and U+2029 with their JSON
// escapes, as Primus does on every outgoing frame (they break JavaScript
// parsers that are not JSON.parse). It returns b itself when there is none.
func EscapeLineTerminators(b []byte) []byte {
	i := indexLineTerminator(b)
	if i < 0 {
		return b
	}
	out := make([]byte, 0, len(b)+8)
	for i >= 0 {
		out = append(out, b[:i]...)
		if b[i+2] == 0xA8 {
			out = append(out, `\u2028`...)
		} else {
			out = append(out, `\u2029`...)
		}
		b = b[i+3:]
		i = indexLineTerminator(b)
	}
	return append(out, b...)
}

func indexLineTerminator(b []byte) int {
	off := 0
	for {
		i := bytes.IndexByte(b[off:], 0xE2)
		if i < 0 {
			return -1
		}
		i += off
		if i+2 < len(b) && b[i+1] == 0x80 && (b[i+2] == 0xA8 || b[i+2] == 0xA9) {
			return i
		}
		off = i + 1
	}
}

// IsControl reports whether the JSON text is a string that starts with
// "primus::", which a Primus client takes as a protocol message however it
// continues ("primus::server::close" stops its reconnecting). Escapes
// count as the characters they stand for. Only the first characters of the
// string are looked at.
func IsControl(text []byte) bool {
	t := bytes.TrimLeft(text, " \t\r\n")
	if len(t) == 0 || t[0] != '"' {
		return false
	}
	t = t[1:]
	for i := range len(Prefix) {
		if len(t) == 0 {
			return false
		}
		c := t[0]
		t = t[1:]
		if c == '\\' {
			if len(t) == 0 {
				return false
			}
			c, t = t[0], t[1:]
			switch c {
			case 'u':
				if len(t) < 4 {
					return false
				}
				r, err := strconv.ParseUint(string(t[:4]), 16, 16)
				if err != nil || r >= utf8.RuneSelf {
					return false // the prefix is ASCII
				}
				c, t = byte(r), t[4:]
			case '"', '\\', '/':
			default:
				return false // \b \f \n \r \t: not in the prefix
			}
		} else if c == '"' {
			return false
		}
		if c != Prefix[i] {
			return false
		}
	}
	return true
}
