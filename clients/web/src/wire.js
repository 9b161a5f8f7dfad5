// Primitive encodings of gamesync.v1 (docs/protocol.md, "Primitive encodings"; shared/wire.py):
// little-endian fixed-width integers, LEB128 varints, zigzag svarints, length-prefixed UTF-8
// strings and byte strings, f64, and CRC-32.
//
// Integers are JS numbers while they are safe (|n| <= 2^53 - 1) and BigInt beyond: a decoder
// returns a number whenever the value fits one, so a value has exactly one representation.

import { LocalProtocolError, RemoteProtocolError } from './errors.js';
import { MAX_VARINT_BYTES } from './protocol.js';

/** An integer code: a number while it is a safe integer, a BigInt beyond. @typedef {number | bigint} Int */

const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);
const MIN_SAFE = -MAX_SAFE;
const U64_LIMIT = 1n << 64n;
const I64_MIN = -(1n << 63n);
const I64_MAX = (1n << 63n) - 1n;

/**
 * A BigInt as a number when it is safe, else as it is.
 * @param {bigint} value
 * @returns {Int}
 */
export function normalizeInt(value) {
  return value <= MAX_SAFE && value >= MIN_SAFE ? Number(value) : value;
}

/**
 * Round half to even, as Python's round() does for a float (exact for every double).
 * @param {number} x
 */
export function roundHalfEven(x) {
  const f = Math.floor(x);
  const d = x - f; // exact
  if (d < 0.5) return f;
  if (d > 0.5) return f + 1;
  return f % 2 === 0 ? f : f + 1;
}

const utf8Decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/**
 * The UTF-8 bytes of a string; a lone surrogate cannot be encoded (as in Python).
 * @param {string} text
 * @returns {Uint8Array}
 */
export function utf8(text) {
  const out = new Uint8Array(text.length * 3);
  const n = encodeUtf8Into(text, out, 0);
  return out.slice(0, n);
}

/**
 * Write the UTF-8 of `text` at `pos` (room for 3 bytes per UTF-16 unit); returns the end.
 * @param {string} text
 * @param {Uint8Array} out
 * @param {number} pos
 */
function encodeUtf8Into(text, out, pos) {
  for (let i = 0; i < text.length; i++) {
    let c = text.charCodeAt(i);
    if (c < 0x80) {
      out[pos++] = c;
    } else if (c < 0x800) {
      out[pos++] = 0xc0 | (c >> 6);
      out[pos++] = 0x80 | (c & 0x3f);
    } else if (c >= 0xd800 && c <= 0xdfff) {
      const d = i + 1 < text.length ? text.charCodeAt(i + 1) : 0;
      if (c > 0xdbff || d < 0xdc00 || d > 0xdfff) {
        throw new LocalProtocolError('string holds a lone surrogate, which UTF-8 cannot encode');
      }
      i++;
      c = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00);
      out[pos++] = 0xf0 | (c >> 18);
      out[pos++] = 0x80 | ((c >> 12) & 0x3f);
      out[pos++] = 0x80 | ((c >> 6) & 0x3f);
      out[pos++] = 0x80 | (c & 0x3f);
    } else {
      out[pos++] = 0xe0 | (c >> 12);
      out[pos++] = 0x80 | ((c >> 6) & 0x3f);
      out[pos++] = 0x80 | (c & 0x3f);
    }
  }
  return pos;
}

/**
 * Strictly decode UTF-8 (no surrogates, no overlong forms); throws RemoteProtocolError.
 * @param {Uint8Array} bytes
 * @param {number} start
 * @param {number} end
 */
export function decodeUtf8(bytes, start, end) {
  if (end - start <= 32) {
    let s = '';
    for (let i = start; i < end; i++) {
      const c = bytes[i];
      if (c >= 0x80) return decodeUtf8Slow(bytes, start, end);
      s += String.fromCharCode(c);
    }
    return s;
  }
  return decodeUtf8Slow(bytes, start, end);
}

/** @param {Uint8Array} bytes @param {number} start @param {number} end */
function decodeUtf8Slow(bytes, start, end) {
  try {
    return utf8Decoder.decode(bytes.subarray(start, end));
  } catch {
    throw new RemoteProtocolError('string is not valid UTF-8');
  }
}

