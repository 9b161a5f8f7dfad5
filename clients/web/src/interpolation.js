// Snapshot interpolation for the entities a player does not predict (others' avatars, items).
//
// Each server state is kept as a frame stamped with its tick. What is drawn is the state at a
// render time behind the newest frame: the delay is a couple of tick intervals plus a multiple
// of the measured jitter (the moving standard deviation of arrival times against the server's
// tick clock), as Mirror's snapshot interpolation does, so it is short on a steady network and
// grows when packets bunch up. The render clock runs at a slightly adjusted speed (within
// +-10%) to converge on that delay instead of jumping, never runs backwards, and runs past the
// newest frame (extrapolation) by at most `maxExtrapolationMs`. A tick that arrives late or
// twice is ignored; a gap (skipped ticks, a fresh snapshot) is interpolated across, or skipped
// over when the render clock falls far behind.
//
// Pure: time comes in as arguments (milliseconds on any monotonic clock).

import { FieldKind } from './schema.js';

/** @typedef {import('./schema.js').Code} Code */
/** @typedef {import('./schema.js').Value} Value */
/** @typedef {import('./schema.js').EntityType} EntityType */
/** @typedef {import('./wire.js').Int} Int */

/**
 * @typedef {object} InterpolatorOptions
 * @property {number} tickRate the room's ticks per second
 * @property {number} [bufferTicks] tick intervals of delay on a perfect network (default 2)
 * @property {number} [jitterFactor] standard deviations of jitter added to the delay (default 2)
 * @property {number} [maxExtrapolationMs] how far past the newest frame to draw (default one tick interval)
 * @property {number} [capacity] frames kept at most (default 64)
 * @property {number} [windowTicks] samples of the moving averages (default two seconds of ticks)
 * @property {Record<string, number>} [wrap] FLOAT fields that wrap around: name -> period (blended the short way round)
 */

/**
 * `b - a` the short way round a period `p` (0 or absent: no wrap).
 * @param {number} a @param {number} b @param {number | undefined} p
 */
export function wrappedDelta(a, b, p) {
  const d = b - a;
  if (!p || Math.abs(d) <= p / 2) return d;
  return d - p * Math.round(d / p);
}

/**
 * `v` brought into [0, p) (unchanged without a period).
 * @param {number} v @param {number | undefined} p
 */
export function wrapValue(v, p) {
  if (!p) return v;
  const r = v % p;
  return r < 0 ? r + p : r;
}

/** @typedef {{id: Int, type: EntityType, codes: Code[]}} FrameEntity */
/** @typedef {{tick: number, at: number, entities: Map<Int, FrameEntity>}} Frame */
/**
 * One entity as drawn.
 * @typedef {object} DrawnEntity
 * @property {Int} id
 * @property {string} type the type's name
 * @property {Record<string, Value>} values FLOAT fields interpolated, others from the older frame
 * @property {boolean} predicted true for the player's own (predicted) entities
 */

const MAX_TIMESCALE_CHANGE = 0.1;

export class Interpolator {
  /** @param {InterpolatorOptions} options */
  constructor(options) {
    if (!(options.tickRate > 0)) throw new RangeError('tickRate must be positive');
    this.intervalMs = 1000 / options.tickRate;
    this.bufferTicks = options.bufferTicks ?? 2;
    this.jitterFactor = options.jitterFactor ?? 2;
    this.maxExtrapolationMs = options.maxExtrapolationMs ?? this.intervalMs;
    this.capacity = Math.max(4, options.capacity ?? 64);
    const window = options.windowTicks ?? Math.max(10, 2 * options.tickRate);
    this._alpha = 2 / (window + 1);
    /** @type {Frame[]} oldest first */
    this.frames = [];
    /** frames ignored because their tick was not newer than the newest one */
    this.late = 0;
    /** times the render clock jumped forward because it had fallen far behind */
    this.snaps = 0;
    /** the render time, in the server's clock (tick * interval), ms; NaN before the first frame */
    this.renderMs = NaN;
    /** the render clock's speed: 1 +- up to 10% while it converges on the delay */
    this.timescale = 1;
    this._lastNow = NaN;
    this._offsetMean = NaN;
    this._offsetVar = 0;
    this._drift = NaN;
    /** @type {Record<string, number> | null} */
    this.wrap = options.wrap ?? null;
  }

  /** Forget every frame and the clock (a new session). */
  reset() {
    this.frames = [];
    this.renderMs = NaN;
    this._lastNow = NaN;
    this.timescale = 1;
    this._offsetMean = NaN;
    this._offsetVar = 0;
    this._drift = NaN;
  }

  /** Measured jitter: the moving standard deviation of arrival times (ms). */
  get jitterMs() {
    return Math.sqrt(this._offsetVar);
  }

  /** The target delay behind the newest frame: bufferTicks intervals + jitterFactor * jitter (ms). */
  get delayMs() {
    return this.bufferTicks * this.intervalMs + this.jitterFactor * this.jitterMs;
  }

  /** The render time in ticks (fractional); NaN before the first frame. */
  get renderTick() {
    return this.renderMs / this.intervalMs;
  }

  /** Beyond this (ms), a difference is a clock jump, not jitter. */
  _farMs() {
    return Math.max(10 * this.intervalMs, 1000);
  }

