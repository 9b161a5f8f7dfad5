// The connection half of a session: the WebSocket, its timers, and coming back after it drops.
// session.js builds the game half (replica, inputs, prediction) on top of this class.
//
// The connection's life: `connecting` -> `joining` -> `playing`. When a seated session's
// connection ends unexpectedly (which ends: reconnect.js), or goes silent for `stallTimeoutMs`,
// the session goes `reconnecting`: attempts after a backoff with full jitter, each a new
// WebSocket that sends RESUME (room, resume token, replica tick). The server answers with a
// RESUMED JOINED and a catch-up DELTA or a SNAPSHOT. A RESUME refused (4013 seat lost, 4001
// token refused) falls back to a fresh JOIN of the same room. `closed` is the end: our own
// leave(), a kick, a refusal, another connection taking the seat, or attempts run out.
//
// In a cluster (docs/protocol.md "Clusters: redirects") a node that does not host the room
// answers the JOIN or RESUME with REDIRECT {url, room} and closes with 4015: the session opens
// a WebSocket to that URL (same subprotocols) and sends the same JOIN (same token) or RESUME,
// at most 3 times per join (redirect.js). The node that seats it is the owner: a RESUME goes
// there first, and back to the entry URL (the one given to connect()) if it cannot be reached.
// A first JOIN refused with 4016 (the node cannot reach the room directory) is tried again
// with backoff while connectTimeoutMs lasts.

import { Emitter } from './emitter.js';
import { RemoteProtocolError, SessionClosedError } from './errors.js';
import { encodeJoin, encodeLeave, encodeResume } from './messages.js';
import { CloseCode, SUPPORTED_SUBPROTOCOLS, describeClose, versionOfSubprotocol } from './protocol.js';
import { LostReason, ReconnectReason, attemptOutcome, backoffDelay, reconnectPolicy, reconnectReasonOf } from './reconnect.js';
import { redirectProblem } from './redirect.js';
import { REAL_TIMERS, closeSocket, wsUrl } from './socket.js';

/** @typedef {import('./protocol.js').CloseInfo} CloseInfo */
/** @typedef {import('./messages.js').Joined} Joined */
/** @typedef {import('./messages.js').RedirectMessage} RedirectMessage */
/** @typedef {import('./reconnect.js').ReconnectPolicy} ReconnectPolicy */
/** @typedef {import('./reconnect.js').ReconnectReasonName} ReconnectReasonName */
/** @typedef {import('./reconnect.js').LostReasonName} LostReasonName */
/** @typedef {import('./session_types.js').WebSocketLike} WebSocketLike */
/** @typedef {import('./session_types.js').WebSocketConstructor} WebSocketConstructor */
/** @typedef {import('./session_types.js').ConnectOptions} ConnectOptions */
/** @typedef {import('./session_types.js').SessionEvents} SessionEvents */
/** @typedef {import('./session_types.js').SessionState} SessionState */
/** @typedef {import('./session_types.js').Timers} Timers */
/** What a connection was opened for: the first JOIN, a fresh JOIN of the same room, or a RESUME. @typedef {'join' | 'rejoin' | 'resume'} ConnectionKind */
/** @typedef {'conn' | 'backoff' | 'stall' | 'resync' | 'leave'} TimerName */
/** @typedef {{attempt: number, startedAt: number, last: CloseInfo, resume: boolean}} Outage */

const LEAVE_TIMEOUT_MS = 2000;
/** Our close code for a connection we give up on (a stall, an attempt that timed out): not 1000, so the server holds the seat. */
const GIVE_UP_CODE = CloseCode.TOO_SLOW;

/**
 * A session's connection. Not used on its own: Session supplies the game half (`_onData`,
 * `_haveTick`, `_resetGame`) and starts the first connection.
 * @extends {Emitter<SessionEvents>}
 */
