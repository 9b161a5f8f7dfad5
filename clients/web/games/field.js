// The field game's client side (gameserver/games/field.py): a big world that wraps around at
// its edges, sent to each player as a *view* (the 3 x 3 cells of 250 units around its avatar,
// plus the scoreboard), and the server's movement rule for predicting the player's avatar.
//
// The server keeps each avatar's position in wire codes (1/8 unit) as a float, moves it by
// (dx, dy) clamped to length 1 times SPEED * dt each tick, wraps it modulo the world's side, and
// stores the code truncated. predict() does the same from the position the client holds: the
// same result for straight moves; a diagonal move may differ by one code (1/8 unit), because
// the server keeps the fraction below a code and the wire does not, and the predictor's
// reconciliation absorbs it.
//
// The world's side depends on the room's size (one 250-unit cell per seat: 4,000 units at the
// default 256 players), and JOINED does not carry it (the positions' FLOAT range is that of the
// largest world, 8,000). `fieldClient()` takes it as a mutable setting: WORLD by default, or
// the scoreboard's `side` field when the server sends one.

import { inputFromKeys, owns, pyHypot } from './arena.js';

/** The side of the world of a room of 256 players (the default), in units. */
export const WORLD = 4000.0;
/** The side of a cell of the view's grid, and the cells each way around the avatar's cell. */
export const CELL_SIZE = 250.0;
export const VIEW_CELLS = 1;
/** Units per second at full input. */
export const SPEED = 200.0;
/** Wire codes per unit of a position (the FLOAT precision is 0.125). */
export const PER_UNIT = 8;
export const PICKUP_RADIUS = 20.0;

/**
 * @typedef {object} PlayerValues
 * @property {number} x
 * @property {number} y
 * @property {number | bigint} score
 * @property {number | bigint} owner the player number of the avatar's player
 * @property {string} name
 */
/** @typedef {{x: number, y: number, kind: number}} CreatureValues */
/** @typedef {{x: number, y: number, value: number}} PickupValues */
/** @typedef {{clock: number | bigint, players: number, record: number | bigint, holder: string}} BoardValues */
/** @typedef {{player: PlayerValues, creature: CreatureValues, pickup: PickupValues, board: BoardValues}} FieldTypes */
/** @typedef {{dx: number, dy: number}} FieldInput */

/**
 * Python's float `a % m` for m > 0 (the result has the sign of m; JavaScript's keeps a's).
 * @param {number} a @param {number} m
 */
function pyMod(a, m) {
  const r = a % m;
  return r < 0 ? r + m : r;
}

/**
 * One tick of the avatar's movement, on positions in units: the server's on_input then update.
 * @param {PlayerValues} entity
 * @param {FieldInput} input
 * @param {number} dt seconds (1 / tick rate)
 * @param {number} side the world's side in units
 * @returns {PlayerValues}
 */
export function step(entity, input, dt, side) {
  let { dx, dy } = input;
  const norm = pyHypot(dx, dy);
  if (norm > 1.0) {
    dx = dx / norm;
    dy = dy / norm;
  }
  const scale = SPEED * dt * PER_UNIT;
  const vx = dx * scale;
  const vy = dy * scale;
  if (!(vx || vy)) return entity;
  const span = Math.round(side * PER_UNIT);
  const x = Math.trunc(pyMod(entity.x * PER_UNIT + vx, span));
  const y = Math.trunc(pyMod(entity.y * PER_UNIT + vy, span));
  return { ...entity, x: x / PER_UNIT, y: y / PER_UNIT };
}

// The avatar is `player` with an `owner` field and the keys move it as in arena: the same
// functions (arena's inputs {dx, dy} are field's).
export { owns, inputFromKeys };

/**
 * The options connect() takes for field, with prediction in a world of `world.side` units
 * (change `world.side` when the room's size is known).
 * @param {{side: number}} [world]
 */
export function fieldClient(world = { side: WORLD }) {
  return {
    world,
    options: Object.freeze({
      game: 'field',
      /** @param {PlayerValues} entity @param {FieldInput} input @param {number} dt */
      predict: (entity, input, dt) => step(entity, input, dt, world.side),
      owns,
      /** a correction longer than this snaps */
      snapDistance: 100,
      /** the world wraps: interpolation and prediction go the short way round its edges */
      wrap: {
        get x() {
          return world.side;
        },
        get y() {
          return world.side;
        },
      },
    }),
  };
}

/** The options connect() takes for field in a room of the default size (4,000 units). */
export const field = fieldClient().options;
