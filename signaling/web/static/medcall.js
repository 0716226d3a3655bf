// medcall browser client: speaks signaling/PROTOCOL.md (version 1).
//
// A plain ES module with no dependencies and no build step:
//
//   import { MedcallClient } from '/client/medcall.js';
//   const c = new MedcallClient({ token });
//   c.addEventListener('track', (e) => {
//     // Remote audio already plays (see below). Video: a muted <video> per participant.
//     if (e.detail.kind === 'video') videoFor(e.detail.participant).srcObject = e.detail.stream;
//   });
//   c.addEventListener('audioblocked', () => showTurnOnSound());  // its click: c.resumeAudio()
//   c.addEventListener('audiounblocked', () => { if (!c.audioBlocked) hideTurnOnSound(); });
//   await c.join();             // join, publish the microphone, subscribe
//   await c.upgradeVideo();     // camera on (pre-negotiated fast path if possible)
//   await c.downgradeVideo();   // camera off, audio goes on
//   await c.leave();
//
// Remote audio plays from its first packet, in every state of the call: the
// client plays each participant's audio itself, in an <audio> element of its
// own (c.audioElement(id); not in the document unless the app puts it there),
// and hands out video as a stream holding only the video track. Never put a
// participant's audio and video in one element: Chromium does not play such
// an element until a video frame arrives, so an audio-only call is silent.
// With {playAudio: false} the app plays audio itself: the 'track' event's
// stream for kind 'audio' holds only the audio track, for an <audio> element.
//
// Two peer connections: "publish" (this client offers) and "subscribe" (the
// server offers, this client answers). ICE candidates are trickled both ways
// and queued until the description they belong to is set.
//
// The module files, all beside this one: protocol.js (message types, error
// codes, MedcallError), signaling.js (the socket, requests and replies, the
// server's messages), negotiate.js (the two peer connections), recovery.js
// (network change, ICE restart, resume, rejoin), remote.js (remote media),
// netwatch.js (stalled media), media.js (microphone and camera), stats.js
// (stats()). Apps import only this one.

import { RemoteMedia } from './remote.js';
import { watchTransports } from './netwatch.js';
import { adaptSendResolution } from './sendscale.js';
import { MedcallError, ClientErrorCodes, asMedcallError } from './protocol.js';
import { signalingMethods, defaultURL } from './signaling.js';
import { negotiationMethods, PUBLISH, SUBSCRIBE } from './negotiate.js';
import { recoveryMethods } from './recovery.js';
import { mediaMethods } from './media.js';
import { StatsTally } from './stats.js';

export { PROTOCOL_VERSION, ClientRequests, ServerMessages, Replies, ErrorCodes, ClientErrorCodes, MedcallError } from './protocol.js';

/**
 * @typedef {{id: string, role: string, audio: boolean, video: boolean}} Peer
 * @typedef {'idle'|'connecting'|'joined'|'reconnecting'|'closed'} State
 * @typedef {object} Options
 * @property {string} [url] WebSocket URL; default: /v1/signal on this page's origin
 * @property {string} [token] a join token (sent in the first message, never in the URL)
 * @property {() => Promise<string>} [getToken] supplies a token on every (re)join instead of `token`
 * @property {string} [consultation] checked against the token's cid by the server
 * @property {boolean} [prenegotiate] negotiate an idle video sender at join (fast upgrade); default true
 * @property {boolean} [reconnect] rejoin after a dropped socket; default true
 * @property {boolean} [playAudio] play remote audio in <audio> elements the client owns; default true
 * @property {number} [requestTimeout] ms to wait for a reply; default 10000
 * @property {RTCIceServer[]} [iceServers]
 * @property {MediaStreamConstraints['audio']} [audio] microphone constraints; default true
 * @property {MediaStreamConstraints['video']} [video] camera constraints; default true
 */

