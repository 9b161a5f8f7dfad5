// The arena game's client side: the server's movement rule (gameserver/games/arena.py) written
// once in JavaScript, for client-side prediction.
//
// Each tick the server sets a player's velocity from its last input (dx, dy), the vector clamped
// to length 1, times SPEED, then moves the avatar by velocity * dt, clamped to the world, and
// stores the position quantized to its FLOAT field. predict() does the same arithmetic in the
// same IEEE double order (with Python's math.hypot), so on a clean network the predicted
// position equals the server's bit for bit and the prediction error is 0.

/** World size (both axes run 0 .. WORLD). */
export const WORLD = 1000.0;
/** Units per second at full input. */
export const SPEED = 200.0;
export const PICKUP_RADIUS = 20.0;

/**
 * @typedef {object} PlayerValues
 * @property {number} x
 * @property {number} y
 * @property {number | bigint} score
 * @property {number} hp
 * @property {number | bigint} owner the player number of the avatar's player
 * @property {string} name
 */
/** @typedef {{x: number, y: number, value: number}} GemValues */
/** @typedef {{player: PlayerValues, gem: GemValues}} ArenaTypes */
/** @typedef {{dx: number, dy: number}} ArenaInput */

const DBL_MIN = 2.2250738585072014e-308;
const f64 = new DataView(new ArrayBuffer(8));

/**
 * The exponent e of frexp(x) = m * 2^e, m in [0.5, 1), for a finite x > 0.
 * @param {number} x
 * @returns {number}
 */
function frexpExponent(x) {
  f64.setFloat64(0, x);
  const biased = (f64.getUint16(0) >> 4) & 0x7ff;
  if (biased === 0) return frexpExponent(x * 2 ** 64) - 64; // subnormal
  return biased - 1022;
}

/**
 * x * y as an exact double-double (Dekker's product with Veltkamp splitting).
 * @param {number} x
 * @param {number} y
 * @returns {[number, number]}
 */
function exactProduct(x, y) {
  const tx = x * 134217729.0;
  const xh = tx - (tx - x);
  const xl = x - xh;
  const ty = y * 134217729.0;
  const yh = ty - (ty - y);
  const yl = y - yh;
  const p = xh * yh;
  const q = xh * yl + xl * yh;
  const z = p + q;
  return [z, p - z + q + xl * yl];
}

/**
 * sqrt(x^2 + y^2) exactly as CPython's math.hypot computes it (Modules/mathmodule.c,
 * vector_norm: lossless scaling and squaring, compensated sums, one differential correction).
 * JavaScript's Math.hypot differs from it in the last bit for about 5% of the arena's inputs.
 * @param {number} x
 * @param {number} y
 * @returns {number}
 */
export function pyHypot(x, y) {
  x = Math.abs(x);
  y = Math.abs(y);
  if (x === Infinity || y === Infinity) return Infinity;
  if (Number.isNaN(x) || Number.isNaN(y)) return NaN;
  const max = Math.max(x, y);
  if (max === 0) return 0;
  return vectorNorm(x, y, max);
}

/**
 * @param {number} a
 * @param {number} b
 * @param {number} max
 * @returns {number}
 */
function vectorNorm(a, b, max) {
  const maxE = frexpExponent(max);
  if (maxE < -1023) return DBL_MIN * vectorNorm(a / DBL_MIN, b / DBL_MIN, max / DBL_MIN);
  const scale = 2 ** -maxE;
  let csum = 1.0;
  let frac1 = 0.0;
  let frac2 = 0.0;
  for (const v of [a * scale, b * scale]) {
    const [hi, lo] = exactProduct(v, v);
    const sum = csum + hi;
    frac2 += csum - sum + hi;
    csum = sum;
    frac1 += lo;
  }
  let h = Math.sqrt(csum - 1.0 + (frac1 + frac2));
  const [hi, lo] = exactProduct(-h, h);
  const sum = csum + hi;
  frac2 += csum - sum + hi;
  csum = sum;
  frac1 += lo;
  const x = csum - 1.0 + (frac1 + frac2);
  h += x / (2.0 * h);
  return h / scale;
}

/**
 * The velocity an input gives (units per second): the server's on_input.
 * @param {number} dx
 * @param {number} dy
 * @returns {[number, number]}
 */
export function velocity(dx, dy) {
  const norm = pyHypot(dx, dy);
  if (norm > 1.0) {
    dx = dx / norm;
    dy = dy / norm;
  }
  return [dx * SPEED, dy * SPEED];
}

/**
 * Predict the player's own avatar one tick ahead: the server's on_input then update.
 * Pure: returns new values; the SDK quantizes them to the fields' codes as the server does.
 * @param {PlayerValues} entity
 * @param {ArenaInput} input
 * @param {number} dt seconds (1 / tick rate)
 * @returns {PlayerValues}
 */
export function predict(entity, input, dt) {
  const [vx, vy] = velocity(input.dx, input.dy);
  if (!(vx || vy)) return entity;
  const x = Math.min(Math.max(entity.x + vx * dt, 0.0), WORLD);
  const y = Math.min(Math.max(entity.y + vy * dt, 0.0), WORLD);
  return { ...entity, x, y };
}

/**
 * Whether an entity is the given player's own avatar (predicted rather than interpolated).
 * @param {{typeName: string, get: (name: any) => unknown}} entity
 * @param {number | bigint} player
 */
export function owns(entity, player) {
  // == : a player number (or owner) beyond 2^53 is a BigInt
  return entity.typeName === 'player' && entity.get('owner') == player;
}

/**
 * An input from the keys held: arrows or WASD give a direction of length 1.
 * @param {{has: (key: string) => boolean}} keys e.g. a Set of KeyboardEvent.key values
 * @returns {ArenaInput}
 */
export function inputFromKeys(keys) {
  const dx = (keys.has('ArrowRight') || keys.has('d') ? 1 : 0) - (keys.has('ArrowLeft') || keys.has('a') ? 1 : 0);
  const dy = (keys.has('ArrowDown') || keys.has('s') ? 1 : 0) - (keys.has('ArrowUp') || keys.has('w') ? 1 : 0);
  return { dx, dy };
}

/** The options connect() takes for arena: its game name and client rules. */
export const arena = Object.freeze({
  game: 'arena',
  predict,
  owns,
  /** a correction larger than this (world units) snaps instead of gliding */
  snapDistance: 100,
});
