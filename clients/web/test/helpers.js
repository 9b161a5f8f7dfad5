// Test helpers: a seeded PRNG, a fake WebSocket the tests drive by hand, and a tiny arena
// "server" in JavaScript (the real rule from games/arena.js) that encodes real DELTAs.

import { predict as arenaPredict } from '../games/arena.js';
import {
  Entity,
  Field,
  InputSchema,
  Replica,
  Schema,
  decodeClientMessage,
  encodeServerMessage,
} from '../src/index.js';

/** @typedef {import('../src/index.js').Code} Code */
/** @typedef {import('../src/index.js').Int} Int */
/** @typedef {import('../src/index.js').Delta} Delta */

/** A small deterministic PRNG (mulberry32). @param {number} seed */
export function rng(seed) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return {
    next,
    /** @param {number} lo @param {number} hi inclusive */
    int: (lo, hi) => lo + Math.floor(next() * (hi - lo + 1)),
    /** @template T @param {readonly T[]} xs @returns {T} */
    pick: (xs) => xs[Math.floor(next() * xs.length)],
  };
}

export const POS = { lo: 0, hi: 1000, precision: 0.05 };
export const ARENA_SCHEMA = new Schema([
  {
    name: 'player',
    fields: [
      new Field('x', 'FLOAT', POS),
      new Field('y', 'FLOAT', POS),
      new Field('score', 'VARUINT'),
      new Field('hp', 'U8'),
      new Field('owner', 'VARUINT'),
      new Field('name', 'STRING', { maxBytes: 32 }),
    ],
  },
  { name: 'gem', fields: [new Field('x', 'FLOAT', POS), new Field('y', 'FLOAT', POS), new Field('value', 'U8')] },
]);
const AXIS = { lo: -1, hi: 1, precision: 0.01 };
export const ARENA_INPUT = new InputSchema([new Field('dx', 'FLOAT', AXIS), new Field('dy', 'FLOAT', AXIS)]);

/** A WebSocket double: the test opens it, feeds it server bytes and reads what was sent. */
export class FakeWebSocket {
  /** @type {FakeWebSocket[]} every socket made, in order */
  static made = [];

  /** @param {string} url @param {string | string[]} protocols */
  constructor(url, protocols) {
    this.url = url;
    this.protocols = protocols;
    this.binaryType = 'blob';
    this.readyState = 0;
    this.bufferedAmount = 0;
    this.protocol = '';
    /** @type {Uint8Array[]} */
    this.sent = [];
    /** @type {{code?: number, reason?: string} | null} */
    this.closedWith = null;
    /** @type {((ev: any) => void) | null} */ this.onopen = null;
    /** @type {((ev: {data: unknown}) => void) | null} */ this.onmessage = null;
    /** @type {((ev: {code: number, reason: string}) => void) | null} */ this.onclose = null;
    /** @type {((ev: any) => void) | null} */ this.onerror = null;
    FakeWebSocket.made.push(this);
  }

  /** The server accepts the upgrade. @param {string} [protocol] */
  open(protocol = 'gamesync.v1') {
    this.readyState = 1;
    this.protocol = protocol;
    this.onopen?.({});
  }

  /** @param {Uint8Array} data */
  send(data) {
    if (this.readyState !== 1) throw new Error('not open');
    this.sent.push(data.slice());
  }

  /** As a browser's: only 1000 and 3000-4999, a reason of at most 123 bytes. @param {number} [code] @param {string} [reason] */
  close(code, reason) {
    if (code !== undefined && code !== 1000 && !(code >= 3000 && code <= 4999)) throw new Error(`InvalidAccessError: close code ${code}`);
    if (reason !== undefined && new TextEncoder().encode(reason).length > 123) throw new Error('SyntaxError: reason too long');
    this.closedWith = { code, reason };
    this.readyState = 3;
  }

  /** A server message arrives. @param {Uint8Array | string} data */
  receive(data) {
    this.onmessage?.({ data: typeof data === 'string' ? data : data.slice().buffer });
  }

  /** The server closes the connection. @param {number} code @param {string} [reason] */
  serverClose(code, reason = '') {
    this.readyState = 3;
    this.onclose?.({ code, reason });
  }

