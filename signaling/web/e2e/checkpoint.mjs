// The checkpoint dialogue with the Go test that runs a script: the script
// prints "CHECKPOINT <step> [args]" on stdout, the Go test does its part of
// the step and answers one line on stdin. One reader for the process.
import { createInterface } from 'node:readline';

const stdin = createInterface({ input: process.stdin });
const answers = [];
const waiters = [];
stdin.on('line', (l) => (waiters.length ? waiters.shift()(l) : answers.push(l)));
const nextAnswer = () => (answers.length ? Promise.resolve(answers.shift()) : new Promise((r) => waiters.push(r)));

/** Prints CHECKPOINT step args and resolves with the Go test's answer line. */
export function ask(step, ...args) {
  console.log(`CHECKPOINT ${step} ${args.join(' ')}`.trim());
  return nextAnswer();
}

/**
 * Asks for step; the answer must be "ok [values]" (else it throws, naming
 * the step after `who`); returns the values.
 */
export async function checkpoint(who, step, ...args) {
  const a = await ask(step, ...args);
  if (!a.startsWith('ok')) throw new Error(`${who} ${step}: ${a}`);
  return a.split(' ').slice(1);
}

/** Stops reading answers, so the process can exit. */
export function endCheckpoints() {
  stdin.close();
}
