// The message codec of gamesync.v1 and gamesync.v2 (docs/protocol.md, "Messages";
// shared/messages.py), both directions: a client encodes JOIN/LEAVE/INPUT/EVENT (and v2's
// RESUME/RESYNC) and decodes the server's messages; the other halves exist for tests, tools and
// servers written in JavaScript. v1 bytes are exactly what they were: v2 adds two client kinds,
// a longer JOINED (with the RESUMED and VIEW flags) and a BASE flag on DELTA.

import { LocalProtocolError, RemoteProtocolError } from './errors.js';
import {
  DELTA_BASE,
  DELTA_CHECKSUM,
  JOINED_RESUMED,
  JOINED_VIEW,
  JOIN_PRIVATE,
  Kind,
  MAX_EVENT_DATA_BYTES,
  MAX_MESSAGE_TEXT_BYTES,
  MAX_NAME_BYTES,
  MAX_PLAYER_NAME_BYTES,
  MAX_RESUME_TOKEN_BYTES,
  MAX_TOKEN_BYTES,
  MAX_URL_BYTES,
  PROTOCOL_VERSION,
} from './protocol.js';
import { readDeltaV3, readMotion } from './delta_v3.js';
import { EntityType, InputSchema, Schema, readCode, writeCode } from './schema.js';
import { Reader, Writer, utf8 } from './wire.js';

/** @typedef {import('./wire.js').Int} Int */
/** @typedef {import('./schema.js').Code} Code */

/**
 * @typedef {object} Join
 * @property {'JOIN'} kind
 * @property {number} version
 * @property {string} room a room name or a private room id; ignored with `private`
 * @property {string} game '' = the server's default game
 * @property {string} name used only by a server without authentication
 * @property {string} token the player's signed token
 * @property {boolean} private create a new private room
 */
/** @typedef {{kind: 'LEAVE'}} Leave */
/** @typedef {{kind: 'INPUT', seq: Int, codes: Code[]}} Input */
/** @typedef {{kind: 'EVENT', name: string, data: Uint8Array}} Event */
/**
 * v2: the first message of a connection that takes a held seat back, instead of JOIN.
 * @typedef {object} Resume
 * @property {'RESUME'} kind
 * @property {number} version 2
 * @property {string} room the room of the seat
 * @property {string} token the resume token of the last JOINED
 * @property {Int} haveTick the tick of the client's replica (0 = none: send a snapshot)
 */
/** v2: ask for a fresh SNAPSHOT without leaving (after a desync). @typedef {{kind: 'RESYNC'}} Resync */
/** @typedef {Join | Leave | Input | Event | Resume | Resync} ClientMessage */

/**
 * @typedef {object} Joined
 * @property {'JOINED'} kind
 * @property {number} version
 * @property {Int} player this client's player number
 * @property {string} room the room joined (a new private room's id after a private JOIN)
 * @property {string} game the game running
 * @property {number} tickRate ticks per second
 * @property {Schema} schema decodes SNAPSHOT and DELTA
 * @property {InputSchema} inputSchema encodes INPUT
 * @property {boolean} [resumed] v2: this JOINED answers a RESUME (the same seat); false in v1
 * @property {string} [resumeToken] v2: the token for the next RESUME ('' = this seat cannot be resumed; always '' in v1)
 * @property {number} [seatHoldMs] v2: how long the server holds the seat after the connection is lost (0 in v1)
 * @property {Int} [inputSeq] v2: the last INPUT seq of this player the game applied (0 on a fresh join, and in v1)
 * @property {boolean} [view] v2: the room sends this client its view (interest management): states hold the
 *   entities near the player, in any order, with view checksums and only this client's acks; false in v1
 *   (the decoder always sets these five; an encoder takes them as optional)
 */
