// Client-side prediction and reconciliation for the player's own entities.
//
// The game supplies a pure predict(values, input, dt): the server's rule for one tick of one
// input. Each input is applied locally at once (one step of dt per input, as the server applies
// one input per tick when the client sends one per tick) and kept until the server acks it. On
// every server state the prediction is re-based on the server's values and the inputs still
// unacked are replayed. Results are quantized to the fields' wire codes after every step, as
// the server quantizes after every tick, so a predict() that matches the server gives exactly
// the server's codes. What is drawn glides between the last two predicted steps, and a
// correction (server disagreed) is smoothed away exponentially instead of jumping.
//
// Pure: time comes in as arguments (milliseconds on any monotonic clock).

import { wrapValue, wrappedDelta } from './interpolation.js';
import { EntityType, FieldKind } from './schema.js';

/** @typedef {import('./schema.js').Code} Code */
/** @typedef {import('./schema.js').Value} Value */
/** @typedef {import('./wire.js').Int} Int */
/** @typedef {(entity: any, input: any, dt: number) => any} PredictFn */

/**
 * @typedef {object} PredictorOptions
 * @property {PredictFn} predict the game's rule for one tick of one input (pure)
 * @property {number} dt seconds one input covers: 1 / the room's tick rate
 * @property {number} [maxPending] unacked inputs kept for replay (default 256; older ones are forgotten)
 * @property {number} [smoothingMs] time constant of the visible correction (default 100 ms)
 * @property {number} [snapDistance] a correction longer than this (field units) snaps (default Infinity)
 * @property {Record<string, number>} [wrap] FLOAT fields that wrap around: name -> period (glides and corrections go the short way round)
 */

/** @typedef {{seq: number, input: Record<string, Value>, results: Map<Int, Code[]>}} Step */

/**
 * @typedef {object} Own one predicted entity
 * @property {EntityType} type
 * @property {Code[]} codes predicted after every input so far
 * @property {Code[]} prev predicted before the last input
 * @property {number[]} offset visible correction per field (FLOAT fields only), decaying
 * @property {number} offsetAt when `offset` was last decayed
 */

/**
 * The FLOAT fields' indexes of a type (cached per type).
 * @type {WeakMap<EntityType, number[]>}
 */
const floatsOf = new WeakMap();
/** @param {EntityType} type */
function floatFields(type) {
  let out = floatsOf.get(type);
  if (!out) {
    out = [];
    type.fields.forEach((f, i) => f.kind === FieldKind.FLOAT && /** @type {number[]} */ (out).push(i));
    floatsOf.set(type, out);
  }
  return out;
}

/**
 * Distance between two code arrays of a type, over its FLOAT fields, in value units.
 * @param {EntityType} type
 * @param {readonly Code[]} a
 * @param {readonly Code[]} b
 */
export function codeDistance(type, a, b) {
  let sum = 0;
  for (const i of floatFields(type)) {
    const d = (/** @type {number} */ (a[i]) - /** @type {number} */ (b[i])) * type.fields[i].precision;
    sum += d * d;
  }
  return Math.sqrt(sum);
}

export class Predictor {
  /** @param {PredictorOptions} options */
  constructor(options) {
    this.predictFn = options.predict;
    this.dt = options.dt;
    this.maxPending = options.maxPending ?? 256;
    this.smoothingMs = options.smoothingMs ?? 100;
    this.snapDistance = options.snapDistance ?? Infinity;
    /** @type {Record<string, number> | null} */
    this.wrap = options.wrap ?? null;
    /** @type {Step[]} inputs applied locally and not yet acked, oldest first */
    this.pending = [];
    /** @type {Map<Int, Own>} */
    this.own = new Map();
    /** the last ack re-based on */
    this.ack = 0;
    /** when the last input was applied (the visible position glides over one dt from then) */
    this.stepAt = -Infinity;
    /** distance between the server's state for the last acked input and what was predicted for it */
    this.error = 0;
    /** the largest `error` so far */
    this.maxError = 0;
    /** errors measured (one per ack that advanced onto a predicted input) */
    this.measured = 0;
    /** measured errors above 1e-9 */
    this.mispredictions = 0;
    /** inputs forgotten unacked because more than `maxPending` were waiting */
    this.forgotten = 0;
  }

