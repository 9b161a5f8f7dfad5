// The drawing of a big world for the demo (demo/app.js): the field game, or any game whose
// entity types have `x` and `y` fields. The world is larger than the canvas, so a camera
// follows the player's own avatar; the world's bounds come from the schema JOINED sent (the
// range of the types' `x` and `y` FLOAT fields). Each type is drawn by what its name says it
// is: players (circles with names), pickups (diamonds), creatures (small triangles by kind),
// anything else positioned (dots). In a view room the 3x3 cells around the avatar (the view
// the server sends) are shaded, and a minimap shows where in the world the view is. A HUD line
// says how many entities the view holds, by kind, and that their checksums verify.

import { colourOf } from './draw_arena.js';

/** @typedef {import('../src/index.js').DrawnEntity} DrawnEntity */
/** @typedef {import('../src/index.js').Schema} Schema */
/** @typedef {import('../src/index.js').EntityType} EntityType */
/** @typedef {'player' | 'pickup' | 'creature' | 'other'} Role */
/**
 * What the renderer knows of the world, from the schema (and the game's module, if any).
 * @typedef {object} WorldInfo
 * @property {{x0: number, y0: number, x1: number, y1: number}} bounds
 * @property {Map<string, Role>} roles positioned type name -> how it is drawn
 * @property {string[]} globals types with no position (every view holds them)
 * @property {number} cellSize the view's cell size (0: unknown, no cells drawn)
 * @property {number} viewCells cells each way around the avatar's cell that the view covers
 * @property {number} span world units across the canvas
 */
/**
 * @typedef {object} Hud
 * @property {number} held entities in the replica (the view)
 * @property {boolean} viewRoom
 * @property {number} verified checksums verified
 * @property {number} mismatches checksums mismatched
 * @property {number} entered entities that came into view so far
 * @property {number} left entities that left the view so far
 */

const PLAYER_RADIUS = 14;
const PICKUP_RADIUS = 9;
const CREATURE_SIZE = 9;
const CREATURE_COLOURS = ['#7bd389', '#e07a5f', '#9d8df1', '#f2cc8f', '#5fb4e0', '#e05fa8'];
const PICKUP_COLOURS = ['#f5c542', '#4fd1c5', '#f58f42', '#c2f542'];

/**
 * How a type is drawn, by its name.
 * @param {string} name
 * @returns {Role}
 */
export function roleOf(name) {
  if (/avatar|player|hero/i.test(name)) return 'player';
  if (/pickup|gem|item|coin|loot|food/i.test(name)) return 'pickup';
  if (/creature|npc|monster|mob|animal|enemy/i.test(name)) return 'creature';
  return 'other';
}

/**
 * The world as the schema describes it: the union of the positioned types' x and y ranges.
 * @param {Schema} schema
 * @param {{cellSize?: number, viewCells?: number, span?: number}} [game] what the game's module adds
 * @returns {WorldInfo}
 */
export function worldOf(schema, game = {}) {
  const bounds = { x0: Infinity, y0: Infinity, x1: -Infinity, y1: -Infinity };
  /** @type {Map<string, Role>} */
  const roles = new Map();
  /** @type {string[]} */
  const globals = [];
  for (const t of schema.types) {
    const ix = t.index.get('x');
    const iy = t.index.get('y');
    if (ix === undefined || iy === undefined) {
      globals.push(t.name);
      continue;
    }
    roles.set(t.name, roleOf(t.name));
    const fx = t.fields[ix];
    const fy = t.fields[iy];
    if (fx.kindName === 'FLOAT' && fy.kindName === 'FLOAT') {
      bounds.x0 = Math.min(bounds.x0, fx.lo);
      bounds.x1 = Math.max(bounds.x1, fx.hi);
      bounds.y0 = Math.min(bounds.y0, fy.lo);
      bounds.y1 = Math.max(bounds.y1, fy.hi);
    }
  }
  if (!Number.isFinite(bounds.x0)) Object.assign(bounds, { x0: 0, y0: 0, x1: 1000, y1: 1000 });
  const size = Math.max(bounds.x1 - bounds.x0, bounds.y1 - bounds.y0);
  return { bounds, roles, globals, cellSize: game.cellSize ?? 0, viewCells: game.viewCells ?? 1, span: Math.min(game.span ?? 1000, size) };
}