// ---------------------------------------------------------------- reading

/** Reads primitives from one message; every overrun throws RemoteProtocolError (1007). */
export class Reader {
  /**
   * @param {Uint8Array} bytes
   * @param {number} [pos]
   */
  constructor(bytes, pos = 0) {
    this.bytes = bytes;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.pos = pos;
    this.end = bytes.length;
  }

  expectEnd() {
    if (this.pos !== this.end) {
      throw new RemoteProtocolError(`${this.end - this.pos} trailing bytes after message`);
    }
  }

  /** @param {number} n */
  need(n) {
    if (this.pos + n > this.end) throw new RemoteProtocolError('message truncated');
  }

  u8() {
    const pos = this.pos;
    if (pos >= this.end) throw new RemoteProtocolError('message truncated');
    this.pos = pos + 1;
    return this.bytes[pos];
  }

  u16() {
    const pos = this.pos;
    if (pos + 2 > this.end) throw new RemoteProtocolError('message truncated');
    this.pos = pos + 2;
    return this.view.getUint16(pos, true);
  }

  u32() {
    const pos = this.pos;
    if (pos + 4 > this.end) throw new RemoteProtocolError('message truncated');
    this.pos = pos + 4;
    return this.view.getUint32(pos, true);
  }

  /**
   * An unsigned little-endian integer of 0 to 4 bytes.
   * @param {number} width
   */
  uint(width) {
    const pos = this.pos;
    if (pos + width > this.end) throw new RemoteProtocolError('message truncated');
    this.pos = pos + width;
    const b = this.bytes;
    switch (width) {
      case 0:
        return 0;
      case 1:
        return b[pos];
      case 2:
        return b[pos] | (b[pos + 1] << 8);
      case 3:
        return b[pos] | (b[pos + 1] << 8) | (b[pos + 2] << 16);
      default:
        return this.view.getUint32(pos, true);
    }
  }

  /**
   * Unsigned LEB128 below 2^64, at most 10 bytes (non-minimal forms are tolerated).
   * @returns {Int}
   */
  varint() {
    const b = this.bytes;
    const end = this.end;
    let pos = this.pos;
    let result = 0;
    let mul = 1;
    for (let i = 0; i < 7; i++) {
      // up to 49 bits: exact as a double
      if (pos >= end) throw new RemoteProtocolError('message truncated inside a varint');
      const x = b[pos++];
      result += (x & 0x7f) * mul;
      if (x < 0x80) {
        this.pos = pos;
        return result;
      }
      mul *= 128;
    }
    let big = BigInt(result);
    let shift = 49n;
    for (let i = 7; i < MAX_VARINT_BYTES; i++) {
      if (pos >= end) throw new RemoteProtocolError('message truncated inside a varint');
      const x = b[pos++];
      big |= BigInt(x & 0x7f) << shift;
      if (x < 0x80) {
        this.pos = pos;
        if (big >= U64_LIMIT) throw new RemoteProtocolError('varint exceeds 64 bits');
        return normalizeInt(big);
      }
      shift += 7n;
    }
    throw new RemoteProtocolError('varint longer than 10 bytes');
  }

  /**
   * A varint used as a count or length: it must not exceed the message's length.
   * @param {string} what
   */
  count(what = 'item count') {
    const n = this.varint();
    if (typeof n !== 'number' || n > this.end) {
      throw new RemoteProtocolError(`${what} exceeds message size`);
    }
    return n;
  }

  /** Zigzag varint. @returns {Int} */
  svarint() {
    const zz = this.varint();
    if (typeof zz === 'number') return zz % 2 === 0 ? zz / 2 : -(zz + 1) / 2;
    return normalizeInt((zz >> 1n) ^ -(zz & 1n));
  }

  f64() {
    const pos = this.pos;
    if (pos + 8 > this.end) throw new RemoteProtocolError('message truncated');
    this.pos = pos + 8;
    return this.view.getFloat64(pos, true);
  }

