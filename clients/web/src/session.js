// A player's session: connect, join, keep a verified replica, send inputs and events, predict
// the player's own entities, interpolate the others, come back to the same seat after the
// connection drops (gamesync.v2 RESUME: connection.js), and say why it ended.
//
//   const session = connect('wss://127.0.0.1:8443', { room: 'lobby', token, game: 'arena' });
//   session.on('close', (info) => show(info.text));
//   session.on('reconnecting', (r) => show(`reconnecting (${r.reason})…`));
//   session.on('resumed', (r) => show(`back after ${r.downtimeMs} ms`));
//   await session.ready;
//   session.setInput({ dx: 1, dy: 0 });       // sent once per tick
//   draw(session.view(performance.now()));     // every frame

import { Connection } from './connection.js';
import { codingFor } from './delta_v3.js';
import { DesyncError, RemoteProtocolError } from './errors.js';
import { Interpolator } from './interpolation.js';
import { dataText, decodeServerMessage, encodeEvent, encodeInput, encodeLeave, encodeResync, peekDeltaTick } from './messages.js';
import { Predictor } from './prediction.js';
import { CloseCode, Kind } from './protocol.js';
import { InputBuffer } from './reconnect.js';
import { Replica } from './replica.js';
import { Writer } from './wire.js';

/** @typedef {import('./wire.js').Int} Int */
/** @typedef {import('./schema.js').Value} Value */
/** @typedef {import('./protocol.js').CloseInfo} CloseInfo */
/** @typedef {import('./messages.js').Joined} Joined */
/** @typedef {import('./replica.js').Entity} Entity */
/** @typedef {import('./session_types.js').ConnectOptions} ConnectOptions */
/** @typedef {import('./session_types.js').View} View */

const DESYNC_WINDOW_MS = 60_000;

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
 */
export class Session extends Connection {
  /**
   * @param {string} url
   * @param {ConnectOptions} options
   */
  constructor(url, options) {
    super(url, options);
    this.maxQueuedInputs = options.maxQueuedInputs ?? 8;
    this.maxUnackedInputs = options.maxUnackedInputs ?? 256;
    this.maxBufferedBytes = options.maxBufferedBytes ?? 65536;
    /** @type {Replica<T> | null} */
    this.replica = null;
    /** @type {Predictor | null} */
    this.predictor = null;
    /** @type {Interpolator | null} */
    this.interpolator = null;
    /** the last input latency: send until the first state acking it (ms) */
    this.inputLatencyMs = NaN;
    /** its moving average */
    this.inputLatencyAvgMs = NaN;
    this._nextSeq = 1;
    /** the inputs not yet acked (sent or waiting), for sending again after a resume */
    this._inputs = new InputBuffer(this.policy.inputBufferSize);
    /** inputs this connection may still send before the next state (the server's per-tick queue) */
    this._budget = this.maxQueuedInputs;
    /** @type {Array<[number, number]>} (seq, sent at) of inputs not yet acked */
    this._unacked = [];
    /** @type {Record<string, unknown> | null} */
    this._held = null;
    this._lastAutoInput = -Infinity;
    this._needSnapshot = true;
    this._snapshotTick = -1;
    /** @type {Array<[number, number]>} (time, bytes) of the last second's messages */
    this._recent = [];
    /** @type {number[]} when desyncs were recovered from (rejoin or resync), for the rate limit */
    this._recoveries = [];
    this._lastResyncAt = -Infinity;
    this._writer = new Writer(64);
    this._connect('join');
  }

  // ------------------------------------------------------------ accessors
  /** The replica's tick (-1 before the first snapshot). */
  get tick() {
    return this.replica ? this.replica.tick : -1;
  }

