// What a listener hears: each side's fake microphone plays its own tone (a
// WAV made by ffmpeg, looped by Chromium's --use-file-for-fake-audio-capture),
// and the other side is checked for that tone where it is actually played.
import { spawnSync } from 'node:child_process';
import { join as pathJoin } from 'node:path';

/** The tone each side's microphone sends, in Hz: far apart and not harmonics of each other. */
export const TONES = Object.freeze({ patient: 440, clinician: 1000 });

/**
 * Writes a 10 s mono 48 kHz WAV into dir with ffmpeg and returns its path:
 * beeps of a sine at hz, 0.5 s on and 0.5 s off. A steady tone would not do:
 * the browser's noise suppression learns it as background noise and removes
 * it within seconds. Chromium loops the file.
 */
export function makeTone(dir, hz) {
  const path = pathJoin(dir, `tone-${hz}.wav`);
  const r = spawnSync(process.env.MEDCALL_FFMPEG || 'ffmpeg', ['-hide_banner', '-loglevel', 'error', '-y',
    '-f', 'lavfi', '-i', `aevalsrc=0.5*sin(2*PI*${hz}*t)*lt(mod(t\\,1)\\,0.5):s=48000:d=10`,
    '-ac', '1', '-c:a', 'pcm_s16le', path], { encoding: 'utf8' });
  if (r.error || r.status !== 0) throw new Error(`ffmpeg could not make the ${hz} Hz tone: ${r.error || r.stderr}`);
  return path;
}

/**
 * Listens for `ms` to the element that plays peerID's audio and reads the
 * same interval from the subscribe connection's inbound-rtp stats. In the
 * demo page (window.medcallDemo) the element is the only unmuted media
 * element in the peer's tile holding an audio track; in a page that only
 * follows medcall.js's doc comment (window.medcallApp, its client) it is the
 * element the client plays, client.audioElement(peer). Runs in the page.
 */
function listenInPage({ peer, ms }) {
  const w = /** @type {any} */ (window);
  let el;
  if (w.medcallDemo) {
    const tile = document.querySelector(`.tile.peer[data-peer="${CSS.escape(peer)}"]`);
    if (!tile) throw new Error(`no tile for ${peer}`);
    const els = [...tile.querySelectorAll('audio, video')]
      .filter((e) => !e.muted && e.srcObject && e.srcObject.getAudioTracks().length > 0);
    if (els.length !== 1) throw new Error(`${els.length} unmuted elements play ${peer}'s audio, want 1`);
    el = els[0];
  } else {
    el = w.medcallApp.audioElement(peer);
    if (!el) throw new Error(`the client has no audio element for ${peer}`);
  }
  const client = w.medcallDemo || w.medcallApp;
  const ctx = w.__e2eAudio || (w.__e2eAudio = new AudioContext());
  const src = ctx.createMediaStreamSource(el.srcObject);
  const an = ctx.createAnalyser();
  an.fftSize = 4096;
  an.smoothingTimeConstant = 0;
  src.connect(an);
  const energy = async () => {
    const s = await client.stats();
    return { e: s.inbound.audio.totalAudioEnergy, d: s.inbound.audio.totalSamplesDuration };
  };
  return (async () => {
    await ctx.resume();
    const t0 = el.currentTime;
    const s0 = await energy();
    let rms = 0; let peakHz = 0;
    const time = new Float32Array(an.fftSize);
    const freq = new Float32Array(an.frequencyBinCount);
    for (let waited = 0; waited < ms; waited += 100) {
      await new Promise((r) => setTimeout(r, 100));
      an.getFloatTimeDomainData(time);
      let sum = 0;
      for (const v of time) sum += v * v;
      const r = Math.sqrt(sum / time.length);
      if (r > rms) {
        rms = r;
        an.getFloatFrequencyData(freq);
        let best = 0;
        for (let i = 1; i < freq.length; i++) if (freq[i] > freq[best]) best = i;
        peakHz = (best * ctx.sampleRate) / an.fftSize;
      }
    }
    const s1 = await energy();
    src.disconnect();
    const dur = s1.d - s0.d;
    return {
      paused: el.paused, element: el.tagName.toLowerCase() + (el.isConnected ? '' : '-detached'), played: el.currentTime - t0,
      rms, peakHz, binHz: ctx.sampleRate / an.fftSize,
      energy: s1.e - s0.e, samplesDuration: dur, power: dur > 0 ? (s1.e - s0.e) / dur : 0,
    };
  })();
}

/**
 * Checks that `who` hears peerID's tone: the element plays, the inbound-rtp
 * totalAudioEnergy rises (mean power of what was played out), and an
 * AnalyserNode on the played element's stream finds the sender's tone.
 * Polls up to timeout for the first ~1.5 s window that passes; returns the
 * measurement and throws with the last one if none did.
 * @returns {Promise<object>}
 */
export async function expectHears(page, who, peerID, hz, { timeout = 15000, log = console.log } = {}) {
  const end = Date.now() + timeout;
  let m;
  let why = '';
  for (;;) {
    m = await page.evaluate(listenInPage, { peer: peerID, ms: 1500 });
    why = judge(m, hz);
    if (!why) break;
    if (Date.now() > end) throw new Error(`${who} does not hear ${peerID}: ${why}; measured ${JSON.stringify(m)}`);
  }
  log(`RESULT audio_energy who=${who} from=${peerID} element=${m.element} power=${m.power.toExponential(2)} `
    + `samples_s=${m.samplesDuration.toFixed(2)} rms=${m.rms.toFixed(3)} peak_hz=${m.peakHz.toFixed(0)} want_hz=${hz}`);
  return m;
}

/** Returns why measurement m is not "hears a tone of hz", or '' if it is. */
function judge(m, hz) {
  if (m.paused) return 'the element playing the audio is paused';
  if (m.played < 0.5) return `the element played ${m.played.toFixed(2)} s in 1.5 s`;
  // totalAudioEnergy grows only with audio that is played out; a tone at -6 dBFS
  // through Opus has a mean power near 0.1, silence and comfort noise below 1e-4.
  if (!(m.power > 1e-3)) return `inbound-rtp totalAudioEnergy rose by ${m.energy} over ${m.samplesDuration.toFixed(2)} s of samples (mean power ${m.power})`;
  if (!(m.rms > 0.05)) return `the analyser heard RMS ${m.rms.toFixed(4)}`;
  if (Math.abs(m.peakHz - hz) > 2 * m.binHz) return `the analyser's loudest frequency is ${m.peakHz.toFixed(0)} Hz, not the sender's ${hz} Hz`;
  return '';
}
