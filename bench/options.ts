/** Benchmark options from environment variables and command-line flags (flags win). */

export interface Scenario {
  id: string;
  label: string;
  messages: number;
  sessions: number;
  bytes: number;
  reuse: boolean;
}

export interface Options {
  scale: number;
  reps: number;
  only: Set<string> | null;
  postfix: boolean;
  warmup: boolean;
  keep: boolean;
}

const BASE: Scenario[] = [
  { id: 'a', label: '5 KB, 20 conns, new conn/msg', messages: 10_000, sessions: 20, bytes: 5120, reuse: false },
  { id: 'b', label: '5 KB, 20 conns, reused', messages: 10_000, sessions: 20, bytes: 5120, reuse: true },
  { id: 'c', label: '1 MB, 20 conns, new conn/msg', messages: 1_000, sessions: 20, bytes: 1_048_576, reuse: false },
];

/**
 * Scenarios outside the Postfix comparison: d = SMTPSVR.LUA throughput, e = memory per idle connection,
 * f = 1 MB messages with attachments and ProcessMessage, g = relaying a queue to smtp-sink (vs Postfix).
 */
export const EXTRA_IDS = ['d', 'e', 'f', 'g'] as const;

/** Messages per run of scenario d (scaled like the others). */
export const SCRIPT_MESSAGES = 10_000;
/** Idle connections held in scenario e (not scaled: the issue fixes 2,000). */
export const IDLE_CONNECTIONS = 2_000;

function flag(argv: string[], name: string): string | undefined {
  const i = argv.indexOf(`--${name}`);
  if (i >= 0) return argv[i + 1] ?? '';
  const eq = argv.find((a) => a.startsWith(`--${name}=`));
  return eq?.slice(name.length + 3);
}

function bool(v: string | undefined): boolean {
  return v !== undefined && v !== '' && v !== '0' && v.toLowerCase() !== 'false';
}

function num(v: string | undefined, dflt: number, min: number, max: number, what: string): number {
  if (v === undefined || v === '') return dflt;
  const n = Number(v);
  if (!Number.isFinite(n) || n < min || n > max) throw new Error(`${what} must be a number in [${min}, ${max}], got "${v}"`);
  return n;
}

export function parseOptions(argv: string[], env: NodeJS.ProcessEnv): Options {
  const get = (f: string, e: string): string | undefined => flag(argv, f) ?? env[e];
  const only = get('only', 'BENCH_ONLY');
  const ids = only ? only.split(',').map((s) => s.trim().toLowerCase()) : null;
  const known = [...BASE.map((s) => s.id), ...EXTRA_IDS] as string[];
  const bad = ids?.filter((id) => !known.includes(id)) ?? [];
  if (bad.length > 0) throw new Error(`unknown scenario(s) ${bad.join(', ')}; known: ${known.join(', ')}`);
  return {
    scale: num(get('scale', 'BENCH_SCALE'), 1, 0.001, 10, 'scale'),
    reps: Math.round(num(get('reps', 'BENCH_REPS'), 3, 1, 9, 'reps')),
    only: ids ? new Set(ids) : null,
    postfix: !bool(argv.includes('--no-postfix') ? '1' : env.BENCH_NO_POSTFIX),
    warmup: !bool(argv.includes('--no-warmup') ? '1' : env.BENCH_NO_WARMUP),
    keep: bool(argv.includes('--keep') ? '1' : env.BENCH_KEEP),
  };
}

/** Is scenario `id` (any of a..g) selected? */
export function wants(opts: Options, id: string): boolean {
  return opts.only === null || opts.only.has(id);
}

/** A message count scaled by --scale, never fewer than `min`. */
export function scaled(opts: Options, messages: number, min: number): number {
  return Math.max(min, Math.round(messages * opts.scale));
}

/** The scenarios to run, message counts scaled (never fewer than the session count). */
export function scenarios(opts: Options): Scenario[] {
  return BASE.filter((s) => wants(opts, s.id)).map((s) => ({ ...s, messages: scaled(opts, s.messages, s.sessions) }));
}
