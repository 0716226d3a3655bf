// End-to-end test of the medcall browser client and demo page in headless
// Chromium. Run by TestBrowser (cmd/medcall/browser_test.go), which starts a
// real `medcall serve --dev` and answers this script's checkpoints on stdin.
//
// Environment:
//   MEDCALL_URL        the server's base URL (http://127.0.0.1:PORT), in dev mode
//   MEDCALL_ARTIFACTS  directory for screenshots (390x844 phone and desktop)
//   MEDCALL_CHROMIUM   the browser (default /usr/bin/chromium)
//   MEDCALL_FFMPEG     makes each side's microphone tone (default ffmpeg)
//   MEDCALL_E2E_REPLAY set to 1 once GET /v1/recordings exists and the server records
//
// Output protocol (stdout, one line each):
//   RESULT <name> <key=value>...      a measurement, logged by the Go test
//   CHECKPOINT stats <consultations> <participants>
//                                     the Go test checks the server's metrics and answers "ok" or "fail ..." on stdin
import { readFileSync } from 'node:fs';
import { expectAccessible } from './a11y.mjs';
import { TONES, expectHears } from './audio.mjs';
import {
  DESKTOP, PHONE, check, checkpointStats, closeAll, diagnose, open, pageErrors, poll, shot, sleep,
} from './harness.mjs';
import { checkProtocol } from './protocol.mjs';

const replayEnabled = process.env.MEDCALL_E2E_REPLAY === '1';

const stats = (page) => page.evaluate(() => window.medcallDemo.stats());
const status = (page) => page.locator('#status').textContent();

async function join(page, { tokenFromQuery = false } = {}) {
  // A token already in the field (the last join's) must not pass for the
  // new one: generating it is a request to the server, and under load the
  // old one was sent with the new consultation's form (binding_mismatch).
  if (!tokenFromQuery) {
    await page.fill('#token', '');
    await page.click('#dev-generate');
  }
  await poll('a generated token', async () => (await page.inputValue('#token')).length > 20);
  await page.click('#join-button');
  await page.waitForSelector('#call:not([hidden])', { timeout: 15000 });
}

/** Clicks "Switch to video" on the sender; resolves with ms from the click to the first frame on the viewer. */
async function upgrade(sender, viewer, peerID, label) {
  const tile = `.tile.peer[data-peer="${peerID}"]`;
  await viewer.waitForSelector(tile);
  check(!(await viewer.getAttribute(tile, 'data-first-frame-at')), `${label}: a frame was shown before the upgrade`);
  await sender.evaluate(() => document.getElementById('video-button').addEventListener('click',
    () => { window.__clickAt = Date.now(); }, { capture: true, once: true }));
  await sender.click('#video-button');
  await poll(`${label}: first frame on the viewer`, () => viewer.evaluate((sel) => {
    const t = document.querySelector(sel);
    return t && t.dataset.firstFrameAt && t.querySelector('video').videoWidth > 0;
  }, tile));
  const clickAt = await sender.evaluate(() => window.__clickAt);
  const frameAt = Number(await viewer.getAttribute(tile, 'data-first-frame-at'));
  const ms = frameAt - clickAt;
  check(ms >= 0 && ms < 15000, `${label}: implausible click-to-first-frame ${ms} ms`);
  await poll(`${label}: sender says video is on`, async () => (await sender.getAttribute('#video-button', 'data-video')) === 'true');
  await poll(`${label}: viewer tile shows video`, async () => (await viewer.getAttribute(tile, 'data-video')) === 'true');
  const a = await stats(viewer);
  const b = await poll(`${label}: frames decoded growing`, async () => {
    const s = await stats(viewer);
    return s.inbound.video.framesDecoded > a.inbound.video.framesDecoded + 10 && s;
  });
  const st = await status(sender);
  console.log(`RESULT click_to_first_frame label=${label} ms=${ms} width=${b.inbound.video.frameWidth} framesDecoded=${b.inbound.video.framesDecoded} status="${st}"`);
  return { ms, status: st };
}

/** Clicks "Switch to audio": the viewer's tile goes audio-only and video stops arriving. */
async function downgrade(sender, viewer, peerID, label) {
  const tile = `.tile.peer[data-peer="${peerID}"]`;
  await sender.click('#video-button');
  await poll(`${label}: sender back to audio`, async () => (await sender.getAttribute('#video-button', 'data-video')) === 'false');
  await poll(`${label}: viewer tile audio-only`, async () => (await viewer.getAttribute(tile, 'data-video')) === 'false');
  check(await viewer.isVisible(`${tile} .overlay`), `${label}: the viewer does not show "Audio only"`);
  await expectNoVideo(viewer, `${label}: viewer`, 'inbound');
}

