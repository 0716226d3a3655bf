// medcall demo page: join with a token, switch between audio and video, see
// connection stats, and (for patients) list and replay recordings.
import { MedcallClient, MedcallError } from '/client/medcall.js';
import { showReplay, wireReplay } from '/recordings.js';
import { describeToken, devToken, rememberEnded, tokenClaims, wasEnded } from '/tokens.js';
import { armFirstFrame, attach, roleName, setRole, tileFor, updateAlone } from '/view.js';

export { parseRecordings } from '/recordings.js';

/** @param {string} id */
const $ = (id) => /** @type {any} */ (document.getElementById(id));

/** @type {MedcallClient|null} */
let client = null;
let config = { dev: false };
let statsTimer = 0;
/** @type {{consultation: string, recording: boolean, role: string}|null} the call in progress */
let call = null;
let leaving = false; // Hang up was pressed: the call ends because this side left

// For the browser console and the end-to-end test: the live client and its stats.
/** @type {any} */ (window).medcallDemo = {
  get client() { return client; },
  stats: () => (client ? client.stats() : null),
};

function status(text) { $('status').textContent = text; }

/** @param {unknown} err */
function showError(err) {
  const box = $('error');
  if (!err) { box.hidden = true; box.textContent = ''; return; }
  const e = /** @type {any} */ (err);
  box.textContent = e instanceof MedcallError ? `${e.advice} (${e.code})` : String(e && e.message ? e.message : e);
  box.dataset.code = e && e.code ? e.code : '';
  box.hidden = false;
}

// ---- tokens ----

function devForm() {
  const r = $('dev-role').value;
  return { role: r, sub: r === 'patient' ? $('dev-pid').value.trim() : $('dev-sub').value.trim(), cid: $('dev-cid').value.trim(), pid: $('dev-pid').value.trim(), rec: $('dev-rec').checked };
}

/** A patient's participant id is the patient id: the field is not shown (and never holds someone else's id). */
function devRoleChanged() {
  const role = $('dev-role').value;
  const patient = role === 'patient';
  $('dev-sub-row').hidden = patient;
  if (patient) $('dev-sub').value = '';
  else if (!$('dev-sub').value) $('dev-sub').value = role === 'clinician' ? 'd-1' : 'g-1';
  if (!client) setRole($('dev-role').value);
}

async function generateToken() {
  showError(null);
  try {
    $('token').value = await devToken(devForm());
    tokenChanged();
    status('Token generated. Press Join.');
  } catch (err) { showError(err); }
}

/** Describes the token in the field instead of showing it, and warns before recording an ended consultation again. */
function tokenChanged() {
  const raw = $('token').value.trim();
  const c = tokenClaims(raw);
  $('token-info').textContent = raw ? describeToken(c) : '';
  if (c && c.role && !client) setRole(c.role);
  const again = !!(c && c.rec && c.cid && wasEnded(c.cid));
  $('rejoin').hidden = !again;
  $('rejoin-confirm').checked = false;
  if (again) $('rejoin-text').textContent = `You have already ended a recorded call in consultation ${c.cid}. Joining again records it again, as a new recording if everyone else has left.`;
}

// ---- the call ----

async function join(ev) {
  ev.preventDefault();
  showError(null);
  const token = $('token').value.trim();
  if (!token) { showError(new Error('Paste a join token first.')); $('token').focus(); return; }
  if (!$('rejoin').hidden && !$('rejoin-confirm').checked) {
    showError(new Error('This would record the consultation again. Tick "Yes, start a new recording" to go ahead.'));
    $('rejoin-confirm').focus();
    return;
  }
  $('join-button').disabled = true;
  status('Connecting…');
  client = new MedcallClient({ token, prenegotiate: $('prenegotiate').checked });
  wire(client);
  try {
    await client.join(); // the 'joined' event shows the call
  } catch (err) {
    showError(err);
    status('Not connected.');
    client = null;
    $('join-button').disabled = false;
  }
}

