// Replay player for a whole consultation. A browser <video> plays only the
// first audio and the first video track of a file, so the replay API serves
// one stream per participant (their own audio and video, on the recording's
// timeline) and a timeline (GET /v1/recordings/{rid}/timeline); this module
// plays all of them in step under one clock with one seek bar, shows an
// "Audio only" placeholder whenever a participant's camera was off, and names
// people by role. Streams are fetched with the replay token in the
// Authorization header (never in a URL) and played from blob URLs.
//
// A consultation that moved between cluster nodes was recorded in several
// segments; the server already lays them back to back on the timeline's
// clock and in each participant's stream, so they play as one. The player
// notes where each later segment starts and how long the call was
// interrupted there (not recorded, not played), and its download button
// saves every segment's original signed file.

/** Largest drift (s) between a participant's element and the clock before a hard re-seek; below it, speed is nudged. */
const MAX_DRIFT = 0.1;

/**
 * Parses the timeline JSON, keeping only what the player uses.
 * @param {any} b
 */
export function parseTimeline(b) {
  if (!b || typeof b.duration_ms !== 'number' || !Array.isArray(b.participants)) throw new Error('unexpected timeline from the replay service');
  return {
    id: String(b.id),
    durationS: b.duration_ms / 1000,
    original: typeof b.original === 'string' ? b.original : '',
    segments: (Array.isArray(b.segments) ? b.segments : []).filter((g) => g && typeof g.id === 'string').map((g) => ({
      id: g.id,
      offsetS: (g.offset_ms || 0) / 1000,
      gapS: (g.gap_before_ms || 0) / 1000,
      original: typeof g.original === 'string' ? g.original : '',
    })),
    participants: b.participants.filter((p) => p && typeof p.label === 'string').map((p) => ({
      label: p.label,
      role: String(p.role || ''),
      you: p.you === true,
      joinedMs: typeof p.joined_ms === 'number' ? p.joined_ms : 0,
      leftMs: typeof p.left_ms === 'number' ? p.left_ms : null,
      stream: typeof p.stream === 'string' ? p.stream : '',
      video: p.video === true,
      videoOn: (Array.isArray(p.video_on) ? p.video_on : []).map((s) => [s.from_ms / 1000, s.to_ms / 1000]),
    })),
  };
}

/** A person-readable name for a label: "clinician-2" -> "Clinician 2". */
export function displayName(p) {
  const [role, n] = p.label.split('-');
  const name = role.charAt(0).toUpperCase() + role.slice(1) + (n ? ` ${n}` : '');
  return p.you ? `${name} (you)` : name;
}

/** Minutes and seconds: 75 -> "1:15". */
const fmt = (s) => `${Math.floor(s / 60)}:${String(Math.floor(s % 60)).padStart(2, '0')}`;

/** What a person reads about a consultation recorded in parts; '' for one part. */
export function segmentNote(tl) {
  if (tl.segments.length < 2) return '';
  const gap = (s) => (s < 120 ? `${Math.round(s)} s` : s < 7200 ? `${Math.round(s / 60)} min` : `${Math.round(s / 3600)} h`);
  const breaks = tl.segments.slice(1).map((g) => `at ${fmt(g.offsetS)} (${gap(g.gapS)} not recorded)`);
  return `Recorded in ${tl.segments.length} parts: the call was interrupted ${breaks.join(', ')}.`;
}

/** Whether participant p's camera was on at t seconds. */
export function videoOnAt(p, t) {
  return p.video && p.videoOn.some(([from, to]) => t >= from && t < to);
}

async function fetchOK(url, headers) {
  const r = await fetch(url, { headers, cache: 'no-store' });
  if (!r.ok) throw new Error(r.status === 404 ? 'recording not found' : `the server answered ${r.status}`);
  return r;
}