/** A small deterministic index from a number (a kind, an owner, an id). @param {unknown} v @param {number} n */
const pick = (v, n) => Math.abs(Number(v) || 0) % n;

export class FieldRenderer {
  /** @param {WorldInfo} world */
  constructor(world) {
    this.world = world;
    /** @type {[number, number] | null} the camera's centre, in world units */
    this.camera = null;
    /** what the last frame drew, by role (for the HUD and tests) */
    this.drawn = { player: 0, pickup: 0, creature: 0, other: 0 };
  }

  /**
   * The camera follows the avatar, staying inside the world (plus a margin, so the bounds show
   * when the avatar is near them).
   * @param {[number, number] | null} focus
   */
  _follow(focus) {
    const { bounds, span } = this.world;
    const margin = span * 0.1;
    const half = span / 2;
    const target = focus ?? this.camera ?? [(bounds.x0 + bounds.x1) / 2, (bounds.y0 + bounds.y1) / 2];
    const clamp = (/** @type {number} */ v, /** @type {number} */ lo, /** @type {number} */ hi) => (lo > hi ? (lo + hi) / 2 : Math.min(Math.max(v, lo), hi));
    this.camera = [clamp(target[0], bounds.x0 + half - margin, bounds.x1 - half + margin), clamp(target[1], bounds.y0 + half - margin, bounds.y1 - half + margin)];
    return this.camera;
  }

