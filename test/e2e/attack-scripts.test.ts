import { test } from 'node:test';
import assert from 'node:assert/strict';
import { attackSuite } from '../helpers/attack-suite.js';
import { TestClient } from '../helpers/smtp-client.js';
import { phase, problems, scriptMisbehaviour, table } from '../../tools/attack-lib.js';

// Scripts that misbehave under load, against a real moonpost (its own process): clients whose
// EHLO makes DoMAILFROM of ATTACK_SCRIPT loop forever, fill memory or throw, back to back,
// while well-behaved clients (for whom the same script runs its normal path) send mail. The
// budgets (scripts.timeMs 200, memoryMB 16) must stop every runaway and the others go on.

const BOUNDS = { minSuccess: 1, maxP99Ms: 10_000, maxRssMB: 400, minMessages: 1 };

const suite = attackSuite();

test('endless loops, memory hogs and errors in a hook under load: budgets stop each, every well-behaved message goes through', async () => {
  const r = await phase(suite.server, suite.bystanders, scriptMisbehaviour(2), 3);
  suite.results.push(r);
  assert.deepEqual(problems(r, BOUNDS), [], table([suite.results[0], r]));
  const c = r.outcome!.counts;
  // Each client starts with a loop or a hog, then cycles through loop, hog and error.
  assert.ok(c.stopped >= 2, `budget stops: ${JSON.stringify(c)}`);
  assert.ok(c.accepted >= c.stopped, `messages accepted after a stop: ${JSON.stringify(c)}`);
  // The script is still on for everyone else: this refusal comes from its DoRCPTTO.
  const c2 = await TestClient.connect(suite.server.port);
  await c2.read();
  await c2.cmd('EHLO fine.test');
  await c2.cmd('MAIL FROM:<a@example.com>');
  assert.equal((await c2.cmd('RCPT TO:<scriptblocked@localhost>')).raw, '550 5.7.1 refused by the script\r\n');
  c2.close();
  const after = await phase(suite.server, suite.bystanders, null, 1);
  assert.equal(after.bystanders.successRate, 1, after.bystanders.errors.join(' | '));
});
