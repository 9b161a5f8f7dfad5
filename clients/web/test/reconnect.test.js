// Reconnecting, against a fake WebSocket, a fake clock with fake timers and a v2 arena server
// in JavaScript: the backoff schedule, RESUME and the catch-up, inputs buffered and sent
// again, the fallback to a fresh JOIN, the stall detector, RESYNC, and every end that must
// not reconnect.

import assert from 'node:assert/strict';
import { beforeEach, test } from 'node:test';

import { arena } from '../games/arena.js';
import { CloseCode, InputBuffer, RESTART_REASON, backoffDelay, connect, encodeServerMessage, reconnectPolicy } from '../src/index.js';
import { ArenaServer, FakeClock, FakeWebSocket } from './helpers.js';

/** @typedef {import('../src/index.js').Session} Session */
/** @typedef {{session: Session, clock: FakeClock, ws: FakeWebSocket, server: ArenaServer, events: string[], log: any[]}} Ctx */

beforeEach(() => {
  FakeWebSocket.made = [];
});

/** Let the session's async steps (a token function) run. */
const settle = () => new Promise((resolve) => setImmediate(resolve));

const ERROR = (/** @type {number} */ code, /** @type {string} */ message) => encodeServerMessage({ kind: 'ERROR', code, message });

/**
 * A session on a v2 server, joined and playing; every reconnect event is logged.
 * @param {Partial<import('../src/index.js').ConnectOptions>} [opts]
 * @param {{version?: number}} [server]
 * @returns {Promise<Ctx>}
 */
async function playing(opts = {}, server = {}) {
  const clock = new FakeClock();
  let tokens = 0;
  const session = connect('wss://game.example:8443', {
    room: 'lobby',
    game: 'arena',
    token: () => `join-token-${++tokens}`,
    WebSocket: FakeWebSocket,
    now: clock.now,
    timers: clock.timers,
    random: () => 0.5,
    predict: arena.predict,
    ...opts,
  });
  /** @type {string[]} */
  const events = [];
  /** @type {any[]} */
  const log = [];
  for (const name of /** @type {const} */ (['reconnecting', 'resumed', 'lost', 'joined', 'close', 'desync'])) {
    session.on(name, (e) => {
      events.push(name);
      log.push({ event: name, ...e });
    });
  }
  await settle();
  const ws = FakeWebSocket.made[0];
  const version = server.version ?? 2;
  ws.open(version === 2 ? 'gamesync.v2' : 'gamesync.v1');
  const arenaServer = new ArenaServer({ version });
  ws.receive(arenaServer.joined());
  ws.receive(arenaServer.snapshot());
  await session.ready;
  events.length = 0;
  log.length = 0;
  return { session, clock, ws, server: arenaServer, events, log };
}

/**
 * A tick: the server takes the inputs sent on `ws` since the last one, steps, sends the DELTA.
 * @param {Ctx} ctx
 */
function tick(ctx) {
  const { ws, server, clock } = ctx;
  for (const b of ws.sent.splice(0)) if (b[0] === 3) server.receive(server.player, b);
  clock.advance(50);
  ws.receive(server.step());
}

/** The messages a socket sent, decoded, by kind. @param {FakeWebSocket} ws */
const kinds = (ws) => ws.decodedSent().map((m) => m.kind);
/** The INPUT seqs a socket sent. @param {FakeWebSocket} ws */
const seqs = (ws) => ws.decodedSent().flatMap((m) => (m.kind === 'INPUT' ? [Number(m.seq)] : []));

/**
 * Move the clock to the next attempt and return its socket (opened as v2 unless told).
 * @param {Ctx} ctx
 * @param {string | null} [protocol] null: leave it connecting
 */
async function nextAttempt(ctx, protocol = 'gamesync.v2') {
  const before = FakeWebSocket.made.length;
  ctx.clock.advance(Math.max(0, ctx.clock.nextDue() - ctx.clock.t));
  await settle();
  assert.equal(FakeWebSocket.made.length, before + 1, 'one new connection');
  const ws = FakeWebSocket.made[before];
  if (protocol) ws.open(protocol);
  return ws;
}

