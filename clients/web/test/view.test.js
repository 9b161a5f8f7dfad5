// View rooms (JOINED flag VIEW, docs/protocol.md "Views (v2)"): a replica that holds the
// client's view, where entities leave and come back, snapshots come in any order, acks are the
// client's own and the checksum is the sum of the records' CRC-32s mod 2^32. A JavaScript
// "view server" (a grid of cells, a focus that walks) makes the messages; the replica must end
// up with exactly the entities the server says the client sees, every checksum verified.

import assert from 'node:assert/strict';
import { beforeEach, test } from 'node:test';

import {
  CloseCode,
  DesyncError,
  Field,
  InputSchema,
  Interpolator,
  JOINED_VIEW,
  Predictor,
  Replica,
  Schema,
  Writer,
  connect,
  crc32,
  decodeServerMessage,
  describeClose,
  encodeServerMessage,
  viewChecksum,
  writeRecord,
} from '../src/index.js';
import { fieldClient } from '../games/field.js';
import { FakeClock, FakeWebSocket, rng } from './helpers.js';

/** @typedef {import('../src/index.js').Int} Int */
/** @typedef {import('../src/index.js').Code} Code */
/** @typedef {import('../src/index.js').EntityRecord} EntityRecord */
/** @typedef {import('../src/index.js').Delta} Delta */

const WORLD = 4000;
const CELL = 250;
const POS = { lo: 0, hi: WORLD, precision: 0.1 };
const SCHEMA = new Schema([
  { name: 'avatar', fields: [new Field('x', 'FLOAT', POS), new Field('y', 'FLOAT', POS), new Field('owner', 'VARUINT'), new Field('name', 'STRING', { maxBytes: 16 })] },
  { name: 'creature', fields: [new Field('x', 'FLOAT', POS), new Field('y', 'FLOAT', POS), new Field('kind', 'U8')] },
  { name: 'clock', fields: [new Field('seconds', 'VARUINT')] }, // global: in every view
]);
const INPUT = new InputSchema([new Field('dx', 'FLOAT', { lo: -1, hi: 1, precision: 0.01 }), new Field('dy', 'FLOAT', { lo: -1, hi: 1, precision: 0.01 })]);

/** The CRC-32 of one full record, as the server computes it. @param {EntityRecord} rec */
function recordCrc(rec) {
  const w = new Writer();
  writeRecord(w, SCHEMA, rec);
  const b = w.finish();
  return crc32(b);
}

/** @param {EntityRecord[]} recs */
const serverChecksum = (recs) => viewChecksum(recs.map(recordCrc));

/**
 * A world of wandering creatures, one avatar (player 1) whose focus walks across it, and a
 * global clock. `visible()` is the set of ids the client sees: the global clock plus every
 * positioned entity in the 3x3 cells around the avatar.
 */
class ViewWorld {
  /** @param {number} seed @param {number} creatures */
  constructor(seed, creatures) {
    this.r = rng(seed);
    this.tick = 100;
    /** @type {Map<number, EntityRecord>} */
    this.entities = new Map();
    /** @type {number} */
    this.nextId = 1;
    /** @type {number} */
    this.avatarId = this.add(0, [POS_CODE(300), POS_CODE(300), 1, 'me']);
    this.add(2, [0]);
    for (let i = 0; i < creatures; i++) this.add(1, [POS_CODE(this.r.next() * 1500), POS_CODE(this.r.next() * 1500), this.r.int(0, 3)]);
    /** @type {Set<number>} what the client holds */
    this.held = new Set();
    this.seq = 0;
  }

  /** @param {number} typeId @param {Code[]} codes */
  add(typeId, codes) {
    const id = this.nextId++;
    this.entities.set(id, { id, typeId, codes });
    return id;
  }

  /** @param {number} id */
  cellOf(id) {
    const e = /** @type {EntityRecord} */ (this.entities.get(id));
    const [x, y] = [Number(e.codes[0]) * POS.precision, Number(e.codes[1]) * POS.precision];
    return [Math.floor(x / CELL), Math.floor(y / CELL)];
  }

