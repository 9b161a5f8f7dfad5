// Protocol constants of gamesync.v1, v2 and v3 (docs/protocol.md, shared/protocol.py) and
// what each close code means to a person looking at a page.

/** The newest version: the version byte of JOIN, JOINED and RESUME on a v3 connection. */
export const PROTOCOL_VERSION = 3;
export const SUBPROTOCOL_V1 = 'gamesync.v1';
export const SUBPROTOCOL_V2 = 'gamesync.v2';
/** v2 with the compact state coding (src/delta_v3.js). */
export const SUBPROTOCOL_V3 = 'gamesync.v3';
/** The newest subprotocol. */
export const SUBPROTOCOL = SUBPROTOCOL_V3;
/** The subprotocols the client offers, in order of preference (the server picks the first it speaks). */
export const SUPPORTED_SUBPROTOCOLS = Object.freeze([SUBPROTOCOL_V3, SUBPROTOCOL_V2, SUBPROTOCOL_V1]);

/**
 * The protocol version a subprotocol name stands for (null if not one of ours).
 * @param {string} name
 * @returns {1 | 2 | 3 | null}
 */
export function versionOfSubprotocol(name) {
  return name === SUBPROTOCOL_V3 ? 3 : name === SUBPROTOCOL_V2 ? 2 : name === SUBPROTOCOL_V1 ? 1 : null;
}

export const MAX_NAME_BYTES = 64;
export const MAX_PLAYER_NAME_BYTES = 32;
export const MAX_TOKEN_BYTES = 2048;
/** A resume token (v2 RESUME and JOINED), ASCII base64url. */
export const MAX_RESUME_TOKEN_BYTES = 128;
export const MAX_EVENT_DATA_BYTES = 1024;
export const MAX_MESSAGE_TEXT_BYTES = 256;
/** v2 REDIRECT: the owner node's URL. */
export const MAX_URL_BYTES = 256;
export const MAX_FIELDS = 64;
export const MAX_TYPES = 64;
export const MAX_STRING_FIELD_BYTES = 255;
export const MAX_VARINT_BYTES = 10;
/** JOIN flag bit 0: create a new private room. */
export const JOIN_PRIVATE = 0x01;
/** DELTA flag bit 0: a checksum follows the tick. */
export const DELTA_CHECKSUM = 0x01;
/** DELTA flag bit 1 (v2): a base tick follows the tick; the delta applies to the state of that tick. */
export const DELTA_BASE = 0x02;
/** JOINED flag bit 0 (v2): this JOINED answers a RESUME (same player, same room). */
export const JOINED_RESUMED = 0x01;
/**
 * JOINED flag bit 1 (v2): this room sends the client its *view* (interest management): SNAPSHOT
 * and DELTA hold the entities near the player, entities leave and come back (a remove, later a
 * create of the same id), SNAPSHOT entities come in any order, acks are the client's own, and
 * checksums are view checksums (`viewChecksum`).
 */
export const JOINED_VIEW = 0x02;

/**
 * The reason of the CLOSE 1001 a drain ends with (the server restarts or moves): stable, so a
 * client may compare it (shared/protocol.py RESTART_REASON).
 */
export const RESTART_REASON = 'server restarting; come back later';

/** The first byte of every message. */
export const Kind = Object.freeze({
  JOIN: 0x01,
  LEAVE: 0x02,
  INPUT: 0x03,
  EVENT: 0x04,
  /** v2 */
  RESUME: 0x05,
  /** v2 */
  RESYNC: 0x06,
  JOINED: 0x10,
  SNAPSHOT: 0x11,
  DELTA: 0x12,
  ROOM_EVENT: 0x13,
  ERROR: 0x14,
  CLOSE: 0x15,
  /** v2: the room lives on another node; join there */
  REDIRECT: 0x16,
});

/** WebSocket close codes (RFC 6455) and the server's application codes (4000-4999). */
export const CloseCode = Object.freeze({
  NORMAL: 1000,
  GOING_AWAY: 1001,
  PROTOCOL_ERROR: 1002,
  UNSUPPORTED_DATA: 1003,
  /** Never sent on the wire: the browser's code for "closed without a close frame". */
  ABNORMAL: 1006,
  INVALID_PAYLOAD: 1007,
  POLICY_VIOLATION: 1008,
  MESSAGE_TOO_BIG: 1009,
  INTERNAL_ERROR: 1011,
  BAD_JOIN: 4000,
  UNAUTHORIZED: 4001,
  FORBIDDEN: 4003,
  UNKNOWN_GAME: 4004,
  ROOM_FULL: 4005,
  SERVER_FULL: 4006,
  JOIN_TIMEOUT: 4007,
  TOO_SLOW: 4008,
  REPLACED: 4009,
  KICKED: 4010,
  ROOM_CLOSED: 4011,
  DRAINING: 4012,
  /** v2: a RESUME for a seat that is no longer held */
  SEAT_LOST: 4013,
  /** a game that needs gamesync.v2 (a view game) refused a v1 connection */
  VERSION_REQUIRED: 4014,
  /** the room lives on another node (v2: after REDIRECT {url, room}); the SDK follows it */
  REDIRECT: 4015,
  /** the room directory is unreachable: try again shortly */
  DIRECTORY_UNAVAILABLE: 4016,
});

