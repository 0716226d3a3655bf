// The two peer connections of the medcall browser client: "publish" (this
// client offers) and "subscribe" (the server offers, this client answers).
// ICE candidates are trickled both ways and queued until the description they
// belong to is set.
//
// MedcallClient methods, installed on its prototype by medcall.js; `this` is
// the client, whose fields they share (_pub, _sub, _queued, _subChain, ...).

import { MedcallError, ClientErrorCodes } from './protocol.js';

/** @typedef {import('./medcall.js').MedcallClient} MedcallClient */

/** The publish connection's name in `pc` fields. */
export const PUBLISH = 'publish';
/** The subscribe connection's name in `pc` fields. */
export const SUBSCRIBE = 'subscribe';

/** MedcallClient methods (`this` is the client). */
export const negotiationMethods = {
  _setupPeerConnections(gen) {
    const config = { iceServers: this.opts.iceServers || [], bundlePolicy: /** @type {RTCBundlePolicy} */ ('max-bundle') };
    if (!this.opts.iceServers && this._joinedICE) config.iceServers = this._joinedICE; // joined.iceServers unless the app gave its own
    this._pub = new RTCPeerConnection(config);
    this._sub = new RTCPeerConnection(config);
    for (const [name, pc] of [[PUBLISH, this._pub], [SUBSCRIBE, this._sub]]) {
      pc.onicecandidate = (e) => {
        if (!e.candidate || gen !== this._generation) return; // null: gathering finished
        const c = e.candidate;
        this._request('candidate', { pc: name, candidate: { candidate: c.candidate, sdpMid: c.sdpMid, sdpMLineIndex: c.sdpMLineIndex, usernameFragment: c.usernameFragment } })
          .catch((err) => this._emitBackground(err));
      };
      pc.oniceconnectionstatechange = () => {
        const s = pc.iceConnectionState;
        if ((s === 'disconnected' || s === 'failed') && gen === this._generation && !this._closing && this.opts.reconnect) {
          this._networkChanged(); // a network change: restart ICE, keep the place in the call
        }
      };
    }
    this._sub.ontrack = (e) => {
      const participant = e.streams[0] ? e.streams[0].id : e.track.id.replace(/-(audio|video)$/, '');
      const { stream, element } = this._remote.add(participant, e.track);
      this._emit('track', { participant, kind: e.track.kind, track: e.track, stream, element });
    };
  },

  async _publishAudio() {
    const mic = await this._microphone();
    this._pub.addTransceiver(mic, { direction: 'sendonly', streams: [this._localMediaStream()] });
    if (this.opts.prenegotiate) {
      // The idle sender of the fast path: negotiated now, a camera track later.
      this._videoSender = this._pub.addTransceiver('video', { direction: 'sendonly', streams: [this._localMediaStream()] }).sender;
    }
    await this._offerPublish();
    await this._request('media', { audio: true });
    this.sending.audio = true;
    this._emit('media', { ...this.sending });
  },

  /** Offers on the publish connection and applies the answer. */
  async _offerPublish() {
    const pc = this._pub;
    const offer = await pc.createOffer();
    await pc.setLocalDescription(offer);
    /** @type {any} */
    const answer = await this._request('offer', { pc: PUBLISH, sdp: pc.localDescription.sdp });
    if (pc !== this._pub) throw new MedcallError(ClientErrorCodes.CLOSED, 'connection replaced during negotiation');
    await pc.setRemoteDescription({ type: 'answer', sdp: answer.sdp });
    await this._flushCandidates(PUBLISH);
  },

  _onSubscribeOffer(sdp) {
    const pc = this._sub;
    this._subChain = this._subChain.then(async () => {
      if (!pc || pc !== this._sub) return;
      await pc.setRemoteDescription({ type: 'offer', sdp });
      await this._flushCandidates(SUBSCRIBE);
      const answer = await pc.createAnswer();
      await pc.setLocalDescription(answer);
      await this._request('answer', { pc: SUBSCRIBE, sdp: pc.localDescription.sdp });
    }).catch((err) => this._emitBackground(err));
  },

  _onRemoteCandidate(name, cand) {
    if (!cand || (name !== PUBLISH && name !== SUBSCRIBE)) return;
    const pc = name === PUBLISH ? this._pub : this._sub;
    // After an ICE restart the server's new candidates may overtake its answer: queue them too.
    if (!pc || !pc.remoteDescription || !sameGeneration(cand, pc.remoteDescription.sdp)) {
      this._queued[name].push(cand);
      return;
    }
    // Subscribe candidates follow the offer they belong to on the same chain.
    const add = () => pc.addIceCandidate(cand).catch((err) => this._emitBackground(err));
    if (name === SUBSCRIBE) this._subChain = this._subChain.then(add);
    else add();
  },

  async _flushCandidates(name) {
    const pc = name === PUBLISH ? this._pub : this._sub;
    const queued = this._queued[name];
    this._queued[name] = [];
    for (const c of queued) {
      try { await pc.addIceCandidate(c); } catch (err) { this._emitBackground(err); }
    }
  },
};

/** Whether a candidate belongs to the ICE generation (username fragment) of a description. */
function sameGeneration(cand, sdp) {
  const m = / ufrag (\S+)/.exec(cand.candidate || '');
  const ufrag = cand.usernameFragment || (m && m[1]);
  return !ufrag || sdp.includes(`a=ice-ufrag:${ufrag}\r\n`) || sdp.includes(`a=ice-ufrag:${ufrag}\n`);
}
