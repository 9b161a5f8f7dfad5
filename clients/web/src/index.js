// @gameserver/client: the browser and Node SDK for gameserver's gamesync.v2 protocol (and v1).
//
//   codec        wire.js, schema.js, messages.js   every message kind of v1 and v2, both directions
//   state        replica.js                        snapshots, deltas (catch-up ones too), checksums, views
//   session      session.js, connection.js         connect(), inputs, acks, events, resync, rejoin
//   reconnect    reconnect.js                      backoff, resume, bounded input buffer
//   clusters     redirect.js                       following REDIRECT (at most 3 per join)
//   netcode      prediction.js, interpolation.js   client-side prediction, interpolation

export * from './protocol.js';
export * from './errors.js';
export { Reader, Writer, crc32, decodeUtf8, fromHex, normalizeInt, roundHalfEven, toHex, utf8 } from './wire.js';
export { EntityType, Field, FieldKind, FieldList, InputSchema, Schema, readCode, writeCode } from './schema.js';
export {
  dataText,
  decodeClientMessage,
  decodeServerMessage,
  encodeClientMessage,
  encodeEvent,
  encodeInput,
  encodeJoin,
  encodeLeave,
  encodeResume,
  encodeResync,
  encodeServerMessage,
  maskBits,
  peekDeltaTick,
  readPatch,
  readRecord,
  writeRecord,
} from './messages.js';
export { Entity, Replica, viewChecksum } from './replica.js';
export { ACK_BITS_SPAN, codingFor, predictRange, predictRanges, readAcksV3, readDeltaV3, readMotion } from './delta_v3.js';

/** @typedef {import('./wire.js').Int} Int */
/** @typedef {import('./schema.js').Code} Code */
/** @typedef {import('./schema.js').Value} Value */
/** @typedef {import('./schema.js').KindName} KindName */
/** @typedef {import('./messages.js').Join} Join */
/** @typedef {import('./messages.js').Input} Input */
/** @typedef {import('./messages.js').Event} Event */
/** @typedef {import('./messages.js').Resume} Resume */
/** @typedef {import('./messages.js').Resync} Resync */
/** @typedef {import('./messages.js').ClientMessage} ClientMessage */
/** @typedef {import('./messages.js').Joined} Joined */
/** @typedef {import('./messages.js').Snapshot} Snapshot */
/** @typedef {import('./messages.js').Delta} Delta */
/** @typedef {import('./messages.js').RoomEvent} RoomEvent */
/** @typedef {import('./messages.js').ErrorMessage} ErrorMessage */
/** @typedef {import('./messages.js').CloseMessage} CloseMessage */
/** @typedef {import('./messages.js').ServerMessage} ServerMessage */
/** @typedef {import('./messages.js').EntityRecord} EntityRecord */
/** @typedef {import('./messages.js').EntityPatch} EntityPatch */
/** @typedef {import('./messages.js').Acks} Acks */
/** @typedef {import('./replica.js').ReplicaOptions} ReplicaOptions */
/** @typedef {import('./protocol.js').CloseInfo} CloseInfo */
/** @typedef {import('./protocol.js').CloseAdvice} CloseAdvice */
export { Predictor, codeDistance } from './prediction.js';
export { Interpolator } from './interpolation.js';
export { Emitter } from './emitter.js';
export { Session, connect } from './session.js';
export { Connection } from './connection.js';
export { InputBuffer, LostReason, ReconnectReason, backoffDelay, reconnectPolicy } from './reconnect.js';
export { MAX_REDIRECTS, RedirectProblem, redirectProblem } from './redirect.js';
/** @typedef {import('./prediction.js').PredictFn} PredictFn */
/** @typedef {import('./prediction.js').PredictorOptions} PredictorOptions */
/** @typedef {import('./interpolation.js').InterpolatorOptions} InterpolatorOptions */
/** @typedef {import('./interpolation.js').DrawnEntity} DrawnEntity */
/** @typedef {import('./session_types.js').ConnectOptions} ConnectOptions */
/** @typedef {import('./session_types.js').WebSocketLike} WebSocketLike */
/** @typedef {import('./session_types.js').WebSocketConstructor} WebSocketConstructor */
/** @typedef {import('./session_types.js').JoinInfo} JoinInfo */
/** @typedef {import('./session_types.js').StateInfo} StateInfo */
/** @typedef {import('./session_types.js').RoomEventInfo} RoomEventInfo */
/** @typedef {import('./session_types.js').DesyncInfo} DesyncInfo */
/** @typedef {import('./session_types.js').ReconnectingInfo} ReconnectingInfo */
/** @typedef {import('./session_types.js').ResumedInfo} ResumedInfo */
/** @typedef {import('./session_types.js').LostInfo} LostInfo */
/** @typedef {import('./session_types.js').RedirectInfo} RedirectInfo */
/** @typedef {import('./messages.js').RedirectMessage} RedirectMessage */
/** @typedef {import('./redirect.js').RedirectProblemName} RedirectProblemName */
/** @typedef {import('./session_types.js').Timers} Timers */
/** @typedef {import('./session_types.js').SessionState} SessionState */
/** @typedef {import('./reconnect.js').ReconnectPolicy} ReconnectPolicy */
/** @typedef {import('./reconnect.js').ReconnectReasonName} ReconnectReasonName */
/** @typedef {import('./reconnect.js').LostReasonName} LostReasonName */
/** @typedef {import('./session_types.js').SessionEvents} SessionEvents */
/** @typedef {import('./session_types.js').View} View */
