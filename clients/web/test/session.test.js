// The session against a fake WebSocket and a JavaScript arena server: joining, inputs and
// acks, prediction through the session, desync recovery, close reasons, bounded queues.

import assert from 'node:assert/strict';
import { beforeEach, test } from 'node:test';

import { arena } from '../games/arena.js';
import { SessionClosedError, connect, encodeServerMessage, fromHex } from '../src/index.js';
import { ArenaServer, FakeClock, FakeWebSocket } from './helpers.js';

/** @typedef {import('../src/index.js').Session} Session */

beforeEach(() => {
  FakeWebSocket.made = [];
});

/** @param {Partial<import('../src/index.js').ConnectOptions>} [opts] */
function start(opts = {}) {
  const clock = new FakeClock();
  const session = connect('wss://game.example:8443', {
    room: 'lobby',
    game: 'arena',
    token: 'tok',
    WebSocket: FakeWebSocket,
    now: clock.now,
    timers: clock.timers,
    predict: arena.predict,
    snapDistance: arena.snapDistance,
    ...opts,
  });
  return { session, clock };
}

/** Let the session's async start (the token) run. */
const settle = () => new Promise((resolve) => setImmediate(resolve));

/** Connect, join and take the first snapshot. @param {Partial<import('../src/index.js').ConnectOptions>} [opts] */
async function joinedSession(opts = {}) {
  const { session, clock } = start(opts);
  await settle();
  const ws = FakeWebSocket.made[0];
  ws.open();
  const server = new ArenaServer();
  ws.receive(server.joined());
  ws.receive(server.snapshot());
  await session.ready;
  return { session, clock, ws, server };
}

/**
 * A tick: the server takes the inputs the client sent since the last tick, steps, and sends the DELTA.
 * @param {{ws: FakeWebSocket, server: ArenaServer, clock: FakeClock}} ctx
 * @param {{corrupt?: boolean, nudge?: number}} [opts]
 */
function tick(ctx, opts = {}) {
  const { ws, server, clock } = ctx;
  for (const b of ws.sent.splice(0)) if (b[0] === 3) server.receive(server.player, b);
  clock.advance(50);
  ws.receive(server.step(opts));
}

test('connect sends JOIN with the subprotocol, then joined, state and ready', async () => {
  const { session } = start();
  assert.equal(session.state, 'connecting');
  await settle();
  const ws = FakeWebSocket.made[0];
  assert.equal(ws.url, 'wss://game.example:8443/');
  assert.deepEqual(ws.protocols, ['gamesync.v3', 'gamesync.v2', 'gamesync.v1']);
  ws.open();
  assert.equal(ws.binaryType, 'arraybuffer');
  assert.deepEqual(ws.decodedSent(), [{ kind: 'JOIN', version: 1, room: 'lobby', game: 'arena', name: '', token: 'tok', private: false }]);
  /** @type {string[]} */
  const seen = [];
  session.on('joined', (j) => seen.push(`joined ${j.player} ${j.room} ${j.tickRate}`));
  session.on('state', (s) => seen.push(`${s.kind} ${s.tick} ${s.verified}`));
  const server = new ArenaServer();
  ws.receive(server.joined());
  assert.equal(session.state, 'joining');
  ws.receive(server.snapshot());
  assert.equal(await session.ready, session);
  assert.equal(session.state, 'playing');
  assert.deepEqual(seen, ['joined 1 lobby 20', 'SNAPSHOT 10 true']);
  assert.equal(session.entities('player')[0].get('name'), 'alice');
  assert.equal(session.entities('gem').length, 1);
});

test('a private join asks for a new room; a token function is called for the join', async () => {
  let calls = 0;
  start({ private: true, room: 'ignored', token: async () => `t${++calls}` });
  await settle();
  FakeWebSocket.made[0].open();
  const join = FakeWebSocket.made[0].decodedSent()[0];
  assert.equal(join.kind, 'JOIN');
  assert.ok(join.kind === 'JOIN' && join.private && join.token === 't1');
});