  /** Forget everything (a new session: a rejoin, a new player number). */
  reset() {
    this.pending = [];
    this.own.clear();
    this.ack = 0;
    this.stepAt = -Infinity;
  }

  /**
   * One step of the game's rule, quantized.
   * @param {EntityType} type
   * @param {Code[]} codes
   * @param {Record<string, Value>} input
   * @returns {Code[]}
   */
  _step(type, codes, input) {
    const before = type.valuesFor(codes);
    const after = this.predictFn(before, input, this.dt);
    if (after === before) return codes;
    const fields = type.fields;
    const out = codes.slice();
    for (let i = 0; i < fields.length; i++) {
      const v = after[fields[i].name];
      if (v !== undefined) out[i] = fields[i].toCode(v);
    }
    return out;
  }

  /**
   * Apply an input locally at once: every own entity steps once.
   * @param {number} seq the input's sequence number
   * @param {Record<string, Value>} input the input's values as the server will see them (dequantized)
   * @param {number} nowMs
   */
  applyInput(seq, input, nowMs) {
    const nowVisible = this._visibleAll(nowMs);
    /** @type {Step} */
    const step = { seq, input, results: new Map() };
    for (const [id, o] of this.own) {
      o.prev = o.codes;
      o.codes = this._step(o.type, o.codes, input);
      step.results.set(id, o.codes);
    }
    this.pending.push(step);
    if (this.pending.length > this.maxPending) {
      this.pending.shift();
      this.forgotten++;
    }
    this.stepAt = nowMs;
    // the glide restarts from where the entity is drawn now: keep the drawing continuous
    this._keepContinuous(nowVisible, nowMs);
  }

  /**
   * Re-base on a server state: `entities` are the player's own entities in it, `ack` the last
   * input the server applied. Measures the prediction error, drops acked inputs, replays the
   * rest, and smooths the visible difference.
   * @param {Array<{id: Int, type: EntityType, codes: Code[]}>} entities
   * @param {number} ack
   * @param {number} nowMs
   */
  rebase(entities, ack, nowMs) {
    if (ack > this.ack) {
      const acked = this.pending.find((s) => s.seq === ack);
      if (acked) {
        let err = 0;
        for (const e of entities) {
          const predicted = acked.results.get(e.id);
          if (predicted) err = Math.max(err, codeDistance(e.type, predicted, e.codes));
        }
        this.error = err;
        this.maxError = Math.max(this.maxError, err);
        this.measured++;
        if (err > 1e-9) this.mispredictions++;
      }
      this.ack = ack;
    }
    let drop = 0;
    while (drop < this.pending.length && this.pending[drop].seq <= ack) drop++;
    if (drop) this.pending.splice(0, drop);

    const before = this._visibleAll(nowMs);
    /** @type {Map<Int, Own>} */
    const own = new Map();
    for (const e of entities) {
      const old = this.own.get(e.id);
      let codes = e.codes.slice();
      let prev = codes;
      for (const step of this.pending) {
        prev = codes;
        codes = this._step(e.type, codes, step.input);
        step.results.set(e.id, codes);
      }
      own.set(e.id, {
        type: e.type,
        codes,
        prev,
        offset: old ? old.offset : new Array(e.type.fields.length).fill(0),
        offsetAt: old ? old.offsetAt : nowMs,
      });
    }
    this.own = own;
    this._keepContinuous(before, nowMs);
  }

