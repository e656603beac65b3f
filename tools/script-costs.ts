/**
 * What the script host costs, in microseconds, outside any server: an SMTPSVR.LUA session's
 * state (restored from a kept one, src/script/state-pool.ts: what a new connection pays before
 * Start), one whole callback with its globals round trip, and the line callbacks per message
 * line. bench/all-hooks.lua is the script. Medians of 7 rounds; the machine's noise shows in
 * the spread.
 *
 *   npm run script-costs
 *
 * The last line is a whole connection's worth of calls with 20 sessions open, as in the
 * benchmark's scenario a. The numbers are for comparing one build of the script host with another on one machine; in
 * the server, with its other work between calls, the same calls cost two to three times more.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { ScriptHooks } from '../src/script/smtpsvr-hooks.js';
import { initialPolicy } from '../src/smtp/session-policy.js';
import { startScriptHost, sessionFacts } from '../test/helpers/script-host.js';

const ALL_HOOKS = fileURLToPath(new URL('../bench/all-hooks.lua', import.meta.url));
const ROUNDS = 7;

function median(label: string, perRound: number, run: () => void, per = 1): void {
  const us: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    const t = process.hrtime.bigint();
    for (let i = 0; i < perRound; i++) run();
    us.push(Number(process.hrtime.bigint() - t) / 1e3 / perRound / per);
  }
  us.sort((a, b) => a - b);
  console.log(`${label.padEnd(44)} ${us[ROUNDS >> 1].toFixed(2).padStart(8)} us   (${us[0].toFixed(2)}-${us[ROUNDS - 1].toFixed(2)})`);
}

const s = await startScriptHost(readFileSync(ALL_HOOKS, 'latin1'));
try {
  const script = s.host.smtpsvr!.current!;
  const facts = sessionFacts('127.0.0.1', 'client.test', 'a@source.bench.test');
  const session = (): ScriptHooks => s.host.hooksForScript(script, initialPolicy(s.config), facts, s.log)!;

  console.log(`script host costs (bench/all-hooks.lua), median of ${ROUNDS} rounds (min-max)`);
  median('kept state for a session, End, restored', 1000, () => session().end());
  const h = session();
  median('whole callback, nothing to sync (DoNOOP)', 20000, () => h.simple('NOOP'));
  median('whole callback with arguments (DoRCPTTO)', 20000, () => h.rcptTo('<user@bench.test>', 'user@bench.test', {}, ['user@bench.test']));
  const block = Buffer.from(Array.from({ length: 80 }, (_, i) => `line ${i} of the message body, text enough to look like mail ...........\r\n`).join(''));
  median('line callbacks, per line (batch of 80)', 2000, () => h.messageLines([block], 80, []), 80);
  h.end();
  // A connection's worth, with 20 sessions open at once as in the benchmark: their states
  // share the heap and the caches.
  const open: ScriptHooks[] = [];
  median('a connection: state, NOOP, RCPT, 80 lines, End', 2000, () => {
    const c = session();
    c.simple('NOOP');
    c.rcptTo('<user@bench.test>', 'user@bench.test', {}, ['user@bench.test']);
    c.messageLines([block], 80, []);
    open.push(c);
    if (open.length > 20) open.shift()!.end();
  });
  for (const c of open) c.end();
} finally {
  s.close();
}
