/*!
 * primus.js - browser client for github.com/primusgo/primus.
 *
 * Speaks the Primus 8 wire protocol (websockets transformer, JSON parser)
 * and has the Primus 8.0.9 client API, with primus-emitter 3.1.1's
 * primus.send / primus.on(event) built in. Written from scratch (no Primus
 * code); plain ES5 plus the browser's WebSocket and URL, no dependencies.
 *
 *   var primus = new Primus('https://example.com/?token=abc', { reconnect: { retries: 5 } });
 *   primus.on('open', function () { primus.write({ join: 'room' }); });
 *   primus.on('data', function (data) { console.log(data); });
 *   primus.on('news', function (text) { console.log(text); });     // spark.send('news', text)
 *   primus.send('hello', 'world', function (reply) { ... });        // spark.on('hello', ...)
 *
 * It follows the original event for event: the same public and internal
 * events ("outgoing::open", "incoming::open", "outgoing::url",
 * "incoming::data", "outgoing::data", "incoming::end", "incoming::error",
 * "incoming::ping", "outgoing::pong", "outgoing::reconnect",
 * "outgoing::end", "readyStateChange"), emitted in the same order with the
 * same arguments, because it is built the same way: the internal events
 * drive the state machine, and the WebSocket transport listens to them.
 * docs/client-api.md lists every method, option and event with its status;
 * internal/browsertest runs the same pages against this client and the
 * original (served by Node) and compares the recorded events.
 *
 * Where it deliberately differs from the original (each is a bug there):
 *  - end() also stops a reconnect attempt in progress (the original's
 *    attempt timer could reopen an ended client 30 s later).
 *  - After `reconnect failed` a still pending socket of the last attempt
 *    that opens later is closed (the original then went OPEN after `end`).
 *  - primus-emitter: a message that is null or undefined is data, not a
 *    TypeError thrown from the `data` listener.
 *  - `options.WebSocket` may supply the WebSocket constructor; only the
 *    websockets transport exists; `transport` options are ignored (browsers
 *    take none); the context checks ("Primus#write's context should...")
 *    are not made.
 *
 * Not in the original: rooms of primus-server (cmd/primus-server, the
 * standalone server), with room history (docs/history.md). They send the
 * server's command protocol through write(), not primus-rooms' format; a
 * server that does not speak it just gets data messages.
 *
 *   primus.join('chat', function (err, reply) { ... });             // {"join":"chat","ack":...}
 *   primus.join('feed', { recover: true }, function (err, reply) {   // reply.offset, reply.epoch
 *   });
 *   primus.on('data', function (msg) {
 *     // a write to 'feed': {room: 'feed', offset: 42, epoch: 'k3x...', data: ...}
 *   });
 *   primus.on('recovered', function (room, recovered) {
 *     if (!recovered) reloadFeed(); // the messages since the cut are not all there
 *   });
 *   primus.leave('chat', function (err, reply) { ... });
 *
 *  - join(room, [opts], [fn]): opts.recover true joins a history room with
 *    positioned delivery; opts.since {offset, epoch} (with recover), a
 *    position the app kept, asks for what came after it first (then
 *    `recovered`). fn(err, reply) is called once, with the server's
 *    acknowledgement ({ack, ok: true, ...}; err from its "error", or for an
 *    ack that is neither ok nor an error). A join made while the client is
 *    not open is sent when it opens; one whose ack the connection lost is
 *    sent again on the next, and fn waits for that ack.
 *  - The client remembers the rooms joined (until leave() or destroy(),
 *    end() included) and joins them again every time a connection opens,
 *    before the messages the app queued while offline go out: plain joins
 *    as plain joins; recover joins with since, the last position received,
 *    then emits `recovered` (room, recovered) from the ack. recovered false:
 *    the epoch changed or the history does not reach back; nothing was
 *    replayed and the app must reload the room's state (the client goes on
 *    from the ack's position). A join the server refuses forgets the room;
 *    with no callback waiting (a rejoin), `error` is emitted (err.room is
 *    the room) if anyone listens.
 *  - A recover room's writes arrive as `data` with the message as the
 *    server sent it, {room, offset, epoch, data}, in order and once each:
 *    the client keeps the last (offset, epoch) and drops a message at or
 *    below it in the same epoch.
 *  - leave(room, [fn]) forgets the room and sends {"leave": room} when
 *    open; when not, fn(null, null) is called soon (there is nothing to
 *    leave). fn(null, null) also when the ack is lost with the connection.
 *  - Acks are "primus-js:<n>"; replies to them never reach `data` (other
 *    acks do). At most 1024 are awaited; beyond, the oldest is given up and
 *    its callbacks get an error. Malformed replies and positioned messages
 *    never throw: what is not the client's own is passed on as `data`.
 *  - `recovered` is a reserved event: primus-emitter events of that name
 *    are dropped.
 */