/** After a switch to audio, no more video flows in that direction on this page ('inbound' or 'outbound'). */
async function expectNoVideo(page, label, dir) {
  const n = (s) => (dir === 'inbound' ? s.inbound.video.packetsReceived : s.outbound.video.packetsSent);
  await sleep(500); // packets already in flight
  const a = await stats(page);
  await sleep(1500);
  const b = await stats(page);
  check(n(b) - n(a) <= 5, `${label}: ${n(b) - n(a)} video packets ${dir} after video went off`);
  check(b.inbound.audio.packetsReceived > a.inbound.audio.packetsReceived || dir === 'outbound', `${label}: audio stopped too`);
}

/** Hangs up: the page shows a clear "call ended" state, not the join form. */
async function hangUp(page) {
  await page.click('#hangup-button');
  await page.waitForSelector('#ended:not([hidden])');
  check(await page.isHidden('#join') && await page.isHidden('#call'), 'after hang-up the join form or the call is still shown');
  check((await status(page)) === 'Call ended.', `after hang-up the status says "${await status(page)}"`);
  check((await page.inputValue('#token')) === '', 'the used token is still in the form after hang-up');
  const said = await page.locator('#ended-text').innerText();
  check(said.startsWith('You left consultation'), `after hang-up the page says "${said}"`);
}

/** Each side looks like itself: body[data-role], title, "You are the …"; returns the header's colour. */
async function expectRoleLook(page, role) {
  await poll(`${role} page shows its role`, async () => (await page.getAttribute('body', 'data-role')) === role);
  const title = await page.title();
  check(title.toLowerCase().startsWith(role), `${role} page title is "${title}"`);
  const you = (await page.locator('#you-are').innerText()).trim();
  check(you === `You are the ${role}`, `${role} page says "${you}"`);
  return page.evaluate(() => getComputedStyle(document.querySelector('header')).borderTopColor);
}

/** Tokens are never on screen: password fields, described in words. */
async function expectNoRawToken(page, who) {
  const token = await page.inputValue('#token');
  check(token.length > 20, `${who}: no token in the form`);
  check(await page.getAttribute('#token', 'type') === 'password', `${who}: the token field shows the token`);
  check(await page.locator('textarea').count() === 0, `${who}: a text box is on the page`);
  check(!(await page.locator('body').innerText()).includes(token.slice(0, 16)), `${who}: the token is shown as text`);
  const info = await page.locator('#token-info').innerText();
  check(info.startsWith('Token ready'), `${who}: the token is not described ("${info}")`);
}

/** At phone size nothing scrolls sideways and every visible control fits the screen. */
async function expectFits(page, label) {
  const bad = await page.evaluate(() => {
    const w = document.documentElement.clientWidth;
    const out = [];
    if (document.documentElement.scrollWidth > w) out.push(`page is ${document.documentElement.scrollWidth}px wide in ${w}px`);
    for (const el of document.querySelectorAll('button, input, select, label, .tile, #alone')) {
      const r = el.getBoundingClientRect();
      if (r.width > 0 && (r.left < 0 || r.right > w + 0.5)) out.push(`${el.id || el.className || el.tagName} spans ${r.left}..${r.right}`);
    }
    return out;
  });
  check(bad.length === 0, `${label}: does not fit: ${bad.join('; ')}`);
}

/** The self-view stays a thumbnail, also when alone. */
async function expectSmallSelfView(page, label) {
  const { w, h, vw, vh } = await page.evaluate(() => {
    const r = document.getElementById('self-tile').getBoundingClientRect();
    return { w: r.width, h: r.height, vw: innerWidth, vh: innerHeight };
  });
  check(w <= vw * 0.45 && h <= vh * 0.3, `${label}: the self-view is ${w}x${h} in a ${vw}x${vh} window`);
}

/**
 * Runs in a page before its scripts: joins as soon as the dev link's token is
 * there (no user gesture), and reports on the console when the call shows and
 * whenever the "Turn on sound" notice shows or hides, with the state of the
 * peer's <audio> at that moment.
 */