/**
 * One participant in a consultation.
 *
 * Events (all CustomEvent, details below):
 * - `state` {state}: idle → connecting → joined → (reconnecting → joined)* → closed
 * - `joined` {consultation, participant, participants, recording}: after every (re)join
 * - `peer` {event: 'joined'|'left'|'media', participant: Peer}
 * - `track` {participant, kind, track, stream, element}: remote media arrived; `stream` holds only this
 *   track (a new MediaStream each time); for audio, `element` is the <audio> already playing it (null with playAudio off)
 * - `audioblocked` {participant}: the autoplay policy refused to play remote audio; call resumeAudio() from a click
 * - `audiounblocked` {participant}: that audio plays after all (resumeAudio(), or the browser allowed it later)
 * - `media` {audio, video, path?}: what this client now sends
 * - `sendscale` {scale, why}: the camera's send resolution was stepped (scaleResolutionDownBy `scale`)
 *   because the network cannot carry the current one, or can carry more again (sendscale.js)
 * - `reconnecting` {attempt, error}, `reconnected` {}: a rejoin from scratch (others saw this participant leave)
 * - `restarted` {resumed}: the network changed and ICE restarted on both connections, over a new
 *   signaling socket if `resumed`; the others saw nothing (PROTOCOL.md "Network change")
 * - `bye` {reason}: the server removed this participant
 * - `error` {error: MedcallError}: a failure not tied to a call the app made
 */
export class MedcallClient extends EventTarget {
  /** @param {Options} opts */
  constructor(opts = {}) {
    super();
    this.opts = { prenegotiate: true, reconnect: true, playAudio: true, requestTimeout: 10000, audio: true, video: true, ...opts };
    /** @type {State} */
    this.state = 'idle';
    /** @type {Map<string, Peer>} the other participants */
    this.peers = new Map();
    this._remote = new RemoteMedia({
      playAudio: this.opts.playAudio,
      onBlocked: (participant) => this._emit('audioblocked', { participant }),
      onUnblocked: (participant) => this._emit('audiounblocked', { participant }),
    });
    /** Whether the server records this consultation (joined.recording). */
    this.recording = false;
    /** @type {Peer|null} this participant as the server sees it */
    this.self = null;
    /** What this client sends. */
    this.sending = { audio: false, video: false };
    /** @type {MediaStream|null} microphone and camera tracks */
    this.localStream = null;

    this._nextId = 1;
    /** @type {Map<string, {type: string, resolve: Function, reject: Function, timer: any}>} */
    this._pending = new Map();
    /** @type {WebSocket|null} */ this._ws = null;
    /** @type {RTCPeerConnection|null} */ this._pub = null;
    /** @type {RTCPeerConnection|null} */ this._sub = null;
    /** @type {Record<string, RTCIceCandidateInit[]>} remote candidates waiting for a description */
    this._queued = { [PUBLISH]: [], [SUBSCRIBE]: [] };
    this._subChain = Promise.resolve(); // server offers and candidates, in order
    /** @type {RTCRtpSender|null} */ this._videoSender = null;
    /** @type {MediaStreamTrack|null} */ this._mic = null;
    /** @type {MediaStreamTrack|null} */ this._cam = null;
    this._mediaChain = Promise.resolve(); // upgrades and downgrades, one at a time
    this._closing = false; // leave() or close() called: do not reconnect
    this._reconnecting = false; // a reconnect loop is running
    this._generation = 0; // bumps on every (re)connect; stale callbacks check it
    this._lastStats = null;
    this._resume = ''; // joined.resume: takes this participant over on a new socket
    this._restarting = false; // a network-change restart is running
    this._stopWatch = () => {}; // stops netwatch.js's stall detector
    this._stopScale = () => {}; // stops sendscale.js's resolution steps
  }

  /**
   * Connects, joins, publishes the microphone and answers the server's
   * subscribe offers. Rejects with a MedcallError (e.g. code token_expired).
   * @returns {Promise<{consultation: string, participant: Peer, participants: Peer[], recording: boolean}>}
   */
  async join() {
    if (this.state !== 'idle' && this.state !== 'closed') {
      throw new MedcallError(ClientErrorCodes.STATE, `cannot join while ${this.state}`);
    }
    this._closing = false;
    this._setState('connecting');
    try {
      return await this._connect();
    } catch (err) {
      this._teardown();
      this._setState('closed');
      throw err;
    }
  }

