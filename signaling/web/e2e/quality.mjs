// One participant in headless Chromium on the demo page, run inside a network
// namespace by the Go quality tests (cmd/medcall/quality_test.go), which
// impair the network and judge what this page perceived.
//
// Environment:
//   MEDCALL_URL        the server's base URL (https://IP:PORT)
//   MEDCALL_TOKEN      the join token (pasted into the page; never in a URL)
//   MEDCALL_ROLE       "publish": switch to video after joining and report what
//                      is sent; "watch": stay on audio and report what is received
//   MEDCALL_VIDEO      optional .y4m for the fake camera (e.g. noisy, so the
//                      encoder spends ~1 Mbit/s); MEDCALL_AUDIO an optional .wav
//   MEDCALL_CHROMIUM   the browser (default /usr/bin/chromium)
//
// Output (stdout, one line each):
//   JOINED                   in the call (publish: video is being sent)
//   UPGRADE <ms>             publish: Date.now() when the video button was clicked
//   FIRSTFRAME <ms>          watch: Date.now() when the first video frame was decoded
//   SAMPLE <json>            every 500 ms, the page's cumulative counters
//   E2E PASS                 after "stop" on stdin: hung up cleanly
import { chromium } from 'playwright-core';
import { FAKE_MEDIA_ARGS, capturePCs } from './chromium.mjs';
import { createInterface } from 'node:readline';
import { gotoSettled } from './settle.mjs';

const base = process.env.MEDCALL_URL;
const token = process.env.MEDCALL_TOKEN;
const role = process.env.MEDCALL_ROLE || 'watch';
if (!base || !token) throw new Error('MEDCALL_URL and MEDCALL_TOKEN must be set');

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Cumulative counters of the page's connections (W3C webrtc-stats names). */
const sample = (page) => page.evaluate(async () => {
  const o = {
    t: Date.now(), framesDecoded: 0, freezeCount: 0, freezeSec: 0, videoPacketsLost: 0, videoPacketsReceived: 0,
    videoBytesReceived: 0, nackSent: 0, rtxReceived: 0, audioPacketsLost: 0, audioPacketsReceived: 0, concealed: 0, samples: 0,
    keyFrames: 0, pliSent: 0, videoBytesSent: 0, audioBytesSent: 0, retransmittedBytesSent: 0, framesEncoded: 0, available: 0, width: 0, sentWidth: 0,
  };
  for (const pc of window.__pcs) {
    const stats = await pc.getStats();
    stats.forEach((s) => {
      if (s.type === 'inbound-rtp' && s.kind === 'video') {
        o.framesDecoded += s.framesDecoded || 0;
        o.keyFrames += s.keyFramesDecoded || 0;
        o.pliSent += s.pliCount || 0;
        o.freezeCount += s.freezeCount || 0;
        o.freezeSec += s.totalFreezesDuration || 0;
        o.videoPacketsLost += s.packetsLost || 0;
        o.videoPacketsReceived += s.packetsReceived || 0;
        o.videoBytesReceived += s.bytesReceived || 0;
        o.nackSent += s.nackCount || 0;
        o.rtxReceived += s.retransmittedPacketsReceived || 0;
        o.width = Math.max(o.width, s.frameWidth || 0);
      }
      if (s.type === 'inbound-rtp' && s.kind === 'audio') {
        o.audioPacketsLost += s.packetsLost || 0;
        o.audioPacketsReceived += s.packetsReceived || 0;
        o.concealed += s.concealedSamples || 0;
        o.samples += s.totalSamplesReceived || 0;
      }
      if (s.type === 'outbound-rtp' && s.kind === 'video') {
        o.videoBytesSent += (s.bytesSent || 0) + (s.headerBytesSent || 0);
        o.retransmittedBytesSent += s.retransmittedBytesSent || 0;
        o.framesEncoded += s.framesEncoded || 0;
        o.sentWidth = Math.max(o.sentWidth, s.frameWidth || 0);
      }
      if (s.type === 'outbound-rtp' && s.kind === 'audio') o.audioBytesSent += (s.bytesSent || 0) + (s.headerBytesSent || 0);
      if (s.type === 'candidate-pair' && s.nominated && s.availableOutgoingBitrate) o.available = Math.max(o.available, s.availableOutgoingBitrate);
    });
  }
  return o;
});

const stdin = createInterface({ input: process.stdin });
let stopping = false;
const stopped = new Promise((r) => stdin.on('line', (l) => { if (l.trim() === 'stop') { stopping = true; r(); } }));
stdin.on('close', () => { stopping = true; });

const args = [...FAKE_MEDIA_ARGS, '--ignore-certificate-errors'];
if (process.env.MEDCALL_VIDEO) args.push(`--use-file-for-fake-video-capture=${process.env.MEDCALL_VIDEO}`);
if (process.env.MEDCALL_AUDIO) args.push(`--use-file-for-fake-audio-capture=${process.env.MEDCALL_AUDIO}`);

let browser = null;
let page = null;
let code = 0;
try {
  browser = await chromium.launch({ executablePath: process.env.MEDCALL_CHROMIUM || '/usr/bin/chromium', headless: true, args });
  const ctx = await browser.newContext({ permissions: ['microphone', 'camera'], ignoreHTTPSErrors: true });
  page = await ctx.newPage();
  await page.addInitScript(capturePCs);
  page.on('console', (m) => {
    if (m.type() === 'error') console.error(`page console: ${m.text()}`);
    else if (m.text().startsWith('SENDSCALE ')) console.error(`${m.text()} at ${Date.now()}`);
  });
  await gotoSettled(page, base + '/', () => !!window.medcallDemo); // app.js has started
  await page.fill('#token', token);
  await page.check('#prenegotiate');
  await page.click('#join-button');
  await page.waitForSelector('#call:not([hidden])', { timeout: 30000 });
  if (role === 'publish') {
    console.log(`UPGRADE ${Date.now()}`);
    await page.click('#video-button');
  }
  // The publisher's resolution steps (sendscale.js), for the test's log.
  await page.evaluate(() => window.medcallDemo.client.addEventListener('sendscale', (e) => console.log(`SENDSCALE ${e.detail.scale} ${e.detail.why}`)));
  console.log('JOINED');
  // Until the first frame, look every 50 ms: the upgrade's latency as seen here.
  let firstFrame = role !== 'watch';
  while (!stopping && !firstFrame) {
    const s = await sample(page);
    if (s.framesDecoded > 0) {
      console.log(`FIRSTFRAME ${s.t}`);
      firstFrame = true;
    }
    console.log(`SAMPLE ${JSON.stringify(s)}`);
    await Promise.race([sleep(50), stopped]);
  }
  while (!stopping) {
    console.log(`SAMPLE ${JSON.stringify(await sample(page))}`);
    await Promise.race([sleep(500), stopped]);
  }
  await page.click('#hangup-button');
  await page.waitForSelector('#ended:not([hidden])'); // the demo page's "call ended" state
  console.log('E2E PASS');
} catch (err) {
  console.error(`E2E FAIL: ${err && err.stack ? err.stack : err}`);
  if (page) console.error(`page text: ${(await page.innerText('body').catch(() => '')).replace(/\s+/g, ' ').slice(0, 600)}`);
  code = 1;
} finally {
  if (browser) await browser.close().catch(() => {});
  stdin.close();
}
process.exit(code);
