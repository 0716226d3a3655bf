// Remote media of the other participants, kept apart by kind.
//
// Why apart: a media element holding an audio track and a video track does
// not start playing until the first video frame arrives (Chromium), so in an
// audio-only call - with the video track idle, pre-negotiated or not yet sent -
// nothing would be heard. Audio therefore plays in an <audio> element of its
// own from its first packet, and video is handed out as a stream holding only
// the video track, for a muted <video>.

/**
 * The other participants' media: one playing <audio> element and one
 * video-only MediaStream per participant.
 */
export class RemoteMedia {
  /**
   * @param {{playAudio?: boolean, onBlocked?: (participant: string) => void, onUnblocked?: (participant: string) => void}} [opts]
   *   playAudio: play each participant's audio in an element owned here (default true);
   *   onBlocked: the browser's autoplay policy refused to play someone's audio;
   *   onUnblocked: that audio plays after all (resume(), or the browser allowed it later, e.g. once the microphone is live).
   */
  constructor(opts = {}) {
    this.playAudio = opts.playAudio !== false;
    this.onBlocked = opts.onBlocked || (() => {});
    this.onUnblocked = opts.onUnblocked || (() => {});
    /** @type {Map<string, HTMLAudioElement>} */
    this._audio = new Map();
    /** @type {Map<string, MediaStream>} */
    this._audioStreams = new Map();
    /** @type {Map<string, MediaStream>} */
    this._video = new Map();
    /** @type {Set<string>} participants whose audio the browser refused to start */
    this.blocked = new Set();
  }

  /**
   * Takes a track from the subscribe connection and returns a new stream
   * holding only that track (a new object each time, so assigning it to an
   * element's srcObject always reloads the element) and, for audio, the
   * element playing it.
   * @param {string} participant
   * @param {MediaStreamTrack} track
   * @returns {{stream: MediaStream, element: HTMLAudioElement|null}}
   */
  add(participant, track) {
    const stream = new MediaStream([track]);
    if (track.kind === 'video') {
      this._video.set(participant, stream);
      return { stream, element: null };
    }
    this._audioStreams.set(participant, stream);
    if (!this.playAudio) return { stream, element: null };
    let el = this._audio.get(participant);
    if (!el) {
      el = document.createElement('audio');
      el.autoplay = true;
      el.dataset.participant = participant;
      el.addEventListener('playing', () => { if (this.blocked.delete(participant)) this.onUnblocked(participant); });
      this._audio.set(participant, el);
    }
    el.srcObject = stream;
    this._play(participant, el);
    return { stream, element: el };
  }

  /**
   * The <audio> element playing a participant's audio (null with playAudio
   * off). It is not in the document; an app may insert it (e.g. to pick an
   * output with setSinkId) and it keeps playing - but removing it from the
   * document pauses it.
   * @param {string} participant
   */
  audioElement(participant) { return this._audio.get(participant) || null; }

  /** @param {string} participant @returns {MediaStream|null} a stream holding only that participant's audio */
  audioStream(participant) { return this._audioStreams.get(participant) || null; }

  /** @param {string} participant @returns {MediaStream|null} a stream holding only that participant's video */
  videoStream(participant) { return this._video.get(participant) || null; }

  /**
   * Starts audio the autoplay policy blocked. Call it from a click handler.
   * @returns {Promise<boolean>} whether everyone's audio now plays
   */
  async resume() {
    const tries = [...this.blocked].map(async (id) => {
      const el = this._audio.get(id);
      if (!el) { this.blocked.delete(id); return; }
      await el.play();
      if (this.blocked.delete(id)) this.onUnblocked(id);
    });
    const results = await Promise.allSettled(tries);
    return results.every((r) => r.status === 'fulfilled');
  }

  /** Stops and forgets a participant's media (they left). @param {string} participant */
  remove(participant) {
    const el = this._audio.get(participant);
    if (el) { el.pause(); el.srcObject = null; el.remove(); }
    this._audio.delete(participant);
    this._audioStreams.delete(participant);
    this._video.delete(participant);
    this.blocked.delete(participant);
  }

  /** Stops and forgets everyone's media. */
  clear() {
    for (const id of new Set([...this._audio.keys(), ...this._audioStreams.keys(), ...this._video.keys()])) this.remove(id);
  }

  /** @param {string} participant @param {HTMLAudioElement} el */
  _play(participant, el) {
    el.play().then(() => { if (this.blocked.delete(participant)) this.onUnblocked(participant); }, (err) => {
      // AbortError: a newer srcObject replaced this one; that load plays instead.
      if (err && err.name === 'NotAllowedError' && this._audio.get(participant) === el) {
        this.blocked.add(participant);
        this.onBlocked(participant);
      }
    });
  }
}
