// A patient in headless Chromium on the demo page whose network changes
// mid-call, run inside the patient's network namespace by
// cmd/medcall/netchange_browser_test.go. The page (medcall.js) must notice
// by itself, resume on a new signaling socket and restart ICE; this script
// only watches what the page hears.
//
// Environment:
//   MEDCALL_URL        the server's public base URL (https://PUBLIC-IP:PORT)
//   MEDCALL_TOKEN      the patient's join token (typed into the page; never in a URL)
//   MEDCALL_CHROMIUM   the browser (default /usr/bin/chromium)
//   MEDCALL_CHANGES    how many times the Go test changes the address (default 1)
//   MEDCALL_ARTIFACTS  directory for a screenshot on failure
//   MEDCALL_NETCHANGE_SAMPLES  if set, print the audio packet count of every
//                      sample after each change (RESULT samples +MS:PACKETS)
//   MEDCALL_NETCHANGE_PAIRS    if set, print the publish connection's selected
//                      candidate pair and its pairs' states for 4 s after each change
//
// Output protocol (stdout, one line each):
//   RESULT <name> <values>    a measurement, logged by the Go test
//   CHECKPOINT <step> [args]  the Go test does its part ("hear_patient", "move",
//                             "heard T", "quiet": the clinician stops sending,
//                             "leave" before the page hangs up) and
//                             answers "ok [values]" on stdin
//   E2E PASS                  the end
import { chromium } from 'playwright-core';
import { FAKE_MEDIA_ARGS } from './chromium.mjs';
import { mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join as pathJoin } from 'node:path';
import { checkpoint as ask, endCheckpoints } from './checkpoint.mjs';
import { gotoSettled } from './settle.mjs';

const base = process.env.MEDCALL_URL;
const token = process.env.MEDCALL_TOKEN;
if (!base || !token) throw new Error('MEDCALL_URL and MEDCALL_TOKEN must be set');
const changes = Number(process.env.MEDCALL_CHANGES || '1');
const artifacts = process.env.MEDCALL_ARTIFACTS || pathJoin(tmpdir(), 'medcall-artifacts');
mkdirSync(artifacts, { recursive: true });

const checkpoint = (step, ...args) => ask('step', step, ...args);

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Every RTCPeerConnection the page makes, kept for getStats.
const capturePCs = () => {
  const Orig = window.RTCPeerConnection;
  window.__pcs = [];
  window.__iceLog = [];
  window.RTCPeerConnection = function (...a) {
    const pc = new Orig(...a);
    const n = window.__pcs.push(pc);
    pc.addEventListener('iceconnectionstatechange', () => window.__iceLog.push(`${Date.now()} pc${n} ${pc.iceConnectionState}`));
    pc.addEventListener('icecandidate', (e) => window.__iceLog.push(`${Date.now()} pc${n} candidate ${e.candidate ? e.candidate.address : 'end'}`));
    pc.addEventListener('signalingstatechange', () => window.__iceLog.push(`${Date.now()} pc${n} ${pc.signalingState}`));
    return pc;
  };
  const OrigWS = window.WebSocket;
  window.WebSocket = function (...a) {
    const ws = new OrigWS(...a);
    window.__iceLog.push(`${Date.now()} ws open`);
    ws.addEventListener('close', (e) => window.__iceLog.push(`${Date.now()} ws close ${e.code}`));
    ws.addEventListener('open', () => window.__iceLog.push(`${Date.now()} ws opened`));
    ws.addEventListener('message', (e) => window.__iceLog.push(`${Date.now()} ws got ${JSON.parse(e.data).type}`));
    const send = ws.send.bind(ws);
    ws.send = (d) => { window.__iceLog.push(`${Date.now()} ws sent ${JSON.parse(d).type}`); send(d); };
    return ws;
  };
  window.WebSocket.prototype = OrigWS.prototype;
  Object.assign(window.WebSocket, { CONNECTING: 0, OPEN: 1, CLOSING: 2, CLOSED: 3 });
  window.RTCPeerConnection.prototype = Orig.prototype;
};

