'use strict';

//
// Reference server: the original Node stack (primus 8.0.9, websockets
// transformer, JSON parser, primus-redis-rooms 0.3.2) speaking the command
// protocol that the Go standalone server implements too.
//
// Environment:
//   PORT            required; listens on 127.0.0.1. 0 = pick a free port (the
//                   chosen port is printed).
//   PING_INTERVAL   server heartbeat in ms (default 30000, 0 = disabled).
//   REDIS_HOST      both or neither: register primus-redis-rooms against that
//   REDIS_PORT      Redis. Without them the rooms are the very same
//                   primus-redis-rooms code (lib/rooms.js, lib/spark.js) wired
//                   to an in-process no-op pub/sub: identical local semantics,
//                   no distribution.
//   REDIS_CHANNEL   primus-redis-rooms `redis.channel` (default "primus").
//   EXIT_ON_STDIN_CLOSE=1  shut down when stdin reaches EOF (used by the Go
//                   harness so no server outlives a crashed test binary).
//   EMITTER=1       register primus-emitter 3.1.1 as plugin "emitter" (its
//                   client code is then part of /primus/primus.js) and serve
//                   the emitter events and test commands below.
//
// stdout: exactly one line `listening <port>`, printed once the HTTP server
// listens and, with Redis, once the pattern subscription is confirmed (so a
// room write from another node cannot be missed after that line).
// stderr: diagnostics (connections, Redis errors, ...), one line each.
//
// Commands (client data messages, JSON objects; the first key found of
// join, leave, leaveAll, publish is executed, anything else is ignored):
//   {"join":"r"} | {"join":["a","b"]}             spark.join(r) per room
//   {"leave":"r"} | {"leave":["a","b"]}           spark.leave(r) per room
//   {"leaveAll":true}                             spark.leaveAll() (the
//       original, which skips every second room: spec §2.10 bug 1)
//   {"publish":{"room":"r","data":X}}             primus.room(r).write(X)
//   {"publish":{"rooms":["a","b"],"data":X}}      ... once per room
//       a non-empty "except" is refused: primus-redis-rooms has none.
//   With "ack":V the sender gets {"ack":V,"ok":true} or {"ack":V,"error":"..."}
//   after the operation (after the local writes for publish).
//
// With EMITTER=1, events (primus-emitter packets; `ack` is the client's
// callback, when it sent one):
//   echo(...args, ack)          ack(...args)
//   tell(event, ...args)        spark.send(event, ...args)
//   ask(event, ...args)         spark.send(event, ...args, function (...reply) {
//                                 spark.send('answered', ...reply) })
//   roomsend(room, event, ...args)  primus.room(room).send(event, ...args): a
//                               room write of the plugin's own packet (Room.send
//                               below), so it crosses nodes through Redis
//   join(room, ack)             spark.join(room); ack(room)
// and commands (data messages):
//   {"cmd":"echo","data":X}     spark.write(X)
//   {"cmd":"query"}             spark.write({"query": spark.query}), keys sorted
//   {"cmd":"end"}               spark.end(): primus::server::close, no reconnect
//   {"cmd":"reconnect"}         spark.end(undefined, {reconnect: true})
//
// HTTP (outside /primus):
//   POST /api/publish  {"rooms":["a"],"data":X} (or "room":"a") -> {"ok":true}
//   GET  /api/rooms    this node's room registry {"rooms":{"a":[sparkId,...]}}
//   GET  /healthz      200 ok
//
// SIGTERM/SIGINT: primus.destroy() (every client gets primus::server::close),
// the Redis connections are closed, exit code 0.
//

var http = require('http');
var EventEmitter = require('events');
var Primus = require('primus');
var PrimusRedisRooms = require('primus-redis-rooms');
var Rooms = require('primus-redis-rooms/lib/rooms');
var patchSpark = require('primus-redis-rooms/lib/spark');

function log(ev, fields) {
  var line = Object.assign({ ev: ev }, fields || {}, { t: Date.now() });
  process.stderr.write(JSON.stringify(line) + '\n');
}