/** An entity in full. @typedef {{id: Int, typeId: number, codes: Code[]}} EntityRecord */
/** Changed fields: mask bit i set = field i is in `codes`, in field order. @typedef {{id: Int, mask: Int, codes: Code[]}} EntityPatch */
/** (player, value) pairs. @typedef {Array<[Int, Int]>} Acks */
/**
 * @typedef {object} Snapshot
 * @property {'SNAPSHOT'} kind
 * @property {Int} tick
 * @property {number} checksum
 * @property {Acks} acks (player, last applied input seq; a view room: only this client's)
 * @property {EntityRecord[]} entities ascending id order; a view room: any order
 * @property {EntityPatch[]} [motion] v3: the nonzero velocities of predicted fields (codes = velocities)
 */
/**
 * @typedef {object} Delta
 * @property {'DELTA'} kind
 * @property {Int} tick
 * @property {Int | null} [base] v2: the tick of the state this delta applies to (null or absent: tick - 1)
 * @property {number | null} checksum of the state after this delta, when present
 * @property {Acks} acks (player, increment of its last applied seq; 0 = the player left)
 * @property {EntityRecord[]} created
 * @property {EntityPatch[]} changed
 * @property {Int[]} removed
 * @property {EntityPatch[]} [motion] v3 catch-up deltas: the velocities of the state at `tick` (codes = velocities)
 */
/** @typedef {{kind: 'ROOM_EVENT', sender: Int, name: string, data: Uint8Array}} RoomEvent */
/** @typedef {{kind: 'ERROR', code: number, message: string}} ErrorMessage */
/** @typedef {{kind: 'CLOSE', code: number, reason: string}} CloseMessage */
/** v2: the room lives on another node; connect to `url` and join `room` there. @typedef {{kind: 'REDIRECT', url: string, room: string}} RedirectMessage */
/** @typedef {Joined | Snapshot | Delta | RoomEvent | ErrorMessage | CloseMessage | RedirectMessage} ServerMessage */
/** The type of an entity the receiver holds (throws DesyncError if it holds none). @typedef {(id: Int) => EntityType} TypeOf */

const EMPTY = new Uint8Array(0);

// ---------------------------------------------------------------- client -> server

/**
 * JOIN. Fields not given take their defaults (room '', game '', name '', token '', not private).
 * @param {Partial<Omit<Join, 'kind'>>} join
 */
export function encodeJoin(join) {
  const w = new Writer(64 + (join.token ? join.token.length : 0));
  w.u8(Kind.JOIN);
  w.u8(join.version ?? PROTOCOL_VERSION);
  w.u8(join.private ? JOIN_PRIVATE : 0);
  w.string(join.room ?? '', MAX_NAME_BYTES);
  w.string(join.game ?? '', MAX_NAME_BYTES);
  w.string(join.name ?? '', MAX_PLAYER_NAME_BYTES);
  w.string(join.token ?? '', MAX_TOKEN_BYTES);
  return w.finish();
}

export function encodeLeave() {
  return Uint8Array.of(Kind.LEAVE);
}

/**
 * RESUME (v2): take a held seat back.
 * @param {Partial<Omit<Resume, 'kind'>> & {room: string, token: string}} resume
 */
export function encodeResume(resume) {
  const w = new Writer(32 + resume.room.length + resume.token.length);
  w.u8(Kind.RESUME);
  w.u8(resume.version ?? PROTOCOL_VERSION);
  w.string(resume.room, MAX_NAME_BYTES);
  w.string(resume.token, MAX_RESUME_TOKEN_BYTES);
  w.varint(resume.haveTick ?? 0);
  return w.finish();
}

/** RESYNC (v2): ask for a fresh snapshot. */
export function encodeResync() {
  return Uint8Array.of(Kind.RESYNC);
}

/**
 * INPUT: a sequence number and one code per input field, in order.
 * @param {InputSchema} schema
 * @param {Int} seq
 * @param {readonly Code[]} codes
 * @param {Writer} [w] a writer to reuse
 */
export function encodeInput(schema, seq, codes, w = new Writer(32)) {
  w.reset();
  w.u8(Kind.INPUT);
  w.varint(seq);
  schema.writeCodes(w, codes);
  return w.finish();
}

/**
 * EVENT: a name and an opaque payload (a string is sent as its UTF-8).
 * @param {string} name
 * @param {Uint8Array | string} [data]
 */