  /**
   * Whether the room sends this client its view (interest management, JOINED flag VIEW): the
   * replica holds the entities near the player, which leave and come back as the player moves,
   * verified by view checksums. False before JOINED and on a v1 connection.
   */
  get viewRoom() {
    return this.joined?.view === true;
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

  // ------------------------------------------------------------ seats
  /** @override */
  _haveTick() {
    return this._needSnapshot || !this.replica ? 0 : Math.max(0, this.replica.tick);
  }

  /**
   * Open a new connection and join the same room again (after a desync, on a v1 server).
   * @param {string} reason
   */
  _rejoin(reason) {
    this.stats.rejoins++;
    const old = this._ws;
    if (old) {
      try {
        if (old.readyState === 1) old.send(encodeLeave());
      } catch {
        // the old connection is going anyway
      }
    }
    this._detach(CloseCode.NORMAL, `rejoining: ${reason}`);
    this._resetGame();
    this._connect('rejoin');
  }

  /** @override A new seat: a new replica, seq numbering from 1, nothing pending. */
  _resetGame() {
    this.replica = null;
    this._resumeToken = '';
    this._needSnapshot = true;
    this._snapshotTick = -1;
    this._nextSeq = 1;
    this._inputs.clear();
    this._unacked = [];
    this.predictor?.reset();
    this.interpolator?.reset();
  }

  // ------------------------------------------------------------ incoming
  /**
   * @override
   * @param {unknown} data
   */
  _onData(data) {
    const stats = this.stats;
    stats.messagesIn++;
    const now = this._now();
    this._lastMessageAt = now;
    if (typeof data === 'string') {
      stats.bytesIn += data.length;
      this._fail(CloseCode.UNSUPPORTED_DATA, 'the server sent a text message');
      return;
    }
    const bytes = data instanceof Uint8Array ? data : new Uint8Array(/** @type {ArrayBuffer} */ (data));
    stats.bytesIn += bytes.length;
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
    const replica = this._connJoined ? this.replica : null;
    if (bytes[0] === Kind.DELTA && replica) {
      const tick = peekDeltaTick(bytes);
      if (this._needSnapshot || (typeof tick === 'number' && tick <= this._snapshotTick)) {
        this.stats.deltas++;
        this.stats.deltasSkipped++;
        return;
      }
    }
    const version = this.version === 1 || this.version === 2 || this.version === 3 ? this.version : undefined;
    const msg = replica
      ? decodeServerMessage(bytes, replica.schema, replica.typeOf, version, { coding: replica.coding, predict: replica.predicted })
      : decodeServerMessage(bytes, undefined, undefined, version);
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
          this._cancel('resync');
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
        if (this._connJoined) throw new RemoteProtocolError('second JOINED', CloseCode.PROTOCOL_ERROR);
        this._onJoined(msg);
        return;
      case 'ERROR':
        this._serverClose = { code: msg.code, text: msg.message };
        return;
      case 'CLOSE':
        this._serverClose = { code: msg.code, text: msg.reason };
        return;
      case 'REDIRECT':
        this._redirect(msg);
        return;
    }
  }

  /** @param {Joined} msg */
  _onJoined(msg) {
    const previous = this.joined;
    if (this._kind === 'resume') {
      if (!msg.resumed || !previous || msg.player != previous.player || msg.room !== previous.room) {
        throw new RemoteProtocolError(`a RESUME answered by ${msg.resumed ? `player ${msg.player} in room ${msg.room}` : 'a fresh JOINED'}`, CloseCode.PROTOCOL_ERROR);
      }
      const same = (/** @type {{toBytes(): Uint8Array}} */ a, /** @type {{toBytes(): Uint8Array}} */ b) => a.toBytes().join() === b.toBytes().join();
      if (!same(msg.schema, previous.schema) || !same(msg.inputSchema, previous.inputSchema)) {
        throw new RemoteProtocolError('the resumed room has another schema', CloseCode.PROTOCOL_ERROR);
      }
      if ((msg.view === true) !== (previous.view === true)) {
        throw new RemoteProtocolError(`the resumed room ${msg.view ? 'sends' : 'no longer sends'} a view`, CloseCode.PROTOCOL_ERROR);
      }
      this._connJoined = true;
      this._noteSeated();
      // the replica's schema objects stay (its entities are typed by them)
      this.joined = { ...msg, schema: previous.schema, inputSchema: previous.inputSchema };
      // the new connection may speak another version: its catch-up or snapshot sets the motion
      if (this.replica) this.replica.coding = codingFor(msg.version, msg.view === true);
      this._resumeToken = msg.resumeToken ?? '';
      // inputs the game applied are done; the rest go out again, in order, with their seqs
      const applied = Number(msg.inputSeq ?? 0);
      this._inputs.ack(applied);
      this._inputs.resendAll();
      const t = this._now();
      this._unacked = this._unacked.filter(([seq]) => seq > applied).map(([seq]) => [seq, t]);
      this._budget = this.maxQueuedInputs;
      return;
    }
    if (msg.resumed) throw new RemoteProtocolError('a JOIN answered by a RESUMED JOINED', CloseCode.PROTOCOL_ERROR);
    const rejoin = previous !== null;
    if (rejoin) this._resetGame();
    this._connJoined = true;
    this._noteSeated();
    this.joined = msg;
    this._resumeToken = msg.resumeToken ?? '';
    this.replica = new Replica(msg.schema, { view: msg.view === true, coding: codingFor(msg.version, msg.view === true) });
    this._budget = this.maxQueuedInputs;
    const opts = this.options;
    if (opts.predict && !this.predictor) {
      this.predictor = new Predictor({
        predict: opts.predict,
        dt: 1 / msg.tickRate,
        maxPending: this.maxUnackedInputs,
        smoothingMs: opts.smoothingMs,
        snapDistance: opts.snapDistance,
        wrap: opts.wrap,
      });
    }
    if (!this.interpolator || this.interpolator.intervalMs !== 1000 / msg.tickRate) {
      this.interpolator = new Interpolator({ ...opts.interpolation, tickRate: msg.tickRate, wrap: opts.wrap });
    }
    const { player, room, game, tickRate, schema, inputSchema, version } = msg;
    const resumable = this._resumeToken !== '';
    this.emit('joined', { player, room, game, tickRate, schema, inputSchema, rejoin, version, resumable, seatHoldMs: msg.seatHoldMs ?? 0, view: msg.view === true });
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
    this._inputs.ack(ack);
    this._budget = this.maxQueuedInputs;
    const own = this._ownEntities();
    this.predictor?.rebase(own, ack, now);
    this.interpolator?.push(replica.tick, now, replica.entities.values());
    if (this.state !== 'playing') {
      const outage = this._outage;
      this.state = 'playing';
      this._outage = null;
      this._cancel('conn');
      if (!this._readyDone) {
        this._readyDone = true;
        this._resolveReady(this);
      }
      if (outage && this._kind === 'resume') {
        const downtimeMs = now - outage.startedAt;
        const inputsResent = this._inputs.unsent;
        this.stats.resumes++;
        this.stats.inputsResent += inputsResent;
        this.lastDowntimeMs = downtimeMs;
        this.emit('resumed', { attempts: outage.attempt, downtimeMs, player: this.player, tick: replica.tick, caughtUpBy: kind, inputsResent });
      }
    }
    if (this._timer.stall === undefined) this._armStall();
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
    const now = this._now();
    const v2 = this.version >= 2 && this.state === 'playing';
    const rejoining = !v2 && (this.options.rejoinOnDesync ?? true);
    const recovering = v2 || rejoining;
    if (recovering) {
      this._recoveries = this._recoveries.filter((t) => now - t < DESYNC_WINDOW_MS);
      if (this._recoveries.length >= (this.options.maxRejoins ?? 3)) {
        this._fail(CloseCode.INVALID_PAYLOAD, `the game state kept diverging from the server's (${reason})`);
        return;
      }
      this._recoveries.push(now);
    }
    this.emit('desync', { tick: this.tick, reason, rejoining, resyncing: v2 });
    if (this.state === 'closed') return;
    if (rejoining) {
      this._rejoin(reason);
      return;
    }
    this._needSnapshot = true; // ignore deltas until the server sends a snapshot
    if (v2) this._resync();
  }

