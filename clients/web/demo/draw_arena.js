// The arena's drawing for the demo (demo/app.js): the whole 1000 x 1000 world fitted to the
// canvas, gems as diamonds, players as circles in their owner's colour with their names, the
// player's own (predicted) avatar ringed and drawn last.

import { WORLD } from '../games/arena.js';

/** @typedef {import('../src/index.js').DrawnEntity} DrawnEntity */

const PLAYER_RADIUS = 14;
const GEM_RADIUS = 9;

/** A stable colour for a player number. @param {number} player */
export function colourOf(player) {
  const hue = (player * 137.508) % 360;
  return `hsl(${hue.toFixed(0)} 70% 58%)`;
}

/** Size the canvas to its CSS width, in device pixels (square). @param {HTMLCanvasElement} canvas */
export function fitCanvas(canvas) {
  const dpr = Math.min(window.devicePixelRatio || 1, 3);
  const size = Math.round(canvas.getBoundingClientRect().width * dpr) || 640;
  if (canvas.width !== size) {
    canvas.width = size;
    canvas.height = size;
  }
}

/**
 * Draw one frame of the arena.
 * @param {CanvasRenderingContext2D} ctx @param {HTMLCanvasElement} canvas @param {DrawnEntity[]} entities
 */
export function drawArena(ctx, canvas, entities) {
  fitCanvas(canvas);
  const k = canvas.width / WORLD;
  ctx.setTransform(1, 0, 0, 1, 0, 0);
  ctx.fillStyle = '#0f1420';
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  ctx.strokeStyle = 'rgba(255,255,255,0.06)';
  ctx.lineWidth = 1;
  for (let g = 100; g < WORLD; g += 100) {
    ctx.beginPath();
    ctx.moveTo(g * k, 0);
    ctx.lineTo(g * k, canvas.height);
    ctx.moveTo(0, g * k);
    ctx.lineTo(canvas.width, g * k);
    ctx.stroke();
  }
  for (const e of entities) {
    if (e.type !== 'gem') continue;
    const x = /** @type {number} */ (e.values.x) * k;
    const y = /** @type {number} */ (e.values.y) * k;
    const r = GEM_RADIUS * k;
    ctx.fillStyle = '#f5c542';
    ctx.beginPath();
    ctx.moveTo(x, y - r);
    ctx.lineTo(x + r, y);
    ctx.lineTo(x, y + r);
    ctx.lineTo(x - r, y);
    ctx.closePath();
    ctx.fill();
  }
  ctx.font = `${Math.max(11, Math.round(12 * k * 1.6))}px system-ui, sans-serif`;
  ctx.textAlign = 'center';
  // own avatar last, on top
  const players = entities.filter((e) => e.type === 'player').sort((a, b) => Number(a.predicted) - Number(b.predicted));
  for (const e of players) {
    const x = /** @type {number} */ (e.values.x) * k;
    const y = /** @type {number} */ (e.values.y) * k;
    const r = PLAYER_RADIUS * k;
    ctx.fillStyle = colourOf(Number(e.values.owner));
    ctx.beginPath();
    ctx.arc(x, y, r, 0, Math.PI * 2);
    ctx.fill();
    if (e.predicted) {
      ctx.strokeStyle = '#ffffff';
      ctx.lineWidth = Math.max(2, 3 * k);
      ctx.beginPath();
      ctx.arc(x, y, r + 4 * k, 0, Math.PI * 2);
      ctx.stroke();
    }
    // the name above the avatar (below it at the top edge), kept inside the canvas
    const label = `${e.values.name || 'player'}${e.predicted ? ' (you)' : ''}`;
    const half = ctx.measureText(label).width / 2 + 2;
    const lx = Math.min(Math.max(x, half), canvas.width - half);
    const above = y - r - 6 * k;
    ctx.fillStyle = e.predicted ? '#ffffff' : 'rgba(255,255,255,0.8)';
    ctx.fillText(label, lx, above > 14 * k * 1.6 ? above : y + r + 16 * k * 1.6);
  }
}
