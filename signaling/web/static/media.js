// The local media of the medcall browser client: one microphone and one
// camera track, opened on first use, kept across reconnects, in one
// MediaStream (client.localStream).
//
// MedcallClient methods, installed on its prototype by medcall.js; `this` is
// the client, whose fields they share (_mic, _cam, localStream, opts).

import { MedcallError, ClientErrorCodes } from './protocol.js';

/** @typedef {import('./medcall.js').MedcallClient} MedcallClient */

/** MedcallClient methods (`this` is the client). */
export const mediaMethods = {
  _localMediaStream() {
    if (!this.localStream) this.localStream = new MediaStream();
    return this.localStream;
  },

  async _microphone() {
    if (this._mic && this._mic.readyState === 'live') return this._mic;
    const s = await getMedia({ audio: this.opts.audio });
    this._mic = s.getAudioTracks()[0];
    this._localMediaStream().addTrack(this._mic);
    return this._mic;
  },

  async _camera() {
    // A reconnect turns video back on with the camera that is still open.
    if (this._cam && this._cam.readyState === 'live') return this._cam;
    const s = await getMedia({ video: this.opts.video });
    this._cam = s.getVideoTracks()[0];
    this._localMediaStream().addTrack(this._cam);
    return this._cam;
  },

  _stopCamera() {
    if (!this._cam) return;
    this._cam.stop();
    if (this.localStream) this.localStream.removeTrack(this._cam);
    this._cam = null;
  },
};

/** @param {MediaStreamConstraints} c */
async function getMedia(c) {
  try {
    return await navigator.mediaDevices.getUserMedia(c);
  } catch (err) {
    const what = c.video ? 'camera' : 'microphone';
    throw new MedcallError(ClientErrorCodes.MEDIA, `could not open the ${what}: ${err && err.name ? err.name : err}`, { cause: err });
  }
}
