// The client's copy of a room's state, rebuilt from one SNAPSHOT and then DELTAs, with the
// server's checksums verified (docs/protocol.md, "State sync" and "Checksum"; shared/replica.py).
// In a view room (JOINED flag VIEW, docs/protocol.md "Views (v2)") it is the client's view: the
// entities near the player, which leave (removed) and come back (created again, same id), in any
// order, verified by the view checksum: the sum of every held record's CRC-32, mod 2^32.

import { DesyncError, RemoteProtocolError } from './errors.js';
import { predictRanges } from './delta_v3.js';
import { decodeServerMessage, maskBits } from './messages.js';
import { EntityType, Schema } from './schema.js';
import { Writer, crc32, normalizeInt } from './wire.js';

/** @typedef {import('./wire.js').Int} Int */
/** @typedef {import('./schema.js').Code} Code */
/** @typedef {import('./schema.js').Value} Value */
/** @typedef {import('./messages.js').Snapshot} Snapshot */
/** @typedef {import('./messages.js').Delta} Delta */
/** @typedef {import('./messages.js').EntityRecord} EntityRecord */
/** @typedef {import('./messages.js').EntityPatch} EntityPatch */

/**
 * One entity of the replica: an id, a type and one wire code per field. `get(name)` and
 * `values()` give game values (floats dequantized); `V` types them when the game says so.
 * @template {Record<string, Value>} [V=Record<string, any>]
 */
export class Entity {
  /**
   * @param {Int} id
   * @param {EntityType} type
   * @param {Code[]} codes
   */
  constructor(id, type, codes) {
    /** @readonly */ this.id = id;
    /** @readonly */ this.type = type;
    /** the wire codes, in field order (what checksums cover) */
    this.codes = codes;
  }

  /** The type's name, e.g. `player`. */
  get typeName() {
    return this.type.name;
  }

  /**
   * One field's game value.
   * @template {keyof V & string} K
   * @param {K} name
   * @returns {V[K]}
   */
  get(name) {
    const i = this.type.index.get(name);
    if (i === undefined) throw new RangeError(`${this.type.name} has no field ${JSON.stringify(name)}`);
    return /** @type {V[K]} */ (this.type.fields[i].toValue(this.codes[i]));
  }

  /**
   * One field's wire code.
   * @param {keyof V & string} name
   */
  code(name) {
    const i = this.type.index.get(name);
    if (i === undefined) throw new RangeError(`${this.type.name} has no field ${JSON.stringify(name)}`);
    return this.codes[i];
  }

  /**
   * Every field's game value, by name (a new object).
   * @returns {V}
   */
  values() {
    return /** @type {V} */ (this.type.valuesFor(this.codes));
  }
}

/**
 * @param {Int} a
 * @param {Int} b
 * @returns {Int}
 */
function addInt(a, b) {
  if (typeof a === 'number' && typeof b === 'number') {
    const s = a + b;
    if (Number.isSafeInteger(s)) return s;
  }
  return normalizeInt(BigInt(a) + BigInt(b));
}

/**
 * The view checksum of a set of records given by their CRC-32s: the sum mod 2^32, order-free;
 * no records = 0 (docs/protocol.md, "Views (v2)"; shared/state.py view_checksum).
 * @param {Iterable<number>} crcs
 */
export function viewChecksum(crcs) {
  let sum = 0;
  for (const c of crcs) sum = (sum + c) % 0x1_0000_0000;
  return sum;
}

/**
 * @typedef {object} ReplicaOptions
 * @property {boolean} [view] a view room's replica (JOINED flag VIEW): view checksums, records in any order
 * @property {2 | 3} [coding] the state coding (codingFor(version, view)): 3 keeps the velocities the
 *   gamesync.v3 prediction needs (`predicted` is the `predict` of decodeServerMessage)
 */

/**
 * Applies snapshots and deltas, tracks input acks, and checks the server's checksums.
 * `T` maps type names to their value shapes, for typed `ofType()` results.
 * @template {Record<string, Record<string, Value>>} [T=Record<string, Record<string, any>>]
 */
