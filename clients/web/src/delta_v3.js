// gamesync.v3 state coding (docs/protocol.md "DELTA in v3", shared/delta_v3.py): a DELTA
// whose empty sections are flag bits, whose acks of 1 are a bitmask of player numbers, whose
// patches come in ascending id order as id gaps, and whose predicted fields (U16, I16, U32,
// I32, FLOAT of 2+ bytes) are svarint residuals against `code + velocity`; SNAPSHOT and the
// catch-up DELTA end with a motion section (the nonzero velocities of the state they carry).

import { FieldKind, readCode } from './schema.js';
import { RemoteProtocolError } from './errors.js';
import { readRecord } from './messages.js';

export const V3_CHECKSUM = 0x01;
export const V3_BASE = 0x02;
export const V3_ACK_BITS = 0x04;
export const V3_ACK_PAIRS = 0x08;
export const V3_CREATED = 0x10;
export const V3_CHANGED = 0x20;
export const V3_REMOVED = 0x40;
/** the players an ack bitmask names: ack_base .. ack_base + 63 */
export const ACK_BITS_SPAN = 64;

/** @typedef {import('./wire.js').Reader} Reader */
/** @typedef {import('./wire.js').Int} Int */
/** @typedef {import('./schema.js').Schema} Schema */
/** @typedef {import('./schema.js').Field} Field */
/** @typedef {import('./schema.js').EntityType} EntityType */
/** @typedef {import('./messages.js').Delta} Delta */
/** @typedef {import('./messages.js').EntityPatch} EntityPatch */
/** @typedef {import('./messages.js').EntityRecord} EntityRecord */
/** @typedef {import('./messages.js').TypeOf} TypeOf */
/** `predict(id, i)`: field i's code plus its velocity in the receiver's state. @typedef {(id: Int, i: number) => number} Predict */

/**
 * The state coding of a connection: 3 on gamesync.v3 except in a view room (its states keep
 * the v2 layout), else 2.
 * @param {number} version
 * @param {boolean} [view]
 * @returns {2 | 3}
 */
export function codingFor(version, view = false) {
  return version >= 3 && !view ? 3 : 2;
}

/**
 * The code range [lo, hi] of a predicted field, or null for a field packed as in v2.
 * @param {Field} f
 * @returns {[number, number] | null}
 */
export function predictRange(f) {
  switch (f.kind) {
    case FieldKind.FLOAT:
      return f.width >= 2 ? [0, f.steps] : null;
    case FieldKind.U16:
      return [0, 0xffff];
    case FieldKind.I16:
      return [-0x8000, 0x7fff];
    case FieldKind.U32:
      return [0, 0xffffffff];
    case FieldKind.I32:
      return [-0x80000000, 0x7fffffff];
    default:
      return null;
  }
}

/** @type {WeakMap<EntityType, Array<[number, number] | null>>} */
const RANGES = new WeakMap();

/**
 * Per field of a type, its predicted range or null.
 * @param {EntityType} etype
 */
export function predictRanges(etype) {
  let r = RANGES.get(etype);
  if (r === undefined) {
    r = etype.fields.map(predictRange);
    RANGES.set(etype, r);
  }
  return r;
}

/**
 * A fixed mask of up to 4 bytes (types of more than 32 fields have no v3 fast path here: the
 * mask is read as a BigInt and converted, which fits every schema of at most 53 fields).
 * @param {Reader} r
 * @param {EntityType} etype
 * @returns {number}
 */
function readMask(r, etype) {
  const nb = etype.maskBytes;
  if (nb <= 4) return r.uint(nb);
  r.need(nb);
  let m = 0n;
  for (let j = 0; j < nb; j++) m |= BigInt(r.bytes[r.pos + j]) << BigInt(8 * j);
  r.pos += nb;
  if (m > BigInt(Number.MAX_SAFE_INTEGER)) throw new RemoteProtocolError('field mask beyond 53 fields');
  return Number(m);
}

/**
 * @param {number} mask
 * @param {number} i
 */
const bit = (mask, i) => Math.floor(mask / 2 ** i) % 2 === 1;

/**
 * The v3 acks: the bitmask's players (increment 1), ascending, then the explicit pairs.
 * @param {Reader} r
 * @param {number} flags
 * @returns {Array<[Int, Int]>}
 */
export function readAcksV3(r, flags) {
  /** @type {Array<[Int, Int]>} */
  const acks = [];
  if (flags & V3_ACK_BITS) {
    const base = r.varint();
    let bits = BigInt(r.varint());
    if (bits === 0n) throw new RemoteProtocolError('empty ack bitmask');
    for (let i = 0; bits !== 0n; i++, bits >>= 1n) {
      if (bits & 1n) acks.push([typeof base === 'number' ? base + i : base + BigInt(i), 1]);
    }
  }
  if (flags & V3_ACK_PAIRS) {
    const n = r.count();
    for (let i = 0; i < n; i++) acks.push([r.varint(), r.varint()]);
  }
  if (new Set(acks.map((a) => String(a[0]))).size !== acks.length) throw new RemoteProtocolError('delta acks name a player twice');
  return acks;
}