  /**
   * `n` raw bytes (a copy, so the message's buffer is not kept alive).
   * @param {number} n
   */
  raw(n) {
    const pos = this.pos;
    if (pos + n > this.end) throw new RemoteProtocolError('message truncated');
    this.pos = pos + n;
    return this.bytes.slice(pos, pos + n);
  }

  /**
   * A length-prefixed byte string of at most `max` bytes.
   * @param {number} max
   */
  blob(max) {
    const n = this.varint();
    if (typeof n !== 'number' || n > max) {
      throw new RemoteProtocolError(`byte string of ${n} bytes exceeds limit ${max}`);
    }
    return this.raw(n);
  }

  /**
   * A length-prefixed UTF-8 string of at most `max` bytes (checked before reading them).
   * @param {number} max
   */
  string(max) {
    const n = this.varint();
    if (typeof n !== 'number' || n > max) {
      throw new RemoteProtocolError(`string of ${n} bytes exceeds limit ${max}`);
    }
    const pos = this.pos;
    if (pos + n > this.end) throw new RemoteProtocolError('message truncated');
    this.pos = pos + n;
    return decodeUtf8(this.bytes, pos, pos + n);
  }
}

// ---------------------------------------------------------------- writing

/** A growable byte buffer with the primitive encoders. Reuse one with reset(). */
export class Writer {
  constructor(capacity = 256) {
    this.buf = new Uint8Array(capacity);
    this.view = new DataView(this.buf.buffer);
    this.pos = 0;
  }

  reset() {
    this.pos = 0;
    return this;
  }

  /** @param {number} n */
  ensure(n) {
    if (this.pos + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.pos + n) size *= 2;
    const buf = new Uint8Array(size);
    buf.set(this.buf.subarray(0, this.pos));
    this.buf = buf;
    this.view = new DataView(buf.buffer);
  }

  /** A copy of the bytes written. */
  finish() {
    return this.buf.slice(0, this.pos);
  }

  /** @param {number} v */
  u8(v) {
    this.ensure(1);
    this.buf[this.pos++] = v;
  }

  /** @param {number} v */
  u16(v) {
    this.ensure(2);
    this.view.setUint16(this.pos, v, true);
    this.pos += 2;
  }

  /** @param {number} v */
  u32(v) {
    this.ensure(4);
    this.view.setUint32(this.pos, v, true);
    this.pos += 4;
  }

  /**
   * An unsigned little-endian integer of `width` (1-4) bytes.
   * @param {number} v
   * @param {number} width
   */
  uint(v, width) {
    if (this.pos + width > this.buf.length) this.ensure(width);
    const b = this.buf;
    let pos = this.pos;
    if (width <= 4) {
      // v < 2^32: the shifts see its exact low 32 bits
      for (let i = 0; i < width; i++, v >>>= 8) b[pos++] = v & 0xff;
    } else {
      for (let i = 0; i < width; i++, v = Math.floor(v / 256)) b[pos++] = v % 256;
    }
    this.pos = pos;
  }

  /**
   * A signed little-endian integer of `width` (1, 2 or 4) bytes, two's complement.
   * @param {number} v
   * @param {number} width
   */
  int(v, width) {
    this.ensure(width);
    if (width === 1) this.view.setInt8(this.pos, v);
    else if (width === 2) this.view.setInt16(this.pos, v, true);
    else this.view.setInt32(this.pos, v, true);
    this.pos += width;
  }

  /**
   * Unsigned LEB128 of an integer in [0, 2^64).
   * @param {Int} v
   * @returns {void}
   */
  varint(v) {
    if (typeof v === 'number' && v >= 0 && v < 0x80 && Number.isInteger(v)) {
      if (this.pos >= this.buf.length) this.ensure(1);
      this.buf[this.pos++] = v;
      return;
    }
    if (typeof v === 'number') {
      if (!Number.isSafeInteger(v) || v < 0) {
        if (Number.isInteger(v) && v > 0) return this.varint(BigInt(v));
        throw new LocalProtocolError(`varint needs a non-negative integer, got ${v}`);
      }
      this.ensure(8);
      const b = this.buf;
      while (v >= 0x80) {
        b[this.pos++] = (v % 128) | 0x80;
        v = Math.floor(v / 128);
      }
      b[this.pos++] = v;
      return;
    }
    if (v < 0n || v >= U64_LIMIT) throw new LocalProtocolError(`varint out of range: ${v}`);
    this.ensure(MAX_VARINT_BYTES);
    const b = this.buf;
    while (v >= 0x80n) {
      b[this.pos++] = Number(v & 0x7fn) | 0x80;
      v >>= 7n;
    }
    b[this.pos++] = Number(v);
  }

