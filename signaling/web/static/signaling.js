// The signaling socket of the medcall browser client (signaling/PROTOCOL.md):
// opening it, requests matched to their replies by id, and the server's own
// messages (offers, candidates, participants, bye) dispatched to the client.
//
// MedcallClient methods, installed on its prototype by medcall.js; `this` is
// the client, whose fields they share (_ws, _pending, _generation, ...).

import { MedcallError, ClientErrorCodes, Replies } from './protocol.js';

/** @typedef {import('./medcall.js').MedcallClient} MedcallClient */

/** MedcallClient methods (`this` is the client). */
export const signalingMethods = {
  /** Opens the socket; resolves when it is open. */
  _open(gen, url) {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url);
      this._ws = ws;
      ws.onopen = () => resolve(undefined);
      ws.onmessage = (e) => { if (gen === this._generation) this._onMessage(e.data); };
      ws.onclose = (e) => {
        reject(new MedcallError(ClientErrorCodes.CLOSED, `could not connect to the server (${e.code})`));
        if (gen === this._generation) this._onSocketClosed(e);
      };
    });
  },

  _onSocketClosed(e) {
    this._failPending(new MedcallError(ClientErrorCodes.CLOSED, `connection closed (${e.code}${e.reason ? ': ' + e.reason : ''})`));
    if (this._closing || this.state !== 'joined' || !this.opts.reconnect) {
      if (this.state === 'joined') { this._teardown(); this._setState('closed'); }
      return;
    }
    // The server saw this socket close too and removed the participant: rejoin.
    // (A network change leaves the socket silent instead; _networkChanged resumes it.)
    this._reconnect();
  },

  /**
   * Sends a request and resolves with its reply; rejects with a MedcallError
   * carrying the server's code, or a ClientErrorCodes value.
   * @param {string} type a ClientRequests value
   * @param {object} fields
   */
  _request(type, fields) {
    return new Promise((resolve, reject) => {
      const ws = this._ws;
      if (!ws || ws.readyState !== WebSocket.OPEN) {
        reject(new MedcallError(ClientErrorCodes.CLOSED, `not connected; cannot send ${type}`));
        return;
      }
      const id = String(this._nextId++);
      const timer = setTimeout(() => {
        this._pending.delete(id);
        reject(new MedcallError(ClientErrorCodes.TIMEOUT, `no reply to ${type} within ${this.opts.requestTimeout} ms`));
      }, this.opts.requestTimeout);
      this._pending.set(id, { type, resolve, reject, timer });
      ws.send(JSON.stringify({ type, id, ...fields }));
    });
  },

  _failPending(err) {
    for (const [id, p] of this._pending) { clearTimeout(p.timer); p.reject(err); this._pending.delete(id); }
  },

  /** @param {string} data */
  _onMessage(data) {
    let m;
    try { m = JSON.parse(data); } catch { return; }
    if (m.id !== undefined && this._pending.has(m.id)) {
      const p = this._pending.get(m.id);
      this._pending.delete(m.id);
      clearTimeout(p.timer);
      if (m.type === 'error') p.reject(new MedcallError(m.code, m.message || m.code));
      else if (m.type !== Replies[p.type] && !(m.type === 'redirect' && p.type === 'join')) p.reject(new MedcallError(ClientErrorCodes.PROTOCOL, `expected ${Replies[p.type]} in reply to ${p.type}, got ${m.type}`));
      else p.resolve(m);
      return;
    }
    switch (m.type) {
      case 'offer': // server (re)negotiates the subscribe connection
        this._onSubscribeOffer(m.sdp);
        break;
      case 'candidate':
        this._onRemoteCandidate(m.pc, m.candidate);
        break;
      case 'participant':
        this._onParticipant(m.event, m.participant);
        break;
      case 'bye':
        this._onBye(m.reason);
        break;
      case 'error': // a frame the server could not read as a request (no id)
        this._emit('error', { error: new MedcallError(m.code, m.message || m.code) });
        break;
      case 'redirect': // only a reply to join (followed in _connect); a late one is ignored
        break;
      default: // replies to requests that timed out, or a newer server's messages
        break;
    }
  },

  _onBye(reason) {
    this._emit('bye', { reason });
    if (reason === 'connection_failed' && !this._closing && this.opts.reconnect) {
      this._reconnect();
      return;
    }
    this.close();
  },

  _onParticipant(event, p) {
    if (!p || !p.id) return;
    if (event === 'left') {
      this._peerLeft(p.id);
      return;
    }
    this.peers.set(p.id, p);
    this._emit('peer', { event, participant: p });
  },

  _peerLeft(id) {
    const p = this.peers.get(id);
    this.peers.delete(id);
    this._remote.remove(id);
    if (p) this._emit('peer', { event: 'left', participant: p });
  },
};

/** The signaling URL on this page's origin: /v1/signal over ws: or wss:. */
export function defaultURL() {
  const u = new URL('/v1/signal', location.href);
  u.protocol = u.protocol === 'https:' ? 'wss:' : 'ws:';
  return u.href;
}
