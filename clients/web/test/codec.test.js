// The codec beyond the vectors: seeded random roundtrips of every field kind, schema and state
// message; hostile bytes (every truncation, random corruption) refused with protocol errors
// only; strict UTF-8; quantization edge cases; CRC-32; close code descriptions.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  CloseCode,
  DesyncError,
  Field,
  GameProtocolError,
  LocalProtocolError,
  Reader,
  RemoteProtocolError,
  Replica,
  Schema,
  Writer,
  crc32,
  decodeServerMessage,
  describeClose,
  encodeEvent,
  encodeJoin,
  encodeServerMessage,
  fromHex,
  readCode,
  roundHalfEven,
  toHex,
  utf8,
  writeCode,
} from '../src/index.js';
import { ARENA_INPUT, randomCode, randomSchema, randomStates, rng } from './helpers.js';

test('CRC-32 is zlib\'s: check value, empty input, chaining', () => {
  const b = new TextEncoder().encode('123456789');
  assert.equal(crc32(b), 0xcbf43926);
  assert.equal(crc32(new Uint8Array(0)), 0);
  assert.equal(crc32(b, 4, 9, crc32(b, 0, 4)), 0xcbf43926);
});

test('varint and svarint roundtrip across the whole 64-bit range, numbers when safe', () => {
  const r = rng(11);
  /** @type {Array<number | bigint>} */
  const values = [0, 1, 127, 128, 2 ** 32, Number.MAX_SAFE_INTEGER, 2n ** 53n, 2n ** 63n, 2n ** 64n - 1n];
  for (let i = 0; i < 2000; i++) values.push(BigInt(r.int(0, 2 ** 31)) << BigInt(r.int(0, 33)));
  for (const v of values) {
    const w = new Writer(4);
    w.varint(v);
    const back = new Reader(w.finish()).varint();
    assert.equal(BigInt(back), BigInt(v));
    assert.equal(typeof back, BigInt(v) <= BigInt(Number.MAX_SAFE_INTEGER) ? 'number' : 'bigint');
  }
  for (const v of [0, -1, 1, -64, 64, -(2n ** 63n), 2n ** 63n - 1n, -Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER, ...values.slice(9, 500).map((x) => -BigInt(x) / 2n)]) {
    const w = new Writer(4);
    w.svarint(v);
    assert.equal(BigInt(new Reader(w.finish()).svarint()), BigInt(v));
  }
  assert.throws(() => new Writer().varint(-1), LocalProtocolError);
  assert.throws(() => new Writer().varint(2n ** 64n), LocalProtocolError);
  assert.throws(() => new Writer().svarint(2n ** 63n), LocalProtocolError);
  assert.throws(() => new Reader(fromHex('ffffffffffffffffff02')).varint(), /64 bits/);
  assert.equal(new Reader(fromHex('8000')).varint(), 0, 'a non-minimal form is tolerated, as the server does');
});

test('random fields: toCode(code) is the code, and every code roundtrips its bytes', () => {
  const r = rng(12);
  for (let n = 0; n < 300; n++) {
    const schema = randomSchema(r);
    for (const t of schema.types) {
      for (const f of t.fields) {
        const code = randomCode(r, f);
        if (f.kindName !== 'FLOAT') assert.equal(f.toCode(code), code);
        const w = new Writer(2);
        writeCode(w, f, code);
        const rd = new Reader(w.finish());
        assert.equal(readCode(rd, f), code, `${f.kindName} ${String(code)}`);
        rd.expectEnd();
      }
    }
  }
});

