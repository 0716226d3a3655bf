// Loading the demo page inside a test network namespace.

/**
 * Opens the demo page at url and waits until its modules ran (app.js sets
 * window.medcallDemo). Chromium aborts a navigation or a module fetch with
 * ERR_NETWORK_CHANGED when an interface of the namespace settles (e.g. an IPv6
 * address appearing) just as the page loads; that is the test's network being
 * built, not the server: the page is loaded again, at most 3 times. Any other
 * failure (a module not served, a script error) fails at once.
 * @param {import('playwright-core').Page} page
 * @param {string} url
 */
export async function loadDemo(page, url) {
  let changed = false;
  const onFailed = (req) => { if ((req.failure()?.errorText || '').includes('ERR_NETWORK_CHANGED')) changed = true; };
  page.on('requestfailed', onFailed);
  try {
    for (let attempt = 1; ; attempt++) {
      changed = false;
      try {
        await page.goto(url);
        await page.waitForFunction(() => /** @type {any} */ (window).medcallDemo !== undefined, null, { timeout: 10000 });
        return;
      } catch (e) {
        if (attempt >= 3 || !(changed || String(e).includes('ERR_NETWORK_CHANGED'))) throw e;
        console.error(`page load ${attempt}: the network changed while loading (${String(e).split('\n')[0]}); retrying`);
        await new Promise((r) => setTimeout(r, 500));
      }
    }
  } finally {
    page.off('requestfailed', onFailed);
  }
}