export class Connection extends Emitter {
  /**
   * @param {string} url
   * @param {ConnectOptions} options
   */
  constructor(url, options) {
    super();
    /** the URL given to connect(): where a join starts when no owner is known */
    this.entryUrl = wsUrl(url);
    /** the URL of the current connection (or the one being opened): the room's node once seated */
    this.url = this.entryUrl;
    /** @type {string | null} the URL of the node that seated us, if not the entry URL: a RESUME goes there first */
    this.ownerUrl = null;
    /** REDIRECTs followed by the current (or last) join, 0 to 3 (`stats.redirects` counts all) */
    this.redirects = 0;
    this.options = options;
    const WS = options.WebSocket ?? /** @type {WebSocketConstructor | undefined} */ (globalThis.WebSocket);
    if (!WS) throw new TypeError('no WebSocket: pass the WebSocket option (in Node 20, e.g. the `ws` package)');
    this._WS = WS;
    this._now = options.now ?? (() => performance.now());
    /** @type {Timers} */
    this._timers = options.timers ?? REAL_TIMERS;
    this._random = options.random ?? Math.random;
    /** @type {ReconnectPolicy} the reconnect settings, defaults filled in */
    this.policy = reconnectPolicy(options);
    /** @type {SessionState} */
    this.state = 'connecting';
    /** @type {CloseInfo | null} why the session ended, once it has */
    this.closeInfo = null;
    /** @type {Joined | null} the last JOINED (a resume's, after a resume) */
    this.joined = null;
    /** the negotiated protocol version (0 before the WebSocket opens) */
    this.version = 0;
    this.stats = {
      messagesIn: 0, bytesIn: 0, messagesOut: 0, bytesOut: 0,
      snapshots: 0, deltas: 0, deltasSkipped: 0,
      checksumsVerified: 0, checksumMismatches: 0, desyncs: 0, rejoins: 0, resyncs: 0,
      inputsSent: 0, inputsAcked: 0, inputsDropped: 0, inputsResent: 0,
      eventsIn: 0, eventsSent: 0, eventsRefused: 0,
      /** outages begun, reconnect attempts made, seats resumed, seats lost, stalls detected */
      reconnects: 0, attempts: 0, resumes: 0, seatsLost: 0, stalls: 0,
      /** REDIRECTs followed (all joins), first JOINs tried again after 4016 */
      redirects: 0, directoryRetries: 0,
    };
    /** how long the last outage lasted, from noticing it to the seat back (ms; NaN before one) */
    this.lastDowntimeMs = NaN;
    /** the resume token of the last JOINED ('' = the seat cannot be resumed) */
    this._resumeToken = '';
    /** @type {WebSocketLike | null} the current connection */
    this._ws = null;
    /** @type {ConnectionKind} */
    this._kind = 'join';
    /** JOINED arrived on the current connection */
    this._connJoined = false;
    /** the current WebSocket opened (a close before that: the node could not be reached) */
    this._opened = false;
    /** @type {(version: number) => Uint8Array} the current join's JOIN or RESUME, the same on every redirect */
    this._hello = () => new Uint8Array(0);
    /** when the current join's connect timeout fires (the `conn` timer) */
    this._connDeadline = Infinity;
    /** first JOINs tried again after 4016, this session */
    this._directoryTries = 0;
    /** @type {{code: number, text: string} | null} the ERROR/CLOSE the server sent on it */
    this._serverClose = null;
    this._lastMessageAt = 0;
    /** bumped for every connection and at the end: a stale callback sees it changed */
    this._epoch = 0;
    this._leaving = false;
    /** @type {Outage | null} the outage being recovered from */
    this._outage = null;
    /** @type {Record<TimerName, unknown>} */
    this._timer = { conn: undefined, backoff: undefined, stall: undefined, resync: undefined, leave: undefined };
    /** @type {Array<(info: CloseInfo) => void>} */
    this._closeWaiters = [];
    /** @type {(s: this) => void} */
    let resolve = () => {};
    /** @type {(e: Error) => void} */
    let reject = () => {};
    /** @type {Promise<this>} resolves with the session once it holds the first snapshot */
    this.ready = new Promise((res, rej) => {
      resolve = res;
      reject = rej;
    });
    this.ready.catch(() => {}); // a page that never awaits it must not see an unhandled rejection
    this._resolveReady = resolve;
    this._rejectReady = reject;
    this._readyDone = false;
  }

