import { test } from 'node:test';
import assert from 'node:assert/strict';
import { attackSuite } from '../helpers/attack-suite.js';
import { Raw, attackerIp, churn, floodOneAddress, floodTotal, phase, problems, slowloris, table } from '../../tools/attack-lib.js';

// Connection-level attacks on a real moonpost (its own process), CI-sized, measured: slowloris,
// floods beyond limits.connectionsPerIp and limits.connections, connect-and-drop churn, and
// failed STARTTLS handshakes. Well-behaved clients on 127.0.0.1 send mail throughout.
// `npm run attack` runs the same attacks at full size and prints the table.

const PER_IP = 30;
const TOTAL = 120;
const SECONDS = 2;
const BOUNDS = { minSuccess: 0.99, maxP99Ms: 10_000, maxRssMB: 400, minMessages: 1 };

// A 5 s command timeout: slowloris trickles faster than that; a silent STARTTLS does not.
const suite = attackSuite({ limits: { connections: TOTAL, connectionsPerIp: PER_IP, timeouts: { command: 5, shutdown: 5 } } });

test('baseline: every well-behaved message is accepted', () => {
  assert.deepEqual(problems(suite.results[0], BOUNDS), []);
  assert.equal(suite.results[0].bystanders.successRate, 1);
});

test('slowloris: connections trickling bytes (mid-command and mid-DATA) do not slow the others', async () => {
  const r = await phase(suite.server, suite.bystanders, slowloris(3 * PER_IP, PER_IP), SECONDS);
  suite.results.push(r);
  assert.deepEqual(problems(r, BOUNDS), [], table([suite.results[0], r]));
  assert.equal(r.outcome!.counts.connected, 3 * PER_IP, 'every slow connection was admitted and held');
  assert.ok(r.outcome!.counts.bytes >= PER_IP, `${r.outcome!.counts.bytes} bytes trickled`);
});

test(`connection flood from one address beyond connectionsPerIp (${PER_IP}): 421 at once, others unaffected`, async () => {
  const r = await phase(suite.server, suite.bystanders, floodOneAddress(PER_IP, 3), SECONDS);
  suite.results.push(r);
  assert.deepEqual(problems(r, BOUNDS), [], table([suite.results[0], r]));
  assert.equal(r.outcome!.counts.mostAtOnce, PER_IP);
  assert.ok(r.outcome!.counts.refused421 >= 2 * PER_IP);
  assert.ok(r.outcome!.counts.slowest421Ms < 10_000, `421 took ${r.outcome!.counts.slowest421Ms} ms`);
});

test('connect-and-drop churn (garbage, half commands, half messages) does not hurt the others', async () => {
  const r = await phase(suite.server, suite.bystanders, churn(2), SECONDS);
  suite.results.push(r);
  assert.deepEqual(problems(r, BOUNDS), [], table([suite.results[0], r]));
  assert.ok(r.outcome!.counts.connects > 10, `only ${r.outcome!.counts.connects} connects`);
});

test(`connection flood from many addresses beyond connections (${TOTAL}): 421 4.7.0 for everyone over the limit, service back at once after`, async () => {
  const r = await phase(suite.server, suite.bystanders, floodTotal(TOTAL, PER_IP), SECONDS);
  suite.results.push(r);
  assert.deepEqual(problems(r, BOUNDS), [], table([suite.results[0], r]));
  assert.ok(r.outcome!.counts.mostAtOnce <= TOTAL);
  assert.ok(r.outcome!.counts.refused421 > 0);
  // The slots come back as soon as the flood lets go.
  await new Promise((res) => setTimeout(res, 300));
  const after = await phase(suite.server, suite.bystanders, null, 1.5);
  suite.results.push({ ...after, name: 'after the total flood' });
  assert.deepEqual(problems(after, BOUNDS), [], table([suite.results[0], after]));
});

test('failed STARTTLS handshakes free their connection slots (they used to leak and lock the address out)', async () => {
  const ip = attackerIp(200);
  for (let i = 0; i < PER_IP + 2; i++) {
    const r = await Raw.open(suite.server.port, ip);
    await r.write('EHLO leak.test\r\nSTARTTLS\r\n');
    assert.ok(await r.until(() => r.replies.length >= 3, 5000), r.text);
    assert.match(r.replies[2], /^220 /);
    // Not a TLS ClientHello: the handshake fails and the server closes.
    await r.write(i % 2 ? 'NOOP\r\n' : Buffer.from([0x16, 0x03, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5]));
    assert.ok(await r.until(() => r.closed, 5000), 'the server closed the failed handshake');
    r.close();
  }
  await new Promise((res) => setTimeout(res, 200));
  const r = await Raw.open(suite.server.port, ip);
  await r.until(() => r.lines.length > 0, 5000);
  assert.match(r.text, /^220 /, `after ${PER_IP + 2} failed handshakes the address is still admitted`);
  r.close();
});

test('a client that says STARTTLS and then nothing is dropped after the command timeout', async () => {
  const r = await Raw.open(suite.server.port, attackerIp(201));
  await r.write('EHLO silent.test\r\nSTARTTLS\r\n');
  await r.until(() => r.replies.length >= 3, 5000);
  const t0 = Date.now();
  assert.ok(await r.until(() => r.closed, 15_000), 'the silent handshake was timed out');
  assert.ok(Date.now() - t0 > 3000 && Date.now() - t0 < 12_000, `closed after ${Date.now() - t0} ms`);
  r.close();
});
