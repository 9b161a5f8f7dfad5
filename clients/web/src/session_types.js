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
 * @typedef {object} ConnectOptions
 * @property {string} [room] the room to join (created on first join); ignored with `private`
 * @property {string | (() => string | Promise<string>)} [token] the player's token, or a function
 *   fetching one (called again for every rejoin, so it may mint a fresh one)
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
 * @property {number} [maxQueuedInputs] inputs held while the socket is backed up (default 8; the oldest is dropped)
 * @property {number} [maxUnackedInputs] inputs remembered until acked (default 256)
 * @property {number} [maxBufferedBytes] socket backlog above which inputs are queued, events refused (default 65536)
 * @property {number} [connectTimeoutMs] to connect, join and get the first snapshot (default 10000)
 * @property {boolean} [rejoinOnDesync] rejoin when the replica desyncs (default true)
 * @property {number} [maxRejoins] desync rejoins allowed per minute (default 3)
 * @property {() => number} [now] a monotonic clock in ms (default performance.now)
 */

/**
 * @typedef {object} JoinInfo
 * @property {Int} player @property {string} room @property {string} game @property {number} tickRate
 * @property {Schema} schema @property {InputSchema} inputSchema
 * @property {boolean} rejoin true when this join recovered from a desync
 */
/** @typedef {{kind: 'SNAPSHOT' | 'DELTA', tick: number, ack: number, verified: boolean}} StateInfo */
/** @typedef {{sender: Int, name: string, data: Uint8Array, text: string}} RoomEventInfo */
/** @typedef {{tick: number, reason: string, rejoining: boolean}} DesyncInfo */
/** @typedef {{joined: JoinInfo, state: StateInfo, event: RoomEventInfo, desync: DesyncInfo, close: CloseInfo}} SessionEvents */
/** @typedef {'connecting' | 'joining' | 'playing' | 'closed'} SessionState */

/**
 * @typedef {object} View
 * @property {number} tick the newest tick received
 * @property {number} renderTick the (fractional) tick other entities are drawn at
 * @property {number} delayMs how far behind the newest tick they are drawn
 * @property {DrawnEntity[]} entities everything to draw: own entities predicted, others interpolated
 */

export {};