  visible() {
    const [ax, ay] = this.cellOf(this.avatarId);
    const out = new Set();
    for (const [id, e] of this.entities) {
      if (e.typeId === 2) out.add(id);
      else {
        const [cx, cy] = this.cellOf(id);
        if (Math.abs(cx - ax) <= 1 && Math.abs(cy - ay) <= 1) out.add(id);
      }
    }
    return out;
  }

  /** @param {Iterable<number>} ids */
  records(ids) {
    return [...ids].map((id) => {
      const e = /** @type {EntityRecord} */ (this.entities.get(id));
      return { id: e.id, typeId: e.typeId, codes: e.codes.slice() };
    });
  }

  /** The snapshot of the client's view: records in a shuffled order, only our own ack. */
  snapshot() {
    this.held = this.visible();
    const recs = this.records(this.held);
    for (let i = recs.length - 1; i > 0; i--) {
      const j = this.r.int(0, i);
      [recs[i], recs[j]] = [recs[j], recs[i]];
    }
    return encodeServerMessage({ kind: 'SNAPSHOT', tick: this.tick, checksum: serverChecksum(recs), acks: [[1, this.seq]], entities: recs }, SCHEMA);
  }

  /**
   * One tick: the avatar walks (dx, dy), creatures wander, some die and are born, the clock
   * runs; the client's delta: entities that came into view in full, changes of those it holds
   * and still sees, ids of those gone from view (or from the world).
   * @param {number} dx @param {number} dy @param {{corrupt?: boolean}} [opts]
   */
  step(dx, dy, opts = {}) {
    this.tick++;
    /** @type {Map<number, {mask: number, codes: Code[]}>} */
    const patches = new Map();
    /** @param {number} id @param {number} i @param {Code} code */
    const set = (id, i, code) => {
      const e = /** @type {EntityRecord} */ (this.entities.get(id));
      if (e.codes[i] === code) return;
      e.codes[i] = code;
      const p = patches.get(id) ?? { mask: 0, codes: [] };
      p.mask |= 1 << i;
      patches.set(id, p);
    };
    const a = /** @type {EntityRecord} */ (this.entities.get(this.avatarId));
    set(this.avatarId, 0, clampCode(Number(a.codes[0]) + dx));
    set(this.avatarId, 1, clampCode(Number(a.codes[1]) + dy));
    for (const [id, e] of this.entities) {
      if (e.typeId === 2 && this.tick % 20 === 0) set(id, 0, Number(e.codes[0]) + 1);
      if (e.typeId !== 1 || this.r.next() < 0.5) continue;
      set(id, 0, clampCode(Number(e.codes[0]) + this.r.int(-300, 300)));
      set(id, 1, clampCode(Number(e.codes[1]) + this.r.int(-300, 300)));
    }
    /** @type {number[]} */
    const died = [];
    for (const [id, e] of this.entities) if (e.typeId === 1 && this.r.next() < 0.01) died.push(id);
    for (const id of died) this.entities.delete(id);
    const born = this.r.next() < 0.2 ? [this.add(1, [clampCode(Number(a.codes[0]) + this.r.int(-2000, 2000)), clampCode(Number(a.codes[1]) + this.r.int(-2000, 2000)), 1])] : [];
    void born;
    const now = this.visible();
    const created = this.records([...now].filter((id) => !this.held.has(id)));
    /** @type {Delta['changed']} */
    const changed = [];
    for (const id of now) {
      const p = patches.get(id);
      if (!p || !this.held.has(id)) continue;
      const e = /** @type {EntityRecord} */ (this.entities.get(id));
      const codes = [];
      for (let i = 0, m = p.mask; m; i++, m >>>= 1) if (m & 1) codes.push(e.codes[i]);
      changed.push({ id, mask: p.mask, codes });
    }
    const removed = [...this.held].filter((id) => !now.has(id));
    const before = this.held;
    this.held = now;
    this.seq += dx || dy ? 1 : 0;
    /** @type {Array<[Int, Int]>} */
    const acks = dx || dy ? [[1, 1]] : [];
    const checksum = this.tick % 2 === 0 ? (serverChecksum(this.records(now)) ^ (opts.corrupt ? 1 : 0)) >>> 0 : null;
    const typeOf = (/** @type {Int} */ id) => {
      assert.ok(before.has(Number(id)), `a patch for ${id}, which the client does not hold`);
      return SCHEMA.types[/** @type {EntityRecord} */ (this.entities.get(Number(id))).typeId];
    };
    return { bytes: encodeServerMessage({ kind: 'DELTA', tick: this.tick, checksum, acks, created, changed, removed }, SCHEMA, typeOf), created: created.length, removed: removed.length };
  }
}