test('random schemas and sessions: decode(encode(x)) = x, bytes stable, checksums verify', () => {
  const r = rng(13);
  for (let n = 0; n < 60; n++) {
    const schema = randomSchema(r);
    const back = Schema.read(new Reader(schema.toBytes()));
    assert.deepEqual(back.toBytes(), schema.toBytes());
    const { messages, server } = randomStates(r, back, 12);
    const replica = new Replica(back);
    for (const { msg, bytes } of messages) {
      const decoded = decodeServerMessage(bytes, back, replica.typeOf);
      assert.deepEqual(decoded, msg);
      assert.deepEqual(encodeServerMessage(decoded, back, replica.typeOf), bytes);
      if (decoded.kind === 'SNAPSHOT') replica.applySnapshot(decoded);
      else if (decoded.kind === 'DELTA') replica.applyDelta(decoded);
    }
    assert.equal(replica.checks, 1 + 6, 'the snapshot and every other delta');
    assert.equal(replica.checksum(), server.checksum());
    assert.deepEqual([...replica.entities.keys()], [...server.entities.keys()]);
  }
});

test('hostile bytes: every truncation and random corruption is a protocol error, nothing else', () => {
  const r = rng(14);
  let refused = 0;
  for (let n = 0; n < 40; n++) {
    const schema = randomSchema(r);
    const { messages } = randomStates(r, schema, 4);
    for (const { bytes } of messages) {
      const fresh = () => {
        const rep = new Replica(schema);
        rep.applySnapshot(/** @type {any} */ (decodeServerMessage(messages[0].bytes, schema)));
        return rep;
      };
      for (let cut = 0; cut < bytes.length; cut++) {
        const rep = fresh();
        assert.throws(() => decodeServerMessage(bytes.subarray(0, cut), schema, rep.typeOf), RemoteProtocolError);
        refused++;
      }
      for (let k = 0; k < 20; k++) {
        const bad = bytes.slice();
        bad[r.int(0, bad.length - 1)] ^= 1 << r.int(0, 7);
        const rep = fresh();
        try {
          rep.applyBytes(bad);
        } catch (e) {
          assert.ok(e instanceof GameProtocolError, `${String(e)}`);
          refused++;
        }
      }
    }
  }
  assert.ok(refused > 1000);
});

test('counts larger than the message, over-limit strings and bad bools are refused before reading', () => {
  const schema = new Schema([{ name: 't', fields: [new Field('b', 'BOOL'), new Field('s', 'STRING', { maxBytes: 4 })] }]);
  const decode = (/** @type {string} */ hex) => () => decodeServerMessage(fromHex(hex), schema);
  assert.throws(decode('1101000000007f'), /ack count exceeds/);
  assert.throws(decode('11010000000000010100010568656c6c6f'), /exceeds limit 4/);
  assert.throws(decode('11010000000000010100020000'), /bool field holds 2/);
  assert.throws(decode('1101000000000001010000'), /truncated/);
  assert.throws(decode('11010000000000010102'), /unknown entity type 2/);
});

test('UTF-8 is strict: no overlong forms, no surrogates; a BOM is kept', () => {
  const str = (/** @type {string} */ hex) => new Reader(fromHex(hex)).string(64);
  assert.throws(() => str('02c080'), /UTF-8/);
  assert.throws(() => str('03eda080'), /UTF-8/);
  assert.throws(() => str('01ff'), /UTF-8/);
  assert.equal(str('03efbbbf'), '\uFEFF');
  assert.equal(str('0668c3a96c6c6f'), 'héllo');
  assert.equal(toHex(utf8('😀')), 'f09f9880');
  assert.throws(() => utf8('\ud800'), LocalProtocolError);
  assert.throws(() => encodeEvent('chat', '\udc00'), LocalProtocolError);
  assert.throws(() => encodeJoin({ room: 'x'.repeat(65) }), /exceeds 64/);
});

