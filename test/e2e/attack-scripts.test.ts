import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { TestClient } from '../helpers/smtp-client.js';
import { AttackServer, Bystanders, phase, problems, scriptMisbehaviour, table, type PhaseResult } from '../../tools/attack-lib.js';

// Scripts that misbehave under load, against a real moonpost (its own process): clients whose
// EHLO makes DoMAILFROM of ATTACK_SCRIPT loop forever, fill memory or throw, back to back,
// while well-behaved clients (for whom the same script runs its normal path) send mail. The
// budgets (scripts.timeMs 200, memoryMB 16) must stop every runaway and the others go on.

const BOUNDS = { minSuccess: 1, maxP99Ms: 10_000, maxRssMB: 400, minMessages: 1 };

let server: AttackServer;
let bystanders: Bystanders;
const results: PhaseResult[] = [];

before(async () => {
  server = await AttackServer.start();
  bystanders = new Bystanders(server.port, { concurrency: 3 });
  bystanders.start();
  await phase(server, bystanders, null, 1);
  results.push(await phase(server, bystanders, null, 1.5));
});

after(async () => {
  await bystanders?.stop();
  if (results.length) console.log(table(results));
  const code = await server?.stop();
  assert.equal(code, 0, `graceful stop after the attacks: ${server?.stderrTail}`);
});

test('endless loops, memory hogs and errors in a hook under load: budgets stop each, every well-behaved message goes through', async () => {
  const r = await phase(server, bystanders, scriptMisbehaviour(2), 3);
  results.push(r);
  assert.deepEqual(problems(r, BOUNDS), [], table([results[0], r]));
  const c = r.outcome!.counts;
  // Each client starts with a loop or a hog, then cycles through loop, hog and error.
  assert.ok(c.stopped >= 2, `budget stops: ${JSON.stringify(c)}`);
  assert.ok(c.accepted >= c.stopped, `messages accepted after a stop: ${JSON.stringify(c)}`);
  // The script is still on for everyone else: this refusal comes from its DoRCPTTO.
  const c2 = await TestClient.connect(server.port);
  await c2.read();
  await c2.cmd('EHLO fine.test');
  await c2.cmd('MAIL FROM:<a@example.com>');
  assert.equal((await c2.cmd('RCPT TO:<scriptblocked@localhost>')).raw, '550 5.7.1 refused by the script\r\n');
  c2.close();
  const after = await phase(server, bystanders, null, 1);
  assert.equal(after.bystanders.successRate, 1, after.bystanders.errors.join(' | '));
});
