// Notices a dead media path sooner than ICE does. After a network change a
// browser may keep its ICE state "connected" for several seconds (Chromium
// waits for its consent checks to time out) while nothing arrives any more.
// A connection that was receiving media steadily (bytes on every tick for
// half a second: Opus sends 50 packets a second, so only a media stream
// does that, not RTCP alone) and then receives nothing for `stallMs` is
// reported as stalled; medcall.js then checks its signaling socket and
// restarts ICE only if that is dead too (PROTOCOL.md "Network change"), so
// a peer who leaves or goes quiet costs one ping, not a restart.

/**
 * Watches the bytes each connection receives.
 * @param {() => RTCPeerConnection[]} pcs the connections to watch (looked up on every tick)
 * @param {(why: string) => void} onStall called once per stall
 * @param {{everyMs?: number, stallMs?: number}} [opts]
 * @returns {() => void} stops watching
 */
export function watchTransports(pcs, onStall, opts = {}) {
  const everyMs = opts.everyMs || 100;
  const stallMs = opts.stallMs || 500;
  const steadyTicks = Math.ceil(500 / everyMs);
  /** @type {Map<RTCPeerConnection, {bytes: number, grew: number, since: number, fired: boolean}>} grew: ticks in a row with bytes */
  const seen = new Map();
  let busy = false;
  const timer = setInterval(async () => {
    if (busy) return;
    busy = true;
    try {
      const now = performance.now();
      for (const pc of pcs()) {
        if (!pc || pc.connectionState === 'closed') continue;
        let bytes = 0;
        (await pc.getStats()).forEach((s) => { if (s.type === 'transport') bytes += s.bytesReceived || 0; });
        const w = seen.get(pc) || { bytes, grew: 0, since: now, fired: false };
        if (bytes > w.bytes) {
          w.grew = w.fired ? 1 : w.grew + 1;
          w.since = now;
          w.fired = false;
        } else if (w.grew >= steadyTicks && !w.fired && now - w.since >= stallMs) {
          w.fired = true;
          performance.mark('medcall: stall');
          onStall(`nothing received for ${Math.round(now - w.since)} ms`);
        } else if (now - w.since >= stallMs) {
          w.grew = 0; // not steady: a trickle of reports, or a stream that ended
        }
        w.bytes = bytes;
        seen.set(pc, w);
      }
    } catch {
      // a connection closed mid-tick: the next tick sees the new ones
    } finally {
      busy = false;
    }
  }, everyMs);
  return () => clearInterval(timer);
}