/** @param {number} v a position */
function POS_CODE(v) {
  return SCHEMA.types[0].fields[0].toCode(v);
}
/** @param {number} c a position code, clamped to the world */
function clampCode(c) {
  return Math.min(Math.max(c, 0), WORLD / POS.precision);
}

beforeEach(() => {
  FakeWebSocket.made = [];
});

test('the view checksum: the sum of the records CRC-32s mod 2^32, order-free, 0 when empty', () => {
  assert.equal(viewChecksum([]), 0);
  assert.equal(viewChecksum([0xffffffff, 2]), 1, 'mod 2^32');
  assert.equal(viewChecksum([0xcbf43926]), crc32(new TextEncoder().encode('123456789')));
  const recs = [
    { id: 1, typeId: 1, codes: [1, 2, 3] },
    { id: 9, typeId: 2, codes: [7] },
    { id: 4, typeId: 0, codes: [5, 6, 1, 'x'] },
  ];
  assert.equal(serverChecksum(recs), serverChecksum([...recs].reverse()));
  const r = new Replica(SCHEMA, { view: true });
  assert.equal(r.view, true);
  r.applySnapshot({ kind: 'SNAPSHOT', tick: 5, checksum: serverChecksum(recs), acks: [[1, 0]], entities: recs });
  assert.equal(r.checks, 1);
  assert.equal(r.checksum(), (recordCrc(recs[0]) + recordCrc(recs[1]) + recordCrc(recs[2])) % 2 ** 32);
  const empty = new Replica(SCHEMA, { view: true });
  empty.applySnapshot({ kind: 'SNAPSHOT', tick: 5, checksum: 0, acks: [], entities: [] });
  assert.equal(empty.checksum(), 0);
  // a room replica (no view) keeps the room checksum: CRC-32 over records in ascending id order
  const room = new Replica(SCHEMA);
  assert.equal(room.view, false);
  const w = new Writer();
  for (const rec of [...recs].sort((a, b) => Number(a.id) - Number(b.id))) writeRecord(w, SCHEMA, rec);
  const bytes = w.finish();
  room.applySnapshot({ kind: 'SNAPSHOT', tick: 5, checksum: crc32(bytes), acks: [], entities: recs });
  assert.equal(room.checksum(), crc32(bytes));
  assert.throws(() => new Replica(SCHEMA).applySnapshot({ kind: 'SNAPSHOT', tick: 5, checksum: serverChecksum(recs), acks: [], entities: recs }), DesyncError, 'a view checksum is not a room checksum');
});

test('a room replica keeps ascending id order for its checksum after out-of-order creates', () => {
  const recs = [
    { id: 5, typeId: 1, codes: [1, 2, 3] },
    { id: 2, typeId: 1, codes: [4, 5, 6] },
  ];
  const r = new Replica(SCHEMA);
  r.applySnapshot({ kind: 'SNAPSHOT', tick: 1, checksum: 0, acks: [], entities: [] }, false);
  const crcOf = (/** @type {EntityRecord[]} */ rs) => {
    const w = new Writer();
    for (const rec of [...rs].sort((a, b) => Number(a.id) - Number(b.id))) writeRecord(w, SCHEMA, rec);
    return crc32(w.finish());
  };
  r.applyDelta({ kind: 'DELTA', tick: 2, checksum: crcOf(recs), acks: [], created: recs, changed: [], removed: [] });
  const more = { id: 3, typeId: 1, codes: [7, 8, 9] };
  r.applyDelta({ kind: 'DELTA', tick: 3, checksum: crcOf([...recs, more]), acks: [], created: [more], changed: [], removed: [] });
  assert.equal(r.checks, 2);
  assert.deepEqual([...r.entities.keys()], [2, 3, 5]);
});

