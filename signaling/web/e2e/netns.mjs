// A patient in headless Chromium on the demo page, run inside a network
// namespace (`ip netns exec NS node netns.mjs`) by the Go network tests
// (cmd/medcall/network_browser_test.go): behind a home NAT, or a firewall that
// drops all UDP. The clinician is a Go client the Go test drives; this script
// asks for each of its steps with a checkpoint.
//
// Environment:
//   MEDCALL_URL        the server's public base URL (https://PUBLIC-IP:PORT)
//   MEDCALL_TOKEN      the patient's join token (pasted into the page; never in a URL)
//   MEDCALL_CHROMIUM   the browser (default /usr/bin/chromium)
//   MEDCALL_ARTIFACTS  directory for a screenshot on failure
//   MEDCALL_JOINS      bench mode when > 1: join and hang up this many times, each
//                      reporting RESULT join_to_first_audio; no upgrades
//
// Output protocol (stdout, one line each):
//   RESULT <name> <key=value>...       a measurement, logged by the Go test
//   CHECKPOINT <step> [args]           the Go test does the clinician's part of
//                                      the step and answers "ok [values]" or "fail ..." on stdin
//   E2E PASS                           the end
import { chromium } from 'playwright-core';
import { FAKE_MEDIA_ARGS, capturePCs } from './chromium.mjs';
import { mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join as pathJoin } from 'node:path';
import { checkpoint as ask, endCheckpoints } from './checkpoint.mjs';
import { gotoSettled } from './settle.mjs';

const base = process.env.MEDCALL_URL;
const token = process.env.MEDCALL_TOKEN;
if (!base || !token) throw new Error('MEDCALL_URL and MEDCALL_TOKEN must be set');
const artifacts = process.env.MEDCALL_ARTIFACTS || pathJoin(tmpdir(), 'medcall-artifacts');
mkdirSync(artifacts, { recursive: true });

/** Asks the Go test to do the clinician's part of a step; returns its answer's values. */
const checkpoint = (step, ...args) => ask('clinician step', step, ...args);

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
function check(cond, msg) { if (!cond) throw new Error(msg); }

