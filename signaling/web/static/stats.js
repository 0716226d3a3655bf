// Connection statistics of the medcall browser client: MedcallClient.stats()
// adds up the getStats reports of its two peer connections in a StatsTally.

/**
 * @typedef {{rttMs: number|null, lossPct: number|null, sendKbps: number|null, recvKbps: number|null,
 *   inbound: {audio: {packetsReceived: number, packetsLost: number, totalAudioEnergy: number, totalSamplesDuration: number}, video: {packetsReceived: number, framesDecoded: number, frameWidth: number}},
 *   outbound: {audio: {packetsSent: number}, video: {packetsSent: number, framesEncoded: number}}}} CallStats
 * @typedef {{t: number, sent: number, recv: number}} StatsSample bytes counted at time t, for the next bitrates
 */

/** The ICE round trip of a nominated, succeeded candidate pair in ms, or null. */
const rtt = (s) => (s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded' && s.currentRoundTripTime !== undefined
  ? s.currentRoundTripTime * 1000 : null);

/** Adds up the reports of one stats() call: the publish connection's first, then the subscribe connection's. */
export class StatsTally {
  constructor() {
    /** @type {CallStats} */
    this.out = {
      rttMs: null, lossPct: null, sendKbps: null, recvKbps: null,
      inbound: { audio: { packetsReceived: 0, packetsLost: 0, totalAudioEnergy: 0, totalSamplesDuration: 0 }, video: { packetsReceived: 0, framesDecoded: 0, frameWidth: 0 } },
      outbound: { audio: { packetsSent: 0 }, video: { packetsSent: 0, framesEncoded: 0 } },
    };
    this.sent = 0; this.recv = 0; this.got = 0; this.lost = 0;
  }

  /** @param {RTCStatsReport} report the publish connection's */
  addPublish(report) {
    const out = this.out;
    for (const s of report.values()) {
      if (out.rttMs === null) out.rttMs = rtt(s);
      if (s.type === 'outbound-rtp' && (s.kind === 'audio' || s.kind === 'video')) {
        out.outbound[s.kind].packetsSent += s.packetsSent || 0;
        if (s.kind === 'video') out.outbound.video.framesEncoded += s.framesEncoded || 0;
        this.sent += s.bytesSent || 0;
      }
    }
  }

  /** @param {RTCStatsReport} report the subscribe connection's */
  addSubscribe(report) {
    const out = this.out;
    for (const s of report.values()) {
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
        this.recv += s.bytesReceived || 0;
        this.got += s.packetsReceived || 0;
        this.lost += Math.max(0, s.packetsLost || 0);
      }
    }
  }

  /**
   * The statistics: loss since the call started, bitrates since the previous sample.
   * @param {StatsSample|null} last the previous call's sample
   * @param {number} now performance.now()
   * @returns {CallStats}
   */
  result(last, now) {
    const out = this.out;
    if (this.got + this.lost > 0) out.lossPct = (100 * this.lost) / (this.got + this.lost);
    if (last) {
      const dt = (now - last.t) / 1000;
      if (dt > 0) {
        out.sendKbps = Math.max(0, (8 * (this.sent - last.sent)) / 1000 / dt);
        out.recvKbps = Math.max(0, (8 * (this.recv - last.recv)) / 1000 / dt);
      }
    }
    return out;
  }

  /** @returns {StatsSample} this call's byte counts at `now`, for the next call's bitrates */
  sample(now) { return { t: now, sent: this.sent, recv: this.recv }; }
}