  /**
   * Draw one frame.
   * @param {CanvasRenderingContext2D} ctx
   * @param {HTMLCanvasElement} canvas (sized by the caller)
   * @param {DrawnEntity[]} entities what session.view() gives
   * @param {DrawnEntity | null} ownEntity the own avatar as drawn (the camera follows it)
   * @param {Hud} hud
   */
  draw(ctx, canvas, entities, ownEntity, hud) {
    /** @type {[number, number] | null} */
    const own = ownEntity ? [Number(ownEntity.values.x), Number(ownEntity.values.y)] : null;
    const { bounds, span, cellSize, viewCells, roles } = this.world;
    const W = canvas.width;
    const k = W / span;
    const [cx, cy] = this._follow(own);
    const ox = cx - span / 2;
    const oy = cy - span / 2;
    const sx = (/** @type {number} */ x) => (x - ox) * k;
    const sy = (/** @type {number} */ y) => (y - oy) * k;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    // outside the world
    ctx.fillStyle = '#05070c';
    ctx.fillRect(0, 0, W, canvas.height);
    // the world
    ctx.fillStyle = '#0f1420';
    ctx.fillRect(sx(bounds.x0), sy(bounds.y0), (bounds.x1 - bounds.x0) * k, (bounds.y1 - bounds.y0) * k);
    // the view: the cells around the avatar's cell
    if (cellSize > 0 && own) {
      const c0 = Math.floor(own[0] / cellSize) - viewCells;
      const r0 = Math.floor(own[1] / cellSize) - viewCells;
      const n = 2 * viewCells + 1;
      ctx.fillStyle = 'rgba(107,155,255,0.07)';
      ctx.fillRect(sx(c0 * cellSize), sy(r0 * cellSize), n * cellSize * k, n * cellSize * k);
    }
    // grid: the cells (or every 100 units)
    const step = cellSize > 0 ? cellSize : 100;
    ctx.strokeStyle = 'rgba(255,255,255,0.07)';
    ctx.lineWidth = 1;
    ctx.beginPath();
    for (let g = Math.ceil(Math.max(ox, bounds.x0) / step) * step; g <= Math.min(ox + span, bounds.x1); g += step) {
      ctx.moveTo(sx(g), sy(Math.max(oy, bounds.y0)));
      ctx.lineTo(sx(g), sy(Math.min(oy + span, bounds.y1)));
    }
    for (let g = Math.ceil(Math.max(oy, bounds.y0) / step) * step; g <= Math.min(oy + span, bounds.y1); g += step) {
      ctx.moveTo(sx(Math.max(ox, bounds.x0)), sy(g));
      ctx.lineTo(sx(Math.min(ox + span, bounds.x1)), sy(g));
    }
    ctx.stroke();
    // the world's bounds
    ctx.strokeStyle = '#d92d20';
    ctx.lineWidth = Math.max(2, 3 * k);
    ctx.strokeRect(sx(bounds.x0), sy(bounds.y0), (bounds.x1 - bounds.x0) * k, (bounds.y1 - bounds.y0) * k);

    const drawn = { player: 0, pickup: 0, creature: 0, other: 0 };
    /** @type {DrawnEntity[]} */
    const players = [];
    const scale = Math.max(0.6, k * 1.6);
    for (const e of entities) {
      const role = roles.get(e.type);
      if (!role) continue; // a global type: no position
      const x = sx(Number(e.values.x));
      const y = sy(Number(e.values.y));
      if (x < -40 || y < -40 || x > W + 40 || y > canvas.height + 40) continue;
      drawn[role]++;
      if (role === 'player') {
        players.push(e);
      } else if (role === 'pickup') {
        const r = PICKUP_RADIUS * scale;
        ctx.fillStyle = PICKUP_COLOURS[pick(e.values.kind ?? e.values.value, PICKUP_COLOURS.length)];
        ctx.beginPath();
        ctx.moveTo(x, y - r);
        ctx.lineTo(x + r, y);
        ctx.lineTo(x, y + r);
        ctx.lineTo(x - r, y);
        ctx.closePath();
        ctx.fill();
      } else if (role === 'creature') {
        const r = CREATURE_SIZE * scale;
        ctx.fillStyle = CREATURE_COLOURS[pick(e.values.kind ?? e.values.species ?? e.id, CREATURE_COLOURS.length)];
        ctx.beginPath();
        ctx.moveTo(x, y - r);
        ctx.lineTo(x + r * 0.9, y + r * 0.7);
        ctx.lineTo(x - r * 0.9, y + r * 0.7);
        ctx.closePath();
        ctx.fill();
      } else {
        ctx.fillStyle = '#98a2b3';
        ctx.beginPath();
        ctx.arc(x, y, 4 * scale, 0, Math.PI * 2);
        ctx.fill();
      }
    }
    // players on top, the own avatar last
    players.sort((a, b) => Number(a.predicted) - Number(b.predicted));
    ctx.font = `${Math.round(12 * scale)}px system-ui, sans-serif`;
    ctx.textAlign = 'center';
    for (const e of players) {
      const x = sx(Number(e.values.x));
      const y = sy(Number(e.values.y));
      const r = PLAYER_RADIUS * scale;
      const mine = e === ownEntity;
      ctx.fillStyle = colourOf(Number(e.values.owner ?? e.id));
      ctx.beginPath();
      ctx.arc(x, y, r, 0, Math.PI * 2);
      ctx.fill();
      if (mine) {
        ctx.strokeStyle = '#ffffff';
        ctx.lineWidth = Math.max(2, 3 * k);
        ctx.beginPath();
        ctx.arc(x, y, r + 4 * scale, 0, Math.PI * 2);
        ctx.stroke();
      }
      const label = `${e.values.name || 'player'}${mine ? ' (you)' : ''}`;
      ctx.fillStyle = mine ? '#ffffff' : 'rgba(255,255,255,0.8)';
      ctx.fillText(label, x, y - r - 6 * scale);
    }
    this.drawn = drawn;
    this._minimap(ctx, canvas, entities, own);
    this._hud(ctx, canvas, own, hud);
  }

