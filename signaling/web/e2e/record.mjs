// Recordings made by real headless Chromium: two participants on the demo
// page join a recorded consultation, both switch to video and talk for a
// while; the Go test (cmd/medcall/record_browser_test.go) then judges the
// WebM. A second mode seeks a recording in a <video> element.
//
// Capture comes from files the Go test makes with ffmpeg: every video frame
// carries its frame number as a row of 12 black/white 16x24 blocks (bit i at
// x = 16i..16i+15, y < 24, least significant first) and every 15th frame (one
// a second) is a flash; the audio has a 1 kHz click at each whole second.
//
// Environment:
//   MEDCALL_MODE        "call" (default) or "seek"
//   MEDCALL_URL         call: the server's base URL, in dev mode;
//                       seek: a page origin serving /rec.webm
//   MEDCALL_Y4M, MEDCALL_WAV  call: the fake capture files
//   MEDCALL_SECONDS     call: how long both send video (default 60)
//   MEDCALL_SEEK_TIMES  seek: comma-separated seconds
//   MEDCALL_CHROMIUM    the browser (default /usr/bin/chromium)
//
// Output (stdout): RESULT lines the Go test parses, then E2E PASS.
import { chromium } from 'playwright-core';
import { FAKE_MEDIA_ARGS } from './chromium.mjs';

