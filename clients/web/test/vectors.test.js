// Golden vectors: every case of tests/vectors/protocol_v1.json and protocol_v2.json decoded
// to its stated meaning and the meaning re-encoded to the same bytes, with this SDK's codec
// alone, each file with its own negotiated version (v1 refuses what v2 added). v2's view chain
// (a JOINED with the VIEW flag and the states of a client's view) is applied on a view replica,
// its checksums recomputed here as the sum of the records' CRC-32s.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';

import {
  Field,
  InputSchema,
  Reader,
  RemoteProtocolError,
  Replica,
  Schema,
  Writer,
  crc32,
  decodeClientMessage,
  decodeServerMessage,
  encodeClientMessage,
  encodeServerMessage,
  fromHex,
  readCode,
  toHex,
  writeCode,
  writeRecord,
} from '../src/index.js';

/** @typedef {import('../src/index.js').Code} Code */
/** @typedef {import('../src/index.js').Int} Int */
/** @typedef {import('../src/index.js').EntityType} EntityType */
/** @typedef {import('../src/index.js').ServerMessage} ServerMessage */
/** @typedef {import('../src/index.js').ClientMessage} ClientMessage */

/** @typedef {{name: string, description: string, hex: string, decoded: any}} Case */
/** @typedef {Map<string, Case>} Cases */
/** @param {string} file @returns {Case[]} */
const load = (file) => JSON.parse(readFileSync(new URL(`../../../tests/vectors/${file}`, import.meta.url), 'utf8'));
const BIG = 2 ** 53;

// ---------------------------------------------------------------- JSON meaning -> values

/**
 * Integers of 2^53 or more are decimal strings in the JSON.
 * @param {number | string} v
 * @returns {Int}
 */
function big(v) {
  if (typeof v === 'string') {
    const n = BigInt(v);
    assert.ok(n >= BigInt(BIG) || n <= -BigInt(BIG), `${v} should be a JSON number`);
    return n;
  }
  assert.ok(Number.isInteger(v) && Math.abs(v) < BIG);
  return v;
}

/** @param {Int} v */
const asJsonInt = (v) => (typeof v === 'bigint' ? String(v) : v);

/** @param {any} m @param {string} [name] */
function fieldOf(m, name = 'f') {
  if (m.kind === 'FLOAT') return new Field(m.name ?? name, 'FLOAT', { lo: m.lo, hi: m.hi, precision: m.precision });
  if (m.kind === 'STRING') return new Field(m.name ?? name, 'STRING', { maxBytes: m.max_bytes });
  assert.deepEqual(Object.keys(m).filter((k) => k !== 'name'), ['kind']);
  return new Field(m.name ?? name, m.kind);
}

/** @param {any[]} m */
const schemaOf = (m) => new Schema(m.map((t) => ({ name: t.name, fields: t.fields.map((/** @type {any} */ f) => fieldOf(f)) })));
/** @param {any[]} m */
const inputSchemaOf = (m) => new InputSchema(m.map((f) => fieldOf(f)));

/** @param {Field} f @param {any} m @returns {Code} */
function codeOf(f, m) {
  if (f.kindName === 'VARUINT' || f.kindName === 'VARINT') return big(m);
  if (f.kindName === 'BOOL') assert.equal(typeof m, 'boolean');
  else if (f.kindName === 'STRING') assert.equal(typeof m, 'string');
  else assert.ok(Number.isInteger(m));
  return m;
}

/** Whether a JOINED case has the VIEW flag (the key is there only when set). @param {Cases} byName @param {string} name */
function isView(byName, name) {
  const d = byName.get(name)?.decoded;
  assert.equal(d.kind, 'JOINED');
  assert.ok(!('view' in d) || d.view === true, 'the view key is present only when set');
  return d.view === true;
}

/**
 * The view checksum of a replica's entities, computed here: each full record encoded alone,
 * its CRC-32 taken, the CRCs added mod 2^32.
 * @param {Replica} r
 */
function ownViewChecksum(r) {
  let sum = 0n;
  for (const e of r.entities.values()) {
    const w = new Writer();
    writeRecord(w, r.schema, { id: e.id, typeId: e.type.typeId, codes: e.codes });
    sum += BigInt(crc32(w.finish()));
  }
  return Number(sum % 2n ** 32n);
}

/** @param {Cases} byName @param {string} name */
function joinedSchemas(byName, name) {
  const d = byName.get(name)?.decoded;
  assert.equal(d.kind, 'JOINED');
  return { schema: schemaOf(d.schema), input: inputSchemaOf(d.input_schema) };
}

