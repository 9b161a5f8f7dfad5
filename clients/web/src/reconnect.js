// The pure parts of reconnecting (gamesync.v2, docs/protocol.md "Resume"): the options and
// their defaults, the backoff schedule, what a close means for a seated session and for a
// reconnect attempt, and the bounded buffer of inputs kept for sending again after a resume.
// No timers and no sockets here: session.js drives these.

import { CloseCode, RESTART_REASON } from './protocol.js';

/** @typedef {import('./protocol.js').CloseInfo} CloseInfo */

/**
 * Why the session is reconnecting (the `reason` of a `reconnecting` event): what ended the
 * connection, or what ended the last attempt.
 */
export const ReconnectReason = Object.freeze({
  /** the connection closed without a close frame (1006), or could not be opened */
  CONNECTION_LOST: 'connection-lost',
  /** no message from the server for `stallTimeoutMs` while playing */
  STALL: 'stall',
  /** the server closed with 1001 (e.g. an idle timeout) */
  GOING_AWAY: 'going-away',
  /** the server drained (1001 with RESTART_REASON): the seat is gone there, a fresh join follows */
  RESTART: 'restart',
  /** the server dropped us as too slow to read (4008) */
  TOO_SLOW: 'too-slow',
  /** another code a retry may cure (1011, 1008, a code the protocol does not define) */
  CLOSED: 'closed',
  /** an attempt was refused with a code a retry may cure (4012 draining, 4006 server full, ...) */
  REFUSED: 'refused',
  /** an attempt got no answer within `attemptTimeoutMs` */
  TIMEOUT: 'timeout',
  /** the seat could not be resumed: this attempt is a fresh JOIN of the same room */
  SEAT_LOST: 'seat-lost',
  /** a REDIRECT could not be followed (more than 3 for one join, or a URL refused): start again at the entry URL */
  REDIRECT: 'redirect',
});

/** Why the seat (and with `final`, the session) was lost: the `reason` of a `lost` event. */
export const LostReason = Object.freeze({
  /** RESUME refused with 4013: the hold expired, the player left, the room closed or restarted */
  SEAT_LOST: 'seat-lost',
  /** RESUME refused with 4001: the token was malformed, forged or already used */
  TOKEN_REFUSED: 'token-refused',
  /** the seat had no resume token (a v1 server, or the server holds no seats) */
  NOT_RESUMABLE: 'not-resumable',
  /** `maxAttempts` attempts failed (final: the session closes with the last error) */
  GAVE_UP: 'gave-up',
  /** a fresh JOIN was refused with a code no retry cures (final) */
  REFUSED: 'refused',
});

/** @typedef {typeof ReconnectReason[keyof typeof ReconnectReason]} ReconnectReasonName */
/** @typedef {typeof LostReason[keyof typeof LostReason]} LostReasonName */

/**
 * The reconnect settings, defaults filled in.
 * @typedef {object} ReconnectPolicy
 * @property {boolean} enabled
 * @property {number} baseMs first backoff ceiling (100)
 * @property {number} capMs largest backoff ceiling (750)
 * @property {number} maxAttempts attempts per outage before giving up (40)
 * @property {number} attemptTimeoutMs one attempt: connect, RESUME/JOIN, the first state (2000)
 * @property {number} stallTimeoutMs no message for this long while playing = the connection is dead (2000)
 * @property {number} inputBufferSize inputs kept unacked for sending again (64)
 * @property {number} resyncIntervalMs RESYNC at most this often (2000)
 */

/**
 * @param {{reconnect?: boolean, backoffBaseMs?: number, backoffCapMs?: number, maxAttempts?: number,
 *   attemptTimeoutMs?: number, stallTimeoutMs?: number, inputBufferSize?: number, resyncIntervalMs?: number}} options
 * @returns {ReconnectPolicy}
 */
export function reconnectPolicy(options) {
  /** @param {number | undefined} v @param {number} dflt @param {string} name @param {number} [min] */
  const num = (v, dflt, name, min = 0) => {
    if (v === undefined) return dflt;
    if (typeof v !== 'number' || !(v >= min) || Number.isNaN(v)) throw new RangeError(`${name} must be a number >= ${min}, not ${String(v)}`);
    return v;
  };
  return {
    enabled: options.reconnect ?? true,
    baseMs: num(options.backoffBaseMs, 100, 'backoffBaseMs'),
    capMs: num(options.backoffCapMs, 750, 'backoffCapMs'),
    maxAttempts: num(options.maxAttempts, 40, 'maxAttempts', 1),
    attemptTimeoutMs: num(options.attemptTimeoutMs, 2000, 'attemptTimeoutMs', 1),
    stallTimeoutMs: num(options.stallTimeoutMs, 2000, 'stallTimeoutMs', 1),
    inputBufferSize: num(options.inputBufferSize, 64, 'inputBufferSize', 1),
    resyncIntervalMs: num(options.resyncIntervalMs, 2000, 'resyncIntervalMs'),
  };
}

