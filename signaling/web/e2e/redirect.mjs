// Browser test of a cluster redirect: the page, served by one node
// (MEDCALL_URL), joins with medcall.js through that node's socket; the
// consultation lives on another node, so the join is answered by redirect
// and medcall.js must join there. Run by TestBrowserFollowsRedirect
// (cmd/medcall/cluster_browser_test.go), which checks on the hosting node
// that the browser arrived and is heard.
//
// Environment: MEDCALL_URL (http://entry), MEDCALL_TOKEN (a clinician's join
// token), MEDCALL_CHROMIUM. Prints "RESULT joined_on <ws url>" then "E2E PASS".
import { chromium } from 'playwright-core';
import { FAKE_MEDIA_ARGS } from './chromium.mjs';

const base = process.env.MEDCALL_URL;
const token = process.env.MEDCALL_TOKEN;
if (!base || !token) throw new Error('MEDCALL_URL and MEDCALL_TOKEN must be set');
const browser = await chromium.launch({
  executablePath: process.env.MEDCALL_CHROMIUM || '/usr/bin/chromium',
  args: [...FAKE_MEDIA_ARGS, '--allow-loopback-in-peer-connection'],
});
try {
  // The demo page allows connect-src 'self' only; an app that lets its
  // clients follow redirects must allow its nodes' URLs (docs/cluster.md).
  // Here the page stands in for such an app.
  const page = await browser.newPage({ bypassCSP: true });
  page.on('console', (m) => console.error('page:', m.text()));
  await page.goto(base + '/');
  const url = base.replace(/^http/, 'ws') + '/v1/signal';
  const joinedOn = await page.evaluate(async ({ url, token }) => {
    const { MedcallClient } = await import('/client/medcall.js');
    const c = new MedcallClient({ url, token, video: false });
    window.medcallClient = c;
    await c.join();
    return c._ws.url;
  }, { url, token });
  console.log('RESULT joined_on ' + joinedOn);
  // Stay in the call until the Go test has heard this browser.
  await new Promise((r) => process.stdin.once('data', r));
  process.stdin.destroy();
  console.log('E2E PASS');
} finally {
  await browser.close();
}
