/**
 * `npm run attack`: every hostile client of tools/attack-lib.ts in turn against one real
 * moonpost (its own process, durable queue, a script in every session), while well-behaved
 * clients keep sending mail. Prints, per attack, their success rate and end-of-DATA latency
 * (p50/p99/max) beside a baseline without attack, the server's RSS, and what the attack saw.
 * Exits non-zero if the server died, an attack saw a rule broken, or the well-behaved clients
 * failed where they should not.
 *
 *   npm run attack                         # 10 s per attack, full size
 *   npm run attack -- --seconds 5 --only slow,smuggling
 *   npm run attack -- --huge-mb 500
 */
import { parseArgs } from 'node:util';
import {
  AttackServer,
  Bystanders,
  authBadBase64,
  badBytes,
  churn,
  floodOneAddress,
  floodTotal,
  hugeLines,
  phase,
  pipeliningFlood,
  scriptMisbehaviour,
  slowloris,
  smuggling,
  starttlsInjection,
  table,
  type Attack,
  type PhaseResult,
} from './attack-lib.js';

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '10' },
    only: { type: 'string' },
    'huge-mb': { type: 'string', default: '100' },
    bystanders: { type: 'string', default: '4' },
  },
});
const seconds = Number(values.seconds);
const hugeMB = Number(values['huge-mb']);
const PER_IP = 100;
const TOTAL = 600;

const attacks: Attack[] = [
  slowloris(450),
  floodOneAddress(PER_IP, 3),
  churn(8),
  pipeliningFlood(5000, 4, 2),
  hugeLines(hugeMB),
  badBytes(4),
  smuggling(4),
  starttlsInjection(4),
  authBadBase64(4),
  scriptMisbehaviour(2),
  floodTotal(TOTAL, PER_IP),
].filter((a) => !values.only || values.only.split(',').some((w) => a.name.toLowerCase().includes(w.toLowerCase())));

const server = await AttackServer.start({ limits: { connections: TOTAL, connectionsPerIp: PER_IP } });
const bystanders = new Bystanders(server.port, { concurrency: Number(values.bystanders) });
const results: PhaseResult[] = [];
let failed = false;
try {
  bystanders.start();
  // Warm up (JIT, the script VMs, the queue), then the baseline.
  await phase(server, bystanders, null, 2);
  results.push(await phase(server, bystanders, null, seconds));
  console.log(`baseline: ${results[0].bystanders.attempted} messages, p50 ${results[0].bystanders.p50.toFixed(1)} ms`);
  for (const e of results[0].bystanders.errors) console.log(`  bystander failure: ${e}`);
  for (const a of attacks) {
    const r = await phase(server, bystanders, a, seconds);
    results.push(r);
    console.log(`${a.name}: ${r.bystanders.ok}/${r.bystanders.attempted} ok, p99 ${r.bystanders.p99.toFixed(0)} ms, RSS ${r.peakRssMB.toFixed(0)} MB, ${r.outcome?.notes}`);
    for (const v of r.outcome?.violations ?? []) console.log(`  VIOLATION: ${v}`);
    for (const e of r.bystanders.errors) console.log(`  bystander failure: ${e}`);
    if (!r.serverAlive) {
      console.log(`the server died:\n${server.stderrTail}`);
      failed = true;
      break;
    }
    // Let the server settle (connections closing, the queue draining) before the next one.
    await new Promise((res) => setTimeout(res, 1000));
  }
} finally {
  await bystanders.stop();
}
const stopCode = await server.stop();

console.log(`\nmoonpost under attack: ${seconds} s per attack, ${values.bystanders} well-behaved clients on 127.0.0.1 (one 2 KB message per connection), durable queue, SMTPSVR.LUA in every session`);
console.log(`limits: connections ${TOTAL}, connectionsPerIp ${PER_IP}; scripts: timeMs 200, memoryMB 16\n`);
console.log(table(results));
const base = results[0]?.bystanders;
for (const r of results.slice(1)) {
  if (r.outcome?.violations.length) failed = true;
  if (!r.serverAlive) failed = true;
  if (!r.refusesBystanders && r.bystanders.successRate < 0.99) failed = true;
}
if (base && base.successRate < 1) failed = true;
if (stopCode !== 0) console.log(server.stderrTail);
console.log(`\ngraceful stop: exit ${stopCode}; ${failed ? 'FAILED' : 'all attacks contained'}`);
process.exit(failed || stopCode !== 0 ? 1 : 0);
