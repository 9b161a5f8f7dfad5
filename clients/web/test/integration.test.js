// The SDK against the real server: `python -m gameserver.cli serve` started by this test on
// 127.0.0.1 port 0 (realserver.js), tokens from `gameserver token`, clients using the `ws`
// package. Without the project's Python environment it skips, except on CI.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import WebSocket from 'ws';

import { arena, velocity } from '../games/arena.js';
import { Field, connect, encodeServerMessage, toHex } from '../src/index.js';
import { ARENA_INPUT, randomSchema, randomStates, rng } from './helpers.js';
import { PYTHON, ROOT, SKIP, sleep, startServer, token, until } from './realserver.js';

/** @typedef {import('../src/index.js').Session} Session */

describe('against a real server (ws://, a checksum every tick)', { skip: SKIP }, () => {
  const stateDir = mkdtempSync(join(tmpdir(), 'gs-web-'));
  /** @type {import('node:child_process').ChildProcess | undefined} */
  let proc;
  let url = '';
  before(async () => {
    ({ url, proc } = await startServer(stateDir, ['--insecure', '--checksum-interval', '1']));
  });
  after(() => {
    if (proc?.pid) process.kill(proc.pid, 'SIGTERM');
    rmSync(stateDir, { recursive: true, force: true });
  });

  test('two players: inputs acked, checksums verified, prediction exact, others glide, chat', async (t) => {
    const opts = { room: 'js-it', game: 'arena', WebSocket, predict: arena.predict, snapDistance: arena.snapDistance };
    const alice = connect(url, { ...opts, token: await token(stateDir, 'alice') });
    await alice.ready;
    const bob = connect(url, { ...opts, token: () => token(stateDir, 'bob') });
    await bob.ready;
    assert.equal(alice.game, 'arena');
    assert.equal(alice.tickRate, 20);
    await until(() => bob.entities('player').length === 2 && alice.entities('player').length === 2, 'both avatars');

    /** @type {string[]} */
    const chat = [];
    bob.on('event', (e) => e.name === 'chat' && chat.push(`${e.sender}:${e.text}`));

    // alice holds "right" for 2 s (40 ticks); bob samples what he draws of her at ~60 fps
    alice.setInput({ dx: 1, dy: 0.25 });
    const aliceId = alice.entities('player').find((e) => e.get('owner') == alice.player)?.id;
    /** @type {number[]} */
    const renderTicks = [];
    /** @type {number[]} */
    const drawnX = [];
    const t0 = Date.now();
    while (Date.now() - t0 < 2000) {
      const v = bob.view();
      renderTicks.push(v.renderTick);
      const her = v.entities.find((e) => e.id === aliceId);
      if (her) drawnX.push(/** @type {number} */ (her.values.x));
      await sleep(16);
    }
    alice.setInput({ dx: 0, dy: 0 });
    const stop = alice.tick + 2;
    await until(() => alice.tick >= stop, 'two more ticks');
    alice.setInput(null);
    const last = alice.lastSent;
    assert.ok(alice.sendEvent('chat', 'hello from js'));
    await until(() => alice.lastAcked >= last, 'the last input acked');
    await until(() => chat.length > 0, 'the chat line');

    for (const s of [alice, bob]) {
      assert.ok(s.stats.checksumsVerified >= 40, `${s.stats.checksumsVerified} checksums verified`);
      assert.equal(s.stats.checksumMismatches, 0);
      assert.equal(s.stats.desyncs, 0);
    }
    assert.ok(alice.stats.inputsSent >= 35, `${alice.stats.inputsSent} inputs sent`);
    assert.equal(alice.stats.inputsAcked, alice.stats.inputsSent);
    assert.ok(alice.inputLatencyAvgMs > 0 && alice.inputLatencyAvgMs < 200, `latency ${alice.inputLatencyAvgMs}`);
    const pred = /** @type {import('../src/index.js').Predictor} */ (alice.predictor);
    t.diagnostic(`prediction: ${pred.measured} measured, ${pred.mispredictions} mispredicted, max error ${pred.maxError}; checksums ${alice.stats.checksumsVerified}; latency ${alice.inputLatencyAvgMs.toFixed(1)} ms; bob delay ${bob.interpolator?.delayMs.toFixed(1)} ms jitter ${bob.interpolator?.jitterMs.toFixed(2)}`);
    assert.ok(pred.measured >= 30, `${pred.measured} predictions measured`);
    // one input per tick lands in one tick on a quiet loopback; allow a rare late one
    assert.ok(pred.mispredictions <= Math.max(1, pred.measured * 0.05), `${pred.mispredictions} of ${pred.measured} mispredicted (max error ${pred.maxError})`);
    // bob's drawing of alice: time never runs backwards, and she moves only right (x never decreases)
    for (let i = 1; i < renderTicks.length; i++) assert.ok(renderTicks[i] >= renderTicks[i - 1], `render tick went back at ${i}`);
    assert.ok(drawnX.length > 100);
    for (let i = 1; i < drawnX.length; i++) assert.ok(drawnX[i] >= drawnX[i - 1] - 1e-9, `drawn x went back at ${i}: ${drawnX[i - 1]} -> ${drawnX[i]}`);
    assert.ok(drawnX[drawnX.length - 1] > drawnX[0], 'and she did move');
    assert.deepEqual(chat, [`${alice.player}:hello from js`]);

    const info = await alice.leave();
    assert.equal(info.code, 1000);
    await until(() => bob.entities('player').length === 1, "alice's avatar removed");
    await bob.leave();
  });

  test('a bad token is refused with 4001, and the page can say why', async () => {
    const s = connect(url, { room: 'js-it', token: 'not.a.token', WebSocket });
    await assert.rejects(s.ready);
    assert.equal(s.closeInfo?.code, 4001);
    assert.equal(s.closeInfo?.name, 'UNAUTHORIZED');
    assert.equal(s.closeInfo?.byServer, true);
    assert.match(s.closeInfo?.detail ?? '', /unauthorized/);
    assert.equal(s.closeInfo?.advice, 'new-token');
  });

  test('a private room: created, then joined by its id', async () => {
    const host = connect(url, { private: true, game: 'arena', WebSocket, token: await token(stateDir, 'carol') });
    await host.ready;
    assert.match(host.room, /^~[A-Za-z0-9_-]{22}$/);
    const guest = connect(url, { room: host.room, game: 'arena', WebSocket, token: await token(stateDir, 'dave') });
    await guest.ready;
    assert.equal(guest.room, host.room);
    await until(() => guest.entities('player').length === 2, 'both in the private room');
    await guest.leave();
    await host.leave();
  });

  test("quantization and the movement rule agree with the server's Python bit for bit", async () => {
    // 2000 values per field through JS toCode and shared.schema.Float.to_code
    const fields = [
      [0, 1000, 0.05],
      [-1, 1, 0.01],
      [-3.5, 12.25, 0.001],
      [0, 100000, 0.01],
    ];
    /** @type {number[]} */
    const values = [];
    for (let i = 0; i < 2000; i++) values.push(((i * 7919) % 2003) / 2.0 - 10 + i * 0.0375);
    const script = `
import json, sys
from shared.schema import Float
from gameserver.games.arena import SPEED
import math
req = json.load(sys.stdin)
codes = [[Float(*f).to_code(v) for v in req["values"]] for f in req["fields"]]
vel = []
for a in range(201):
    for b in range(201):
        dx, dy = -1 + a * 0.01, -1 + b * 0.01
        n = math.hypot(dx, dy)
        if n > 1.0:
            dx, dy = dx / n, dy / n
        vel.append([dx * SPEED, dy * SPEED])
print(json.dumps({"codes": codes, "vel": vel}))
`;
    const child = spawn(PYTHON, ['-c', script], { cwd: ROOT, stdio: ['pipe', 'pipe', 'inherit'] });
    child.stdin.end(JSON.stringify({ fields, values }));
    let out = '';
    for await (const chunk of child.stdout) out += chunk;
    const py = JSON.parse(out);
    fields.forEach(([lo, hi, precision], i) => {
      const f = new Field('f', 'FLOAT', { lo, hi, precision });
      assert.deepEqual(values.map((v) => f.toCode(v)), py.codes[i], `FLOAT(${lo}, ${hi}, ${precision})`);
    });
    let k = 0;
    for (let a = 0; a <= 200; a++) {
      for (let b = 0; b <= 200; b++, k++) {
        const [vx, vy] = velocity(-1 + a * 0.01, -1 + b * 0.01);
        if (vx !== py.vel[k][0] || vy !== py.vel[k][1]) assert.fail(`velocity for codes ${a}, ${b}: ${vx},${vy} != ${py.vel[k]}`);
      }
    }
  });
});

