// Typed schemas (docs/protocol.md, "Field kinds" and "Schema descriptors"; shared/schema.py):
// field kinds, how each packs a wire code, float quantization, and the descriptors in JOINED.
//
// Every field value travels as its wire code: a boolean, an integer (number, or BigInt beyond
// 2^53 for VARUINT/VARINT), a string, or for FLOAT the quantized step number. Codes are what
// the replica holds and checksums cover; values are what a game reads (floats dequantized).

import { LocalProtocolError, RemoteProtocolError } from './errors.js';
import { MAX_FIELDS, MAX_NAME_BYTES, MAX_STRING_FIELD_BYTES, MAX_TYPES } from './protocol.js';
import { Reader, Writer, normalizeInt, roundHalfEven, utf8 } from './wire.js';

/** @typedef {import('./wire.js').Int} Int */
/** A wire code. @typedef {boolean | number | bigint | string} Code */
/** A game value: a code with floats dequantized. @typedef {boolean | number | bigint | string} Value */
/** @typedef {'BOOL'|'U8'|'U16'|'U32'|'I8'|'I16'|'I32'|'VARUINT'|'VARINT'|'FLOAT'|'STRING'} KindName */

/** The kind byte of each field kind. */
export const FieldKind = Object.freeze({
  BOOL: 0,
  U8: 1,
  U16: 2,
  U32: 3,
  I8: 4,
  I16: 5,
  I32: 6,
  VARUINT: 7,
  VARINT: 8,
  FLOAT: 9,
  STRING: 10,
});

/** @type {KindName[]} */
const KIND_NAMES = ['BOOL', 'U8', 'U16', 'U32', 'I8', 'I16', 'I32', 'VARUINT', 'VARINT', 'FLOAT', 'STRING'];
/** [min, max] of the fixed-width integer kinds, by kind byte. */
const INT_RANGES = [null, [0, 255], [0, 65535], [0, 4294967295], [-128, 127], [-32768, 32767], [-2147483648, 2147483647]];
const U64_MAX = (1n << 64n) - 1n;
const I64_MIN = -(1n << 63n);
const I64_MAX = (1n << 63n) - 1n;
const IDENTIFIER = /^[\p{XID_Start}_][\p{XID_Continue}]*$/u;

/**
 * Parameters of a FLOAT (`lo`, `hi`, `precision`) or a STRING (`maxBytes`) field.
 * @typedef {object} FieldParams
 * @property {number} [lo]
 * @property {number} [hi]
 * @property {number} [precision]
 * @property {number} [maxBytes]
 */

/** One named, typed field of an entity type or of the input schema. */
export class Field {
  /**
   * @param {string} name
   * @param {KindName | number} kind a kind name or kind byte
   * @param {FieldParams} [params]
   */
  constructor(name, kind, params = {}) {
    const k = typeof kind === 'number' ? kind : FieldKind[kind];
    if (!(k >= 0 && k <= 10) || !Number.isInteger(k)) throw new LocalProtocolError(`unknown field kind ${kind}`);
    /** @readonly */ this.name = name;
    /** @readonly the kind byte */ this.kind = k;
    /** @readonly @type {KindName} */ this.kindName = KIND_NAMES[k];
    /** FLOAT: bounds and step; steps = round((hi - lo) / precision); width in bytes (1-4). */
    this.lo = 0;
    this.hi = 0;
    this.precision = 0;
    this.steps = 0;
    this.width = 0;
    /** STRING: the limit in UTF-8 bytes. */
    this.maxBytes = 0;
    /** @type {Code} the code of a newly spawned entity's unset field */
    this.defaultCode = k === FieldKind.BOOL ? false : k === FieldKind.STRING ? '' : 0;
    if (k === FieldKind.FLOAT) {
      const { lo = NaN, hi = NaN, precision = NaN } = params;
      if (!(Number.isFinite(lo) && Number.isFinite(hi) && Number.isFinite(precision))) {
        throw new LocalProtocolError('FLOAT bounds and precision must be finite');
      }
      if (!(precision > 0) || !(hi > lo)) throw new LocalProtocolError('FLOAT needs precision > 0 and hi > lo');
      const ratio = (hi - lo) / precision;
      if (!Number.isFinite(ratio)) throw new LocalProtocolError('FLOAT range / precision overflows');
      const steps = roundHalfEven(ratio);
      if (steps >= 2 ** 32) throw new LocalProtocolError(`FLOAT needs ${steps} steps; at most 2^32 are allowed`);
      this.lo = lo;
      this.hi = hi;
      this.precision = precision;
      this.steps = steps;
      this.width = steps < 2 ** 8 ? 1 : steps < 2 ** 16 ? 2 : steps < 2 ** 24 ? 3 : 4;
    } else if (k === FieldKind.STRING) {
      const { maxBytes = 32 } = params;
      if (!(Number.isInteger(maxBytes) && maxBytes > 0 && maxBytes <= MAX_STRING_FIELD_BYTES)) {
        throw new LocalProtocolError(`STRING maxBytes must be 1..${MAX_STRING_FIELD_BYTES}`);
      }
      this.maxBytes = maxBytes;
    } else if (k >= FieldKind.U8 && k <= FieldKind.I32) {
      this.width = k === FieldKind.U8 || k === FieldKind.I8 ? 1 : k === FieldKind.U16 || k === FieldKind.I16 ? 2 : 4;
    }
    Object.freeze(this);
  }