/** @param {MedcallClient} c */
function wire(c) {
  c.addEventListener('state', (/** @type {any} */ e) => {
    if (e.detail.state === 'reconnecting') status('Connection lost — reconnecting…');
    // Only a call that was joined ends; a refused join stays on the form with its error.
    if (e.detail.state === 'closed' && client === c && call) {
      endCall(leaving ? (cid) => `You left consultation ${cid}.` : (cid) => `The connection to consultation ${cid} ended.`);
    }
  });
  c.addEventListener('joined', (/** @type {any} */ e) => onJoined(e.detail));
  c.addEventListener('reconnected', () => status('Reconnected.'));
  c.addEventListener('peer', (/** @type {any} */ e) => onPeer(e.detail.event, e.detail.participant));
  c.addEventListener('track', (/** @type {any} */ e) => attach(e.detail));
  c.addEventListener('audioblocked', () => { $('sound-notice').hidden = false; });
  c.addEventListener('audiounblocked', () => { if (!c.audioBlocked) $('sound-notice').hidden = true; });
  c.addEventListener('media', (/** @type {any} */ e) => onLocalMedia(e.detail));
  c.addEventListener('bye', (/** @type {any} */ e) => { if (e.detail.reason === 'replaced') showError(new Error('You joined from another window; this one was disconnected.')); });
  c.addEventListener('error', (/** @type {any} */ e) => showError(e.detail.error));
}

function onJoined(j) {
  call = { consultation: j.consultation, recording: !!j.recording, role: j.participant.role };
  setRole(j.participant.role);
  $('join').hidden = true;
  $('ended').hidden = true;
  $('call').hidden = false;
  $('call-id').textContent = j.consultation;
  $('self-role').textContent = `(${j.participant.role})`;
  $('recording').hidden = !j.recording;
  $('alone').textContent = 'Waiting for the other side to join…';
  const present = new Set(j.participants.map((p) => p.id));
  for (const t of document.querySelectorAll('.tile.peer')) if (!present.has(t.dataset.peer)) t.remove();
  for (const p of j.participants) onPeer('present', p);
  updateAlone();
  status((j.participants.length ? 'In the consultation.' : 'In the consultation. Waiting for the other side.')
    + (j.recording ? ' This consultation is being recorded.' : ''));
  showReplay(j.participant.role === 'patient', config.dev);
  if (!statsTimer) statsTimer = window.setInterval(showStats, 1000);
  $('video-button').focus();
}

function onPeer(event, p) {
  if (event === 'left') { onPeerLeft(p); return; }
  const tile = tileFor(p.id);
  const wasVideo = tile.dataset.video === 'true';
  tile.dataset.video = String(p.video);
  tile.dataset.role = p.role;
  tile.querySelector('figcaption').textContent = `${roleName(p.role)}${p.audio ? '' : ' (muted)'}`;
  tile.querySelector('.overlay').hidden = p.video;
  if (wasVideo && !p.video) armFirstFrame(tile);
  if (event === 'joined') status(`The ${p.role} joined.`);
  if (event === 'media' && wasVideo !== p.video) status(p.video ? `The ${p.role} turned on video.` : `The ${p.role} switched to audio only.`);
  updateAlone();
}

/** Someone left: say so; once nobody else is here, stop sending video to no one. */
async function onPeerLeft(p) {
  const t = document.querySelector(`.tile.peer[data-peer="${CSS.escape(p.id)}"]`);
  if (t) t.remove();
  if (client && !client.audioBlocked) $('sound-notice').hidden = true;
  updateAlone();
  // A reconnect drops everyone for a moment (they come back with it): not news.
  if (!client || client.state !== 'joined') return;
  const text = `The ${p.role} left the consultation.`;
  status(text);
  if (document.querySelector('.tile.peer')) return;
  $('alone').textContent = `${text} You are the only one here.`;
  if (!client.sending.video) return;
  try {
    await client.downgradeVideo();
    status(`${text} Your camera is off.`);
  } catch (err) { showError(err); }
}

function onLocalMedia(m) {
  const b = $('video-button');
  b.textContent = m.video ? 'Switch to audio' : 'Switch to video';
  b.dataset.video = String(m.video);
  $('self-overlay').hidden = m.video;
  $('self-video').srcObject = m.video && client ? client.localStream : null;
}

async function toggleVideo() {
  if (!client) return;
  const b = $('video-button');
  b.disabled = true;
  showError(null);
  try {
    if (client.sending.video) {
      status('Switching to audio only…');
      await client.downgradeVideo();
      status('Audio only.');
    } else {
      status('Switching to video…');
      const path = await client.upgradeVideo();
      status(`Video on (${path === 'prenegotiated' ? 'instant switch' : 'renegotiated'}).`);
    }
  } catch (err) { showError(err); }
  b.disabled = false;
}