  /**
   * Add to each entity's offset what keeps it drawn where it was (`before`), unless the jump
   * is longer than snapDistance.
   * @param {Map<Int, number[]>} before visible FLOAT values per entity
   * @param {number} nowMs
   */
  _keepContinuous(before, nowMs) {
    for (const [id, o] of this.own) {
      const old = before.get(id);
      this._decay(o, nowMs);
      if (!old) continue;
      const now = this._visibleFloats(o, nowMs);
      const fields = o.type.fields;
      const wrap = this.wrap;
      const diff = (/** @type {number} */ i) => (wrap ? -wrappedDelta(old[i], now[i], wrap[fields[i].name]) : old[i] - now[i]);
      let sum = 0;
      for (const i of floatFields(o.type)) sum += diff(i) ** 2;
      if (Math.sqrt(sum) > this.snapDistance) {
        o.offset.fill(0);
        continue;
      }
      for (const i of floatFields(o.type)) o.offset[i] += diff(i);
    }
  }

  /**
   * @param {Own} o
   * @param {number} nowMs
   */
  _decay(o, nowMs) {
    const dt = nowMs - o.offsetAt;
    if (dt > 0) {
      const k = this.smoothingMs > 0 ? Math.exp(-dt / this.smoothingMs) : 0;
      for (const i of floatFields(o.type)) o.offset[i] *= k;
      o.offsetAt = nowMs;
    }
  }

  /**
   * FLOAT values as drawn (glide + offset), by field index; other fields hold 0.
   * @param {Own} o
   * @param {number} nowMs
   */
  _visibleFloats(o, nowMs) {
    const alpha = this.dt > 0 ? Math.min(Math.max((nowMs - this.stepAt) / (this.dt * 1000), 0), 1) : 1;
    const out = new Array(o.codes.length).fill(0);
    const dt = nowMs - o.offsetAt;
    const k = dt > 0 && this.smoothingMs > 0 ? Math.exp(-dt / this.smoothingMs) : dt > 0 ? 0 : 1;
    const wrap = this.wrap;
    for (const i of floatFields(o.type)) {
      const f = o.type.fields[i];
      const a = /** @type {number} */ (f.toValue(o.prev[i]));
      const b = /** @type {number} */ (f.toValue(o.codes[i]));
      const p = wrap ? wrap[f.name] : undefined;
      out[i] = p ? wrapValue(a + wrappedDelta(a, b, p) * alpha + o.offset[i] * k, p) : a + (b - a) * alpha + o.offset[i] * k;
    }
    return out;
  }

  /** @param {number} nowMs */
  _visibleAll(nowMs) {
    /** @type {Map<Int, number[]>} */
    const out = new Map();
    for (const [id, o] of this.own) out.set(id, this._visibleFloats(o, nowMs));
    return out;
  }

  /**
   * What to draw for an own entity at `nowMs`: the predicted values, FLOAT fields gliding
   * between the last two steps plus the decaying correction. Undefined if not predicted.
   * @param {Int} id
   * @param {number} nowMs
   * @returns {Record<string, Value> | undefined}
   */
  visible(id, nowMs) {
    const o = this.own.get(id);
    if (!o) return undefined;
    const values = o.type.valuesFor(o.codes);
    const floats = this._visibleFloats(o, nowMs);
    for (const i of floatFields(o.type)) values[o.type.fields[i].name] = floats[i];
    return values;
  }

  /**
   * The predicted values (no glide, no smoothing) of an own entity: the state after every
   * input sent so far, exactly as the server will compute it if nothing interferes.
   * @param {Int} id
   */
  predicted(id) {
    const o = this.own.get(id);
    return o ? o.type.valuesFor(o.codes) : undefined;
  }

  /** The size of the visible correction still being smoothed away (largest over entities). */
  correction() {
    let max = 0;
    for (const o of this.own.values()) {
      let sum = 0;
      for (const i of floatFields(o.type)) sum += o.offset[i] ** 2;
      max = Math.max(max, Math.sqrt(sum));
    }
    return max;
  }
}