// ---------------------------------------------------------------- pure parts

test('backoff: full jitter under min(cap, base * 2^(n-1)); defaults 100 ms, 750 ms, 40 attempts', () => {
  const policy = reconnectPolicy({});
  assert.deepEqual(policy, { enabled: true, baseMs: 100, capMs: 750, maxAttempts: 40, attemptTimeoutMs: 2000, stallTimeoutMs: 2000, inputBufferSize: 64, resyncIntervalMs: 2000 });
  const top = () => 1 - 2 ** -53;
  assert.deepEqual([1, 2, 3, 4, 5, 40].map((n) => Math.round(backoffDelay(n, policy, top))), [100, 200, 400, 750, 750, 750]);
  assert.deepEqual([1, 2, 3, 4].map((n) => backoffDelay(n, policy, () => 0)), [0, 0, 0, 0]);
  assert.deepEqual([1, 2, 3, 4].map((n) => backoffDelay(n, policy, () => 0.5)), [50, 100, 200, 375]);
  assert.equal(backoffDelay(2000, policy, top) <= 750, true, 'no overflow for huge attempt numbers');
  assert.deepEqual(reconnectPolicy({ reconnect: false, backoffBaseMs: 10, maxAttempts: 3 }).enabled, false);
  assert.throws(() => reconnectPolicy({ maxAttempts: 0 }), /maxAttempts must be a number >= 1/);
  assert.throws(() => reconnectPolicy({ stallTimeoutMs: Number.NaN }), RangeError);
});

test('the input buffer: bounded (oldest dropped), acks forget, a resume sends everything again', () => {
  const buf = new InputBuffer(4);
  const b = (/** @type {number} */ n) => Uint8Array.of(3, n, 0, 0);
  for (let seq = 1; seq <= 3; seq++) assert.equal(buf.push(seq, b(seq)), 0);
  buf.markSent();
  buf.markSent();
  assert.equal(buf.unsent, 1);
  assert.equal(buf.push(4, b(4)), 0);
  assert.equal(buf.push(5, b(5)), 0, 'the oldest dropped was sent: not a lost input');
  assert.deepEqual(buf.items.map((i) => i.seq), [2, 3, 4, 5]);
  assert.equal(buf.sent, 1);
  assert.equal(buf.trimUnsent(1), 2, 'backed up: keep the newest waiting');
  assert.deepEqual(buf.items.map((i) => i.seq), [2, 5]);
  buf.ack(2);
  assert.deepEqual(buf.items.map((i) => i.seq), [5]);
  assert.equal(buf.sent, 0);
  for (let seq = 6; seq <= 9; seq++) buf.push(seq, b(seq));
  assert.deepEqual(buf.items.map((i) => i.seq), [6, 7, 8, 9], 'never more than 4');
  buf.markSent();
  buf.markSent();
  buf.resendAll();
  assert.equal(buf.next()?.seq, 6);
  assert.equal(buf.unsent, 4);
});

// ---------------------------------------------------------------- resume

