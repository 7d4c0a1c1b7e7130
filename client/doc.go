// Package client is a Go client for Primus 8 servers (the original Node.js
// Primus with the websockets transformer and JSON parser, and this module's
// Go server): for services, bots, workers and load tests that take part in
// a Primus application like a browser would.
//
// # Usage
//
//	c, err := client.Dial(ctx, "https://chat.example.com", client.Options{})
//	if err != nil {
//		return err
//	}
//	defer c.Close()
//	if err := c.Join(ctx, "news"); err != nil { // joined again after every reconnect
//		return err
//	}
//	for m := range c.Messages() {
//		var v Event
//		if err := m.Decode(&v); err != nil { ... }
//	}
//	// Messages is closed when the client ended; c.Err() says why.
//
// Options configure the client like the server's Config: a struct whose
// zero value gives the defaults, each documented on its field
// (client.Dial(ctx, url, client.Options{}) uses them all).
//
// # Sessions and reconnects
//
// A Client is a logical session over a sequence of connections. When a
// connection is lost (network error, server restart, no heartbeat) the client
// reconnects with the original client's backoff (ReconnectPolicy: 500 ms,
// then exponential with jitter, 10 attempts by default). Every reconnect is
// a new Primus session: the server sees a new spark with a new id and no room
// membership: the client joins the rooms of Join again by itself (see
// Rooms and recovery), and Options.OnOpen runs on every connection for
// anything else. Messages written while disconnected wait in a bounded
// queue and are sent after OnOpen has run.
//
// The client does not reconnect when the server ended the session on purpose
// ("primus::server::close", spark.end() on the server): it ends with
// ErrServerEnded. It also ends when Retries attempts in a row failed
// (ErrReconnectFailed) or Close was called (ErrClosed). Done, Wait and Err
// report the end.
//
// # Rooms and recovery
//
// With the standalone server (cmd/primus-server, internal/serverapp) and
// its command protocol, Join and Leave manage rooms for the application:
//
//	err := c.Join(ctx, "chat")                    // {"join":"chat","ack":...}, waits for the ack
//	err = c.Join(ctx, "prices", client.Recover()) // positioned delivery from the room's history
//	err = c.Leave(ctx, "chat")
//
// The client keeps the rooms joined: after every reconnect (a new session,
// without rooms) it joins them again by itself, before the messages queued
// while disconnected and before Options.OnOpen's. Join returns once the
// server acknowledged the join, or fails with its error (ErrRefused); at
// most Options.MaxRooms rooms are kept. The client's commands carry ack
// values starting with "primus-go:"; their replies are consumed, other
// acknowledgements reach the application as before.
//
// A room joined with Recover must keep history on the server
// (-history-size N, -history-ttl D). Its messages carry their position:
// Message.Room, Message.Offset and Message.Epoch are set and Data is the
// data written to the room. After a reconnect the client rejoins with the
// position of the last message it delivered (since), the server replays
// what the client missed before acknowledging, and the client drops
// anything at or before that position: across reconnects the application
// receives every message once, in order. Options.OnRecover(room,
// recovered) then reports the outcome of each such rejoin: false when the
// server could not replay everything (its history was lost: a new epoch;
// or no longer reaches back that far). The application must then reload
// the room's state from its source of truth; the messages that follow are
// the writes after the new position. Position returns the position the
// client tracks. Messages that waited in the Messages channel when the
// client ended, or that the application had not handled when it crashed,
// are the application's business: persist Position with the state derived
// from the messages if it must survive a restart of the process.
//
// # Heartbeat
//
// Primus servers ping every pingInterval (30 s by default) and close clients
// that do not answer; the client answers every "primus::ping::<t>" with
// "primus::pong::<t>". Conversely, when no ping arrived within the ping
// timeout (Options.PingTimeout, 45 s = 1.5 x the default interval) the
// connection is presumed dead and replaced. Set the timeout to 1.5 x the
// server's interval when it is not the default.
//
// # Wire format
//
// The client recognises control messages exactly as the original client's
// protocol() does, with the parser this module's server uses too
// (internal/protocol): strings whose type (after "primus::", up to the next
// ':') is ping, id or server. That includes Primus's quirks: without a
// further ':' the type is all but the last character, so "primus::pingX"
// is a ping with the value "rimus::pingX" (answered "primus::pong::NaN").
// Every other message is data, "primus::" strings of other types included.
// Like the original, Write escapes U+2028 and U+2029.
//
// # Flow control
//
// Write never blocks on the network: it encodes the message and appends it
// to the outgoing queue (Options.QueueSize), or fails with ErrQueueFull.
// Flush waits until the queue has been written. On the receiving side, the
// Messages channel (Options.MessageBuffer) applies backpressure to the
// connection: see Messages. Options.Handler is the callback alternative.
//
// # Named events
//
// Servers with primus-emitter (Node) or this module's Spark.Send and
// Room.Send send named events; the browser's primus.send sends them to
// the server. Send and On speak that format (see emitter.go):
//
//	c.On("news", func(args []json.RawMessage, ack func(v ...any) error) {
//		// args are the event's arguments; ack is nil unless the server asked for one
//	})
//	c.Send("join", "lobby", client.AckFunc(func(reply []json.RawMessage) { ... }))
//
// An event that has a handler is consumed (it does not also arrive in
// Messages); handlers run on the reader goroutine like Options.Handler.
//
// # Differences from the JavaScript client
//
//   - Dial makes one attempt and reports its error; reconnecting starts only
//     after a first successful connection.
//   - The outgoing queue is bounded (the original's is unbounded) and
//     rejects new messages when full instead of dropping the oldest.
//   - A URL path outside the pathname is an error instead of being silently
//     replaced; no "_primuscb" cache-busting parameter is added (servers
//     ignore it).
//   - Frames that are not valid JSON are reported through Options.OnError and
//     counted in Stats, like the original's "error" event.
//   - ID asks the server once per connection and keeps the answer; the
//     original asks on every call.
//
// Every error is one of the package's sentinel errors or wraps its cause
// with a "primus client: <operation>:" prefix; use errors.Is and errors.As.
package client