async function toggleMute() {
  if (!client) return;
  const b = $('mute-button');
  const mute = b.getAttribute('aria-pressed') !== 'true';
  try {
    await client.setAudio(!mute);
    b.setAttribute('aria-pressed', String(mute));
    b.textContent = mute ? 'Unmute microphone' : 'Mute microphone';
    status(mute ? 'Microphone muted.' : 'Microphone on.');
  } catch (err) { showError(err); }
}

async function turnOnSound() {
  if (client && await client.resumeAudio()) $('sound-notice').hidden = true;
}

async function hangUp() {
  if (!client) return;
  leaving = true;
  try { await client.leave(); } catch (err) { showError(err); }
  endCall((cid) => `You left consultation ${cid}.`);
}

/**
 * Returns to a clear "call ended" state. Joining again takes a new token (and
 * a confirmation for a recorded consultation).
 * @param {(consultation: string) => string} say what happened
 */
function endCall(say) {
  if (!client || !call) return;
  client = null;
  leaving = false;
  window.clearInterval(statsTimer);
  statsTimer = 0;
  for (const t of document.querySelectorAll('.tile.peer')) t.remove();
  $('self-video').srcObject = null;
  $('call').hidden = true;
  $('recording').hidden = true;
  $('sound-notice').hidden = true;
  $('join-button').disabled = false;
  onLocalMedia({ video: false });
  let more = '';
  if (call.recording) {
    rememberEnded(call.consultation);
    more = call.role === 'patient' ? ' Its recording is kept: find it under "Your recordings".' : ' Its recording is kept.';
  }
  $('ended-text').textContent = say(call.consultation) + more;
  call = null;
  $('token').value = '';
  tokenChanged();
  $('ended').hidden = false;
  $('join').hidden = true;
  status('Call ended.');
  $('again-button').focus();
}

function joinAgain() {
  $('ended').hidden = true;
  $('join').hidden = false;
  showError(null);
  status('Not connected.');
  (config.dev ? $('dev-generate') : $('token')).focus();
}

async function showStats() {
  if (!client) return;
  try {
    const s = await client.stats();
    const f = (v, unit, digits = 0) => (v === null || v === undefined ? '–' : `${v.toFixed(digits)} ${unit}`);
    $('stat-rtt').textContent = f(s.rttMs, 'ms', 1);
    $('stat-loss').textContent = f(s.lossPct, '%', 1);
    $('stat-send').textContent = f(s.sendKbps, 'kbit/s');
    $('stat-recv').textContent = f(s.recvKbps, 'kbit/s');
  } catch { /* the call is ending */ }
}

// ---- start-up ----

async function start() {
  // Before anything is awaited: a Join pressed while /config.json is on its
  // way (one round trip, long on a slow network) would otherwise submit the
  // form the browser's way, putting the token in the address.
  $('join-form').addEventListener('submit', join);
  try {
    const r = await fetch('/config.json', { cache: 'no-store' });
    if (r.ok) config = await r.json();
  } catch { /* not fatal: no dev features */ }
  $('token').addEventListener('input', tokenChanged);
  $('video-button').addEventListener('click', toggleVideo);
  $('mute-button').addEventListener('click', toggleMute);
  $('sound-button').addEventListener('click', turnOnSound);
  $('hangup-button').addEventListener('click', hangUp);
  $('again-button').addEventListener('click', joinAgain);
  wireReplay();
  $('dev-generate').addEventListener('click', generateToken);
  $('dev-role').addEventListener('change', devRoleChanged);
  if (!config.dev) return;
  $('dev').hidden = false;
  // Dev links (printed by `medcall serve --dev`) carry the form's fields, never a token.
  const q = new URLSearchParams(location.search);
  for (const [k, id] of [['role', 'dev-role'], ['cid', 'dev-cid'], ['pid', 'dev-pid'], ['sub', 'dev-sub']]) {
    if (q.has(k)) $(id).value = q.get(k);
  }
  if (q.has('rec')) $('dev-rec').checked = q.get('rec') === '1' || q.get('rec') === 'true';
  devRoleChanged();
  if (q.has('role')) await generateToken();
}

start();