/**
 * What a page may do after a close:
 * - `none`: nothing to do (the player left, or was moved elsewhere);
 * - `retry`: trying again later may work (server busy or restarting, network trouble);
 * - `new-token`: the player needs a new token (sign in again);
 * - `fix`: retrying the same request cannot work (a wrong room or game, a bug).
 * @typedef {'none' | 'retry' | 'new-token' | 'fix'} CloseAdvice
 */

/** @type {Record<number, [string, string, CloseAdvice]>} code -> [name, text for a person, advice] */
const REASONS = {
  1000: ['NORMAL', 'You left the game.', 'none'],
  1001: ['GOING_AWAY', 'The server is restarting or dropped an idle connection.', 'retry'],
  1002: ['PROTOCOL_ERROR', 'The game client and the server do not understand each other (a bug or a version mismatch).', 'fix'],
  1003: ['UNSUPPORTED_DATA', 'The game client sent data the server does not accept (a bug).', 'fix'],
  1006: ['ABNORMAL', 'Could not reach the game server, or the connection was lost. The server may be down or unreachable, its certificate not trusted, or this page not allowed to connect.', 'retry'],
  1007: ['INVALID_PAYLOAD', 'A malformed message was sent (a bug or a version mismatch).', 'fix'],
  1008: ['POLICY_VIOLATION', 'Too many messages, or new rooms, too fast.', 'retry'],
  1009: ['MESSAGE_TOO_BIG', 'A message was too large for the server.', 'fix'],
  1011: ['INTERNAL_ERROR', 'The game crashed on the server.', 'retry'],
  4000: ['BAD_JOIN', 'That room does not exist or runs another game.', 'fix'],
  4001: ['UNAUTHORIZED', 'Your sign-in is missing, invalid or expired. Sign in again.', 'new-token'],
  4003: ['FORBIDDEN', 'You are not allowed to join this room or play this game.', 'fix'],
  4004: ['UNKNOWN_GAME', 'The server does not have this game.', 'fix'],
  4005: ['ROOM_FULL', 'The room is full.', 'retry'],
  4006: ['SERVER_FULL', 'The server is full. Try again in a moment.', 'retry'],
  4007: ['JOIN_TIMEOUT', 'Joining took too long.', 'retry'],
  4008: ['TOO_SLOW', 'The connection was too slow to keep up with the game.', 'retry'],
  4009: ['REPLACED', 'You joined from somewhere else (another tab or device).', 'none'],
  4010: ['KICKED', 'You were removed from the game by an administrator.', 'none'],
  4011: ['ROOM_CLOSED', 'The room has been closed by an administrator.', 'none'],
  4012: ['DRAINING', 'The server is restarting and admits no one for now. Try again in a moment.', 'retry'],
  4013: ['SEAT_LOST', 'Your place in the game was given up while you were away.', 'retry'],
  4014: ['VERSION_REQUIRED', 'This game needs a newer game client (gamesync.v2).', 'fix'],
  4015: ['REDIRECT', 'The room is on another server of this cluster.', 'retry'],
  4016: ['DIRECTORY_UNAVAILABLE', 'The servers cannot find the room just now. Try again in a moment.', 'retry'],
};

/**
 * Why a session ended, in terms a page can show.
 * @typedef {object} CloseInfo
 * @property {number} code the close code (the server's ERROR/CLOSE code when it sent one)
 * @property {string} name the code's name, e.g. `ROOM_FULL`; `UNKNOWN` for a code the protocol does not define
 * @property {string} text a sentence for a person, e.g. "The room is full."
 * @property {string} detail the server's own text (ERROR/CLOSE message or close reason), if any
 * @property {CloseAdvice} advice what the page may do about it
 * @property {boolean} byServer true if the server sent ERROR or CLOSE before closing
 */

/**
 * Describe a close code, with the server's text (`detail`) when there is one.
 * @param {number} code
 * @param {string} [detail]
 * @param {boolean} [byServer]
 * @returns {CloseInfo}
 */
export function describeClose(code, detail = '', byServer = false) {
  const known = REASONS[code];
  if (known) {
    const [name, text, advice] = known;
    return { code, name, text, detail, advice, byServer };
  }
  const app = code >= 4000 && code <= 4999;
  return {
    code,
    name: 'UNKNOWN',
    text: app ? `The server ended the session (code ${code}).` : `The connection closed (code ${code}).`,
    detail,
    advice: 'retry',
    byServer,
  };
}
