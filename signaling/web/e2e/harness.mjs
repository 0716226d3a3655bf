// The pieces of the end-to-end test that are not the scenario: browsers (one
// per side, each with its own fake microphone tone), pages, polling, the
// checkpoint dialogue with the Go test, and diagnostics on failure.
import { chromium } from 'playwright-core';
import { FAKE_MEDIA_ARGS } from './chromium.mjs';
import { mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join as pathJoin } from 'node:path';
import { ask, endCheckpoints } from './checkpoint.mjs';
import { TONES, makeTone } from './audio.mjs';
import { routeSocket as routeChecked, watchPage } from './protocol.mjs';

export const base = process.env.MEDCALL_URL;
if (!base) throw new Error('MEDCALL_URL is not set');
export const artifacts = process.env.MEDCALL_ARTIFACTS || pathJoin(tmpdir(), 'medcall-artifacts');
mkdirSync(artifacts, { recursive: true });

/** Screen sizes every page is checked at: a 390x844 phone and a desktop window. */
export const PHONE = Object.freeze({ width: 390, height: 844 });
export const DESKTOP = Object.freeze({ width: 1280, height: 800 });

const args = [
  ...FAKE_MEDIA_ARGS, '--allow-loopback-in-peer-connection',
  // Desktop Chrome's policy: sound plays only after the user has interacted with the page.
  '--autoplay-policy=document-user-activation-required',
];

/** Asks the Go test to check the SFU's counts. */
export async function checkpointStats(consultations, participants) {
  const a = await ask('stats', consultations, participants);
  if (a !== 'ok') throw new Error(`server check (consultations=${consultations}, participants=${participants}): ${a}`);
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls cond until it returns a truthy value. */
export async function poll(what, cond, timeout = 15000) {
  const end = Date.now() + timeout;
  let last;
  for (;;) {
    try { last = await cond(); } catch (err) { last = err; }
    if (last && !(last instanceof Error)) return last;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}${last instanceof Error ? ': ' + last.message : ''}`);
    await sleep(100);
  }
}

export function check(cond, msg) { if (!cond) throw new Error(msg); }

/** One browser per side, so each side's fake microphone plays its own tone. */
const browsers = new Map();
export const pageErrors = [];
/** @type {[string, import('playwright-core').Page][]} */
const pages = [];

/**
 * A participant: a fresh browser context (its own profile: no shared storage
 * or permissions) on the demo page, in the browser of its side.
 * @param {string} name for messages and screenshots
 * @param {'patient'|'clinician'} side whose tone the microphone plays
 * Every signaling frame is checked against the protocol schema (protocol.mjs).
 * @param {{routeSocket?: any[]|null, viewport?: {width: number, height: number}, init?: Function, onConsole?: Function, html?: string}} [opts]
 *   routeSocket: route the signaling socket through Playwright (so the test can drop it) and collect the routes here;
 *   init: a script run in the page before its own (page.addInitScript); onConsole: gets the page's console messages;
 *   html: serve this page at base/query instead of the server's (same origin, so it can import the client)
 */
export async function open(name, side, query = '', { routeSocket = null, viewport = DESKTOP, init = null, onConsole = null, html = null } = {}) {
  // A page the test serves itself has no address Chromium can place on this
  // machine, so its socket to the loopback server would be refused as a
  // public page reaching the local network: such pages get a browser of
  // their own without that check.
  const key = html ? `${side}+served` : side;
  let browser = browsers.get(key);
  if (!browser) {
    const tone = makeTone(artifacts, TONES[side]);
    browser = await chromium.launch({ executablePath: process.env.MEDCALL_CHROMIUM || '/usr/bin/chromium', headless: true,
      args: [...args, `--use-file-for-fake-audio-capture=${tone}`, ...(html ? ['--disable-features=LocalNetworkAccessChecks'] : [])] });
    browsers.set(key, browser);
  }
  const ctx = await browser.newContext({ permissions: ['microphone', 'camera'], viewport });
  const page = await ctx.newPage();
  pages.push([name, page]);
  if (init) await page.addInitScript(init);
  if (onConsole) page.on('console', onConsole);
  if (html) await page.route(`${base}/${query}`, (r) => r.fulfill({ contentType: 'text/html; charset=utf-8', body: html }));
  // Sockets routed through Playwright can be dropped from outside the page, at both ends.
  if (routeSocket) await page.routeWebSocket(/\/v1\/signal$/, (ws) => { routeSocket.push(ws); routeChecked(name, ws); });
  else watchPage(name, page);
  page.on('pageerror', (e) => pageErrors.push(`${name}: ${e.message}`));
  page.on('console', (m) => {
    // The replay API is not mounted in every test server; its 404 is expected and shown on the page.
    if (m.type() === 'error' && !(m.location().url || '').includes('/v1/recordings')) pageErrors.push(`${name}: ${m.text()}`);
  });
  await page.goto(base + '/' + query);
  return page;
}

/** Saves a screenshot under artifacts and says where. Tokens are never visible (password fields). */
export async function shot(page, file, fullPage = true) {
  const path = pathJoin(artifacts, file);
  await page.screenshot({ path, fullPage });
  console.log(`RESULT screenshot path=${path}`);
}

/** Writes what each page showed, for a failed run. */
export async function diagnose() {
  for (const [name, page] of pages) {
    try {
      await page.screenshot({ path: pathJoin(artifacts, `failure-${name}.png`), fullPage: true });
      const st = await page.evaluate(async () => ({
        status: document.getElementById('status').textContent,
        error: document.getElementById('error').textContent,
        tiles: [...document.querySelectorAll('.tile.peer')].map((t) => ({ ...t.dataset, w: t.querySelector('video').videoWidth })),
        stats: await window.medcallDemo.stats(),
      }));
      console.error(`${name}: ${JSON.stringify(st)}`);
    } catch (e) { console.error(`${name}: no diagnostics: ${e.message}`); }
  }
  if (pageErrors.length) console.error(`errors in the pages:\n  ${pageErrors.join('\n  ')}`);
}

export async function closeAll() {
  for (const b of browsers.values()) await b.close().catch(() => {});
  endCheckpoints();
}
