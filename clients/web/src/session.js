// A player's session: connect, join, keep a verified replica, send inputs and events, predict
// the player's own entities, interpolate the others, and say why it ended.
//
//   const session = connect('wss://127.0.0.1:8443', { room: 'lobby', token, game: 'arena' });
//   session.on('close', (info) => show(info.text));
//   await session.ready;
//   session.setInput({ dx: 1, dy: 0 });       // sent once per tick
//   draw(session.view(performance.now()));     // every frame

import { Emitter } from './emitter.js';
import { DesyncError, RemoteProtocolError, SessionClosedError } from './errors.js';
import { Interpolator } from './interpolation.js';
import { dataText, decodeServerMessage, encodeEvent, encodeInput, encodeJoin, encodeLeave, peekDeltaTick } from './messages.js';
import { Predictor } from './prediction.js';
import { CloseCode, Kind, SUBPROTOCOL, describeClose } from './protocol.js';
import { Replica } from './replica.js';
import { Writer } from './wire.js';

/** @typedef {import('./wire.js').Int} Int */
/** @typedef {import('./schema.js').Value} Value */
/** @typedef {import('./protocol.js').CloseInfo} CloseInfo */
/** @typedef {import('./messages.js').Joined} Joined */
/** @typedef {import('./replica.js').Entity} Entity */
/** @typedef {import('./session_types.js').WebSocketLike} WebSocketLike */
/** @typedef {import('./session_types.js').WebSocketConstructor} WebSocketConstructor */
/** @typedef {import('./session_types.js').ConnectOptions} ConnectOptions */
/** @typedef {import('./session_types.js').SessionEvents} SessionEvents */
/** @typedef {import('./session_types.js').SessionState} SessionState */
/** @typedef {import('./session_types.js').View} View */

const REJOIN_WINDOW_MS = 60_000;
const LEAVE_TIMEOUT_MS = 2000;

/**
 * Close a WebSocket with `code` if it may: a browser's close() takes only 1000 and 3000-4999,
 * and a reason of at most 123 bytes, so a protocol code (1002, 1007, ...) falls back to 1000.
 * @param {WebSocketLike} ws
 * @param {number} code
 * @param {string} [reason]
 */
function closeSocket(ws, code, reason = '') {
  const text = reason.replace(/[^\x20-\x7e]/g, '?').slice(0, 120);
  /** @type {Array<() => void>} */
  const tries = [() => ws.close(code, text), () => ws.close(CloseCode.NORMAL, text), () => ws.close()];
  for (const attempt of tries) {
    try {
      attempt();
      return;
    } catch {
      // not a code this WebSocket may send (or already closed): try the next
    }
  }
}

/**
 * @param {string} url
 */
function wsUrl(url) {
  const u = new URL(url);
  if (u.protocol === 'https:') u.protocol = 'wss:';
  else if (u.protocol === 'http:') u.protocol = 'ws:';
  if (u.protocol !== 'wss:' && u.protocol !== 'ws:') throw new TypeError(`the URL must start with wss:// or ws://, not ${url}`);
  return u.toString();
}

/**
 * Connect to a server and join a room. Returns the session at once; `await session.ready`
 * for the first snapshot (it rejects with SessionClosedError if the join fails).
 * @template {Record<string, Record<string, Value>>} [T=Record<string, Record<string, any>>]
 * @param {string} url `wss://host:port` (or `ws://` for a server run with --insecure)
 * @param {ConnectOptions} [options]
 * @returns {Session<T>}
 */
export function connect(url, options = {}) {
  return new Session(url, options);
}

/**
 * @template {Record<string, Record<string, Value>>} [T=Record<string, Record<string, any>>]
 * @extends {Emitter<SessionEvents>}
 */
