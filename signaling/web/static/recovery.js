// How the medcall browser client keeps its place in a call. A network change
// (PROTOCOL.md "Network change") restarts ICE on both connections, resuming on
// a new signaling socket first if the old one is dead; the others see nothing.
// A dropped socket or a failed resume rejoins from scratch (PROTOCOL.md
// "Reconnect"); the others see this participant leave and come back.
//
// MedcallClient methods, installed on its prototype by medcall.js; `this` is
// the client, whose fields they share (_restarting, _reconnecting, _resume, ...).

import { MedcallError, ErrorCodes, ClientErrorCodes, asMedcallError } from './protocol.js';
import { SUBSCRIBE } from './negotiate.js';
import { defaultURL } from './signaling.js';

/** @typedef {import('./medcall.js').MedcallClient} MedcallClient */

/** MedcallClient methods (`this` is the client). */
export const recoveryMethods = {
  /**
   * Restarts ICE on both connections, resuming on a new socket first if the old one is dead; falls back to a rejoin.
   * @param {boolean} [stalled] only media stalled (netwatch.js): restart only if the socket is dead too
   */
  async _networkChanged(stalled = false) {
    if (this._restarting || this._reconnecting || this._closing || this.state !== 'joined') return;
    this._restarting = true;
    const gen = this._generation;
    try {
      for (let attempt = 1; attempt <= 5 && gen === this._generation && !this._closing; attempt++) {
        try {
          mark('check socket');
          const resumed = !(await this._socketAnswers());
          if (!resumed && stalled && attempt === 1) { mark('socket answers'); return; } // the network is fine: a peer left or went quiet
          if (resumed) { mark('socket dead'); await this._resumeSocket(gen); mark('resumed'); }
          await this._restartIce();
          mark('restarted');
          this._emit('restarted', { resumed });
          return;
        } catch (err) {
          const e = asMedcallError(err);
          if (e.code === ErrorCodes.RESUME_FAILED) break; // the server removed us: only a rejoin helps
          await sleep(500 * attempt);
        }
      }
      if (gen === this._generation && !this._closing) this._reconnect();
    } finally {
      this._restarting = false;
    }
  },

  /** Whether the socket is open and answers a ping at once (a slow answer only costs a resume). */
  async _socketAnswers() {
    if (!this._ws || this._ws.readyState !== WebSocket.OPEN) return false;
    try {
      await withTimeout(this._request('ping', {}), 400);
      return true;
    } catch {
      return false;
    }
  },

  /** Opens a new socket and takes this participant over on it (join with resume); the peer connections stay. */
  async _resumeSocket(gen) {
    const old = this._ws;
    if (old) { old.onclose = null; old.onmessage = null; }
    this._failPending(new MedcallError(ClientErrorCodes.CLOSED, 'signaling socket replaced'));
    const token = this.opts.getToken ? await this.opts.getToken() : this.opts.token;
    try {
      await this._open(gen, this._ws && this._ws.url ? this._ws.url : (this.opts.url || defaultURL()));
      const fields = { token, resume: this._resume };
      if (this.opts.consultation) fields.consultation = this.opts.consultation;
      /** @type {any} */
      const joined = await this._request('join', fields);
      if (!joined.resumed) throw new MedcallError(ClientErrorCodes.PROTOCOL, 'join with resume was not resumed');
      // Events sent on the old socket may be lost: the list in joined is the truth.
      const now = new Map((joined.participants || []).map((p) => [p.id, p]));
      for (const id of [...this.peers.keys()]) if (!now.has(id)) this._peerLeft(id);
      for (const [id, p] of now) if (!this.peers.has(id)) this._onParticipant('joined', p);
      if (joined.iceServers && !this.opts.iceServers) {
        for (const pc of [this._pub, this._sub]) pc.setConfiguration({ ...pc.getConfiguration(), iceServers: joined.iceServers });
      }
    } finally {
      if (old && old !== this._ws) old.close(); // only now: a close reaching the server first would remove us
    }
  },

  /**
   * Publish: re-offer with new ICE credentials; subscribe: ask the server to re-offer with new ones.
   * Resolves once both connections use a pair of their new credentials (else the caller tries again).
   */
  async _restartIce() {
    this._pub.restartIce();
    await Promise.all([ // both at once: the server answers each on its own
      this._offerPublish().then(() => mark('publish answered')),
      this._request('restart', { pc: SUBSCRIBE }).then(() => mark('subscribe restart acked')),
    ]);
    // Chromium may take 2.5 s to use a new pair: on Linux it sees a new
    // address 2 s after it appears, and it keeps a higher-ranked dead pair
    // until that turns weak. Trying again sooner would only start over.
    const end = Date.now() + 5000;
    for (const pc of [this._pub, this._sub]) {
      while (pc.remoteDescription && !(await onNewPair(pc))) {
        if (Date.now() > end) throw new MedcallError(ClientErrorCodes.TIMEOUT, 'no connection on the new network after an ICE restart');
        await sleep(50);
      }
    }
  },

  /** Rejoins after a dropped socket (PROTOCOL.md "Reconnect"): new socket, join, negotiate anew, restore media. */
  async _reconnect() {
    if (this._reconnecting) return;
    this._reconnecting = true;
    try {
      await this._rejoin();
    } finally {
      this._reconnecting = false;
    }
  },

  async _rejoin() {
    const wantVideo = this.sending.video;
    const delays = [250, 500, 1000, 2000, 4000, 8000];
    this._setState('reconnecting');
    for (let attempt = 1; attempt <= delays.length && !this._closing; attempt++) {
      this._teardown();
      for (const id of this.peers.keys()) this._peerLeft(id);
      try {
        await this._connect();
        if (wantVideo) await this.upgradeVideo();
        this._emit('reconnected', {});
        return;
      } catch (err) {
        const e = asMedcallError(err);
        this._emit('reconnecting', { attempt, error: e });
        // A refused join will be refused again: give up at once.
        if (e.code !== ClientErrorCodes.CLOSED && e.code !== ClientErrorCodes.TIMEOUT && e.code !== ErrorCodes.UNAVAILABLE) break;
        await sleep(delays[attempt - 1]);
      }
    }
    if (!this._closing) {
      this._emit('error', { error: new MedcallError(ClientErrorCodes.CLOSED, 'could not reconnect to the consultation') });
      this.close();
    }
  },
};

/** Marks a step of a recovery on the page's performance timeline ("medcall: ..."), where tools and tests can see how long each took. */
function mark(step) { performance.mark(`medcall: ${step}`); }

function sleep(ms) { return new Promise((r) => setTimeout(r, ms)); }

/** Whether a connection's selected candidate pair is of its current ICE credentials (after a restart). */
async function onNewPair(pc) {
  const m = pc.localDescription && /a=ice-ufrag:(\S+)/.exec(pc.localDescription.sdp);
  if (!m) return true;
  const stats = await pc.getStats();
  let ok = false;
  stats.forEach((s) => {
    if (s.type !== 'transport' || !s.selectedCandidatePairId) return;
    const pair = stats.get(s.selectedCandidatePairId);
    const local = pair && stats.get(pair.localCandidateId);
    if (pair && pair.state === 'succeeded' && local && (!local.usernameFragment || local.usernameFragment === m[1])) ok = true;
  });
  return ok;
}

function withTimeout(p, ms) {
  return Promise.race([p, sleep(ms).then(() => { throw new MedcallError(ClientErrorCodes.TIMEOUT, `no reply within ${ms} ms`); })]);
}