/**
 * The wait before attempt `attempt` (1, 2, ...): exponential backoff with full jitter,
 * `random() * min(cap, base * 2^(attempt - 1))`.
 * @param {number} attempt
 * @param {{baseMs: number, capMs: number}} policy
 * @param {() => number} random in [0, 1)
 */
export function backoffDelay(attempt, policy, random) {
  const ceiling = Math.min(policy.capMs, policy.baseMs * 2 ** Math.min(attempt - 1, 30));
  return random() * ceiling;
}

/**
 * What the end of a seated session's connection means: the reason to reconnect, or null when
 * it must not (we were kicked, the room closed, another connection took the seat, a protocol
 * error, a refused token, our own LEAVE).
 * @param {CloseInfo} info
 * @returns {ReconnectReasonName | null}
 */
export function reconnectReasonOf(info) {
  switch (info.code) {
    case CloseCode.ABNORMAL:
      return ReconnectReason.CONNECTION_LOST;
    case CloseCode.GOING_AWAY:
      return info.detail === RESTART_REASON ? ReconnectReason.RESTART : ReconnectReason.GOING_AWAY;
    case CloseCode.TOO_SLOW:
      return ReconnectReason.TOO_SLOW;
    default:
      return info.advice === 'retry' ? ReconnectReason.CLOSED : null;
  }
}

/**
 * What the failure of a reconnect attempt means: `lost` (the RESUME was refused for good: fall
 * back to a fresh JOIN), `retry` (back off and try again), or `end`.
 * @param {CloseInfo} info
 * @param {boolean} resuming the attempt sent RESUME (not JOIN)
 * @returns {{action: 'lost', reason: LostReasonName} | {action: 'retry', reason: ReconnectReasonName} | {action: 'end'}}
 */
export function attemptOutcome(info, resuming) {
  if (resuming && info.code === CloseCode.SEAT_LOST) return { action: 'lost', reason: LostReason.SEAT_LOST };
  if (resuming && info.code === CloseCode.UNAUTHORIZED) return { action: 'lost', reason: LostReason.TOKEN_REFUSED };
  if (info.code === CloseCode.ABNORMAL) return { action: 'retry', reason: ReconnectReason.CONNECTION_LOST };
  if (info.advice === 'retry') return { action: 'retry', reason: ReconnectReason.REFUSED };
  return { action: 'end' };
}

/**
 * The inputs not yet acked, in seq order, the oldest sent first: `items[0, sent)` went out on
 * the current connection, the rest wait. Bounded: past `limit` the oldest is dropped. After a
 * resume everything above the server's `input_seq` is sent again, in order, with its own seq.
 */
export class InputBuffer {
  /** @param {number} limit */
  constructor(limit) {
    this.limit = Math.max(1, Math.floor(limit));
    /** @type {Array<{seq: number, bytes: Uint8Array}>} */
    this.items = [];
    /** how many of `items` (a prefix) were sent on the current connection */
    this.sent = 0;
  }

  /** Inputs waiting to be sent. */
  get unsent() {
    return this.items.length - this.sent;
  }

  /**
   * Keep an input; returns how many inputs never sent were dropped to make room.
   * @param {number} seq
   * @param {Uint8Array} bytes
   */
  push(seq, bytes) {
    this.items.push({ seq, bytes });
    let dropped = 0;
    while (this.items.length > this.limit) {
      this.items.shift();
      if (this.sent > 0) this.sent--;
      else dropped++;
    }
    return dropped;
  }

  /**
   * Keep at most `n` inputs waiting (the oldest waiting are dropped); returns how many dropped.
   * @param {number} n
   */
  trimUnsent(n) {
    const extra = this.unsent - n;
    if (extra <= 0) return 0;
    this.items.splice(this.sent, extra);
    return extra;
  }

  /**
   * Forget the inputs the server has applied (seq <= `seq`).
   * @param {number} seq
   */
  ack(seq) {
    let n = 0;
    while (n < this.items.length && this.items[n].seq <= seq) n++;
    if (n) {
      this.items.splice(0, n);
      this.sent = Math.max(0, this.sent - n);
    }
  }

  /** The next input to send, if any. */
  next() {
    return this.sent < this.items.length ? this.items[this.sent] : undefined;
  }

  markSent() {
    this.sent++;
  }

  /** A new connection: nothing on it has been sent yet. */
  resendAll() {
    this.sent = 0;
  }

  clear() {
    this.items = [];
    this.sent = 0;
  }
}