  /** Ask for a snapshot (v2 RESYNC), at most once per `resyncIntervalMs`, until one arrives. */
  _resync() {
    if (!this._needSnapshot || this.state !== 'playing' || this.version < 2) return;
    const now = this._now();
    const interval = this.policy.resyncIntervalMs;
    if (now - this._lastResyncAt >= interval && this._send(encodeResync())) {
      this._lastResyncAt = now;
      this.stats.resyncs++;
    }
    // the server ignores a RESYNC over its rate limit: ask again after the interval
    this._after('resync', Math.max(1, this._lastResyncAt + interval - now), () => this._resync());
  }

  /**
   * @override
   * @param {CloseInfo} info
   */
  _finish(info) {
    this._held = null;
    super._finish(info);
  }

  // ------------------------------------------------------------ outgoing
  /** Whether inputs must wait: no connection playing, or its socket is backed up. */
  _mustWait() {
    const ws = this._ws;
    return this.state !== 'playing' || !ws || ws.readyState !== 1 || ws.bufferedAmount > this.maxBufferedBytes;
  }

  /** Send the waiting inputs, in order, at most `maxQueuedInputs` between two states. */
  _flush() {
    const inputs = this._inputs;
    while (this._budget > 0 && !this._mustWait()) {
      const next = inputs.next();
      if (!next) break;
      this._send(next.bytes);
      inputs.markSent();
      this._budget--;
      this.stats.inputsSent++;
    }
  }

  /**
   * Send one input now (fields by name; missing ones take their default) and predict it
   * locally at once. Returns its sequence number, or 0 if it was dropped: not joined yet, or
   * closed. While reconnecting to a seat that can be resumed, inputs are numbered and kept
   * (the last `inputBufferSize`), and sent once the seat is back.
   * @param {Record<string, unknown>} values
   * @returns {number}
   */
  sendInput(values) {
    const resumable = this.state === 'reconnecting' && this._outage?.resume === true && this.replica !== null;
    if (!this.joined || (this.state !== 'playing' && !resumable)) {
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
    const inputs = this._inputs;
    let dropped = inputs.push(seq, encodeInput(schema, seq, codes, this._writer));
    if (this.state === 'playing' && this._mustWait()) dropped += inputs.trimUnsent(this.maxQueuedInputs);
    this.stats.inputsDropped += dropped;
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
   * it could not be sent now: not playing (reconnecting included), or the socket is backed up.
   * @param {string} name
   * @param {Uint8Array | string} [data] a string is sent as UTF-8
   */
  sendEvent(name, data) {
    const bytes = encodeEvent(name, data); // throws LocalProtocolError for over-limit names or data
    if (this._mustWait() || !this._send(bytes)) {
      this.stats.eventsRefused++;
      return false;
    }
    this.stats.eventsSent++;
    return true;
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
      entities: this.replica ? this.replica.entities.size : 0,
      viewRoom: this.viewRoom,
    };
  }
}
