// How the demo's call looks: which side this is, and one tile per participant.

/** @param {string} id */
const $ = (id) => /** @type {any} */ (document.getElementById(id));

/** "clinician" -> "Clinician". @param {string} role */
export const roleName = (role) => (role ? role[0].toUpperCase() + role.slice(1) : 'Participant');

/**
 * Makes the two sides look different: the title, the heading, the colours
 * (body[data-role] in style.css) and "You are the clinician".
 * @param {string} role
 */
export function setRole(role) {
  if (!['patient', 'clinician', 'guest'].includes(role)) return;
  document.body.dataset.role = role;
  document.title = `${roleName(role)} — medcall consultation`;
  $('role-heading').textContent = `${roleName(role)} view`;
  $('you-role').textContent = role;
  $('you-are').hidden = false;
}

/**
 * The tile of a participant (created on first use): a muted <video> for their
 * video only - their audio plays in its own <audio> element, which attach()
 * puts in the tile too - an "Audio only" overlay and a caption.
 * @param {string} id
 * @returns {HTMLElement}
 */
export function tileFor(id) {
  let tile = /** @type {HTMLElement|null} */ (document.querySelector(`.tile.peer[data-peer="${CSS.escape(id)}"]`));
  if (tile) return tile;
  tile = document.createElement('figure');
  tile.className = 'tile peer';
  tile.dataset.peer = id;
  const video = document.createElement('video');
  video.autoplay = true;
  video.playsInline = true;
  video.muted = true;
  const overlay = document.createElement('div');
  overlay.className = 'overlay';
  overlay.textContent = 'Audio only';
  const cap = document.createElement('figcaption');
  tile.append(video, overlay, cap);
  $('self-tile').before(tile);
  armFirstFrame(tile);
  return tile;
}

/**
 * Shows a participant's media arriving (the client's 'track' event): video in
 * the tile's <video>; the <audio> element the client already plays goes into
 * the tile, so it lives and goes with the participant.
 * @param {{participant: string, kind: string, stream: MediaStream, element: HTMLAudioElement|null}} t
 */
export function attach({ participant, kind, stream, element }) {
  const tile = tileFor(participant);
  if (kind === 'audio') {
    if (element && element.parentNode !== tile) tile.append(element);
    return;
  }
  tile.querySelector('video').srcObject = stream;
  if (!tile.dataset.firstFrameAt) armFirstFrame(tile);
}

/**
 * Records when the next video frame is shown (data-first-frame-at, ms since
 * the epoch), so the time from "Switch to video" on one side to the first
 * frame on the other can be measured.
 * @param {HTMLElement} tile
 */
export function armFirstFrame(tile) {
  const video = /** @type {any} */ (tile.querySelector('video'));
  tile.dataset.firstFrameAt = '';
  if (!('requestVideoFrameCallback' in video)) return;
  const gen = (Number(tile.dataset.armed) || 0) + 1;
  tile.dataset.armed = String(gen);
  const onFrame = () => {
    if (tile.dataset.armed !== String(gen) || tile.dataset.firstFrameAt) return;
    // Frames still in flight from before a switch to audio do not count.
    if (tile.dataset.video !== 'true') { video.requestVideoFrameCallback(onFrame); return; }
    tile.dataset.firstFrameAt = String(Date.now());
  };
  video.requestVideoFrameCallback(onFrame);
}

/** Shows the waiting (or "has left") notice while nobody else is in the call. */
export function updateAlone() { $('alone').hidden = document.querySelectorAll('.tile.peer').length > 0; }