  /** What the client sent, decoded. */
  decodedSent() {
    return this.sent.map((b) => decodeClientMessage(b, ARENA_INPUT));
  }
}

/**
 * The arena's state and rule in JavaScript, producing the server's messages: JOINED, the
 * SNAPSHOT after the join tick, then one DELTA per tick with a checksum every 5 ticks. With
 * `version: 2`, JOINED is v2 (a resume token), and `catchUp(tick)` gives the catch-up DELTA
 * from an earlier tick, as a v2 server answers a RESUME.
 */
export class ArenaServer {
  /** @param {{player?: number, tick?: number, version?: number}} [opts] */
  constructor(opts = {}) {
    this.player = opts.player ?? 1;
    this.tick = opts.tick ?? 10;
    this.version = opts.version ?? 1;
    /** @type {Map<number, {entities: Map<Int, Code[]>, types: Map<Int, number>, acks: Map<number, number>}>} tick -> state, for catch-ups */
    this.history = new Map();
    /** player -> highest input seq accepted (the real server drops one at or below it) */
    this.highest = new Map();
    this.tokens = 0;
    this.state = new Replica(ARENA_SCHEMA);
    this.state.applySnapshot({ kind: 'SNAPSHOT', tick: this.tick, checksum: 0, acks: [], entities: [] }, false);
    /** @type {number} */
    this.nextId = 1;
    this.acks = new Map([[this.player, 0]]);
    /** @type {Map<number, {seq: number, dx: number, dy: number}[]>} */
    this.inbox = new Map();
    /** @type {Map<number, [number, number]>} player -> last input (dx, dy) values */
    this.velocityInput = new Map();
    this.avatarOf = new Map();
    this.spawnPlayer(this.player, 100, 200, 'alice');
    this.spawnGem(500, 500, 1);
    this.remember();
  }

  /**
   * JOINED: v1, or v2 with a fresh resume token (`resumed`: the answer to a RESUME, with the
   * last input seq applied; the highest seq accepted goes back to it).
   * @param {{resumed?: boolean, token?: string, seatHoldMs?: number}} [opts]
   */
  joined(opts = {}) {
    const inputSeq = opts.resumed ? /** @type {number} */ (this.acks.get(this.player)) : 0;
    if (opts.resumed) this.highest.set(this.player, inputSeq);
    return encodeServerMessage({
      kind: 'JOINED', version: this.version, player: this.player, room: 'lobby', game: 'arena', tickRate: 20, schema: ARENA_SCHEMA, inputSchema: ARENA_INPUT,
      resumed: !!opts.resumed, resumeToken: opts.token ?? `token-${this.player}-${++this.tokens}`, seatHoldMs: opts.seatHoldMs ?? 20000, inputSeq,
    });
  }

  /** Keep this tick's state for later catch-ups. */
  remember() {
    const entities = new Map();
    const types = new Map();
    for (const e of this.state.entities.values()) {
      entities.set(e.id, e.codes.slice());
      types.set(e.id, e.type.typeId);
    }
    this.history.set(this.tick, { entities, types, acks: new Map(this.acks) });
  }

  /**
   * The catch-up DELTA taking a replica at `base` to the current tick: created in full,
   * changed fields with current values, removed, summed acks, a checksum.
   * @param {number} base
   */
  catchUp(base) {
    const then = this.history.get(base);
    if (!then) throw new Error(`no history for tick ${base}`);
    /** @type {Delta['created']} */
    const created = [];
    /** @type {Delta['changed']} */
    const changed = [];
    for (const e of this.state.entities.values()) {
      const old = then.entities.get(e.id);
      if (!old) {
        created.push({ id: e.id, typeId: e.type.typeId, codes: e.codes.slice() });
        continue;
      }
      let mask = 0;
      /** @type {Code[]} */
      const codes = [];
      e.codes.forEach((c, i) => {
        if (c !== old[i]) (mask |= 1 << i), codes.push(c);
      });
      if (mask) changed.push({ id: e.id, mask, codes });
    }
    const removed = [...then.entities.keys()].filter((id) => !this.state.entities.has(id));
    /** @type {Array<[Int, Int]>} */
    const acks = [];
    for (const [p, seq] of this.acks) if (seq !== (then.acks.get(p) ?? 0)) acks.push([p, seq - (then.acks.get(p) ?? 0)]);
    const typeOf = (/** @type {Int} */ id) => ARENA_SCHEMA.types[/** @type {number} */ (then.types.get(id))];
    return encodeServerMessage({ kind: 'DELTA', tick: this.tick, base, checksum: this.state.checksum(), acks, created, changed, removed }, ARENA_SCHEMA, typeOf);
  }