test('a dropped connection resumes: RESUME with token and tick, catch-up delta, inputs sent again, same player', async () => {
  const ctx = await playing();
  const { session, ws, server } = ctx;
  const token = session.resumeToken;
  assert.match(token, /^token-1-/);
  const avatar = session.entities('player').find((e) => e.get('owner') == session.player);
  assert.ok(avatar);
  for (let i = 0; i < 5; i++) {
    session.sendInput({ dx: 1, dy: 0 });
    tick(ctx);
  }
  session.sendInput({ dx: 1, dy: 0 }); // seq 6: sent, never applied
  const applied = session.lastAcked;
  assert.equal(applied, 5);
  const haveTick = session.tick;
  ws.serverClose(CloseCode.ABNORMAL); // no close frame
  assert.equal(session.state, 'reconnecting');
  assert.deepEqual(ctx.log, [{ event: 'reconnecting', attempt: 1, delay: 50, reason: 'connection-lost', code: 1006, detail: '' }]);
  // the world goes on without us; the player keeps pressing keys
  server.step();
  server.step();
  assert.equal(session.sendInput({ dx: 0, dy: 1 }), 7, 'sendInput works while reconnecting');
  assert.equal(session.sendInput({ dx: 0, dy: 1 }), 8);
  assert.equal(session.sendEvent('chat', 'hi'), false, 'events are not kept');
  ctx.clock.advance(49);
  assert.equal(FakeWebSocket.made.length, 1, 'not before the backoff');
  const ws2 = await nextAttempt(ctx);
  assert.deepEqual(ws2.decodedSent(), [{ kind: 'RESUME', version: 2, room: 'lobby', token, haveTick }]);
  ws2.receive(server.joined({ resumed: true }));
  assert.equal(session.state, 'reconnecting', 'seated again once the state is back');
  ws2.receive(server.catchUp(haveTick));
  assert.equal(session.state, 'playing');
  assert.equal(session.tick, server.tick);
  assert.deepEqual(ctx.events, ['reconnecting', 'resumed']);
  const resumed = /** @type {any} */ (ctx.log[1]);
  assert.equal(resumed.attempts, 1);
  assert.equal(resumed.downtimeMs, 50);
  assert.equal(resumed.caughtUpBy, 'DELTA');
  assert.equal(resumed.inputsResent, 3);
  assert.equal(session.player, 1);
  assert.equal(session.entities('player').find((e) => e.get('owner') == 1)?.id, avatar.id, 'the same entity');
  assert.deepEqual(seqs(ws2), [6, 7, 8], 'the inputs above input_seq, in order, with their own seqs');
  assert.notEqual(session.resumeToken, token, 'a new token');
  for (let i = 0; i < 3; i++) tick({ ...ctx, ws: ws2 });
  assert.equal(session.lastAcked, 8);
  assert.equal(session.stats.desyncs, 0);
  assert.equal(session.stats.checksumMismatches, 0);
  assert.equal(session.stats.resumes, 1);
  assert.equal(session.unacked, 0);
  assert.equal(session.sendInput({ dx: 0, dy: 0 }), 9, 'numbering goes on');
});

test('a resume answered by a snapshot (no history, or no replica) works as well', async () => {
  const ctx = await playing({ rejoinOnDesync: false });
  ctx.ws.serverClose(4008, 'too slow');
  assert.equal(ctx.log[0].reason, 'too-slow');
  const ws2 = await nextAttempt(ctx);
  for (let i = 0; i < 30; i++) ctx.server.step();
  ws2.receive(ctx.server.joined({ resumed: true }));
  ws2.receive(ctx.server.snapshot());
  assert.equal(ctx.session.state, 'playing');
  assert.equal(ctx.log.at(-1).caughtUpBy, 'SNAPSHOT');
  assert.equal(ctx.session.tick, ctx.server.tick);
});

test('backoff grows per attempt while connections fail; the delays follow the injected random', async () => {
  /** @type {number[]} */
  const rolls = [0.9, 0.9, 0.9, 0.9, 0.9];
  const ctx = await playing({ random: () => /** @type {number} */ (rolls.shift()) });
  ctx.ws.serverClose(1006);
  for (let i = 0; i < 4; i++) {
    const ws = await nextAttempt(ctx, null);
    ws.serverClose(1006); // refused: the network is still down
  }
  assert.deepEqual(ctx.log.map((e) => [e.attempt, Math.round(e.delay), e.reason]), [
    [1, 90, 'connection-lost'],
    [2, 180, 'connection-lost'],
    [3, 360, 'connection-lost'],
    [4, 675, 'connection-lost'],
    [5, 675, 'connection-lost'],
  ]);
  assert.equal(ctx.session.reconnectAttempt, 5);
  assert.equal(ctx.session.state, 'reconnecting');
});

test('an attempt with no answer times out and the next one follows', async () => {
  const ctx = await playing({ attemptTimeoutMs: 300 });
  ctx.ws.serverClose(1006);
  const ws2 = await nextAttempt(ctx, null); // never opens
  ctx.clock.advance(299);
  assert.equal(ctx.log.length, 1);
  ctx.clock.advance(1);
  assert.equal(ctx.log[1].reason, 'timeout');
  assert.equal(ws2.closedWith?.code, 4008, 'given up with a code that keeps the seat held');
  const ws3 = await nextAttempt(ctx);
  assert.equal(kinds(ws3)[0], 'RESUME');
});