  /**
   * Validate a game value and return its wire code (floats are quantized and clamped).
   * @param {unknown} value
   * @returns {Code}
   */
  toCode(value) {
    const k = this.kind;
    if (k === FieldKind.FLOAT) {
      const v = typeof value === 'bigint' ? Number(value) : value;
      if (typeof v !== 'number') throw new LocalProtocolError(`${this.name} needs a number, got ${String(value)}`);
      const x = (v - this.lo) / this.precision;
      if (Number.isNaN(x)) throw new LocalProtocolError(`${this.name} is NaN`);
      if (x >= this.steps) return this.steps;
      return x > 0 ? roundHalfEven(x) : 0;
    }
    if (k === FieldKind.BOOL) return Boolean(value);
    if (k === FieldKind.STRING) {
      if (typeof value !== 'string') throw new LocalProtocolError(`${this.name} needs a string, got ${String(value)}`);
      const n = utf8(value).length;
      if (n > this.maxBytes) throw new LocalProtocolError(`${this.name}: string of ${n} bytes exceeds ${this.maxBytes}`);
      return value;
    }
    if (typeof value === 'number' ? !Number.isInteger(value) : typeof value !== 'bigint') {
      throw new LocalProtocolError(`${this.name} needs an integer, got ${String(value)}`);
    }
    if (k === FieldKind.VARUINT || k === FieldKind.VARINT) {
      const big = BigInt(/** @type {number | bigint} */ (value));
      const [min, max] = k === FieldKind.VARUINT ? [0n, U64_MAX] : [I64_MIN, I64_MAX];
      if (big < min || big > max) throw new LocalProtocolError(`${this.name} value ${value} outside [${min}, ${max}]`);
      return normalizeInt(big);
    }
    const range = /** @type {number[]} */ (INT_RANGES[k]);
    const n = Number(value);
    if (n < range[0] || n > range[1]) throw new LocalProtocolError(`${this.name} value ${value} outside [${range[0]}, ${range[1]}]`);
    return n;
  }

  /**
   * The code an input field takes when a client leaves it out: zero, false or '' (for a
   * FLOAT whose range excludes 0, the bound nearest to it), as the server's schema says.
   * @returns {Code}
   */
  neutralCode() {
    return this.kind === FieldKind.FLOAT ? this.toCode(0) : this.defaultCode;
  }

  /**
   * The game value of a code: FLOAT codes dequantize to lo + code * precision.
   * @param {Code} code
   * @returns {Value}
   */
  toValue(code) {
    return this.kind === FieldKind.FLOAT ? this.lo + /** @type {number} */ (code) * this.precision : code;
  }

  /**
   * The descriptor of this field, as in docs/protocol.md: name, kind byte, params.
   * @param {Writer} w
   */
  describe(w) {
    w.string(this.name, MAX_NAME_BYTES);
    w.u8(this.kind);
    if (this.kind === FieldKind.FLOAT) {
      w.f64(this.lo);
      w.f64(this.hi);
      w.f64(this.precision);
    } else if (this.kind === FieldKind.STRING) {
      w.varint(this.maxBytes);
    }
  }
}

/**
 * Read one field's code.
 * @param {Reader} r
 * @param {Field} f
 * @returns {Code}
 */