  snapshot() {
    const entities = [...this.state.entities.values()].map((e) => ({ id: e.id, typeId: e.type.typeId, codes: e.codes.slice() }));
    return encodeServerMessage({ kind: 'SNAPSHOT', tick: this.tick, checksum: this.state.checksum(), acks: [...this.acks], entities }, ARENA_SCHEMA);
  }

  /** @param {number} player @param {number} x @param {number} y @param {string} name */
  spawnPlayer(player, x, y, name) {
    const t = ARENA_SCHEMA.types[0];
    const codes = t.codesFor({ x, y, hp: 100, owner: player, name });
    const id = this.nextId++;
    this.state.entities.set(id, new Entity(id, t, codes));
    this.avatarOf.set(player, id);
    this.velocityInput.set(player, [0, 0]);
    return id;
  }

  /** @param {number} x @param {number} y @param {number} value */
  spawnGem(x, y, value) {
    const t = ARENA_SCHEMA.types[1];
    const id = this.nextId++;
    this.state.entities.set(id, new Entity(id, t, t.codesFor({ x, y, value })));
    return id;
  }

  /** Take the client's INPUT bytes (as the room's queue would). @param {number} player @param {Uint8Array} bytes */
  receive(player, bytes) {
    const msg = decodeClientMessage(bytes, ARENA_INPUT);
    if (msg.kind !== 'INPUT') return;
    if (Number(msg.seq) <= (this.highest.get(player) ?? 0)) return; // stale, as the server drops it
    this.highest.set(player, Number(msg.seq));
    const [dx, dy] = /** @type {number[]} */ (ARENA_INPUT.fields.map((f, i) => f.toValue(msg.codes[i])));
    const q = this.inbox.get(player) ?? [];
    q.push({ seq: Number(msg.seq), dx, dy });
    this.inbox.set(player, q);
  }

  /**
   * One tick: apply queued inputs, move every avatar by its last input, encode the DELTA.
   * @param {{corrupt?: boolean, nudge?: number}} [opts] corrupt: a wrong checksum; nudge: move the avatar extra (server-side event)
   */
  step(opts = {}) {
    this.tick++;
    /** @type {Array<[Int, Int]>} */
    const acks = [];
    for (const [player, q] of this.inbox) {
      if (!q.length) continue;
      const last = q[q.length - 1];
      this.velocityInput.set(player, [last.dx, last.dy]);
      acks.push([player, last.seq - /** @type {number} */ (this.acks.get(player))]);
      this.acks.set(player, last.seq);
      q.length = 0;
    }
    /** @type {Delta['changed']} */
    const changed = [];
    for (const [player, id] of this.avatarOf) {
      const e = /** @type {any} */ (this.state.entities.get(id));
      const [dx, dy] = /** @type {[number, number]} */ (this.velocityInput.get(player));
      const before = e.values();
      const after = arenaPredict(before, { dx, dy }, 0.05);
      let x = e.type.fields[0].toCode(after.x);
      let y = e.type.fields[1].toCode(after.y);
      if (opts.nudge) x = e.type.fields[0].toCode(e.type.fields[0].toValue(x) + opts.nudge);
      let mask = 0;
      const codes = [];
      if (x !== e.codes[0]) (mask |= 1), codes.push(x), (e.codes[0] = x);
      if (y !== e.codes[1]) (mask |= 2), codes.push(y), (e.codes[1] = y);
      if (mask) changed.push({ id, mask, codes });
    }
    this.state.tick = this.tick;
    this.remember();
    const withChecksum = this.tick % 5 === 0;
    const checksum = withChecksum ? (this.state.checksum() ^ (opts.corrupt ? 1 : 0)) >>> 0 : null;
    return encodeServerMessage({ kind: 'DELTA', tick: this.tick, checksum, acks, created: [], changed, removed: [] }, ARENA_SCHEMA, this.state.typeOf);
  }

