// Loading a page inside a freshly built network namespace.

/**
 * gotoSettled loads url in page. Chromium aborts a navigation with
 * ERR_NETWORK_CHANGED when an interface of the namespace settles (an IPv6
 * address appearing) just as it starts: that is the test's network being
 * built, not the server, so it loads once more, up to three times.
 */
export async function gotoSettled(page, url) {
  for (let attempt = 1; ; attempt++) {
    try {
      await page.goto(url);
      return;
    } catch (e) {
      if (attempt >= 3 || !String(e).includes('ERR_NETWORK_CHANGED')) throw e;
      console.error(`page load ${attempt}: ${String(e).split('\n')[0]}; retrying`);
      await new Promise((r) => setTimeout(r, 500));
    }
  }
}