  /** @param {number} nowMs */
  _advance(nowMs) {
    if (!(nowMs > this._lastNow)) return;
    const newest = this.frames[this.frames.length - 1];
    const limit = newest.tick * this.intervalMs + this.maxExtrapolationMs;
    const next = this.renderMs + (nowMs - this._lastNow) * this.timescale;
    // never backwards; never further past the newest frame than the extrapolation bound
    this.renderMs = Math.max(this.renderMs, Math.min(next, limit));
    this._lastNow = nowMs;
  }

  /**
   * Add the state of `tick`, received at `arrivalMs`. The entities' codes are copied.
   * @param {number} tick
   * @param {number} arrivalMs
   * @param {Iterable<FrameEntity>} entities
   * @returns {boolean} false if the tick was late (not newer than the newest frame)
   */
  push(tick, arrivalMs, entities) {
    const newest = this.frames[this.frames.length - 1];
    if (newest && tick <= newest.tick) {
      this.late++;
      return false;
    }
    /** @type {Map<Int, FrameEntity>} */
    const copy = new Map();
    for (const e of entities) copy.set(e.id, { id: e.id, type: e.type, codes: e.codes.slice() });
    if (newest) this._advance(arrivalMs);
    this.frames.push({ tick, at: arrivalMs, entities: copy });
    if (this.frames.length > this.capacity) this.frames.shift();

    const remoteMs = tick * this.intervalMs;
    // jitter: moving mean and variance of (arrival - server time); a steady stream has none
    const offset = arrivalMs - remoteMs;
    if (Number.isNaN(this._offsetMean) || Math.abs(offset - this._offsetMean) > this._farMs()) {
      this._offsetMean = offset; // the first frame, or the server's clock moved (not jitter)
    } else {
      const diff = offset - this._offsetMean;
      const incr = this._alpha * diff;
      this._offsetMean += incr;
      this._offsetVar = (1 - this._alpha) * (this._offsetVar + diff * incr);
    }
    if (Number.isNaN(this.renderMs)) {
      this.renderMs = remoteMs - this.delayMs;
      this._lastNow = arrivalMs;
      return true;
    }
    // the render clock's lag behind the newest frame, smoothed, steers its speed
    const lag = remoteMs - this.renderMs;
    this._drift = Number.isNaN(this._drift) ? lag : this._drift + this._alpha * (lag - this._drift);
    const error = this._drift - this.delayMs;
    if (lag - this.delayMs > this._farMs()) {
      this.renderMs = remoteMs - this.delayMs; // far behind (a stall, a fresh snapshot): skip ahead
      this._drift = this.delayMs;
      this.timescale = 1;
      this.snaps++;
      return true;
    }
    const change = Math.min(Math.max(error / (20 * this.intervalMs), -MAX_TIMESCALE_CHANGE), MAX_TIMESCALE_CHANGE);
    this.timescale = 1 + change;
    return true;
  }

  /**
   * The frames around the render time at `nowMs` and the blend between them.
   * `alpha` is above 1 while extrapolating past the newest frame.
   * @param {number} nowMs
   * @returns {{from: Frame, to: Frame, alpha: number, renderTick: number} | null}
   */
  sample(nowMs) {
    const frames = this.frames;
    if (frames.length === 0) return null;
    this._advance(nowMs);
    const t = this.renderTick;
    let i = frames.length - 1;
    while (i > 0 && frames[i].tick > t) i--;
    // frames older than the one before `from` are not needed any more
    if (i > 1) {
      frames.splice(0, i - 1);
      i = 1;
    }
    const from = frames[i];
    if (t <= from.tick) return { from, to: from, alpha: 0, renderTick: t };
    if (i + 1 < frames.length) {
      const to = frames[i + 1];
      return { from, to, alpha: (t - from.tick) / (to.tick - from.tick), renderTick: t };
    }
    if (i === 0) return { from, to: from, alpha: 0, renderTick: t };
    const prev = frames[i - 1];
    return { from: prev, to: from, alpha: 1 + (t - from.tick) / (from.tick - prev.tick), renderTick: t };
  }

  /**
   * What to draw at `nowMs`: every entity of the frame at the render time (unless `skip`
   * says it is drawn otherwise), its FLOAT fields blended towards the next frame.
   * @param {number} nowMs
   * @param {(id: Int) => boolean} [skip]
   * @returns {DrawnEntity[]}
   */
  view(nowMs, skip) {
    const s = this.sample(nowMs);
    if (!s) return [];
    const { from, to, alpha } = s;
    // while extrapolating, `from` is the frame before the newest: draw what the newest holds
    const shown = alpha > 1 ? to : from;
    /** @type {DrawnEntity[]} */
    const out = [];
    for (const e of shown.entities.values()) {
      if (skip && skip(e.id)) continue;
      const values = e.type.valuesFor(e.codes);
      const a = from.entities.get(e.id);
      const b = to.entities.get(e.id);
      if (a && b && a !== b && a.type === b.type && alpha > 0) {
        const fields = e.type.fields;
        const wrap = this.wrap;
        for (let i = 0; i < fields.length; i++) {
          const f = fields[i];
          if (f.kind !== FieldKind.FLOAT) continue;
          const va = /** @type {number} */ (f.toValue(a.codes[i]));
          const vb = /** @type {number} */ (f.toValue(b.codes[i]));
          if (wrap && wrap[f.name]) {
            const p = wrap[f.name];
            values[f.name] = wrapValue(va + wrappedDelta(va, vb, p) * alpha, p);
          } else {
            values[f.name] = va + (vb - va) * alpha;
          }
        }
      }
      out.push({ id: e.id, type: e.type.name, values, predicted: false });
    }
    return out;
  }
}