/**
 * The motion section: per entity (ascending ids as gaps) a mask of predicted fields and their
 * nonzero velocities, as patches whose codes are the velocities.
 * @param {Reader} r
 * @param {TypeOf} typeOf
 * @returns {EntityPatch[]}
 */
export function readMotion(r, typeOf) {
  const n = r.count();
  /** @type {EntityPatch[]} */
  const out = [];
  let id = 0;
  for (let k = 0; k < n; k++) {
    const gap = Number(r.varint());
    if (gap === 0) throw new RemoteProtocolError('motion ids must ascend');
    id += gap;
    const etype = typeOf(id);
    const ranges = predictRanges(etype);
    const mask = readMask(r, etype);
    const codes = [];
    for (let i = 0; 2 ** i <= mask; i++) {
      if (!bit(mask, i)) continue;
      if (i >= ranges.length || ranges[i] === null) throw new RemoteProtocolError(`motion mask 0x${mask.toString(16)} names a field ${etype.name} does not predict`);
      const v = Number(r.svarint());
      if (v === 0) throw new RemoteProtocolError('motion lists a velocity of 0');
      codes.push(v);
    }
    out.push({ id, mask, codes });
  }
  return out;
}

/**
 * A v3 DELTA after its kind byte.
 * @param {Reader} r
 * @param {Schema} schema
 * @param {TypeOf | undefined} typeOf
 * @param {Predict | undefined} predict
 * @returns {Delta}
 */
export function readDeltaV3(r, schema, typeOf, predict) {
  const flags = r.u8();
  if (flags & ~0x7f) throw new RemoteProtocolError(`unknown delta flags 0x${flags.toString(16)}`);
  const tick = r.varint();
  const catchUp = (flags & V3_BASE) !== 0;
  const base = catchUp ? r.varint() : null;
  if (base !== null && base >= tick) throw new RemoteProtocolError(`delta base tick ${base} not before its tick ${tick}`);
  const checksum = flags & V3_CHECKSUM ? r.u32() : null;
  const acks = readAcksV3(r, flags);
  /** @type {EntityRecord[]} */
  const created = [];
  if (flags & V3_CREATED) {
    const n = r.count();
    for (let i = 0; i < n; i++) created.push(readRecord(r, schema));
  }
  /** @type {Map<Int, EntityType>} */
  const born = new Map(created.map((rec) => [rec.id, schema.typeFor(rec.typeId)]));
  /** @type {TypeOf} */
  const lookup = (id) => {
    if (born.has(id)) throw new RemoteProtocolError(`entity ${id} both created and patched`);
    if (!typeOf) throw new RemoteProtocolError("delta patches need the receiver's entity types");
    return typeOf(id);
  };
  /** @type {EntityPatch[]} */
  const changed = [];
  if (flags & V3_CHANGED) {
    const n = r.count();
    let id = 0;
    for (let k = 0; k < n; k++) {
      const gap = Number(r.varint());
      if (gap === 0) throw new RemoteProtocolError('delta patch ids must ascend');
      id += gap;
      const etype = lookup(id);
      const fields = etype.fields;
      const mask = readMask(r, etype);
      if (mask >= 2 ** fields.length) throw new RemoteProtocolError(`field mask 0x${mask.toString(16)} names fields ${etype.name} lacks`);
      const ranges = predictRanges(etype);
      const codes = [];
      for (let i = 0; 2 ** i <= mask; i++) {
        if (!bit(mask, i)) continue;
        const range = ranges[i];
        if (range === null || catchUp) {
          codes.push(readCode(r, fields[i]));
        } else {
          if (!predict) throw new RemoteProtocolError("v3 delta patches need the receiver's state");
          const code = predict(id, i) + Number(r.svarint());
          if (code < range[0] || code > range[1]) throw new RemoteProtocolError(`entity ${id} field ${fields[i].name}: predicted code ${code} out of range`);
          codes.push(code);
        }
      }
      changed.push({ id, mask, codes });
    }
  }
  /** @type {Int[]} */
  const removed = [];
  if (flags & V3_REMOVED) {
    const n = r.count();
    for (let i = 0; i < n; i++) removed.push(r.varint());
  }
  /** @type {Delta} */
  const delta = { kind: 'DELTA', tick, base, checksum, acks, created, changed, removed };
  if (catchUp) {
    const gone = new Set(removed.map(String));
    delta.motion = readMotion(r, (id) => {
      if (gone.has(String(id))) throw new RemoteProtocolError(`motion of entity ${id}, which the delta removes`);
      const t = born.get(id);
      if (t !== undefined) return t;
      if (!typeOf) throw new RemoteProtocolError("delta motion needs the receiver's entity types");
      return typeOf(id);
    });
  }
  return delta;
}