export function encodeEvent(name, data = EMPTY) {
  const bytes = typeof data === 'string' ? utf8(data) : data;
  const w = new Writer(8 + bytes.length);
  w.u8(Kind.EVENT);
  w.string(name, MAX_NAME_BYTES);
  w.blob(bytes, MAX_EVENT_DATA_BYTES);
  return w.finish();
}

/**
 * Encode any client message (INPUT needs the input schema).
 * @param {ClientMessage} msg
 * @param {InputSchema} [inputSchema]
 */
export function encodeClientMessage(msg, inputSchema) {
  switch (msg.kind) {
    case 'JOIN':
      return encodeJoin(msg);
    case 'LEAVE':
      return encodeLeave();
    case 'INPUT':
      if (!inputSchema) throw new LocalProtocolError('INPUT needs the input schema');
      return encodeInput(inputSchema, msg.seq, msg.codes);
    case 'EVENT':
      return encodeEvent(msg.name, msg.data);
    case 'RESUME':
      return encodeResume(msg);
    case 'RESYNC':
      return encodeResync();
  }
}

/**
 * A version byte that must be one this codec speaks and, when the connection's version is
 * known, that one (a mismatch is ERROR 1002).
 * @param {number} version
 * @param {number | undefined} negotiated
 */
function checkVersion(version, negotiated) {
  if ((version !== 1 && version !== 2 && version !== 3) || (negotiated !== undefined && version !== negotiated)) {
    throw new RemoteProtocolError(`protocol version ${version} not supported`, 1002);
  }
}

/**
 * Decode a client message (what a server does). INPUT needs the room's input schema.
 * `version` is the connection's negotiated version: with 1, RESUME and RESYNC are unknown kinds
 * and a version byte must be 1; without it, either version is accepted.
 * @param {Uint8Array} bytes
 * @param {InputSchema} [inputSchema]
 * @param {1 | 2 | 3} [version]
 * @returns {ClientMessage}
 */
export function decodeClientMessage(bytes, inputSchema, version) {
  if (bytes.length === 0) throw new RemoteProtocolError('empty message', 1002);
  const r = new Reader(bytes, 1);
  /** @type {ClientMessage} */
  let msg;
  switch (bytes[0]) {
    case Kind.INPUT: {
      if (!inputSchema) throw new RemoteProtocolError('input before joining a room', 1002);
      const seq = r.varint();
      msg = { kind: 'INPUT', seq, codes: inputSchema.readCodes(r) };
      break;
    }
    case Kind.EVENT:
      msg = { kind: 'EVENT', name: r.string(MAX_NAME_BYTES), data: r.blob(MAX_EVENT_DATA_BYTES) };
      break;
    case Kind.JOIN: {
      const v = r.u8();
      checkVersion(v, version);
      const flags = r.u8();
      if (flags & ~JOIN_PRIVATE) throw new RemoteProtocolError(`unknown JOIN flags 0x${flags.toString(16)}`, 1002);
      msg = {
        kind: 'JOIN',
        version: v,
        room: r.string(MAX_NAME_BYTES),
        game: r.string(MAX_NAME_BYTES),
        name: r.string(MAX_PLAYER_NAME_BYTES),
        token: r.string(MAX_TOKEN_BYTES),
        private: (flags & JOIN_PRIVATE) !== 0,
      };
      break;
    }
    case Kind.LEAVE:
      msg = { kind: 'LEAVE' };
      break;
    case Kind.RESUME:
    case Kind.RESYNC:
      if (version === 1) throw new RemoteProtocolError(`unknown client message kind 0x${bytes[0].toString(16)}`, 1002);
      if (bytes[0] === Kind.RESYNC) {
        msg = { kind: 'RESYNC' };
        break;
      }
      {
        const v = r.u8();
        if (v !== 2 && v !== 3) throw new RemoteProtocolError(`protocol version ${v} not supported`, 1002);
        msg = { kind: 'RESUME', version: v, room: r.string(MAX_NAME_BYTES), token: r.string(MAX_RESUME_TOKEN_BYTES), haveTick: r.varint() };
      }
      break;
    default:
      throw new RemoteProtocolError(`unknown client message kind 0x${bytes[0].toString(16)}`, 1002);
  }
  r.expectEnd();
  return msg;
}