export class Replica {
  /**
   * @param {Schema} schema
   * @param {ReplicaOptions} [options]
   */
  constructor(schema, options = {}) {
    /** @readonly */ this.schema = schema;
    /** @readonly a view room's replica: the checksum is the view checksum (the sum of the records' CRCs) */
    this.view = options.view === true;
    /** @type {Map<Int, number>} view replicas: id -> CRC-32 of its full record, while unchanged */
    this._crcs = new Map();
    /** @type {Map<Int, Entity>} id -> entity */
    this.entities = new Map();
    /** the tick of the state held; -1 before the first snapshot */
    this.tick = -1;
    /** @type {Map<Int, Int>} player -> last applied input seq */
    this.acks = new Map();
    /** checksums verified */
    this.checks = 0;
    /** @type {Int} */
    this._maxId = 0;
    this._ascending = true; // the Map's order is ascending id order (ids only grow, normally)
    this._scratch = new Writer(1024);
    /** @type {2 | 3} the state coding: 3 = gamesync.v3 (velocities kept), 2 = v1/v2 */
    this.coding = options.coding === 3 ? 3 : 2;
    /** @type {Map<string, Map<number, number>>} v3: String(id) -> field index -> velocity (nonzero only) */
    this.motion = new Map();
    /** @type {(id: Int, i: number) => number} v3: field i's code plus its velocity */
    this.predicted = (id, i) => {
      const e = this.entities.get(id);
      if (e === undefined) throw new DesyncError(`delta patches entity ${id}, which the replica lacks`);
      const v = this.motion.get(String(id));
      return /** @type {number} */ (e.codes[i]) + (v ? v.get(i) ?? 0 : 0);
    };
    /** @type {(id: Int) => EntityType} */
    this.typeOf = (id) => {
      const e = this.entities.get(id);
      if (e === undefined) throw new DesyncError(`delta patches entity ${id}, which the replica lacks`);
      return e.type;
    };
  }

  /**
   * @param {Int} id
   * @returns {Entity | undefined}
   */
  get(id) {
    return this.entities.get(id);
  }

  /**
   * The entities of one type, in id order (a view replica: in no particular order).
   * @template {string} K
   * @param {K} name
   * @returns {Array<Entity<K extends keyof T ? T[K] : Record<string, any>>>}
   */
  ofType(name) {
    const etype = this.schema.byName.get(name);
    const out = [];
    if (etype) for (const e of this.entities.values()) if (e.type === etype) out.push(e);
    return /** @type {any} */ (out);
  }

  /**
   * @param {EntityRecord} rec
   */
  _insert(rec) {
    const id = rec.id;
    if (id <= this._maxId) this._ascending = false;
    else this._maxId = id;
    this.entities.set(id, new Entity(id, this.schema.typeFor(rec.typeId), rec.codes.slice()));
    if (this.view) this._crcs.delete(id);
  }

  /**
   * The checksum of the state held: CRC-32 over every entity's full record in ascending id
   * order (0 with no entities); a view replica: the view checksum, the sum of every record's
   * CRC-32 mod 2^32 (0 with none), each CRC computed once and kept until the entity changes.
   */
  checksum() {
    if (this.view) return this._viewChecksum();
    const w = this._scratch.reset();
    if (!this._ascending) this._rebuildOrder();
    for (const e of this.entities.values()) {
      w.varint(e.id);
      w.varint(e.type.typeId);
      e.type.writeCodes(w, e.codes);
    }
    return crc32(w.buf, 0, w.pos);
  }

  _viewChecksum() {
    const crcs = this._crcs;
    let sum = 0;
    for (const [id, e] of this.entities) {
      let c = crcs.get(id);
      if (c === undefined) {
        const w = this._scratch.reset();
        w.varint(e.id);
        w.varint(e.type.typeId);
        e.type.writeCodes(w, e.codes);
        c = crc32(w.buf, 0, w.pos);
        crcs.set(id, c);
      }
      sum += c;
    }
    return sum % 0x1_0000_0000;
  }

  /**
   * A SNAPSHOT replaces everything. Throws DesyncError if its checksum does not match.
   * @param {Snapshot} snap
   * @param {boolean} [verify]
   */
  applySnapshot(snap, verify = true) {
    this.entities = new Map();
    this._crcs = new Map();
    this._maxId = 0;
    this._ascending = true;
    for (const rec of snap.entities) {
      if (this.entities.has(rec.id)) throw new DesyncError(`snapshot holds entity ${rec.id} twice`);
      this._insert(rec);
    }
    if (!this._ascending && !this.view) this._rebuildOrder();
    this.tick = typeof snap.tick === 'number' ? snap.tick : -1;
    this.acks = new Map(snap.acks);
    if (this.coding === 3) this._setMotion(snap.motion ?? []);
    if (verify) this._verify(snap.checksum);
  }

  /**
   * v3: the velocities a SNAPSHOT or a catch-up DELTA lists.
   * @param {EntityPatch[]} motion
   */
  _setMotion(motion) {
    this.motion = new Map();
    for (const p of motion) {
      if (!this.entities.has(p.id)) throw new DesyncError(`motion of entity ${p.id}, which the replica lacks`);
      /** @type {Map<number, number>} */
      const vel = new Map();
      maskBits(p.mask).forEach((i, j) => vel.set(i, Number(p.codes[j])));
      this.motion.set(String(p.id), vel);
    }
  }

