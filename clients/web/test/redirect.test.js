// Clusters: REDIRECT followed with the same JOIN or RESUME (at most 3 per join), the owner's
// URL remembered for resumes and given up for the entry URL when it cannot be reached, 4016
// tried again on the first join. The pure rules, then a session on fake WebSockets and a fake
// clock. The real-socket version is redirect_server.test.js.

import assert from 'node:assert/strict';
import { beforeEach, test } from 'node:test';

import { CloseCode, MAX_REDIRECTS, RedirectProblem, connect, encodeServerMessage, redirectProblem } from '../src/index.js';
import { ArenaServer, FakeClock, FakeWebSocket } from './helpers.js';

/** @typedef {import('../src/index.js').Session} Session */

const A = 'ws://a.test/';
const B = 'ws://b.test/';
const C = 'ws://c.test/';

beforeEach(() => {
  FakeWebSocket.made = [];
});

const settle = () => new Promise((resolve) => setImmediate(resolve));
const REDIRECT = (/** @type {string} */ url, room = 'lobby') => encodeServerMessage({ kind: 'REDIRECT', url, room });
const ERROR = (/** @type {number} */ code, /** @type {string} */ message) => encodeServerMessage({ kind: 'ERROR', code, message });
const kinds = (/** @type {FakeWebSocket} */ ws) => ws.decodedSent().map((m) => m.kind);

/**
 * A session dialling A (nothing opened yet); every event logged.
 * @param {Partial<import('../src/index.js').ConnectOptions>} [opts]
 */
async function dial(opts = {}) {
  const clock = new FakeClock();
  let tokens = 0;
  const session = connect(A, {
    room: 'lobby',
    game: 'arena',
    token: () => `tok-${++tokens}`,
    WebSocket: FakeWebSocket,
    now: clock.now,
    timers: clock.timers,
    random: () => 0.5,
    ...opts,
  });
  /** @type {any[]} */
  const log = [];
  for (const name of /** @type {const} */ (['redirect', 'reconnecting', 'resumed', 'lost', 'joined', 'close'])) {
    session.on(name, (e) => log.push({ event: name, ...e }));
  }
  await settle();
  return { session, clock, log, server: new ArenaServer({ version: 2 }) };
}

/** The newest socket, opened as v2. */
function openLast() {
  const ws = FakeWebSocket.made[FakeWebSocket.made.length - 1];
  ws.open('gamesync.v2');
  return ws;
}

/** The server seats the session on `ws`. @param {FakeWebSocket} ws @param {ArenaServer} server @param {boolean} [resumed] */
function seat(ws, server, resumed = false) {
  if (resumed) {
    const base = server.tick; // the session's tick: it got everything up to here
    server.step();
    ws.receive(server.joined({ resumed: true }));
    ws.receive(server.catchUp(base));
  } else {
    ws.receive(server.joined());
    ws.receive(server.snapshot());
  }
}

// ---------------------------------------------------------------- pure

test('redirectProblem: at most 3 per join, ws/wss with a host, the entry scheme kept', () => {
  assert.equal(MAX_REDIRECTS, 3);
  assert.equal(redirectProblem('ws://b.test:8443/x', A, 0), null);
  assert.equal(redirectProblem(B, A, 2), null);
  const many = redirectProblem(B, A, 3, C);
  assert.equal(many?.problem, RedirectProblem.TOO_MANY);
  assert.match(many?.detail ?? '', /ws:\/\/c\.test\/ redirected to ws:\/\/b\.test\/ after 3 redirects.*try again in a moment/);
  assert.equal(redirectProblem('wss://b.test/', A, 0)?.problem, RedirectProblem.SCHEME_CHANGED);
  assert.equal(redirectProblem('ws://b.test/', 'wss://a.test/', 0)?.problem, RedirectProblem.SCHEME_CHANGED, 'TLS is never turned off');
  for (const bad of ['http://b.test/', 'ws://b.test:99999/', '', 'javascript:alert(1)']) {
    assert.equal(redirectProblem(bad, A, 0)?.problem, RedirectProblem.BAD_URL, bad);
  }
});

// ---------------------------------------------------------------- sessions on fakes