/** Plays one consultation's participants in step. Use showConsultation. */
export class ConsultationPlayer {
  constructor(container, timeline) {
    this.tl = timeline;
    this.t = 0; // the clock, seconds on the recording's timeline
    this.playing = false;
    this.anchor = null; // {wall, t} while playing
    this.urls = [];
    this.root = document.createElement('div');
    this.root.className = 'consultation';
    const tiles = document.createElement('div');
    tiles.className = 'consultation-tiles';
    this.tiles = timeline.participants.filter((p) => p.stream).map((p) => {
      const fig = document.createElement('figure');
      fig.className = 'consultation-tile';
      fig.dataset.label = p.label;
      const video = document.createElement('video');
      video.playsInline = true;
      video.preload = 'auto';
      const ph = document.createElement('div');
      ph.className = 'placeholder';
      ph.textContent = 'Audio only';
      const cap = document.createElement('figcaption');
      cap.textContent = displayName(p);
      fig.append(video, ph, cap);
      tiles.append(fig);
      return { p, fig, video, ph };
    });
    this.playButton = document.createElement('button');
    this.playButton.type = 'button';
    this.playButton.className = 'consultation-play';
    this.playButton.textContent = 'Play';
    this.playButton.addEventListener('click', () => (this.playing ? this.pause() : this.play()));
    this.seekBar = document.createElement('input');
    this.seekBar.type = 'range';
    this.seekBar.min = '0';
    this.seekBar.max = String(timeline.durationS);
    this.seekBar.step = '0.01';
    this.seekBar.value = '0';
    this.seekBar.setAttribute('aria-label', 'Position in the consultation');
    this.seekBar.addEventListener('input', () => this.seek(Number(this.seekBar.value)));
    this.clock = document.createElement('span');
    this.clock.className = 'consultation-time';
    this.download = document.createElement('button');
    this.download.type = 'button';
    this.download.textContent = timeline.segments.length > 1 ? `Download the ${timeline.segments.length} original recordings` : 'Download the original recording';
    const controls = document.createElement('div');
    controls.className = 'consultation-controls';
    controls.append(this.playButton, this.seekBar, this.clock, this.download);
    const note = document.createElement('p');
    note.className = 'consultation-segments';
    note.dataset.segments = String(Math.max(timeline.segments.length, 1));
    note.textContent = segmentNote(timeline);
    note.hidden = !note.textContent;
    this.root.append(tiles, controls, note);
    container.replaceChildren(this.root);
    this.frame = requestAnimationFrame(() => this.tick());
  }

  /** Fetches every participant's stream and waits until each can play. */
  async load(headers) {
    this.download.addEventListener('click', () => this.saveOriginal(headers));
    await Promise.all(this.tiles.map(async (tile) => {
      const url = URL.createObjectURL(await (await fetchOK(tile.p.stream, headers)).blob());
      this.urls.push(url);
      const ready = new Promise((resolve, reject) => {
        tile.video.addEventListener('loadeddata', resolve, { once: true });
        tile.video.addEventListener('error', () => reject(new Error(`${tile.p.label}'s stream cannot be played`)), { once: true });
      });
      tile.video.src = url;
      await ready;
    }));
    this.master = this.tiles.reduce((m, x) => (!m || x.video.duration > m.duration ? x.video : m), null);
    this.show();
  }

  /**
   * Current position on the consultation's timeline, seconds. While playing,
   * the clock is the master element's own position (the stream that lasts
   * longest), so what it shows and plays is on the clock by definition and
   * the others are steered to it; past the master's end, wall time.
   */
  now() {
    if (!this.playing || !this.anchor) return this.t;
    const m = this.master;
    if (m && !m.paused && !m.seeking && m.currentTime < m.duration) {
      this.anchor = { wall: performance.now(), t: m.currentTime };
      return m.currentTime;
    }
    return Math.min(this.anchor.t + (performance.now() - this.anchor.wall) / 1000, this.tl.durationS);
  }

  async play() {
    if (this.t >= this.tl.durationS) await this.seek(0);
    this.playing = true;
    this.anchor = { wall: performance.now(), t: this.t };
    this.playButton.textContent = 'Pause';
    await Promise.all(this.tiles.map((x) => this.follow(x)));
  }