export class Session extends Emitter {
  /**
   * @param {string} url
   * @param {ConnectOptions} options
   */
  constructor(url, options) {
    super();
    this.url = wsUrl(url);
    this.options = options;
    const WS = options.WebSocket ?? /** @type {WebSocketConstructor | undefined} */ (globalThis.WebSocket);
    if (!WS) throw new TypeError('no WebSocket: pass the WebSocket option (in Node 20, e.g. the `ws` package)');
    this._WS = WS;
    this._now = options.now ?? (() => performance.now());
    this.maxQueuedInputs = options.maxQueuedInputs ?? 8;
    this.maxUnackedInputs = options.maxUnackedInputs ?? 256;
    this.maxBufferedBytes = options.maxBufferedBytes ?? 65536;
    /** @type {SessionState} */
    this.state = 'connecting';
    /** @type {CloseInfo | null} why the session ended, once it has */
    this.closeInfo = null;
    /** @type {Joined | null} */
    this.joined = null;
    /** @type {Replica<T> | null} */
    this.replica = null;
    /** @type {Predictor | null} */
    this.predictor = null;
    /** @type {Interpolator | null} */
    this.interpolator = null;
    this.stats = {
      messagesIn: 0, bytesIn: 0, messagesOut: 0, bytesOut: 0,
      snapshots: 0, deltas: 0, deltasSkipped: 0,
      checksumsVerified: 0, checksumMismatches: 0, desyncs: 0, rejoins: 0,
      inputsSent: 0, inputsAcked: 0, inputsDropped: 0,
      eventsIn: 0, eventsSent: 0, eventsRefused: 0,
    };
    /** the last input latency: send until the first state acking it (ms) */
    this.inputLatencyMs = NaN;
    /** its moving average */
    this.inputLatencyAvgMs = NaN;
    this._nextSeq = 1;
    /** @type {Uint8Array[]} encoded inputs waiting for the socket */
    this._queue = [];
    /** @type {Array<[number, number]>} (seq, sent at) of inputs not yet acked */
    this._unacked = [];
    /** @type {Record<string, unknown> | null} */
    this._held = null;
    this._lastAutoInput = -Infinity;
    this._needSnapshot = true;
    this._snapshotTick = -1;
    /** @type {Array<[number, number]>} (time, bytes) of the last second's messages */
    this._recent = [];
    /** @type {number[]} */
    this._rejoinTimes = [];
    /** @type {{code: number, text: string} | null} the ERROR/CLOSE the server sent */
    this._serverClose = null;
    /** @type {WebSocketLike | null} */
    this._ws = null;
    this._writer = new Writer(64);
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    this._timer = undefined;
    /** @type {Array<(info: CloseInfo) => void>} */
    this._closeWaiters = [];
    /** @type {(s: Session<T>) => void} */
    let resolve = () => {};
    /** @type {(e: Error) => void} */
    let reject = () => {};
    /** @type {Promise<Session<T>>} resolves with the session once it holds the first snapshot */
    this.ready = new Promise((res, rej) => {
      resolve = res;
      reject = rej;
    });
    this.ready.catch(() => {}); // a page that never awaits it must not see an unhandled rejection
    this._resolveReady = resolve;
    this._rejectReady = reject;
    this._open(false);
  }

  // ------------------------------------------------------------ accessors
  /** Our player number (0 before JOINED). */
  get player() {
    return this.joined ? this.joined.player : 0;
  }
  /** The room joined (a private room's id after a private join). */
  get room() {
    return this.joined ? this.joined.room : '';
  }
  get game() {
    return this.joined ? this.joined.game : '';
  }
  get tickRate() {
    return this.joined ? this.joined.tickRate : 0;
  }
  /** The replica's tick (-1 before the first snapshot). */
  get tick() {
    return this.replica ? this.replica.tick : -1;
  }
  /** The last input seq the server applied for us (0 = none yet). */
  get lastAcked() {
    const a = this.replica && this.joined ? this.replica.acks.get(this.joined.player) : undefined;
    return typeof a === 'number' ? a : 0;
  }
  /** The last input seq sent or queued. */
  get lastSent() {
    return this._nextSeq - 1;
  }
  /** Inputs sent and not yet acked. */
  get unacked() {
    return this._unacked.length;
  }

