// Browser test of the replay player (static/replay.js) in headless Chromium.
// Run by TestReplayPlayerInChromium (cmd/medcall/replay_browser_test.go),
// which serves the demo page and the replay API over a signed two-party
// recording: each participant has a tone of their own (patient 440 Hz,
// clinician 2.5 kHz) and a video whose frames carry their time as a 10-bit
// barcode; the clinician's camera comes on at MEDCALL_VIDEO_AT seconds.
//
// Environment: MEDCALL_URL (server), MEDCALL_RECORDING (the recording's
// path), MEDCALL_FPS, MEDCALL_VIDEO_AT, MEDCALL_CHROMIUM. The replay token
// is the first line of stdin. Prints RESULT lines and "REPLAY PASS".
import { chromium } from 'playwright-core';
import { createInterface } from 'node:readline';

const base = process.env.MEDCALL_URL;
const recording = process.env.MEDCALL_RECORDING;
const fps = Number(process.env.MEDCALL_FPS);
const videoAt = Number(process.env.MEDCALL_VIDEO_AT);
if (!base || !recording || !fps) throw new Error('MEDCALL_URL, MEDCALL_RECORDING and MEDCALL_FPS must be set');
const token = await new Promise((resolve) => createInterface({ input: process.stdin }).once('line', resolve));

const args = [
  '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--autoplay-policy=no-user-gesture-required',
];
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const failures = [];
const check = (cond, msg) => { if (!cond) failures.push(msg); };

// Seek targets in no particular order: every measurement follows a seek.
const points = [5.2, 1.0, 6.5, 0.6, 3.8, 2.2, 4.4, 1.6, 5.9, 3.3];
const tone = { patient: 440, clinician: 2500 };

let browser;
let code = 0;
try {
  browser = await chromium.launch({ executablePath: process.env.MEDCALL_CHROMIUM || '/usr/bin/chromium', headless: true, args });
  const page = await browser.newPage();
  page.on('pageerror', (e) => failures.push(`page error: ${e.message}`));
  await page.goto(`${base}/`);
  await page.evaluate(async ({ recording, token }) => {
    const { showConsultation } = await import('/replay.js');
    const c = document.createElement('div');
    document.body.prepend(c);
    const p = await showConsultation(c, recording, { Authorization: `Bearer ${token}` });
    const ctx = new AudioContext();
    await ctx.resume();
    const an = ctx.createAnalyser();
    an.fftSize = 8192;
    an.smoothingTimeConstant = 0;
    for (const x of p.tiles) ctx.createMediaElementSource(x.video).connect(an);
    an.connect(ctx.destination);
    // What a person would perceive right now: the clock, each tile's frame
    // (decoded from its barcode) and placeholder, and the tones' energy.
    window.measure = () => {
      const t = p.now();
      const tiles = p.tiles.map((x) => {
        const c = document.createElement('canvas');
        c.width = 160;
        c.height = 120;
        const g = c.getContext('2d');
        g.drawImage(x.video, 0, 0, 160, 120);
        const row = g.getImageData(0, 60, 160, 1).data;
        let n = 0;
        for (let b = 0; b < 10; b++) if (row[(b * 16 + 8) * 4] > 128) n |= 1 << b;
        return { label: x.p.label, frame: n, videoOn: x.fig.dataset.video === 'on', placeholder: !x.ph.hidden, paused: x.video.paused };
      });
      const bins = new Float32Array(an.frequencyBinCount);
      an.getFloatFrequencyData(bins);
      const db = (f) => { const i = Math.round(f / (ctx.sampleRate / an.fftSize)); return Math.max(bins[i - 1], bins[i], bins[i + 1]); };
      return { t, tiles, db: { patient: db(440), clinician: db(2500), noise: db(1300) } };
    };
    window.player = p;
  }, { recording, token });

  const judge = (m, where, playing) => {
    const shown = {};
    for (const x of m.tiles) {
      const camera = x.label === 'patient' || m.t >= videoAt;
      if (Math.abs(m.t - videoAt) > 0.1 || x.label === 'patient') {
        check(x.videoOn === camera && x.placeholder === !camera,
          `${where}: ${x.label} at ${m.t.toFixed(2)} s: video ${x.videoOn ? 'shown' : 'hidden'}, placeholder ${x.placeholder ? 'shown' : 'hidden'}; camera was ${camera ? 'on' : 'off'}`);
      }
      if (x.videoOn) {
        shown[x.label] = x.frame / fps;
        check(Math.abs(x.frame / fps - m.t) <= 0.1, `${where}: ${x.label} shows the frame of ${(x.frame / fps).toFixed(3)} s at ${m.t.toFixed(3)} s`);
      }
      if (playing) check(!x.paused, `${where}: ${x.label} is not playing`);
    }
    if (shown.patient !== undefined && shown.clinician !== undefined) {
      check(Math.abs(shown.patient - shown.clinician) <= 0.04,
        `${where}: patient shows ${shown.patient.toFixed(3)} s, clinician ${shown.clinician.toFixed(3)} s: more than 40 ms apart`);
    }
    if (playing) {
      for (const who of ['patient', 'clinician']) {
        check(m.db[who] > -70 && m.db[who] > m.db.noise + 20,
          `${where}: ${who}'s ${tone[who]} Hz tone at ${m.db[who].toFixed(1)} dB, noise ${m.db.noise.toFixed(1)} dB: not heard`);
      }
    }
    return shown;
  };

  for (const at of points) {
    await page.evaluate(async (at) => { await window.player.seek(at); await window.player.play(); }, at);
    await sleep(600);
    const m = await page.evaluate(() => window.measure());
    const shown = judge(m, `playing after a seek to ${at} s`, true);
    console.log(`RESULT point seek=${at} t=${m.t.toFixed(3)} patient_frame_s=${shown.patient?.toFixed(3)} clinician_frame_s=${shown.clinician?.toFixed(3) ?? 'placeholder'} patient_db=${m.db.patient.toFixed(1)} clinician_db=${m.db.clinician.toFixed(1)} noise_db=${m.db.noise.toFixed(1)}`);
  }
  // Paused seeks show the frame of the target at once.
  await page.evaluate(() => window.player.pause());
  for (const at of [4.5, 2.0, 7.0]) {
    const m = await page.evaluate(async (at) => { await window.player.seek(at); await new Promise((r) => setTimeout(r, 200)); return window.measure(); }, at);
    const shown = judge(m, `paused at ${at} s`, false);
    check(Math.abs(m.t - at) < 0.001, `paused seek to ${at} s: clock at ${m.t}`);
    console.log(`RESULT paused seek=${at} patient_frame_s=${shown.patient?.toFixed(3)} clinician_frame_s=${shown.clinician?.toFixed(3) ?? 'placeholder'}`);
  }
  if (failures.length) throw new Error(failures.join('\n'));
  console.log('REPLAY PASS');
} catch (err) {
  console.error(`REPLAY FAIL: ${err && err.stack ? err.stack : err}`);
  code = 1;
} finally {
  if (browser) await browser.close().catch(() => {});
}
process.exit(code);