/** Inbound audio packets and energy over the page's open connections, and their ICE credentials. */
const heard = (page) => page.evaluate(async () => {
  const out = { packets: 0, energy: 0, ufrags: [] };
  for (const pc of window.__pcs) {
    if (pc.connectionState === 'closed') continue;
    const stats = await pc.getStats();
    stats.forEach((s) => {
      if (s.type === 'inbound-rtp' && s.kind === 'audio') {
        out.packets += s.packetsReceived || 0;
        out.energy += s.totalAudioEnergy || 0;
      }
    });
    const d = pc.localDescription;
    const m = d && /a=ice-ufrag:(\S+)/.exec(d.sdp);
    if (m) out.ufrags.push(m[1]);
  }
  return out;
});

/**
 * Waits until the clinician's audio flows again after `since` (ms): at least
 * 40 packets (Opus sends 50 a second) and rising energy within the next
 * second, as the Go clinician judges the page's audio (45 in a second of
 * exact arrival times). Returns when the flow came back: the first sample
 * that saw its packets (an upper bound: samples are ~50 ms apart).
 */
async function audioBack(page, since) {
  const samples = [];
  const end = Date.now() + 30000;
  while (Date.now() < end) {
    const s = await heard(page);
    samples.push({ t: Date.now(), ...s });
    const after = samples.filter((x) => x.t >= since);
    for (let i = 1; i < after.length; i++) {
      if (after[i].packets <= after[i - 1].packets) continue;
      const w = after.filter((x) => x.t >= after[i - 1].t && x.t <= after[i - 1].t + 1000);
      const last = w[w.length - 1];
      if (last.t - after[i - 1].t >= 950 && last.packets - after[i - 1].packets >= 40 && last.energy > after[i - 1].energy) {
        const p0 = after[0].packets;
        if (process.env.MEDCALL_NETCHANGE_SAMPLES) console.log(`RESULT samples ${after.filter((x) => x.t <= last.t).map((x) => `+${x.t - Math.round(since)}:${x.packets - p0}`).join(' ')}`);
        return { at: after[i].t, energy: last.energy - after[i - 1].energy, ufrags: last.ufrags };
      }
    }
    await sleep(50);
  }
  throw new Error('the clinician\'s audio did not come back within 30 s of the change');
}

/**
 * What the page did since `since` (ms), oldest first, as "+MSms:what": its
 * sockets and connections (capturePCs) and the client's own steps (the
 * "medcall: ..." marks on its performance timeline). Forgets them.
 */
const timeline = async (page, since) => (await page.evaluate(() => {
  const marks = performance.getEntriesByType('mark').filter((m) => m.name.startsWith('medcall: '));
  performance.clearMarks();
  return window.__iceLog.splice(0).concat(marks.map((m) => `${Math.round(performance.timeOrigin + m.startTime)} ${m.name}`));
})).map((l) => [Number(l.split(' ')[0]), l.split(' ').slice(1).join('_')])
  .filter(([t]) => t >= since - 100).sort((a, b) => a[0] - b[0])
  .map(([t, what]) => `+${t - Math.round(since)}ms:${what}`);

/** Debug: the publish connection's selected pair and its pairs' states every 100 ms for 4 s. */
async function pairLog(page, at) {
  const lines = [];
  let last = '';
  while (Date.now() < at + 4000) {
    const d = await page.evaluate(async () => {
      const pc = window.__pcs[0];
      const st = await pc.getStats();
      let sel = '';
      const pairs = [];
      st.forEach((s) => {
        if (s.type === 'transport' && s.selectedCandidatePairId) {
          const p = st.get(s.selectedCandidatePairId);
          sel = p ? `${st.get(p.localCandidateId).address}/${p.state}` : '?';
        }
        if (s.type === 'candidate-pair') pairs.push(`${st.get(s.localCandidateId).address}:${s.state}${s.nominated ? '*' : ''}:${s.requestsSent}/${s.responsesReceived}`);
      });
      return `sel=${sel} ${pairs.join(',')}`;
    });
    if (d !== last) lines.push(`+${Date.now() - Math.round(at)}ms ${d}`);
    last = d;
    await sleep(100);
  }
  console.log(`RESULT pairs\n${lines.join('\n')}`);
}

