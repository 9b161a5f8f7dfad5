// What the session needs around a WebSocket: the URL it takes, a close that a browser accepts,
// and the timers (injectable, for tests that drive time by hand).

import { CloseCode } from './protocol.js';

/** @typedef {import('./session_types.js').WebSocketLike} WebSocketLike */
/** @typedef {import('./session_types.js').Timers} Timers */

/** The global timers, each called as a plain function (a browser's refuses another `this`). */
export const REAL_TIMERS = Object.freeze({
  /** @param {() => void} fn @param {number} ms */
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  /** @param {unknown} handle */
  clearTimeout: (handle) => clearTimeout(/** @type {ReturnType<typeof setTimeout>} */ (handle)),
});

/**
 * Close a WebSocket with `code` if it may: a browser's close() takes only 1000 and 3000-4999,
 * and a reason of at most 123 bytes, so a protocol code (1002, 1007, ...) falls back to 1000.
 * With `keepSeat`, it never falls back to 1000 (a server holds a seat for any other code),
 * but to a close without a code.
 * @param {WebSocketLike} ws
 * @param {number} code
 * @param {string} [reason]
 * @param {boolean} [keepSeat]
 */
export function closeSocket(ws, code, reason = '', keepSeat = false) {
  const text = reason.replace(/[^\x20-\x7e]/g, '?').slice(0, 120);
  /** @type {Array<() => void>} */
  const tries = [() => ws.close(code, text)];
  if (!keepSeat) tries.push(() => ws.close(CloseCode.NORMAL, text));
  tries.push(() => ws.close());
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
 * The WebSocket URL for `url` (https: and http: are taken as wss: and ws:).
 * @param {string} url
 */
export function wsUrl(url) {
  const u = new URL(url);
  if (u.protocol === 'https:') u.protocol = 'wss:';
  else if (u.protocol === 'http:') u.protocol = 'ws:';
  if (u.protocol !== 'wss:' && u.protocol !== 'ws:') throw new TypeError(`the URL must start with wss:// or ws://, not ${url}`);
  return u.toString();
}
