// Protocol vocabulary of the medcall browser client (signaling/PROTOCOL.md,
// version 1): message types, replies, error codes and the error class every
// failure is reported as. medcall.js re-exports all of it; import from there.

/** Protocol version this client speaks. */
export const PROTOCOL_VERSION = 1;

/** Message types a client sends (PROTOCOL.md "Client requests"). */
export const ClientRequests = Object.freeze(['join', 'offer', 'answer', 'candidate', 'media', 'leave', 'ping', 'restart']);

/** Message types the server sends (PROTOCOL.md "Server replies and events"). */
export const ServerMessages = Object.freeze(['joined', 'answer', 'ack', 'pong', 'error', 'offer', 'candidate', 'participant', 'bye', 'redirect']);

/** The reply each request expects (anything else but `error` is a protocol fault). */
export const Replies = Object.freeze({
  join: 'joined', offer: 'answer', answer: 'ack', candidate: 'ack', media: 'ack', leave: 'ack', ping: 'pong', restart: 'ack',
});

/** Error codes the server may send (PROTOCOL.md "Error codes"). */
export const ErrorCodes = Object.freeze({
  BAD_MESSAGE: 'bad_message',
  UNKNOWN_TYPE: 'unknown_type',
  TOO_LARGE: 'too_large',
  RATE_LIMITED: 'rate_limited',
  NOT_JOINED: 'not_joined',
  ALREADY_JOINED: 'already_joined',
  TOKEN_MISSING: 'token_missing',
  TOKEN_INVALID: 'token_invalid',
  TOKEN_EXPIRED: 'token_expired',
  BAD_ID: 'bad_id',
  FORBIDDEN: 'forbidden',
  WRONG_CONSULTATION: 'wrong_consultation',
  BINDING_MISMATCH: 'binding_mismatch',
  CONSULTATION_FULL: 'consultation_full',
  SERVER_FULL: 'server_full',
  BAD_SDP: 'bad_sdp',
  BAD_CANDIDATE: 'bad_candidate',
  BAD_REQUEST: 'bad_request',
  UNAVAILABLE: 'unavailable',
  INTERNAL: 'internal',
  RESUME_FAILED: 'resume_failed',
});

/** Error codes this client raises itself; never sent by the server. */
export const ClientErrorCodes = Object.freeze({
  TIMEOUT: 'timeout', // no reply in time
  CLOSED: 'closed', // the socket closed or the client was closed
  MEDIA: 'media_unavailable', // getUserMedia failed (permission, no device)
  STATE: 'bad_state', // the call is not in a state for this (e.g. not joined)
  PROTOCOL: 'protocol', // the server broke the protocol (wrong reply type)
});

/** What people should be told for the codes they can act on. */
const advice = {
  token_missing: 'No token was given.',
  token_invalid: 'The token is not valid; get a new one.',
  token_expired: 'The token has expired; get a new one.',
  bad_id: 'An id in the token is not a valid pseudonym.',
  forbidden: 'This token may not join this consultation.',
  wrong_consultation: 'This token is for another consultation.',
  binding_mismatch: 'This consultation belongs to another patient or recording setting.',
  consultation_full: 'The consultation is full.',
  server_full: 'The service is at capacity; try again in a few minutes.',
  unavailable: 'The server is shutting down; try again shortly.',
  internal: 'The server had a fault; try again.',
  timeout: 'The server did not answer in time.',
  closed: 'The connection to the server closed.',
  media_unavailable: 'The microphone or camera could not be opened.',
};

/** An error carrying a protocol or client error code in `.code`. */
export class MedcallError extends Error {
  /**
   * @param {string} code an ErrorCodes or ClientErrorCodes value
   * @param {string} message for people
   * @param {{cause?: unknown}} [opts]
   */
  constructor(code, message, opts) {
    super(message, opts);
    this.name = 'MedcallError';
    /** @type {string} */
    this.code = code;
  }

  /** A sentence for the person at the screen. */
  get advice() { return advice[this.code] || this.message; }
}

/**
 * Wraps anything thrown into a MedcallError (code bad_state unless it is one already).
 * @returns {MedcallError}
 */
export function asMedcallError(err) {
  if (err instanceof MedcallError) return err;
  return new MedcallError(ClientErrorCodes.STATE, String(err && err.message ? err.message : err), { cause: err });
}
