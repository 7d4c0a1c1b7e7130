// Package primus is a real-time WebSocket server that speaks the Primus 8
// wire protocol, so existing Primus front ends (and the browser client it
// serves at <pathname>/primus.js) work unchanged, with primus-rooms'
// rooms, scaled out over many nodes through a Broker.
//
// A Server is an http.Handler for the Primus endpoint (default "/primus").
// Every connection is a Spark: it reads messages (OnData), writes values
// (Write), joins and leaves rooms, and ends with a CloseReason. A room write
//
//	srv.Room("a", "b").Except(id).Write(v)
//
// encodes v once and delivers it to every member of any of the rooms
// exactly once, on every node: local members at once, the other nodes
// through the Broker (in memory by default; package redisbroker for Redis).
//
// The zero Config works. What a hostile client can do is bounded by
// default (message size, each spark's backlog, rooms per spark, room name
// length); the rest is one field away: who may connect (Authenticate, with
// package auth for JWTs; CheckOrigin with AllowOrigins), how many and how
// fast (MaxConnections, MaxConnectionsPerIP, MessageRate). Shutdown and
// Drain end a node gracefully, the latter spread over time for rolling
// restarts behind a load balancer.
//
// Handlers registered on a Spark run on its reader goroutine, in order;
// room writes never wait for a slow client (each spark has a bounded queue
// written by a small pool of flushers) and never wait for the Broker for
// local members.
package primus
