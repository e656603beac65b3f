import { before, after } from 'node:test';
import assert from 'node:assert/strict';
import { AttackServer, Bystanders, phase, table, type AttackServerOptions, type PhaseResult } from '../../tools/attack-lib.js';

/** One attack test file's shared state: the server, its well-behaved clients, and each phase measured. */
export interface AttackSuite {
  server: AttackServer;
  bystanders: Bystanders;
  /** results[0] is the baseline phase (no attack), measured before the tests run. */
  results: PhaseResult[];
}

/**
 * Starts a moonpost under attack for the file's tests: well-behaved clients send throughout,
 * a warm-up and a baseline phase run first; at the end the phases are printed and the server
 * must stop gracefully.
 */
export function attackSuite(options?: AttackServerOptions): AttackSuite {
  const s = { results: [] as PhaseResult[] } as AttackSuite;
  before(async () => {
    s.server = await AttackServer.start(options);
    s.bystanders = new Bystanders(s.server.port, { concurrency: 3 });
    s.bystanders.start();
    await phase(s.server, s.bystanders, null, 1);
    s.results.push(await phase(s.server, s.bystanders, null, 1.5));
  });
  after(async () => {
    await s.bystanders?.stop();
    if (s.results.length) console.log(table(s.results));
    const code = await s.server?.stop();
    assert.equal(code, 0, `graceful stop after the attacks: ${s.server?.stderrTail}`);
  });
  return s;
}