test('a REDIRECT is followed: same subprotocols, the same JOIN (same token) at the URL named', async () => {
  const { session, log, server } = await dial();
  const first = openLast();
  first.receive(REDIRECT(B));
  assert.equal(FakeWebSocket.made.length, 2);
  assert.deepEqual(first.closedWith?.code, CloseCode.NORMAL);
  const second = FakeWebSocket.made[1];
  assert.equal(second.url, B);
  assert.deepEqual(second.protocols, first.protocols);
  first.serverClose(CloseCode.REDIRECT, 'redirect'); // late: the old socket is no longer heard
  openLast();
  assert.deepEqual(second.sent, first.sent, 'the same JOIN bytes');
  const join = second.decodedSent()[0];
  assert.equal(join.kind === 'JOIN' ? join.token : '', 'tok-1');
  seat(second, server);
  await session.ready;
  assert.equal(session.state, 'playing');
  assert.deepEqual([session.url, session.entryUrl, session.ownerUrl, session.redirects, session.stats.redirects], [B, A, B, 1, 1]);
  assert.deepEqual(log.filter((e) => e.event === 'redirect'), [{ event: 'redirect', url: B, room: 'lobby', hop: 1 }]);
});

test('three redirects are followed; a fourth closes the session with 4015 and says why', async () => {
  const { session } = await dial();
  for (let i = 0; i < 3; i++) openLast().receive(REDIRECT(`ws://n${i}.test/`));
  openLast().receive(REDIRECT(A));
  await assert.rejects(session.ready, /another server of this cluster/);
  const info = /** @type {import('../src/index.js').CloseInfo} */ (session.closeInfo);
  assert.equal(info.code, CloseCode.REDIRECT);
  assert.equal(info.advice, 'retry');
  assert.match(info.detail, /after 3 redirects for this join/);
  assert.equal(FakeWebSocket.made.length, 4);
  assert.equal(session.redirects, 3);
});

test('a redirect target that cannot be reached ends the first join, and says where it was sent', async () => {
  const { session } = await dial();
  openLast().receive(REDIRECT(B));
  FakeWebSocket.made[1].serverClose(1006); // never opened
  await assert.rejects(session.ready);
  assert.equal(session.closeInfo?.code, 1006);
  assert.match(session.closeInfo?.detail ?? '', /could not connect to ws:\/\/b\.test\/, where a redirect sent this join \(from ws:\/\/a\.test\/\)/);
});

test('a redirect to another scheme is refused; one after JOINED is a protocol error', async () => {
  const { session } = await dial();
  openLast().receive(REDIRECT('wss://b.test/'));
  await assert.rejects(session.ready);
  assert.match(session.closeInfo?.detail ?? '', /not a ws:\/\/ URL/);
  assert.equal(FakeWebSocket.made.length, 1);

  FakeWebSocket.made = [];
  const two = await dial();
  const ws = openLast();
  seat(ws, two.server);
  await two.session.ready;
  ws.receive(REDIRECT(B));
  assert.equal(two.session.state, 'closed');
  assert.equal(two.session.closeInfo?.code, CloseCode.PROTOCOL_ERROR);
  assert.equal(FakeWebSocket.made.length, 1);
});

test('a resume goes to the owner first; the owner gone, the same attempt goes back to the entry', async () => {
  const { session, clock, log, server } = await dial();
  openLast().receive(REDIRECT(B));
  const atB = openLast();
  seat(atB, server);
  await session.ready;
  atB.serverClose(1006);
  assert.equal(session.state, 'reconnecting');
  clock.advance(clock.nextDue() - clock.t);
  const again = openLast();
  assert.equal(again.url, B, 'straight to the owner');
  assert.deepEqual(kinds(again), ['RESUME']);
  seat(again, server, true);
  assert.equal(session.state, 'playing');
  assert.equal(session.stats.resumes, 1);
  assert.equal(session.redirects, 0);

  // B dies: the connection drops, and B refuses new ones (closed before it opens)
  again.serverClose(1006);
  clock.advance(clock.nextDue() - clock.t);
  const refused = FakeWebSocket.made[FakeWebSocket.made.length - 1];
  assert.equal(refused.url, B);
  refused.serverClose(1006); // never opened
  const entry = openLast();
  assert.equal(entry.url, A, 'back to the entry URL at once, in the same attempt');
  assert.equal(session.ownerUrl, null);
  assert.deepEqual(kinds(entry), ['RESUME']);
  entry.receive(REDIRECT(C)); // the room lives on C now
  const atC = openLast();
  assert.deepEqual(kinds(atC), ['RESUME']);
  seat(atC, server, true);
  assert.equal(session.state, 'playing');
  assert.deepEqual([session.url, session.ownerUrl, session.redirects, session.stats.redirects], [C, C, 1, 2]);
  assert.equal(session.stats.attempts, 2, 'two attempts: the fallback was no extra one');
  assert.deepEqual(log.filter((e) => e.event === 'redirect').map((e) => e.url), [B, C]);
});