test('after maxAttempts failed attempts: lost (gave-up, final), then close with the last error', async () => {
  const ctx = await playing({ maxAttempts: 3 });
  ctx.ws.serverClose(1006);
  for (let i = 0; i < 3; i++) {
    const ws = await nextAttempt(ctx);
    ws.receive(ERROR(4012, 'draining: the server is shutting down and admits no joins; come back later'));
    ws.serverClose(4012, 'draining');
  }
  assert.deepEqual(ctx.events, ['reconnecting', 'reconnecting', 'reconnecting', 'lost', 'close']);
  assert.deepEqual(ctx.log.map((e) => e.reason).slice(0, 3), ['connection-lost', 'refused', 'refused']);
  assert.deepEqual({ ...ctx.log[3] }, { event: 'lost', reason: 'gave-up', code: 4012, detail: 'draining: the server is shutting down and admits no joins; come back later', final: true });
  assert.equal(ctx.session.state, 'closed');
  assert.equal(ctx.session.closeInfo?.name, 'DRAINING');
  assert.equal(ctx.clock.due.size, 0, 'no timer left behind');
});

// ---------------------------------------------------------------- seat lost: a fresh join

test('RESUME refused with 4013: lost (seat-lost), then a fresh JOIN of the same room with a fresh token', async () => {
  const ctx = await playing();
  const { session } = ctx;
  session.sendInput({ dx: 1, dy: 1 });
  ctx.ws.serverClose(1006);
  session.sendInput({ dx: 1, dy: 1 });
  const ws2 = await nextAttempt(ctx);
  ws2.receive(ERROR(4013, 'seat lost: the hold expired'));
  ws2.serverClose(4013, 'seat lost');
  assert.deepEqual(ctx.events, ['reconnecting', 'lost', 'reconnecting']);
  assert.deepEqual({ ...ctx.log[1] }, { event: 'lost', reason: 'seat-lost', code: 4013, detail: 'seat lost: the hold expired', final: false });
  assert.equal(ctx.log[2].reason, 'seat-lost');
  assert.equal(ctx.log[2].delay, 0, 'at once: the server is there');
  assert.equal(session.resumeToken, '');
  const ws3 = await nextAttempt(ctx);
  const join = ws3.decodedSent()[0];
  assert.ok(join.kind === 'JOIN' && join.room === 'lobby' && join.game === 'arena' && join.token === 'join-token-2' && join.version === 2);
  const fresh = new ArenaServer({ version: 2, player: 7, tick: 90 });
  ws3.receive(fresh.joined());
  ws3.receive(fresh.snapshot());
  assert.deepEqual(ctx.events, ['reconnecting', 'lost', 'reconnecting', 'joined']);
  assert.equal(ctx.log[3].rejoin, true);
  assert.equal(session.state, 'playing');
  assert.equal(session.player, 7);
  assert.equal(session.tick, 90);
  assert.equal(session.stats.seatsLost, 1);
  assert.equal(session.sendInput({ dx: 0, dy: 0 }), 1, 'seq restarts at 1');
  assert.deepEqual(seqs(ws3), [1], 'the old seat\'s inputs are not sent to the new one');
});

test('RESUME refused with 4001 (token used or forged) also falls back to a fresh JOIN', async () => {
  const ctx = await playing();
  ctx.ws.serverClose(1001, 'idle timeout: no data or pong');
  assert.equal(ctx.log[0].reason, 'going-away');
  const ws2 = await nextAttempt(ctx);
  ws2.receive(ERROR(4001, 'unauthorized: resume token already used'));
  ws2.serverClose(4001);
  assert.equal(ctx.log[1].reason, 'token-refused');
  const ws3 = await nextAttempt(ctx);
  assert.equal(kinds(ws3)[0], 'JOIN');
});

