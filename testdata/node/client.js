'use strict';

//
// Scriptable client built on the REAL Primus 8.0.9 Node client
// (Primus.createSocket, websockets transformer, JSON parser).
//
// Usage: node client.js URL   (or URL in the environment)
// Environment (all optional):
//   PATHNAME           server pathname compiled into the client (default /primus);
//                      the pathname of URL itself is ignored by Primus.
//   PING_TIMEOUT       ms without a server ping before `offline` (default: none,
//                      as for every createSocket client; 0 = none)
//   TIMEOUT            connect timeout in ms (library default 10000)
//   RECONNECT_MIN      reconnect backoff minimum in ms (library default 500)
//   RECONNECT_MAX      reconnect backoff maximum in ms (library default Infinity)
//   RECONNECT_RETRIES  reconnect attempts before `reconnect failed` (default 10)
//   STRATEGY           reconnect strategy, e.g. "disconnect,online,timeout"
//                      (library default); "none" disables reconnection.
//   MANUAL=1           do not connect until {"op":"open"}
//
// stdin, one JSON object per line:
//   {"op":"write","data":X}   client.write(X)
//   {"op":"id"}               client.id(fn) -> {"event":"id","id":"..."}
//   {"op":"open"}             client.open()
//   {"op":"end"}              client.end()
//   {"op":"exit"}             exit at once (code 0)
// EOF on stdin ends the client and exits.
//
// stdout, one JSON object per line, written synchronously (stdout is a pipe):
//   {"event":NAME, ..., "t":<ms since epoch>} with NAME one of open, data
//   (+"data"), id (+"id"), close, end, reconnect scheduled (+"attempt",
//   "scheduled", "retries"), reconnect, reconnected, reconnect timeout,
//   reconnect failed, offline, online, timeout, error (+"message"), ping
//   (+"time", the server's timestamp, on every primus::ping::<ms>), and
//   command error (+"message") for unusable stdin lines.
//

var readline = require('readline');
var Primus = require('primus');

var env = process.env;
var url = process.argv[2] || env.URL;
if (!url) {
  process.stderr.write('client.js: URL is required (argv[2] or $URL)\n');
  process.exit(2);
}

function emit(event, fields) {
  var line = Object.assign({ event: event }, fields || {}, { t: Date.now() });
  process.stdout.write(JSON.stringify(line) + '\n');
}

function ms(name) {
  var v = env[name];
  if (v === undefined || v === '') return undefined;
  var n = Number(v);
  if (!(n >= 0)) {
    process.stderr.write('client.js: ' + name + ' must be a number of ms\n');
    process.exit(2);
  }
  return n;
}

var Socket = Primus.createSocket({
  transformer: 'websockets',
  parser: 'json',
  pathname: env.PATHNAME || '/primus'
});

var options = { manual: env.MANUAL === '1' || env.MANUAL === 'true', reconnect: {} };
var pingTimeout = ms('PING_TIMEOUT');
if (pingTimeout !== undefined) options.pingTimeout = pingTimeout || false;
var timeout = ms('TIMEOUT');
if (timeout !== undefined) options.timeout = timeout;
var rmin = ms('RECONNECT_MIN');
if (rmin !== undefined) options.reconnect.min = rmin;
var rmax = ms('RECONNECT_MAX');
if (rmax !== undefined) options.reconnect.max = rmax;
var retries = ms('RECONNECT_RETRIES');
if (retries !== undefined) options.reconnect.retries = retries;
if (env.STRATEGY) options.strategy = env.STRATEGY === 'none' ? false : env.STRATEGY;

var client = new Socket(url, options);

client.on('open', function () { emit('open'); });
client.on('data', function (data) { emit('data', { data: data }); });
client.on('close', function () { emit('close'); });
client.on('end', function () { emit('end'); });
client.on('reconnect scheduled', function (opts) {
  emit('reconnect scheduled', { attempt: opts.attempt, scheduled: opts.scheduled, retries: opts.retries });
});
client.on('reconnect', function () { emit('reconnect'); });
client.on('reconnected', function () { emit('reconnected'); });
client.on('reconnect timeout', function (err) { emit('reconnect timeout', { message: err && err.message }); });
client.on('reconnect failed', function (err) { emit('reconnect failed', { message: err && err.message }); });
client.on('offline', function () { emit('offline'); });
client.on('online', function () { emit('online'); });
client.on('timeout', function () { emit('timeout'); });
client.on('error', function (err) { emit('error', { message: err && err.message ? err.message : String(err) }); });
client.on('incoming::ping', function (time) { emit('ping', { time: time }); });

function run(cmd) {
  switch (cmd.op) {
    case 'write':
      client.write(cmd.data);
      break;
    case 'id':
      client.id(function (id) { emit('id', { id: id }); });
      break;
    case 'open':
      client.open();
      break;
    case 'end':
      client.end();
      break;
    case 'exit':
      process.exit(0);
      break;
    default:
      emit('command error', { message: 'unknown op ' + JSON.stringify(cmd.op) });
  }
}

var rl = readline.createInterface({ input: process.stdin, terminal: false });
rl.on('line', function (line) {
  if (!line.trim()) return;
  var cmd;
  try {
    cmd = JSON.parse(line);
  } catch (err) {
    return emit('command error', { message: 'invalid JSON: ' + err.message });
  }
  if (!cmd || typeof cmd !== 'object') return emit('command error', { message: 'not an object' });
  run(cmd);
});
rl.on('close', function () {
  client.end();
  process.exit(0);
});
