// Golden vectors: every case of tests/vectors/protocol_v1.json decoded to its stated meaning
// and the meaning re-encoded to the same bytes, with this SDK's codec alone.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';

import {
  Field,
  InputSchema,
  Reader,
  RemoteProtocolError,
  Replica,
  Schema,
  Writer,
  decodeClientMessage,
  decodeServerMessage,
  encodeClientMessage,
  encodeServerMessage,
  fromHex,
  readCode,
  toHex,
  writeCode,
} from '../src/index.js';

/** @typedef {import('../src/index.js').Code} Code */
/** @typedef {import('../src/index.js').Int} Int */
/** @typedef {import('../src/index.js').EntityType} EntityType */
/** @typedef {import('../src/index.js').ServerMessage} ServerMessage */
/** @typedef {import('../src/index.js').ClientMessage} ClientMessage */

const VECTORS = new URL('../../../tests/vectors/protocol_v1.json', import.meta.url);
/** @type {Array<{name: string, description: string, hex: string, decoded: any}>} */
const CASES = JSON.parse(readFileSync(VECTORS, 'utf8'));
const BY_NAME = new Map(CASES.map((c) => [c.name, c]));
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

/** @param {string} name */
function joinedSchemas(name) {
  const d = BY_NAME.get(name)?.decoded;
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

/** @param {ClientMessage} msg @param {any} d */
function clientMeaning(msg, d) {
  const base = { type: 'client', kind: msg.kind };
  switch (msg.kind) {
    case 'JOIN':
      return { ...base, version: msg.version, room: msg.room, game: msg.game, name: msg.name, token: msg.token, private: msg.private };
    case 'LEAVE':
      return base;
    case 'INPUT': {
      const { input } = joinedSchemas(d.input_schema_from);
      /** @type {Record<string, unknown>} */
      const fields = {};
      input.fields.forEach((f, i) => (fields[f.name] = codeMeaning(f, msg.codes[i])));
      return { ...base, input_schema_from: d.input_schema_from, seq: asJsonInt(msg.seq), fields };
    }
    case 'EVENT':
      return { ...base, name: msg.name, data_hex: hex(msg.data) };
  }
}

/** @param {ServerMessage} msg @param {any} d @param {(id: Int) => EntityType} typeOf */
function serverMeaning(msg, d, typeOf) {
  const base = { type: 'server', kind: msg.kind };
  switch (msg.kind) {
    case 'JOINED':
      return {
        ...base,
        version: msg.version,
        player: msg.player,
        room: msg.room,
        game: msg.game,
        tick_rate: msg.tickRate,
        schema: schemaMeaning(msg.schema),
        input_schema: msg.inputSchema.fields.map(fieldMeaning),
      };
    case 'SNAPSHOT': {
      const { schema } = joinedSchemas(d.schema_from);
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
      const { schema } = joinedSchemas(d.schema_from);
      return {
        ...base,
        schema_from: d.schema_from,
        follows: d.follows,
        tick: msg.tick,
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
  }
}

/** The meaning of a message as the message value the encoder takes. @param {any} d @returns {ServerMessage} */
function serverMessageOf(d) {
  /** @param {any[]} acks @returns {Array<[Int, Int]>} */
  const acks = (acks) => acks.map(([p, s]) => [big(p), big(s)]);
  const state = d.schema_from ? joinedSchemas(d.schema_from).schema : null;
  /** @param {any} m */
  const record = (m) => {
    const t = /** @type {Schema} */ (state).types[m.type_id];
    assert.equal(t.name, m.type);
    assert.deepEqual(Object.keys(m.fields), t.names, 'every field, in schema order');
    return { id: big(m.id), typeId: m.type_id, codes: t.fields.map((f) => codeOf(f, m.fields[f.name])) };
  };
  switch (d.kind) {
    case 'JOINED':
      return { kind: 'JOINED', version: d.version, player: big(d.player), room: d.room, game: d.game, tickRate: d.tick_rate, schema: schemaOf(d.schema), inputSchema: inputSchemaOf(d.input_schema) };
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
      return { kind: 'DELTA', tick: big(d.tick), checksum: d.checksum, acks: acks(d.acks), created: d.created.map(record), changed: d.changed.map(patch), removed: d.removed.map(big) };
    }
    case 'ROOM_EVENT':
      return { kind: 'ROOM_EVENT', sender: big(d.sender), name: d.name, data: fromHex(d.data_hex) };
    case 'ERROR':
      return { kind: 'ERROR', code: d.code, message: d.message };
    default:
      return { kind: 'CLOSE', code: d.code, reason: d.reason };
  }
}

/** @param {any} d @returns {ClientMessage} */
function clientMessageOf(d) {
  switch (d.kind) {
    case 'JOIN':
      return { kind: 'JOIN', version: d.version, room: d.room, game: d.game, name: d.name, token: d.token, private: d.private };
    case 'LEAVE':
      return { kind: 'LEAVE' };
    case 'INPUT': {
      const { input } = joinedSchemas(d.input_schema_from);
      assert.deepEqual(Object.keys(d.fields), input.names);
      return { kind: 'INPUT', seq: big(d.seq), codes: input.fields.map((f) => codeOf(f, d.fields[f.name])) };
    }
    default:
      return { kind: 'EVENT', name: d.name, data: fromHex(d.data_hex) };
  }
}

// ---------------------------------------------------------------- the tests

/** @param {...string} types */
const casesOf = (...types) => CASES.filter((c) => types.includes(c.decoded.type));

test('the vector file covers every message kind and every field kind', () => {
  assert.ok(CASES.length >= 40);
  assert.equal(BY_NAME.size, CASES.length);
  const seen = new Set(CASES.map((c) => `${c.decoded.type}:${c.decoded.kind ?? ''}`));
  for (const k of ['JOIN', 'LEAVE', 'INPUT', 'EVENT']) assert.ok(seen.has(`client:${k}`), k);
  for (const k of ['JOINED', 'SNAPSHOT', 'DELTA', 'ROOM_EVENT', 'ERROR', 'CLOSE']) assert.ok(seen.has(`server:${k}`), k);
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
    const input = d.input_schema_from ? joinedSchemas(d.input_schema_from).input : undefined;
    const msg = decodeClientMessage(fromHex(c.hex), input, 1);
    assert.deepEqual(clientMeaning(msg, d), d);
    assert.equal(hex(encodeClientMessage(clientMessageOf(d), input)), c.hex);
  });
}

// The server cases in file order, each state message applied to the replica it `follows`.
test('server vectors: decoded to their meaning, re-encoded to their bytes, applied in order', () => {
  /** @type {Replica | null} */
  let replica = null;
  let previous = '';
  let verified = 0;
  for (const c of casesOf('server')) {
    const d = c.decoded;
    const bytes = fromHex(c.hex);
    const schema = d.schema_from ? joinedSchemas(d.schema_from).schema : undefined;
    if (d.kind === 'SNAPSHOT') replica = new Replica(/** @type {Schema} */ (schema));
    if (d.kind === 'DELTA') assert.equal(d.follows, previous, `${c.name} follows the previous state case`);
    /** @type {(id: Int) => EntityType} */
    const typeOf = replica ? replica.typeOf : () => assert.fail('no replica');
    const msg = decodeServerMessage(bytes, schema, typeOf, 1);
    assert.deepEqual(serverMeaning(msg, d, typeOf), d, c.name);
    assert.equal(hex(encodeServerMessage(serverMessageOf(d), schema, typeOf)), c.hex, c.name);
    if (msg.kind === 'SNAPSHOT' || msg.kind === 'DELTA') {
      const r = /** @type {Replica} */ (replica);
      if (msg.kind === 'SNAPSHOT') r.applySnapshot(msg);
      else r.applyDelta(msg);
      if (msg.checksum !== null) verified++;
      assert.equal(r.checks, verified);
      previous = c.name;
    }
  }
  assert.equal(verified, 3, 'the snapshot and two deltas carry checksums, all verified');
  const r = /** @type {Replica} */ (replica);
  assert.equal(r.tick, 14);
  assert.deepEqual([...r.acks], [[2, 1]], 'player 1 left; player 2 applied seq 1');
  assert.deepEqual(r.ofType('player').map((e) => e.values()), [{ x: 500, y: 510, score: 0, hp: 90, owner: 2, name: 'bob' }]);
});

for (const c of casesOf('client_reject', 'server_reject')) {
  test(`vector ${c.name} is refused with ${c.decoded.close_code}`, () => {
    const bytes = fromHex(c.hex);
    const { schema, input } = joinedSchemas('server_joined_arena');
    const decode = c.decoded.type === 'client_reject' ? () => decodeClientMessage(bytes, input, 1) : () => decodeServerMessage(bytes, schema, () => assert.fail("no patch expected"), 1);
    assert.throws(decode, (/** @type {unknown} */ e) => e instanceof RemoteProtocolError && e.closeCode === c.decoded.close_code);
  });
}
