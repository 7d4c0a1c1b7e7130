package primus

import (
	"errors"
	"fmt"
	"slices"
	"unicode/utf8"

	"github.com/go-json-experiment/json"
)

// The node protocol: JSON objects that servers exchange through a
// ClusterBroker (docs/redis.md, "The cluster as one server"). Every field
// of a message another node sent is attacker-controlled (anyone who can
// publish on the broker can send one), so decodeNodeMessage bounds every
// string, list and number before the server looks at it.

const (
	wireVersion = 1

	msgHeartbeat = "hb"  // a node is alive (broadcast; "hello" asks for an answer)
	msgBye       = "bye" // a node leaves the cluster (broadcast, on Shutdown)
	msgRequest   = "req" // a cluster call (broadcast)
	msgResponse  = "res" // one page of a node's answer (sent to the caller)

	opClients    = "clients"    // members of rooms (or every spark): their ids
	opSizes      = "sizes"      // every room and its member count
	opCount      = "count"      // the member count of rooms (IsRoomEmpty)
	opJoin       = "join"       // selected sparks join target rooms
	opLeave      = "leave"      // selected sparks leave target rooms
	opDisconnect = "disconnect" // selected sparks are ended
)

// Bounds of what a node message may carry. A request names at most
// maxWireIDs spark ids (larger calls travel as several requests),
// maxWireRooms rooms in each list and maxWireExcept excepted ids; an answer
// page holds at most maxPageItems items (pages are cut at pageBytes).
const (
	// MaxNodeMessage is the largest node message a server sends; a
	// ClusterBroker must carry payloads up to this size.
	MaxNodeMessage = 1 << 20

	maxWireNodeID = 256
	maxWireReqID  = 64
	maxWireID     = 512 // a spark id
	maxWireRoom   = 64 << 10
	maxWireIDs    = 1000
	maxWireRooms  = 1000
	maxWireExcept = 10000
	maxPageItems  = 4096
	maxWireCount  = 1 << 40
	maxWireTTL    = 5 * 60 * 1000 // ms
	maxWireErr    = 1024
	maxWirePages  = 1 << 16 // pages of one node's answer
	pageBytes     = 32 << 10
)

// nodeMessage is every kind of node message; the kind says which fields count.
type nodeMessage struct {
	V    int    `json:"v"`
	T    string `json:"t"`
	From string `json:"from"`

	// heartbeat
	Hello   bool  `json:"hello,omitzero"`
	Started int64 `json:"started,omitzero"` // unix ms
	Sparks  int64 `json:"sparks,omitzero"`
	Rooms   int64 `json:"rooms,omitzero"`

	// request and response
	ID string `json:"id,omitzero"`

	// request
	Op        string   `json:"op,omitzero"`
	TTL       int64    `json:"ttl,omitzero"`    // ms the caller waits from now
	IDs       []string `json:"ids,omitzero"`    // selection by spark id (request), or the answer's ids (response)
	In        []string `json:"in,omitzero"`     // selection by room membership ([] with op clients: every spark)
	Except    []string `json:"except,omitzero"` // not selected
	Target    []string `json:"target,omitzero"` // rooms to join or leave
	Reconnect bool     `json:"reconnect,omitzero"`

	// response
	Seq   int64            `json:"seq,omitzero"`
	Last  bool             `json:"last,omitzero"`
	Err   string           `json:"err,omitzero"`
	Sizes map[string]int64 `json:"sizes,omitzero"`
	N     *wireCounts      `json:"n,omitzero"`
}

// wireCounts is a node's answer to a count or a remote operation.
type wireCounts struct {
	Sparks  int64 `json:"sparks"`
	Changed int64 `json:"changed"`
	Failed  int64 `json:"failed"`
}

var errMalformed = errors.New("primus: malformed node message")

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{errMalformed}, args...)...)
}

func encodeNodeMessage(m *nodeMessage) ([]byte, error) {
	m.V = wireVersion
	b, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	if len(b) > MaxNodeMessage {
		return nil, fmt.Errorf("primus: node message of %d bytes exceeds %d", len(b), MaxNodeMessage)
	}
	return b, nil
}