// ---------------------------------------------------------------- server -> client

/**
 * @param {Reader} r
 * @returns {Acks}
 */
function readAcks(r) {
  const n = r.count('ack count');
  /** @type {Acks} */
  const acks = new Array(n);
  for (let i = 0; i < n; i++) acks[i] = [r.varint(), r.varint()];
  return acks;
}

/**
 * A full entity record: id, type id, every field.
 * @param {Reader} r
 * @param {Schema} schema
 * @returns {EntityRecord}
 */
export function readRecord(r, schema) {
  const id = r.varint();
  const typeId = r.varint();
  if (typeof typeId !== 'number') throw new RemoteProtocolError(`unknown entity type ${typeId}`);
  const etype = schema.typeFor(typeId);
  return { id, typeId: etype.typeId, codes: etype.readCodes(r) };
}

/**
 * A patch: id, field mask (ceil(n/8) bytes LE), the set fields in order.
 * @param {Reader} r
 * @param {TypeOf} typeOf
 * @returns {EntityPatch}
 */
export function readPatch(r, typeOf) {
  const id = r.varint();
  const etype = typeOf(id);
  const fields = etype.fields;
  const n = fields.length;
  const nb = etype.maskBytes;
  /** @type {Code[]} */
  const codes = [];
  if (nb <= 4) {
    let m = r.uint(nb);
    if (n < 32 && m >>> n !== 0) throw new RemoteProtocolError(`field mask 0x${m.toString(16)} names fields ${etype.name} lacks`);
    const mask = m;
    for (let i = 0; m !== 0; i++, m >>>= 1) if (m & 1) codes.push(readCode(r, fields[i]));
    return { id, mask, codes };
  }
  r.need(nb);
  let mask = 0n;
  for (let j = 0; j < nb; j++) mask |= BigInt(r.bytes[r.pos + j]) << BigInt(8 * j);
  r.pos += nb;
  if (mask >> BigInt(n)) throw new RemoteProtocolError(`field mask 0x${mask.toString(16)} names fields ${etype.name} lacks`);
  for (let i = 0; i < n; i++) if ((mask >> BigInt(i)) & 1n) codes.push(readCode(r, fields[i]));
  return { id, mask: mask <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(mask) : mask, codes };
}

/**
 * Field indexes set in a mask, ascending.
 * @param {Int} mask
 * @returns {number[]}
 */
export function maskBits(mask) {
  const out = [];
  if (typeof mask === 'number' && mask <= 0xffffffff) {
    for (let i = 0, m = mask; m !== 0; i++, m >>>= 1) if (m & 1) out.push(i);
    return out;
  }
  let m = BigInt(mask);
  for (let i = 0; m !== 0n; i++, m >>= 1n) if (m & 1n) out.push(i);
  return out;
}

/**
 * Decode a server message. SNAPSHOT needs the schema; DELTA needs the schema and `typeOf`,
 * the type of an entity the receiver already holds. Throws RemoteProtocolError (its
 * `closeCode` is the code to close with) or DesyncError (a patch for an entity not held).
 * `version` is the connection's negotiated version: with 1, JOINED must be v1 and a DELTA may
 * not have the BASE flag; without it, either version is accepted.
 * @param {Uint8Array} bytes
 * @param {Schema} [schema]
 * @param {TypeOf} [typeOf]
 * @param {1 | 2 | 3} [version]
 * @param {{coding?: 2 | 3, predict?: import('./delta_v3.js').Predict}} [v3] gamesync.v3: the state
 *   coding (default: 3 on a v3 connection; a view room's v3 connection passes 2) and, for a v3
 *   DELTA, `predict(id, i)` (Replica#predicted)
 * @returns {ServerMessage}
 */
