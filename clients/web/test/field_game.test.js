// games/field.js against the server's field (gameserver/games/field.py, run in the project's
// Python through its RoomHarness): one tick of the avatar's movement, for every input code on
// a grid of directions and from positions in the middle of the world and at its wrapping
// edges, predicted in JavaScript from the position the client holds. Straight moves must give
// the server's codes exactly; any move within one code (the server keeps the fraction below a
// code, which the wire does not carry).

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { test } from 'node:test';

import { PER_UNIT, WORLD, fieldClient, inputFromKeys, step } from '../games/field.js';
import { Field, InputSchema } from '../src/index.js';
import { PYTHON, ROOT, SKIP } from './realserver.js';

const AXIS = new Field('dx', 'FLOAT', { lo: -1, hi: 1, precision: 0.01 });
const INPUT = new InputSchema([AXIS, new Field('dy', 'FLOAT', { lo: -1, hi: 1, precision: 0.01 })]);
const POS = new Field('x', 'FLOAT', { lo: 0, hi: 8000, precision: 0.125 });

test('step(): straight moves, the clamp to length 1, the wrap at the world edges', () => {
  const dt = 0.05;
  const base = { x: 100, y: 100, score: 0, owner: 1, name: 'a' };
  assert.deepEqual(step(base, { dx: 1, dy: 0 }, dt, WORLD), { ...base, x: 110 });
  assert.deepEqual(step(base, { dx: 0, dy: -1 }, dt, WORLD), { ...base, y: 90 });
  assert.equal(step(base, { dx: 0, dy: 0 }, dt, WORLD), base, 'no input: the same values');
  const d = step(base, { dx: 1, dy: 1 }, dt, WORLD);
  assert.ok(Math.abs(Math.hypot(d.x - 100, d.y - 100) - 10) < 0.2, 'a diagonal is clamped to length 1');
  assert.deepEqual(step({ ...base, x: 3995 }, { dx: 1, dy: 0 }, dt, WORLD), { ...base, x: 5 }, 'wraps on the right');
  assert.deepEqual(step({ ...base, x: 3 }, { dx: -1, dy: 0 }, dt, WORLD), { ...base, x: 3993 }, 'wraps on the left');
  assert.deepEqual(step({ ...base, y: 995 }, { dx: 0, dy: 1 }, dt, 1000), { ...base, y: 5 }, 'a smaller room: a smaller world');
  const client = fieldClient({ side: 1000 });
  client.world.side = 2000;
  assert.deepEqual(client.options.predict({ ...base, x: 1995 }, { dx: 1, dy: 0 }, dt), { ...base, x: 5 }, 'the side is read at every step');
  assert.deepEqual(inputFromKeys(new Set(['ArrowLeft', 's'])), { dx: -1, dy: 1 });
});

test('prediction equals the server\'s field movement (Python), straight moves exactly', { skip: SKIP }, async () => {
  // directions: every 10th input code on each axis (21 x 21), from a middle and an edge position
  /** @type {Array<[number, number, number, number]>} (x code, y code, dx code, dy code) */
  const cases = [];
  const side = 1000; // a room of 16: the smallest world
  const starts = [
    [4000, 4000],
    [3, 7997], // next to the left and bottom edges (wire codes: 8 per unit)
    [7999, 0],
  ];
  for (const [x, y] of starts) for (let i = 0; i <= 200; i += 10) for (let j = 0; j <= 200; j += 10) cases.push([x, y, i, j]);
  const script = `
import json, sys
from gameserver.games.field import Field, INPUT, PLAYER
from gameserver.testing import RoomHarness
h = RoomHarness(Field, max_players=16)
alice = h.join("alice")
h.tick()
game = h.game
avatar = alice.player.data["avatar"]
fields = list(INPUT.fields.values())
out = []
for x, y, i, j in json.load(sys.stdin):
    avatar.codes[0], avatar.codes[1] = x, y
    game.motion[alice.number] = [float(x), float(y), 0.0, 0.0]
    game.on_input(alice.player, type("I", (), {"values": (fields[0].to_value(i), fields[1].to_value(j))})())
    game.update(1 / 20)
    out.append([avatar.codes[0], avatar.codes[1]])
print(json.dumps(out))
`;
  const child = spawn(PYTHON, ['-c', script], { cwd: ROOT, stdio: ['pipe', 'pipe', 'inherit'] });
  let stdout = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stdin.end(JSON.stringify(cases));
  const code = await new Promise((resolve) => child.once('exit', resolve));
  assert.equal(code, 0);
  /** @type {Array<[number, number]>} */
  const server = JSON.parse(stdout);
  assert.equal(server.length, cases.length);
  let exact = 0;
  let straight = 0;
  cases.forEach(([x, y, i, j], k) => {
    const input = INPUT.valuesFor([i, j]);
    const after = step({ x: Number(POS.toValue(x)), y: Number(POS.toValue(y)), score: 0, owner: 1, name: 'alice' }, /** @type {any} */ (input), 1 / 20, side);
    const got = [Number(POS.toCode(after.x)), Number(POS.toCode(after.y))];
    const want = server[k];
    const isStraight = i === 100 || j === 100;
    if (got[0] === want[0] && got[1] === want[1]) exact++;
    if (isStraight) {
      straight++;
      assert.deepEqual(got, want, `from (${x}, ${y}) with input codes (${i}, ${j})`);
    } else {
      const off = (/** @type {number} */ a, /** @type {number} */ b) => Math.min(Math.abs(a - b), side * PER_UNIT - Math.abs(a - b));
      assert.ok(off(got[0], want[0]) <= 1 && off(got[1], want[1]) <= 1, `from (${x}, ${y}) with input codes (${i}, ${j}): ${got} vs the server's ${want}`);
    }
  });
  assert.ok(straight >= 120);
  assert.ok(exact >= cases.length / 2, `${exact} of ${cases.length} exact`);
  console.log(`field prediction: ${exact} of ${cases.length} exact (the rest within one code, 1/8 unit)`);
});
