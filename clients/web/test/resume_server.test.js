// Reconnecting against the real server (gamesync.v2 over wss://, the dev CA trusted), through
// the project's fault proxy (tools/faultproxy.py, driven by faultproxy.js): a cut with no close
// frame, a silent network, a hold that expires, a tolerated desync recovered by RESYNC, a
// server gone for good. The other player connects straight to the server and must not notice
// a thing.

import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import WebSocket from 'ws';

import { arena } from '../games/arena.js';
import { connect } from '../src/index.js';
import { startFaultProxy } from './faultproxy.js';
import { PYTHON, ROOT, SKIP, sleep, startServer, stopServer, token, until } from './realserver.js';

/** @typedef {import('../src/index.js').Session} Session */
/** @typedef {import('./faultproxy.js').FaultProxy} FaultProxy */

/**
 * Everything a session says about reconnecting, with the time it said it.
 * @param {Session} s
 */
function record(s) {
  /** @type {Array<{at: number, event: string, [k: string]: any}>} */
  const log = [];
  for (const name of /** @type {const} */ (['reconnecting', 'resumed', 'lost', 'joined', 'desync', 'close'])) {
    s.on(name, (e) => log.push({ at: Date.now(), event: name, ...e }));
  }
  return log;
}

/** The player's own avatar. @param {Session} s */
const avatarOf = (s) => s.entities('player').find((e) => e.get('owner') == s.player);

/**
 * A server of our own with `args` (wss://, with its dev CA), and a fault proxy in front of it.
 * @param {string[]} args
 */
function serverWithProxy(args) {
  const stateDir = mkdtempSync(join(tmpdir(), 'gs-web-resume-'));
  const ctx = {
    stateDir,
    url: '',
    /** @type {import('node:child_process').ChildProcess | undefined} */
    proc: undefined,
    /** @type {FaultProxy | undefined} */
    proxy: undefined,
    /** @type {import('../src/index.js').WebSocketConstructor} a `ws` WebSocket trusting the server's dev CA */
    WebSocket: /** @type {import('../src/index.js').WebSocketConstructor} */ (/** @type {unknown} */ (WebSocket)),
  };
  before(async () => {
    const s = await startServer(stateDir, ['--checksum-interval', '1', ...args]);
    ctx.url = s.url;
    ctx.proc = s.proc;
    const ca = readFileSync(join(stateDir, 'dev-ca.pem'));
    ctx.WebSocket = class TrustingWebSocket extends WebSocket {
      /** @param {string} u @param {string | string[]} protocols */
      constructor(u, protocols) {
        super(u, protocols, { ca });
      }
    };
    ctx.proxy = await startFaultProxy({ python: PYTHON, root: ROOT, targetPort: s.port });
  });
  after(async () => {
    await ctx.proxy?.close();
    await stopServer(ctx.proc);
    rmSync(stateDir, { recursive: true, force: true });
  });
  return ctx;
}

/**
 * Alice through the proxy, bob straight to the server, both in `room` and seeing each other.
 * @param {ReturnType<typeof serverWithProxy>} ctx
 * @param {string} room
 * @param {Partial<import('../src/index.js').ConnectOptions>} [opts] alice's
 */