export function decodeServerMessage(bytes, schema, typeOf, version, v3 = {}) {
  if (bytes.length === 0) throw new RemoteProtocolError('empty message', 1002);
  const r = new Reader(bytes, 1);
  /** @type {ServerMessage} */
  let msg;
  const kind = bytes[0];
  if (kind === Kind.DELTA || kind === Kind.SNAPSHOT) {
    if (!schema) throw new RemoteProtocolError('state before JOINED', 1002);
    const coding = v3.coding ?? (version === 3 ? 3 : 2);
    if (coding === 3) msg = kind === Kind.DELTA ? readDeltaV3(r, schema, typeOf, v3.predict) : readSnapshot(r, schema, true);
    else msg = kind === Kind.DELTA ? readDelta(r, schema, typeOf, version) : readSnapshot(r, schema);
  } else if (kind === Kind.ROOM_EVENT) {
    msg = { kind: 'ROOM_EVENT', sender: r.varint(), name: r.string(MAX_NAME_BYTES), data: r.blob(MAX_EVENT_DATA_BYTES) };
  } else if (kind === Kind.ERROR) {
    msg = { kind: 'ERROR', code: r.u16(), message: r.string(MAX_MESSAGE_TEXT_BYTES) };
  } else if (kind === Kind.CLOSE) {
    msg = { kind: 'CLOSE', code: r.u16(), reason: r.string(MAX_MESSAGE_TEXT_BYTES) };
  } else if (kind === Kind.REDIRECT && version !== 1) {
    msg = { kind: 'REDIRECT', url: r.string(MAX_URL_BYTES), room: r.string(MAX_NAME_BYTES) };
  } else if (kind === Kind.JOINED) {
    msg = readJoined(r, version);
  } else {
    throw new RemoteProtocolError(`unknown server message kind 0x${kind.toString(16)}`, 1002);
  }
  r.expectEnd();
  return msg;
}

/**
 * JOINED: v1 `version player room game tick_rate schema input_schema`; v2 puts a flags byte
 * (RESUMED 0x01, VIEW 0x02) after the version and `resume_token seat_hold_ms input_seq` at the end.
 * @param {Reader} r
 * @param {1 | 2 | 3} [negotiated]
 * @returns {Joined}
 */
function readJoined(r, negotiated) {
  const version = r.u8();
  checkVersion(version, negotiated);
  const flags = version >= 2 ? r.u8() : 0;
  if (flags & ~(JOINED_RESUMED | JOINED_VIEW)) throw new RemoteProtocolError(`unknown JOINED flags 0x${flags.toString(16)}`, 1002);
  const player = r.varint();
  const room = r.string(MAX_NAME_BYTES);
  const game = r.string(MAX_NAME_BYTES);
  const tickRate = r.u8();
  const schema = Schema.read(r);
  const inputSchema = InputSchema.read(r);
  /** @type {Joined} */
  const msg = { kind: 'JOINED', version, player, room, game, tickRate, schema, inputSchema, resumed: false, resumeToken: '', seatHoldMs: 0, inputSeq: 0, view: false };
  if (version >= 2) {
    msg.resumed = (flags & JOINED_RESUMED) !== 0;
    msg.view = (flags & JOINED_VIEW) !== 0;
    msg.resumeToken = r.string(MAX_RESUME_TOKEN_BYTES);
    const hold = r.varint();
    msg.seatHoldMs = typeof hold === 'number' ? hold : Number.MAX_SAFE_INTEGER;
    msg.inputSeq = r.varint();
  }
  return msg;
}

/**
 * @param {Reader} r
 * @param {Schema} schema
 * @param {boolean} [v3] gamesync.v3: a motion section follows the entities
 * @returns {Snapshot}
 */
function readSnapshot(r, schema, v3 = false) {
  const tick = r.varint();
  const checksum = r.u32();
  const acks = readAcks(r);
  const n = r.count('entity count');
  const entities = new Array(n);
  for (let i = 0; i < n; i++) entities[i] = readRecord(r, schema);
  if (!v3) return { kind: 'SNAPSHOT', tick, checksum, acks, entities };
  /** @type {Map<Int, import('./schema.js').EntityType>} */
  const held = new Map(entities.map((rec) => [rec.id, schema.typeFor(rec.typeId)]));
  const motion = readMotion(r, (id) => {
    const t = held.get(id);
    if (t === undefined) throw new RemoteProtocolError(`snapshot motion of entity ${id}, not in it`);
    return t;
  });
  return { kind: 'SNAPSHOT', tick, checksum, acks, entities, motion };
}

