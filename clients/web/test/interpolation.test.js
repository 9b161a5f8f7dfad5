// Interpolation with a fake clock: the delay follows the measured jitter, render time never
// runs backwards (however the ticks arrive), extrapolation is bounded, late ticks are ignored.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { Interpolator } from '../src/index.js';
import { ARENA_SCHEMA, rng } from './helpers.js';

const PLAYER = ARENA_SCHEMA.types[0];
const INTERVAL = 50;

/** An entity moving +2 units per tick along x. @param {number} tick */
const mover = (tick) => ({ id: 1, type: PLAYER, codes: PLAYER.codesFor({ x: 10 + 2 * tick, y: 5, owner: 2 }) });

/**
 * Feed `ticks` ticks arriving at tick * 50 ms + latency + a random delay, drawing at ~60 fps;
 * returns what was drawn.
 * @param {{ticks?: number, jitterMs?: number, seed?: number, bunch?: number, interp?: Interpolator}} opts
 */
function play(opts) {
  const interp = opts.interp ?? new Interpolator({ tickRate: 20 });
  const r = rng(opts.seed ?? 1);
  const ticks = opts.ticks ?? 200;
  const arrivals = [];
  let last = 0;
  for (let t = 1; t <= ticks; t++) {
    let at = t * INTERVAL + 30 + r.next() * (opts.jitterMs ?? 0);
    if (opts.bunch && t % opts.bunch !== 0) at = (Math.floor(t / opts.bunch) + 1) * opts.bunch * INTERVAL + 30; // held back, then all at once
    at = Math.max(at, last); // TCP keeps order
    last = at;
    arrivals.push({ t, at });
  }
  const drawn = [];
  let i = 0;
  for (let now = INTERVAL; now <= ticks * INTERVAL + 500; now += 16.7) {
    while (i < arrivals.length && arrivals[i].at <= now) {
      interp.push(arrivals[i].t, arrivals[i].at, [mover(arrivals[i].t)]);
      i++;
    }
    const view = interp.view(now);
    if (view.length) drawn.push({ now, renderTick: interp.renderTick, x: /** @type {number} */ (view[0].values.x), delay: interp.delayMs });
  }
  return { interp, drawn };
}

/** @param {Array<{renderTick: number, x: number}>} drawn */
function assertForwardOnly(drawn) {
  for (let k = 1; k < drawn.length; k++) {
    assert.ok(drawn[k].renderTick >= drawn[k - 1].renderTick, `render tick went back at ${k}: ${drawn[k - 1].renderTick} -> ${drawn[k].renderTick}`);
    assert.ok(drawn[k].x >= drawn[k - 1].x - 1e-9, `x went back at ${k}: ${drawn[k - 1].x} -> ${drawn[k].x}`);
  }
}

test('a steady stream: drawn two ticks behind, exactly interpolated between frames', () => {
  const { interp, drawn } = play({ ticks: 100 });
  assertForwardOnly(drawn);
  assert.ok(interp.jitterMs < 1e-6, `no jitter measured (${interp.jitterMs})`);
  assert.equal(interp.delayMs, 2 * INTERVAL);
  // the drawn position is the entity's at the render time: x = 10 + 2 * renderTick, on the line
  for (const d of drawn.slice(20, 90)) assert.ok(Math.abs(d.x - (10 + 2 * d.renderTick)) < 1e-6, `x ${d.x} at tick ${d.renderTick}`);
  const lag = drawn.slice(30, 90).map((d) => (d.now - 30) / INTERVAL - d.renderTick);
  for (const l of lag) assert.ok(Math.abs(l - 2) < 0.2, `about two ticks behind the newest (${l})`);
});

test('under jitter the delay grows with it, and nothing ever runs backwards', () => {
  const calm = play({ ticks: 300, jitterMs: 2, seed: 3 });
  const rough = play({ ticks: 300, jitterMs: 80, seed: 3 });
  assertForwardOnly(calm.drawn);
  assertForwardOnly(rough.drawn);
  assert.ok(rough.interp.jitterMs > 10 * calm.interp.jitterMs, `jitter ${rough.interp.jitterMs} vs ${calm.interp.jitterMs}`);
  assert.ok(rough.interp.delayMs > calm.interp.delayMs + 20, `delay ${rough.interp.delayMs} vs ${calm.interp.delayMs}`);
  assert.ok(calm.interp.delayMs < 2 * INTERVAL + 10, 'close to two ticks when the network is calm');
  for (const seed of [5, 6, 7, 8]) assertForwardOnly(play({ ticks: 200, jitterMs: 150, seed }).drawn);
});