// ---------------------------------------------------------------- values -> JSON meaning

/** @param {Field} f */
function fieldMeaning(f) {
  /** @type {Record<string, unknown>} */
  const m = { name: f.name, kind: f.kindName };
  if (f.kindName === 'FLOAT') Object.assign(m, { lo: f.lo, hi: f.hi, precision: f.precision });
  if (f.kindName === 'STRING') m.max_bytes = f.maxBytes;
  return m;
}

/** @param {Schema} s */
const schemaMeaning = (s) => s.types.map((t) => ({ name: t.name, fields: t.fields.map(fieldMeaning) }));

/** @param {Field} _f @param {Code} c */
const codeMeaning = (_f, c) => (typeof c === 'bigint' ? String(c) : c);

/** @param {Schema} schema @param {import('../src/index.js').EntityRecord} r */
function recordMeaning(schema, r) {
  const t = schema.types[r.typeId];
  /** @type {Record<string, unknown>} */
  const fields = {};
  t.fields.forEach((f, i) => (fields[f.name] = codeMeaning(f, r.codes[i])));
  return { id: r.id, type_id: r.typeId, type: t.name, fields };
}

/** @param {EntityType} t @param {import('../src/index.js').EntityPatch} p */
function patchMeaning(t, p) {
  /** @type {Record<string, unknown>} */
  const fields = {};
  let j = 0;
  t.fields.forEach((f, i) => {
    if ((BigInt(p.mask) >> BigInt(i)) & 1n) fields[f.name] = codeMeaning(f, p.codes[j++]);
  });
  return { id: p.id, type: t.name, mask: p.mask, fields };
}

/** @param {import('../src/index.js').Acks} acks */
const acksMeaning = (acks) => acks.map(([p, s]) => [asJsonInt(p), asJsonInt(s)]);

/** @param {Uint8Array} b */
const hex = (b) => toHex(b);

/** @param {ClientMessage} msg @param {any} d @param {Cases} byName */
function clientMeaning(msg, d, byName) {
  const base = { type: 'client', kind: msg.kind };
  switch (msg.kind) {
    case 'JOIN':
      return { ...base, version: msg.version, room: msg.room, game: msg.game, name: msg.name, token: msg.token, private: msg.private };
    case 'LEAVE':
      return base;
    case 'INPUT': {
      const { input } = joinedSchemas(byName, d.input_schema_from);
      /** @type {Record<string, unknown>} */
      const fields = {};
      input.fields.forEach((f, i) => (fields[f.name] = codeMeaning(f, msg.codes[i])));
      return { ...base, input_schema_from: d.input_schema_from, seq: asJsonInt(msg.seq), fields };
    }
    case 'EVENT':
      return { ...base, name: msg.name, data_hex: hex(msg.data) };
    case 'RESUME':
      return { ...base, version: msg.version, room: msg.room, token: msg.token, have_tick: asJsonInt(msg.haveTick) };
    case 'RESYNC':
      return base;
  }
}

/** @param {ServerMessage} msg @param {any} d @param {(id: Int) => EntityType} typeOf @param {Cases} byName */
function serverMeaning(msg, d, typeOf, byName) {
  const base = { type: 'server', kind: msg.kind };
  switch (msg.kind) {
    case 'JOINED': {
      const joined = {
        ...base,
        version: msg.version,
        player: msg.player,
        room: msg.room,
        game: msg.game,
        tick_rate: msg.tickRate,
        schema: schemaMeaning(msg.schema),
        input_schema: msg.inputSchema.fields.map(fieldMeaning),
      };
      if (msg.version < 2) {
        assert.deepEqual([msg.resumed, msg.resumeToken, msg.seatHoldMs, msg.inputSeq], [false, '', 0, 0], 'v1: the v2 fields at their defaults');
        return joined;
      }
      const v2 = { ...joined, resumed: msg.resumed, resume_token: msg.resumeToken, seat_hold_ms: msg.seatHoldMs, input_seq: asJsonInt(/** @type {Int} */ (msg.inputSeq)) };
      return msg.view ? { ...v2, view: true } : v2;
    }
    case 'SNAPSHOT': {
      const { schema } = joinedSchemas(byName, d.schema_from);
      return {
        ...base,
        schema_from: d.schema_from,
        tick: msg.tick,
        checksum: msg.checksum,
        acks: acksMeaning(msg.acks),
        entities: msg.entities.map((r) => recordMeaning(schema, r)),
      };
    }
    case 'DELTA': {
      const { schema } = joinedSchemas(byName, d.schema_from);
      return {
        ...base,
        schema_from: d.schema_from,
        follows: d.follows,
        tick: msg.tick,
        ...(msg.base === null || msg.base === undefined ? {} : { base: msg.base }),
        checksum: msg.checksum,
        acks: acksMeaning(msg.acks),
        created: msg.created.map((r) => recordMeaning(schema, r)),
        changed: msg.changed.map((p) => patchMeaning(typeOf(p.id), p)),
        removed: msg.removed,
      };
    }
    case 'ROOM_EVENT':
      return { ...base, sender: msg.sender, name: msg.name, data_hex: hex(msg.data) };
    case 'ERROR':
      return { ...base, code: msg.code, message: msg.message };
    case 'CLOSE':
      return { ...base, code: msg.code, reason: msg.reason };
    case 'REDIRECT':
      return { ...base, url: msg.url, room: msg.room };
  }
}