/**
 * @param {Reader} r
 * @param {Schema} schema
 * @param {TypeOf} [typeOf]
 * @param {1 | 2 | 3} [version]
 * @returns {Delta}
 */
function readDelta(r, schema, typeOf, version) {
  const flags = r.u8();
  const known = version === 1 ? DELTA_CHECKSUM : DELTA_CHECKSUM | DELTA_BASE;
  if (flags & ~known) throw new RemoteProtocolError(`unknown delta flags 0x${flags.toString(16)}`);
  const tick = r.varint();
  const base = flags & DELTA_BASE ? r.varint() : null;
  if (base !== null && base >= tick) throw new RemoteProtocolError(`delta base tick ${base} not before its tick ${tick}`);
  const checksum = flags & DELTA_CHECKSUM ? r.u32() : null;
  const acks = readAcks(r);
  const nc = r.count();
  /** @type {EntityRecord[]} */
  const created = new Array(nc);
  for (let i = 0; i < nc; i++) created[i] = readRecord(r, schema);
  /** @type {TypeOf} */
  let lookup = (id) => {
    if (!typeOf) throw new RemoteProtocolError("delta patches need the receiver's entity types");
    return typeOf(id);
  };
  if (nc > 0) {
    const known = new Set(created.map((rec) => rec.id));
    const inner = lookup;
    lookup = (id) => {
      if (known.has(id)) throw new RemoteProtocolError(`entity ${id} both created and patched`);
      return inner(id);
    };
  }
  const np = r.count();
  /** @type {EntityPatch[]} */
  const changed = new Array(np);
  for (let i = 0; i < np; i++) changed[i] = readPatch(r, lookup);
  const nr = r.count();
  /** @type {Int[]} */
  const removed = new Array(nr);
  for (let i = 0; i < nr; i++) removed[i] = r.varint();
  return { kind: 'DELTA', tick, base, checksum, acks, created, changed, removed };
}

// ---------------------------------------------------------------- encoding server messages

/**
 * @param {Writer} w
 * @param {Schema} schema
 * @param {EntityRecord} rec
 */
export function writeRecord(w, schema, rec) {
  w.varint(rec.id);
  w.varint(rec.typeId);
  schema.typeFor(rec.typeId).writeCodes(w, rec.codes);
}

/**
 * @param {Writer} w
 * @param {EntityType} etype
 * @param {EntityPatch} patch
 */
function writePatch(w, etype, patch) {
  w.varint(patch.id);
  const bits = maskBits(patch.mask);
  if (bits.length !== patch.codes.length) throw new LocalProtocolError('patch mask and codes disagree');
  if (bits.length && bits[bits.length - 1] >= etype.fields.length) throw new LocalProtocolError(`mask names fields ${etype.name} lacks`);
  let m = BigInt(patch.mask);
  for (let j = 0; j < etype.maskBytes; j++, m >>= 8n) w.u8(Number(m & 0xffn));
  bits.forEach((i, j) => writeCode(w, etype.fields[i], patch.codes[j]));
}

/**
 * @param {Writer} w
 * @param {Acks} acks
 */
function writeAcks(w, acks) {
  w.varint(acks.length);
  for (const [p, s] of acks) {
    w.varint(p);
    w.varint(s);
  }
}

/**
 * ERROR and CLOSE texts are cut to 256 bytes at a UTF-8 character boundary, as the server does.
 * @param {Writer} w
 * @param {string} message
 */
function writeText(w, message) {
  let bytes = utf8(message);
  if (bytes.length > MAX_MESSAGE_TEXT_BYTES) {
    let end = MAX_MESSAGE_TEXT_BYTES;
    while (end > 0 && (bytes[end] & 0xc0) === 0x80) end--;
    bytes = bytes.slice(0, end);
  }
  w.blob(bytes, MAX_MESSAGE_TEXT_BYTES);
}

