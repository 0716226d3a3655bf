// Loading a page inside a freshly built network namespace.

/**
 * gotoSettled loads url in page and, given ready (a function evaluated in
 * the page), waits until it returns true. Chromium aborts requests with
 * ERR_NETWORK_CHANGED when an interface of the namespace settles (an IPv6
 * address appearing) just as they start: the navigation itself, or a script
 * it loads, so the page never starts. That is the test's network being
 * built, not the server, so it loads once more, up to three times.
 */
export async function gotoSettled(page, url, ready = null) {
  for (let attempt = 1; ; attempt++) {
    try {
      await page.goto(url);
      if (ready) await page.waitForFunction(ready, null, { timeout: 10000 });
      return;
    } catch (e) {
      const settling = String(e).includes('ERR_NETWORK_CHANGED') || (ready && String(e).includes('Timeout'));
      if (attempt >= 3 || !settling) throw e;
      console.error(`page load ${attempt}: ${String(e).split('\n')[0]}; retrying`);
      await new Promise((r) => setTimeout(r, 500));
    }
  }
}
