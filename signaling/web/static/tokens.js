// Tokens in the demo page: what it shows of a token instead of the token
// itself, the development endpoint that mints them, and which recorded
// consultations this tab has ended (so a token for one is not used silently).
//
// A token is a credential: the page keeps it in a password field and shows
// what it is for, read from its claims. The claims are read, not verified -
// the server verifies - so this is a description, never a decision.

/**
 * The claims of a JWT (its middle part), or null if raw is not one.
 * @param {string} raw
 * @returns {{role?: string, sub?: string, cid?: string, pid?: string, rec?: boolean, exp?: number}|null}
 */
export function tokenClaims(raw) {
  const parts = raw.split('.');
  if (parts.length !== 3) return null;
  try {
    const b64 = parts[1].replace(/-/g, '+').replace(/_/g, '/');
    const c = JSON.parse(atob(b64 + '='.repeat((4 - (b64.length % 4)) % 4)));
    return c && typeof c === 'object' ? c : null;
  } catch {
    return null;
  }
}

/**
 * Asks the dev-only endpoint for a token. Never used outside --dev.
 * @param {object} req {role, sub, cid, pid, rec, replay}
 */
export async function devToken(req) {
  const r = await fetch('/dev/token', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(req) });
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(body.error || `token request failed (${r.status})`);
  return body.token;
}

/**
 * One sentence about a token for the person at the screen: whose it is, for
 * which consultation, recorded or not, and until when. No participant ids.
 * @param {ReturnType<typeof tokenClaims>} c
 */
export function describeToken(c) {
  if (!c || typeof c.role !== 'string') return 'This does not look like a medcall token; check that it was copied whole.';
  const until = typeof c.exp === 'number'
    ? ` It is valid until ${new Date(c.exp * 1000).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })}.` : '';
  const expired = typeof c.exp === 'number' && c.exp * 1000 < Date.now() ? ' It has expired; get a new one.' : '';
  if (!c.cid) return `Token ready: ${c.role} replay token.${expired || until}`;
  return `Token ready: ${c.role}, consultation ${c.cid}${c.rec ? ', recorded' : ', not recorded'}.${expired || until}`;
}

// Recorded consultations this tab has ended, so joining one again is never a
// silent second recording. Session storage: forgotten when the tab closes.
const endedKey = 'medcall-demo-ended';
const endedSet = () => new Set(JSON.parse(sessionStorage.getItem(endedKey) || '[]'));

/** Whether this tab ended a recorded call in consultation cid. @param {string} cid */
export const wasEnded = (cid) => endedSet().has(cid);

/** Notes that this tab ended a recorded call in consultation cid. @param {string} cid */
export function rememberEnded(cid) {
  const s = endedSet();
  s.add(cid);
  sessionStorage.setItem(endedKey, JSON.stringify([...s]));
}