export function readCode(r, f) {
  switch (f.kind) {
    case FieldKind.U8:
      return r.u8();
    case FieldKind.U16:
      return r.u16();
    case FieldKind.FLOAT: {
      const q = r.uint(f.width);
      if (q > f.steps) throw new RemoteProtocolError(`float code ${q} above ${f.steps} steps`);
      return q;
    }
    case FieldKind.VARUINT:
      return r.varint();
    case FieldKind.VARINT:
      return r.svarint();
    case FieldKind.BOOL: {
      const b = r.u8();
      if (b > 1) throw new RemoteProtocolError(`bool field holds ${b}`);
      return b === 1;
    }
    case FieldKind.U32:
      return r.u32();
    case FieldKind.I8: {
      const b = r.u8();
      return b > 127 ? b - 256 : b;
    }
    case FieldKind.I16:
      r.need(2);
      r.pos += 2;
      return r.view.getInt16(r.pos - 2, true);
    case FieldKind.I32:
      r.need(4);
      r.pos += 4;
      return r.view.getInt32(r.pos - 4, true);
    default:
      return r.string(f.maxBytes);
  }
}

/**
 * Write one field's code (a code as toCode returns it).
 * @param {Writer} w
 * @param {Field} f
 * @param {Code} code
 */
export function writeCode(w, f, code) {
  switch (f.kind) {
    case FieldKind.FLOAT:
      w.uint(/** @type {number} */ (code), f.width);
      return;
    case FieldKind.VARUINT:
      w.varint(/** @type {Int} */ (code));
      return;
    case FieldKind.VARINT:
      w.svarint(/** @type {Int} */ (code));
      return;
    case FieldKind.BOOL:
      w.u8(code ? 1 : 0);
      return;
    case FieldKind.STRING:
      w.string(/** @type {string} */ (code), f.maxBytes);
      return;
    case FieldKind.U8:
    case FieldKind.U16:
    case FieldKind.U32:
      w.uint(/** @type {number} */ (code), f.width);
      return;
    default:
      w.int(/** @type {number} */ (code), f.width);
  }
}

/** An ordered list of named, typed fields (an entity type's, or the input schema's). */
export class FieldList {
  /** @param {Field[]} fields */
  constructor(fields) {
    if (fields.length > MAX_FIELDS) throw new LocalProtocolError(`at most ${MAX_FIELDS} fields`);
    /** @type {Map<string, number>} field name -> index (its bit in a field mask) */
    this.index = new Map();
    for (const f of fields) {
      if (!IDENTIFIER.test(f.name) || f.name.startsWith('_')) {
        throw new LocalProtocolError(`field name ${JSON.stringify(f.name)} must be a public identifier`);
      }
      if (this.index.has(f.name)) throw new LocalProtocolError(`duplicate field name ${JSON.stringify(f.name)}`);
      this.index.set(f.name, this.index.size);
    }
    /** @readonly */ this.fields = Object.freeze([...fields]);
    /** @readonly */ this.names = Object.freeze(fields.map((f) => f.name));
    /** bytes of a field mask: ceil(n / 8) */
    this.maskBytes = (fields.length + 7) >> 3;
    /** @type {Code[]} */
    this.defaults = fields.map((f) => f.defaultCode);
  }

  get length() {
    return this.fields.length;
  }

  /**
   * Every field's code, in order.
   * @param {Reader} r
   * @returns {Code[]}
   */
  readCodes(r) {
    const fields = this.fields;
    const codes = new Array(fields.length);
    for (let i = 0; i < fields.length; i++) codes[i] = readCode(r, fields[i]);
    return codes;
  }

  /**
   * @param {Writer} w
   * @param {readonly Code[]} codes every field's code, in order
   */
  writeCodes(w, codes) {
    const fields = this.fields;
    if (codes.length !== fields.length) throw new LocalProtocolError(`${fields.length} codes needed, got ${codes.length}`);
    for (let i = 0; i < fields.length; i++) writeCode(w, fields[i], codes[i]);
  }

  /**
   * Codes for named values; missing fields take their default code.
   * @param {Record<string, unknown>} values
   * @returns {Code[]}
   */
  codesFor(values) {
    for (const name of Object.keys(values)) {
      if (!this.index.has(name)) throw new LocalProtocolError(`unknown field ${JSON.stringify(name)}`);
    }
    return this.fields.map((f) => (f.name in values ? f.toCode(values[f.name]) : f.defaultCode));
  }

  /**
   * Named game values of codes (floats dequantized).
   * @param {readonly Code[]} codes
   * @returns {Record<string, Value>}
   */
  valuesFor(codes) {
    /** @type {Record<string, Value>} */
    const out = {};
    const fields = this.fields;
    for (let i = 0; i < fields.length; i++) out[fields[i].name] = fields[i].toValue(codes[i]);
    return out;
  }

  /** @param {Writer} w */
  describe(w) {
    w.varint(this.fields.length);
    for (const f of this.fields) f.describe(w);
  }