function autoJoin() {
  const t = setInterval(() => {
    const tok = document.getElementById('token');
    if (!tok || tok.value.length < 20) return;
    clearInterval(t);
    const audio = () => { const a = document.querySelector('.tile.peer audio'); return a ? (a.paused ? 'paused' : 'playing') : 'missing'; };
    const notice = document.getElementById('sound-notice');
    new MutationObserver(() => console.log(`e2e: sound notice ${notice.hidden ? 'hidden' : 'shown'}; audio ${audio()}`))
      .observe(notice, { attributes: true, attributeFilter: ['hidden'] });
    const call = document.getElementById('call');
    new MutationObserver((_, obs) => { if (!call.hidden) { obs.disconnect(); console.log('e2e: in the call'); } })
      .observe(call, { attributes: true, attributeFilter: ['hidden'] });
    document.getElementById('join-form').requestSubmit();
  }, 50);
}

async function main() {
  // 1. The two links `serve --dev` prints, one on a phone, one on a desktop. Each mints its token in the page.
  /** @type {import('playwright-core').WebSocketRoute[]} */
  const sockets = [];
  const patient = await open('patient', 'patient', '?role=patient&cid=c-1&pid=p-1&rec=1', { routeSocket: sockets, viewport: PHONE });
  const clinician = await open('clinician', 'clinician', '?role=clinician&cid=c-1&pid=p-1&sub=d-1&rec=1');
  for (const p of [patient, clinician]) check(!p.url().includes('token'), 'a token is in the URL');
  for (const p of [patient, clinician]) await poll('a generated token', async () => (await p.inputValue('#token')).length > 20);
  const colours = [await expectRoleLook(patient, 'patient'), await expectRoleLook(clinician, 'clinician')];
  check(colours[0] !== colours[1], `both roles have the same colour ${colours[0]}`);
  check(await patient.isHidden('#dev-sub'), "the patient's form shows a participant id field");
  const shown = await patient.evaluate(() => [...document.querySelectorAll('input')].filter((i) => i.offsetParent).map((i) => i.value).join(' ') + document.body.innerText);
  check(!shown.includes('d-1'), "the patient's page shows the clinician's id");
  await expectNoRawToken(patient, 'patient');
  await expectNoRawToken(clinician, 'clinician');
  await expectFits(patient, 'patient join form');
  await shot(patient, 'join-form-phone.png');
  await shot(clinician, 'join-form-desktop.png');
  await expectAccessible(patient, 'join-form');
  check(!(await patient.isVisible('#recording')), 'the recording indicator is shown before joining');

  // 2. Both join audio-only; each hears the other's tone, played, from the first seconds.
  await join(patient, { tokenFromQuery: true });
  check(await patient.isVisible('#alone'), 'a lone patient is not told the other side has not joined');
  await expectSmallSelfView(patient, 'patient alone');
  await shot(patient, 'alone-phone.png');
  await join(clinician, { tokenFromQuery: true });
  for (const p of [patient, clinician]) check(await p.isVisible('#recording'), 'the recording indicator is not shown');
  await checkpointStats(1, 2);
  await expectHears(patient, 'patient-audio-only', 'd-1', TONES.clinician);
  await expectHears(clinician, 'clinician-audio-only', 'p-1', TONES.patient);
  await expectFits(patient, 'patient audio call');
  await shot(patient, 'audio-call-phone.png');
  await expectAccessible(clinician, 'audio-call');

  // 3. Upgrade by the pre-negotiated path; audio plays on; screenshots during the video call at both sizes.
  const pre = await upgrade(patient, clinician, 'p-1', 'prenegotiated');
  check(pre.status.includes('instant'), `prenegotiated upgrade took another path: ${pre.status}`);
  await expectHears(clinician, 'clinician-upgraded', 'p-1', TONES.patient);
  await expectHears(patient, 'patient-upgraded', 'd-1', TONES.clinician);
  await shot(clinician, 'video-call-desktop.png', false);
  await expectAccessible(clinician, 'video-call');
  await clinician.setViewportSize(PHONE);
  await expectFits(clinician, 'clinician video call');
  await shot(clinician, 'video-call-phone.png');
  await clinician.setViewportSize(DESKTOP);
  await shot(patient, 'sending-video-phone.png');

  // 4. Downgrade (audio plays on) and re-upgrade (the fast path again).
  await downgrade(patient, clinician, 'p-1', 'downgrade');
  await expectHears(clinician, 'clinician-downgraded', 'p-1', TONES.patient);
  await upgrade(patient, clinician, 'p-1', 're-upgrade');

  // 5. The patient's socket drops: the client rejoins, renegotiates, turns video back on, and both hear each other.
  check(sockets.length === 1, `expected one patient socket, saw ${sockets.length}`);
  await clinician.evaluate(() => { document.querySelector('.tile.peer[data-peer="p-1"]').dataset.before = 'drop'; });
  await sockets[0].close({ code: 4001, reason: 'test: dropped' }); // drops both ends of the socket
  await poll('patient reconnected after the drop', async () => sockets.length === 2 && (await status(patient)) === 'Reconnected.');
  await poll('video flows again after the reconnect', () => clinician.evaluate(() => {
    const t = document.querySelector('.tile.peer[data-peer="p-1"]:not([data-before])');
    return t && t.dataset.video === 'true' && t.dataset.firstFrameAt && t.querySelector('video').videoWidth > 0;
  }));
  await checkpointStats(1, 2);
  await expectHears(clinician, 'clinician-after-reconnect', 'p-1', TONES.patient);
  await expectHears(patient, 'patient-after-reconnect', 'd-1', TONES.clinician);
  console.log('RESULT reconnect ok=1');

  // 6. The clinician leaves while the patient sends video: the patient's page says so and its camera goes off.
  await hangUp(clinician);
  check((await clinician.locator('#ended-text').innerText()).includes('consultation c-1'), 'the ended state does not name the consultation');
  await poll('the patient is told the clinician left', async () => (await patient.isVisible('#alone'))
    && (await patient.locator('#alone').innerText()).includes('The clinician left'));
  await poll('the patient stops sending video', async () => (await patient.getAttribute('#video-button', 'data-video')) === 'false');
  check(await patient.evaluate(() => window.medcallDemo.client.localStream.getVideoTracks().length === 0), 'the camera is still open');
  await expectNoVideo(patient, 'patient alone', 'outbound');
  await checkpointStats(1, 1);
  await shot(patient, 'other-side-left-phone.png');
  await hangUp(patient);
  await checkpointStats(0, 0);
  await expectFits(patient, 'patient call ended');
  await shot(patient, 'call-ended-phone.png');
  await expectAccessible(patient, 'call-ended');

  // 7. Joining the ended recorded consultation again is never silent: the page asks first.
  await patient.click('#again-button');
  await patient.click('#dev-generate');
  await poll('the rejoin warning', () => patient.isVisible('#rejoin'));
  await patient.click('#join-button');
  await poll('Join refuses without a confirmation', () => patient.isVisible('#error'));
  check(await patient.isVisible('#join') && await patient.isHidden('#call'), 'Join started a second recording without asking');
  await checkpointStats(0, 0);
  await shot(patient, 'rejoin-warning-phone.png');
  await expectAccessible(patient, 'rejoin-warning');

  // 8. A token that contradicts the consultation's binding is refused with a clear error.
  await clinician.click('#again-button');
  await clinician.fill('#token', 'not-a-token');
  check((await clinician.locator('#token-info').innerText()).includes('does not look like a medcall token'), 'a pasted non-token is not pointed out');
  await clinician.uncheck('#dev-rec');
  await clinician.click('#dev-generate');
  await poll('a new token', async () => (await clinician.inputValue('#token')).length > 20);
  await clinician.click('#join-button');
  await poll('binding_mismatch shown', async () => (await clinician.getAttribute('#error', 'data-code')) === 'binding_mismatch');
  check(await clinician.isVisible('#error'), 'the error is not visible');
  await shot(clinician, 'join-refused-desktop.png');
  await checkpointStats(0, 0);

  // 9. Upgrade by renegotiation: a patient who did not prepare video at join. Audio plays in every state.
  const patient2 = await open('patient2', 'patient', '?role=patient&cid=c-2&pid=p-2');
  await patient2.uncheck('#prenegotiate');
  await join(patient2, { tokenFromQuery: true });
  await clinician.fill('#dev-cid', 'c-2');
  await clinician.fill('#dev-pid', 'p-2');
  await join(clinician);
  await checkpointStats(1, 2);
  for (const p of [patient2, clinician]) check(!(await p.isVisible('#recording')), 'the recording indicator is shown in an unrecorded consultation');
  await expectHears(clinician, 'clinician-c2-audio-only', 'p-2', TONES.patient);
  await expectHears(patient2, 'patient2-audio-only', 'd-1', TONES.clinician);
  const reneg = await upgrade(patient2, clinician, 'p-2', 'renegotiate');
  check(reneg.status.includes('renegotiated'), `renegotiation upgrade took another path: ${reneg.status}`);
  await expectHears(clinician, 'clinician-c2-renegotiated', 'p-2', TONES.patient);
  await downgrade(patient2, clinician, 'p-2', 'downgrade-after-renegotiate');
  await expectHears(clinician, 'clinician-c2-downgraded', 'p-2', TONES.patient);
  const again = await upgrade(patient2, clinician, 'p-2', 're-upgrade-after-renegotiate');
  check(again.status.includes('instant'), `re-upgrade after renegotiation should use the fast path: ${again.status}`);
  await hangUp(patient2);
  await hangUp(clinician);
  await checkpointStats(0, 0);

  // 10. A page that joins without the user touching it (no user activation; desktop Chrome's autoplay policy).
  // Chromium may block its sound until the microphone is live, or not at all, so the path varies; whichever
  // it takes, the "Turn on sound" notice shows only while the audio is paused, the audio is heard in the end
  // (after one click on the notice if it stays), and no notice is left over once it plays. Playwright must
  // not touch the page until then (an evaluate counts as a user gesture): the page reports on its console.
  await clinician.click('#again-button');
  await clinician.fill('#dev-cid', 'c-3');
  await clinician.fill('#dev-pid', 'p-3');
  await join(clinician);
  await expectSmallSelfView(clinician, 'clinician alone (desktop)');
  const reports = [];
  let inCall;
  const joined3 = new Promise((r) => { inCall = r; });
  const patient3 = await open('patient3', 'patient', '?role=patient&cid=c-3&pid=p-3', {
    init: autoJoin,
    onConsole: (m) => { if (m.text() === 'e2e: in the call') inCall(); else if (m.text().startsWith('e2e: sound notice')) reports.push(m.text()); },
  });
  await Promise.race([joined3, sleep(15000).then(() => { throw new Error('the page that joins by itself never got into the call'); })]);
  await sleep(2000); // untouched: time for a block, and for the browser to lift it
  for (const r of reports) check(!r.includes('shown') || r.endsWith('audio paused'), `"Turn on sound" shown while the audio was not paused: ${r}`);
  let path = reports.length ? 'blocked-then-allowed' : 'never-blocked';
  if (await patient3.isVisible('#sound-notice')) {
    check(await patient3.evaluate(() => document.querySelector('.tile.peer audio').paused), '"Turn on sound" shows while the audio plays');
    await shot(patient3, 'sound-blocked-desktop.png', false);
    await patient3.click('#sound-button');
    path = 'blocked-then-clicked';
  }
  await expectHears(patient3, 'patient3-no-gesture', 'd-1', TONES.clinician);
  check(await patient3.isHidden('#sound-notice'), '"Turn on sound" is still shown while the audio plays');
  console.log(`RESULT autoplay path=${path} reports="${reports.join(' | ')}"`);
  await hangUp(patient3);
  await hangUp(clinician);
  await checkpointStats(0, 0);

  // 11. An app that follows only medcall.js's doc comment (its audio elements are not even in the document)
  // hears the other side from the first packet, and still while video arrives.
  await clinician.click('#again-button');
  await clinician.fill('#dev-cid', 'c-4');
  await clinician.fill('#dev-pid', 'p-4');
  await join(clinician);
  const app = await open('app', 'patient', 'e2e-app.html', { html: readFileSync(new URL('./app-minimal.html', import.meta.url), 'utf8') });
  await app.evaluate(() => window.startCall({ role: 'patient', cid: 'c-4', pid: 'p-4', rec: false }));
  await checkpointStats(1, 2);
  const heard = await expectHears(app, 'app-audio-only', 'd-1', TONES.clinician);
  check(heard.element === 'audio-detached', `the app's audio plays in ${heard.element}, not the client's own <audio>`);
  await expectHears(clinician, 'clinician-hears-app', 'p-4', TONES.patient);
  await clinician.click('#video-button');
  await poll("the app shows the clinician's video", () => app.evaluate(() => {
    const v = document.getElementById('video-d-1');
    return v && v.videoWidth > 0 && v.srcObject.getAudioTracks().length === 0;
  }));
  await expectHears(app, 'app-receiving-video', 'd-1', TONES.clinician);
  await app.evaluate(() => window.medcallApp.leave());
  await hangUp(clinician);
  await checkpointStats(0, 0);

  // 12. The patient confirms and records c-1 again: a second recording, so the replay list has an order to show.
  await patient.check('#rejoin-confirm');
  await patient.click('#join-button');
  await patient.waitForSelector('#call:not([hidden])', { timeout: 15000 });
  await checkpointStats(1, 1);
  await sleep(2000);
  await hangUp(patient);
  await checkpointStats(0, 0);

  // 13. Replay list, newest first. Until the replay API is mounted in the test server, the page must say so calmly.
  for (const [page, pid] of [[patient, 'p-1'], [patient2, 'p-2']]) {
    check(await page.isVisible('#replay'), `${pid}: the replay section is not shown to a patient`);
    await page.click('#replay-dev');
    await poll(`${pid}: replay token`, async () => (await page.inputValue('#replay-token')).length > 20);
    await page.click('#replay-load');
    await poll(`${pid}: replay list answered`, async () => !(await page.textContent('#replay-status')).startsWith('Loading'));
  }
  if (replayEnabled) {
    await poll('p-1 sees both recordings', async () => (await patient.locator('#replay-list button').count()) === 2);
    const started = await patient.locator('#replay-list button').evaluateAll((bs) => bs.map((b) => b.dataset.started));
    check(started.every(Boolean) && started[0] > started[1], `the replay list is not newest first: ${started.join(', ')}`);
    await shot(patient, 'replay-list-phone.png');
    await expectAccessible(patient, 'replay-list');
    await patient.click('#replay-list li:last-child button'); // the first call, with video
    // Nothing plays by itself: the original plays when asked, and pauses the consultation player.
    await poll('the recording is loaded, not playing', () => patient.evaluate(() => {
      const v = document.getElementById('replay-player');
      return v.readyState >= 1 && v.paused;
    }));
    await patient.evaluate(() => document.querySelector('#replay-consultation button.consultation-play')?.click());
    await poll('the consultation player plays', () => patient.evaluate(() =>
      document.querySelector('#replay-consultation button.consultation-play')?.textContent === 'Pause'));
    await patient.evaluate(() => document.getElementById('replay-player').play());
    await poll('the original plays and the consultation player pauses', () => patient.evaluate(() =>
      document.querySelector('#replay-consultation button.consultation-play')?.textContent === 'Play'));
    await poll('the recording plays', () => patient.evaluate(() => {
      const v = document.getElementById('replay-player');
      return v.readyState >= 2 && v.duration > 1 && v.currentTime > 0;
    }));
    await patient.evaluate(() => { const v = document.getElementById('replay-player'); v.currentTime = v.duration / 2; });
    await poll('the recording seeks', () => patient.evaluate(() => {
      const v = document.getElementById('replay-player');
      return !v.seeking && v.currentTime >= v.duration / 2 - 0.5;
    }));
    // And the other way round: the consultation player's Play pauses the original.
    await patient.click('#replay-consultation button.consultation-play');
    await poll('the consultation player plays and the original pauses', () => patient.evaluate(() =>
      document.getElementById('replay-player').paused &&
      document.querySelector('#replay-consultation button.consultation-play')?.textContent === 'Pause'));
    await patient2.click('#replay-load');
    await poll('p-2 sees no recordings', async () => (await patient2.textContent('#replay-status')) === 'No recordings.');
    console.log('RESULT replay ok=1');
  } else {
    for (const page of [patient, patient2]) {
      const st = await page.textContent('#replay-status');
      check(st.includes('not available'), `replay without the API: unexpected status "${st}"`);
    }
    console.log('RESULT replay skipped=1 reason="GET /v1/recordings not mounted; set MEDCALL_E2E_REPLAY=1 when it is"');
  }

  // 14. Every frame both clients sent and received kept to the protocol's JSON Schema.
  checkProtocol();
  check(pageErrors.length === 0, `errors in the pages:\n  ${pageErrors.join('\n  ')}`);
}

let code = 0;
try {
  await main();
  console.log('E2E PASS');
} catch (err) {
  console.error(`E2E FAIL: ${err && err.stack ? err.stack : err}`);
  code = 1;
  await diagnose();
} finally {
  await closeAll();
}
process.exit(code);