for (const seed of [1, 2, 3, 4, 5]) {
  test(`a walk across a view world (seed ${seed}): the replica is the server's view at every tick, every checksum verified`, () => {
    const world = new ViewWorld(seed, 400);
    const replica = new Replica(SCHEMA, { view: true });
    replica.applyBytes(world.snapshot());
    let entered = 0;
    let left = 0;
    let checks = 1;
    const r = rng(seed * 7);
    let [dx, dy] = [120, 80];
    for (let t = 0; t < 300; t++) {
      if (t % 40 === 0) [dx, dy] = [r.int(-150, 150), r.int(-150, 150)];
      const out = world.step(t % 10 === 9 ? 0 : dx, t % 10 === 9 ? 0 : dy);
      entered += out.created;
      left += out.removed;
      const msg = replica.applyBytes(out.bytes);
      if (msg.kind === 'DELTA' && msg.checksum !== null) checks++;
      assert.deepEqual(new Set(replica.entities.keys()), world.held, `tick ${world.tick}: the replica holds the view`);
      for (const [id, e] of replica.entities) assert.deepEqual(e.codes, /** @type {EntityRecord} */ (world.entities.get(Number(id))).codes, `entity ${id}`);
      assert.equal(replica.checksum(), serverChecksum(world.records(world.held)));
      assert.deepEqual([...replica.acks], [[1, world.seq]], 'only our own ack');
    }
    assert.equal(replica.checks, checks);
    assert.ok(entered > 50 && left > 50, `entities entered (${entered}) and left (${left}) the view`);
    // a resync: a fresh snapshot, in another order, re-bases the replica
    replica.applyBytes(world.snapshot());
    assert.deepEqual(new Set(replica.entities.keys()), world.held);
  });
}

test('a view replica notices a wrong checksum, a patch for an entity out of view, a create of one it holds', () => {
  const world = new ViewWorld(9, 200);
  const replica = new Replica(SCHEMA, { view: true });
  replica.applyBytes(world.snapshot());
  replica.applyBytes(world.step(10, 10).bytes);
  assert.throws(() => replica.applyBytes(world.step(10, 10, { corrupt: true }).bytes), /checksum mismatch/);
  const held = [...replica.entities.keys()];
  const r2 = new Replica(SCHEMA, { view: true });
  r2.applySnapshot({ kind: 'SNAPSHOT', tick: 1, checksum: 0, acks: [], entities: [] });
  assert.throws(() => r2.applyDelta({ kind: 'DELTA', tick: 2, checksum: null, acks: [], created: [], changed: [{ id: held[0], mask: 1, codes: [1] }], removed: [] }), DesyncError);
  const rec = { id: 1, typeId: 1, codes: [1, 2, 3] };
  r2.applyDelta({ kind: 'DELTA', tick: 2, checksum: serverChecksum([rec]), acks: [], created: [rec], changed: [], removed: [] });
  assert.throws(() => r2.applyDelta({ kind: 'DELTA', tick: 3, checksum: null, acks: [], created: [rec], changed: [], removed: [] }), DesyncError);
  // removed, then created again: normal, and the CRC follows the new record
  const back = { id: 1, typeId: 1, codes: [9, 9, 2] };
  r2.applyDelta({ kind: 'DELTA', tick: 3, checksum: 0, acks: [], created: [], changed: [], removed: [1] });
  r2.applyDelta({ kind: 'DELTA', tick: 4, checksum: serverChecksum([back]), acks: [], created: [back], changed: [], removed: [] });
  r2.applyDelta({ kind: 'DELTA', tick: 5, checksum: serverChecksum([{ ...back, codes: [9, 10, 2] }]), acks: [], created: [], changed: [{ id: 1, mask: 2, codes: [10] }], removed: [] });
  assert.equal(r2.checks, 5);
});