test('an owner that does not answer: the next attempt starts at the entry URL', async () => {
  const { session, clock, server } = await dial({ attemptTimeoutMs: 500 });
  openLast().receive(REDIRECT(B));
  const atB = openLast();
  seat(atB, server);
  await session.ready;
  atB.serverClose(1006);
  clock.advance(clock.nextDue() - clock.t);
  assert.equal(FakeWebSocket.made[FakeWebSocket.made.length - 1].url, B); // left unanswered
  clock.advance(500); // the attempt times out
  assert.equal(session.ownerUrl, null);
  clock.advance(clock.nextDue() - clock.t);
  assert.equal(FakeWebSocket.made[FakeWebSocket.made.length - 1].url, A);
});

test('4016 on the first join is tried again with backoff, within connectTimeoutMs', async () => {
  const { session, clock, server } = await dial({ connectTimeoutMs: 3000 });
  for (let i = 0; i < 2; i++) {
    const ws = openLast();
    ws.receive(ERROR(CloseCode.DIRECTORY_UNAVAILABLE, 'directory unavailable'));
    ws.serverClose(CloseCode.DIRECTORY_UNAVAILABLE);
    assert.equal(session.state, 'connecting');
    clock.advance(clock.nextDue() - clock.t);
    await settle();
  }
  const ws = openLast();
  assert.deepEqual(kinds(ws), ['JOIN']);
  seat(ws, server);
  await session.ready;
  assert.equal(session.stats.directoryRetries, 2);
  assert.equal(FakeWebSocket.made.length, 3);

  // the connect timeout runs over the retries: then the refusal is the answer
  FakeWebSocket.made = [];
  const late = await dial({ connectTimeoutMs: 3000 });
  let n = 0;
  while (late.session.state !== 'closed') {
    const w = openLast();
    w.receive(ERROR(CloseCode.DIRECTORY_UNAVAILABLE, 'directory unavailable'));
    w.serverClose(CloseCode.DIRECTORY_UNAVAILABLE);
    if (/** @type {string} */ (late.session.state) === 'closed') break;
    late.clock.advance(late.clock.nextDue() - late.clock.t);
    await settle();
    n++;
    assert.ok(n < 20);
  }
  assert.equal(late.session.closeInfo?.code, CloseCode.DIRECTORY_UNAVAILABLE);
  assert.ok(late.clock.t - 1000 <= 3000);

  // without reconnects: at once
  FakeWebSocket.made = [];
  const off = await dial({ reconnect: false });
  const w = openLast();
  w.receive(ERROR(CloseCode.DIRECTORY_UNAVAILABLE, 'directory unavailable'));
  w.serverClose(CloseCode.DIRECTORY_UNAVAILABLE);
  assert.equal(off.session.closeInfo?.code, CloseCode.DIRECTORY_UNAVAILABLE);
  assert.equal(FakeWebSocket.made.length, 1);
});

test('leaving from a redirect listener opens nothing more', async () => {
  const { session, clock } = await dial();
  session.on('redirect', () => void session.leave());
  openLast().receive(REDIRECT(B));
  clock.advance(1);
  assert.equal(FakeWebSocket.made.length, 1);
  assert.equal(session.state, 'closed');
  assert.equal(session.closeInfo?.code, CloseCode.NORMAL);
});