async function twoPlayers(ctx, room, opts = {}) {
  const proxy = /** @type {FaultProxy} */ (ctx.proxy);
  assert.match(ctx.url, /^wss:\/\//);
  const base = { room, game: 'arena', WebSocket: ctx.WebSocket, predict: arena.predict, snapDistance: arena.snapDistance };
  const alice = connect(proxy.url, { ...base, token: () => token(ctx.stateDir, `alice-${room}`), ...opts });
  const aliceLog = record(alice);
  await alice.ready;
  const bob = connect(ctx.url, { ...base, token: await token(ctx.stateDir, `bob-${room}`) });
  const bobLog = record(bob);
  await bob.ready;
  await until(() => alice.entities('player').length === 2 && bob.entities('player').length === 2, 'both avatars');
  aliceLog.length = 0; // from here on: what the faults cause
  bobLog.length = 0;
  return { proxy, alice, bob, aliceLog, bobLog };
}

describe('resuming against a real server (v3, wss://, through tools/faultproxy.py)', { skip: SKIP }, () => {
  const ctx = serverWithProxy(['--seat-hold', '20']);

  test('a cut with no close frame, the network back 1.5 s later: same seat, same entity, 0 desyncs, back within 1 s', async (t) => {
    const { proxy, alice, bob, aliceLog, bobLog } = await twoPlayers(ctx, 'cut');
    assert.equal(alice.version, 3); // v3 offered first: its catch-up deltas and motion
    assert.ok(alice.resumeToken.length > 0, 'a resume token');
    const player = alice.player;
    const avatar = avatarOf(alice);
    assert.ok(avatar);
    const score = Number(avatar.get('score'));
    // bob watches alice's avatar on every state: it must never go away
    let bobLostHer = 0;
    bob.on('state', () => {
      if (!bob.replica?.get(avatar.id)) bobLostHer++;
    });
    alice.setInput({ dx: 1, dy: 0.5 });
    await until(() => alice.lastAcked >= 10, 'alice playing');

    await proxy.cut();
    const cutAt = Date.now();
    await until(() => alice.state === 'reconnecting', 'alice noticing the cut', 2000);
    const noticedMs = Date.now() - cutAt;
    const sentBefore = alice.lastSent;
    for (let i = 0; i < 5; i++) assert.ok(alice.sendInput({ dx: -1, dy: 0 }) > 0, 'inputs are kept while reconnecting');
    await sleep(1500);
    assert.equal(alice.state, 'reconnecting');
    await proxy.restore();
    const backAt = Date.now();
    await until(() => aliceLog.some((e) => e.event === 'resumed'), 'the resume', 5000);
    const resumed = /** @type {any} */ (aliceLog.find((e) => e.event === 'resumed'));
    const afterNetworkMs = resumed.at - backAt;
    t.diagnostic(`noticed the cut in ${noticedMs} ms; resumed ${afterNetworkMs} ms after the network returned, after ${resumed.attempts} attempts (${resumed.downtimeMs.toFixed(0)} ms down), caught up by ${resumed.caughtUpBy}, ${resumed.inputsResent} inputs sent again`);
    assert.ok(afterNetworkMs < 1000, `resumed ${afterNetworkMs} ms after the network returned`);
    assert.equal(alice.state, 'playing');
    assert.equal(alice.player, player, 'the same player number');
    assert.equal(avatarOf(alice)?.id, avatar.id, 'the same entity');
    assert.ok(Number(avatarOf(alice)?.get('score')) >= score, 'the score kept');
    assert.equal(resumed.caughtUpBy, 'DELTA', 'a catch-up delta (1.5 s is in the history)');
    assert.ok(resumed.inputsResent >= 5, `${resumed.inputsResent} inputs sent again`);
    assert.deepEqual(aliceLog.filter((e) => e.event !== 'reconnecting').map((e) => e.event), ['resumed'], 'no lost seat, no join');
    assert.equal(aliceLog[0].reason, 'connection-lost');
    // the inputs of the outage reach the game, in order
    await until(() => alice.lastAcked >= sentBefore + 5, 'the buffered inputs applied', 5000);
    await sleep(300);
    for (const s of [alice, bob]) {
      assert.equal(s.stats.desyncs, 0);
      assert.equal(s.stats.checksumMismatches, 0);
    }
    assert.ok(alice.stats.checksumsVerified > 20);
    // bob was unaffected: no reconnect, and alice's avatar never left his view
    assert.deepEqual(bobLog, []);
    assert.equal(bobLostHer, 0);
    assert.equal(bob.replica?.get(avatar.id)?.get('owner'), player);
    await alice.leave();
    await bob.leave();
  });

  test('a silent network (no FIN, no data): the stall detector notices, the old connection is replaced', async () => {
    const { proxy, alice, bob, aliceLog } = await twoPlayers(ctx, 'stall', { stallTimeoutMs: 800, attemptTimeoutMs: 600 });
    const player = alice.player;
    const id = avatarOf(alice)?.id;
    alice.setInput({ dx: 0, dy: 1 });
    await until(() => alice.lastAcked >= 5, 'alice playing');
    await proxy.stall();
    const stallAt = Date.now();
    await until(() => alice.state === 'reconnecting', 'the stall detector', 3000);
    const noticed = Date.now() - stallAt;
    assert.ok(noticed >= 700 && noticed < 1500, `noticed after ${noticed} ms`);
    assert.equal(aliceLog[0].reason, 'stall');
    await until(() => aliceLog.some((e) => e.event === 'reconnecting' && e.reason === 'timeout'), 'an attempt timing out in the silence', 4000);
    await proxy.restore();
    await until(() => alice.stats.resumes === 1, 'the resume', 5000);
    assert.equal(alice.player, player);
    assert.equal(avatarOf(alice)?.id, id);
    assert.equal(alice.stats.stalls, 1);
    await sleep(300);
    assert.equal(alice.stats.desyncs, 0);
    assert.equal(bob.stats.desyncs, 0);
    await alice.leave();
    await bob.leave();
  });

  test('a tolerated desync recovers through RESYNC: a fresh snapshot, the same seat, no rejoin', async () => {
    const { alice, bob, aliceLog } = await twoPlayers(ctx, 'resync');
    const player = alice.player;
    const id = /** @type {import('../src/index.js').Int} */ (avatarOf(alice)?.id);
    const snapshots = alice.stats.snapshots;
    // damage the replica behind the SDK's back: the next checksum (every tick here) disagrees
    const e = /** @type {import('../src/index.js').Entity} */ (alice.replica?.get(id));
    e.codes[3] = (Number(e.codes[3]) + 1) % 256;
    await until(() => alice.stats.snapshots > snapshots, 'the snapshot RESYNC asked for', 5000);
    const desync = /** @type {any} */ (aliceLog.find((x) => x.event === 'desync'));
    assert.ok(desync, 'a desync');
    assert.equal(desync.resyncing, true);
    assert.equal(desync.rejoining, false);
    assert.equal(alice.stats.resyncs, 1);
    assert.equal(alice.stats.rejoins, 0);
    assert.equal(alice.player, player);
    const verified = alice.stats.checksumsVerified;
    await until(() => alice.stats.checksumsVerified >= verified + 10, 'checksums verified again');
    assert.equal(alice.stats.checksumMismatches, 1);
    assert.equal(bob.stats.desyncs, 0);
    await alice.leave();
    await bob.leave();
  });

  test('a server gone for good: attempts run out, lost (gave-up) and close', async () => {
    const { proxy, alice, bob, aliceLog } = await twoPlayers(ctx, 'gone', { maxAttempts: 4 });
    await proxy.cut(); // and never restored
    await until(() => alice.state === 'closed', 'the end', 10_000);
    await proxy.restore();
    assert.deepEqual(aliceLog.map((e) => e.event), ['reconnecting', 'reconnecting', 'reconnecting', 'reconnecting', 'lost', 'close']);
    assert.equal(aliceLog[4].reason, 'gave-up');
    assert.equal(aliceLog[4].final, true);
    assert.equal(alice.closeInfo?.code, 1006);
    await bob.leave();
  });
});

describe('a seat hold that expires (--seat-hold 1)', { skip: SKIP }, () => {
  const ctx = serverWithProxy(['--seat-hold', '1']);

  test('RESUME after the hold: 4013, lost (seat-lost), a fresh join of the same room; on_leave removed the old avatar', async () => {
    const { proxy, alice, bob, aliceLog } = await twoPlayers(ctx, 'expiry', { maxAttempts: 100 });
    const oldPlayer = alice.player;
    const oldId = /** @type {import('../src/index.js').Int} */ (avatarOf(alice)?.id);
    assert.equal(alice.joined?.seatHoldMs, 1000);
    await proxy.cut();
    await until(() => alice.state === 'reconnecting', 'the cut noticed');
    // the hold is counted by the room: alice's avatar stays for ~1 s, then on_leave removes it
    await until(() => !bob.replica?.get(oldId), "alice's avatar removed when the hold expired", 5000);
    await proxy.restore();
    await until(() => alice.state === 'playing' && alice.player != oldPlayer, 'the fresh join', 5000);
    const lost = /** @type {any} */ (aliceLog.find((e) => e.event === 'lost'));
    assert.equal(lost.reason, 'seat-lost');
    assert.equal(lost.code, 4013);
    assert.equal(lost.final, false);
    const joined = /** @type {any} */ (aliceLog.find((e) => e.event === 'joined'));
    assert.equal(joined.rejoin, true);
    assert.equal(joined.room, 'expiry');
    assert.equal(alice.stats.resumes, 0);
    assert.equal(alice.stats.seatsLost, 1);
    await until(() => bob.entities('player').length === 2 && !!avatarOf(alice), 'the new avatar');
    assert.notEqual(avatarOf(alice)?.id, oldId, 'a new entity');
    assert.equal(alice.stats.desyncs, 0);
    await alice.leave();
    await bob.leave();
  });
});
