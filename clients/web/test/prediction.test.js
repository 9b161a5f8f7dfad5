// Prediction and reconciliation with a fake clock: exact replay, corrections smoothed (never
// jumped), snaps for teleports, quantization like the server's, bounded history; and the arena
// rule itself.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { SPEED, WORLD, inputFromKeys, predict, pyHypot, velocity } from '../games/arena.js';
import { Predictor } from '../src/index.js';
import { ARENA_SCHEMA } from './helpers.js';

/** @typedef {import('../src/index.js').Code} Code */

const PLAYER = ARENA_SCHEMA.types[0];
const DT = 0.05;

/** @param {number} x @param {number} y */
const avatar = (x, y) => ({ id: 7, type: PLAYER, codes: PLAYER.codesFor({ x, y, hp: 100, owner: 1, name: 'p' }) });

/** The server's side: the avatar after each input (one tick per input). @param {{x: number, y: number}} from @param {Array<{dx: number, dy: number}>} inputs */
function serverRun(from, inputs) {
  let codes = avatar(from.x, from.y).codes;
  for (const inp of inputs) {
    const after = predict(/** @type {any} */ (PLAYER.valuesFor(codes)), inp, DT);
    codes = PLAYER.codesFor({ ...after, score: 0 });
  }
  return codes;
}

test('each input is applied at once, and a matching server leaves 0 error', () => {
  const p = new Predictor({ predict, dt: DT });
  p.rebase([avatar(100, 100)], 0, 0);
  const inputs = [];
  for (let seq = 1; seq <= 10; seq++) {
    const inp = { dx: 1, dy: seq % 3 === 0 ? -0.5 : 0.25 };
    inputs.push(inp);
    p.applyInput(seq, inp, seq * 50);
  }
  const predicted = /** @type {any} */ (p.predicted(7));
  const server = PLAYER.valuesFor(serverRun({ x: 100, y: 100 }, inputs));
  assert.equal(predicted.x, server.x);
  assert.equal(predicted.y, server.y);
  // the server acks 6 of them: re-base, replay 7..10, same prediction, error 0
  const at6 = { id: 7, type: PLAYER, codes: serverRun({ x: 100, y: 100 }, inputs.slice(0, 6)) };
  p.rebase([at6], 6, 560);
  assert.equal(p.error, 0);
  assert.equal(p.pending.length, 4);
  assert.deepEqual(p.predicted(7), predicted);
  assert.equal(p.correction(), 0, 'nothing to smooth');
});

test('the drawn position glides over one tick after each input', () => {
  const p = new Predictor({ predict, dt: DT });
  p.rebase([avatar(100, 100)], 0, 0);
  p.applyInput(1, { dx: 1, dy: 0 }, 1000);
  const at = (/** @type {number} */ t) => /** @type {any} */ (p.visible(7, t)).x;
  assert.equal(at(1000), 100);
  assert.ok(Math.abs(at(1025) - 105) < 1e-9);
  assert.equal(at(1050), 110);
  assert.equal(at(5000), 110, 'and stays at the prediction');
});

test('a server that disagrees is re-based and the difference smoothed away, not jumped', () => {
  const p = new Predictor({ predict, dt: DT, smoothingMs: 100 });
  p.rebase([avatar(100, 100)], 0, 0);
  p.applyInput(1, { dx: 1, dy: 0 }, 0);
  p.applyInput(2, { dx: 1, dy: 0 }, 50);
  // the server says input 1 left the avatar at x=130 (something pushed it 20 units)
  const before = /** @type {any} */ (p.visible(7, 60)).x;
  p.rebase([avatar(130, 100)], 1, 60);
  assert.ok(Math.abs(p.error - 20) < 1e-9, `error ${p.error}`);
  assert.equal(/** @type {any} */ (p.predicted(7)).x, 140, 'server value + the replayed input 2');
  assert.ok(Math.abs(/** @type {any} */ (p.visible(7, 60)).x - before) < 1e-9, 'drawn where it was');
  const mid = /** @type {any} */ (p.visible(7, 160)).x;
  const late = /** @type {any} */ (p.visible(7, 1060)).x;
  assert.ok(mid > before && mid < 140, `gliding (${mid})`);
  assert.ok(Math.abs(late - 140) < 1e-3, `and arrived (${late})`);
  assert.ok(p.correction() > 0);
  assert.equal(p.mispredictions, 1);
  assert.equal(p.maxError, p.error);
});

test('a correction longer than snapDistance snaps (a teleport, a respawn)', () => {
  const p = new Predictor({ predict, dt: DT, snapDistance: 50 });
  p.rebase([avatar(100, 100)], 0, 0);
  p.applyInput(1, { dx: 1, dy: 0 }, 0);
  p.rebase([avatar(900, 900)], 1, 100);
  const v = /** @type {any} */ (p.visible(7, 100));
  assert.deepEqual([v.x, v.y], [900, 900]);
  assert.equal(p.correction(), 0);
});

test('predicted values are quantized to the field codes after every step, as the server does', () => {
  const p = new Predictor({ predict: (e, _i, dt) => ({ ...e, x: e.x + 0.033 * dt * 1000 }), dt: DT });
  p.rebase([avatar(0, 0)], 0, 0);
  p.applyInput(1, {}, 0);
  p.applyInput(2, {}, 0);
  // 1.65 per step: the code of 1.65 is 33 (1.65 / 0.05), then 1.65 + 1.65 = 3.3 -> 66
  assert.deepEqual(/** @type {any} */ (p.own.get(7)).codes.slice(0, 2), [66, 0]);
  assert.equal(/** @type {any} */ (p.predicted(7)).x, 66 * 0.05);
});

test('the unacked history is bounded; the oldest are forgotten', () => {
  const p = new Predictor({ predict, dt: DT, maxPending: 8 });
  p.rebase([avatar(500, 500)], 0, 0);
  for (let seq = 1; seq <= 20; seq++) p.applyInput(seq, { dx: 0, dy: 1 }, seq);
  assert.equal(p.pending.length, 8);
  assert.equal(p.forgotten, 12);
  assert.equal(p.pending[0].seq, 13);
});

test('own entities come and go with the server state', () => {
  const p = new Predictor({ predict, dt: DT });
  p.rebase([avatar(1, 1)], 0, 0);
  assert.ok(p.visible(7, 0));
  p.rebase([], 0, 10);
  assert.equal(p.visible(7, 10), undefined);
  p.reset();
  assert.equal(p.own.size, 0);
});

test('arena: the rule clamps to the world and to unit speed', () => {
  const e = { x: 995, y: 3, score: 0, hp: 100, owner: 1, name: 'a' };
  const next = predict(e, { dx: 1, dy: -1 }, DT);
  assert.equal(next.x, WORLD);
  assert.equal(next.y, 0);
  const [vx, vy] = velocity(1, 1);
  assert.ok(Math.abs(Math.hypot(vx, vy) - SPEED) < 1e-9, 'diagonals are not faster');
  assert.equal(predict(e, { dx: 0, dy: 0 }, DT), e, 'no input, no change');
  assert.equal(pyHypot(3, 4), 5);
  assert.equal(pyHypot(0, 0), 0);
  assert.equal(pyHypot(-Infinity, NaN), Infinity);
  assert.ok(Number.isNaN(pyHypot(NaN, 1)));
  assert.equal(pyHypot(5e-324, 0), 5e-324);
  assert.equal(pyHypot(1e308, 1e308), Math.SQRT2 * 1e308);
  assert.deepEqual(inputFromKeys(new Set(['ArrowRight', 'w'])), { dx: 1, dy: -1 });
});