  /**
   * The entities of one type, from the replica (the server's state as last received).
   * @template {string} K
   * @param {K} type
   */
  entities(type) {
    return this.replica ? this.replica.ofType(type) : [];
  }

  // ------------------------------------------------------------ connecting
  /** @param {boolean} rejoin */
  async _open(rejoin) {
    const opts = this.options;
    this.state = 'connecting';
    const timeout = opts.connectTimeoutMs ?? 10000;
    clearTimeout(this._timer);
    this._timer = setTimeout(() => this._fail(CloseCode.ABNORMAL, `timed out after ${timeout} ms connecting and joining`), timeout);
    let token = '';
    try {
      token = typeof opts.token === 'function' ? await opts.token() : opts.token ?? '';
    } catch (err) {
      this._finish(describeClose(CloseCode.UNAUTHORIZED, `could not get a token: ${err instanceof Error ? err.message : String(err)}`));
      return;
    }
    if (/** @type {SessionState} */ (this.state) === 'closed') return;
    const previous = this.joined;
    /** @type {Uint8Array} */
    let join;
    try {
      join = encodeJoin(
        rejoin && previous
          ? { room: previous.room, game: previous.game, name: opts.name, token }
          : { room: opts.room ?? '', game: opts.game ?? '', name: opts.name ?? '', token, private: !!opts.private },
      );
    } catch (err) {
      this._finish(describeClose(CloseCode.BAD_JOIN, err instanceof Error ? err.message : String(err)));
      return;
    }
    /** @type {WebSocketLike} */
    let ws;
    try {
      ws = new this._WS(this.url, [SUBPROTOCOL]);
    } catch (err) {
      this._finish(describeClose(CloseCode.ABNORMAL, err instanceof Error ? err.message : String(err)));
      return;
    }
    ws.binaryType = 'arraybuffer';
    this._ws = ws;
    ws.onopen = () => {
      if (this._ws !== ws) return;
      if (ws.protocol !== SUBPROTOCOL) {
        this._fail(CloseCode.PROTOCOL_ERROR, `the server did not accept the subprotocol ${SUBPROTOCOL}`);
        return;
      }
      this.state = 'joining';
      this._send(join);
    };
    ws.onmessage = (ev) => {
      if (this._ws === ws) this._onData(ev.data);
    };
    ws.onclose = (ev) => {
      if (this._ws === ws) this._onClose(ev.code, ev.reason);
    };
    ws.onerror = () => {};
  }

  /**
   * Open a new connection and join the same room again (after a desync).
   * @param {string} reason
   */
  _rejoin(reason) {
    const now = this._now();
    this._rejoinTimes = this._rejoinTimes.filter((t) => now - t < REJOIN_WINDOW_MS);
    if (this._rejoinTimes.length >= (this.options.maxRejoins ?? 3)) {
      this._fail(CloseCode.INVALID_PAYLOAD, `the game state kept diverging from the server's (${reason})`);
      return;
    }
    this._rejoinTimes.push(now);
    this.stats.rejoins++;
    const old = this._ws;
    this._ws = null;
    if (old) {
      try {
        if (old.readyState === 1) old.send(encodeLeave());
      } catch {
        // the old connection is going anyway
      }
      closeSocket(old, CloseCode.NORMAL);
    }
    this._resetGame();
    this._open(true);
  }

  _resetGame() {
    this.replica = null;
    this._needSnapshot = true;
    this._snapshotTick = -1;
    this._queue = [];
    this._unacked = [];
    this.predictor?.reset();
    this.interpolator?.reset();
  }