  _rebuildOrder() {
    const ids = [...this.entities.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    const old = this.entities;
    this.entities = new Map(ids.map((id) => [id, /** @type {Entity} */ (old.get(id))]));
    this._ascending = true;
  }

  /**
   * A DELTA turns the state of tick T into that of T + 1 (v2's catch-up DELTA, with a base
   * tick B, turns the state of tick B into that of its tick): created, changed, removed, acks,
   * tick, then the checksum if present. Throws DesyncError for a wrong tick, an unknown or
   * repeated entity, or a checksum mismatch (the replica must then be rebuilt). In a view
   * room, `created` also brings entities into view and `removed` takes them out of it.
   * @param {Delta} delta
   * @param {boolean} [verify]
   */
  applyDelta(delta, verify = true) {
    if (this.tick < 0) throw new DesyncError('delta before any snapshot');
    const base = delta.base ?? null;
    if (base === null ? delta.tick !== this.tick + 1 : base !== this.tick) {
      throw new DesyncError(`delta for tick ${delta.tick}${base === null ? '' : ` from tick ${base}`} after tick ${this.tick}`);
    }
    const ents = this.entities;
    for (const rec of delta.created) {
      if (ents.has(rec.id)) throw new DesyncError(`delta creates entity ${rec.id}, which exists`);
      this._insert(rec);
    }
    const changed = delta.changed;
    const crcs = this._crcs;
    const view = this.view;
    const track = this.coding === 3 && base === null;
    /** @type {Map<string, Map<number, number>>} */
    const motion = new Map();
    for (let k = 0; k < changed.length; k++) {
      const p = changed[k];
      const e = ents.get(p.id);
      if (e === undefined) throw new DesyncError(`delta patches entity ${p.id}, which the replica lacks`);
      if (view) crcs.delete(p.id);
      const codes = e.codes;
      const pc = p.codes;
      if (track) {
        const ranges = predictRanges(e.type);
        /** @type {Map<number, number>} */
        const vel = new Map();
        maskBits(p.mask).forEach((i, j) => {
          if (ranges[i] !== null) {
            const dv = Number(pc[j]) - Number(codes[i]);
            if (dv !== 0) vel.set(i, dv);
          }
        });
        if (vel.size) motion.set(String(p.id), vel);
      }
      let m = p.mask;
      if (typeof m === 'number' && m <= 0xffffffff) {
        for (let i = 0, j = 0; m !== 0; i++, m >>>= 1) if (m & 1) codes[i] = pc[j++];
      } else {
        maskBits(m).forEach((i, j) => {
          codes[i] = pc[j];
        });
      }
    }
    for (const id of delta.removed) {
      if (!ents.delete(id)) throw new DesyncError(`delta removes entity ${id}, which the replica lacks`);
      if (view) crcs.delete(id);
    }
    const acks = this.acks;
    for (const [player, inc] of delta.acks) {
      if (inc === 0) acks.delete(player);
      else acks.set(player, addInt(acks.get(player) ?? 0, inc));
    }
    if (this.coding === 3) {
      if (track) {
        for (const id of delta.removed) motion.delete(String(id));
        this.motion = motion;
      } else this._setMotion(delta.motion ?? []);
    }
    this.tick = Number(delta.tick);
    if (verify && delta.checksum !== null) this._verify(delta.checksum);
  }

  /**
   * Decode one SNAPSHOT or DELTA and apply it; returns the decoded message.
   * @param {Uint8Array} bytes
   * @param {boolean} [verify]
   * @returns {Snapshot | Delta}
   */
  applyBytes(bytes, verify = true) {
    const msg = decodeServerMessage(bytes, this.schema, this.typeOf, undefined, { coding: this.coding, predict: this.predicted });
    if (msg.kind === 'DELTA') this.applyDelta(msg, verify);
    else if (msg.kind === 'SNAPSHOT') this.applySnapshot(msg, verify);
    else throw new RemoteProtocolError(`not a state message: ${msg.kind}`, 1002);
    return msg;
  }

  /** @param {number} expected */
  _verify(expected) {
    const got = this.checksum();
    this.checks += 1;
    if (got !== expected) {
      const hex = (/** @type {number} */ n) => n.toString(16).padStart(8, '0');
      throw new DesyncError(`checksum mismatch at tick ${this.tick}: ${hex(got)} != ${hex(expected)}`);
    }
  }
}