test('a drain (1001 RESTART_REASON): reconnect, 4012 while it drains means back off, 4013 a fresh join', async () => {
  const ctx = await playing();
  ctx.ws.receive(encodeServerMessage({ kind: 'CLOSE', code: 1001, reason: RESTART_REASON }));
  ctx.ws.serverClose(1001, RESTART_REASON);
  assert.equal(ctx.log[0].reason, 'restart');
  const ws2 = await nextAttempt(ctx);
  ws2.receive(ERROR(4012, 'draining'));
  ws2.serverClose(4012);
  assert.equal(ctx.log[1].reason, 'refused');
  assert.ok(ctx.log[1].delay > 0, 'backed off');
  const ws3 = await nextAttempt(ctx); // the new server
  ws3.receive(ERROR(4013, 'seat lost: no such room'));
  ws3.serverClose(4013);
  const ws4 = await nextAttempt(ctx);
  assert.equal(kinds(ws4)[0], 'JOIN');
  assert.deepEqual(ctx.events, ['reconnecting', 'reconnecting', 'lost', 'reconnecting']);
});

test('a fresh JOIN refused for good during a reconnect: lost (refused, final) and close', async () => {
  const ctx = await playing();
  ctx.ws.serverClose(1006);
  const ws2 = await nextAttempt(ctx);
  ws2.serverClose(4013);
  const ws3 = await nextAttempt(ctx);
  ws3.receive(ERROR(4003, 'forbidden'));
  ws3.serverClose(4003);
  assert.deepEqual(ctx.events, ['reconnecting', 'lost', 'reconnecting', 'lost', 'close']);
  assert.equal(ctx.log[3].reason, 'refused');
  assert.equal(ctx.log[3].final, true);
  assert.equal(ctx.session.closeInfo?.code, 4003);
});

test('a v1 server: no token to resume, so a drop is a lost seat and a fresh JOIN', async () => {
  const ctx = await playing({}, { version: 1 });
  assert.equal(ctx.session.version, 1);
  assert.equal(ctx.session.resumeToken, '');
  ctx.ws.serverClose(1006);
  assert.deepEqual(ctx.events, ['lost', 'reconnecting']);
  assert.equal(ctx.log[0].reason, 'not-resumable');
  assert.equal(ctx.session.sendInput({ dx: 1, dy: 0 }), 0, 'nothing to buffer for: the seat is gone');
  const ws2 = await nextAttempt(ctx, 'gamesync.v1');
  const join = ws2.decodedSent()[0];
  assert.ok(join.kind === 'JOIN' && join.version === 1 && join.room === 'lobby');
});

// ---------------------------------------------------------------- buffering

test('inputs during the outage: at most inputBufferSize kept (oldest dropped), resent paced by maxQueuedInputs per tick', async () => {
  const ctx = await playing({ inputBufferSize: 12, maxQueuedInputs: 4 });
  const { session, server } = ctx;
  tick(ctx);
  ctx.ws.serverClose(1006);
  server.step();
  for (let i = 0; i < 20; i++) session.sendInput({ dx: 0.5, dy: 0 });
  assert.equal(session.stats.inputsDropped, 8);
  const ws2 = await nextAttempt(ctx);
  const have = session.tick;
  ws2.receive(server.joined({ resumed: true }));
  ws2.receive(server.catchUp(have));
  assert.equal(ctx.log.at(-1).inputsResent, 12);
  assert.deepEqual(seqs(ws2), [9, 10, 11, 12], 'the newest 12 kept; 4 per tick');
  const c2 = { ...ctx, ws: ws2 };
  tick(c2);
  tick(c2);
  tick(c2);
  assert.deepEqual(ws2.decodedSent().filter((m) => m.kind === 'INPUT').length, 0, 'all sent and taken by the server');
  assert.equal(server.highest.get(1), 20, 'every one of them arrived, in order');
});

test('the socket backed up while playing: waiting inputs are capped at maxQueuedInputs, the oldest dropped', async () => {
  const ctx = await playing({ maxQueuedInputs: 4 });
  ctx.ws.bufferedAmount = 1 << 20;
  for (let i = 0; i < 10; i++) ctx.session.sendInput({ dx: 1, dy: 0 });
  assert.equal(ctx.session.stats.inputsDropped, 6);
  ctx.ws.bufferedAmount = 0;
  tick(ctx); // the state flushes the waiting inputs...
  tick(ctx); // ... which the server takes at the next tick
  assert.deepEqual(ctx.server.highest.get(1), 10);
});