  /** The avatar's values as the server holds them. @param {number} [player] */
  avatar(player = this.player) {
    return /** @type {any} */ (this.state.entities.get(this.avatarOf.get(player))).values();
  }
}

/** A clock the tests move by hand, with timers that fire as it moves (pass `timers` to the session). */
export class FakeClock {
  constructor(t = 1000) {
    this.t = t;
    this.now = () => this.t;
    /** @type {Map<number, {at: number, fn: () => void}>} */
    this.due = new Map();
    this._id = 1;
    /** @type {import('../src/index.js').Timers} */
    this.timers = {
      setTimeout: (fn, ms) => {
        const id = this._id++;
        this.due.set(id, { at: this.t + Math.max(0, ms), fn });
        return id;
      },
      clearTimeout: (id) => {
        this.due.delete(/** @type {number} */ (id));
      },
    };
  }

  /** Move time on, firing every timer due by then in order (each at its own time). @param {number} ms */
  advance(ms) {
    const end = this.t + ms;
    for (;;) {
      let best = 0;
      let at = Infinity;
      for (const [id, d] of this.due) if (d.at < at || (d.at === at && id < best)) [best, at] = [id, d.at];
      if (at > end) break;
      const d = /** @type {{at: number, fn: () => void}} */ (this.due.get(best));
      this.due.delete(best);
      this.t = Math.max(this.t, d.at);
      d.fn();
    }
    this.t = end;
  }

  /** When the next timer is due (Infinity: none). */
  nextDue() {
    let at = Infinity;
    for (const d of this.due.values()) at = Math.min(at, d.at);
    return at;
  }
}

// ---------------------------------------------------------------- random schemas and states

const KINDS = /** @type {const} */ (['BOOL', 'U8', 'U16', 'U32', 'I8', 'I16', 'I32', 'VARUINT', 'VARINT', 'FLOAT', 'STRING']);
const ALPHABET = ['a', 'Z', '0', ' ', 'é', 'ß', '€', '中', '😀', '\u0000', '\uFEFF'];

/** @param {ReturnType<typeof rng>} r */
function randomField(r, /** @type {string} */ name) {
  const kind = r.pick(KINDS);
  if (kind === 'FLOAT') {
    const lo = r.pick([0, -1, -1000, 0.5, -3.25]);
    const precision = r.pick([0.01, 0.05, 0.5, 1, 0.001, 1e-5]);
    const steps = r.pick([3, 200, 255, 256, 20000, 65536, 100000, 2 ** 24 + 5, 2 ** 31]);
    return new Field(name, 'FLOAT', { lo, hi: lo + steps * precision, precision });
  }
  if (kind === 'STRING') return new Field(name, 'STRING', { maxBytes: r.pick([1, 4, 32, 255]) });
  return new Field(name, kind);
}

/** A random entity schema: up to 4 types, up to 40 fields (masks of 1 to 5 bytes). @param {ReturnType<typeof rng>} r */
export function randomSchema(r) {
  const n = r.int(1, 4);
  const types = [];
  for (let t = 0; t < n; t++) {
    const count = r.pick([0, 1, 3, 8, 9, 17, 33, 40]);
    const fields = [];
    for (let i = 0; i < count; i++) fields.push(randomField(r, `f${i}`));
    types.push({ name: r.pick(['player', 'gem', 'bullet', 'τύπος', '']) + t, fields });
  }
  return new Schema(types);
}

/**
 * A random valid code for a field.
 * @param {ReturnType<typeof rng>} r
 * @param {Field} f
 * @returns {Code}
 */
