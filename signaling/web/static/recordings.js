// The demo page's recordings section: a patient lists their recordings with a
// replay token (GET /v1/recordings, newest first) and plays one, with the
// whole consultation beside it (replay.js).
import { showConsultation } from '/replay.js';
import { describeToken, devToken, tokenClaims } from '/tokens.js';

/** @param {string} id */
const $ = (id) => /** @type {any} */ (document.getElementById(id));

/**
 * Parses GET /v1/recordings. Kept in one place so the page follows the API if
 * its shape changes. Shape: {"recordings":[{id, consultation, started, ended, duration_ms, url, segments}]},
 * one entry per consultation; segments lists the recordings it was made of (more than one when it moved
 * between cluster nodes), and it plays as one.
 * @param {any} body
 * @returns {{id: string, consultation: string, started: Date|null, durationMs: number|null, url: string, parts: number}[]}
 */
export function parseRecordings(body) {
  if (!body || !Array.isArray(body.recordings)) throw new Error('unexpected reply from the recordings service');
  return body.recordings.filter((r) => r && typeof r.id === 'string').map((r) => ({
    id: r.id,
    consultation: typeof r.consultation === 'string' ? r.consultation : '',
    started: r.started ? new Date(r.started) : null,
    durationMs: typeof r.duration_ms === 'number' ? r.duration_ms : null,
    url: typeof r.url === 'string' && r.url ? r.url : `/v1/recordings/${encodeURIComponent(r.id)}`,
    parts: Array.isArray(r.segments) ? Math.max(r.segments.length, 1) : 1,
  }));
}

/**
 * Shows the replay section to patients (others have no recordings to see).
 * @param {boolean} isPatient
 * @param {boolean} dev the server mints development tokens (/config.json)
 */
export function showReplay(isPatient, dev) {
  $('replay').hidden = !isPatient;
  $('replay-dev').hidden = !dev;
}

/** Wires the replay form: token, development token, load. */
export function wireReplay() {
  $('replay-form').addEventListener('submit', loadRecordings);
  $('replay-token').addEventListener('input', replayTokenChanged);
  $('replay-dev').addEventListener('click', replayDevToken);
}

function replayHeaders() {
  const t = $('replay-token').value.trim();
  if (!t) throw new Error('Enter a replay token first.');
  return { Authorization: `Bearer ${t}` };
}

async function replayDevToken() {
  try {
    $('replay-token').value = await devToken({ role: 'patient', sub: $('dev-pid').value.trim(), replay: true });
    replayTokenChanged();
    $('replay-status').textContent = 'Replay token generated.';
  } catch (err) { $('replay-status').textContent = `Could not get a replay token: ${err.message}`; }
}

function replayTokenChanged() {
  const raw = $('replay-token').value.trim();
  $('replay-token-info').textContent = raw ? describeToken(tokenClaims(raw)) : '';
}

/**
 * The replay list: fetches GET /v1/recordings and lists them newest first,
 * each a button that plays it. All of the list's code is here.
 */
async function loadRecordings(ev) {
  if (ev) ev.preventDefault();
  const list = $('replay-list');
  const st = $('replay-status');
  list.replaceChildren();
  st.textContent = 'Loading recordings…';
  try {
    const r = await fetch('/v1/recordings', { headers: replayHeaders(), cache: 'no-store' });
    if (r.status === 401 || r.status === 403) throw new Error('the replay token was refused');
    if (!r.ok) throw new Error(r.status === 404 ? 'replay is not available on this server' : `the server answered ${r.status}`);
    const recs = parseRecordings(await r.json());
    if (!recs.length) { st.textContent = 'No recordings.'; return; }
    // Newest first; recordings without a start time last.
    recs.sort((a, b) => (b.started ? b.started.getTime() : -Infinity) - (a.started ? a.started.getTime() : -Infinity));
    st.textContent = `${recs.length} recording${recs.length === 1 ? '' : 's'}, newest first.`;
    for (const rec of recs) {
      const li = document.createElement('li');
      const b = document.createElement('button');
      b.type = 'button';
      b.dataset.rid = rec.id;
      if (rec.started) b.dataset.started = rec.started.toISOString();
      const when = rec.started ? rec.started.toLocaleString() : 'unknown time';
      const len = rec.durationMs !== null ? ` — ${Math.round(rec.durationMs / 1000)} s` : '';
      b.dataset.parts = String(rec.parts);
      b.textContent = `Consultation ${rec.consultation}, ${when}${len}${rec.parts > 1 ? ` (recorded in ${rec.parts} parts)` : ''}`;
      b.addEventListener('click', () => play(rec));
      li.append(b);
      list.append(li);
    }
  } catch (err) {
    st.textContent = `Could not load recordings: ${err.message}.`;
  }
}

/**
 * One thing plays at a time: the original file (all tracks mixed) and the
 * consultation player (each person in step) hold the same voices, so
 * starting one pauses the other. The consultation player is judged by its
 * Play button, not by its elements' play events: those come a moment after
 * the button, and one arriving after the original was started paused the
 * original at once.
 */
function playOneAtATime() {
  const original = $('replay-player');
  const consultation = $('replay-consultation');
  original.addEventListener('play', () => {
    const b = consultation.querySelector('button.consultation-play');
    if (b && b.textContent === 'Pause') b.click();
  });
  // Capture phase: before the button's own handler turns Play into Pause.
  consultation.addEventListener('click', (e) => {
    const b = e.target instanceof Element ? e.target.closest('button.consultation-play') : null;
    if (b && b.textContent === 'Play' && !original.paused) original.pause();
  }, true);
}

let exclusive = false;

/** Loads one recording (not played until asked): the API answers with the media (streamed) or with JSON {url} (a short-lived link). */
async function play(rec) {
  if (!exclusive) { playOneAtATime(); exclusive = true; }
  const st = $('replay-status');
  const player = $('replay-player');
  st.textContent = 'Loading the recording…';
  try {
    const r = await fetch(rec.url, { headers: replayHeaders(), cache: 'no-store' });
    if (!r.ok) throw new Error(r.status === 404 ? 'recording not found' : `the server answered ${r.status}`);
    if ((r.headers.get('Content-Type') || '').startsWith('application/json')) {
      const body = await r.json();
      player.src = body.url;
    } else {
      if (player.src.startsWith('blob:')) URL.revokeObjectURL(player.src);
      player.src = URL.createObjectURL(await r.blob());
    }
    player.hidden = false;
    player.dataset.rid = rec.id;
    showConsultation($('replay-consultation'), rec.url, replayHeaders()).catch((err) => { st.textContent = `Could not show the whole consultation: ${err.message}.`; });
    st.textContent = `Showing the recording of consultation ${rec.consultation}: press Play.`;
  } catch (err) {
    st.textContent = `Could not play the recording: ${err.message}.`;
  }
}