  /**
   * Zigzag varint of an integer in [-2^63, 2^63).
   * @param {Int} v
   */
  svarint(v) {
    if (typeof v === 'number' && Number.isSafeInteger(v)) {
      // 2v or -2v-1 stays exact below 2^54; varint() switches to BigInt above 2^53
      const zz = v >= 0 ? 2 * v : -2 * v - 1;
      if (Number.isSafeInteger(zz)) return this.varint(zz);
    }
    if (typeof v === 'number' && !Number.isInteger(v)) {
      throw new LocalProtocolError(`svarint needs an integer, got ${v}`);
    }
    const big = BigInt(v);
    if (big < I64_MIN || big > I64_MAX) throw new LocalProtocolError(`svarint out of range: ${v}`);
    this.varint(big >= 0n ? big << 1n : ((-big) << 1n) - 1n);
  }

  /** @param {number} v */
  f64(v) {
    this.ensure(8);
    this.view.setFloat64(this.pos, v, true);
    this.pos += 8;
  }

  /** @param {Uint8Array} bytes */
  raw(bytes) {
    this.ensure(bytes.length);
    this.buf.set(bytes, this.pos);
    this.pos += bytes.length;
  }

  /**
   * A length-prefixed byte string of at most `max` bytes.
   * @param {Uint8Array} bytes
   * @param {number} max
   */
  blob(bytes, max) {
    if (bytes.length > max) {
      throw new LocalProtocolError(`byte string of ${bytes.length} bytes exceeds ${max}`);
    }
    this.varint(bytes.length);
    this.raw(bytes);
  }

  /**
   * A length-prefixed UTF-8 string of at most `max` bytes.
   * @param {string} text
   * @param {number} max
   */
  string(text, max) {
    let ascii = text.length <= 127;
    for (let i = 0; ascii && i < text.length; i++) ascii = text.charCodeAt(i) < 0x80;
    if (ascii) {
      if (text.length > max) {
        throw new LocalProtocolError(`string of ${text.length} bytes exceeds ${max}`);
      }
      this.ensure(1 + text.length);
      const b = this.buf;
      b[this.pos++] = text.length;
      for (let i = 0; i < text.length; i++) b[this.pos++] = text.charCodeAt(i);
      return;
    }
    const bytes = utf8(text);
    if (bytes.length > max) {
      throw new LocalProtocolError(`string of ${bytes.length} bytes exceeds ${max}`);
    }
    this.varint(bytes.length);
    this.raw(bytes);
  }
}

// ---------------------------------------------------------------- CRC-32

const CRC_TABLE = (() => {
  const table = new Int32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c;
  }
  return table;
})();

/**
 * CRC-32 (IEEE 802.3, as zlib's crc32) of bytes[start:end], continuing from `crc`.
 * @param {Uint8Array} bytes
 * @param {number} [start]
 * @param {number} [end]
 * @param {number} [crc]
 * @returns {number} an unsigned 32-bit value
 */
export function crc32(bytes, start = 0, end = bytes.length, crc = 0) {
  let c = ~crc;
  const t = CRC_TABLE;
  for (let i = start; i < end; i++) c = t[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return ~c >>> 0;
}

/**
 * Bytes from lowercase or uppercase hex (for tests and tools).
 * @param {string} hex
 */
export function fromHex(hex) {
  if (hex.length % 2 !== 0 || /[^0-9a-fA-F]/.test(hex)) throw new Error(`not hex: ${hex}`);
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}

/**
 * Lowercase hex of bytes.
 * @param {Uint8Array} bytes
 */
export function toHex(bytes) {
  let s = '';
  for (let i = 0; i < bytes.length; i++) s += bytes[i].toString(16).padStart(2, '0');
  return s;
}