/** The meaning of a message as the message value the encoder takes. @param {any} d @param {Cases} byName @returns {ServerMessage} */
function serverMessageOf(d, byName) {
  /** @param {any[]} acks @returns {Array<[Int, Int]>} */
  const acks = (acks) => acks.map(([p, s]) => [big(p), big(s)]);
  const state = d.schema_from ? joinedSchemas(byName, d.schema_from).schema : null;
  /** @param {any} m */
  const record = (m) => {
    const t = /** @type {Schema} */ (state).types[m.type_id];
    assert.equal(t.name, m.type);
    assert.deepEqual(Object.keys(m.fields), t.names, 'every field, in schema order');
    return { id: big(m.id), typeId: m.type_id, codes: t.fields.map((f) => codeOf(f, m.fields[f.name])) };
  };
  switch (d.kind) {
    case 'JOINED':
      return {
        kind: 'JOINED', version: d.version, player: big(d.player), room: d.room, game: d.game, tickRate: d.tick_rate, schema: schemaOf(d.schema), inputSchema: inputSchemaOf(d.input_schema),
        ...(d.version >= 2 ? { resumed: d.resumed, resumeToken: d.resume_token, seatHoldMs: d.seat_hold_ms, inputSeq: big(d.input_seq), view: d.view === true } : {}),
      };
    case 'SNAPSHOT':
      return { kind: 'SNAPSHOT', tick: big(d.tick), checksum: d.checksum, acks: acks(d.acks), entities: d.entities.map(record) };
    case 'DELTA': {
      const byName = /** @type {Schema} */ (state).byName;
      /** @param {any} m */
      const patch = (m) => {
        const t = /** @type {EntityType} */ (byName.get(m.type));
        const bits = Object.keys(m.fields).map((n) => /** @type {number} */ (t.index.get(n)));
        assert.deepEqual(bits, [...bits].sort((a, b) => a - b), 'patched fields in schema order');
        assert.equal(m.mask, bits.reduce((acc, i) => acc + 2 ** i, 0));
        return { id: big(m.id), mask: m.mask, codes: bits.map((i) => codeOf(t.fields[i], m.fields[t.names[i]])) };
      };
      return { kind: 'DELTA', tick: big(d.tick), base: d.base === undefined ? null : big(d.base), checksum: d.checksum, acks: acks(d.acks), created: d.created.map(record), changed: d.changed.map(patch), removed: d.removed.map(big) };
    }
    case 'ROOM_EVENT':
      return { kind: 'ROOM_EVENT', sender: big(d.sender), name: d.name, data: fromHex(d.data_hex) };
    case 'ERROR':
      return { kind: 'ERROR', code: d.code, message: d.message };
    case 'REDIRECT':
      return { kind: 'REDIRECT', url: d.url, room: d.room };
    default:
      return { kind: 'CLOSE', code: d.code, reason: d.reason };
  }
}

