package primus

import "context"

// Message is a room write as it travels between nodes through a Broker.
//
// Data is the JSON text of the written value exactly as the application
// encoded it (not yet escaped for the wire); receivers escape U+2028/U+2029
// themselves. Brokers must treat a Message as read-only: the same value may
// be shared by many goroutines.
type Message struct {
	// ID identifies this write for de-duplication and tracing (optional for
	// external publishers).
	ID string
	// Origin is the node ID of the publishing server ("" for external publishers).
	Origin string
	// Rooms are the target rooms. A spark that is a member of several of them
	// receives the message once.
	Rooms []string
	// Except lists spark IDs that must not receive the message.
	Except []string
	// Data is the JSON-encoded value.
	Data []byte

	// Skip lists rooms whose members receive this write through another
	// message of the same write (the history rooms of a multi-room write,
	// see Config.History): receivers serve them nothing of this message.
	// Brokers carry it; most messages have none.
	Skip []string
	// Offset and Epoch place a write to a history room in the room's
	// history (HistoryBroker); Offset is 0 for other writes.
	Offset uint64
	Epoch  string
}

// BrokerHandler receives the messages a Broker brings in from other nodes.
//
// HandleMessage delivers m to the local members of m.Rooms, each once,
// except m.Except and the members of any room in skip. skip is for brokers
// that carry one copy of a multi-room write per room (as the Redis broker's
// room channels do): with the copy for one room they pass the rooms whose
// copies reach the same sparks, so that each spark gets the write once;
// other brokers pass nil.
//
// HandleMessage must not retain m.Data beyond the call unless it copies
// it; it may be called concurrently for different rooms, but calls for one
// room arrive in publication order.
type BrokerHandler interface {
	HandleMessage(m *Message, skip []string)
}

// BrokerHandlerFunc adapts a function to BrokerHandler.
type BrokerHandlerFunc func(m *Message, skip []string)

// HandleMessage calls f(m, skip).
func (f BrokerHandlerFunc) HandleMessage(m *Message, skip []string) { f(m, skip) }

// Broker carries room writes between the servers ("nodes") of a cluster.
//
// A Server calls Start once with its handler, Subscribe when a room gets its
// first local member, Unsubscribe after its last local member left, Publish
// for every room write made on this node (after delivering it locally
// itself), and Close on shutdown.
//
// Subscribe and Unsubscribe are called in membership order for a room (the
// server holds that room's index lock), so they must not block on the
// network: record the intent and apply it in the background. A broker may
// delay an unsubscription and may deliver messages for rooms the node no
// longer hosts; the server drops those.
//
// A broker never hands a node its own publications back: the originating
// node has already delivered them.
type Broker interface {
	// Start begins delivering incoming messages to h. It must not block
	// waiting for a remote system: a broker whose backend is unreachable
	// starts anyway and connects in the background (Close ends that).
	Start(h BrokerHandler) error
	// Publish sends m to the other nodes that host any of m.Rooms.
	Publish(ctx context.Context, m *Message) error
	// Subscribe declares that this node has local members of room.
	Subscribe(room string)
	// Unsubscribe declares that this node no longer has local members of room.
	Unsubscribe(room string)
	// Close releases the broker's resources; no handler call starts after it returns.
	Close() error
}
