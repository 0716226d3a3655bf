// Accessibility of the demo page, judged by axe-core (WCAG 2 A and AA rules)
// in the page as it is at that moment: a form, a call, an ended call.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

const axeSource = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');

/**
 * Runs axe-core in the page (through evaluate, which the page's CSP does not
 * govern) and throws on any WCAG 2 A/AA violation, naming the rule and the
 * elements.
 * @param {import('playwright-core').Page} page
 * @param {string} label
 */
export async function expectAccessible(page, label) {
  const violations = await page.evaluate(async (src) => {
    if (!window.axe) (0, eval)(src); // eslint-disable-line no-eval
    const r = await window.axe.run(document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] } });
    return r.violations.map((v) => `${v.id} (${v.impact}): ${v.help}; ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`);
  }, axeSource);
  if (violations.length) throw new Error(`${label}: accessibility violations:\n  ${violations.join('\n  ')}`);
  console.log(`RESULT a11y page=${label} violations=0`);
}