  // ------------------------------------------------------------ incoming
  /** @param {unknown} data */
  _onData(data) {
    const stats = this.stats;
    stats.messagesIn++;
    if (typeof data === 'string') {
      stats.bytesIn += data.length;
      this._fail(CloseCode.UNSUPPORTED_DATA, 'the server sent a text message');
      return;
    }
    const bytes = data instanceof Uint8Array ? data : new Uint8Array(/** @type {ArrayBuffer} */ (data));
    stats.bytesIn += bytes.length;
    const now = this._now();
    this._recent.push([now, bytes.length]);
    while (this._recent.length && now - this._recent[0][0] > 1000) this._recent.shift();
    try {
      this._handle(bytes, now);
    } catch (err) {
      if (err instanceof DesyncError) this._desync(err.message);
      else if (err instanceof RemoteProtocolError) this._fail(err.closeCode, `bad message from the server: ${err.message}`);
      else throw err;
    }
    this._flush();
  }

  /**
   * @param {Uint8Array} bytes
   * @param {number} now
   */
  _handle(bytes, now) {
    const replica = this.replica;
    if (bytes[0] === Kind.DELTA && replica) {
      const tick = peekDeltaTick(bytes);
      if (this._needSnapshot || (typeof tick === 'number' && tick <= this._snapshotTick)) {
        this.stats.deltas++;
        this.stats.deltasSkipped++;
        return;
      }
    }
    const msg = replica ? decodeServerMessage(bytes, replica.schema, replica.typeOf) : decodeServerMessage(bytes);
    switch (msg.kind) {
      case 'DELTA':
      case 'SNAPSHOT': {
        const r = /** @type {Replica<T>} */ (replica);
        const checks = r.checks;
        if (msg.kind === 'DELTA') {
          this.stats.deltas++;
          r.applyDelta(msg);
        } else {
          this.stats.snapshots++;
          r.applySnapshot(msg);
          this._needSnapshot = false;
          this._snapshotTick = r.tick;
        }
        this.stats.checksumsVerified += r.checks - checks;
        this._afterState(msg.kind, now, r.checks > checks);
        return;
      }
      case 'ROOM_EVENT':
        this.stats.eventsIn++;
        this.emit('event', { sender: msg.sender, name: msg.name, data: msg.data, text: dataText(msg.data) });
        return;
      case 'JOINED':
        if (this.replica) throw new RemoteProtocolError('second JOINED', CloseCode.PROTOCOL_ERROR);
        this._onJoined(msg);
        return;
      case 'ERROR':
        this._serverClose = { code: msg.code, text: msg.message };
        return;
      case 'CLOSE':
        this._serverClose = { code: msg.code, text: msg.reason };
        return;
    }
  }

  /** @param {Joined} msg */
  _onJoined(msg) {
    const rejoin = this.joined !== null;
    this.joined = msg;
    this.replica = new Replica(msg.schema);
    const opts = this.options;
    if (opts.predict && !this.predictor) {
      this.predictor = new Predictor({
        predict: opts.predict,
        dt: 1 / msg.tickRate,
        maxPending: this.maxUnackedInputs,
        smoothingMs: opts.smoothingMs,
        snapDistance: opts.snapDistance,
      });
    }
    if (!this.interpolator || this.interpolator.intervalMs !== 1000 / msg.tickRate) {
      this.interpolator = new Interpolator({ ...opts.interpolation, tickRate: msg.tickRate });
    }
    const { player, room, game, tickRate, schema, inputSchema } = msg;
    this.emit('joined', { player, room, game, tickRate, schema, inputSchema, rejoin });
  }

  /**
   * @param {'SNAPSHOT' | 'DELTA'} kind
   * @param {number} now
   * @param {boolean} verified
   */
  _afterState(kind, now, verified) {
    const replica = /** @type {Replica<T>} */ (this.replica);
    const ack = this.lastAcked;
    const unacked = this._unacked;
    let n = 0;
    while (n < unacked.length && unacked[n][0] <= ack) {
      const latency = now - unacked[n][1];
      this.inputLatencyMs = latency;
      this.inputLatencyAvgMs = Number.isNaN(this.inputLatencyAvgMs) ? latency : this.inputLatencyAvgMs + 0.1 * (latency - this.inputLatencyAvgMs);
      n++;
    }
    if (n) {
      unacked.splice(0, n);
      this.stats.inputsAcked += n;
    }
    const own = this._ownEntities();
    this.predictor?.rebase(own, ack, now);
    this.interpolator?.push(replica.tick, now, replica.entities.values());
    if (this.state !== 'playing') {
      this.state = 'playing';
      clearTimeout(this._timer);
      this._resolveReady(this);
    }
    this.emit('state', { kind, tick: replica.tick, ack, verified });
    // inputs held with setInput() go out once per tick, right after the tick's state
    if (this._held && now - this._lastAutoInput >= 500 / this.tickRate) {
      this._lastAutoInput = now;
      this.sendInput(this._held);
    }
  }