test('bunched arrivals (ticks held back, then all at once) still play forward only', () => {
  const { interp, drawn } = play({ ticks: 200, bunch: 4 });
  assertForwardOnly(drawn);
  assert.ok(interp.delayMs > 2 * INTERVAL, `the delay grew to ride out the bunching (${interp.delayMs})`);
});

test('extrapolation past the newest frame is bounded, then the drawing holds', () => {
  const interp = new Interpolator({ tickRate: 20, maxExtrapolationMs: 50 });
  for (let t = 1; t <= 20; t++) interp.push(t, t * INTERVAL, [mover(t)]);
  const far = interp.view(20 * INTERVAL + 5000);
  assert.ok(interp.renderTick <= 21 + 1e-9, `render tick ${interp.renderTick} stays within one tick past 20`);
  assert.ok(Math.abs(/** @type {number} */ (far[0].values.x) - (10 + 2 * 21)) < 1e-6, 'extrapolated one tick, no more');
  const later = interp.view(20 * INTERVAL + 9000);
  assert.equal(later[0].values.x, far[0].values.x, 'held');
});

test('late and repeated ticks are ignored; a big jump (fresh snapshot) skips ahead', () => {
  const interp = new Interpolator({ tickRate: 20 });
  for (let t = 1; t <= 10; t++) interp.push(t, t * INTERVAL, [mover(t)]);
  assert.equal(interp.push(10, 600, [mover(10)]), false);
  assert.equal(interp.push(4, 600, [mover(4)]), false);
  assert.equal(interp.late, 2);
  interp.view(560);
  const before = interp.renderTick;
  // a slow reader: deltas skipped for 9.5 s, then a fresh snapshot of tick 200
  interp.view(5000);
  assert.ok(interp.renderTick <= 11 + 1e-9, 'held near the newest frame meanwhile');
  interp.push(200, 200 * INTERVAL, [mover(200)]);
  assert.equal(interp.snaps, 1);
  interp.view(200 * INTERVAL);
  assert.ok(interp.renderTick > before, 'forward');
  assert.ok(interp.renderTick > 190, `skipped ahead to near the new tick (${interp.renderTick})`);
  assert.ok(interp.delayMs < 3 * INTERVAL, `a stall is not jitter (${interp.delayMs})`);
  // the server's tick clock jumping (not physically possible in one room) is no jitter either
  interp.push(5000, 200 * INTERVAL + 60, [mover(5000)]);
  assert.ok(interp.delayMs < 3 * INTERVAL, `delay ${interp.delayMs}`);
});

test('entities appear when the render time reaches the frame that has them, and go likewise', () => {
  const interp = new Interpolator({ tickRate: 20 });
  const gem = (/** @type {number} */ id) => ({ id, type: ARENA_SCHEMA.types[1], codes: ARENA_SCHEMA.types[1].codesFor({ x: 1, y: 1, value: 1 }) });
  interp.push(1, 50, [mover(1), gem(5)]);
  interp.push(2, 100, [mover(2), gem(5)]);
  interp.push(3, 150, [mover(3), gem(6)]); // gem 5 picked up, gem 6 spawned
  interp.push(4, 200, [mover(4), gem(6)]);
  const ids = (/** @type {number} */ now) => interp.view(now).map((e) => e.id).sort();
  assert.deepEqual(ids(200), [1, 5], 'drawn at tick 2: gem 5 still there');
  assert.deepEqual(ids(260), [1, 6], 'at tick 3: gem 6');
  assert.deepEqual(interp.view(260, (id) => id === 1).map((e) => e.id), [6], 'skip leaves out predicted ones');
});

test('the buffer is bounded', () => {
  const interp = new Interpolator({ tickRate: 20, capacity: 16 });
  for (let t = 1; t <= 1000; t++) interp.push(t, t * INTERVAL, [mover(t)]);
  assert.ok(interp.frames.length <= 16);
});
