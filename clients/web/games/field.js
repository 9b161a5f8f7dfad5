// The field game's client side (gameserver/games/field.py): a big world the server sends as a
// view (interest management). Provisional constants until field.py lands.

/** World size (both axes run 0 .. WORLD). */
export const WORLD = 4000.0;
/** The view's cell size and the cells each way around the avatar's cell (3x3 cells). */
export const CELL_SIZE = 250.0;
export const VIEW_CELLS = 1;

/**
 * Whether an entity is the given player's own avatar.
 * @param {{typeName: string, get: (name: any) => unknown}} entity
 * @param {number | bigint} player
 */
export function owns(entity, player) {
  return entity.typeName === 'avatar' && entity.get('owner') == player;
}

/**
 * An input from the keys held: arrows or WASD give a direction.
 * @param {{has: (key: string) => boolean}} keys
 */
export function inputFromKeys(keys) {
  const dx = (keys.has('ArrowRight') || keys.has('d') ? 1 : 0) - (keys.has('ArrowLeft') || keys.has('a') ? 1 : 0);
  const dy = (keys.has('ArrowDown') || keys.has('s') ? 1 : 0) - (keys.has('ArrowUp') || keys.has('w') ? 1 : 0);
  return { dx, dy };
}

/** The options connect() takes for field. */
export const field = Object.freeze({ game: 'field', owns });
