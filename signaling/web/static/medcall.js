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

import { RemoteMedia } from './remote.js';
import { watchTransports } from './netwatch.js';

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

const PUBLISH = 'publish';
const SUBSCRIBE = 'subscribe';

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
    const out = {
      rttMs: null, lossPct: null, sendKbps: null, recvKbps: null,
      inbound: { audio: { packetsReceived: 0, packetsLost: 0, totalAudioEnergy: 0, totalSamplesDuration: 0 }, video: { packetsReceived: 0, framesDecoded: 0, frameWidth: 0 } },
      outbound: { audio: { packetsSent: 0 }, video: { packetsSent: 0, framesEncoded: 0 } },
    };
    let sent = 0; let recv = 0; let got = 0; let lost = 0;
    const rtt = (s) => (s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded' && s.currentRoundTripTime !== undefined
      ? s.currentRoundTripTime * 1000 : null);
    if (this._pub) {
      for (const s of (await this._pub.getStats()).values()) {
        if (out.rttMs === null) out.rttMs = rtt(s);
        if (s.type === 'outbound-rtp' && (s.kind === 'audio' || s.kind === 'video')) {
          out.outbound[s.kind].packetsSent += s.packetsSent || 0;
          if (s.kind === 'video') out.outbound.video.framesEncoded += s.framesEncoded || 0;
          sent += s.bytesSent || 0;
        }
      }
    }
    if (this._sub) {
      for (const s of (await this._sub.getStats()).values()) {
        if (out.rttMs === null) out.rttMs = rtt(s);
        if (s.type === 'inbound-rtp' && (s.kind === 'audio' || s.kind === 'video')) {
          const k = out.inbound[s.kind];
          k.packetsReceived += s.packetsReceived || 0;
          if (s.kind === 'audio') {
            k.packetsLost += s.packetsLost || 0;
            // Grows only with audio that is played out: it stays 0 while no element plays the track.
            k.totalAudioEnergy += s.totalAudioEnergy || 0;
            k.totalSamplesDuration += s.totalSamplesDuration || 0;
          } else {
            k.framesDecoded += s.framesDecoded || 0;
            k.frameWidth = Math.max(k.frameWidth, s.frameWidth || 0);
          }
          recv += s.bytesReceived || 0;
          got += s.packetsReceived || 0;
          lost += Math.max(0, s.packetsLost || 0);
        }
      }
    }
    if (got + lost > 0) out.lossPct = (100 * lost) / (got + lost);
    const now = performance.now();
    if (this._lastStats) {
      const dt = (now - this._lastStats.t) / 1000;
      if (dt > 0) {
        out.sendKbps = Math.max(0, (8 * (sent - this._lastStats.sent)) / 1000 / dt);
        out.recvKbps = Math.max(0, (8 * (recv - this._lastStats.recv)) / 1000 / dt);
      }
    }
    this._lastStats = { t: now, sent, recv };
    return out;
  }

  // ---- connecting and reconnecting ----

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
    await this._publishAudio();
    this._setState('joined');
    const detail = { consultation: joined.consultation, participant: joined.participant, participants: joined.participants || [], recording: this.recording };
    this._emit('joined', detail);
    return detail;
  }

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
  }

  _onSocketClosed(e) {
    this._failPending(new MedcallError(ClientErrorCodes.CLOSED, `connection closed (${e.code}${e.reason ? ': ' + e.reason : ''})`));
    if (this._closing || this.state !== 'joined' || !this.opts.reconnect) {
      if (this.state === 'joined') { this._teardown(); this._setState('closed'); }
      return;
    }
    // The server saw this socket close too and removed the participant: rejoin.
    // (A network change leaves the socket silent instead; _networkChanged resumes it.)
    this._reconnect();
  }

  // ---- network change (PROTOCOL.md "Network change") ----

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
          const resumed = !(await this._socketAnswers());
          if (!resumed && stalled && attempt === 1) return; // the network is fine: a peer left or went quiet
          if (resumed) await this._resumeSocket(gen);
          await this._restartIce();
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
  }

  /** Whether the socket is open and answers a ping at once (a slow answer only costs a resume). */
  async _socketAnswers() {
    if (!this._ws || this._ws.readyState !== WebSocket.OPEN) return false;
    try {
      await withTimeout(this._request('ping', {}), 400);
      return true;
    } catch {
      return false;
    }
  }

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
  }

  /**
   * Publish: re-offer with new ICE credentials; subscribe: ask the server to re-offer with new ones.
   * Resolves once both connections use a pair of their new credentials (else the caller tries again).
   */
  async _restartIce() {
    this._pub.restartIce();
    await this._offerPublish();
    await this._request('restart', { pc: SUBSCRIBE });
    const end = Date.now() + 3000;
    for (const pc of [this._pub, this._sub]) {
      while (pc.remoteDescription && !(await onNewPair(pc))) {
        if (Date.now() > end) throw new MedcallError(ClientErrorCodes.TIMEOUT, 'no connection on the new network after an ICE restart');
        await sleep(50);
      }
    }
  }

  /** Rejoins after a dropped socket (PROTOCOL.md "Reconnect"): new socket, join, negotiate anew, restore media. */
  async _reconnect() {
    if (this._reconnecting) return;
    this._reconnecting = true;
    try {
      await this._rejoin();
    } finally {
      this._reconnecting = false;
    }
  }

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
  }

  /** Drops the socket and peer connections (not the local tracks). */
  _teardown() {
    this._generation++;
    this._stopWatch();
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

  // ---- requests ----

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
  }

  _failPending(err) {
    for (const [id, p] of this._pending) { clearTimeout(p.timer); p.reject(err); this._pending.delete(id); }
  }

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
  }

  _onBye(reason) {
    this._emit('bye', { reason });
    if (reason === 'connection_failed' && !this._closing && this.opts.reconnect) {
      this._reconnect();
      return;
    }
    this.close();
  }

  _onParticipant(event, p) {
    if (!p || !p.id) return;
    if (event === 'left') {
      this._peerLeft(p.id);
      return;
    }
    this.peers.set(p.id, p);
    this._emit('peer', { event, participant: p });
  }

  _peerLeft(id) {
    const p = this.peers.get(id);
    this.peers.delete(id);
    this._remote.remove(id);
    if (p) this._emit('peer', { event: 'left', participant: p });
  }

  // ---- peer connections ----

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
  }

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
  }

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
  }

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
  }

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
  }

  async _flushCandidates(name) {
    const pc = name === PUBLISH ? this._pub : this._sub;
    const queued = this._queued[name];
    this._queued[name] = [];
    for (const c of queued) {
      try { await pc.addIceCandidate(c); } catch (err) { this._emitBackground(err); }
    }
  }

  // ---- local media ----

  _localMediaStream() {
    if (!this.localStream) this.localStream = new MediaStream();
    return this.localStream;
  }

  async _microphone() {
    if (this._mic && this._mic.readyState === 'live') return this._mic;
    const s = await getMedia({ audio: this.opts.audio });
    this._mic = s.getAudioTracks()[0];
    this._localMediaStream().addTrack(this._mic);
    return this._mic;
  }

  async _camera() {
    // A reconnect turns video back on with the camera that is still open.
    if (this._cam && this._cam.readyState === 'live') return this._cam;
    const s = await getMedia({ video: this.opts.video });
    this._cam = s.getVideoTracks()[0];
    this._localMediaStream().addTrack(this._cam);
    return this._cam;
  }

  _stopCamera() {
    if (!this._cam) return;
    this._cam.stop();
    if (this.localStream) this.localStream.removeTrack(this._cam);
    this._cam = null;
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

/** @param {MediaStreamConstraints} c */
async function getMedia(c) {
  try {
    return await navigator.mediaDevices.getUserMedia(c);
  } catch (err) {
    const what = c.video ? 'camera' : 'microphone';
    throw new MedcallError(ClientErrorCodes.MEDIA, `could not open the ${what}: ${err && err.name ? err.name : err}`, { cause: err });
  }
}

/** @returns {MedcallError} */
function asMedcallError(err) {
  if (err instanceof MedcallError) return err;
  return new MedcallError(ClientErrorCodes.STATE, String(err && err.message ? err.message : err), { cause: err });
}

function defaultURL() {
  const u = new URL('/v1/signal', location.href);
  u.protocol = u.protocol === 'https:' ? 'wss:' : 'ws:';
  return u.href;
}

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

/** Whether a candidate belongs to the ICE generation (username fragment) of a description. */
function sameGeneration(cand, sdp) {
  const m = / ufrag (\S+)/.exec(cand.candidate || '');
  const ufrag = cand.usernameFragment || (m && m[1]);
  return !ufrag || sdp.includes(`a=ice-ufrag:${ufrag}\r\n`) || sdp.includes(`a=ice-ufrag:${ufrag}\n`);
}

function withTimeout(p, ms) {
  return Promise.race([p, sleep(ms).then(() => { throw new MedcallError(ClientErrorCodes.TIMEOUT, `no reply within ${ms} ms`); })]);
}