async function poll(what, cond, timeout = 20000, every = 50) {
  const end = Date.now() + timeout;
  let last;
  for (;;) {
    try { last = await cond(); } catch (err) { last = err; }
    if (last && !(last instanceof Error)) return last;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}${last instanceof Error ? ': ' + last.message : ''}`);
    await sleep(every);
  }
}

/** What the page's connections say: inbound audio energy and packets, video frames, the selected pair. */
const media = (page) => page.evaluate(async () => {
  const out = { audioPackets: 0, audioEnergy: 0, framesDecoded: 0, pairs: [] };
  for (const pc of window.__pcs) {
    const stats = await pc.getStats();
    stats.forEach((s) => {
      if (s.type === 'inbound-rtp' && s.kind === 'audio') {
        out.audioPackets += s.packetsReceived || 0;
        out.audioEnergy += s.totalAudioEnergy || 0;
      }
      if (s.type === 'inbound-rtp' && s.kind === 'video') out.framesDecoded += s.framesDecoded || 0;
      if (s.type === 'transport' && s.selectedCandidatePairId) {
        const pair = stats.get(s.selectedCandidatePairId);
        const local = pair && stats.get(pair.localCandidateId);
        const remote = pair && stats.get(pair.remoteCandidateId);
        if (local && remote) out.pairs.push(`${local.candidateType}/${remote.candidateType}/${local.protocol}`);
      }
    });
  }
  return out;
});

let browser = null;
let page = null;
const pageErrors = [];

/** Joins from the form; resolves with ms from the click to the first audio packet from the clinician. */
async function joinToFirstAudio() {
  await page.evaluate(() => { window.__pcs = []; });
  const joinAt = Date.now();
  await page.click('#join-button');
  await page.waitForSelector('#call:not([hidden])', { timeout: 20000 });
  await poll('first audio from the clinician', async () => (await media(page)).audioPackets > 0, 20000, 10);
  const ms = Date.now() - joinAt;
  console.log(`RESULT join_to_first_audio ms=${ms}`);
  return ms;
}

async function hangUp() {
  await page.click('#hangup-button');
  await page.waitForSelector('#ended:not([hidden])'); // the demo page's "call ended" state
}

/** Back to the join form after a hang-up, ready to join the same consultation again (bench mode). */
async function backToJoinForm() {
  await page.click('#again-button');
  await page.waitForSelector('#join:not([hidden])');
  if ((await page.inputValue('#token')) === '') await page.fill('#token', token);
  // A recorded consultation this page ended asks before recording it again.
  if (await page.isVisible('#rejoin-confirm')) await page.check('#rejoin-confirm');
}

async function main() {
  browser = await chromium.launch({
    executablePath: process.env.MEDCALL_CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: [...FAKE_MEDIA_ARGS, '--ignore-certificate-errors'],
  });
  // The test server's certificate is from a private test CA.
  const ctx = await browser.newContext({ permissions: ['microphone', 'camera'], ignoreHTTPSErrors: true });
  page = await ctx.newPage();
  await page.addInitScript(capturePCs);
  page.on('pageerror', (e) => pageErrors.push(e.message));
  page.on('console', (m) => { if (m.type() === 'error' && !(m.location().url || '').includes('/v1/recordings')) pageErrors.push(m.text()); });
  await gotoSettled(page, base + '/', () => !!window.medcallDemo); // app.js and the client's modules have run
  // A load retried because the network settled logged its failed fetches; they are not the page's errors.
  pageErrors.splice(0, pageErrors.length, ...pageErrors.filter((m) => !m.includes('ERR_NETWORK_CHANGED')));
  check(!page.url().includes('token'), 'a token is in the URL');

  // 1. Join with the pre-negotiated video transceiver; first audio from the clinician.
  await page.fill('#token', token);
  await page.check('#prenegotiate');
  const joins = Number(process.env.MEDCALL_JOINS || '1');
  if (joins > 1) { // bench mode
    for (let i = 0; i < joins; i++) {
      await joinToFirstAudio();
      await hangUp();
      await backToJoinForm();
    }
    await checkpoint('leave');
    return;
  }
  await joinToFirstAudio();

  // 2. Audio both ways: energy in what the patient hears, packets at the clinician.
  const a = await media(page);
  const b = await poll('audio energy growing', async () => {
    const s = await media(page);
    return s.audioEnergy > a.audioEnergy + 0.001 && s.audioPackets > a.audioPackets + 50 && s;
  });
  console.log(`RESULT audio patient packets=${b.audioPackets} energy=${b.audioEnergy.toFixed(4)}`);
  await checkpoint('hear_patient');
  const pairs = (await media(page)).pairs;
  console.log(`RESULT pairs ${pairs.join(' ')}`);

  // 3. The patient switches to video: pre-negotiated, no SDP round trip.
  const clickAt = Date.now();
  await page.click('#video-button');
  const [firstKeyframeAt] = await checkpoint('see_patient_video', clickAt);
  console.log(`RESULT upgrade_prenegotiated ms=${(Number(firstKeyframeAt) - clickAt).toFixed(1)}`);

  // 4. The clinician switches to video by renegotiation: the server re-offers to this page.
  const [upgradeAt] = await checkpoint('clinician_upgrade');
  const tile = '.tile.peer[data-peer="d-1"]';
  await poll('the clinician\'s video on the patient\'s page', () => page.evaluate((sel) => {
    const t = document.querySelector(sel);
    return t && t.dataset.firstFrameAt && t.querySelector('video').videoWidth > 0;
  }, tile));
  const frameAt = Number(await page.getAttribute(tile, 'data-first-frame-at'));
  const f0 = (await media(page)).framesDecoded;
  await poll('frames decoded growing', async () => (await media(page)).framesDecoded > f0 + 10);
  console.log(`RESULT upgrade_renegotiate ms=${(frameAt - Number(upgradeAt)).toFixed(1)}`);
  await checkpoint('hear_patient'); // audio still flows with video on

  // 5. Hang up; the clinician leaves too.
  await hangUp();
  await checkpoint('leave');
  check(pageErrors.length === 0, `errors in the page:\n  ${pageErrors.join('\n  ')}`);
}

let code = 0;
try {
  await main();
  console.log('E2E PASS');
} catch (err) {
  console.error(`E2E FAIL: ${err && err.stack ? err.stack : err}`);
  code = 1;
  if (page) {
    await page.screenshot({ path: pathJoin(artifacts, 'netns-failure.png'), fullPage: true }).catch(() => {});
    console.error(`page: ${await page.textContent('#status').catch(() => '?')} ${JSON.stringify(await media(page).catch(() => null))}`);
  }
  if (pageErrors.length) console.error(`errors in the page:\n  ${pageErrors.join('\n  ')}`);
} finally {
  if (browser) await browser.close().catch(() => {});
  endCheckpoints();
}
process.exit(code);