function fatal(msg) {
  process.stderr.write('server.js: ' + msg + '\n');
  process.exit(2);
}

var env = process.env;
if (env.PORT === undefined || env.PORT === '' || !/^\d+$/.test(env.PORT)) {
  fatal('PORT is required (a number, 0 for any free port)');
}
var port = Number(env.PORT);
var pingInterval = env.PING_INTERVAL ? Number(env.PING_INTERVAL) : 30000;
if (!(pingInterval >= 0)) fatal('PING_INTERVAL must be a number of ms');
var channel = env.REDIS_CHANNEL || 'primus';
var useRedis = !!(env.REDIS_HOST || env.REDIS_PORT);
if (useRedis && !(env.REDIS_HOST && /^\d+$/.test(env.REDIS_PORT || ''))) {
  fatal('REDIS_HOST and REDIS_PORT (a number) must be set together');
}

var server = http.createServer(handleHTTP);

var options = {
  transformer: 'websockets',
  parser: 'json',
  pathname: '/primus',
  pingInterval: pingInterval || false
};
if (useRedis) {
  // primus-redis-rooms reads primus.options.redis (passed to
  // redis.createClient as is).
  options.redis = {
    host: env.REDIS_HOST,
    port: Number(env.REDIS_PORT),
    channel: channel
  };
}
var primus = new Primus(server, options);

var redisReady; // resolves when the PSUBSCRIBE is confirmed (or at once without Redis)

if (useRedis) {
  primus.plugin('redis', PrimusRedisRooms);
} else {
  primus.plugin('rooms-local', {
    server: function (primus) {
      var sub = new EventEmitter();
      sub.psubscribe = function () {};
      var pub = { publish: function () {} };
      primus.rooms = new Rooms({ redis: { pub: pub, sub: sub, channel: channel } });
      primus.room = function (name) { return primus.rooms.room(name); };
      patchSpark(primus.Spark);
    }
  });
}

var useEmitter = env.EMITTER === '1';
if (useEmitter) {
  primus.plugin('emitter', require('primus-emitter'));
  // primus-redis-rooms' Room is a Writable without send: an app sends a
  // room event by writing the plugin's packet to the room, built here by the
  // plugin's own code (Emitter#packet).
  require('primus-redis-rooms/lib/room').prototype.send = function send() {
    var Emitter = primus.$.emitter.Emitter;
    this.write(new Emitter().packet(Array.prototype.slice.call(arguments)));
    return this;
  };
}

if (useRedis) {
  var pub = primus.rooms.redis.pub;
  var sub = primus.rooms.redis.sub;
  // Without these listeners node_redis 2.8 crashes the process on the first
  // connection error (spec §2.9); with them it reconnects, re-issues the
  // PSUBSCRIBE and flushes the offline queue.
  pub.on('error', function (err) { log('redis-error', { client: 'pub', error: err.message }); });
  sub.on('error', function (err) { log('redis-error', { client: 'sub', error: err.message }); });
  pub.on('ready', function () { log('redis-ready', { client: 'pub' }); });
  sub.on('ready', function () { log('redis-ready', { client: 'sub' }); });
  redisReady = new Promise(function (resolve) {
    var pubReady = false, subscribed = false;
    function check() { if (pubReady && subscribed) resolve(); }
    pub.once('ready', function () { pubReady = true; check(); });
    sub.on('psubscribe', function (pattern, count) {
      log('psubscribe', { pattern: pattern, count: count });
      subscribed = true;
      check();
    });
  });
} else {
  redisReady = Promise.resolve();
}

// ---------------------------------------------------------------------------
// Command protocol

function roomList(v) {
  if (typeof v === 'string') return [v];
  if (Array.isArray(v) && v.every(function (r) { return typeof r === 'string'; })) return v.slice();
  return null;
}

