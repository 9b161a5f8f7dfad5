// gamesync.v3 golden vectors (tests/vectors/protocol_v3.json, the same file the Python codec
// checks): JOIN and JOINED with version 3, the v3 SNAPSHOT with its motion, the chain of v3
// DELTAs applied in order on a v3 replica (prediction, ack bitmask and pairs, folded sections,
// every checksum verified), the catch-up DELTA, and the rejections.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';

import { Replica, decodeClientMessage, decodeServerMessage, fromHex, maskBits } from '../src/index.js';

/** @typedef {{name: string, description: string, hex: string, decoded: any}} Case */
/** @type {Case[]} */
const CASES = JSON.parse(readFileSync(new URL('../../../tests/vectors/protocol_v3.json', import.meta.url), 'utf8'));
const byName = new Map(CASES.map((c) => [c.name, c]));
const joinedCase = /** @type {Case} */ (byName.get('server_joined_v3'));
const joined = /** @type {import('../src/index.js').Joined} */ (decodeServerMessage(fromHex(joinedCase.hex), undefined, undefined, 3));
const schema = joined.schema;

/**
 * @param {import('../src/index.js').EntityType} etype
 * @param {import('../src/index.js').Int} mask
 * @param {unknown[]} codes
 */
function fields(etype, mask, codes) {
  /** @type {Record<string, unknown>} */
  const out = {};
  maskBits(mask).forEach((i, j) => {
    out[etype.fields[i].name] = codes[j];
  });
  return out;
}

/**
 * @param {Replica} replica
 * @param {import('../src/index.js').EntityPatch[]} patches
 */
const patchesMeaning = (replica, patches) =>
  patches.map((p) => {
    const t = replica.typeOf(p.id);
    return { id: p.id, type: t.name, mask: p.mask, fields: fields(t, p.mask, p.codes) };
  });

/** @param {import('../src/index.js').EntityRecord[]} recs */
const recordsMeaning = (recs) =>
  recs.map((r) => {
    const t = schema.typeFor(r.typeId);
    return { id: r.id, type_id: r.typeId, type: t.name, fields: fields(t, 2 ** t.fields.length - 1, r.codes) };
  });

/**
 * The replica holding the state after case `name`.
 * @param {string} name
 * @returns {Replica}
 */
function replicaAfter(name) {
  const c = /** @type {Case} */ (byName.get(name));
  if (c.decoded.kind === 'SNAPSHOT') {
    const rep = new Replica(schema, { coding: 3 });
    rep.applyBytes(fromHex(c.hex));
    return rep;
  }
  const rep = replicaAfter(c.decoded.follows);
  rep.applyBytes(fromHex(c.hex));
  return rep;
}

test('v3 JOIN and JOINED carry version 3', () => {
  const join = decodeClientMessage(fromHex(/** @type {Case} */ (byName.get('client_join_v3')).hex), undefined, 3);
  assert.equal(join.kind, 'JOIN');
  assert.equal(/** @type {any} */ (join).version, 3);
  assert.equal(joined.version, 3);
  assert.equal(joined.resumeToken, joinedCase.decoded.resume_token);
});

test('v3 states: decoded to their meaning, applied in their chain, every checksum verified', () => {
  let states = 0;
  for (const c of CASES) {
    const d = c.decoded;
    if (d.type !== 'server' || (d.kind !== 'SNAPSHOT' && d.kind !== 'DELTA')) continue;
    states++;
    if (d.kind === 'SNAPSHOT') {
      const rep = new Replica(schema, { coding: 3 });
      const snap = /** @type {import('../src/index.js').Snapshot} */ (decodeServerMessage(fromHex(c.hex), schema, undefined, 3));
      rep.applySnapshot(snap);
      assert.equal(snap.tick, d.tick);
      assert.equal(snap.checksum, d.checksum);
      assert.deepEqual(recordsMeaning(snap.entities), d.entities);
      assert.deepEqual(patchesMeaning(rep, snap.motion ?? []), d.motion);
      continue;
    }
    const rep = replicaAfter(d.follows);
    const delta = /** @type {import('../src/index.js').Delta} */ (decodeServerMessage(fromHex(c.hex), schema, rep.typeOf, 3, { predict: rep.predicted }));
    assert.equal(delta.tick, d.tick, c.name);
    assert.equal(delta.base ?? undefined, d.base);
    assert.equal(delta.checksum, d.checksum);
    const sort = (/** @type {any[]} */ a) => [...a].map((x) => x.join()).sort();
    assert.deepEqual(sort(delta.acks), sort(d.acks));
    assert.deepEqual(recordsMeaning(delta.created), d.created);
    assert.deepEqual(patchesMeaning(rep, delta.changed), d.changed, c.name);
    assert.deepEqual(delta.removed, d.removed);
    if (d.motion) assert.deepEqual(patchesMeaning(rep, delta.motion ?? []), d.motion);
    const checks = rep.checks;
    rep.applyDelta(delta);
    assert.equal(rep.checks, checks + (delta.checksum === null ? 0 : 1));
  }
  assert.ok(states >= 7);
  // the catch-up from tick 10 lands where the per-tick chain did
  const viaChain = replicaAfter('server_delta_v3_after_empty');
  const viaCatchUp = replicaAfter('server_delta_v3_catch_up');
  assert.equal(viaCatchUp.checksum(), viaChain.checksum());
  assert.deepEqual([...viaCatchUp.motion], [...viaChain.motion]);
});

test('v3 rejections are protocol errors with their close code', () => {
  for (const c of CASES) {
    if (c.decoded.type !== 'server_reject') continue;
    const rep = replicaAfter(c.decoded.follows);
    assert.throws(
      () => decodeServerMessage(fromHex(c.hex), schema, rep.typeOf, 3, { predict: rep.predicted }),
      (/** @type {any} */ e) => e.closeCode === c.decoded.close_code,
      c.name,
    );
  }
});
