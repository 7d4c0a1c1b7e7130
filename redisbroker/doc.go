// Package redisbroker is a primus.Broker on Redis Pub/Sub: room writes made
// on any node reach the members of that room on every node. It talks to a
// single Redis or to a master found through Redis Sentinel, reconnects and
// resubscribes by itself, and is the only package of the module that
// imports a Redis client (github.com/redis/rueidis).
//
//	b, err := redisbroker.New(redisbroker.Config{URL: "redis://127.0.0.1:6380/0"})
//	srv, err := primus.New(primus.Config{Broker: b})
//
// # Modes
//
// Native (the default) publishes a room write on one channel per room,
//
//	<Channel>:room:<room>
//
// and a node subscribes to the channel of each room it hosts, so a node
// only receives the rooms it has members of. The payload is a versioned
// binary envelope (see AppendEnvelope for the exact layout) carrying the
// message id, the origin node id, the target rooms, the except list and the
// JSON data. A write to several rooms whose fan-out, rooms x envelope
// size, is at most 64 KiB is published on the channel of every target
// room; a node receiving it on the channel of room r_i hands the server a
// message for r_i with the rooms to skip r_1..r_(i-1), so a spark that is a member of
// several target rooms receives the write exactly once, from its first
// room, without any shared state. The race this tolerates: if a spark joins
// or leaves one of the target rooms on a receiving node between the
// processing of two copies of one write (microseconds), it may get that
// write twice or not at all. A larger multi-room write is published once on
//
//	<Channel>:rooms
//
// which every node subscribes to; a node hands the server one message with
// the listed rooms it hosts (exact, one copy), or ignores it if it hosts
// none. Either way one write costs Redis its data plus its room names,
// never their product. Copies published by this node itself are dropped
// (its members were served before Publish). The separator is a colon on
// purpose: primus-redis-rooms nodes subscribe to the pattern "<channel>.*",
// so native channels never reach them. Each node also listens on
//
//	<Channel>:node:<NodeID>
//
// for its idle delivery probe. With a server's cluster calls enabled
// (primus.ClusterBroker), node messages go on that channel and on
// "<Channel>:nodes", which every node hears: classic Pub/Sub also on a
// Redis Cluster (see nodes.go and docs/redis.md). Compat mode cannot
// carry them.
//
// Compat speaks primus-redis-rooms 0.3 byte for byte, so Node.js nodes
// (primus 8 + primus-redis-rooms 0.3.2) and Go nodes can share a Redis
// during a migration: every node PSUBSCRIBEs "<Channel>.*" and publishes
// each room write, one PUBLISH per room, on "<Channel>.<NodeID>" (NodeID
// defaults to a random UUID v4, like the original) with the payload
// {"room":"<room>","data":<json>} exactly as JSON.stringify writes it. A
// node ignores its own channel. Any Redis client can inject a message:
// PUBLISH primus.x '{"room":"foo","data":1}' reaches room foo.
//
// What compat mode cannot carry, because the format has no field for it:
//
//   - Except lists. A write with Except ids is delivered without them on
//     the other nodes (the origin node honours them, and since a spark lives
//     on one node, excepting the sender, the usual case, works); this is
//     counted in Stats.ExceptNotCarried. Config.CompatRejectExcept makes
//     Publish fail with ErrExceptUnsupported instead.
//   - Multi-room de-duplication across nodes. A write to k rooms is k
//     independent messages, so a remote spark in several of them receives
//     one copy per room, exactly as with primus-redis-rooms. On the origin
//     node it still receives one.
//   - Message ids and origin node ids (the origin reported to the server is
//     the publishing channel's suffix).
//
// Because the data is repeated per room and every node receives every
// payload, a compat write whose per-room payloads add up to more than
// MaxPayload fails with ErrTooLarge before anything is published.
//
// Compat nodes also receive every room write of the cluster, whichever
// rooms they host (the pattern subscription); the broker drops writes for
// rooms without local members. The pattern is built as the original builds
// it, so its glob characters and its cross-talk are the original's: nodes
// on channel "primus" also hear nodes on channel "primus.foo".
//
// Where compat mode deliberately differs from the original: a payload that
// is JSON null, not an object, has no string "room" (the original coerces a
// number), is not JSON, or exceeds MaxPayload is counted and ignored (the
// original crashes on null); a payload without "data" delivers nothing, as
// in the original; "data":null delivers null.
//
// # Failures
//
// Start never waits for Redis: while Redis is unreachable the node serves
// its local sparks, Publish fails at once with an error (counted in
// Stats.PublishErrors; there is no offline queue that would deliver stale
// writes later) and the broker keeps trying with jittered exponential
// backoff (50 ms doubling up to MaxBackoff, 1 s by default). Every new
// Pub/Sub connection, after a restart, a crash, a failover or a failed
// probe, is resubscribed from the broker's own room index, 512 channels per
// SUBSCRIBE, all in one round trip; Stats.LastResubscribe measures it.
//
// With Sentinel, rueidis follows +switch-master events and re-asks the
// sentinels every SentinelRefresh; the broker moves its Pub/Sub connection
// as soon as the master address changes, even if the old master is still
// up (a manual SENTINEL FAILOVER demotes it without closing connections).
//
// A connection that is up but silent (a black-holed path, a middlebox) is
// caught by the idle probe: when nothing arrived for ProbeInterval the
// broker publishes a probe on its node channel, and if it is not back
// within ProbeTimeout the Pub/Sub connection is rebuilt.
//
// Delivery is at most once and not persistent, as with Redis Pub/Sub
// itself: writes published while a node's subscription is down are lost
// for that node.
//
// # Receive path
//
// The Redis connection's reader only hands each message to one of Workers
// bounded queues, chosen by channel, so messages of one room stay in
// order; a full queue drops the message and counts it (Stats.Dropped)
// rather than stall the connection. A message on <Channel>:rooms is queued
// to every worker, and the workers pause at it until it is delivered, so it
// keeps its place among the writes of each of its rooms. Workers decode, filter and call the
// server's handler. Subscribe and Unsubscribe only record intent; the
// connection loop applies it in batches, and a room is unsubscribed lazily,
// UnsubscribeDelay after its last member left, unless it was joined again.
//
// # Redis Cluster
//
// With Config.ClusterAddrs, native mode runs on a Redis Cluster (Redis >=
// 7.0) with sharded Pub/Sub: rooms are spread over ClusterPartitions
// partitions (default 32), each pinned to one hash slot by a hash tag,
//
//	<Channel>:{<tag>}:room:<room>
//	<Channel>:{<tag>}:svc
//
// (see ClusterRoomChannel). A node keeps one subscription connection per
// shard, shared by that shard's partitions, subscribes each partition's
// service channel and then its rooms in batches, and follows failovers
// (the connection breaks: retry with backoff, woken as soon as the slot
// map shows the promoted replica), slot migrations (Redis's unsolicited
// sunsubscribe of the service channel) and MOVED replies by itself. Each
// shard connection has its own idle probe, on a service channel that shard
// owns. Writes go out with SPUBLISH; a multi-room write over the fan-out
// budget goes once on a service channel, which every node subscribes to.
// Stats.Shards reports every shard. Compat mode cannot use a cluster.
//
// See docs/redis.md in the repository for the envelope by example,
// publishing from other languages, metrics and measured figures.
package redisbroker