const mode = process.env.MEDCALL_MODE || 'call';
const base = process.env.MEDCALL_URL;
if (!base) throw new Error('MEDCALL_URL is not set');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function poll(what, cond, timeout = 20000) {
  const end = Date.now() + timeout;
  let last;
  for (;;) {
    try { last = await cond(); } catch (err) { last = err; }
    if (last && !(last instanceof Error)) return last;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}${last instanceof Error ? ': ' + last.message : ''}`);
    await sleep(100);
  }
}

const args = [
  ...FAKE_MEDIA_ARGS, '--allow-loopback-in-peer-connection',
  '--autoplay-policy=no-user-gesture-required',
];
if (mode === 'call') {
  args.push(`--use-file-for-fake-video-capture=${process.env.MEDCALL_Y4M}`,
    `--use-file-for-fake-audio-capture=${process.env.MEDCALL_WAV}`);
}
const browser = await chromium.launch({ executablePath: process.env.MEDCALL_CHROMIUM || '/usr/bin/chromium', headless: true, args });
const pageErrors = [];

async function open(name, query = '') {
  const ctx = await browser.newContext({ permissions: ['microphone', 'camera'] });
  const page = await ctx.newPage();
  page.on('pageerror', (e) => pageErrors.push(`${name}: ${e.message}`));
  await page.goto(base + '/' + query);
  return page;
}

async function join(page, dev) {
  if (dev) {
    await page.selectOption('#dev-role', dev.role);
    await page.fill('#dev-cid', dev.cid);
    await page.fill('#dev-pid', dev.pid);
    await page.fill('#dev-sub', dev.sub);
    await page.check('#dev-rec');
    await page.fill('#token', ''); // so the poll below waits for this one (run.mjs, join)
    await page.click('#dev-generate');
  }
  await poll('a token', async () => (await page.inputValue('#token')).length > 20);
  await page.click('#join-button');
  await page.waitForSelector('#call:not([hidden])', { timeout: 15000 });
}

const stats = (page) => page.evaluate(() => window.medcallDemo.stats());

/** Reads the frame number blocks (see the top of this file) from a 256x144 canvas context. */
function frameNumber(g) {
  const row = g.getImageData(0, 12, 256, 1).data;
  let n = 0;
  for (let i = 0; i < 12; i++) if (row[(16 * i + 8) * 4] > 128) n |= 1 << i;
  return n;
}

/**
 * Starts watching the sender's own camera and microphone: capture times (µs,
 * performance clock) of flashes and clicks, the reference for A/V sync in
 * the recording.
 */
function startSyncProbe(page) {
  return page.evaluate((frameNumberSrc) => {
    // eslint-disable-next-line no-new-func
    const frameNumber = new Function(`return ${frameNumberSrc}`)();
    const c = window.medcallDemo.client;
    const probe = { flashes: [], clicks: [], videoFrames: 0, audioChunks: 0 };
    window.__probe = probe;
    // Video: requestVideoFrameCallback's captureTime is on the performance
    // clock, like the timestamps of AudioData from a microphone.
    const v = document.createElement('video');
    v.muted = true;
    v.srcObject = new MediaStream([c._cam.clone()]);
    document.body.appendChild(v);
    v.play();
    const canvas = new OffscreenCanvas(256, 144);
    const g = canvas.getContext('2d', { willReadFrequently: true });
    let lastFlash = false;
    const onFrame = (_, m) => {
      probe.videoFrames++;
      g.drawImage(v, 0, 0, 256, 144);
      const d = g.getImageData(0, 72, 256, 72).data;
      let sum = 0;
      for (let i = 0; i < d.length; i += 4) sum += d[i];
      const flash = sum / (d.length / 4) > 180;
      if (flash && !lastFlash && m.captureTime) probe.flashes.push({ n: frameNumber(g), t: m.captureTime * 1000 });
      lastFlash = flash;
      v.requestVideoFrameCallback(onFrame);
    };
    v.requestVideoFrameCallback(onFrame);
    const ar = new MediaStreamTrackProcessor({ track: c._mic.clone() }).readable.getReader();
    let quietUntil = 0;
    (async () => {
      for (;;) {
        const { value: a, done } = await ar.read();
        if (done) return;
        probe.audioChunks++;
        const n = a.numberOfFrames;
        const buf = new Float32Array(n);
        a.copyTo(buf, { planeIndex: 0, format: 'f32-planar' });
        for (let i = 0; i < n; i++) {
          const t = a.timestamp + (i * 1e6) / a.sampleRate;
          if (Math.abs(buf[i]) > 0.1 && t > quietUntil) {
            probe.clicks.push(t);
            quietUntil = t + 500000;
          }
        }
        a.close();
      }
    })();
  }, frameNumber.toString());
}

/**
 * Reports, for each flash the sender captured (by frame number), how far it
 * was from the nearest click at capture, in ms. The fake camera's frames
 * slip against the fake microphone's clock under load, so this changes
 * from flash to flash; the recording must show the same offsets.
 */
async function syncReference(page, who) {
  const p = await page.evaluate(() => window.__probe);
  const offs = [];
  for (const f of p.flashes) {
    let best = null;
    for (const c of p.clicks) if (best === null || Math.abs(f.t - c) < Math.abs(f.t - best)) best = c;
    if (best !== null) offs.push(`${f.n}:${((f.t - best) / 1000).toFixed(1)}`);
  }
  if (offs.length < 5) throw new Error(`${who}: sync probe saw ${p.flashes.length} flashes and ${p.clicks.length} clicks (${p.videoFrames} frames, ${p.audioChunks} audio chunks)`);
  console.log(`RESULT syncref who=${who} flashes=${offs.join(',')}`);
}

async function call() {
  const seconds = Number(process.env.MEDCALL_SECONDS || 60);
  const patient = await open('patient', '?role=patient&cid=c-rec&pid=p-rec&rec=1');
  const clinician = await open('clinician');
  await join(patient);
  await join(clinician, { role: 'clinician', cid: 'c-rec', pid: 'p-rec', sub: 'd-rec' });
  await poll('audio both ways', async () => (await stats(patient)).inbound.audio.packetsReceived > 50 &&
    (await stats(clinician)).inbound.audio.packetsReceived > 50);
  const who = [['p-rec', patient], ['d-rec', clinician]];
  for (const [id, page] of who) {
    await page.click('#video-button');
    await poll(`${id}: video on`, async () => (await page.getAttribute('#video-button', 'data-video')) === 'true');
    await startSyncProbe(page);
  }
  await poll('video both ways', async () => (await stats(patient)).inbound.video.framesDecoded > 10 &&
    (await stats(clinician)).inbound.video.framesDecoded > 10);
  await sleep(seconds * 1000);
  for (const [id, page] of who) await syncReference(page, id);
  // The encoder counts as late as possible, right before the hang-ups.
  const encoded = await Promise.all(who.map(([, page]) => stats(page)));
  who.forEach(([id], i) => console.log(`RESULT encoded who=${id} framesEncoded=${encoded[i].outbound.video.framesEncoded}`));
  await Promise.all(who.map(async ([, page]) => {
    await page.click('#hangup-button');
    await page.waitForSelector('#ended:not([hidden])'); // the demo page's "call ended" state
  }));
}

/** Seeks the first video track of /rec.webm to each time and reads the frame number shown. */
async function seek() {
  const times = (process.env.MEDCALL_SEEK_TIMES || '').split(',').map(Number);
  const page = await open('seek');
  const results = await page.evaluate(async (times) => {
    const v = document.createElement('video');
    v.muted = true;
    document.body.appendChild(v);
    v.src = '/rec.webm';
    await new Promise((ok, fail) => { v.onloadeddata = ok; v.onerror = () => fail(new Error('video error ' + (v.error && v.error.message))); });
    const canvas = document.createElement('canvas');
    canvas.width = 256; canvas.height = 144;
    const g = canvas.getContext('2d', { willReadFrequently: true });
    const out = [];
    for (const t of times) {
      const presented = new Promise((ok) => v.requestVideoFrameCallback((_, m) => ok(m.mediaTime)));
      v.currentTime = t;
      await new Promise((ok) => { v.onseeked = ok; });
      const mediaTime = await Promise.race([presented, new Promise((ok) => setTimeout(() => ok(-1), 3000))]);
      g.drawImage(v, 0, 0, 256, 144);
      const row = g.getImageData(0, 12, 256, 1).data;
      let n = 0;
      for (let i = 0; i < 12; i++) if (row[(16 * i + 8) * 4] > 128) n |= 1 << i;
      out.push({ t, n, mediaTime });
    }
    return out;
  }, times);
  for (const r of results) console.log(`RESULT seek t=${r.t} frame=${r.n} media_time=${r.mediaTime}`);
}

let code = 0;
try {
  if (mode === 'seek') await seek(); else await call();
  if (pageErrors.length) throw new Error(`errors in the pages:\n  ${pageErrors.join('\n  ')}`);
  console.log('E2E PASS');
} catch (err) {
  console.error(`E2E FAIL: ${err && err.stack ? err.stack : err}`);
  code = 1;
} finally {
  await browser.close().catch(() => {});
}
process.exit(code);
