/*!
 * primus.js - browser client for github.com/primusgo/primus.
 *
 * Speaks the Primus 8 wire protocol (websockets transformer, JSON parser) and
 * offers the familiar subset of the Primus 8.0.9 client API. Written from
 * scratch; plain ES5 plus the browser's WebSocket and URL, no dependencies.
 *
 *   var primus = new Primus('https://example.com/?token=abc', { reconnect: { retries: 5 } });
 *   primus.on('open', function () { primus.write({ join: 'room' }); });
 *   primus.on('data', function (data) { console.log(data); });
 *
 * Protocol: one WebSocket text frame of JSON per message. The server pings
 * with "primus::ping::<x>", we answer "primus::pong::<x>". "primus::id::"
 * asks for the spark id, answered by "primus::id::<id>". "primus::server::close"
 * announces an intentional close after which we do not reconnect. Other
 * "primus::server::*" are swallowed; other "primus::*" strings are data.
 *
 * Decisions (where the original is vague, odd, or deliberately not followed):
 *  - The pathname of the URL given to the constructor is ignored; the pathname
 *    compiled in by the server is used. The query string is kept, any
 *    `_primuscb` in it is replaced by a fresh cache buster on every connect.
 *    http/https map to ws/wss. User info in the URL is not used.
 *  - Ping timeout (no ping within `pingTimeout` after open or the last ping,
 *    default compiled in = 1.5 x the server's pingInterval): like Primus we
 *    emit `offline` (once; `online` follows on the next successful open),
 *    then close the socket and take the unexpected-disconnect path: `close`,
 *    then `reconnect scheduled`... if the strategy contains "disconnect",
 *    else `end`.
 *  - `close` is emitted each time the client leaves the OPEN state; a
 *    connection that never opened produces no `close`. `end` is emitted once,
 *    when the client stops for good (end(), server close, reconnect failed,
 *    no strategy allowing a retry). `open()` after `end` starts afresh.
 *  - The first connection failing before it opens (error/close, or the
 *    `timeout` expiring) is retried when the strategy contains "timeout",
 *    otherwise the client ends. On `timeout` the pending socket is dropped at
 *    once.
 *  - Errors of reconnect attempts are not emitted as `error`; they count as a
 *    failed attempt (`reconnect scheduled` for the next one, or
 *    `reconnect failed` + `end` after `retries`).
 *  - Browser `offline`: emit `offline`, drop the connection (`close` if it was
 *    open) and any reconnect in progress; with "online" in the strategy we
 *    reconnect on the browser's `online` event, otherwise we end.
 *  - Writes while not OPEN (before open, during reconnects) are queued and
 *    flushed in order on the next open; `queueSize` bounds the queue (oldest
 *    dropped, 0 disables queueing). A value JSON cannot encode (circular) emits
 *    `error`; `undefined` sends nothing. U+2028/U+2029 are sent escaped.
 *  - Binary frames are delivered as `data` with an ArrayBuffer (both args).
 *  - No transports other than WebSocket, no message transformers, no plugins;
 *    reconnect durations must be numbers (ms). `ping`/`pong` options throw as
 *    in Primus 8. `options.WebSocket` may supply a WebSocket constructor (for
 *    non-browser use).
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

  var OPENING = 1, CLOSED = 2, OPEN = 3;
  var MAX_DELAY = 2147483647; // setTimeout fires at once for larger delays

  function now() { return new Date().getTime(); }

  // --- minimal event emitter -----------------------------------------------
  function Emitter() {}

  Emitter.prototype.on = function on(event, fn) {
    var events = this._events || (this._events = {});
    (events[event] || (events[event] = [])).push(fn);
    return this;
  };
  Emitter.prototype.addListener = Emitter.prototype.on;

  Emitter.prototype.once = function once(event, fn) {
    var self = this;
    function wrapper() {
      self.removeListener(event, wrapper);
      return fn.apply(this, arguments);
    }
    wrapper.listener = fn;
    return this.on(event, wrapper);
  };

  // removeListener(event, fn) removes fn (also when added with once);
  // removeListener(event) removes all listeners of the event.
  Emitter.prototype.removeListener = function removeListener(event, fn) {
    var list = this._events && this._events[event], keep = [], i;
    if (!list) return this;
    if (fn) {
      for (i = 0; i < list.length; i++) {
        if (list[i] !== fn && list[i].listener !== fn) keep.push(list[i]);
      }
    }
    if (keep.length) this._events[event] = keep;
    else delete this._events[event];
    return this;
  };
  Emitter.prototype.off = Emitter.prototype.removeListener;

  Emitter.prototype.removeAllListeners = function removeAllListeners(event) {
    if (event === undefined) this._events = {};
    else if (this._events) delete this._events[event];
    return this;
  };

  Emitter.prototype.listeners = function listeners(event) {
    var list = (this._events && this._events[event]) || [], out = [], i;
    for (i = 0; i < list.length; i++) out.push(list[i].listener || list[i]);
    return out;
  };

  // emit calls the listeners registered at the time of the call, in order.
  Emitter.prototype.emit = function emit(event) {
    var list = this._events && this._events[event], args, i;
    if (!list) return false;
    list = list.slice();
    args = Array.prototype.slice.call(arguments, 1);
    for (i = 0; i < list.length; i++) list[i].apply(this, args);
    return true;
  };

  // --- cache buster: the time in ms in a 64-character alphabet, plus ".<n>"
  // when several are made within one millisecond.
  var alphabet = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz-_';
  var lastStamp = '', sameStamp = 0;

  function encode(n) {
    var s = '';
    do {
      s = alphabet.charAt(n % 64) + s;
      n = Math.floor(n / 64);
    } while (n > 0);
    return s;
  }

  function cacheBuster() {
    var stamp = encode(now());
    if (stamp !== lastStamp) {
      lastStamp = stamp;
      sameStamp = 0;
      return stamp;
    }
    return stamp + '.' + encode(sameStamp++);
  }

  // --- Primus ---------------------------------------------------------------
  function has(own, key) { return Object.prototype.hasOwnProperty.call(own, key); }

  function pick(options, key, fallback) {
    return has(options, key) && options[key] !== undefined ? options[key] : fallback;
  }

  function parseStrategy(strategy) {
    if (strategy === false) return [];
    if (typeof strategy === 'string') strategy = strategy.split(',');
    var out = [], i, s;
    for (i = 0; strategy && i < strategy.length; i++) {
      s = String(strategy[i]).replace(/^\s+|\s+$/g, '').toLowerCase();
      if (s) out.push(s);
    }
    return out.length ? out : ['disconnect', 'online', 'timeout'];
  }

  /**
   * new Primus([url], [options]); url defaults to the page's origin.
   * Options: manual, timeout, pingTimeout, queueSize, strategy, reconnect
   * {min, max, factor, retries, 'reconnect timeout'}, WebSocket.
   */
  function Primus(url, options) {
    if (!(this instanceof Primus)) return new Primus(url, options);
    if (url && typeof url === 'object' && !(root && root.URL && url instanceof root.URL)) {
      options = url;
      url = options.url || options.uri;
    }
    options = options || {};
    if ('ping' in options || 'pong' in options) {
      throw new Error('The `ping` and `pong` options have been removed');
    }

    var reconnect = options.reconnect || {};
    this.options = {
      manual: !!options.manual,
      timeout: pick(options, 'timeout', 10000),
      pingTimeout: pick(options, 'pingTimeout', compiled.pingTimeout),
      queueSize: pick(options, 'queueSize', Infinity),
      strategy: parseStrategy(pick(options, 'strategy', '')),
      WebSocket: options.WebSocket,
      reconnect: {
        min: pick(reconnect, 'min', 500),
        max: pick(reconnect, 'max', Infinity),
        factor: pick(reconnect, 'factor', 2),
        retries: pick(reconnect, 'retries', 10),
        'reconnect timeout': pick(reconnect, 'reconnect timeout', 30000)
      }
    };

    this._events = {};
    this._timers = {};
    this.readyState = CLOSED;
    this.buffer = [];           // writes waiting for an open connection
    this.socket = null;         // the current WebSocket, if any
    this.attempt = null;        // the reconnect in progress (opts of the events)
    this.disconnect = false;    // true after "primus::server::close"
    this.online = !(root && root.navigator && root.navigator.onLine === false);
    this._ended = false;
    this.url = this.parse(url);

    if (!this.options.manual) this._timer('open', 0, this.open);
  }

  Primus.prototype = new Emitter();
  Primus.prototype.constructor = Primus;
  Primus.OPENING = Primus.prototype.OPENING = OPENING;
  Primus.CLOSED = Primus.prototype.CLOSED = CLOSED;
  Primus.OPEN = Primus.prototype.OPEN = OPEN;
  Primus.pathname = Primus.prototype.pathname = compiled.pathname;
  Primus.version = Primus.prototype.version = compiled.version;
  Primus.EventEmitter = Emitter;
  Primus.connect = function connect(url, options) { return new Primus(url, options); };

  // parse resolves url (default: the page's origin) into a URL object.
  Primus.prototype.parse = function parse(url) {
    var base = root && root.location ? root.location.href : undefined;
    if (!url) {
      if (!base) throw new Error('Primus: a URL is required outside a browser page');
      url = root.location.protocol + '//' + root.location.host;
    }
    return base ? new URL(String(url), base) : new URL(String(url));
  };

  // uri builds the WebSocket URL of a new connection.
  Primus.prototype.uri = function uri() {
    var u = this.url, parts = u.search.replace(/^\?/, '').split('&'), query = [], i;
    for (i = 0; i < parts.length; i++) {
      if (parts[i] && parts[i].split('=')[0] !== '_primuscb') query.push(parts[i]);
    }
    query.push('_primuscb=' + cacheBuster());
    var secure = u.protocol === 'https:' || u.protocol === 'wss:';
    return (secure ? 'wss://' : 'ws://') + u.host + this.pathname + '?' + query.join('&');
  };

  // --- timers ------------------------------------------------------------
  Primus.prototype._timer = function timer(name, ms, fn) {
    var self = this;
    this._clear(name);
    this._timers[name] = setTimeout(function fire() {
      delete self._timers[name];
      fn.call(self);
    }, Math.min(Math.max(+ms || 0, 0), MAX_DELAY));
  };

  Primus.prototype._clear = function clear(name) {
    if (name === undefined) {
      for (var key in this._timers) if (has(this._timers, key)) this._clear(key);
      return;
    }
    if (!has(this._timers, name)) return;
    clearTimeout(this._timers[name]);
    delete this._timers[name];
  };

  Primus.prototype._state = function state(value, name) {
    if (this.readyState === value) return;
    this.readyState = value;
    this.emit('readyStateChange', name);
  };

  Primus.prototype._strategy = function strategy(name) {
    return this.options.strategy.indexOf(name) !== -1;
  };

  // --- public API ----------------------------------------------------------

  // open starts connecting (done automatically unless `manual`).
  Primus.prototype.open = function open() {
    this._clear('open');
    if (this.socket || this.attempt) return this; // connecting, open or recovering
    this._ended = false;
    this._network(true);
    if (this.options.timeout) this._timer('connect', this.options.timeout, this._connectTimeout);
    this._connect();
    return this;
  };

  // write sends data as JSON, or queues it until the connection is open.
  Primus.prototype.write = function write(data) {
    this._write(data);
    return true;
  };

  Primus.prototype._write = function _write(data) {
    if (this.readyState !== OPEN || !this.socket) {
      var max = this.options.queueSize;
      if (!(max > 0)) return false;
      while (this.buffer.length >= max) this.buffer.shift();
      this.buffer.push(data);
      return false;
    }
    var text;
    try {
      text = JSON.stringify(data);
    } catch (e) {
      this.emit('error', e);
      return false;
    }
    if (text === undefined) return false;
    this.socket.send(text.replace(/\u2028/g, '\\u2028').replace(/\u2029/g, '\\u2029'));
    return true;
  };

  // id asks the server for this connection's spark id.
  Primus.prototype.id = function id(fn) {
    this._write('primus::id::');
    return this.once('incoming::id', fn);
  };

  // end writes data (if given), closes the connection and stops for good.
  Primus.prototype.end = function end(data) {
    if (this._ended) return this;
    if (data !== undefined) this.write(data);
    this._ended = true;
    var previous = this.readyState;
    this._drop();
    this._clear();
    this.attempt = null;
    this._network(false);
    this._state(CLOSED, 'end');
    if (previous === OPEN) this.emit('close');
    this.emit('end');
    return this;
  };

  // destroy ends the connection and removes every listener.
  Primus.prototype.destroy = function destroy() {
    if (this._destroyed) return false;
    this._destroyed = true;
    this.end();
    this.emit('destroy');
    this.removeAllListeners();
    this.buffer = [];
    return true;
  };

  // --- transport -------------------------------------------------------------
  Primus.prototype._connect = function connect() {
    var self = this, WS = this.options.WebSocket || (root && root.WebSocket), ws;
    this.disconnect = false;
    this._state(OPENING, 'opening');
    try {
      ws = new WS(this.uri());
    } catch (e) {
      this._error(e);
      this._closed();
      return;
    }
    ws.binaryType = 'arraybuffer';
    // Handlers ignore events of sockets we have dropped already.
    ws.onopen = function () { if (self.socket === ws) self._opened(); };
    ws.onmessage = function (evt) { if (self.socket === ws) self._message(evt.data); };
    ws.onerror = function (evt) { if (self.socket === ws) self._error(evt); };
    ws.onclose = function () { if (self.socket === ws) self._closed(); };
    this.socket = ws;
  };

  // _drop forgets the current socket and closes it.
  Primus.prototype._drop = function drop() {
    var ws = this.socket;
    this.socket = null;
    this._clear('heartbeat');
    if (!ws) return;
    ws.onopen = ws.onmessage = ws.onerror = ws.onclose = null;
    try { ws.close(); } catch (e) { /* already closed */ }
  };

  Primus.prototype._opened = function opened() {
    this._clear('connect');
    var attempt = this.attempt;
    if (attempt) {
      this._clear('reconnect timeout');
      this.attempt = null;
      attempt.duration = now() - attempt.start;
      this.emit('reconnected', attempt);
      if (!this.socket) return; // a listener ended the client
    }
    if (!this.online) {
      this.online = true;
      this.emit('online');
    }
    this._state(OPEN, 'open');
    this._heartbeat();
    var queued = this.buffer;
    this.buffer = [];
    for (var i = 0; i < queued.length; i++) this._write(queued[i]);
    this.emit('open');
  };

  Primus.prototype._message = function message(raw) {
    var data = raw;
    if (typeof raw === 'string') {
      try {
        data = JSON.parse(raw);
      } catch (e) {
        var err = new Error('Failed to decode incoming data: ' + e.message);
        err.raw = raw;
        this.emit('error', err);
        return;
      }
    }
    if (this._protocol(data)) return;
    this.emit('data', data, raw);
  };

  // _protocol handles "primus::<type>::<value>" messages; false = data.
  Primus.prototype._protocol = function protocol(msg) {
    if (typeof msg !== 'string' || msg.indexOf('primus::') !== 0) return false;
    var colon = msg.indexOf(':', 8);
    if (colon === -1) return false;
    var value = msg.slice(colon + 2);
    switch (msg.slice(8, colon)) {
      case 'ping':
        value = +value; // like Primus: the pong carries Number(value)
        this._heartbeat();
        this.emit('incoming::ping', value);
        this._write('primus::pong::' + value);
        this.emit('outgoing::pong', value);
        return true;
      case 'id':
        this.emit('incoming::id', value);
        return true;
      case 'server':
        if (value === 'close') this.disconnect = true;
        return true;
    }
    return false;
  };

  Primus.prototype._error = function error(evt) {
    if (this.attempt) return; // reported through the reconnect events
    var err = evt instanceof Error ? evt : new Error('WebSocket error');
    if (!(evt instanceof Error)) err.event = evt;
    this.emit('error', err);
  };

  // _closed handles the end of the current socket (or of its creation).
  Primus.prototype._closed = function closed() {
    var previous = this.readyState;
    this._drop();
    this._clear('connect');
    this._state(CLOSED, 'end');
    if (this._ended) return;

    if (this.disconnect) { // the server closed us on purpose: no reconnect
      this.disconnect = false;
      if (previous === OPEN) this.emit('close');
      if (!this._ended && !this.socket) this.end();
      return;
    }
    if (this.attempt) return this._retry(); // a reconnect attempt failed

    if (previous === OPEN) {
      this.emit('close');
      if (this._ended || this.socket || this.attempt) return; // a listener took over
      return this._strategy('disconnect') ? this._reconnect() : this.end();
    }
    // The first connection could not be established.
    return this._strategy('timeout') ? this._reconnect() : this.end();
  };

  Primus.prototype._connectTimeout = function connectTimeout() {
    if (this.readyState === OPEN || this.attempt) return;
    this._drop();
    this._state(CLOSED, 'end');
    this.emit('timeout');
    if (this._ended || this.socket || this.attempt) return;
    if (this._strategy('timeout')) this._reconnect();
    else this.end();
  };

  // _heartbeat (re)starts the ping timeout.
  Primus.prototype._heartbeat = function heartbeat() {
    if (!this.options.pingTimeout) return;
    this._timer('heartbeat', this.options.pingTimeout, function expired() {
      if (this.online) {
        this.online = false;
        this.emit('offline');
      }
      if (this.socket && this.readyState === OPEN) this._closed();
    });
  };

  // --- reconnection ----------------------------------------------------------
  Primus.prototype._reconnect = function reconnect() {
    if (this.attempt || this._ended) return;
    var r = this.options.reconnect;
    this.attempt = {
      attempt: 0,
      retries: r.retries,
      min: r.min,
      max: r.max,
      factor: r.factor,
      'reconnect timeout': r['reconnect timeout'],
      scheduled: 0,
      start: now(),
      duration: 0
    };
    this._backoff();
  };

  // _backoff schedules the next attempt, or gives up after `retries`.
  Primus.prototype._backoff = function backoff() {
    var a = this.attempt;
    if (a.attempt >= a.retries) {
      this.attempt = null;
      a.duration = now() - a.start;
      this.emit('reconnect failed', new Error('Unable to recover'), a);
      if (!this.socket && !this.attempt) this.end();
      return;
    }
    a.attempt++;
    a.scheduled = a.attempt === 1
      ? a.min
      : Math.min(Math.round((Math.random() + 1) * a.min * Math.pow(a.factor, a.attempt - 1)), a.max);

    this._timer('reconnect', a.scheduled, function attempt() {
      a.duration = now() - a.start;
      this.emit('reconnect', a);
      if (this.attempt !== a || this.socket) return; // a listener took over
      if (a['reconnect timeout']) {
        this._timer('reconnect timeout', a['reconnect timeout'], function expired() {
          a.duration = now() - a.start;
          this._drop();
          this._state(CLOSED, 'end');
          this.emit('reconnect timeout', new Error('Failed to reconnect in a timely manner'), a);
          if (this.attempt === a && !this.socket) this._retry();
        });
      }
      this._connect();
    });
    this.emit('reconnect scheduled', a);
  };

  Primus.prototype._retry = function retry() {
    this._clear('reconnect timeout');
    this._backoff();
  };

  // --- browser network events -------------------------------------------------
  Primus.prototype._network = function network(on) {
    if (!root || typeof root.addEventListener !== 'function') return;
    if (on === !!this._net) return;
    if (on) {
      var self = this;
      this._net = {
        offline: function () { self._offline(); },
        online: function () { self._online(); }
      };
      root.addEventListener('offline', this._net.offline, false);
      root.addEventListener('online', this._net.online, false);
    } else {
      root.removeEventListener('offline', this._net.offline, false);
      root.removeEventListener('online', this._net.online, false);
      this._net = null;
    }
  };

  Primus.prototype._offline = function offline() {
    if (this.online) {
      this.online = false;
      this.emit('offline');
    }
    var previous = this.readyState;
    this._drop();
    this._clear('connect');
    this._clear('reconnect');
    this._clear('reconnect timeout');
    this.attempt = null;
    this._state(CLOSED, 'end');
    if (previous === OPEN) this.emit('close');
    if (!this._strategy('online') && !this.socket) this.end();
  };

  Primus.prototype._online = function online() {
    if (this.online) return;
    this.online = true;
    this.emit('online');
    if (this._strategy('online') && !this.socket) this._reconnect();
  };

  return Primus;
}));