  /**
   * Turns the camera on. With a pre-negotiated video sender (the default) this
   * is `media{video:true, path:"prenegotiated"}` plus replaceTrack, with no
   * SDP exchange; otherwise the client adds a video track and re-offers, then
   * sends `media{video:true, path:"renegotiate"}`.
   * @returns {Promise<'prenegotiated'|'renegotiate'>} the path taken
   */
  upgradeVideo() {
    return this._serialMedia(async () => {
      this._requireJoined();
      if (this.sending.video) return this._videoSender ? 'prenegotiated' : 'renegotiate';
      const cam = await this._camera();
      const gen = this._generation;
      let path;
      if (this._videoSender) {
        path = 'prenegotiated';
        // The notice goes first so the server does not drop the new RTP as muted media.
        const ack = this._request('media', { video: true, path });
        await this._videoSender.replaceTrack(cam);
        await ack;
      } else {
        path = 'renegotiate';
        this._videoSender = this._pub.addTrack(cam, this._localMediaStream());
        await this._offerPublish();
        await this._request('media', { video: true, path });
      }
      if (gen !== this._generation) throw new MedcallError(ClientErrorCodes.CLOSED, 'reconnected during the upgrade');
      this.sending.video = true;
      this._emit('media', { ...this.sending, path });
      return path;
    });
  }

  /** Turns the camera off; audio and the recording go on. The video sender stays, so re-upgrading is the fast path. */
  downgradeVideo() {
    return this._serialMedia(async () => {
      this._requireJoined();
      if (!this.sending.video) return;
      await this._request('media', { video: false });
      this.sending.video = false;
      if (this._videoSender) await this._videoSender.replaceTrack(null);
      this._stopCamera();
      this._emit('media', { ...this.sending });
    });
  }

  /**
   * Mutes or unmutes the microphone (the track stays negotiated).
   * @param {boolean} on
   */
  setAudio(on) {
    return this._serialMedia(async () => {
      this._requireJoined();
      if (this._mic) this._mic.enabled = on;
      await this._request('media', { audio: on });
      this.sending.audio = on;
      this._emit('media', { ...this.sending });
    });
  }

  /** Leaves the consultation: `leave`, its `ack`, then the server says bye and closes. */
  async leave() {
    this._closing = true;
    if (this.state === 'joined') {
      try {
        await this._request('leave', {});
      } catch (err) {
        if (!(err instanceof MedcallError) || err.code !== ClientErrorCodes.CLOSED) throw err;
      }
    }
    this.close();
  }

  /** Closes everything at once, without telling the server (it notices the socket closing). */
  close() {
    this._closing = true;
    this._teardown();
    this._stopCamera();
    if (this._mic) { this._mic.stop(); this._mic = null; }
    this.localStream = null;
    this._setState('closed');
  }

  /**
   * The <audio> element playing a participant's audio, or null (not yet
   * arrived, or playAudio off). Inserting it in the document is optional.
   * @param {string} participant
   * @returns {HTMLAudioElement|null}
   */
  audioElement(participant) { return this._remote.audioElement(participant); }

  /**
   * A stream holding only a participant's video track (for a muted <video>), or null.
   * @param {string} participant
   * @returns {MediaStream|null}
   */
  videoStream(participant) { return this._remote.videoStream(participant); }

  /**
   * A stream holding only a participant's audio track, or null.
   * @param {string} participant
   * @returns {MediaStream|null}
   */
  audioStream(participant) { return this._remote.audioStream(participant); }

  /**
   * Starts remote audio the browser's autoplay policy blocked (see the
   * `audioblocked` event). Call it from a click or key handler.
   * @returns {Promise<boolean>} whether all remote audio now plays
   */
  resumeAudio() { return this._remote.resume(); }

  /** Whether some remote audio is blocked by the autoplay policy (between `audioblocked` and `audiounblocked`). */
  get audioBlocked() { return this._remote.blocked.size > 0; }

  /**
   * Sends a ping and resolves with the round trip in ms.
   * @returns {Promise<number>}
   */
  async ping() {
    const t0 = performance.now();
    await this._request('ping', {});
    return performance.now() - t0;
  }

  /**
   * Connection statistics from getStats on both connections.
   * `rttMs` is the ICE round trip of the publish connection; `lossPct` the
   * share of inbound RTP lost since the call started; bitrates are averaged
   * since the previous call to stats().
   * @returns {Promise<{rttMs: number|null, lossPct: number|null, sendKbps: number|null, recvKbps: number|null,
   *   inbound: {audio: {packetsReceived: number, packetsLost: number, totalAudioEnergy: number, totalSamplesDuration: number}, video: {packetsReceived: number, framesDecoded: number, frameWidth: number}},
   *   outbound: {audio: {packetsSent: number}, video: {packetsSent: number, framesEncoded: number}}}>}
   */
  async stats() {
    const tally = new StatsTally();
    if (this._pub) tally.addPublish(await this._pub.getStats());
    if (this._sub) tally.addSubscribe(await this._sub.getStats());
    const now = performance.now();
    const out = tally.result(this._lastStats, now);
    this._lastStats = tally.sample(now);
    return out;
  }