/** @param {any} d @param {Cases} byName @returns {ClientMessage} */
function clientMessageOf(d, byName) {
  switch (d.kind) {
    case 'JOIN':
      return { kind: 'JOIN', version: d.version, room: d.room, game: d.game, name: d.name, token: d.token, private: d.private };
    case 'LEAVE':
      return { kind: 'LEAVE' };
    case 'INPUT': {
      const { input } = joinedSchemas(byName, d.input_schema_from);
      assert.deepEqual(Object.keys(d.fields), input.names);
      return { kind: 'INPUT', seq: big(d.seq), codes: input.fields.map((f) => codeOf(f, d.fields[f.name])) };
    }
    case 'RESUME':
      return { kind: 'RESUME', version: d.version, room: d.room, token: d.token, haveTick: big(d.have_tick) };
    case 'RESYNC':
      return { kind: 'RESYNC' };
    default:
      return { kind: 'EVENT', name: d.name, data: fromHex(d.data_hex) };
  }
}

// ---------------------------------------------------------------- the tests

/**
 * Every case of one vector file, with the connection's version `version`.
 * @param {string} file
 * @param {1 | 2} version
 */
function vectorSuite(file, version) {
  const CASES = load(file);
  /** @type {Cases} */
  const byName = new Map(CASES.map((c) => [c.name, c]));
  /** @param {...string} types */
  const casesOf = (...types) => CASES.filter((c) => types.includes(c.decoded.type));

  test('the vector file covers every message kind and every field kind', () => {
    assert.ok(CASES.length >= 40);
    assert.equal(byName.size, CASES.length);
    const seen = new Set(CASES.map((c) => `${c.decoded.type}:${c.decoded.kind ?? ''}`));
    const client = ['JOIN', 'LEAVE', 'INPUT', 'EVENT', ...(version >= 2 ? ['RESUME', 'RESYNC'] : [])];
    for (const k of client) assert.ok(seen.has(`client:${k}`), k);
    for (const k of ['JOINED', 'SNAPSHOT', 'DELTA', 'ROOM_EVENT', 'ERROR', 'CLOSE']) assert.ok(seen.has(`server:${k}`), k);
    for (const c of CASES) if (['client', 'server'].includes(c.decoded.type) && 'version' in c.decoded) assert.equal(c.decoded.version, version, c.name);
    if (version >= 2) {
      assert.ok(casesOf('server').some((c) => c.decoded.kind === 'DELTA' && 'base' in c.decoded), 'a catch-up DELTA');
      assert.ok(casesOf('server').some((c) => c.decoded.kind === 'JOINED' && c.decoded.resumed), 'a RESUMED JOINED');
      assert.ok(casesOf('server').some((c) => c.decoded.kind === 'JOINED' && c.decoded.view === true), 'a JOINED with the VIEW flag');
      assert.ok(casesOf('server').some((c) => c.decoded.kind === 'REDIRECT'), 'a REDIRECT');
    } else {
      assert.ok(!casesOf('server').some((c) => 'view' in c.decoded), 'no views in v1');
    }
    const kinds = new Set(casesOf('field').map((c) => c.decoded.field.kind));
    assert.equal(kinds.size, 11);
  });

  for (const c of casesOf('varint', 'svarint')) {
    test(`vector ${c.name}`, () => {
      const value = big(c.decoded.value);
      const w = new Writer();
      if (c.decoded.type === 'svarint') w.svarint(value);
      else w.varint(value);
      assert.equal(hex(w.finish()), c.hex);
      const r = new Reader(fromHex(c.hex));
      assert.equal(c.decoded.type === 'svarint' ? r.svarint() : r.varint(), value);
      r.expectEnd();
    });
  }

  for (const c of casesOf('field')) {
    test(`vector ${c.name}`, () => {
      const d = c.decoded;
      const f = fieldOf(d.field);
      const code = codeOf(f, d.code);
      if ('value' in d) {
        assert.equal(f.kindName, 'FLOAT');
        assert.equal(f.toCode(d.value), code, 'the quantization');
      } else {
        assert.equal(f.toCode(code), code);
      }
      const w = new Writer();
      writeCode(w, f, code);
      assert.equal(hex(w.finish()), c.hex);
      const r = new Reader(fromHex(c.hex));
      assert.equal(readCode(r, f), code);
      r.expectEnd();
    });
  }

  for (const c of casesOf('schema', 'input_schema')) {
    test(`vector ${c.name}`, () => {
      const r = new Reader(fromHex(c.hex));
      if (c.decoded.type === 'schema') {
        assert.equal(hex(schemaOf(c.decoded.schema).toBytes()), c.hex);
        assert.deepEqual(schemaMeaning(Schema.read(r)), c.decoded.schema);
      } else {
        assert.equal(hex(inputSchemaOf(c.decoded.fields).toBytes()), c.hex);
        assert.deepEqual(InputSchema.read(r).fields.map(fieldMeaning), c.decoded.fields);
      }
      r.expectEnd();
    });
  }

  for (const c of casesOf('client')) {
    test(`vector ${c.name}`, () => {
      const d = c.decoded;
      const input = d.input_schema_from ? joinedSchemas(byName, d.input_schema_from).input : undefined;
      const msg = decodeClientMessage(fromHex(c.hex), input, version);
      assert.deepEqual(clientMeaning(msg, d, byName), d);
      assert.equal(hex(encodeClientMessage(clientMessageOf(d, byName), input)), c.hex);
    });
  }

  // The server cases in file order, each state message applied to the state it `follows`
  // (a catch-up DELTA follows an earlier state than the previous case).
  test('server vectors: decoded to their meaning, re-encoded to their bytes, applied to what they follow', () => {
    /** @type {Map<string, Array<import('../src/index.js').Snapshot | import('../src/index.js').Delta>>} the messages that make each state, from its snapshot */
    const chains = new Map();
    /** @type {Map<string, Replica>} */
    const states = new Map();
    let previous = '';
    let catchUps = 0;
    let viewStates = 0;
    /** @param {Schema} schema @param {Array<import('../src/index.js').Snapshot | import('../src/index.js').Delta>} chain @param {boolean} view */
    const build = (schema, chain, view) => {
      const r = new Replica(schema, { view });
      for (const m of chain) {
        if (m.kind === 'SNAPSHOT') r.applySnapshot(m);
        else r.applyDelta(m);
      }
      return r;
    };
    for (const c of casesOf('server')) {
      const d = c.decoded;
      const bytes = fromHex(c.hex);
      const schema = d.schema_from ? joinedSchemas(byName, d.schema_from).schema : undefined;
      if (d.kind === 'DELTA') {
        if ('base' in d) assert.ok(states.has(d.follows), `${c.name} follows an earlier state case`);
        else assert.equal(d.follows, previous, `${c.name} follows the previous state case`);
      }
      const before = d.kind === 'DELTA' ? /** @type {Replica} */ (states.get(d.follows)) : null;
      /** @type {(id: Int) => EntityType} */
      const typeOf = before ? before.typeOf : () => assert.fail('no replica');
      const msg = decodeServerMessage(bytes, schema, typeOf, version);
      assert.deepEqual(serverMeaning(msg, d, typeOf, byName), d, c.name);
      assert.equal(hex(encodeServerMessage(serverMessageOf(d, byName), schema, typeOf)), c.hex, c.name);
      if (msg.kind === 'JOINED') assert.equal(msg.view, d.view === true, `${c.name}: the VIEW flag`);
      if (msg.kind === 'SNAPSHOT' || msg.kind === 'DELTA') {
        const chain = [...(msg.kind === 'DELTA' ? /** @type {any[]} */ (chains.get(d.follows)) : []), msg];
        const view = isView(byName, d.schema_from);
        const r = build(/** @type {Schema} */ (schema), chain, view);
        assert.equal(r.checks, chain.filter((m) => m.checksum !== null).length, `${c.name}: every checksum verified`);
        if (view) {
          viewStates++;
          // the view checksum, recomputed here; the room checksum of the same state differs
          assert.equal(r.checksum(), ownViewChecksum(r), c.name);
          if (msg.checksum !== null) assert.equal(msg.checksum, ownViewChecksum(r), `${c.name}: the checksum of the view after it`);
          assert.ok(msg.acks.length <= 1 && msg.acks.every(([p]) => p == 1), `${c.name}: only the own ack`);
          assert.throws(() => build(/** @type {Schema} */ (schema), chain, false), /checksum mismatch/, `${c.name} on a room replica`);
          assert.ok(msg.kind === 'SNAPSHOT' || msg.base === null, 'no catch-up deltas in a view');
        }
        chains.set(c.name, chain);
        states.set(c.name, r);
        if (msg.kind === 'DELTA' && msg.base !== null) {
          catchUps++;
          assert.equal(r.tick, msg.tick);
          // the catch-up lands on the same state as the per-tick deltas to that tick
          const same = [...states.entries()].find(([name, s]) => {
            const other = /** @type {Case} */ (byName.get(name)).decoded;
            return name !== c.name && !('base' in other) && other.schema_from === d.schema_from && s.tick === r.tick;
          });
          if (same) assert.equal(r.checksum(), same[1].checksum(), `${c.name} reaches the state of ${same[0]}`);
        }
        if (!('base' in d)) previous = c.name;
      }
    }
    assert.equal(catchUps, version >= 2 ? casesOf('server').filter((c) => 'base' in c.decoded).length : 0);
    if (version >= 2) {
      // the view chain: a snapshot not in id order, an entity entering, one leaving while it
      // still exists, and the same one coming back
      const chainCases = casesOf('server').filter((c) => c.decoded.schema_from && isView(byName, c.decoded.schema_from));
      assert.equal(viewStates, chainCases.length);
      assert.ok(chainCases.length >= 4);
      const snap = chainCases[0].decoded;
      assert.equal(snap.kind, 'SNAPSHOT');
      const ids = snap.entities.map((/** @type {any} */ m) => m.id);
      assert.notDeepEqual(ids, [...ids].sort((a, b) => a - b), 'a view snapshot in another order than ascending id');
      const created = chainCases.flatMap((c) => (c.decoded.created ?? []).map((/** @type {any} */ m) => m.id));
      const removed = chainCases.flatMap((c) => c.decoded.removed ?? []);
      assert.ok(created.some((id) => removed.includes(id)), 'an entity leaves and comes back');
      const last = /** @type {Replica} */ (states.get(chainCases[chainCases.length - 1].name));
      assert.equal(last.view, true);
      assert.deepEqual([...last.acks], [[1, 8]]);
    } else {
      assert.equal(viewStates, 0);
    }
    const r = /** @type {Replica} */ (states.get(previous));
    assert.equal(r.tick, 14);
    assert.deepEqual([...r.acks], [[2, 1]], 'player 1 left; player 2 applied seq 1');
    assert.deepEqual(r.ofType('player').map((e) => e.values()), [{ x: 500, y: 510, score: 0, hp: 90, owner: 2, name: 'bob' }]);
  });

  for (const c of casesOf('client_reject', 'server_reject')) {
    test(`vector ${c.name} is refused with ${c.decoded.close_code}`, () => {
      const bytes = fromHex(c.hex);
      const { schema, input } = joinedSchemas(byName, 'server_joined_arena');
      const decode = c.decoded.type === 'client_reject' ? () => decodeClientMessage(bytes, input, version) : () => decodeServerMessage(bytes, schema, () => assert.fail('no patch expected'), version);
      assert.throws(decode, (/** @type {unknown} */ e) => e instanceof RemoteProtocolError && e.closeCode === c.decoded.close_code);
    });
  }
}