// decodeNodeMessage parses and validates a node message; whatever it
// returns without error is within the bounds above.
func decodeNodeMessage(b []byte) (*nodeMessage, error) {
	if len(b) > MaxNodeMessage {
		return nil, malformed("%d bytes", len(b))
	}
	if len(b) == 0 || b[0] != '{' {
		return nil, malformed("not a JSON object")
	}
	var m nodeMessage
	// json v2: exact field names, no duplicate names, valid UTF-8 only.
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, malformed("%v", err)
	}
	if m.V != wireVersion {
		return nil, malformed("version %d", m.V)
	}
	if err := checkString("from", m.From, 1, maxWireNodeID); err != nil {
		return nil, err
	}
	switch m.T {
	case msgHeartbeat:
		if m.Sparks < 0 || m.Sparks > maxWireCount || m.Rooms < 0 || m.Rooms > maxWireCount || m.Started < 0 || m.Started > 1<<50 {
			return nil, malformed("heartbeat numbers out of range")
		}
	case msgBye:
	case msgRequest:
		if err := checkString("id", m.ID, 1, maxWireReqID); err != nil {
			return nil, err
		}
		if m.TTL <= 0 || m.TTL > maxWireTTL {
			return nil, malformed("ttl %d", m.TTL)
		}
		if err := checkList("ids", m.IDs, maxWireIDs, maxWireID); err != nil {
			return nil, err
		}
		if err := checkList("in", m.In, maxWireRooms, maxWireRoom); err != nil {
			return nil, err
		}
		if err := checkList("except", m.Except, maxWireExcept, maxWireID); err != nil {
			return nil, err
		}
		if err := checkList("target", m.Target, maxWireRooms, maxWireRoom); err != nil {
			return nil, err
		}
		switch m.Op {
		case opClients, opSizes:
		case opCount:
			if len(m.In) == 0 {
				return nil, malformed("count without rooms")
			}
		case opJoin, opLeave:
			if len(m.Target) == 0 {
				return nil, malformed("%s without target rooms", m.Op)
			}
			fallthrough
		case opDisconnect:
			// A remote operation selects by ids or by rooms, never
			// everything by accident.
			if (len(m.IDs) == 0) == (len(m.In) == 0) {
				return nil, malformed("%s needs ids or rooms (one of them)", m.Op)
			}
		default:
			return nil, malformed("unknown op %.32q", m.Op)
		}
	case msgResponse:
		if err := checkString("id", m.ID, 1, maxWireReqID); err != nil {
			return nil, err
		}
		if m.Seq < 0 || m.Seq >= maxWirePages {
			return nil, malformed("seq %d", m.Seq)
		}
		if len(m.Err) > maxWireErr || !utf8.ValidString(m.Err) {
			return nil, malformed("err too long")
		}
		if err := checkList("ids", m.IDs, maxPageItems, maxWireID); err != nil {
			return nil, err
		}
		if len(m.Sizes) > maxPageItems {
			return nil, malformed("%d sizes in a page", len(m.Sizes))
		}
		for room, n := range m.Sizes {
			if len(room) == 0 || len(room) > maxWireRoom || n < 0 || n > maxWireCount {
				return nil, malformed("size entry out of range")
			}
		}
		if c := m.N; c != nil && (c.Sparks < 0 || c.Changed < 0 || c.Failed < 0 || c.Sparks > maxWireCount || c.Changed > maxWireCount || c.Failed > maxWireCount) {
			return nil, malformed("counts out of range")
		}
	default:
		return nil, malformed("unknown type %.32q", m.T)
	}
	return &m, nil
}

func checkString(field, s string, minLen, maxLen int) error {
	if len(s) < minLen || len(s) > maxLen {
		return malformed("%s of %d bytes", field, len(s))
	}
	return nil
}

func checkList(field string, list []string, maxItems, maxLen int) error {
	if len(list) > maxItems {
		return malformed("%d %s (at most %d)", len(list), field, maxItems)
	}
	if slices.ContainsFunc(list, func(s string) bool { return len(s) == 0 || len(s) > maxLen }) {
		return malformed("an entry of %s is empty or longer than %d bytes", field, maxLen)
	}
	return nil
}