function isEmptyExcept(v) {
  if (v === undefined || v === null || v === false || v === '') return true;
  if (Array.isArray(v) && v.length === 0) return true;
  return false;
}

// publish writes data to each room in order; it throws on invalid input
// before writing anything.
function publish(rooms, data, except) {
  if (!isEmptyExcept(except)) throw new Error('except is not supported by primus-redis-rooms');
  // data === null: Room is an objectMode Writable, write(null) throws
  // ERR_STREAM_NULL_VALUES (spec §2.3) at the first room, before any write.
  rooms.forEach(function (name) {
    primus.room(name).write(data);
  });
}

function publishRooms(p) {
  if (!p || typeof p !== 'object' || Array.isArray(p)) return null;
  var rooms = [];
  if (p.room !== undefined) {
    if (typeof p.room !== 'string') return null;
    rooms.push(p.room);
  }
  if (p.rooms !== undefined) {
    var more = roomList(p.rooms);
    if (!more || typeof p.rooms === 'string') return null;
    rooms = rooms.concat(more);
  }
  if (p.room === undefined && p.rooms === undefined) return null;
  return rooms;
}

// command executes one command; returns undefined if msg is not a command,
// otherwise null on success or an error message.
function command(spark, msg) {
  var rooms;
  if (Object.prototype.hasOwnProperty.call(msg, 'join')) {
    rooms = roomList(msg.join);
    if (!rooms) return 'join: a room name or a list of room names (strings) is required';
    rooms.forEach(function (r) { spark.join(r); });
    return null;
  }
  if (Object.prototype.hasOwnProperty.call(msg, 'leave')) {
    rooms = roomList(msg.leave);
    if (!rooms) return 'leave: a room name or a list of room names (strings) is required';
    rooms.forEach(function (r) { spark.leave(r); });
    return null;
  }
  if (msg.leaveAll === true) {
    spark.leaveAll();
    return null;
  }
  if (Object.prototype.hasOwnProperty.call(msg, 'publish')) {
    rooms = publishRooms(msg.publish);
    if (!rooms) return 'publish: {"room":"r"} or {"rooms":["a",...]} is required';
    publish(rooms, msg.publish.data, msg.publish.except);
    return null;
  }
  return undefined;
}

function emitterEvents(spark) {
  var slice = Array.prototype.slice;
  function withAck(args) {
    return typeof args[args.length - 1] === 'function' ? args.pop() : null;
  }
  spark.on('echo', function () {
    var args = slice.call(arguments), ack = withAck(args);
    if (ack) ack.apply(null, args);
  });
  spark.on('tell', function () {
    spark.send.apply(spark, slice.call(arguments));
  });
  spark.on('ask', function () {
    var args = slice.call(arguments);
    args.push(function () {
      spark.send.apply(spark, ['answered'].concat(slice.call(arguments)));
    });
    spark.send.apply(spark, args);
  });
  spark.on('roomsend', function (room) {
    var r = primus.room(room);
    r.send.apply(r, slice.call(arguments, 1));
  });
  spark.on('join', function (room, ack) {
    spark.join(room);
    if (typeof ack === 'function') ack(room);
  });
  spark.on('data', function (msg) {
    if (!msg || typeof msg !== 'object' || typeof msg.cmd !== 'string') return;
    switch (msg.cmd) {
      case 'echo': spark.write(msg.data); break;
      case 'query': // the keys sorted, as a Go server writes a map
        var q = {};
        Object.keys(spark.query).sort().forEach(function (k) { q[k] = spark.query[k]; });
        spark.write({ query: q });
        break;
      case 'end': spark.end(); break;
      case 'reconnect': spark.end(undefined, { reconnect: true }); break;
    }
  });
}

