package client

import (
	"bytes"
	"encoding/json"
	"math"
	"strconv"
	"strings"
)

// Primus control messages travel as JSON strings starting with "primus::"
// (spec §1.3). The client handles three of them:
//
//	"primus::ping::<x>"      heartbeat; answered with "primus::pong::<x>"
//	"primus::id::<id>"       reply to our "primus::id::" request
//	"primus::server::close"  the next close is final: do not reconnect
//
// Every other string, including unknown "primus::" types, is application
// data, as in the original client.
const protocolPrefix = "primus::"

var (
	idRequest    = []byte(`"primus::id::"`)
	stringPrefix = []byte(`"` + protocolPrefix)
)

// packet is a parsed control message.
type packet struct {
	kind  string // "ping", "id", "server"
	value string
}

// parseProtocol returns the control message in the JSON text b, if it is one
// the client handles. It parses the way primus.js does: the type runs from
// index 8 to the next ':' and the value starts two characters after it.
func parseProtocol(b []byte) (packet, bool) {
	b = bytes.TrimSpace(b)
	// A cheap test first; control messages are never escaped on the wire,
	// but fall back to decoding for any string that could still be one.
	if len(b) < 2 || b[0] != '"' || (!bytes.HasPrefix(b, stringPrefix) && bytes.IndexByte(b, '\\') < 0) {
		return packet{}, false
	}
	var s string
	if json.Unmarshal(b, &s) != nil || !strings.HasPrefix(s, protocolPrefix) {
		return packet{}, false
	}
	rest := s[len(protocolPrefix):]
	i := strings.IndexByte(rest, ':')
	if i < 0 {
		return packet{}, false
	}
	p := packet{kind: rest[:i]}
	if i+2 <= len(rest) {
		p.value = rest[i+2:]
	}
	switch p.kind {
	case "ping", "id", "server":
		return p, true
	}
	return packet{}, false
}

// pongFor builds the answer to a ping. The original client sends
// 'primus::pong::' + Number(value); servers send their Date.now(), so this is
// normally an echo of the integer. Anything JavaScript would not read as a
// number becomes "NaN", as in the original (servers do not check the value).
func pongFor(value string) []byte {
	v := strings.TrimSpace(value)
	var num string
	if v == "" {
		num = "0"
	} else if i, err := strconv.ParseInt(v, 10, 64); err == nil {
		num = strconv.FormatInt(i, 10)
	} else if f, err := strconv.ParseFloat(v, 64); err == nil && !strings.ContainsAny(v, "xXpP_") && !math.IsInf(f, 0) {
		num = strconv.FormatFloat(f, 'f', -1, 64)
	} else {
		num = "NaN"
	}
	b, _ := json.Marshal(protocolPrefix + "pong::" + num)
	return b
}