test('inputs get increasing seqs, are predicted at once, and acks clear them with 0 error', async () => {
  const ctx = await joinedSession();
  const { session, server, clock } = ctx;
  const start = session.view(clock.t).entities.find((e) => e.predicted);
  assert.ok(start);
  assert.deepEqual([start.values.x, start.values.y], [100, 200]);
  const seq = session.sendInput({ dx: 1, dy: 0 });
  assert.equal(seq, 1);
  // predicted at once: after one glide interval the drawn position is one step (10 units) on
  clock.advance(50);
  const moved = /** @type {any} */ (session.predictor).predicted(start.id);
  assert.equal(moved.x, 110);
  for (let i = 0; i < 20; i++) {
    tick(ctx);
    session.sendInput({ dx: 1, dy: 0.5 });
  }
  tick(ctx);
  assert.equal(session.lastSent, 21);
  assert.equal(session.lastAcked, 21);
  assert.equal(session.unacked, 0);
  assert.equal(session.stats.inputsAcked, 21);
  assert.equal(session.inputLatencyMs, 50, 'sent, then acked by the next tick 50 ms later');
  const m = session.metrics(clock.t);
  assert.equal(m.predictionError, 0, 'the JS rule is the server rule');
  assert.equal(m.maxPredictionError, 0);
  assert.equal(m.checksumMismatches, 0);
  assert.ok(m.checksumsVerified >= 5);
  const drawn = session.view(clock.t + 100).entities.find((e) => e.predicted);
  assert.ok(drawn);
  assert.equal(drawn.values.x, server.avatar().x);
  assert.equal(drawn.values.y, server.avatar().y);
});

test('setInput sends the held input once per tick, right after each state', async () => {
  const ctx = await joinedSession();
  ctx.session.setInput({ dx: 0, dy: -1 });
  for (let i = 0; i < 10; i++) tick(ctx);
  assert.equal(ctx.session.stats.inputsSent, 10);
  assert.equal(ctx.session.lastAcked, 9, 'the last one is not applied yet');
  assert.throws(() => ctx.session.setInput({ jump: true }), /unknown input field/);
});

test('a server correction is re-based, replayed and smoothed, not jumped', async () => {
  const ctx = await joinedSession();
  const { session, clock } = ctx;
  session.sendInput({ dx: 1, dy: 0 });
  tick(ctx, { nudge: 5 }); // the server moved the avatar 5 units more than predicted
  const id = [.../** @type {any} */ (session.predictor).own.keys()][0];
  const pred = /** @type {any} */ (session.predictor);
  assert.ok(Math.abs(pred.error - 5) < 1e-9, `error ${pred.error}`);
  assert.equal(pred.predicted(id).x, ctx.server.avatar().x, 're-based on the server');
  const justAfter = /** @type {any} */ (pred.visible(id, clock.t)).x;
  assert.ok(Math.abs(justAfter - 110) < 1e-6, `still drawn where it was (${justAfter})`);
  const later = /** @type {any} */ (pred.visible(id, clock.t + 1000)).x;
  assert.ok(Math.abs(later - 115) < 1e-3, `glided to the server's position (${later})`);
});

test('a checksum mismatch is a desync: LEAVE, a new connection, JOIN the same room', async () => {
  const ctx = await joinedSession();
  const { session, ws, server } = ctx;
  /** @type {import('../src/index.js').DesyncInfo[]} */
  const desyncs = [];
  session.on('desync', (d) => desyncs.push(d));
  /** @type {boolean[]} */
  const rejoins = [];
  session.on('joined', (j) => rejoins.push(j.rejoin));
  while (server.tick % 5 !== 4) tick(ctx);
  tick(ctx, { corrupt: true });
  assert.equal(desyncs.length, 1);
  assert.match(desyncs[0].reason, /checksum mismatch/);
  assert.equal(session.stats.checksumMismatches, 1);
  assert.equal(ws.decodedSent().at(-1)?.kind, 'LEAVE');
  assert.equal(ws.closedWith?.code, 1000);
  await settle();
  assert.equal(FakeWebSocket.made.length, 2);
  const ws2 = FakeWebSocket.made[1];
  ws2.open();
  const join = ws2.decodedSent()[0];
  assert.ok(join.kind === 'JOIN' && join.room === 'lobby' && !join.private);
  const server2 = new ArenaServer({ player: 2, tick: 50 });
  ws2.receive(server2.joined());
  ws2.receive(server2.snapshot());
  assert.deepEqual(rejoins, [true]);
  assert.equal(session.state, 'playing');
  assert.equal(session.player, 2);
  ws.serverClose(1000, 'left'); // the old socket's close does not end the new session
  assert.equal(session.state, 'playing');
});