export function randomCode(r, f) {
  switch (f.kindName) {
    case 'BOOL':
      return r.next() < 0.5;
    case 'FLOAT':
      return r.pick([0, f.steps, r.int(0, f.steps)]);
    case 'STRING': {
      let s = '';
      const len = r.int(0, 8);
      for (let i = 0; i < len; i++) s += r.pick(ALPHABET);
      while (new TextEncoder().encode(s).length > f.maxBytes) s = [...s].slice(0, -1).join('');
      return s;
    }
    case 'VARUINT':
      return r.pick([0, 127, 128, r.int(0, 2 ** 31), Number.MAX_SAFE_INTEGER, 2n ** 53n, 2n ** 64n - 1n, BigInt(r.int(0, 2 ** 30)) * 2n ** 33n + 5n]);
    case 'VARINT':
      return r.pick([0, -1, 63, -64, -r.int(0, 2 ** 31), -Number.MAX_SAFE_INTEGER, -(2n ** 63n), 2n ** 63n - 1n, -(2n ** 53n)]);
    default: {
      const [lo, hi] = { U8: [0, 255], U16: [0, 65535], U32: [0, 4294967295], I8: [-128, 127], I16: [-32768, 32767], I32: [-2147483648, 2147483647] }[f.kindName] ?? [0, 0];
      return r.pick([lo, hi, r.int(lo, hi)]);
    }
  }
}

/**
 * A random session of state messages for `schema`: a SNAPSHOT then `deltas` DELTAs (creates,
 * patches, removes, acks; a checksum on every other one), each encoded, with the state they
 * produce kept by a server-side replica.
 * @param {ReturnType<typeof rng>} r
 * @param {Schema} schema
 * @param {number} deltas
 */
export function randomStates(r, schema, deltas) {
  const server = new Replica(schema);
  let nextId = 1;
  /** @param {number} typeId */
  const record = (typeId) => ({ id: nextId++, typeId, codes: schema.types[typeId].fields.map((f) => randomCode(r, f)) });
  const entities = [];
  for (let i = r.int(0, 6); i > 0; i--) entities.push(record(r.int(0, schema.types.length - 1)));
  /** @type {Array<[Int, Int]>} */
  const acks = [[1, r.int(0, 10)], [2, 2n ** 60n]];
  let tick = r.int(0, 1000);
  /** @type {import('../src/index.js').Snapshot} */
  const snap = { kind: 'SNAPSHOT', tick, checksum: 0, acks, entities };
  server.applySnapshot(snap, false);
  snap.checksum = server.checksum();
  const messages = [{ msg: /** @type {import('../src/index.js').ServerMessage} */ (snap), bytes: encodeServerMessage(snap, schema) }];
  for (let d = 0; d < deltas; d++) {
    const ids = [...server.entities.keys()];
    const created = [];
    for (let i = r.int(0, 2); i > 0; i--) created.push(record(r.int(0, schema.types.length - 1)));
    const removed = ids.filter(() => r.next() < 0.15);
    const changed = [];
    for (const id of ids) {
      if (removed.includes(id) || r.next() < 0.4) continue;
      const t = /** @type {import('../src/index.js').Entity} */ (server.get(id)).type;
      const bits = t.fields.map((_f, i) => i).filter(() => r.next() < 0.3);
      const mask = bits.reduce((m, i) => m + 2 ** i, 0);
      changed.push({ id, mask: mask <= Number.MAX_SAFE_INTEGER ? mask : BigInt(mask), codes: bits.map((i) => randomCode(r, t.fields[i])) });
    }
    /** @type {Array<[Int, Int]>} */
    const dacks = r.next() < 0.5 ? [[1, r.int(0, 3)]] : [];
    tick += 1;
    /** @type {import('../src/index.js').Delta} */
    const delta = { kind: 'DELTA', tick, base: null, checksum: null, acks: dacks, created, changed, removed };
    const bytesWithoutSum = encodeServerMessage(delta, schema, server.typeOf);
    server.applyDelta(delta, false);
    if (d % 2 === 1) delta.checksum = server.checksum();
    // patches are encoded with the types as they were before the delta
    const bytes = delta.checksum === null ? bytesWithoutSum : withChecksum(bytesWithoutSum, delta.checksum);
    messages.push({ msg: delta, bytes });
  }
  return { messages, server };
}

/** A DELTA's bytes with the checksum flag set and the checksum inserted after the tick. @param {Uint8Array} bytes @param {number} checksum */
function withChecksum(bytes, checksum) {
  let pos = 2;
  while (bytes[pos] & 0x80) pos++;
  pos++;
  const out = new Uint8Array(bytes.length + 4);
  out.set(bytes.subarray(0, pos));
  out[1] = 1;
  new DataView(out.buffer).setUint32(pos, checksum, true);
  out.set(bytes.subarray(pos), pos + 4);
  return out;
}