// ---------------------------------------------------------------- stall

test('no message for stallTimeoutMs while playing: the socket is closed (not 1000) and the session resumes', async () => {
  const ctx = await playing({ stallTimeoutMs: 1000 });
  tick(ctx); // a message at 1050
  ctx.clock.advance(900);
  tick(ctx); // and one at 2000: the wait restarts
  ctx.clock.advance(999);
  assert.equal(ctx.session.state, 'playing');
  ctx.clock.advance(1);
  assert.equal(ctx.session.state, 'reconnecting');
  assert.equal(ctx.log[0].reason, 'stall');
  assert.equal(ctx.ws.closedWith?.code, 4008, 'a code the server holds the seat for');
  assert.equal(ctx.session.stats.stalls, 1);
  ctx.ws.receive(ctx.server.step()); // the old socket is no longer heard
  assert.equal(ctx.session.state, 'reconnecting');
  const ws2 = await nextAttempt(ctx);
  assert.equal(kinds(ws2)[0], 'RESUME');
});

test('the stall timeout is at least four ticks at a slow tick rate', async () => {
  const ctx = await playing({ stallTimeoutMs: 100 });
  ctx.clock.advance(150);
  assert.equal(ctx.session.state, 'playing', '20 Hz: 4 ticks = 200 ms');
  ctx.clock.advance(50);
  assert.equal(ctx.session.state, 'reconnecting');
});

// ---------------------------------------------------------------- ends that do not reconnect

for (const [code, name] of /** @type {const} */ ([
  [4010, 'KICKED'],
  [4011, 'ROOM_CLOSED'],
  [4009, 'REPLACED'],
  [1000, 'NORMAL'],
  [1002, 'PROTOCOL_ERROR'],
])) {
  test(`${code} ${name} ends the session: no reconnect`, async () => {
    const ctx = await playing();
    ctx.ws.receive(ERROR(code, name.toLowerCase()));
    ctx.ws.serverClose(code);
    assert.deepEqual(ctx.events, ['close']);
    assert.equal(ctx.session.closeInfo?.name, name);
    ctx.clock.advance(60_000);
    assert.equal(FakeWebSocket.made.length, 1);
  });
}

test('our own leave() or close(): no reconnect, also in the middle of an outage', async () => {
  const a = await playing();
  const done = a.session.close();
  a.ws.serverClose(1000, 'left');
  assert.equal((await done).code, 1000);
  a.clock.advance(60_000);
  assert.equal(FakeWebSocket.made.length, 1);
  assert.deepEqual(a.events, ['close']);

  FakeWebSocket.made = [];
  const b = await playing();
  b.ws.serverClose(1006);
  const left = b.session.leave();
  b.clock.advance(0);
  assert.equal((await left).code, 1000);
  b.clock.advance(60_000);
  assert.equal(FakeWebSocket.made.length, 1, 'the pending attempt was cancelled');
  assert.deepEqual(b.events, ['reconnecting', 'close']);
  assert.equal(b.clock.due.size, 0);
});

test('the old connection closing with 4009 after a resume does not touch the new one', async () => {
  const ctx = await playing({ stallTimeoutMs: 500 });
  ctx.clock.advance(500); // a stall: the old socket is still open as far as the server knows
  assert.equal(ctx.session.state, 'reconnecting');
  const ws2 = await nextAttempt(ctx);
  ctx.server.step();
  ws2.receive(ctx.server.joined({ resumed: true }));
  ws2.receive(ctx.server.catchUp(ctx.session.tick));
  ctx.ws.serverClose(4009, 'replaced by a resumed connection');
  assert.equal(ctx.session.state, 'playing');
  assert.deepEqual(ctx.events, ['reconnecting', 'resumed']);
});

test('reconnect: false: the connection\'s end is the session\'s', async () => {
  const ctx = await playing({ reconnect: false });
  ctx.ws.serverClose(1006);
  assert.deepEqual(ctx.events, ['close']);
  assert.equal(ctx.session.closeInfo?.code, 1006);
  assert.equal(ctx.clock.due.size, 0, 'no stall detector left either');
});