test('desyncs beyond maxRejoins end the session', async () => {
  const ctx = await joinedSession({ maxRejoins: 1 });
  const { session } = ctx;
  const wrongTick = encodeServerMessage({ kind: 'DELTA', tick: 99, checksum: null, acks: [], created: [], changed: [], removed: [] }, ctx.server.state.schema);
  ctx.ws.receive(wrongTick);
  await settle();
  const ws2 = FakeWebSocket.made[1];
  ws2.open();
  const server2 = new ArenaServer({ player: 2 });
  ws2.receive(server2.joined());
  ws2.receive(server2.snapshot());
  ws2.receive(wrongTick);
  assert.equal(session.state, 'closed');
  assert.equal(session.closeInfo?.code, 1007);
  assert.match(session.closeInfo?.detail ?? '', /kept diverging/);
});

test('ERROR then close: the page gets the reason; ready rejects with it', async () => {
  const { session } = start();
  await settle();
  const ws = FakeWebSocket.made[0];
  ws.open();
  /** @type {import('../src/index.js').CloseInfo[]} */
  const closes = [];
  session.on('close', (c) => closes.push(c));
  ws.receive(fromHex('14a50f14726f6f6d20276c6f626279272069732066756c6c')); // ERROR 4005
  ws.serverClose(4005, "room 'lobby' is full");
  await assert.rejects(session.ready, (/** @type {unknown} */ e) => e instanceof SessionClosedError && e.info.name === 'ROOM_FULL');
  assert.equal(closes.length, 1);
  assert.deepEqual(closes[0], { code: 4005, name: 'ROOM_FULL', text: 'The room is full.', detail: "room 'lobby' is full", advice: 'retry', byServer: true });
  assert.equal(session.state, 'closed');
});

test('a refused or lost connection (1006) is explained to a person', async () => {
  const { session } = start();
  await settle();
  FakeWebSocket.made[0].serverClose(1006, '');
  await assert.rejects(session.ready);
  assert.equal(session.closeInfo?.name, 'ABNORMAL');
  assert.match(session.closeInfo?.text ?? '', /certificate|reach/);
  assert.equal(session.closeInfo?.advice, 'retry');
});

// A browser's WebSocket may close only with 1000 or 3000-4999 (FakeWebSocket enforces that):
// the socket closes with 1000 and the page is told the protocol's code.
test('a text message or a malformed one ends the session with 1003 / 1007 / 1002', async () => {
  const a = await joinedSession();
  a.ws.receive('hello');
  assert.equal(a.ws.closedWith?.code, 1000);
  assert.equal(a.session.closeInfo?.code, 1003);
  FakeWebSocket.made = [];
  const b = await joinedSession();
  b.ws.receive(fromHex('120a')); // a DELTA cut short... with a tick already behind: skipped
  b.ws.receive(fromHex('1300ff')); // ROOM_EVENT whose name length runs past the end
  assert.equal(b.ws.closedWith?.code, 1000);
  assert.equal(b.session.closeInfo?.name, 'INVALID_PAYLOAD');
  assert.match(b.session.closeInfo?.detail ?? '', /bad message from the server/);
  FakeWebSocket.made = [];
  const c = await joinedSession();
  c.ws.receive(fromHex('16'));
  assert.equal(c.session.closeInfo?.code, 1002);
  assert.equal(c.session.state, 'closed');
});