test('JOINED carries the VIEW flag in v2 only; unknown flags are still refused', () => {
  const joined = { kind: /** @type {const} */ ('JOINED'), version: 2, player: 1, room: 'r', game: 'field', tickRate: 20, schema: SCHEMA, inputSchema: INPUT, resumed: false, resumeToken: 't', seatHoldMs: 1000, inputSeq: 0, view: true };
  const bytes = encodeServerMessage(joined);
  assert.equal(bytes[2], JOINED_VIEW);
  const back = decodeServerMessage(bytes, undefined, undefined, 2);
  assert.ok(back.kind === 'JOINED' && back.view === true && back.resumed === false);
  const both = encodeServerMessage({ ...joined, resumed: true });
  assert.equal(both[2], 0x03);
  const d = decodeServerMessage(both);
  assert.ok(d.kind === 'JOINED' && d.view && d.resumed);
  const plain = decodeServerMessage(encodeServerMessage({ ...joined, view: false }));
  assert.ok(plain.kind === 'JOINED' && plain.view === false);
  const bad = bytes.slice();
  bad[2] = 0x04;
  assert.throws(() => decodeServerMessage(bad), (/** @type {any} */ e) => e.closeCode === 1002);
  assert.throws(() => encodeServerMessage({ ...joined, version: 1 }), /no flags/);
  const v1 = decodeServerMessage(encodeServerMessage({ ...joined, version: 1, view: false, resumed: false }), undefined, undefined, 1);
  assert.ok(v1.kind === 'JOINED' && v1.view === false);
});

test('4014 VERSION_REQUIRED is described and not retried', () => {
  assert.equal(CloseCode.VERSION_REQUIRED, 4014);
  const info = describeClose(4014, "game 'field' needs gamesync.v2", true);
  assert.equal(info.name, 'VERSION_REQUIRED');
  assert.equal(info.advice, 'fix');
});

test('a session in a view room: viewRoom, entities leaving and entering, own acks, metrics', async () => {
  const clock = new FakeClock();
  const session = connect('wss://game.example:8443', { room: 'big', game: 'field', token: 'tok', WebSocket: FakeWebSocket, now: clock.now, timers: clock.timers });
  /** @type {any[]} */
  const joins = [];
  session.on('joined', (j) => joins.push(j));
  assert.equal(session.viewRoom, false);
  await new Promise((resolve) => setImmediate(resolve));
  const ws = FakeWebSocket.made[0];
  ws.open('gamesync.v2');
  const world = new ViewWorld(11, 300);
  ws.receive(encodeServerMessage({ kind: 'JOINED', version: 2, player: 1, room: 'big', game: 'field', tickRate: 20, schema: SCHEMA, inputSchema: INPUT, resumed: false, resumeToken: 'tok-1', seatHoldMs: 20000, inputSeq: 0, view: true }));
  ws.receive(world.snapshot());
  await session.ready;
  assert.equal(session.viewRoom, true);
  assert.equal(joins[0].view, true);
  assert.equal(session.replica?.view, true);
  let entered = 0;
  let left = 0;
  for (let t = 0; t < 120; t++) {
    clock.advance(50);
    const out = world.step(t % 3 ? 150 : 0, 100);
    entered += out.created;
    left += out.removed;
    ws.receive(out.bytes);
  }
  assert.ok(entered > 10 && left > 10, `entered ${entered}, left ${left}`);
  assert.equal(session.stats.checksumMismatches, 0);
  assert.equal(session.stats.desyncs, 0);
  assert.equal(session.stats.checksumsVerified, 61);
  assert.equal(session.lastAcked, world.seq);
  const m = session.metrics();
  assert.equal(m.entities, world.held.size);
  assert.equal(m.viewRoom, true);
  assert.equal(session.view(clock.now()).entities.length > 0, true);
});

/** A view session playing: JOINED (VIEW), snapshot. @param {number} seed */
async function viewSession(seed) {
  const clock = new FakeClock();
  const session = connect('wss://game.example:8443', { room: 'big', game: 'field', token: 'tok', WebSocket: FakeWebSocket, now: clock.now, timers: clock.timers, random: () => 0.5 });
  await new Promise((resolve) => setImmediate(resolve));
  const ws = FakeWebSocket.made[0];
  ws.open('gamesync.v2');
  const world = new ViewWorld(seed, 300);
  /** @param {{resumed?: boolean, view?: boolean}} [o] */
  const joined = (o = {}) =>
    encodeServerMessage({ kind: 'JOINED', version: 2, player: 1, room: 'big', game: 'field', tickRate: 20, schema: SCHEMA, inputSchema: INPUT, resumed: !!o.resumed, resumeToken: `tok-${Math.random()}`, seatHoldMs: 20000, inputSeq: world.seq, view: o.view ?? true });
  ws.receive(joined());
  ws.receive(world.snapshot());
  await session.ready;
  for (let t = 0; t < 10; t++) {
    clock.advance(50);
    ws.receive(world.step(150, 0).bytes);
  }
  return { session, clock, ws, world, joined };
}

