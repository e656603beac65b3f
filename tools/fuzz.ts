/**
 * `npm run fuzz`: a long run of every fuzzer (test/unit/fuzz-*.test.ts), the same properties
 * CI runs, with FUZZ_RUNS times as many cases. Prints the cases each file ran and the total;
 * exits non-zero when a property fails (fast-check prints the seed and the shrunk
 * counterexample: keep it as a regression case in the property's `examples`).
 *
 *   npm run fuzz                      # FUZZ_RUNS=20 (about 10 million cases)
 *   npm run fuzz -- --runs 5          # a shorter run
 *   npm run fuzz -- --seed 42         # replay a seed
 *   npm run fuzz -- --only session    # only fuzz-session.test.ts
 */
import { spawn } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: process.env.FUZZ_RUNS ?? '20' },
    seed: { type: 'string' },
    only: { type: 'string' },
    concurrency: { type: 'string', default: '2' },
  },
});

const scale = Number(values.runs);
if (!(scale > 0)) throw new Error(`--runs must be a positive factor, got ${values.runs}`);
const files = (await readdir('test/unit'))
  .filter((f) => /^fuzz-.*\.test\.ts$/.test(f) && (!values.only || f.includes(values.only)))
  .sort()
  .map((f) => join('test/unit', f));
if (!files.length) throw new Error(`no fuzz test file matches ${values.only}`);

const dir = await mkdtemp(join(tmpdir(), 'moonpost-fuzz-'));
const report = join(dir, 'report.jsonl');
const t0 = Date.now();
console.log(`fuzz: ${files.length} files, FUZZ_RUNS=${scale}${values.seed ? `, FUZZ_SEED=${values.seed}` : ''}`);
const code = await new Promise<number>((resolve) => {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', '--test', `--test-concurrency=${values.concurrency}`, '--test-reporter=dot', '--test-timeout=0', ...files],
    {
      stdio: 'inherit',
      env: { ...process.env, FUZZ_RUNS: String(scale), FUZZ_REPORT: report, ...(values.seed ? { FUZZ_SEED: values.seed } : {}) },
    },
  );
  child.on('close', (c, signal) => resolve(c ?? (signal ? 1 : 0)));
});
const seconds = (Date.now() - t0) / 1000;

interface FileTally {
  file: string;
  properties: number;
  cases: number;
  failed: number;
}
const lines = (await readFile(report, 'utf8').catch(() => '')).split('\n').filter(Boolean);
const rows = lines.map((l) => JSON.parse(l) as FileTally).sort((a, b) => a.file.localeCompare(b.file));
await rm(dir, { recursive: true, force: true });

const pad = (s: string | number, n: number): string => String(s).padStart(n);
console.log(`\n${'file'.padEnd(28)}${pad('properties', 12)}${pad('cases', 12)}${pad('failed', 8)}`);
for (const r of rows) console.log(`${r.file.padEnd(28)}${pad(r.properties, 12)}${pad(r.cases.toLocaleString('en'), 12)}${pad(r.failed, 8)}`);
const total = rows.reduce((a, r) => ({ properties: a.properties + r.properties, cases: a.cases + r.cases, failed: a.failed + r.failed }), { properties: 0, cases: 0, failed: 0 });
console.log(`${'total'.padEnd(28)}${pad(total.properties, 12)}${pad(total.cases.toLocaleString('en'), 12)}${pad(total.failed, 8)}`);
console.log(`\n${total.cases.toLocaleString('en')} cases in ${seconds.toFixed(0)} s (${Math.round(total.cases / seconds).toLocaleString('en')}/s), exit ${code}`);
if (rows.length < files.length) console.log(`only ${rows.length} of ${files.length} files reported: one did not finish`);
process.exit(code !== 0 || rows.length < files.length || total.failed ? 1 : 0);