describe("the server's Python codec reads what this codec writes", { skip: SKIP }, () => {
  test('random schemas and sessions: Python parses them and verifies every JS checksum', async () => {
    const r = rng(99);
    const cases = [];
    /** @type {number[]} */
    const expected = [];
    for (let n = 0; n < 40; n++) {
      const schema = randomSchema(r);
      const joined = encodeServerMessage({ kind: 'JOINED', version: 1, player: 1, room: 'r', game: 'g', tickRate: 20, schema, inputSchema: ARENA_INPUT });
      const { messages, server } = randomStates(r, schema, 10);
      cases.push({ joined: toHex(joined), messages: messages.map((m) => toHex(m.bytes)) });
      expected.push(server.checksum());
    }
    const script = `
import json, sys
from shared.messages import parse_server_message
from shared.replica import Replica
out = []
for case in json.load(sys.stdin):
    joined = parse_server_message(bytes.fromhex(case["joined"]))
    replica = Replica(joined.schema)
    for m in case["messages"]:
        msg = parse_server_message(bytes.fromhex(m), joined.schema, replica.type_of)
        if type(msg).__name__ == "Snapshot":
            replica.apply_snapshot(msg)
        else:
            replica.apply_delta(msg)
    out.append([replica.checks, replica.checksum()])
print(json.dumps(out))
`;
    const child = spawn(PYTHON, ['-c', script], { cwd: ROOT, stdio: ['pipe', 'pipe', 'inherit'] });
    child.stdin.end(JSON.stringify(cases));
    let out = '';
    for await (const chunk of child.stdout) out += chunk;
    const py = JSON.parse(out);
    assert.equal(py.length, cases.length);
    py.forEach((/** @type {[number, number]} */ [checks, checksum], /** @type {number} */ i) => {
      assert.equal(checks, 6, `case ${i}: the snapshot and 5 deltas carry checksums, all verified by Python`);
      assert.equal(checksum, expected[i], `case ${i}: the same final state`);
    });
  });
});

