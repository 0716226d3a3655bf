// Steps the camera's send resolution down as soon as the network cannot
// carry it, and back up when it can. When a subscriber's downlink fills,
// the SFU tells the publisher a lower bitrate (docs/quality.md); Chromium's
// encoder then keeps the camera's resolution and drops frames (4-10 fps
// for two to three seconds) until its own quality scaler, which looks at a
// few seconds of encoder output, scales down. Every subscriber sees those
// seconds as a frozen picture. Here the publisher notices the dropped
// frames within half a second and scales down itself: a smaller picture at
// a steady frame rate rather than a frozen one.
//
// Down: the encoder's target has fallen (FELL) below what the picture
// needs (BITS_PER_PIXEL), or it encodes under half the frame rate the
// camera delivers on two ticks in a row (its frame dropper at work:
// Chromium does not count that as a quality limitation). Up: the target has
// stayed above UP_MARGIN of what the larger picture needs, or UP_RECOVER of
// the target the step down was taken at, for upMs. Nothing is judged in
// a camera's first two seconds.

const STEPS = [1, 1.5, 2, 3, 4];
// BITS_PER_PIXEL is what a frame needs for a picture worth watching: 640x480
// at 30 fps needs 460 kbit/s, 427x320 205 kbit/s, 320x240 115 kbit/s. Below
// that an encoder drops frames rather than lower its quality further (a
// noisy 427x320 picture at 174 kbit/s: 4-8 fps).
const BITS_PER_PIXEL = 0.05;
// The target has fallen (the network said less) when it is below FELL of
// its highest in the last PEAK_MS: a target still ramping up at the start
// of a call (Chromium takes seconds to reach 720p's rate even on a perfect
// network) is no reason to shrink the picture.
const FELL = 0.7;
const PEAK_MS = 5000;
// A step up waits for a target UP_MARGIN above what the larger picture
// needs, or UP_RECOVER above the target the step down was taken at (the
// link has grown back; a 720p camera's need can be above the ceiling).
const UP_MARGIN = 1.3;
const UP_RECOVER = 1.5;
const MIN_WIDTH = 160;

/**
 * Watches the video sender's encoder and sets its scaleResolutionDownBy.
 * @param {() => RTCRtpSender|null} senderOf the camera's sender (looked up on every tick)
 * @param {{everyMs?: number, upMs?: number, onStep?: (scale: number, why: string) => void}} [opts]
 * @returns {() => void} stops watching
 */
export function adaptSendResolution(senderOf, opts = {}) {
  const everyMs = opts.everyMs || 250;
  const upMs = opts.upMs || 5000;
  const startMs = 2000;
  let step = 0;
  let last = null; // {sender, track, frames, t, since}
  let low = 0; // ticks in a row with frames dropped
  let stepAt = 0;
  let highSince = 0;
  /** @type {number[]} the target when each step down was taken */
  const downAt = [];
  /** @type {{t: number, target: number}[]} the targets of the last PEAK_MS */
  let recent = [];
  let busy = false;
  const setStep = async (sender, next, why) => {
    const p = sender.getParameters();
    if (!p.encodings || !p.encodings.length) return;
    p.encodings[0].scaleResolutionDownBy = STEPS[next];
    await sender.setParameters(p);
    step = next;
    stepAt = performance.now();
    low = 0;
    highSince = 0;
    if (opts.onStep) opts.onStep(STEPS[next], why);
  };
  const timer = setInterval(async () => {
    const sender = senderOf();
    if (busy || !sender || !sender.track || sender.track.readyState !== 'live') return;
    busy = true;
    try {
      let out = null;
      let source = null;
      (await sender.getStats()).forEach((s) => {
        if (s.type === 'outbound-rtp' && s.kind === 'video') out = s;
        else if (s.type === 'media-source' && s.kind === 'video') source = s;
      });
      const now = performance.now();
      if (!out) return;
      if (!last || last.sender !== sender || last.track !== sender.track) {
        // A new sender or camera: its encoder starts afresh (and may drop a
        // few frames while its rate ramps up), so it is judged from startMs on.
        last = { sender, track: sender.track, frames: out.framesEncoded || 0, t: now, since: now };
        step = 0;
        downAt.length = 0;
        recent = [];
        return;
      }
      const fps = ((out.framesEncoded || 0) - last.frames) * 1000 / (now - last.t);
      last = { ...last, frames: out.framesEncoded || 0, t: now };
      const cam = sender.track.getSettings();
      // What the camera delivers (a dim room may slow it), not what it was asked for.
      const cameraFps = (source && source.framesPerSecond) || cam.frameRate || 30;
      const need = (s) => BITS_PER_PIXEL * ((cam.width || 640) / STEPS[s]) * ((cam.height || 480) / STEPS[s]) * cameraFps;
      const target = out.targetBitrate || 0;
      recent = recent.filter((r) => now - r.t <= PEAK_MS);
      recent.push({ t: now, target });
      const fell = target < FELL * Math.max(...recent.map((r) => r.target));
      // A step reconfigures the encoder (a keyframe, a few slow frames).
      const settled = now - stepAt > 1000 && now - last.since > startMs;
      low = fps < cameraFps / 2 ? low + 1 : 0;
      if (!settled) return;
      let down = step;
      while (fell && target > 0 && down < STEPS.length - 1 && need(down) > target && (cam.width || 640) / STEPS[down + 1] >= MIN_WIDTH) down++;
      if (down > step) {
        // Back up to the rung just above: once the target recovers. Further
        // up, skipped on the way down: only once the picture's need is met.
        for (let s = step; s < down; s++) downAt.push(s === down - 1 ? target : 0);
        await setStep(sender, down, `target ${Math.round(target / 1000)} kbit/s`);
      } else if (low >= 2 && step < STEPS.length - 1 && (cam.width || 640) / STEPS[step + 1] >= MIN_WIDTH) {
        downAt.push(target);
        await setStep(sender, step + 1, `${fps.toFixed(0)} fps encoded at ${Math.round(target / 1000)} kbit/s`);
      } else if (step > 0 && target > 0 && target >= Math.min(UP_MARGIN * need(step - 1), UP_RECOVER * (downAt[downAt.length - 1] || 0) || Infinity)) {
        if (!highSince) highSince = now;
        if (now - highSince >= upMs) {
          downAt.pop();
          await setStep(sender, step - 1, `target ${Math.round(target / 1000)} kbit/s`);
        }
      } else {
        highSince = 0;
      }
    } catch {
      // the sender closed or was replaced mid-tick: the next tick looks again
    } finally {
      busy = false;
    }
  }, everyMs);
  return () => clearInterval(timer);
}
