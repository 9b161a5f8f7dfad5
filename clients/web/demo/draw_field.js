// The drawing of a big world for the demo (demo/app.js): the field game, or any game whose
// entity types have `x` and `y` fields. The world is larger than the canvas, so a camera
// follows the player's own avatar. The world's bounds are the game's (field: a square that
// wraps around, its side set by the room's size) or else come from the schema JOINED sent (the
// range of the types' `x` and `y` FLOAT fields). Each type is drawn by what its name says it
// is: players (circles with names), pickups (diamonds by value), creatures (triangles by
// kind), anything else positioned (dots); types with no position (field's scoreboard) are in
// every view and not drawn. In a view room the 3x3 cells around the avatar (the view the
// server sends) are shaded, and a minimap shows where in the world the view is. A HUD says how
// many entities the view holds and that their checksums verify.
//
// In a wrapping world every entity is drawn at its copy nearest the camera, the world's edge
// (where it wraps) is a dashed red line, and the camera follows the avatar across it.

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
 * @property {boolean} wrap the world wraps around at its bounds (a torus)
 */
/**
 * @typedef {object} Hud
 * @property {number} held entities in the replica (the view)
 * @property {boolean} viewRoom
 * @property {number} verified checksums verified
 * @property {number} mismatches checksums mismatched
 * @property {number} entered entities that came into view so far
 * @property {number} left entities that left the view so far
 * @property {Record<string, unknown> | null} [board] a scoreboard entity's values (field's `board`: clock, players, record, holder)
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
 * The world as the schema describes it: the union of the positioned types' x and y ranges,
 * unless the game's module knows better (`side`: a square world 0 .. side).
 * @param {Schema} schema
 * @param {{cellSize?: number, viewCells?: number, span?: number, side?: number, wrap?: boolean}} [game] what the game's module adds
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
  if (game.side) Object.assign(bounds, { x0: 0, y0: 0, x1: game.side, y1: game.side });
  if (!Number.isFinite(bounds.x0)) Object.assign(bounds, { x0: 0, y0: 0, x1: 1000, y1: 1000 });
  const size = Math.max(bounds.x1 - bounds.x0, bounds.y1 - bounds.y0);
  const wrap = game.wrap === true;
  return { bounds, roles, globals, cellSize: game.cellSize ?? 0, viewCells: game.viewCells ?? 1, span: wrap ? game.span ?? 1000 : Math.min(game.span ?? 1000, size), wrap };
}

/**
 * The copy of coordinate `v` nearest to `c` in a world that wraps every `side` units.
 * @param {number} v @param {number} c @param {number} side
 */
export function nearest(v, c, side) {
  return v + side * Math.round((c - v) / side);
}