describe('against a real server over TLS (the dev CA)', { skip: SKIP }, () => {
  const stateDir = mkdtempSync(join(tmpdir(), 'gs-web-tls-'));
  /** @type {import('node:child_process').ChildProcess | undefined} */
  let proc;
  let url = '';
  before(async () => {
    ({ url, proc } = await startServer(stateDir, []));
  });
  after(() => {
    if (proc?.pid) process.kill(proc.pid, 'SIGTERM');
    rmSync(stateDir, { recursive: true, force: true });
  });

  test('wss:// trusting the dev CA: join, play, verify, leave', async () => {
    assert.match(url, /^wss:\/\//);
    const ca = readFileSync(join(stateDir, 'dev-ca.pem'));
    class TrustingWebSocket extends WebSocket {
      /** @param {string} u @param {string | string[]} protocols */
      constructor(u, protocols) {
        super(u, protocols, { ca });
      }
    }
    const s = connect(url, { room: 'tls', game: 'arena', WebSocket: TrustingWebSocket, predict: arena.predict, token: await token(stateDir, 'erin') });
    await s.ready;
    s.setInput({ dx: -0.5, dy: 1 });
    await until(() => s.stats.checksumsVerified >= 3, 'three checksums (every 5 ticks)');
    assert.equal(s.stats.checksumMismatches, 0);
    assert.ok(s.lastAcked > 0);
    assert.equal((await s.leave()).name, 'NORMAL');
  });

  test('an untrusted certificate fails as a lost connection (1006), explained', async () => {
    const s = connect(url, { room: 'tls', WebSocket, token: 'x' });
    await assert.rejects(s.ready);
    assert.equal(s.closeInfo?.code, 1006);
    assert.equal(s.closeInfo?.advice, 'retry');
  });
});