  pause() {
    this.t = this.now();
    this.playing = false;
    this.anchor = null;
    this.playButton.textContent = 'Play';
    for (const x of this.tiles) x.video.pause();
    this.show();
  }

  /** Moves every participant to t seconds and resolves when each has its frame. */
  async seek(t) {
    this.t = Math.max(0, Math.min(t, this.tl.durationS));
    if (this.anchor) this.anchor = { wall: performance.now(), t: this.t };
    await Promise.all(this.tiles.map((x) => new Promise((resolve) => {
      const at = Math.min(this.t, x.video.duration || 0);
      if (Math.abs(x.video.currentTime - at) < 0.001 && !x.video.seeking) { resolve(); return; }
      x.video.addEventListener('seeked', resolve, { once: true });
      x.video.currentTime = at;
    })));
    this.show();
  }

  /** Keeps one participant's element on the clock: play while inside their stream. */
  async follow(x) {
    const t = this.now();
    const v = x.video;
    const inside = t < (v.duration || 0);
    if (!this.playing || !inside) { if (!v.paused) v.pause(); return; }
    const drift = v.currentTime - t;
    if (v === this.master) {
      v.playbackRate = 1;
    } else if (Math.abs(drift) > MAX_DRIFT) {
      v.currentTime = t;
      v.playbackRate = 1;
    } else {
      // Small drift is steered away by speed (pitch is preserved, so it is
      // hardly audible; a seek is not). Up to 25 % faster or slower: an
      // element that started playing ~100 ms after the master (a
      // loaded machine) is back in step within half a second.
      v.playbackRate = Math.abs(drift) < 0.005 ? 1 : 1 - Math.max(-0.25, Math.min(0.25, drift * 8));
    }
    if (v.paused) await v.play().catch(() => {});
  }

  /** Per frame: advance the clock, keep everyone in step, update placeholders and the bar. */
  tick() {
    if (this.playing) {
      this.t = this.now();
      if (this.t >= this.tl.durationS) this.pause();
      else for (const x of this.tiles) this.follow(x);
    }
    this.show();
    this.frame = requestAnimationFrame(() => this.tick());
  }

  show() {
    const t = this.now();
    for (const x of this.tiles) {
      const on = videoOnAt(x.p, t);
      x.ph.hidden = on;
      x.video.style.visibility = on ? 'visible' : 'hidden';
      x.fig.dataset.video = on ? 'on' : 'off';
    }
    if (document.activeElement !== this.seekBar) this.seekBar.value = String(t);
    this.clock.textContent = `${fmt(t)} / ${fmt(this.tl.durationS)}`;
  }

  /** Saves the original signed WebM of every segment (fetched with the token, never a token in a URL). */
  async saveOriginal(headers) {
    const parts = this.tl.segments.length ? this.tl.segments : [{ id: this.tl.id, original: this.tl.original }];
    for (const [i, g] of parts.entries()) {
      const blob = await (await fetchOK(g.original, headers)).blob();
      const a = document.createElement('a');
      a.href = URL.createObjectURL(blob);
      a.download = parts.length > 1 ? `consultation-${this.tl.id}-part${i + 1}.webm` : `consultation-${this.tl.id}.webm`;
      a.click();
      setTimeout(() => URL.revokeObjectURL(a.href), 10000);
    }
  }

  destroy() {
    cancelAnimationFrame(this.frame);
    for (const x of this.tiles) { x.video.pause(); x.video.removeAttribute('src'); }
    for (const u of this.urls) URL.revokeObjectURL(u);
    this.root.remove();
  }
}

/**
 * Shows the whole consultation of one recording in container: fetches its
 * timeline and every participant's stream. recordingURL is the recording's
 * URL from the list (GET /v1/recordings); headers carry the replay token.
 */
export async function showConsultation(container, recordingURL, headers) {
  if (container.medcallPlayer) container.medcallPlayer.destroy();
  const tl = parseTimeline(await (await fetchOK(`${recordingURL}/timeline`, headers)).json());
  const player = new ConsultationPlayer(container, tl);
  container.medcallPlayer = player;
  await player.load(headers);
  return player;
}