test('the first JOIN refused, or the server unreachable at first: no reconnect', async () => {
  const clock = new FakeClock();
  const s = connect('wss://x.example', { room: 'lobby', WebSocket: FakeWebSocket, now: clock.now, timers: clock.timers });
  await settle();
  FakeWebSocket.made[0].serverClose(1006);
  await assert.rejects(s.ready);
  clock.advance(60_000);
  assert.equal(FakeWebSocket.made.length, 1);
});

test('a RESUME answered with another player, or with a fresh JOINED, is a protocol error', async () => {
  const ctx = await playing();
  ctx.ws.serverClose(1006);
  const ws2 = await nextAttempt(ctx);
  ws2.receive(new ArenaServer({ version: 2, player: 9 }).joined({ resumed: true }));
  assert.equal(ctx.session.state, 'closed');
  assert.equal(ctx.session.closeInfo?.code, 1002);
  assert.match(ctx.session.closeInfo?.detail ?? '', /RESUME answered by player 9/);
});

// ---------------------------------------------------------------- desync on v2: RESYNC

test('a desync on v2 sends RESYNC (not LEAVE), again after resyncIntervalMs if no snapshot came', async () => {
  const ctx = await playing({ resyncIntervalMs: 2000 });
  const { session, ws, server } = ctx;
  while (server.tick % 5 !== 4) tick(ctx);
  server.state.entities.get(1)?.codes.splice(3, 1, 1); // the server's hp changes behind our back
  ws.sent.length = 0;
  tick(ctx);
  assert.deepEqual(ctx.events, ['desync']);
  assert.equal(ctx.log[0].resyncing, true);
  assert.equal(ctx.log[0].rejoining, false);
  assert.deepEqual(kinds(ws), ['RESYNC']);
  assert.equal(session.state, 'playing');
  tick(ctx); // the deltas that follow are skipped until the snapshot
  assert.equal(session.stats.deltasSkipped, 1);
  for (let i = 0; i < 38; i++) tick(ctx); // 1950 ms after the RESYNC
  assert.equal(session.stats.resyncs, 1, 'at most once per interval');
  tick(ctx);
  assert.equal(session.stats.resyncs, 2, 'the server may have ignored it: ask again');
  ws.receive(server.snapshot());
  for (let i = 0; i < 60; i++) tick(ctx);
  assert.equal(session.stats.resyncs, 2, 'a snapshot ends it');
  assert.equal(session.tick, server.tick);
  assert.equal(session.stats.deltasSkipped, 40);
  assert.equal(session.stats.resyncs, 2);
  assert.equal(session.stats.rejoins, 0);
  assert.equal(FakeWebSocket.made.length, 1);
});

test('a token function that fails during an outage (the token service is down too) is retried', async () => {
  let calls = 0;
  const ctx = await playing({
    token: () => {
      calls++;
      if (calls === 2) throw new Error('fetch failed');
      return `join-token-${calls}`;
    },
  });
  ctx.ws.serverClose(1006);
  const ws2 = await nextAttempt(ctx);
  ws2.serverClose(4013); // the seat is gone: a fresh JOIN needs the token function
  ctx.clock.advance(0);
  await settle();
  assert.deepEqual(ctx.events, ['reconnecting', 'lost', 'reconnecting', 'reconnecting']);
  assert.equal(ctx.log[3].reason, 'connection-lost');
  assert.match(ctx.log[3].detail, /could not get a token: fetch failed/);
  const ws3 = await nextAttempt(ctx);
  const join = ws3.decodedSent()[0];
  assert.ok(join.kind === 'JOIN' && join.token === 'join-token-3');
});

test('a listener may leave() from a reconnecting event: no attempt is made', async () => {
  const ctx = await playing();
  ctx.session.on('reconnecting', () => void ctx.session.leave());
  ctx.ws.serverClose(1006);
  ctx.clock.advance(10_000);
  await settle();
  assert.equal(ctx.session.state, 'closed');
  assert.equal(FakeWebSocket.made.length, 1);
  assert.equal(ctx.clock.due.size, 0);
});