primus.on('connection', function (spark) {
  log('connection', { spark: spark.id, url: spark.request && spark.request.url });
  if (useEmitter) emitterEvents(spark);

  spark.on('data', function (msg) {
    if (!msg || typeof msg !== 'object' || Array.isArray(msg) || Buffer.isBuffer(msg)) return;
    var result;
    try {
      result = command(spark, msg);
    } catch (err) {
      result = err && err.message ? err.message : String(err);
    }
    if (result === undefined) return;
    if (result !== null) log('command-error', { spark: spark.id, error: result });
    if (!Object.prototype.hasOwnProperty.call(msg, 'ack')) return;
    spark.write(result === null ? { ack: msg.ack, ok: true } : { ack: msg.ack, error: result });
  });

  spark.on('error', function (err) {
    log('spark-error', { spark: spark.id, error: err && err.message });
  });
});

primus.on('disconnection', function (spark) {
  log('disconnection', { spark: spark.id });
});

primus.on('log', function (level, err) {
  log('primus-log', { level: level, error: err && err.message });
});

// ---------------------------------------------------------------------------
// HTTP surface (requests under /primus never reach this handler)

function reply(res, status, body) {
  var text = typeof body === 'string' ? body : JSON.stringify(body);
  res.writeHead(status, {
    'content-type': typeof body === 'string' ? 'text/plain; charset=utf-8' : 'application/json',
    'content-length': Buffer.byteLength(text)
  });
  res.end(text);
}

function handleHTTP(req, res) {
  var path = req.url.split('?')[0];

  if (path === '/healthz' && (req.method === 'GET' || req.method === 'HEAD')) {
    return reply(res, 200, 'ok');
  }

  if (path === '/api/rooms' && req.method === 'GET') {
    var out = {};
    Object.keys(primus.rooms.rooms).forEach(function (key) {
      var room = primus.rooms.rooms[key];
      out[room.name] = room.clients().map(function (spark) { return spark.id; });
    });
    return reply(res, 200, { rooms: out });
  }

  if (path === '/api/publish') {
    if (req.method !== 'POST') return reply(res, 405, { ok: false, error: 'POST only' });
    var chunks = [];
    req.on('data', function (c) { chunks.push(c); });
    req.on('end', function () {
      var body;
      try {
        body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      } catch (err) {
        return reply(res, 400, { ok: false, error: 'invalid JSON: ' + err.message });
      }
      var rooms = publishRooms(body);
      if (!rooms) return reply(res, 400, { ok: false, error: '{"rooms":["a",...],"data":X} is required' });
      try {
        publish(rooms, body.data, body.except);
      } catch (err) {
        var status = /except/.test(err.message) ? 501 : 400;
        return reply(res, status, { ok: false, error: err.message });
      }
      reply(res, 200, { ok: true });
    });
    return;
  }

  reply(res, 404, 'not found');
}

// ---------------------------------------------------------------------------
// Start and stop

var stopping = false;
function shutdown(why) {
  if (stopping) return;
  stopping = true;
  log('shutdown', { why: why });
  // A keep-alive HTTP connection could hold server.close() open; do not wait
  // for ever.
  setTimeout(function () { process.exit(0); }, 3000).unref();
  primus.destroy({ timeout: 0 }, function () {
    if (useRedis) {
      // primus.destroy() does not touch the plugin's Redis clients (issue #17).
      primus.rooms.redis.pub.quit();
      primus.rooms.redis.sub.quit();
    }
    // Let the close frames and QUITs go out, then leave.
    setImmediate(function () { process.exit(0); });
  });
}

process.on('SIGTERM', function () { shutdown('SIGTERM'); });
process.on('SIGINT', function () { shutdown('SIGINT'); });
if (env.EXIT_ON_STDIN_CLOSE === '1') {
  process.stdin.on('end', function () { shutdown('stdin closed'); });
  process.stdin.on('error', function () { shutdown('stdin error'); });
  process.stdin.resume();
}

server.listen(port, '127.0.0.1', function () {
  var actual = server.address().port;
  log('http-listening', { port: actual, pingInterval: pingInterval, redis: useRedis, channel: channel, instance: primus.rooms.id, emitter: useEmitter });
  redisReady.then(function () {
    process.stdout.write('listening ' + actual + '\n');
  });
});
