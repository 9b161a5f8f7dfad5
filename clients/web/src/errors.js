// Errors split by blame, as in shared/errors.py: the peer's bad bytes versus our own misuse.

/** Base class of the errors the SDK raises on purpose. */
export class GameProtocolError extends Error {}

/**
 * The peer sent bytes that are not a valid message. `closeCode` is the WebSocket close code
 * to close with: 1002 for an unknown kind or a message out of place, 1007 for a malformed body.
 */
export class RemoteProtocolError extends GameProtocolError {
  /**
   * @param {string} message
   * @param {number} [closeCode]
   */
  constructor(message, closeCode = 1007) {
    super(message);
    this.name = 'RemoteProtocolError';
    this.closeCode = closeCode;
  }
}

/** The replica no longer matches the server: a checksum, tick or entity mismatch. */
export class DesyncError extends RemoteProtocolError {
  /** @param {string} message */
  constructor(message) {
    super(message, 1007);
    this.name = 'DesyncError';
  }
}

/** Our own code asked for something the protocol cannot express (a value out of range, ...). */
export class LocalProtocolError extends GameProtocolError {
  /** @param {string} message */
  constructor(message) {
    super(message);
    this.name = 'LocalProtocolError';
  }
}

/** A session ended before it was ready; `info` says why (see describeClose). */
export class SessionClosedError extends Error {
  /** @param {import('./protocol.js').CloseInfo} info */
  constructor(info) {
    super(info.detail ? `${info.text} (${info.code}: ${info.detail})` : `${info.text} (${info.code})`);
    this.name = 'SessionClosedError';
    this.info = info;
  }
}