describe('protocol_v1.json (gamesync.v1)', () => vectorSuite('protocol_v1.json', 1));
describe('protocol_v2.json (gamesync.v2)', () => vectorSuite('protocol_v2.json', 2));

// What v2 added is refused on a v1 connection, and a v2 decoder reads v1's JOINED as v1.
test('a v1 connection refuses v2 messages; v2 bytes never parse as v1', () => {
  const v2 = new Map(load('protocol_v2.json').map((c) => [c.name, c]));
  const { schema, input } = joinedSchemas(v2, 'server_joined_arena');
  for (const name of ['client_resume', 'client_resync']) {
    const bytes = fromHex(/** @type {Case} */ (v2.get(name)).hex);
    assert.throws(() => decodeClientMessage(bytes, input, 1), (/** @type {unknown} */ e) => e instanceof RemoteProtocolError && e.closeCode === 1002, name);
  }
  for (const name of ['server_joined_arena', 'server_joined_resumed', 'server_joined_view']) {
    const bytes = fromHex(/** @type {Case} */ (v2.get(name)).hex);
    assert.throws(() => decodeServerMessage(bytes, undefined, undefined, 1), (/** @type {unknown} */ e) => e instanceof RemoteProtocolError && e.closeCode === 1002, name);
  }
  const catchUp = fromHex(/** @type {Case} */ (v2.get('server_delta_catch_up')).hex);
  assert.throws(() => decodeServerMessage(catchUp, schema, () => assert.fail('no patch'), 1), RemoteProtocolError, 'the BASE flag is unknown in v1');
  const v1Join = fromHex(/** @type {Case} */ (new Map(load('protocol_v1.json').map((c) => [c.name, c])).get('client_join')).hex);
  assert.throws(() => decodeClientMessage(v1Join, input, 2), (/** @type {unknown} */ e) => e instanceof RemoteProtocolError && e.closeCode === 1002, 'a v1 JOIN on a v2 connection');
  assert.equal(decodeClientMessage(v1Join, input).kind, 'JOIN', 'without a negotiated version either is read');
});