  _ownEntities() {
    const replica = this.replica;
    if (!replica || !this.predictor) return [];
    const player = this.player;
    const owns = this.options.owns ?? ((/** @type {Entity} */ e) => e.type.index.has('owner') && e.get('owner') == player);
    /** @type {Entity[]} */
    const out = [];
    for (const e of replica.entities.values()) if (owns(e, player)) out.push(e);
    return out;
  }

  /** @param {string} reason */
  _desync(reason) {
    this.stats.desyncs++;
    if (reason.startsWith('checksum mismatch')) this.stats.checksumMismatches++;
    const rejoining = this.options.rejoinOnDesync ?? true;
    this.emit('desync', { tick: this.tick, reason, rejoining });
    if (rejoining) this._rejoin(reason);
    else this._needSnapshot = true; // ignore deltas until the server sends a snapshot
  }

  /**
   * @param {number} code
   * @param {string} reason
   */
  _onClose(code, reason) {
    const server = this._serverClose;
    const info = server ? describeClose(server.code, server.text, true) : describeClose(code, reason);
    this._finish(info);
  }

  /**
   * End the session from our side: close the socket with `code` and report it.
   * @param {number} code
   * @param {string} detail
   */
  _fail(code, detail) {
    if (this.state === 'closed') return;
    const ws = this._ws;
    this._ws = null;
    if (ws) closeSocket(ws, code === CloseCode.ABNORMAL ? CloseCode.NORMAL : code, detail);
    this._finish(describeClose(code, detail));
  }

  /** @param {CloseInfo} info */
  _finish(info) {
    if (this.state === 'closed') return;
    this.state = 'closed';
    this.closeInfo = info;
    clearTimeout(this._timer);
    const ws = this._ws;
    this._ws = null;
    if (ws && ws.readyState <= 1) closeSocket(ws, CloseCode.NORMAL);
    this._held = null;
    this._rejectReady(new SessionClosedError(info));
    this.emit('close', info);
    for (const w of this._closeWaiters.splice(0)) w(info);
  }

  // ------------------------------------------------------------ outgoing
  /** @param {Uint8Array} data */
  _send(data) {
    const ws = this._ws;
    if (!ws || ws.readyState !== 1) return false;
    ws.send(data);
    this.stats.messagesOut++;
    this.stats.bytesOut += data.length;
    return true;
  }

  _flush() {
    const ws = this._ws;
    while (this._queue.length && ws && ws.readyState === 1 && ws.bufferedAmount <= this.maxBufferedBytes) {
      this._send(/** @type {Uint8Array} */ (this._queue.shift()));
      this.stats.inputsSent++;
    }
  }

  /**
   * Send one input now (fields by name; missing ones take their default) and predict it
   * locally at once. Returns its sequence number, or 0 if the session is not playing.
   * @param {Record<string, unknown>} values
   * @returns {number}
   */
  sendInput(values) {
    if (this.state !== 'playing' || !this.joined) {
      this.stats.inputsDropped++;
      return 0;
    }
    const schema = this.joined.inputSchema;
    const codes = schema.codesFor(values);
    const seq = this._nextSeq++;
    const now = this._now();
    this.predictor?.applyInput(seq, schema.valuesFor(codes), now);
    this._unacked.push([seq, now]);
    if (this._unacked.length > this.maxUnackedInputs) this._unacked.shift();
    this._queue.push(encodeInput(schema, seq, codes, this._writer));
    if (this._queue.length > this.maxQueuedInputs) {
      this._queue.shift();
      this.stats.inputsDropped++;
    }
    this._flush();
    return seq;
  }

