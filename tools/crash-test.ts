/**
 * `npm run crash-test`: the full-size crash-safety run. It runs test/e2e/crash-safety.test.ts
 * (the tests CI runs with 22 kills: one process, and `workers: 2` where half the kills take one
 * worker) with more kills, once or several times with fresh seeds, and prints acknowledged /
 * delivered / duplicated / lost per test and run, and in total. Exits non-zero
 * when a message that got its 250 was lost, or when the test failed for another reason
 * (undrained queue, damaged copies, no graceful stop...).
 *
 *   npm run crash-test                        # 1 run of 40 kills
 *   npm run crash-test -- --kills 100 --runs 3
 *   npm run crash-test -- --seed 12345        # repeat a run's kill schedule and load
 */
import { spawn } from 'node:child_process';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    kills: { type: 'string', default: process.env.MOONPOST_CRASH_KILLS ?? '40' },
    runs: { type: 'string', default: '1' },
    seed: { type: 'string', default: process.env.MOONPOST_CRASH_SEED },
  },
});
const kills = Number(values.kills);
const runs = Number(values.runs);
if (!(kills >= 20)) throw new Error(`--kills must be at least 20, got ${values.kills}`);
if (!(runs >= 1)) throw new Error(`--runs must be at least 1, got ${values.runs}`);

/** The test file's tests: one process, and `workers: 2` with half the kills of one worker. */
const TESTS_PER_RUN = 2;

interface Row {
  seed: string;
  mode: string;
  kills: number;
  attempted: number;
  acknowledged: number;
  delivered: number;
  duplicated: number;
  lost: number;
  passed: boolean;
  seconds: number;
}

/** One run of the test file; its output goes to our stdout as it comes. */
async function once(seed: number): Promise<Row[]> {
  const t0 = Date.now();
  let out = '';
  const code = await new Promise<number>((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', '--test', '--test-reporter=spec', 'test/e2e/crash-safety.test.ts'], {
      stdio: ['ignore', 'pipe', 'inherit'],
      env: { ...process.env, MOONPOST_CRASH_KILLS: String(kills), MOONPOST_CRASH_SEED: String(seed) },
    });
    child.stdout!.setEncoding('utf8');
    child.stdout!.on('data', (d: string) => {
      out += d;
      process.stdout.write(d);
    });
    child.on('close', (c, signal) => resolve(c ?? (signal ? 1 : 0)));
  });
  // One summary per test of the file: one process, then `workers: 2`.
  const re = /crash safety \(seed (\d+)\): (\d+) kills \(\+\d+ during recovery(?:, \+(\d+) of one worker; workers: (\d+))?\).*?attempted (\d+), acknowledged (\d+), delivered (\d+), duplicated (\d+)(?: \(local \d+\))?, lost (\d+)/g;
  const seconds = (Date.now() - t0) / 1000;
  const rows: Row[] = [...out.matchAll(re)].map((m) => ({
    seed: m[1],
    mode: m[4] ? `workers: ${m[4]}` : '1 process',
    kills: Number(m[2]) + Number(m[3] ?? 0),
    attempted: Number(m[5]),
    acknowledged: Number(m[6]),
    delivered: Number(m[7]),
    duplicated: Number(m[8]),
    lost: Number(m[9]),
    passed: code === 0,
    seconds,
  }));
  // A test that never printed its summary fails the run (NaN counts fail too).
  while (rows.length < TESTS_PER_RUN) rows.push({ seed: String(seed), mode: 'no summary', kills: NaN, attempted: NaN, acknowledged: NaN, delivered: NaN, duplicated: NaN, lost: NaN, passed: false, seconds });
  return rows;
}

const rows: Row[] = [];
let seed = values.seed !== undefined ? Number(values.seed) : Math.floor(Math.random() * 2 ** 31);
for (let i = 0; i < runs; i++) {
  console.log(`crash-test: run ${i + 1}/${runs}, ${kills} kills, seed ${seed}`);
  rows.push(...(await once(seed)));
  seed = (seed * 1103515245 + 12345) % 2 ** 31;
}

const cols: [string, (r: Row) => string | number][] = [
  ['seed', (r) => r.seed],
  ['mode', (r) => r.mode],
  ['kills', (r) => r.kills],
  ['attempted', (r) => r.attempted],
  ['acknowledged', (r) => r.acknowledged],
  ['delivered', (r) => r.delivered],
  ['duplicated', (r) => r.duplicated],
  ['lost', (r) => r.lost],
  ['seconds', (r) => r.seconds.toFixed(0)],
  ['result', (r) => (r.passed ? 'pass' : 'FAIL')],
];
const line = (cells: (string | number)[]): string => cells.map((c, i) => String(c).padStart(i <= 1 ? 12 : cols[i][0].length + 2)).join('');
console.log(`\n${line(cols.map((c) => c[0]))}`);
for (const r of rows) console.log(line(cols.map((c) => c[1](r))));
const sum = (f: (r: Row) => number): number => rows.reduce((a, r) => a + f(r), 0);
const total = { kills: sum((r) => r.kills), acknowledged: sum((r) => r.acknowledged), delivered: sum((r) => r.delivered), duplicated: sum((r) => r.duplicated), lost: sum((r) => r.lost) };
console.log(
  `\ntotal: ${total.kills} kills, acknowledged ${total.acknowledged}, delivered ${total.delivered}, duplicated ${total.duplicated}, lost ${total.lost}` +
    ` (${rows.filter((r) => r.passed).length}/${rows.length} tests passed)`,
);
// NaN (a run that never printed its summary) also fails.
process.exit(rows.every((r) => r.passed && r.lost === 0) ? 0 : 1);
