// The decode-and-apply benchmark of an arena DELTA, shared by the Node entry point
// (tools/bench_web_decode.mjs) and the browser one (bench/decode.html).
//
// The state is an arena room with 8 players and 6 gems. Each DELTA is what the server sends
// when all 8 players move: 8 acks (+1) and 8 patches of x and y (6 bytes each), about 70 bytes,
// every 5th with a checksum (the server's default). One measurement decodes and applies a run
// of consecutive DELTAs to a replica (Replica.applyBytes: decode, apply, verify when a
// checksum is present) and divides the time by their number; the median of the batches is
// reported. Timing whole batches keeps the browser's coarse performance.now() out of it.

import { Field, InputSchema, Replica, Schema, encodeServerMessage } from '../src/index.js';

const POS = { lo: 0, hi: 1000, precision: 0.05 };
export const SCHEMA = new Schema([
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
export const INPUT = new InputSchema([
  new Field('dx', 'FLOAT', { lo: -1, hi: 1, precision: 0.01 }),
  new Field('dy', 'FLOAT', { lo: -1, hi: 1, precision: 0.01 }),
]);

const PLAYERS = 8;
const GEMS = 6;

/**
 * A snapshot and `count` consecutive DELTAs of 8 players moving (checksums every 5th tick).
 * @param {number} count
 */
export function makeDeltas(count) {
  const player = SCHEMA.types[0];
  const gem = SCHEMA.types[1];
  const server = new Replica(SCHEMA);
  const entities = [];
  for (let p = 1; p <= PLAYERS; p++) {
    entities.push({ id: p, typeId: 0, codes: player.codesFor({ x: 100 * p, y: 50 * p, score: p, hp: 100, owner: p, name: `player-${p}` }) });
  }
  for (let g = 0; g < GEMS; g++) entities.push({ id: PLAYERS + 1 + g, typeId: 1, codes: gem.codesFor({ x: 77 * g, y: 900 - 33 * g, value: 1 + (g % 3) }) });
  const tick0 = 1000;
  /** @type {Array<[number, number]>} */
  const acks = [];
  for (let p = 1; p <= PLAYERS; p++) acks.push([p, 0]);
  const snapshot = { kind: /** @type {const} */ ('SNAPSHOT'), tick: tick0, checksum: 0, acks, entities };
  server.applySnapshot(snapshot, false);
  snapshot.checksum = server.checksum();
  const snapshotBytes = encodeServerMessage(snapshot, SCHEMA);
  /** @type {Uint8Array[]} */
  const deltas = [];
  for (let i = 1; i <= count; i++) {
    const tick = tick0 + i;
    const changed = [];
    for (let p = 1; p <= PLAYERS; p++) {
      const codes = /** @type {number[]} */ (/** @type {import('../src/index.js').Entity} */ (server.get(p)).codes);
      // each player walks its own way at 10 units per tick (200 codes of 0.05), wrapping around
      const x = (codes[0] + (p % 3 === 0 ? -200 : 200) + 20001) % 20001;
      const y = (codes[1] + (p % 2 ? 200 : -200) + 20001) % 20001;
      changed.push({ id: p, mask: 3, codes: [x, y] });
    }
    /** @type {Array<[number, number]>} */
    const dacks = [];
    for (let p = 1; p <= PLAYERS; p++) dacks.push([p, 1]);
    const delta = { kind: /** @type {const} */ ('DELTA'), tick, checksum: /** @type {number | null} */ (null), acks: dacks, created: [], changed, removed: [] };
    const typeOf = server.typeOf;
    server.applyDelta(delta, false);
    if (tick % 5 === 0) delta.checksum = server.checksum();
    deltas.push(encodeServerMessage(delta, SCHEMA, typeOf));
  }
  return { snapshotBytes, deltas };
}

/**
 * @typedef {object} BenchResult
 * @property {number} medianUs median over batches of the mean µs per DELTA, as a client meets
 *   them: decoded, applied, and every 5th verified against its checksum
 * @property {number} minUs the fastest batch
 * @property {number} maxUs the slowest batch
 * @property {number} plainMedianUs the same with no checksum verified (the other 4 of 5 DELTAs)
 * @property {number} checksumMedianUs one checksum of the 14-entity state (the extra cost of every 5th DELTA)
 * @property {number} deltaBytes one DELTA's size, without checksum
 * @property {number} deltaBytesWithChecksum and with
 * @property {number} batches
 * @property {number} perBatch
 */

/** @param {number[]} xs */
function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

/**
 * @param {{batches?: number, perBatch?: number, now?: () => number}} [opts]
 * @returns {BenchResult}
 */
export function runDecodeBench(opts = {}) {
  const batches = opts.batches ?? 21;
  const perBatch = opts.perBatch ?? 1000;
  const now = opts.now ?? (() => performance.now());
  const { snapshotBytes, deltas } = makeDeltas(perBatch);
  const replica = new Replica(SCHEMA);
  /**
   * Mean µs per DELTA of one pass over every DELTA, from the snapshot.
   * @param {boolean} verify
   */
  const pass = (verify) => {
    replica.applyBytes(snapshotBytes);
    const t0 = now();
    for (let i = 0; i < deltas.length; i++) replica.applyBytes(deltas[i], verify);
    return ((now() - t0) * 1000) / deltas.length;
  };
  const checksums = () => {
    const t0 = now();
    let x = 0;
    for (let i = 0; i < perBatch; i++) x ^= replica.checksum();
    const us = ((now() - t0) * 1000) / perBatch;
    if (x === 0.5) throw new Error('unreachable'); // keep the loop's result alive
    return us;
  };
  for (let b = 0; b < 5; b++) pass(b % 2 === 0); // warm-up: let the JIT settle
  /** @type {number[]} */
  const all = [];
  /** @type {number[]} */
  const plain = [];
  /** @type {number[]} */
  const sums = [];
  for (let b = 0; b < batches; b++) {
    all.push(pass(true));
    plain.push(pass(false));
    sums.push(checksums());
  }
  return {
    medianUs: median(all),
    minUs: Math.min(...all),
    maxUs: Math.max(...all),
    plainMedianUs: median(plain),
    checksumMedianUs: median(sums),
    deltaBytes: deltas[0].length,
    deltaBytesWithChecksum: /** @type {Uint8Array} */ (deltas.find((d) => d[1] === 1)).length,
    batches,
    perBatch,
  };
}