  /**
   * Hold an input: it is sent once per tick, right after each state arrives, until changed.
   * `null` stops sending (the server keeps applying the last input it got, so hold a neutral
   * input rather than none to stop moving).
   * @param {Record<string, unknown> | null} values
   */
  setInput(values) {
    if (values && this.joined) this.joined.inputSchema.codesFor(values); // check it now
    this._held = values ? { ...values } : null;
  }

  /**
   * Send a room event (the default game relays it to everyone, e.g. chat). Returns false if
   * it could not be sent now: not playing, or the socket is backed up.
   * @param {string} name
   * @param {Uint8Array | string} [data] a string is sent as UTF-8
   */
  sendEvent(name, data) {
    const bytes = encodeEvent(name, data); // throws LocalProtocolError for over-limit names or data
    const ws = this._ws;
    if (this.state !== 'playing' || !ws || ws.bufferedAmount > this.maxBufferedBytes || !this._send(bytes)) {
      this.stats.eventsRefused++;
      return false;
    }
    this.stats.eventsSent++;
    return true;
  }

  /**
   * Leave the room: LEAVE, then the server closes (1000). Resolves with how it ended.
   * @returns {Promise<CloseInfo>}
   */
  leave() {
    if (this.closeInfo) return Promise.resolve(this.closeInfo);
    const done = new Promise((resolve) => this._closeWaiters.push(resolve));
    if (this.state === 'playing' || this.state === 'joining') this._send(encodeLeave());
    const ws = this._ws;
    const timer = setTimeout(() => {
      if (ws && this._ws === ws) closeSocket(ws, CloseCode.NORMAL, 'left');
      this._finish(describeClose(CloseCode.NORMAL, 'left'));
    }, this.state === 'playing' ? LEAVE_TIMEOUT_MS : 0);
    return done.finally(() => clearTimeout(timer));
  }

  /** Same as leave(). */
  close() {
    return this.leave();
  }

  // ------------------------------------------------------------ what to draw
  /**
   * Everything to draw at `nowMs`: own entities predicted (and smoothed), the others
   * interpolated at the render time.
   * @param {number} [nowMs]
   * @returns {View}
   */
  view(nowMs = this._now()) {
    const interp = this.interpolator;
    const pred = this.predictor;
    const entities = interp ? interp.view(nowMs, pred ? (id) => pred.own.has(id) : undefined) : [];
    if (pred && this.replica) {
      for (const [id, o] of pred.own) {
        const values = pred.visible(id, nowMs);
        if (values) entities.push({ id, type: o.type.name, values, predicted: true });
      }
    }
    return {
      tick: this.tick,
      renderTick: interp ? interp.renderTick : NaN,
      delayMs: interp ? interp.delayMs : NaN,
      entities,
    };
  }

  /**
   * Numbers for a status panel.
   * @param {number} [nowMs]
   */
  metrics(nowMs = this._now()) {
    let bytes = 0;
    for (const [t, b] of this._recent) if (nowMs - t <= 1000) bytes += b;
    const pred = this.predictor;
    const interp = this.interpolator;
    return {
      state: this.state,
      tick: this.tick,
      inputLatencyMs: this.inputLatencyAvgMs,
      bytesInPerSecond: bytes,
      checksumsVerified: this.stats.checksumsVerified,
      checksumMismatches: this.stats.checksumMismatches,
      predictionError: pred ? pred.error : 0,
      maxPredictionError: pred ? pred.maxError : 0,
      correction: pred ? pred.correction() : 0,
      interpolationDelayMs: interp ? interp.delayMs : NaN,
      jitterMs: interp ? interp.jitterMs : NaN,
      unacked: this._unacked.length,
    };
  }
}