(function (root, factory) {
  var Primus = factory(root);
  if (root) root.Primus = Primus;
  if (typeof module === 'object' && module && module.exports) {
    module.exports = Primus;
  } else if (typeof define === 'function' && define.amd) {
    define(function () { return Primus; });
  }
}(typeof window !== 'undefined' ? window : typeof self !== 'undefined' ? self : this, function (root) {
  'use strict';

  // Values compiled in by the server (Go: internal/clientjs.Build rewrites this line).
  var compiled = {"pathname":"/primus","version":"8.0.9","pingTimeout":45000}; //@@compiled@@

  var has = Object.prototype.hasOwnProperty;
  var slice = Array.prototype.slice;
  function noop() {}

  // --- EventEmitter (eventemitter3's semantics) -----------------------------
  // Listeners run in the order added, over a snapshot; `once` listeners are
  // removed before they run; listeners(event) lists the functions.
  function EventEmitter() {}

  function listenersOf(ee, event) {
    return ee._events && has.call(ee._events, event) ? ee._events[event] : null;
  }

  EventEmitter.prototype.eventNames = function eventNames() {
    var names = [], name;
    for (name in this._events) if (has.call(this._events, name)) names.push(name);
    return names;
  };

  EventEmitter.prototype.listeners = function listeners(event) {
    var list = listenersOf(this, event) || [], out = [], i;
    for (i = 0; i < list.length; i++) out.push(list[i].fn);
    return out;
  };

  EventEmitter.prototype.listenerCount = function listenerCount(event) {
    var list = listenersOf(this, event);
    return list ? list.length : 0;
  };

  EventEmitter.prototype.emit = function emit(event) {
    var list = listenersOf(this, event), args, i, l;
    if (!list) return false;
    args = slice.call(arguments, 1);
    for (i = 0; i < list.length; i++) {
      l = list[i];
      if (l.once) this.removeListener(event, l.fn, undefined, true);
      l.fn.apply(l.context, args);
    }
    return true;
  };

  function addListener(ee, event, fn, context, once) {
    if (typeof fn !== 'function') throw new TypeError('The listener must be a function');
    if (!ee._events) ee._events = {};
    var list = listenersOf(ee, event);
    var l = { fn: fn, context: context || ee, once: once };
    // A new array: an emit in progress keeps iterating its snapshot.
    ee._events[event] = list ? list.concat([l]) : [l];
    return ee;
  }

  EventEmitter.prototype.on = function on(event, fn, context) {
    return addListener(this, event, fn, context, false);
  };
  EventEmitter.prototype.addListener = EventEmitter.prototype.on;

  EventEmitter.prototype.once = function once(event, fn, context) {
    return addListener(this, event, fn, context, true);
  };

  EventEmitter.prototype.removeListener = function removeListener(event, fn, context, once) {
    var list = listenersOf(this, event), keep = [], i, l;
    if (!list) return this;
    if (!fn) {
      delete this._events[event];
      return this;
    }
    for (i = 0; i < list.length; i++) {
      l = list[i];
      if (l.fn !== fn || (once && !l.once) || (context && l.context !== context)) keep.push(l);
    }
    if (keep.length) this._events[event] = keep;
    else delete this._events[event];
    return this;
  };
  EventEmitter.prototype.off = EventEmitter.prototype.removeListener;

  EventEmitter.prototype.removeAllListeners = function removeAllListeners(event) {
    if (arguments.length && this._events) delete this._events[event];
    else this._events = {};
    return this;
  };

  // --- durations: numbers, or strings such as "500 ms", "2 seconds" ---------
  var durationRe = /^((?:\d+)?\.?\d+) *(milliseconds?|msecs?|ms|seconds?|secs?|s|minutes?|mins?|m|hours?|hrs?|h|days?|d|weeks?|wks?|w|years?|yrs?|y)?$/i;
  var units = { ms: 1, s: 1000, m: 60000, h: 3600000, d: 86400000, w: 604800000, y: 31536000000 };

  function millisecond(ms) {
    if (typeof ms === 'number') return ms;
    if (typeof ms !== 'string' || ms === '0' || !ms) return 0;
    if (+ms) return +ms;
    var match = ms.length <= 10000 && durationRe.exec(ms);
    if (!match) return 0;
    var unit = (match[2] || 'ms').toLowerCase();
    var key = /^(milli|msec|ms)/.test(unit) ? 'ms' : unit.charAt(0);
    return parseFloat(match[1]) * units[key];
  }

  // --- named timers (tick-tock) ---------------------------------------------
  // setTimeout(name, fn, ms) adds fn to a running timer of that name; the
  // functions run with the owner as `this`, once, and the timer is gone.
  function Timers(context) {
    this.timers = {};
    this.context = context;
  }

  Timers.prototype.setTimeout = function setTimeout_(name, fn, time) {
    var self = this;
    if (self.timers[name]) {
      self.timers[name].fns.push(fn);
      return self;
    }
    var timer = { fns: [fn], id: null };
    self.timers[name] = timer;
    timer.id = setTimeout(function tock() {
      if (self.timers[name] !== timer) return;
      var fns = timer.fns.slice();
      self.clear(name);
      for (var i = 0; i < fns.length; i++) fns[i].call(self.context);
    }, Math.min(millisecond(time), 2147483647));
    return self;
  };

  Timers.prototype.active = function active(name) {
    return has.call(this.timers, name);
  };

  // clear() clears every timer, clear('a, b') or clear('a', 'b') those named.
  Timers.prototype.clear = function clear() {
    var names = slice.call(arguments), i, name;
    if (names.length === 1 && typeof names[0] === 'string') names = names[0].split(/[, ]+/);
    if (!names.length) for (name in this.timers) if (has.call(this.timers, name)) names.push(name);
    for (i = 0; i < names.length; i++) {
      if (!has.call(this.timers, names[i])) continue;
      clearTimeout(this.timers[names[i]].id);
      delete this.timers[names[i]];
    }
    return this;
  };

  Timers.prototype.destroy = function destroy() {
    this.clear();
    return true;
  };

  // --- reconnection backoff (recovery) --------------------------------------
  function Recovery(options) {
    options = options || {};
    this.attempt = null;
    this._fn = null;
    this['reconnect timeout'] = recoveryDefault('reconnect timeout', this, options);
    this.retries = recoveryDefault('retries', this, options);
    this.factor = recoveryDefault('factor', this, options);
    this.max = recoveryDefault('max', this, options);
    this.min = recoveryDefault('min', this, options);
    this.timers = new Timers(this);
  }
  Recovery.prototype = new EventEmitter();
  Recovery.prototype.constructor = Recovery;
  Recovery['reconnect timeout'] = 30000;
  Recovery.max = Infinity;
  Recovery.min = 500;
  Recovery.retries = 10;
  Recovery.factor = 2;

  function recoveryDefault(name, self, opts) {
    return millisecond(name in opts ? opts[name] : (name in self ? self[name] : Recovery[name]));
  }

  function once(fn) {
    var called = false;
    return function () {
      if (called) return;
      called = true;
      return fn.apply(this, arguments);
    };
  }

  Recovery.prototype.reconnect = function reconnect() {
    var recovery = this;
    return recovery.backoff(function backedoff(err, opts) {
      opts.duration = now() - opts.start;
      if (err) return recovery.emit('reconnect failed', err, opts);
      recovery.emit('reconnected', opts);
    }, recovery.attempt);
  };

  Recovery.prototype.backoff = function backoff(fn, opts) {
    var recovery = this;
    opts = opts || recovery.attempt || {};
    if (opts.backoff) return recovery; // one backoff at a time

    opts['reconnect timeout'] = recoveryDefault('reconnect timeout', recovery, opts);
    opts.retries = recoveryDefault('retries', recovery, opts);
    opts.factor = recoveryDefault('factor', recovery, opts);
    opts.max = recoveryDefault('max', recovery, opts);
    opts.min = recoveryDefault('min', recovery, opts);
    opts.start = +opts.start || now();
    opts.duration = +opts.duration || 0;
    opts.attempt = +opts.attempt || 0;

    if (opts.attempt === opts.retries) {
      fn.call(recovery, new Error('Unable to recover'), opts);
      return recovery;
    }
    opts.backoff = true;
    opts.attempt++;
    recovery.attempt = opts;
    opts.scheduled = opts.attempt !== 1
      ? Math.min(Math.round((Math.random() + 1) * opts.min * Math.pow(opts.factor, opts.attempt - 1)), opts.max)
      : opts.min;

    recovery.timers.setTimeout('reconnect', function delay() {
      opts.duration = now() - opts.start;
      opts.backoff = false;
      recovery.timers.clear('reconnect, timeout');
      var connect = recovery._fn = once(function connect(err) {
        recovery.reset();
        if (err) return recovery.backoff(fn, opts);
        fn.call(recovery, undefined, opts);
      });
      recovery.emit('reconnect', opts, connect);
      recovery.timers.setTimeout('timeout', function timeout() {
        var err = new Error('Failed to reconnect in a timely manner');
        opts.duration = now() - opts.start;
        recovery.emit('reconnect timeout', err, opts);
        connect(err);
      }, opts['reconnect timeout']);
    }, opts.scheduled);

    recovery.emit('reconnect scheduled', opts);
    return recovery;
  };

  Recovery.prototype.reconnecting = function reconnecting() { return !!this.attempt; };

  Recovery.prototype.reconnected = function reconnected(err) {
    if (this._fn) this._fn(err);
    return this;
  };

  Recovery.prototype.reset = function reset() {
    this._fn = this.attempt = null;
    this.timers.clear('reconnect, timeout');
    return this;
  };

  Recovery.prototype.destroy = function destroy() {
    this.timers.clear();
    this.attempt = this._fn = null;
    return true;
  };

  // --- emits: a function that emits an event, optionally through a parser --
  function emits() {
    var self = this, args = slice.call(arguments), parser;
    if (typeof args[args.length - 1] !== 'function') {
      return function emitter() {
        return self.emit.apply(self, args.concat(slice.call(arguments)));
      };
    }
    parser = args.pop();
    return function emitter() {
      var arg = [null].concat(slice.call(arguments));
      arg[0] = function next(err, returned) {
        if (err) return self.emit('error', err);
        arg = returned === undefined ? arg.slice(1) : returned === null ? [] : returned;
        self.emit.apply(self, args.concat(arg));
      };
      parser.apply(self, arg);
      return true;
    };
  }

  // --- query strings (querystringify) ---------------------------------------
  function decode(s) {
    try { return decodeURIComponent(s.replace(/\+/g, ' ')); } catch (e) { return null; }
  }
  function encode(s) {
    try { return encodeURIComponent(s); } catch (e) { return null; }
  }

  function querystring(query) {
    var parser = /([^=?#&]+)=?([^&]*)/g, result = {}, part, key, value;
    while ((part = parser.exec(query))) {
      key = decode(part[1]);
      value = decode(part[2]);
      if (key === null || value === null || key in result) continue;
      result[key] = value;
    }
    return result;
  }

  function querystringify(obj, prefix) {
    prefix = prefix || '';
    if (typeof prefix !== 'string') prefix = '?';
    var pairs = [], key, value;
    for (key in obj) {
      if (!has.call(obj, key)) continue;
      value = obj[key];
      if (!value && (value === null || value === undefined || isNaN(value))) value = '';
      key = encode(key);
      value = encode(value);
      if (key === null || value === null) continue;
      pairs.push(key + '=' + value);
    }
    return pairs.length ? prefix + pairs.join('&') : '';
  }

  // --- cache buster (yeast): the time in ms in a 64-character alphabet,
  // plus ".<n>" when several are made within one millisecond.
  var alphabet = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz-_';
  var lastStamp, sameStamp = 0;

  function now() { return +new Date(); }

  function encode64(n) {
    var s = '';
    do {
      s = alphabet.charAt(n % 64) + s;
      n = Math.floor(n / 64);
    } while (n > 0);
    return s;
  }

  function yeast() {
    var stamp = encode64(now());
    if (stamp !== lastStamp) {
      sameStamp = 0;
      lastStamp = stamp;
      return stamp;
    }
    return stamp + '.' + encode64(sameStamp++);
  }

  // --- URLs -----------------------------------------------------------------
  var defaultUrl;
  try {
    defaultUrl = root.location.origin || root.location.protocol + '//' + root.location.host;
  } catch (e) {
    defaultUrl = 'http://127.0.0.1';
  }
  if (!defaultUrl || defaultUrl === 'null') defaultUrl = 'http://127.0.0.1';

  // parseURL resolves an address (relative to the page) into the fields of
  // the original's url-parse object: protocol, auth, host, hostname, port,
  // pathname, query ("?a=b" or ""), hash, href, origin.
  function parseURL(address) {
    var base = root && root.location && root.location.href;
    var u = base && /^(https?|file):/.test(base) ? new URL(String(address), base) : new URL(String(address));
    var auth = u.username ? decode(u.username) + (u.password ? ':' + decode(u.password) : '') : '';
    return {
      protocol: u.protocol, slashes: true, auth: auth, username: u.username, password: u.password,
      host: u.host, hostname: u.hostname, port: u.port, pathname: u.pathname,
      query: u.search, hash: u.hash, href: u.href, origin: u.origin
    };
  }

  // --- Primus ---------------------------------------------------------------
  function Primus(url, options) {
    if (!(this instanceof Primus)) return new Primus(url, options);
    if (root && root.URL && url instanceof root.URL) url = String(url);

    if (typeof url === 'object') {
      options = url;
      url = options.url || options.uri || defaultUrl;
    } else {
      options = options || {};
    }
    if ('ping' in options || 'pong' in options) {
      return this.critical(new Error('The `ping` and `pong` options have been removed'));
    }

    var primus = this;
    options.queueSize = 'queueSize' in options ? options.queueSize : Infinity;
    options.timeout = 'timeout' in options ? options.timeout : 10e3;
    options.reconnect = 'reconnect' in options ? options.reconnect : {};
    options.pingTimeout = 'pingTimeout' in options ? options.pingTimeout : compiled.pingTimeout;
    options.strategy = 'strategy' in options ? options.strategy : [];
    options.transport = 'transport' in options ? options.transport : {};

    primus.buffer = [];
    primus.writable = true;
    primus.readable = true;
    primus.url = primus.parse(url || defaultUrl);
    primus.readyState = Primus.CLOSED;
    primus.options = options;
    primus.timers = new Timers(this);
    primus.socket = null;
    primus.disconnect = false;
    primus.transport = options.transport;
    primus.transformers = { outgoing: [], incoming: [] };
    primus.recovery = new Recovery(options.reconnect);

    if (typeof options.strategy === 'string') options.strategy = options.strategy.split(/\s?,\s?/g);
    if (options.strategy === false) {
      options.strategy = [];
    } else if (!options.strategy.length) {
      options.strategy.push('disconnect', 'online');
      if (!this.authorization) options.strategy.push('timeout');
    }
    options.strategy = options.strategy.join(',').toLowerCase();

    if ('websockets' in options) primus.AVOID_WEBSOCKETS = !options.websockets;
    if ('network' in options) primus.NETWORK_EVENTS = options.network;

    if (!options.manual) primus.timers.setTimeout('open', function open() {
      primus.timers.clear('open');
      primus.open();
    }, 0);

    primus.initialise(options);
  }

  Primus.requires = Primus.require = function requires() { return undefined; };
  Primus.Stream = EventEmitter;
  Primus.prototype = new EventEmitter();
  Primus.prototype.constructor = Primus;

  Primus.OPENING = 1; // opening the connection
  Primus.CLOSED = 2;  // no active connection
  Primus.OPEN = 3;    // the connection is open
  // Also on instances (not in the original, where only Primus.OPEN exists).
  Primus.prototype.OPENING = 1;
  Primus.prototype.CLOSED = 2;
  Primus.prototype.OPEN = 3;

  Primus.prototype._rooms = null; // primus.join's rooms, made by the first join or leave

  Primus.prototype.AVOID_WEBSOCKETS = false;
  Primus.prototype.NETWORK_EVENTS = false;
  Primus.prototype.online = true;
  try {
    if ((Primus.prototype.NETWORK_EVENTS = 'onLine' in root.navigator && !!root.addEventListener)) {
      if (!root.navigator.onLine) Primus.prototype.online = false;
    }
  } catch (e) { /* no navigator */ }

  // The plugins compiled in: primus-emitter's client part is a no-op, as in
  // a library that a Node server with the plugin registered as "emitter"
  // builds (Primus.prototype.ark.emitter = function () {}).
  Primus.prototype.ark = { emitter: function () {} };

  Primus.prototype.emits = emits;

  // plugin(name) returns the plugin registered under name, undefined for
  // an unknown name (as the original); plugin() a copy of them all.
  Primus.prototype.plugin = function plugin(name) {
    if (name) return this.ark[name];
    var plugins = {};
    for (name in this.ark) plugins[name] = this.ark[name];
    return plugins;
  };

  Primus.prototype.reserved = function reserved(evt) {
    return (/^(incoming|outgoing)::/).test(evt) || evt in this.reserved.events;
  };
  Primus.prototype.reserved.events = {
    'reconnect scheduled': 1, 'reconnect timeout': 1, 'readyStateChange': 1,
    'reconnect failed': 1, 'reconnected': 1, 'reconnect': 1, 'offline': 1,
    'timeout': 1, 'destroy': 1, 'online': 1, 'error': 1, 'close': 1,
    'open': 1, 'data': 1, 'end': 1,
    'recovered': 1 // not in the original: primus.join's event
  };

  // initialise wires the internal events; the order of the listeners is
  // the original's, so events interleave the same way.
  Primus.prototype.initialise = function initialise(options) {
    var primus = this;

    // primus-emitter binds to `data` first, before anything else.
    if (!primus.emitter) primus.emitter = new Emitter(primus);

    primus.recovery
      .on('reconnected', primus.emits('reconnected'))
      .on('reconnect failed', primus.emits('reconnect failed', function failed(next) {
        primus.emit('end');
        next();
      }))
      .on('reconnect timeout', primus.emits('reconnect timeout'))
      .on('reconnect scheduled', primus.emits('reconnect scheduled'))
      .on('reconnect', primus.emits('reconnect', function reconnect(next) {
        primus.emit('outgoing::reconnect');
        next();
      }));
    // Not in the original: the last attempt's socket must not open after `end`.
    primus.recovery.on('reconnect failed', function () { primus._abandon(); });

    primus.on('outgoing::open', function opening() {
      var readyState = primus.readyState;
      primus.readyState = Primus.OPENING;
      if (readyState !== primus.readyState) primus.emit('readyStateChange', 'opening');
    });

    primus.on('incoming::open', function opened() {
      var readyState = primus.readyState;
      if (primus.recovery.reconnecting()) primus.recovery.reconnected();
      primus.writable = true;
      primus.readable = true;
      if (!primus.online) {
        primus.online = true;
        primus.emit('online');
      }
      primus.readyState = Primus.OPEN;
      if (readyState !== primus.readyState) primus.emit('readyStateChange', 'open');
      primus.heartbeat();
      // Not in the original: the rooms of primus.join go first (rooms section).
      if (primus._rooms) rejoin(primus);
      if (primus.buffer.length) {
        var data = primus.buffer.slice(), i;
        primus.buffer.length = 0;
        for (i = 0; i < data.length; i++) primus._write(data[i]);
      }
      primus.emit('open');
    });

    primus.on('incoming::ping', function ping(time) {
      primus.online = true;
      primus.heartbeat();
      primus.emit('outgoing::pong', time);
      primus._write('primus::pong::' + time);
    });

    primus.on('incoming::error', function error(e) {
      var connect = primus.timers.active('connect'), err = e, key;
      if (typeof e === 'string') {
        err = new Error(e);
      } else if (!(e instanceof Error) && typeof e === 'object') {
        err = new Error(e.message || e.reason);
        for (key in e) if (has.call(e, key)) err[key] = e[key];
      }
      if (primus.recovery.reconnecting()) return primus.recovery.reconnected(err);
      if (primus.listeners('error').length) primus.emit('error', err);
      if (connect) {
        if (~primus.options.strategy.indexOf('timeout')) primus.recovery.reconnect();
        else primus.end();
      }
    });

    primus.on('incoming::data', function message(raw) {
      primus.decoder(raw, function decoding(err, data) {
        if (err) return primus.listeners('error').length && primus.emit('error', err);
        if (primus.protocol(data)) return;
        primus.transforms(primus, primus, 'incoming', data, raw);
      });
    });

    primus.on('incoming::end', function end() {
      var readyState = primus.readyState;
      if (primus.disconnect) {
        primus.disconnect = false;
        return primus.end();
      }
      primus.readyState = Primus.CLOSED;
      if (readyState !== primus.readyState) primus.emit('readyStateChange', 'end');
      if (primus.timers.active('connect')) primus.end();
      if (readyState !== Primus.OPEN) {
        return primus.recovery.reconnecting() ? primus.recovery.reconnect() : false;
      }
      this.writable = false;
      this.readable = false;
      this.timers.clear();
      primus.emit('close');
      if (~primus.options.strategy.indexOf('disconnect')) return primus.recovery.reconnect();
      primus.emit('outgoing::end');
      primus.emit('end');
    });

    primus.client();

    for (var plugin in primus.ark) primus.ark[plugin].call(primus, primus, options);

    if (!primus.NETWORK_EVENTS) return primus;

    primus.offlineHandler = function offline() {
      if (!primus.online) return;
      primus.online = false;
      primus.emit('offline');
      primus.end();
      primus.recovery.reset();
    };
    primus.onlineHandler = function online() {
      if (primus.online) return;
      primus.online = true;
      primus.emit('online');
      if (~primus.options.strategy.indexOf('online')) primus.recovery.reconnect();
    };
    root.addEventListener('offline', primus.offlineHandler, false);
    root.addEventListener('online', primus.onlineHandler, false);
    return primus;
  };

  // protocol handles "primus::<type>::<value>" messages; false = data. The
  // type is what lies between "primus::" and the next ':' (the original's
  // arithmetic, quirks included).
  Primus.prototype.protocol = function protocol(msg) {
    if (typeof msg !== 'string' || msg.indexOf('primus::') !== 0) return false;
    var last = msg.indexOf(':', 8), value = msg.slice(last + 2);
    switch (msg.slice(8, last)) {
      case 'ping':
        this.emit('incoming::ping', +value);
        break;
      case 'server':
        if (value === 'close') this.disconnect = true;
        break;
      case 'id':
        this.emit('incoming::id', value);
        break;
      default:
        return false;
    }
    return true;
  };

  // transforms runs the message transformers of type in series: a
  // transformer with one parameter is synchronous (returning false drops
  // the message), any other gets a callback next(err, false-to-drop).
  Primus.prototype.transforms = function transforms(primus, connection, type, data, raw) {
    var packet = { data: data }, fns = primus.transformers[type];
    (function transform(index, done) {
      var transformer = fns[index++];
      if (!transformer) return done();
      if (transformer.length === 1) {
        if (transformer.call(connection, packet) === false) return;
        return transform(index, done);
      }
      transformer.call(connection, packet, function finished(err, arg) {
        if (err) return connection.emit('error', err);
        if (arg === false) return;
        transform(index, done);
      });
    }(0, function done() {
      if (type === 'incoming') {
        // Not in the original: acknowledgements of primus.join/leave and
        // duplicates of positioned messages stop here (rooms section).
        if (connection._rooms && roomsIncoming(connection, packet.data)) return;
        return connection.emit('data', packet.data, raw);
      }
      connection._write(packet.data);
    }));
    return this;
  };

  Primus.prototype.id = function id(fn) {
    if (this.socket && this.socket.id) return fn(this.socket.id);
    this._write('primus::id::');
    return this.once('incoming::id', fn);
  };

  Primus.prototype.open = function open() {
    if (!this.recovery.reconnecting() && this.options.timeout) this.timeout();
    this.emit('outgoing::open');
    return this;
  };

  Primus.prototype.write = function write(data) {
    this.transforms(this, this, 'outgoing', data);
    return true;
  };

  Primus.prototype._write = function _write(data) {
    var primus = this;
    if (Primus.OPEN !== primus.readyState) {
      if (this.buffer.length === this.options.queueSize) this.buffer.splice(0, 1);
      this.buffer.push(data);
      return false;
    }
    primus.encoder(data, function encoded(err, packet) {
      if (err) return primus.listeners('error').length && primus.emit('error', err);
      if (typeof packet === 'string') {
        if (~packet.indexOf('\u2028')) packet = packet.replace(/\u2028/g, '\\u2028');
        if (~packet.indexOf('\u2029')) packet = packet.replace(/\u2029/g, '\\u2029');
      }
      primus.emit('outgoing::data', packet);
    });
    return true;
  };

  // heartbeat (re)starts the ping timeout: without a ping in time the
  // client goes offline and treats the connection as ended.
  Primus.prototype.heartbeat = function heartbeat() {
    if (!this.options.pingTimeout) return this;
    this.timers.clear('heartbeat');
    this.timers.setTimeout('heartbeat', function expired() {
      if (!this.online) return;
      this.online = false;
      this.emit('offline');
      this.emit('incoming::end');
    }, this.options.pingTimeout);
    return this;
  };

  // timeout starts the connect timeout of a first connection.
  Primus.prototype.timeout = function timeout() {
    var primus = this;
    function remove() {
      primus.removeListener('error', remove)
        .removeListener('open', remove)
        .removeListener('end', remove)
        .timers.clear('connect');
    }
    primus.timers.setTimeout('connect', function expired() {
      remove();
      if (primus.readyState === Primus.OPEN || primus.recovery.reconnecting()) return;
      primus.emit('timeout');
      if (~primus.options.strategy.indexOf('timeout')) primus.recovery.reconnect();
      else primus.end();
    }, primus.options.timeout);
    return primus.on('error', remove).on('open', remove).on('end', remove);
  };

  Primus.prototype.end = function end(data) {
    if (this.readyState === Primus.CLOSED && !this.timers.active('connect') && !this.timers.active('open')) {
      if (this.recovery.reconnecting()) {
        this.recovery.reset();
        this.emit('end');
      }
      return this;
    }
    if (data !== undefined) this.write(data);
    this.writable = false;
    this.readable = false;
    var readyState = this.readyState;
    this.readyState = Primus.CLOSED;
    if (readyState !== this.readyState) this.emit('readyStateChange', 'end');
    this.timers.clear();
    this.recovery.reset(); // not in the original: an attempt in progress must not revive the client
    this.emit('outgoing::end');
    this.emit('close');
    this.emit('end');
    return this;
  };

  // destroy ends the client, frees it and removes every listener after a
  // last `destroy` event; it returns false when called again.
  Primus.prototype.destroy = function destroy() {
    var keys = ['url', 'timers', 'options', 'recovery', 'socket', 'transport', 'transformers', '_rooms'], i;
    if (this.url === null) return false;
    this.end();
    for (i = 0; i < keys.length; i++) {
      if (this[keys[i]]) {
        if (typeof this[keys[i]].destroy === 'function') this[keys[i]].destroy();
        this[keys[i]] = null;
      }
    }
    this.emit('destroy');
    this.removeAllListeners();
    if (this.NETWORK_EVENTS && this.offlineHandler) {
      root.removeEventListener('offline', this.offlineHandler);
      root.removeEventListener('online', this.onlineHandler);
    }
    return true;
  };

  Primus.prototype.clone = function clone(obj) { return this.merge({}, obj); };

  Primus.prototype.merge = function merge(target) {
    for (var i = 1, key, obj; i < arguments.length; i++) {
      obj = arguments[i];
      for (key in obj) if (has.call(obj, key)) target[key] = obj[key];
    }
    return target;
  };

  Primus.prototype.parse = parseURL;
  Primus.prototype.querystring = querystring;
  Primus.prototype.querystringify = querystringify;

  // uri builds a connection URL. outgoing::url listeners get the options
  // object before the URL is made from it and may change protocol, secure,
  // auth, pathname and query (a string without "?", _primuscb included).
  Primus.prototype.uri = function uri(options) {
    var url = this.url, server = [], qsa = false;
    if (options.query) qsa = true;
    options = options || {};
    options.protocol = 'protocol' in options ? options.protocol : 'http:';
    options.query = url.query && qsa ? url.query.slice(1) : false;
    options.secure = 'secure' in options ? options.secure : url.protocol === 'https:' || url.protocol === 'wss:';
    options.auth = 'auth' in options ? options.auth : url.auth;
    options.pathname = 'pathname' in options ? options.pathname : this.pathname;
    options.port = 'port' in options ? +options.port : +url.port || (options.secure ? 443 : 80);

    var query = this.querystring(options.query || '');
    query._primuscb = yeast();
    options.query = this.querystringify(query);

    this.emit('outgoing::url', options);

    server.push(options.secure ? options.protocol.replace(':', 's:') : options.protocol, '');
    server.push(options.auth ? options.auth + '@' + url.host : url.host);
    if (options.pathname) server.push(options.pathname.slice(1));
    if (qsa) server[server.length - 1] += '?' + options.query;
    else delete options.query;
    if (options.object) return options;
    return server.join('/');
  };

  // transform adds a message transformer: 'incoming' or 'outgoing'.
  Primus.prototype.transform = function transform(type, fn) {
    if (!(type in this.transformers)) return this.critical(new Error('Invalid transformer type'));
    this.transformers[type].push(fn);
    return this;
  };

  // critical emits err as `error` if anyone listens, and throws it otherwise.
  Primus.prototype.critical = function critical(err) {
    if (this.emit('error', err)) return this;
    throw err;
  };

  Primus.connect = function connect(url, options) { return new Primus(url, options); };
  Primus.EventEmitter = EventEmitter;

  // --- the compiled-in parts: transport, parser, settings --------------------

  // client is the websockets transformer: it opens the socket on
  // outgoing::open (after an outgoing::end for the previous one), turns the
  // socket's events into incoming::open/data/error/end, sends outgoing::data
  // and closes the socket on outgoing::end.
  Primus.prototype.client = function client() {
    var primus = this, socket, abandoned = null;
    var Factory = primus.options.WebSocket || (root && root.WebSocket);
    if (!Factory) return primus.critical(new Error('Missing required `ws` module. Please run `npm install --save ws`'));

    primus.on('outgoing::open', function opening() {
      primus.emit('outgoing::end');
      try {
        primus.socket = socket = new Factory(primus.uri({
          protocol: primus.url.protocol === 'ws+unix:' ? 'ws+unix:' : 'ws:',
          query: true
        }));
        socket.binaryType = 'arraybuffer';
      } catch (e) { return primus.emit('error', e); }

      var opened = primus.emits('incoming::open');
      socket.onopen = function (evt) {
        // A socket of an attempt that was given up (see `reconnect failed`)
        // is closed instead: its close event ends it as any failed attempt.
        if (abandoned === this) return this.close();
        return opened(evt);
      };
      socket.onerror = primus.emits('incoming::error');
      socket.onclose = primus.emits('incoming::end');
      socket.onmessage = primus.emits('incoming::data', function parse(next, evt) {
        next(undefined, evt.data);
      });
    });

    primus.on('outgoing::data', function write(message) {
      if (!socket || socket.readyState !== Factory.OPEN) return;
      try { socket.send(message); } catch (e) { primus.emit('incoming::error', e); }
    });

    primus.on('outgoing::reconnect', function reconnect() {
      primus.emit('outgoing::open');
    });

    primus.on('outgoing::end', function close() {
      abandoned = null;
      if (!socket) return;
      socket.onerror = socket.onopen = socket.onclose = socket.onmessage = noop;
      socket.close();
      socket = null;
    });

    // _abandon marks a socket still connecting as given up.
    primus._abandon = function abandon() {
      if (socket && socket.readyState === 0) abandoned = socket;
    };
  };

  Primus.prototype.authorization = false;
  Primus.prototype.pathname = compiled.pathname;
  Primus.prototype.version = compiled.version;
  Primus.pathname = compiled.pathname;
  Primus.version = compiled.version;

  // The JSON parser.
  Primus.prototype.encoder = function encoder(data, fn) {
    var err;
    try { data = JSON.stringify(data); } catch (e) { err = e; }
    fn(err, data);
  };
  Primus.prototype.decoder = function decoder(data, fn) {
    var err;
    if (typeof data !== 'string') return fn(err, data);
    try { data = JSON.parse(data); } catch (e) { err = e; }
    fn(err, data);
  };

  // --- primus-emitter 3.1.1 --------------------------------------------------
  // Packets: {type: 0, data: [event, ...args], id?} and {id, type: 1, data}.
  var packets = { EVENT: 0, ACK: 1 };

  function Emitter(conn) {
    if (!(this instanceof Emitter)) return new Emitter(conn);
    this.ids = 1;
    this.acks = {};
    this.conn = conn;
    if (this.conn) this.bind();
  }

  Emitter.prototype.bind = function bind() {
    var em = this;
    this.conn.on('data', function ondata(packet) { em.ondata(packet); });
    return this;
  };

  Emitter.prototype.ondata = function ondata(packet) {
    if (packet === null || packet === undefined) return this; // the plugin throws a TypeError here
    if (!Array.isArray(packet.data) || packet.id && typeof packet.id !== 'number') return this;
    switch (packet.type) {
      case packets.EVENT: this.onevent(packet); break;
      case packets.ACK: this.onack(packet);
    }
    return this;
  };

  Emitter.prototype.send = function send() {
    this.conn.write(this.packet(slice.call(arguments)));
    return this;
  };

  Emitter.prototype.packet = function pack(args) {
    var packet = { type: packets.EVENT, data: args };
    if (typeof args[args.length - 1] === 'function') {
      var id = this.ids++;
      this.acks[id] = args.pop();
      packet.id = id;
    }
    return packet;
  };

  Emitter.prototype.onevent = function onevent(packet) {
    var args = packet.data;
    if (this.conn.reserved(args[0])) return this;
    if (packet.id) args.push(this.ack(packet.id));
    this.conn.emit.apply(this.conn, args);
    return this;
  };

  Emitter.prototype.ack = function ack(id) {
    var conn = this.conn, sent = false;
    return function () {
      if (sent) return;
      sent = true;
      conn.write({ id: id, type: packets.ACK, data: slice.call(arguments) });
    };
  };

  Emitter.prototype.onack = function onack(packet) {
    var ack = this.acks[packet.id];
    if (typeof ack === 'function') {
      ack.apply(this, packet.data);
      delete this.acks[packet.id];
    }
    return this;
  };

  Emitter.packets = packets;

  // send(event, ...args, [ack]) sends a named event to the spark.
  Primus.prototype.send = function send(ev) {
    if (/^(newListener|removeListener)/.test(ev)) return this;
    this.emitter.send.apply(this.emitter, arguments);
    return this;
  };

  // --- rooms: primus-server's command protocol (not in the original) --------
  // join/leave send {"join": room, "ack": "primus-js:<n>"} (with "recover"
  // or "since" for history rooms) and {"leave": room, "ack": ...} through
  // write(); the server answers {"ack": ..., "ok": true, ...} or
  // {"ack": ..., "error": "..."}. The client remembers the rooms it joined
  // and joins them again on every connection, before the messages queued
  // while it was offline; for rooms joined with {recover: true} it tracks
  // the last position (offset, epoch) received and asks for what it missed
  // ("since"), then emits `recovered` (room, recovered).
  var ACK_PREFIX = 'primus-js:';
  var ackRe = /^primus-js:([1-9][0-9]{0,14})$/;
  var MAX_ACKS = 1024; // acknowledgements awaited at once; beyond, the oldest is given up

  function Rooms() {
    this.list = [];   // the tracked rooms (entries), in the order joined
    this.names = {};  // '$' + room -> entry
    this.acks = {};   // n -> {entry} for a join, {fns} for a leave
    this.pending = 0; // how many acks
    this.oldest = 1;  // no awaited ack below it
    this.next = 1;    // the next ack number
  }

  // isPosition tells an {offset, epoch} the server could have sent.
  function isPosition(p) {
    return !!p && typeof p === 'object' && typeof p.offset === 'number' && p.offset >= 0 &&
      p.offset % 1 === 0 && p.offset <= 9007199254740991 && typeof p.epoch === 'string';
  }

  function roomName(room, method) {
    if (typeof room !== 'string' || !room) throw new TypeError('Primus#' + method + ': the room must be a non-empty string');
    return '$' + room;
  }

  function untrack(st, entry) {
    var i = st.list.indexOf(entry);
    if (i !== -1) st.list.splice(i, 1);
    if (st.names['$' + entry.room] === entry) delete st.names['$' + entry.room];
  }

  function tracked(st, entry) {
    return has.call(st.names, '$' + entry.room) && st.names['$' + entry.room] === entry;
  }

  function callAll(fns, err, reply) {
    for (var i = 0; i < fns.length; i++) fns[i](err, reply);
  }

  // addAck awaits an ack for rec and returns its number; beyond MAX_ACKS
  // the oldest awaited one is given up (its callbacks get an error).
  function addAck(st, rec) {
    var id = st.next++, old, fns;
    st.acks[id] = rec;
    st.pending++;
    while (st.pending > MAX_ACKS && st.oldest < id) {
      if (!has.call(st.acks, st.oldest)) { st.oldest++; continue; }
      old = st.acks[st.oldest];
      delete st.acks[st.oldest];
      st.pending--;
      fns = old.fns || [];
      if (old.entry && old.entry.ack === st.oldest) {
        fns = old.entry.fns;
        old.entry.fns = [];
        old.entry.ack = null;
      }
      st.oldest++;
      callAll(fns, new Error('primus: more than ' + MAX_ACKS + ' acknowledgements awaited; the oldest is given up'), undefined);
    }
    return id;
  }

  // sendJoin sends the join command of a tracked room.
  function sendJoin(primus, st, entry) {
    var rec = { entry: entry, since: false }, cmd = { join: entry.room };
    if (entry.recover) {
      if (entry.pos) {
        cmd.since = { offset: entry.pos.offset, epoch: entry.pos.epoch };
        rec.since = true;
      } else {
        cmd.recover = true;
      }
    }
    entry.ack = addAck(st, rec);
    cmd.ack = ACK_PREFIX + entry.ack;
    primus.write(cmd);
  }

  // rejoin runs when a connection opens: acks awaited on the previous one
  // will not come; every tracked room is joined again (callbacks of joins
  // not yet acknowledged wait for the new ack).
  function rejoin(primus) {
    var st = primus._rooms, old = st.acks, lost = [], id, rec, i;
    st.acks = {};
    st.pending = 0;
    st.oldest = st.next;
    for (id in old) {
      if (!has.call(old, id)) continue;
      rec = old[id];
      if (rec.fns) lost.push({ fns: rec.fns, err: null }); // a leave: the new connection is in no room
      else if (!tracked(st, rec.entry) && rec.entry.ack === +id) {
        lost.push({ fns: rec.entry.fns, err: new Error('primus: the connection closed before the join was acknowledged') });
        rec.entry.fns = [];
        rec.entry.ack = null;
      }
    }
    var list = st.list.slice();
    for (i = 0; i < list.length; i++) {
      if (tracked(st, list[i])) sendJoin(primus, st, list[i]);
    }
    for (i = 0; i < lost.length; i++) callAll(lost[i].fns, lost[i].err, null);
  }

  // roomsIncoming looks at a message before the `data` event: true when it
  // is for the client only (an ack of ours, a duplicate positioned message).
  // Whatever the message, it does not throw.
  function roomsIncoming(primus, msg) {
    var st = primus._rooms, m, id, rec, entry, err = null, pos = null, recovered = false, fns;
    try {
      if (!msg || typeof msg !== 'object' || Array.isArray(msg)) return false;
      if (typeof msg.ack === 'string') {
        m = ackRe.exec(msg.ack);
        id = m ? +m[1] : 0;
        if (!id || id >= st.next) return false; // not one of ours: the app's
        if (!has.call(st.acks, id)) return true; // ours, no longer awaited
        rec = st.acks[id];
        if (typeof msg.error === 'string') err = new Error(msg.error);
        else if (msg.ok !== true) err = new Error('primus: malformed acknowledgement');
        if (!err && isPosition(msg)) pos = { offset: msg.offset, epoch: msg.epoch };
        recovered = msg.recovered === true;
      } else if (typeof msg.room === 'string' && has.call(st.names, '$' + msg.room)) {
        entry = st.names['$' + msg.room];
        if (!entry.recover || !isPosition(msg)) return false;
        if (entry.pos && entry.pos.epoch === msg.epoch && msg.offset <= entry.pos.offset) return true;
        entry.pos = { offset: msg.offset, epoch: msg.epoch };
        return false;
      } else {
        return false;
      }
    } catch (e) {
      return false;
    }

    // An ack of ours: its effects, then the callbacks (which may throw).
    delete st.acks[id];
    st.pending--;
    if (rec.fns) {
      callAll(rec.fns, err, msg);
      return true;
    }
    entry = rec.entry;
    fns = [];
    if (entry.ack === id) {
      entry.ack = null;
      fns = entry.fns;
      entry.fns = [];
    }
    var live = tracked(st, entry);
    if (err) {
      // The server left the client out of the room: it is forgotten,
      // unless a newer join of it is on its way.
      err.room = entry.room;
      if (live && entry.ack === null) untrack(st, entry);
      if (fns.length) callAll(fns, err, msg);
      else if (live && primus.listeners('error').length) primus.emit('error', err);
      return true;
    }
    if (live && entry.recover && pos &&
      (!entry.pos || entry.pos.epoch !== pos.epoch || entry.pos.offset < pos.offset)) {
      entry.pos = pos;
    }
    callAll(fns, null, msg);
    if (live && rec.since) primus.emit('recovered', entry.room, recovered);
    return true;
  }

  // join(room, [opts], [fn]) joins a room of primus-server (see the header).
  Primus.prototype.join = function join(room, opts, fn) {
    if (typeof opts === 'function') {
      fn = opts;
      opts = null;
    }
    var key = roomName(room, 'join'), st = this._rooms || (this._rooms = new Rooms()), entry;
    opts = opts || {};
    entry = has.call(st.names, key) ? st.names[key] : null;
    if (!entry) {
      entry = { room: room, recover: false, pos: null, ack: null, fns: [] };
      st.names[key] = entry;
      st.list.push(entry);
    }
    entry.recover = opts.recover === true;
    if (!entry.recover) entry.pos = null;
    else if (isPosition(opts.since)) entry.pos = { offset: opts.since.offset, epoch: opts.since.epoch };
    if (typeof fn === 'function') entry.fns.push(fn);
    if (this.readyState === Primus.OPEN) sendJoin(this, st, entry);
    return this;
  };

  // leave(room, [fn]) leaves a room and forgets it.
  Primus.prototype.leave = function leave(room, fn) {
    var key = roomName(room, 'leave'), st = this._rooms || (this._rooms = new Rooms());
    if (has.call(st.names, key)) untrack(st, st.names[key]);
    fn = typeof fn === 'function' ? fn : null;
    if (this.readyState === Primus.OPEN) {
      this.write({ leave: room, ack: ACK_PREFIX + addAck(st, { fns: fn ? [fn] : [] }) });
    } else if (fn) {
      // No connection: no room to leave, and the next one will not join it.
      setTimeout(function () { fn(null, null); }, 0);
    }
    return this;
  };

  Primus.$ = { emitter: { Emitter: Emitter, packets: packets } };

  return Primus;
}));
