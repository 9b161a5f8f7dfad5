// The types of session.js: the WebSocket it needs, connect()'s options, the events and views.
// (JSDoc only: this module exports nothing at run time.)

/** @typedef {import('./wire.js').Int} Int */
/** @typedef {import('./schema.js').Value} Value */
/** @typedef {import('./schema.js').Schema} Schema */
/** @typedef {import('./schema.js').InputSchema} InputSchema */
/** @typedef {import('./protocol.js').CloseInfo} CloseInfo */
/** @typedef {import('./messages.js').Joined} Joined */
/** @typedef {import('./interpolation.js').InterpolatorOptions} InterpolatorOptions */
/** @typedef {import('./interpolation.js').DrawnEntity} DrawnEntity */
/** @typedef {import('./prediction.js').PredictFn} PredictFn */
/** @typedef {import('./replica.js').Entity} Entity */
/** @typedef {import('./reconnect.js').ReconnectReasonName} ReconnectReasonName */
/** @typedef {import('./reconnect.js').LostReasonName} LostReasonName */

/**
 * What the SDK needs of a WebSocket: the browser's, or e.g. the `ws` package's in Node.
 * @typedef {object} WebSocketLike
 * @property {string} binaryType
 * @property {number} readyState
 * @property {number} bufferedAmount
 * @property {string} protocol
 * @property {(data: Uint8Array) => void} send
 * @property {(code?: number, reason?: string) => void} close
 * @property {((ev: any) => void) | null} onopen
 * @property {((ev: any) => void) | null} onmessage receives `{data}`
 * @property {((ev: any) => void) | null} onclose receives `{code, reason}`
 * @property {((ev: any) => void) | null} onerror
 */
/** @typedef {new (url: string, protocols: string | string[]) => WebSocketLike} WebSocketConstructor */

/**
 * Timers the session uses (default: the global setTimeout and clearTimeout); tests pass their own.
 * @typedef {object} Timers
 * @property {(fn: () => void, ms: number) => unknown} setTimeout
 * @property {(handle: unknown) => void} clearTimeout
 */

/**
 * @typedef {object} ConnectOptions
 * @property {string} [room] the room to join (created on first join); ignored with `private`
 * @property {string | (() => string | Promise<string>)} [token] the player's token, or a function
 *   fetching one (called again for every fresh JOIN: a rejoin after a desync on a v1 server, or
 *   after the seat was lost; not for a RESUME, which carries the resume token)
 * @property {string} [game] the game ('' = the server's default)
 * @property {boolean} [private] create a new private room; its id is `session.room` once joined
 * @property {string} [name] display name (only servers without tokens use it)
 * @property {WebSocketConstructor} [WebSocket] the WebSocket class (default: the global one)
 * @property {PredictFn} [predict] the game's rule for the player's own entities (none: no prediction)
 * @property {(entity: Entity, player: Int) => boolean} [owns] which entities are the player's own
 *   (default: those whose `owner` field is the player number)
 * @property {number} [snapDistance] a prediction correction longer than this snaps (default Infinity)
 * @property {number} [smoothingMs] time constant of smoothed corrections (default 100)
 * @property {Partial<InterpolatorOptions>} [interpolation] delay and extrapolation settings
 * @property {Record<string, number>} [wrap] FLOAT fields whose values wrap around (a world that wraps at its
 *   edges): field name -> period, e.g. `{x: 4000, y: 4000}`. Interpolation, the prediction's glide and its
 *   smoothed corrections then go the short way round, not back across the whole world
 * @property {number} [maxQueuedInputs] inputs held while the socket is backed up (default 8; the oldest is dropped)
 * @property {number} [maxUnackedInputs] inputs remembered until acked (default 256)
 * @property {number} [maxBufferedBytes] socket backlog above which inputs are queued, events refused (default 65536)
 * @property {number} [connectTimeoutMs] to connect, join and get the first snapshot (default 10000)
 * @property {boolean} [rejoinOnDesync] on a v1 server, rejoin when the replica desyncs (default
 *   true); a v2 server is asked for a snapshot (RESYNC) instead, without leaving
 * @property {number} [maxRejoins] desync recoveries (rejoins or resyncs) allowed per minute (default 3)
 * @property {boolean} [reconnect] come back after the connection drops: RESUME the seat, or join
 *   the same room afresh when it is lost (default true; false: the connection's end is the session's)
 * @property {number} [backoffBaseMs] reconnect attempt n waits random(0, min(cap, base * 2^(n-1))) ms (default 100)
 * @property {number} [backoffCapMs] ... (default 750)
 * @property {number} [maxAttempts] reconnect attempts per outage, then `lost` and `close` (default 40)
 * @property {number} [attemptTimeoutMs] one attempt: connect, RESUME or JOIN, the first state (default 2000)
 * @property {number} [stallTimeoutMs] no message for this long while playing means the
 *   connection is dead: close it and reconnect (default 2000; at least 4 ticks)
 * @property {number} [inputBufferSize] inputs kept until acked, sent again after a resume (default 64; the oldest is dropped)
 * @property {number} [resyncIntervalMs] RESYNC at most this often (default 2000)
 * @property {() => number} [now] a monotonic clock in ms (default performance.now)
 * @property {() => number} [random] uniform in [0, 1), for the backoff's jitter (default Math.random)
 * @property {Timers} [timers] setTimeout and clearTimeout (default the global ones)
 */