  // ------------------------------------------------------------ what the game half supplies
  /**
   * A message from the server on the current connection.
   * @param {unknown} _data
   */
  _onData(_data) {}

  /** The tick of the replica for a RESUME (0: none, send a snapshot). */
  _haveTick() {
    return 0;
  }

  /** A new seat is coming (a fresh JOIN after a lost one): forget the old one's state. */
  _resetGame() {}

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

  /** The token the next RESUME will carry ('' = this seat cannot be resumed: a v1 server, or no seat hold). */
  get resumeToken() {
    return this._resumeToken;
  }

  /** The current reconnect attempt (0 when not reconnecting). */
  get reconnectAttempt() {
    return this._outage ? this._outage.attempt : 0;
  }

  // ------------------------------------------------------------ timers
  /**
   * @param {TimerName} name
   * @param {number} ms
   * @param {() => void} fn
   */
  _after(name, ms, fn) {
    this._cancel(name);
    this._timer[name] = this._timers.setTimeout(() => {
      this._timer[name] = undefined;
      fn();
    }, ms);
  }

  /** @param {TimerName} name */
  _cancel(name) {
    if (this._timer[name] !== undefined) this._timers.clearTimeout(this._timer[name]);
    this._timer[name] = undefined;
  }

  // ------------------------------------------------------------ connecting
  /**
   * Begin a join: the first JOIN, a fresh JOIN of the same room, or a RESUME. It goes to the
   * owner's URL if one is known, else to the entry URL, and follows REDIRECTs from there.
   * @param {ConnectionKind} kind
   * @param {boolean} [again] the first JOIN again after 4016: the connect timeout keeps running
   */
  async _connect(kind, again = false) {
    const opts = this.options;
    const epoch = ++this._epoch;
    this._kind = kind;
    this._connJoined = false;
    this._serverClose = null;
    this.version = 0;
    this.redirects = 0;
    const first = kind === 'join';
    if (!this._outage) this.state = 'connecting';
    if (again) {
      // the first join's timer runs on
    } else if (first || !this._outage) {
      const timeout = opts.connectTimeoutMs ?? 10000;
      this._connDeadline = this._now() + timeout;
      this._after('conn', timeout, () => this._connectionFailed(describeClose(CloseCode.ABNORMAL, `timed out after ${timeout} ms connecting and joining`), ReconnectReason.TIMEOUT));
    } else {
      const timeout = this.policy.attemptTimeoutMs;
      this._connDeadline = this._now() + timeout;
      this._after('conn', timeout, () => this._connectionFailed(describeClose(CloseCode.ABNORMAL, `no answer in ${timeout} ms`), ReconnectReason.TIMEOUT));
    }
    let token = '';
    if (kind !== 'resume') {
      try {
        token = typeof opts.token === 'function' ? await opts.token() : opts.token ?? '';
      } catch (err) {
        if (epoch !== this._epoch) return;
        const detail = `could not get a token: ${err instanceof Error ? err.message : String(err)}`;
        // during an outage the token service may be unreachable too: that is worth a retry
        this._connectionFailed(describeClose(this._outage ? CloseCode.ABNORMAL : CloseCode.UNAUTHORIZED, detail), ReconnectReason.CONNECTION_LOST);
        return;
      }
      if (epoch !== this._epoch) return;
    }
    const previous = this.joined;
    /** @param {number} version */
    const hello = (version) =>
      kind === 'resume' && previous
        ? encodeResume({ version, room: previous.room, token: this._resumeToken, haveTick: this._haveTick() })
        : kind === 'rejoin' && previous
          ? encodeJoin({ version, room: previous.room, game: previous.game, name: opts.name, token })
          : encodeJoin({ version, room: opts.room ?? '', game: opts.game ?? '', name: opts.name ?? '', token, private: !!opts.private });
    try {
      hello(2); // a room or token the protocol cannot carry fails now, not on the wire
    } catch (err) {
      this._finish(describeClose(CloseCode.BAD_JOIN, err instanceof Error ? err.message : String(err)));
      return;
    }
    this._hello = hello;
    this._open(this.ownerUrl ?? this.entryUrl);
  }