  /**
   * Read a field_list descriptor.
   * @param {Reader} r
   * @returns {Field[]}
   */
  static readFields(r) {
    const n = r.varint();
    if (typeof n !== 'number' || n > MAX_FIELDS) throw new RemoteProtocolError(`schema declares ${n} fields; at most ${MAX_FIELDS}`);
    /** @type {Field[]} */
    const fields = [];
    const seen = new Set();
    for (let i = 0; i < n; i++) {
      const name = r.string(MAX_NAME_BYTES);
      if (!IDENTIFIER.test(name) || name.startsWith('_') || seen.has(name)) {
        throw new RemoteProtocolError(`bad field name ${JSON.stringify(name)} in schema`);
      }
      seen.add(name);
      const kind = r.u8();
      if (kind > FieldKind.STRING) throw new RemoteProtocolError('unknown field kind in schema');
      /** @type {FieldParams} */
      const params = {};
      if (kind === FieldKind.FLOAT) {
        params.lo = r.f64();
        params.hi = r.f64();
        params.precision = r.f64();
      } else if (kind === FieldKind.STRING) {
        const max = r.varint();
        params.maxBytes = typeof max === 'number' ? max : -1;
      }
      try {
        fields.push(new Field(name, kind, params));
      } catch (e) {
        if (e instanceof LocalProtocolError) throw new RemoteProtocolError(`bad field parameters in schema: ${e.message}`);
        throw e;
      }
    }
    return fields;
  }
}

/** A kind of entity: a name and typed fields. Its `typeId` is its index in the Schema. */
export class EntityType extends FieldList {
  /**
   * @param {string} name
   * @param {Field[]} fields
   * @param {number} typeId
   */
  constructor(name, fields, typeId) {
    super(fields);
    /** @readonly */ this.name = name;
    /** @readonly */ this.typeId = typeId;
  }
}

/** The entity types of a game, in order (the order gives each its type id). */
export class Schema {
  /**
   * @param {Array<{name: string, fields: Field[]}>} types
   */
  constructor(types) {
    if (!(types.length > 0 && types.length <= MAX_TYPES)) throw new LocalProtocolError(`a schema has 1..${MAX_TYPES} entity types`);
    /** @readonly */ this.types = Object.freeze(types.map((t, i) => new EntityType(t.name, t.fields, i)));
    /** @type {Map<string, EntityType>} */
    this.byName = new Map();
    for (const t of this.types) this.byName.set(t.name, t); // the last of a repeated name, as in Python
  }

  /**
   * @param {number} typeId
   * @returns {EntityType}
   */
  typeFor(typeId) {
    const t = this.types[typeId];
    if (t === undefined) throw new RemoteProtocolError(`unknown entity type ${typeId}`);
    return t;
  }

  /** @param {Writer} w */
  write(w) {
    w.varint(this.types.length);
    for (const t of this.types) {
      w.string(t.name, MAX_NAME_BYTES);
      t.describe(w);
    }
  }

  /** The descriptor bytes. */
  toBytes() {
    const w = new Writer();
    this.write(w);
    return w.finish();
  }

  /**
   * @param {Reader} r
   * @returns {Schema}
   */
  static read(r) {
    const n = r.varint();
    if (!(typeof n === 'number' && n > 0 && n <= MAX_TYPES)) throw new RemoteProtocolError(`schema declares ${n} entity types`);
    const types = [];
    for (let i = 0; i < n; i++) {
      const name = r.string(MAX_NAME_BYTES);
      const fields = FieldList.readFields(r);
      try {
        types.push({ name, fields: new FieldList(fields).fields.slice() });
      } catch (e) {
        if (e instanceof LocalProtocolError) throw new RemoteProtocolError(`bad entity type in schema: ${e.message}`);
        throw e;
      }
    }
    return new Schema(types);
  }
}

/** The fields of one INPUT message, all sent every time, in order. */
export class InputSchema extends FieldList {
  /**
   * Codes for named values; a missing field takes its neutral code (zero, false or ''; a
   * FLOAT whose range excludes 0 takes the bound nearest to it).
   * @override
   * @param {Record<string, unknown>} values
   * @returns {Code[]}
   */
  codesFor(values) {
    for (const name of Object.keys(values)) {
      if (!this.index.has(name)) throw new LocalProtocolError(`unknown input field ${JSON.stringify(name)}`);
    }
    return this.fields.map((f) => (f.name in values ? f.toCode(values[f.name]) : f.neutralCode()));
  }

  /** The descriptor bytes. */
  toBytes() {
    const w = new Writer();
    this.describe(w);
    return w.finish();
  }

  /**
   * @param {Reader} r
   * @returns {InputSchema}
   */
  static read(r) {
    return new InputSchema(FieldList.readFields(r));
  }
}