/** The next reconnect attempt's socket, opened as v2. @param {FakeClock} clock */
async function nextSocket(clock) {
  const before = FakeWebSocket.made.length;
  clock.advance(Math.max(0, clock.nextDue() - clock.t));
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(FakeWebSocket.made.length, before + 1);
  const ws = FakeWebSocket.made[before];
  ws.open('gamesync.v2');
  return ws;
}

test('a view seat resumes with JOINED (RESUMED | VIEW) and a snapshot of the view, not a catch-up', async () => {
  const { session, clock, ws, world, joined } = await viewSession(21);
  ws.serverClose(CloseCode.ABNORMAL);
  assert.equal(session.state, 'reconnecting');
  // the world goes on while we are away: the avatar is elsewhere when we come back
  for (let t = 0; t < 30; t++) world.step(150, 100);
  const ws2 = await nextSocket(clock);
  assert.equal(ws2.sent[0][0], 0x05, 'RESUME');
  ws2.receive(joined({ resumed: true }));
  ws2.receive(world.snapshot());
  assert.equal(session.state, 'playing');
  assert.equal(session.stats.resumes, 1);
  assert.equal(session.viewRoom, true);
  assert.deepEqual(new Set(session.replica?.entities.keys()), world.held);
  for (let t = 0; t < 20; t++) {
    clock.advance(50);
    ws2.receive(world.step(0, -150).bytes);
  }
  assert.equal(session.stats.checksumMismatches, 0);
  assert.equal(session.stats.desyncs, 0);
});

test('a resume answered without the VIEW flag (the room changed how it sends state) is a protocol error', async () => {
  const { session, clock, ws, joined } = await viewSession(22);
  ws.serverClose(CloseCode.ABNORMAL);
  const ws2 = await nextSocket(clock);
  ws2.receive(joined({ resumed: true, view: false }));
  assert.equal(session.state, 'closed');
  assert.equal(session.closeInfo?.code, 1002);
  assert.match(session.closeInfo?.detail ?? '', /no longer sends a view/);
});

test('a wrapping world (wrap option): interpolation and the prediction glide go the short way round', () => {
  const AV = SCHEMA.types[0];
  const at = (/** @type {number} */ x) => ({ id: 1, type: AV, codes: AV.codesFor({ x, y: 100, owner: 1, name: 'a' }) });
  /** @param {Interpolator} interp */
  const drawnXs = (interp) => {
    interp.push(1, 50, [at(3995)]);
    interp.push(2, 100, [at(5)]);
    interp.push(3, 150, [at(15)]);
    const xs = [];
    for (let now = 100; now <= 300; now += 5) for (const e of interp.view(now)) xs.push(Number(e.values.x));
    return xs;
  };
  const across = (/** @type {number[]} */ xs) => xs.filter((x) => x > 30 && x < 3970);
  const plain = drawnXs(new Interpolator({ tickRate: 20 }));
  assert.ok(across(plain).length > 0, 'without wrap the blend crosses the whole world');
  const wrapped = drawnXs(new Interpolator({ tickRate: 20, wrap: { x: 4000, y: 4000 } }));
  assert.deepEqual(across(wrapped), [], `with wrap it stays at the seam: ${wrapped}`);
  assert.ok(wrapped.some((x) => x < 16) && wrapped.length > 10);

  const client = fieldClient({ side: 4000 });
  const p = new Predictor({ predict: client.options.predict, dt: 0.05, wrap: client.options.wrap, snapDistance: 100 });
  p.rebase([at(3995)], 0, 0);
  p.applyInput(1, { dx: 1, dy: 0 }, 10);
  /** @type {number[]} */
  const glide = [];
  for (let now = 10; now <= 70; now += 5) glide.push(Number(p.visible(1, now)?.x));
  assert.equal(p.predicted(1)?.x, 5, 'the server wraps to 5');
  assert.deepEqual(across(glide), [], `the glide stays at the seam: ${glide}`);
  // the server agrees: no correction, no snap
  p.rebase([at(5)], 1, 80);
  assert.equal(p.error, 0);
  assert.ok(p.correction() < 1e-9);
});