test('quantization: half to even as Python round(), clamping, NaN refused', () => {
  assert.deepEqual([0.5, 1.5, 2.5, -0.5, -1.5, 3.4999999999999996, 1e300].map(roundHalfEven), [0, 2, 2, 0, -2, 3, 1e300]);
  const axis = new Field('dx', 'FLOAT', { lo: -1, hi: 1, precision: 0.01 });
  assert.equal(axis.toCode(0.5), 150);
  assert.equal(axis.toCode(Infinity), 200);
  assert.equal(axis.toCode(-Infinity), 0);
  assert.equal(axis.toCode(-7), 0);
  assert.equal(axis.toCode(0.005), 100, '(0.005 + 1) / 0.01 = 100.49999...');
  assert.throws(() => axis.toCode(NaN), /NaN/);
  assert.equal(axis.toValue(150), 0.5);
  assert.equal(new Field('q', 'FLOAT', { lo: 0, hi: 2.5, precision: 1 }).steps, 2, 'steps round half to even too');
  assert.throws(() => new Field('q', 'FLOAT', { lo: 0, hi: 2 ** 33, precision: 1 }), /2\^32/);
  assert.throws(() => new Field('q', 'FLOAT', { lo: 1, hi: 1, precision: 1 }), LocalProtocolError);
  const u8 = new Field('n', 'U8');
  assert.throws(() => u8.toCode(256), /outside/);
  assert.throws(() => u8.toCode(1.5), /integer/);
  assert.equal(new Field('n', 'VARUINT').toCode(2n ** 10n), 1024, 'BigInt in, a number when safe');
  assert.deepEqual(ARENA_INPUT.codesFor({ dx: 1 }), [200, 100], 'a missing input field is neutral: dy 0.0 is code 100');
  assert.equal(new Field('q', 'FLOAT', { lo: 2, hi: 4, precision: 0.5 }).neutralCode(), 0, 'a range without 0: its nearest bound');
  assert.equal(new Field('b', 'BOOL').neutralCode(), false);
  assert.throws(() => ARENA_INPUT.codesFor({ jump: 1 }), /unknown input field/);
});

test('schema descriptors with bad names, kinds or parameters are refused (1007)', () => {
  const bad = ['01027800', '0101780b', '010178090000000000000000000000000000f03f0000000000000000', '01017a0a00', '0102780078 00'.replace(' ', ''), '0102 5f61 00'.replaceAll(' ', '')];
  for (const hex of bad) {
    assert.throws(() => Schema.read(new Reader(fromHex(`01 01 74 ${hex}`.replaceAll(' ', '')))), RemoteProtocolError, hex);
  }
  assert.throws(() => Schema.read(new Reader(fromHex('00'))), /0 entity types/);
});

test('a replica refuses deltas out of step and entities it does not hold', () => {
  const schema = new Schema([{ name: 't', fields: [new Field('v', 'U8')] }]);
  const rep = new Replica(schema);
  const delta = (/** @type {number} */ tick, /** @type {any} */ parts = {}) => ({ kind: /** @type {const} */ ('DELTA'), tick, checksum: null, acks: [], created: [], changed: [], removed: [], ...parts });
  assert.throws(() => rep.applyDelta(delta(1)), DesyncError);
  rep.applySnapshot({ kind: 'SNAPSHOT', tick: 5, checksum: 0, acks: [], entities: [] });
  assert.throws(() => rep.applyDelta(delta(7)), /tick 7 after tick 5/);
  assert.throws(() => rep.applyDelta(delta(6, { removed: [3] })), /removes entity 3/);
  assert.throws(() => decodeServerMessage(fromHex('12000600000103010100'), schema, rep.typeOf), DesyncError);
  const ok = delta(6, { created: [{ id: 3, typeId: 0, codes: [9] }], acks: [[4, 2]] });
  rep.applyDelta(ok);
  assert.deepEqual([...rep.acks], [[4, 2]]);
  assert.throws(() => decodeServerMessage(fromHex('12000700010300090103010100'), schema, rep.typeOf), /both created and patched/);
});

test('every close code of v1 has a name, a sentence and an advice; unknown ones too', () => {
  for (const code of Object.values(CloseCode)) {
    const info = describeClose(code);
    assert.notEqual(info.name, 'UNKNOWN', String(code));
    assert.ok(info.text.length > 10);
  }
  assert.equal(describeClose(4005, "room 'x' is full", true).text, 'The room is full.');
  assert.equal(describeClose(4321).name, 'UNKNOWN');
  assert.match(describeClose(4321).text, /4321/);
});