/**
 * Encode any server message. SNAPSHOT and DELTA need the schema, DELTA patches `typeOf`.
 * @param {ServerMessage} msg
 * @param {Schema} [schema]
 * @param {TypeOf} [typeOf]
 */
export function encodeServerMessage(msg, schema, typeOf) {
  const w = new Writer();
  switch (msg.kind) {
    case 'JOINED': {
      const v2 = msg.version >= 2;
      w.u8(Kind.JOINED);
      w.u8(msg.version);
      if (v2) w.u8((msg.resumed ? JOINED_RESUMED : 0) | (msg.view ? JOINED_VIEW : 0));
      else if (msg.resumed || msg.view) throw new LocalProtocolError('a v1 JOINED has no flags (RESUMED, VIEW)');
      w.varint(msg.player);
      w.string(msg.room, MAX_NAME_BYTES);
      w.string(msg.game, MAX_NAME_BYTES);
      w.u8(msg.tickRate);
      msg.schema.write(w);
      msg.inputSchema.describe(w);
      if (v2) {
        w.string(msg.resumeToken ?? '', MAX_RESUME_TOKEN_BYTES);
        w.varint(msg.seatHoldMs ?? 0);
        w.varint(msg.inputSeq ?? 0);
      }
      break;
    }
    case 'SNAPSHOT':
      if (!schema) throw new LocalProtocolError('SNAPSHOT needs the schema');
      w.u8(Kind.SNAPSHOT);
      w.varint(msg.tick);
      w.u32(msg.checksum);
      writeAcks(w, msg.acks);
      w.varint(msg.entities.length);
      for (const rec of msg.entities) writeRecord(w, schema, rec);
      break;
    case 'DELTA': {
      if (!schema) throw new LocalProtocolError('DELTA needs the schema');
      const base = msg.base ?? null;
      w.u8(Kind.DELTA);
      w.u8((msg.checksum === null ? 0 : DELTA_CHECKSUM) | (base === null ? 0 : DELTA_BASE));
      w.varint(msg.tick);
      if (base !== null) w.varint(base);
      if (msg.checksum !== null) w.u32(msg.checksum);
      writeAcks(w, msg.acks);
      w.varint(msg.created.length);
      for (const rec of msg.created) writeRecord(w, schema, rec);
      w.varint(msg.changed.length);
      for (const p of msg.changed) {
        if (!typeOf) throw new LocalProtocolError('DELTA patches need typeOf');
        writePatch(w, typeOf(p.id), p);
      }
      w.varint(msg.removed.length);
      for (const id of msg.removed) w.varint(id);
      break;
    }
    case 'ROOM_EVENT':
      w.u8(Kind.ROOM_EVENT);
      w.varint(msg.sender);
      w.string(msg.name, MAX_NAME_BYTES);
      w.blob(msg.data, MAX_EVENT_DATA_BYTES);
      break;
    case 'ERROR':
    case 'CLOSE':
      w.u8(msg.kind === 'ERROR' ? Kind.ERROR : Kind.CLOSE);
      w.u16(msg.code);
      writeText(w, msg.kind === 'ERROR' ? msg.message : msg.reason);
      break;
    case 'REDIRECT':
      w.u8(Kind.REDIRECT);
      w.string(msg.url, MAX_URL_BYTES);
      w.string(msg.room, MAX_NAME_BYTES);
      break;
  }
  return w.finish();
}

/**
 * The tick of an encoded DELTA, read without decoding the rest (null if unreadable).
 * @param {Uint8Array} bytes
 */
export function peekDeltaTick(bytes) {
  try {
    return new Reader(bytes, 2).varint();
  } catch {
    return null;
  }
}

/**
 * Room event data as text (UTF-8, invalid bytes replaced).
 * @param {Uint8Array} data
 */
export function dataText(data) {
  return new TextDecoder().decode(data);
}
