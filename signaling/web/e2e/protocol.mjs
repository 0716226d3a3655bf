// Every signaling frame medcall.js sends and receives during the browser test,
// checked against the protocol's JSON Schema (signaling/protocol.schema.json):
// what a client sends against #/$defs/clientMessage, what the server sends
// against #/$defs/serverMessage. Replies are also matched to their requests
// (the reply type PROTOCOL.md names, or error; never twice, never unasked).
import Ajv2020 from 'ajv/dist/2020.js';
import { readFileSync } from 'node:fs';

const schemaPath = new URL('../../protocol.schema.json', import.meta.url);
const schema = JSON.parse(readFileSync(schemaPath, 'utf8'));
const ajv = new Ajv2020({ allErrors: true });
ajv.addSchema(schema);
const validators = {
  sent: ajv.getSchema(`${schema.$id}#/$defs/clientMessage`),
  received: ajv.getSchema(`${schema.$id}#/$defs/serverMessage`),
};
for (const [dir, v] of Object.entries(validators)) if (!v) throw new Error(`protocol.schema.json has no definition for ${dir} messages`);

/**
 * Per direction, the definition each message type must match (the union's
 * oneOf entries, keyed by their type constant): a frame that breaks the
 * union is reported against its own type's definition, not all of them.
 */
const byType = { sent: unionMembers('clientMessage'), received: unionMembers('serverMessage') };
function unionMembers(union) {
  const out = {};
  for (const { $ref } of schema.$defs[union].oneOf) {
    const name = $ref.replace('#/$defs/', '');
    const t = schema.$defs[name].properties.type.const;
    out[t] = { name, validate: ajv.getSchema(`${schema.$id}#/$defs/${name}`) };
  }
  return out;
}

/** The reply each request expects (PROTOCOL.md "Client requests"). */
const replies = { join: 'joined', offer: 'answer', answer: 'ack', candidate: 'ack', media: 'ack', leave: 'ack', ping: 'pong' };

/** Frames seen per direction and message type, and every fault found. */
export const seen = { sent: {}, received: {} };
export const faults = [];

/** One socket's frames: validated as they pass, replies matched to requests. */
class Socket {
  constructor(name) {
    this.name = name;
    /** @type {Map<string, string>} request id -> request type, until its reply */
    this.pending = new Map();
    this.answered = new Set();
  }

  /** @param {'sent'|'received'} dir @param {string|Buffer} payload */
  frame(dir, payload) {
    const text = typeof payload === 'string' ? payload : payload.toString('utf8');
    let m;
    try { m = JSON.parse(text); } catch { faults.push(`${this.name} ${dir} a frame that is not JSON: ${text.slice(0, 80)}`); return; }
    const type = m && typeof m.type === 'string' ? m.type : '?';
    seen[dir][type] = (seen[dir][type] || 0) + 1;
    if (!validators[dir](m)) {
      const own = byType[dir][type];
      const why = own && !own.validate(m) ? `${ajv.errorsText(own.validate.errors)} (#/$defs/${own.name})` : `no ${dir === 'sent' ? 'client' : 'server'} message has type "${type}"`;
      faults.push(`${this.name} ${dir} ${type} breaks the schema: ${why}; frame ${redact(m)}`);
    }
    if (dir === 'sent' && m.id !== undefined) {
      if (this.pending.has(m.id) || this.answered.has(m.id)) faults.push(`${this.name} reused request id ${m.id}`);
      this.pending.set(m.id, type);
    } else if (dir === 'received' && m.id !== undefined) {
      const req = this.pending.get(m.id);
      if (req === undefined) faults.push(`${this.name} received ${type} for id ${m.id}, which no pending request has`);
      else if (type !== 'error' && type !== replies[req]) faults.push(`${this.name} received ${type} in reply to ${req}, want ${replies[req]} or error`);
      this.pending.delete(m.id);
      this.answered.add(m.id);
    }
  }
}

/** Frames may hold tokens and SDP: report only the shape. */
function redact(m) {
  return JSON.stringify(m, (k, v) => (k === 'token' || k === 'sdp' ? `<${typeof v} of ${String(v).length}>` : v));
}

const isSignal = (url) => /\/v1\/signal$/.test(url);

/** Watches a page's signaling sockets (not routed through Playwright). @param {string} name */
export function watchPage(name, page) {
  page.on('websocket', (ws) => {
    if (!isSignal(ws.url())) return;
    const s = new Socket(name);
    ws.on('framesent', (f) => s.frame('sent', f.payload));
    ws.on('framereceived', (f) => s.frame('received', f.payload));
  });
}

/**
 * Connects a routed socket (page.routeWebSocket) to the server, passing and
 * checking every frame both ways. @param {string} name
 */
export function routeSocket(name, route) {
  const s = new Socket(name);
  const server = route.connectToServer();
  route.onMessage((m) => { s.frame('sent', m); server.send(m); });
  server.onMessage((m) => { s.frame('received', m); route.send(m); });
}

/** Throws if a frame broke the schema or a reply its request; logs what was checked. */
export function checkProtocol(log = console.log) {
  const count = (o) => Object.entries(o).map(([k, n]) => `${k}:${n}`).join(',');
  log(`RESULT schema sent=${count(seen.sent)} received=${count(seen.received)} faults=${faults.length}`);
  if (faults.length) throw new Error(`signaling frames that break signaling/protocol.schema.json or PROTOCOL.md:\n  ${faults.join('\n  ')}`);
  for (const t of ['join', 'offer', 'answer', 'candidate', 'media', 'leave']) {
    if (!seen.sent[t]) throw new Error(`no ${t} request was seen: the frame capture is not working`);
  }
  for (const t of ['joined', 'answer', 'ack', 'offer', 'candidate', 'participant', 'error']) {
    if (!seen.received[t]) throw new Error(`no ${t} from the server was seen: the frame capture is not working`);
  }
}