  /**
   * Open a WebSocket to `url` for the current join, and send its JOIN or RESUME there.
   * @param {string} url
   */
  _open(url) {
    const kind = this._kind;
    this.url = url;
    this._connJoined = false;
    this._serverClose = null;
    this._opened = false;
    this.version = 0;
    /** @type {WebSocketLike} */
    let ws;
    try {
      ws = new this._WS(url, [...SUPPORTED_SUBPROTOCOLS]);
    } catch (err) {
      this._connectionFailed(describeClose(CloseCode.ABNORMAL, err instanceof Error ? err.message : String(err)), ReconnectReason.CONNECTION_LOST);
      return;
    }
    ws.binaryType = 'arraybuffer';
    this._ws = ws;
    ws.onopen = () => {
      if (this._ws !== ws) return;
      this._opened = true;
      const version = versionOfSubprotocol(ws.protocol);
      if (version === null) {
        this._fail(CloseCode.PROTOCOL_ERROR, `the server accepted none of the subprotocols ${SUPPORTED_SUBPROTOCOLS.join(', ')}`);
        return;
      }
      this.version = version;
      if (kind === 'resume' && version < 2) {
        // the server now speaks v1 only: there is no seat to resume there
        this._detach(CloseCode.NORMAL, 'resume needs gamesync.v2');
        this._seatLost(LostReason.NOT_RESUMABLE, describeClose(CloseCode.SEAT_LOST, 'the server speaks gamesync.v1, which cannot resume'));
        return;
      }
      if (/** @type {SessionState} */ (this.state) !== 'reconnecting') this.state = 'joining';
      this._lastMessageAt = this._now();
      this._send(this._hello(version));
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
   * The server answered the JOIN or RESUME with REDIRECT (it closes with 4015 next): open a
   * WebSocket to the URL it names and send the same message there, or fail the join if it
   * may not be followed (more than 3 for this join, a bad URL, another scheme).
   * @param {RedirectMessage} msg
   */
  _redirect(msg) {
    if (this._connJoined) throw new RemoteProtocolError('REDIRECT after JOINED', CloseCode.PROTOCOL_ERROR);
    const refused = redirectProblem(msg.url, this.entryUrl, this.redirects, this.url);
    if (refused) {
      this.ownerUrl = null; // the cluster is moving things: the next join starts at the entry
      this._connectionFailed(describeClose(CloseCode.REDIRECT, refused.detail), ReconnectReason.REDIRECT);
      return;
    }
    this.redirects++;
    this.stats.redirects++;
    this._detach(CloseCode.NORMAL, 'redirected');
    this.emit('redirect', { url: msg.url, room: msg.room, hop: this.redirects });
    if (this.state === 'closed' || this._leaving) return; // a listener left
    this._open(msg.url);
  }

  /** JOINED arrived: the node that sent it hosts the room (a later RESUME goes there first). */
  _noteSeated() {
    this.ownerUrl = this.url === this.entryUrl ? null : this.url;
  }

  /**
   * Stop listening to the current connection and close it.
   * @param {number} code
   * @param {string} reason
   * @param {boolean} [keepSeat] never close with 1000 (the server then holds the seat)
   */
  _detach(code, reason, keepSeat = false) {
    const ws = this._ws;
    this._ws = null;
    this._cancel('stall');
    if (ws) closeSocket(ws, code, reason, keepSeat);
  }

  // ------------------------------------------------------------ reconnecting
  /**
   * The connection of a seated session ended (or went silent): recover, or end.
   * @param {CloseInfo} info
   * @param {ReconnectReasonName | null} reason null: an end no reconnect may cure
   */
  _lostConnection(info, reason) {
    if (!reason || !this.policy.enabled || !this.joined) {
      this._finish(info);
      return;
    }
    this.stats.reconnects++;
    this.state = 'reconnecting';
    this._cancel('conn');
    this._cancel('resync');
    this._outage = { attempt: 0, startedAt: this._now(), last: info, resume: this._resumeToken !== '' };
    if (!this._outage.resume && this._connJoined) {
      // a v1 server, or one that holds no seats: the seat is gone, a fresh JOIN is the way back
      this.stats.seatsLost++;
      this.emit('lost', { reason: LostReason.NOT_RESUMABLE, code: info.code, detail: info.detail, final: false });
    }
    this._scheduleAttempt(reason, info, false);
  }

  /**
   * @param {ReconnectReasonName} reason
   * @param {CloseInfo} info what ended the connection or the last attempt
   * @param {boolean} now no backoff (a fresh JOIN right after a refused RESUME)
   */
  _scheduleAttempt(reason, info, now) {
    const outage = /** @type {Outage} */ (this._outage);
    outage.last = info;
    if (outage.attempt >= this.policy.maxAttempts) {
      this.emit('lost', { reason: LostReason.GAVE_UP, code: info.code, detail: info.detail, final: true });
      this._finish(info);
      return;
    }
    outage.attempt++;
    const delay = now ? 0 : backoffDelay(outage.attempt, this.policy, this._random);
    this.emit('reconnecting', { attempt: outage.attempt, delay, reason, code: info.code, detail: info.detail });
    if (/** @type {SessionState} */ (this.state) === 'closed') return; // a listener left
    this._after('backoff', delay, () => {
      this.stats.attempts++;
      this._connect(outage.resume ? 'resume' : 'rejoin');
    });
  }

  /**
   * The current connection (or the attempt to open one) failed or timed out.
   * @param {CloseInfo} info
   * @param {ReconnectReasonName} reason when it may be retried
   */
  _connectionFailed(info, reason) {
    if (this.state === 'closed') return;
    // the owner's node did not answer: the next attempt goes to the entry URL
    if (!this._opened && this.ownerUrl !== null && this.url === this.ownerUrl) this.ownerUrl = null;
    this._detach(GIVE_UP_CODE, info.detail, true);
    this._cancel('conn');
    if (this._outage) this._attemptFailed(info, reason);
    else if (this.joined && this._kind !== 'join') this._lostConnection(info, reason);
    else this._finish(info);
  }

  /**
   * The first JOIN was refused with 4016 (the node cannot reach the room directory): try it
   * again after a backoff delay, if the connect timeout leaves time for it (and reconnects
   * are on). Returns whether it will.
   */
  _directoryRetry() {
    const delay = backoffDelay(++this._directoryTries, this.policy, this._random);
    if (!this.policy.enabled || this._now() + delay >= this._connDeadline) return false;
    this.stats.directoryRetries++;
    this.state = 'connecting';
    this._after('backoff', delay, () => this._connect('join', true));
    return true;
  }

  /**
   * A reconnect attempt failed: fall back to a fresh JOIN, retry, or end.
   * @param {CloseInfo} info
   * @param {ReconnectReasonName} [retryReason] retry, whatever the code (a timeout, no connection)
   */
  _attemptFailed(info, retryReason) {
    if (retryReason) {
      this._scheduleAttempt(retryReason, info, false);
      return;
    }
    const outcome = attemptOutcome(info, this._kind === 'resume');
    if (outcome.action === 'lost') this._seatLost(outcome.reason, info);
    else if (outcome.action === 'retry') this._scheduleAttempt(outcome.reason, info, false);
    else {
      this.emit('lost', { reason: LostReason.REFUSED, code: info.code, detail: info.detail, final: true });
      this._finish(info);
    }
  }

  /**
   * The seat cannot be resumed: say so, then join the same room afresh at once.
   * @param {LostReasonName} reason
   * @param {CloseInfo} info
   */
  _seatLost(reason, info) {
    const outage = /** @type {Outage} */ (this._outage);
    this.stats.seatsLost++;
    this._resumeToken = '';
    outage.resume = false;
    this.emit('lost', { reason, code: info.code, detail: info.detail, final: false });
    if (this.state === 'closed') return;
    this._scheduleAttempt(ReconnectReason.SEAT_LOST, info, true);
  }

  /** Watch for silence while playing: no message for the stall timeout = a dead connection. */
  _armStall() {
    const limit = Math.max(this.policy.stallTimeoutMs, this.tickRate > 0 ? 4000 / this.tickRate : 0);
    const wait = Math.max(1, this._lastMessageAt + limit - this._now());
    this._after('stall', wait, () => {
      if (this.state !== 'playing' || !this._ws) return;
      const silent = this._now() - this._lastMessageAt;
      if (silent < limit) {
        this._armStall();
        return;
      }
      this.stats.stalls++;
      const info = describeClose(CloseCode.ABNORMAL, `no message from the server for ${Math.round(silent)} ms`);
      this._detach(GIVE_UP_CODE, 'stalled', true);
      this._lostConnection(info, ReconnectReason.STALL);
    });
  }

  // ------------------------------------------------------------ the end
  /**
   * @param {number} code
   * @param {string} reason
   */
  _onClose(code, reason) {
    const server = this._serverClose;
    let info = server ? describeClose(server.code, server.text, true) : describeClose(code, reason);
    if (!server && !this._opened && this.redirects > 0) {
      info = describeClose(code, `${reason ? `${reason}: ` : ''}could not connect to ${this.url}, where a redirect sent this join (from ${this.entryUrl})`);
    }
    this._ws = null;
    this._cancel('stall');
    const first = this._kind === 'join' && !this.joined;
    if (!this._leaving && !this._opened && this.ownerUrl !== null && this.url === this.ownerUrl) {
      // the owner's node cannot be reached: back to the entry URL at once (the room may have moved)
      this.ownerUrl = null;
      this.redirects = 0;
      this._open(this.entryUrl);
    } else if (this._leaving) this._finish(info);
    else if (first && info.code === CloseCode.DIRECTORY_UNAVAILABLE && this._directoryRetry()) {
      // tried again after a backoff delay
    } else if (this._outage) {
      this._cancel('conn');
      this._attemptFailed(info);
    } else if (!this.joined || (this._kind === 'join' && !this._connJoined)) this._finish(info); // the first JOIN failed
    else {
      this._cancel('conn');
      this._lostConnection(info, reconnectReasonOf(info));
    }
  }

  /**
   * End the session from our side: close the socket with `code` and report it.
   * @param {number} code
   * @param {string} detail
   */
  _fail(code, detail) {
    if (this.state === 'closed') return;
    this._detach(code === CloseCode.ABNORMAL ? CloseCode.NORMAL : code, detail);
    this._finish(describeClose(code, detail));
  }

  /** @param {CloseInfo} info */
  _finish(info) {
    if (this.state === 'closed') return;
    this.state = 'closed';
    this.closeInfo = info;
    this._epoch++;
    this._outage = null;
    for (const name of /** @type {TimerName[]} */ (Object.keys(this._timer))) this._cancel(name);
    const ws = this._ws;
    this._ws = null;
    if (ws && ws.readyState <= 1) closeSocket(ws, CloseCode.NORMAL);
    if (!this._readyDone) {
      this._readyDone = true;
      this._rejectReady(new SessionClosedError(info));
    }
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

  /**
   * Leave the room: LEAVE, then the server closes (1000). Resolves with how it ended. While
   * reconnecting there is no connection to send LEAVE on: the session ends at once (the
   * server gives the seat up when its hold expires).
   * @returns {Promise<CloseInfo>}
   */
  leave() {
    if (this.closeInfo) return Promise.resolve(this.closeInfo);
    const done = new Promise((resolve) => this._closeWaiters.push(resolve));
    this._leaving = true;
    this._cancel('backoff');
    this._cancel('stall');
    const sent = (this.state === 'playing' || this.state === 'joining' || (this.state === 'reconnecting' && this._connJoined)) && this._send(encodeLeave());
    const ws = this._ws;
    this._after('leave', sent && this.state === 'playing' ? LEAVE_TIMEOUT_MS : 0, () => {
      if (ws && this._ws === ws) this._detach(CloseCode.NORMAL, 'left');
      this._finish(describeClose(CloseCode.NORMAL, 'left'));
    });
    return done;
  }

  /** Same as leave(). */
  close() {
    return this.leave();
  }
}