/** `n thing(s)`. @param {number} n @param {string} thing */
const count = (n, thing) => `${n} ${thing}${n === 1 ? '' : 's'}`;

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
    /** frames in a row in which the avatar was far from the camera (a one-frame glide across the wrap, or a jump) */
    this._far = 0;
  }

  /** @param {number} w the new side of a square world 0 .. w (field: once the room's size is known) */
  resize(w) {
    Object.assign(this.world.bounds, { x0: 0, y0: 0, x1: w, y1: w });
  }

  /**
   * The camera follows the avatar, staying inside the world (plus a margin, so the bounds show
   * when the avatar is near them).
   * @param {[number, number] | null} focus
   */
  _follow(focus) {
    const { bounds, span, wrap } = this.world;
    if (wrap) {
      const side = bounds.x1 - bounds.x0;
      const cam = this.camera;
      if (!focus) return cam ?? [side / 2, side / 2];
      if (!cam) return (this.camera = [focus[0], focus[1]]);
      // the camera takes the avatar's copy nearest to it; a glide drawn across the wrap (one
      // frame half a world away) is not followed, a real jump (a teleport) is, after 3 frames
      const next = /** @type {[number, number]} */ ([nearest(focus[0], cam[0], side), nearest(focus[1], cam[1], side)]);
      if (Math.hypot(next[0] - cam[0], next[1] - cam[1]) > span && ++this._far < 3) return cam;
      this._far = 0;
      // keep the camera's numbers inside the world
      return (this.camera = [nearest(next[0], side / 2, side), nearest(next[1], side / 2, side)]);
    }
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
    const { bounds, span, cellSize, viewCells, roles, wrap } = this.world;
    const side = bounds.x1 - bounds.x0;
    const W = canvas.width;
    const k = W / span;
    const [cx, cy] = this._follow(own);
    const ox = cx - span / 2;
    const oy = cy - span / 2;
    // world -> canvas; in a wrapping world, the copy nearest the camera
    const sx = wrap ? (/** @type {number} */ x) => (nearest(x, cx, side) - ox) * k : (/** @type {number} */ x) => (x - ox) * k;
    const sy = wrap ? (/** @type {number} */ y) => (nearest(y, cy, side) - oy) * k : (/** @type {number} */ y) => (y - oy) * k;
    // unwrapped: for lines and areas that may lie across the wrap
    const ux = (/** @type {number} */ x) => (x - ox) * k;
    const uy = (/** @type {number} */ y) => (y - oy) * k;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    // outside the world (none when it wraps), the world
    ctx.fillStyle = wrap ? '#0f1420' : '#05070c';
    ctx.fillRect(0, 0, W, canvas.height);
    if (!wrap) {
      ctx.fillStyle = '#0f1420';
      ctx.fillRect(ux(bounds.x0), uy(bounds.y0), side * k, (bounds.y1 - bounds.y0) * k);
    }
    // the view: the cells around the avatar's cell
    if (cellSize > 0 && own) {
      const ax = wrap ? nearest(own[0], cx, side) : own[0];
      const ay = wrap ? nearest(own[1], cy, side) : own[1];
      const c0 = Math.floor(ax / cellSize) - viewCells;
      const r0 = Math.floor(ay / cellSize) - viewCells;
      const n = 2 * viewCells + 1;
      ctx.fillStyle = 'rgba(107,155,255,0.08)';
      ctx.fillRect(ux(c0 * cellSize), uy(r0 * cellSize), n * cellSize * k, n * cellSize * k);
      ctx.strokeStyle = 'rgba(107,155,255,0.35)';
      ctx.lineWidth = 1;
      ctx.strokeRect(ux(c0 * cellSize), uy(r0 * cellSize), n * cellSize * k, n * cellSize * k);
    }
    // grid: the cells (or every 100 units)
    const step = cellSize > 0 ? cellSize : 100;
    const gx0 = wrap ? ox : Math.max(ox, bounds.x0);
    const gx1 = wrap ? ox + span : Math.min(ox + span, bounds.x1);
    const gy0 = wrap ? oy : Math.max(oy, bounds.y0);
    const gy1 = wrap ? oy + span : Math.min(oy + span, bounds.y1);
    ctx.strokeStyle = 'rgba(255,255,255,0.07)';
    ctx.lineWidth = 1;
    ctx.beginPath();
    for (let g = Math.ceil(gx0 / step) * step; g <= gx1; g += step) {
      ctx.moveTo(ux(g), uy(gy0));
      ctx.lineTo(ux(g), uy(gy1));
    }
    for (let g = Math.ceil(gy0 / step) * step; g <= gy1; g += step) {
      ctx.moveTo(ux(gx0), uy(g));
      ctx.lineTo(ux(gx1), uy(g));
    }
    ctx.stroke();
    // the world's bounds: a wall, or (wrapping) a dashed seam where it wraps around
    ctx.strokeStyle = '#d92d20';
    ctx.lineWidth = Math.max(2, 3 * k);
    if (wrap) {
      ctx.setLineDash([10, 8]);
      ctx.beginPath();
      for (let g = Math.ceil(ox / side) * side; g <= ox + span; g += side) {
        ctx.moveTo(ux(g), 0);
        ctx.lineTo(ux(g), canvas.height);
      }
      for (let g = Math.ceil(oy / side) * side; g <= oy + span; g += side) {
        ctx.moveTo(0, uy(g));
        ctx.lineTo(W, uy(g));
      }
      ctx.stroke();
      ctx.setLineDash([]);
    } else {
      ctx.strokeRect(ux(bounds.x0), uy(bounds.y0), side * k, (bounds.y1 - bounds.y0) * k);
    }

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
      // the view's cells, each on its own (in a wrapping world they may lie on both sides)
      const cells = Math.max(1, Math.round(w / cellSize));
      const ac = Math.floor(own[0] / cellSize);
      const ar = Math.floor(own[1] / cellSize);
      ctx.fillStyle = 'rgba(107,155,255,0.45)';
      for (let i = -viewCells; i <= viewCells; i++) {
        for (let j = -viewCells; j <= viewCells; j++) {
          const c = this.world.wrap ? (((ac + i) % cells) + cells) % cells : ac + i;
          const r = this.world.wrap ? (((ar + j) % cells) + cells) % cells : ar + j;
          ctx.fillRect(mx(c * cellSize), my(r * cellSize), cellSize * m, cellSize * m);
        }
      }
    }
    for (const e of entities) {
      const role = roles.get(e.type);
      if (!role) continue;
      ctx.fillStyle = role === 'player' ? '#ffffff' : role === 'pickup' ? '#f5c542' : '#7bd389';
      ctx.fillRect(mx(Number(e.values.x)) - 1, my(Number(e.values.y)) - 1, 2, 2);
    }
    if (own) {
      ctx.fillStyle = '#ffffff';
      ctx.beginPath();
      ctx.arc(mx(own[0]), my(own[1]), 3, 0, Math.PI * 2);
      ctx.fill();
    }
    if (this.camera && !this.world.wrap) {
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
      `${hud.viewRoom ? 'view' : 'room'}: ${hud.held} entities held · on screen ${count(d.player, 'player')}, ${count(d.creature, 'creature')}, ${count(d.pickup, 'pickup')}`,
      `${hud.mismatches ? `checksums: ${hud.mismatches} MISMATCHED` : `checksums: ${hud.verified} verified ✓`} · entered ${hud.entered}, left ${hud.left}` +
        (own ? ` · at ${own[0].toFixed(0)}, ${own[1].toFixed(0)}` : ''),
    ];
    const b = hud.board;
    if (b) {
      const clock = Number(b.clock ?? 0);
      const time = `${Math.floor(clock / 60)}:${String(clock % 60).padStart(2, '0')}`;
      lines.push(`room: ${b.players ?? '?'} players · ${time}` + (Number(b.record ?? 0) > 0 ? ` · record ${b.record} by ${b.holder || '?'}` : ''));
    }
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