  // ---- connecting ----

  async _connect() {
    const gen = ++this._generation;
    const token = this.opts.getToken ? await this.opts.getToken() : this.opts.token;
    /** @type {any} */
    let joined;
    // In a cluster the entry node may answer join with redirect{url}: the
    // consultation lives on another node; join there (same scheme only).
    for (let url = this.opts.url || defaultURL(), hops = 0; ; hops++) {
      await this._open(gen, url);
      joined = await this._request('join', this.opts.consultation ? { token, consultation: this.opts.consultation } : { token });
      if (joined.type !== 'redirect') break;
      if (hops >= 3 || new URL(joined.url).protocol !== new URL(url).protocol) throw new MedcallError(ClientErrorCodes.PROTOCOL, `refused redirect to ${joined.url}`);
      const old = this._ws;
      old.onclose = null; old.onmessage = null; old.close();
      url = joined.url;
    }
    if (gen !== this._generation) throw new MedcallError(ClientErrorCodes.CLOSED, 'superseded by a newer connection');
    this.self = joined.participant;
    this.recording = !!joined.recording;
    this.peers = new Map((joined.participants || []).map((p) => [p.id, p]));
    /** @type {RTCIceServer[]|undefined} TURN servers and this join's credentials (PROTOCOL.md "ICE servers") */ this._joinedICE = joined.iceServers;
    this._resume = joined.resume || '';
    this._setupPeerConnections(gen);
    this._stopWatch = watchTransports(() => [this._pub, this._sub], () => {
      if (gen === this._generation && !this._closing && this.opts.reconnect) this._networkChanged(true);
    });
    this._stopScale = adaptSendResolution(() => this._videoSender, {
      onStep: (scale, why) => this._emit('sendscale', { scale, why }),
    });
    await this._publishAudio();
    this._setState('joined');
    const detail = { consultation: joined.consultation, participant: joined.participant, participants: joined.participants || [], recording: this.recording };
    this._emit('joined', detail);
    return detail;
  }

  /** Drops the socket and peer connections (not the local tracks). */
  _teardown() {
    this._generation++;
    this._stopWatch();
    this._stopScale();
    this._failPending(new MedcallError(ClientErrorCodes.CLOSED, 'connection closed'));
    if (this._ws) { this._ws.onclose = null; this._ws.onmessage = null; this._ws.close(1000); this._ws = null; }
    for (const pc of [this._pub, this._sub]) if (pc) { pc.onicecandidate = null; pc.ontrack = null; pc.oniceconnectionstatechange = null; pc.close(); }
    this._pub = this._sub = null;
    this._videoSender = null;
    this._queued = { [PUBLISH]: [], [SUBSCRIBE]: [] };
    this._subChain = Promise.resolve();
    this.sending = { audio: false, video: false };
    this._lastStats = null;
    this._remote.clear();
  }

  // ---- helpers ----

  _serialMedia(fn) {
    const run = this._mediaChain.then(fn, fn);
    this._mediaChain = run.catch(() => {});
    return run;
  }

  _requireJoined() {
    if (this.state !== 'joined' && this.state !== 'reconnecting') {
      throw new MedcallError(ClientErrorCodes.STATE, `not joined (${this.state})`);
    }
    if (!this._pub) throw new MedcallError(ClientErrorCodes.STATE, 'not connected');
  }

  /** @param {State} s */
  _setState(s) {
    if (this.state === s) return;
    this.state = s;
    this._emit('state', { state: s });
  }

  _emit(type, detail) { this.dispatchEvent(new CustomEvent(type, { detail })); }

  /** Reports an error from a background task (a negotiation the server started), unless it is only the connection closing. */
  _emitBackground(err) {
    const e = asMedcallError(err);
    if (e.code === ClientErrorCodes.CLOSED || this._closing) return;
    this._emit('error', { error: e });
  }
}

// The private methods of each concern, installed as the class's own would be (not enumerable).
for (const methods of [signalingMethods, negotiationMethods, recoveryMethods, mediaMethods]) {
  for (const [name, d] of Object.entries(Object.getOwnPropertyDescriptors(methods))) {
    Object.defineProperty(MedcallClient.prototype, name, { ...d, enumerable: false });
  }
}