test('inputs queue while the socket is backed up, at most maxQueuedInputs, oldest dropped', async () => {
  const { session, ws } = await joinedSession({ maxQueuedInputs: 4 });
  ws.bufferedAmount = 1 << 20;
  for (let i = 0; i < 10; i++) session.sendInput({ dx: 1, dy: 0 });
  assert.equal(ws.sent.length, 1, 'only the JOIN went out');
  assert.equal(session.stats.inputsDropped, 6);
  assert.equal(session.sendEvent('chat', 'hi'), false, 'events are refused, not queued');
  ws.bufferedAmount = 0;
  ws.receive(new ArenaServer().step()); // any message flushes the queue
  const seqs = ws.decodedSent().flatMap((m) => (m.kind === 'INPUT' ? [m.seq] : []));
  assert.deepEqual(seqs, [7, 8, 9, 10]);
});

test('unacked inputs are bounded too', async () => {
  const { session } = await joinedSession({ maxUnackedInputs: 16 });
  for (let i = 0; i < 100; i++) session.sendInput({ dx: 0.5, dy: 0.5 });
  assert.equal(session.unacked, 16);
  assert.ok(/** @type {any} */ (session.predictor).pending.length <= 16);
});

test('room events reach the page; chat goes out as EVENT', async () => {
  const { session, ws } = await joinedSession();
  /** @type {string[]} */
  const got = [];
  session.on('event', (e) => got.push(`${e.sender}:${e.name}:${e.text}`));
  ws.receive(fromHex('13020463686174026767'));
  assert.deepEqual(got, ['2:chat:gg']);
  assert.equal(session.sendEvent('chat', 'héllo'), true);
  const sent = ws.decodedSent().at(-1);
  assert.ok(sent?.kind === 'EVENT' && sent.name === 'chat' && new TextDecoder().decode(sent.data) === 'héllo');
  assert.throws(() => session.sendEvent('chat', 'x'.repeat(2000)), /exceeds/);
});

test('leave sends LEAVE and resolves when the server closes', async () => {
  const { session, ws } = await joinedSession();
  const done = session.leave();
  assert.equal(ws.decodedSent().at(-1)?.kind, 'LEAVE');
  ws.serverClose(1000, 'left');
  const info = await done;
  assert.equal(info.name, 'NORMAL');
  assert.equal(info.advice, 'none');
  assert.equal(session.sendInput({ dx: 1, dy: 1 }), 0, 'no inputs after leaving');
});

test('deltas before a snapshot is needed again are skipped, stale ones too', async () => {
  const ctx = await joinedSession({ rejoinOnDesync: false });
  const { session, ws, server } = ctx;
  while (server.tick % 5 !== 4) tick(ctx);
  tick(ctx, { corrupt: true });
  assert.equal(session.state, 'playing');
  tick(ctx);
  assert.equal(session.stats.deltasSkipped, 1, 'waiting for a snapshot');
  ws.receive(server.snapshot());
  tick(ctx);
  assert.equal(session.tick, server.tick);
});

test('connect without a WebSocket class fails at once with a clear message', () => {
  const saved = globalThis.WebSocket;
  // @ts-ignore -- Node 20 has none; make sure of it
  delete globalThis.WebSocket;
  try {
    assert.throws(() => connect('wss://x', {}), /pass the WebSocket option/);
    assert.throws(() => connect('ftp://x', { WebSocket: FakeWebSocket }), /wss:\/\//);
  } finally {
    if (saved) globalThis.WebSocket = saved;
  }
});

test('the connect timeout ends a session that never gets its snapshot', async () => {
  const { session, clock } = start({ connectTimeoutMs: 20 });
  await settle();
  FakeWebSocket.made[0].open();
  clock.advance(19);
  assert.equal(session.state, 'joining');
  clock.advance(1);
  await assert.rejects(session.ready, /timed out/);
  assert.equal(session.closeInfo?.code, 1006);
});