  /**
   * The whole world in a corner: the held entities as dots, the view's cells, the avatar.
   * @param {CanvasRenderingContext2D} ctx @param {HTMLCanvasElement} canvas @param {DrawnEntity[]} entities @param {[number, number] | null} own
   */
  _minimap(ctx, canvas, entities, own) {
    const { bounds, span, cellSize, viewCells, roles } = this.world;
    const size = Math.round(canvas.width * 0.22);
    const pad = Math.round(canvas.width * 0.015);
    const x0 = canvas.width - size - pad;
    const y0 = canvas.height - size - pad;
    const w = bounds.x1 - bounds.x0;
    const h = bounds.y1 - bounds.y0;
    const m = size / Math.max(w, h);
    ctx.fillStyle = 'rgba(5,7,12,0.8)';
    ctx.fillRect(x0, y0, w * m, h * m);
    ctx.strokeStyle = 'rgba(255,255,255,0.35)';
    ctx.lineWidth = 1;
    ctx.strokeRect(x0 + 0.5, y0 + 0.5, w * m - 1, h * m - 1);
    const mx = (/** @type {number} */ x) => x0 + (x - bounds.x0) * m;
    const my = (/** @type {number} */ y) => y0 + (y - bounds.y0) * m;
    if (cellSize > 0 && own) {
      const n = 2 * viewCells + 1;
      const c0 = (Math.floor(own[0] / cellSize) - viewCells) * cellSize;
      const r0 = (Math.floor(own[1] / cellSize) - viewCells) * cellSize;
      ctx.fillStyle = 'rgba(107,155,255,0.35)';
      ctx.fillRect(mx(c0), my(r0), n * cellSize * m, n * cellSize * m);
    }
    for (const e of entities) {
      const role = roles.get(e.type);
      if (!role) continue;
      ctx.fillStyle = role === 'player' ? '#ffffff' : role === 'pickup' ? '#f5c542' : '#7bd389';
      ctx.fillRect(mx(Number(e.values.x)) - 1, my(Number(e.values.y)) - 1, 2, 2);
    }
    if (this.camera) {
      ctx.strokeStyle = 'rgba(255,255,255,0.6)';
      ctx.strokeRect(mx(this.camera[0] - span / 2), my(this.camera[1] - span / 2), span * m, span * m);
    }
  }

  /**
   * One line at the top: the view's size and the checksums.
   * @param {CanvasRenderingContext2D} ctx @param {HTMLCanvasElement} canvas @param {[number, number] | null} own @param {Hud} hud
   */
  _hud(ctx, canvas, own, hud) {
    const d = this.drawn;
    const fs = Math.max(12, Math.round(canvas.width * 0.02));
    ctx.font = `${fs}px system-ui, sans-serif`;
    ctx.textAlign = 'left';
    const lines = [
      `${hud.viewRoom ? 'view' : 'room'}: ${hud.held} entities held · on screen ${d.player} players, ${d.creature} creatures, ${d.pickup} pickups`,
      `${hud.mismatches ? `checksums: ${hud.mismatches} MISMATCHED` : `checksums: ${hud.verified} verified ✓`} · entered ${hud.entered}, left ${hud.left}` +
        (own ? ` · at ${own[0].toFixed(0)}, ${own[1].toFixed(0)}` : ''),
    ];
    const pad = fs * 0.5;
    const width = Math.max(...lines.map((l) => ctx.measureText(l).width)) + 2 * pad;
    ctx.fillStyle = 'rgba(5,7,12,0.72)';
    ctx.fillRect(pad, pad, width, lines.length * fs * 1.35 + pad);
    lines.forEach((l, i) => {
      ctx.fillStyle = i === 1 && hud.mismatches ? '#ff6b5e' : i === 1 ? '#6ce9a6' : '#e6e8ee';
      ctx.fillText(l, 2 * pad, pad + fs * 1.05 + i * fs * 1.35);
    });
  }
}