let browser = null;
let page = null;

async function main() {
  browser = await chromium.launch({
    executablePath: process.env.MEDCALL_CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: [...FAKE_MEDIA_ARGS, '--ignore-certificate-errors'],
  });
  const ctx = await browser.newContext({ permissions: ['microphone', 'camera'], ignoreHTTPSErrors: true });
  page = await ctx.newPage();
  await page.addInitScript(capturePCs);
  page.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warning') console.log(`page ${m.type()}: ${m.text()}`); });
  await gotoSettled(page, base + '/', () => !!window.medcallDemo); // app.js and the client's modules have run
  await page.fill('#token', token);
  await page.click('#join-button');
  await page.waitForSelector('#call:not([hidden])', { timeout: 20000 });
  await audioBack(page, Date.now());
  await checkpoint('hear_patient');

  for (let i = 1; i <= changes; i++) {
    await sleep(2000); // a steady call before each change
    const before = await heard(page);
    const [atNs] = await checkpoint('move', i);
    const at = Number(atNs) / 1e6;
    if (process.env.MEDCALL_NETCHANGE_PAIRS) void pairLog(page, at);
    const back = await audioBack(page, at);
    const [clinicianBack] = await checkpoint('heard', atNs);
    const restarted = back.ufrags.filter((u) => !before.ufrags.includes(u)).length;
    console.log(`RESULT events ${(await timeline(page, at)).join(' ')}`);
    console.log(`RESULT change ${i} page_hears_ms=${(back.at - at).toFixed(0)} clinician_hears_ms=${clinicianBack} energy=${back.energy.toFixed(5)} new_ice_credentials=${restarted}`);
    if (restarted < 2) throw new Error(`change ${i}: ${restarted} of the page's connections have new ICE credentials, want 2 (an ICE restart on both)`);
  }
  console.log(`RESULT status ${await page.textContent('#status').catch(() => '?')}`);

  // The clinician goes quiet (sends nothing at all): the page's stall
  // detector fires on its subscribe connection, finds the signaling socket
  // answering and restarts nothing (the Go test checks the server's
  // restart count did not move either).
  await timeline(page, Date.now()); // forget what came before
  const quietAt = Date.now();
  const { ufrags } = await heard(page);
  await checkpoint('quiet');
  const quiet = [];
  const judged = () => quiet.some((l) => l.includes('medcall:_socket_answers'));
  while (!judged() && Date.now() < quietAt + 3000) {
    await sleep(100);
    quiet.push(...await timeline(page, quietAt));
  }
  await sleep(500); // a restart would start at once
  quiet.push(...await timeline(page, quietAt));
  console.log(`RESULT quiet ${quiet.filter((l) => !/candidate|ack/.test(l)).join(' ')}`);
  if (!judged()) {
    throw new Error('the page never judged the clinician\'s silence (no stall, no socket check): the detector did not run');
  }
  const restarts = quiet.filter((l) => /socket_dead|resumed|restart|ws_open/.test(l));
  const changed = (await heard(page)).ufrags.filter((u) => !ufrags.includes(u));
  if (restarts.length || changed.length) {
    throw new Error(`the clinician only went quiet, yet the page restarted: ${restarts.join(' ')} new ICE credentials ${changed.length}`);
  }
  await checkpoint('leave'); // the clinician checks it never saw the patient leave, then leaves
  await page.click('#hangup-button');
  await page.waitForSelector('#ended:not([hidden])');
}

let code = 0;
try {
  await main();
  console.log('E2E PASS');
} catch (err) {
  console.error(`E2E FAIL: ${err && err.stack ? err.stack : err}`);
  code = 1;
  if (page) await page.screenshot({ path: pathJoin(artifacts, 'netchange-failure.png'), fullPage: true }).catch(() => {});
} finally {
  if (browser) await browser.close().catch(() => {});
  endCheckpoints();
}
process.exit(code);