/**
 * @typedef {object} JoinInfo
 * @property {Int} player @property {string} room @property {string} game @property {number} tickRate
 * @property {Schema} schema @property {InputSchema} inputSchema
 * @property {boolean} rejoin true for a fresh JOIN of the same room: after a desync (v1) or a lost seat
 * @property {number} version the negotiated protocol version (1 or 2)
 * @property {boolean} resumable the seat can be resumed after a drop (v2, with a seat hold)
 * @property {number} seatHoldMs how long the server holds the seat after a drop (0: no hold)
 * @property {boolean} view a view room (v2, JOINED flag VIEW): the replica holds the entities near the player, not the room
 */
/** @typedef {{kind: 'SNAPSHOT' | 'DELTA', tick: number, ack: number, verified: boolean}} StateInfo */
/** @typedef {{sender: Int, name: string, data: Uint8Array, text: string}} RoomEventInfo */
/** `rejoining`: a fresh JOIN follows (v1); `resyncing`: a RESYNC was sent (v2). @typedef {{tick: number, reason: string, rejoining: boolean, resyncing: boolean}} DesyncInfo */
/**
 * Before every reconnect attempt: its number (1, 2, ...), the wait before it (ms), why.
 * `code` and `detail` are those of what ended the connection or the last attempt.
 * @typedef {{attempt: number, delay: number, reason: ReconnectReasonName, code: number, detail: string}} ReconnectingInfo
 */
/**
 * The seat is back: attempts it took, the outage's length (from noticing it to the catch-up
 * state applied), and how the replica caught up (a DELTA from its tick, or a SNAPSHOT).
 * @typedef {{attempts: number, downtimeMs: number, player: Int, tick: number, caughtUpBy: 'SNAPSHOT' | 'DELTA', inputsResent: number}} ResumedInfo
 */
/**
 * The seat is lost. `final` false: a fresh JOIN of the same room follows (a new player number;
 * `joined` with `rejoin: true` when it succeeds); `final` true: the session closes next.
 * @typedef {{reason: LostReasonName, code: number, detail: string, final: boolean}} LostInfo
 */
/**
 * A cluster node sent this join (the first JOIN, a RESUME or a fresh JOIN) to `url`, where
 * `room` lives: the session connects there next. `hop` counts this join's redirects (1 to 3).
 * @typedef {{url: string, room: string, hop: number}} RedirectInfo
 */
/**
 * @typedef {{joined: JoinInfo, state: StateInfo, event: RoomEventInfo, desync: DesyncInfo,
 *   reconnecting: ReconnectingInfo, resumed: ResumedInfo, lost: LostInfo, redirect: RedirectInfo,
 *   close: CloseInfo}} SessionEvents
 */
/** @typedef {'connecting' | 'joining' | 'playing' | 'reconnecting' | 'closed'} SessionState */

/**
 * @typedef {object} View
 * @property {number} tick the newest tick received
 * @property {number} renderTick the (fractional) tick other entities are drawn at
 * @property {number} delayMs how far behind the newest tick they are drawn
 * @property {DrawnEntity[]} entities everything to draw: own entities predicted, others interpolated
 */

export {};
