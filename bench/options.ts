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
  /** Servers of the peer table (a-c) to run, or null for all. */
  servers: Set<string> | null;
  postfix: boolean;
  haraka: boolean;
  warmup: boolean;
  keep: boolean;
  /** Write bench/RESULTS.md and the README's table: true, false, or null = only after a full default run. */
  write: boolean | null;
}

/** The servers of the peer table, in table order. */
export const SERVER_IDS = ['sink', 'postfix', 'haraka-1', 'haraka-2', 'haraka-2-maildir', 'moonpost-1', 'moonpost-1-hooks', 'moonpost-2', 'moonpost-2-hooks', 'moonpost-2-hooks-nofsync'] as const;
export type ServerId = (typeof SERVER_IDS)[number];

const BASE: Scenario[] = [
  { id: 'a', label: '5 KB, 20 conns, new conn/msg', messages: 10_000, sessions: 20, bytes: 5120, reuse: false },
  { id: 'b', label: '5 KB, 20 conns, reused', messages: 10_000, sessions: 20, bytes: 5120, reuse: true },
  { id: 'c', label: '1 MB, 20 conns, new conn/msg', messages: 1_000, sessions: 20, bytes: 1_048_576, reuse: false },
];

/**
 * Scenarios outside the peer table: d = SMTPSVR.LUA throughput (read from the table's moonpost rows
 * with and without the script; alone it runs a and b for those two), e = memory per idle connection
 * (2,000), f = 1 MB messages with attachments and ProcessMessage, g = relaying a queue to smtp-sink
 * (vs Postfix), h = 10,000 idle connections held at once.
 */
export const EXTRA_IDS = ['d', 'e', 'f', 'g', 'h'] as const;

/** Idle connections held in scenario e (not scaled: issue 3 fixes 2,000). */
export const IDLE_CONNECTIONS = 2_000;
/** Idle connections held at once in scenario h (not scaled: issue 8 fixes 10,000). */
export const MANY_IDLE_CONNECTIONS = 10_000;

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
  const srv = get('servers', 'BENCH_SERVERS');
  const sids = srv ? srv.split(',').map((s) => s.trim().toLowerCase()) : null;
  const badSrv = sids?.filter((id) => !(SERVER_IDS as readonly string[]).includes(id)) ?? [];
  if (badSrv.length > 0) throw new Error(`unknown server(s) ${badSrv.join(', ')}; known: ${SERVER_IDS.join(', ')}`);
  const w = get('write', 'BENCH_WRITE');
  return {
    scale: num(get('scale', 'BENCH_SCALE'), 1, 0.001, 10, 'scale'),
    reps: Math.round(num(get('reps', 'BENCH_REPS'), 3, 1, 9, 'reps')),
    only: ids ? new Set(ids) : null,
    servers: sids ? new Set(sids) : null,
    postfix: !bool(argv.includes('--no-postfix') ? '1' : env.BENCH_NO_POSTFIX),
    haraka: !bool(argv.includes('--no-haraka') ? '1' : env.BENCH_NO_HARAKA),
    warmup: !bool(argv.includes('--no-warmup') ? '1' : env.BENCH_NO_WARMUP),
    keep: bool(argv.includes('--keep') ? '1' : env.BENCH_KEEP),
    write: w === undefined || w === '' ? null : bool(w),
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

/** The peer-table scenarios to run, message counts scaled (never fewer than the session count); d needs a and b. */
export function scenarios(opts: Options): Scenario[] {
  const need = (id: string): boolean => wants(opts, id) || (wants(opts, 'd') && (id === 'a' || id === 'b'));
  return BASE.filter((s) => need(s.id)).map((s) => ({ ...s, messages: scaled(opts, s.messages, s.sessions) }));
}

/** The servers of the peer table: BENCH_SERVERS, else all (only moonpost with and without the script when just d asks). */
export function servers(opts: Options): ServerId[] {
  const onlyD = opts.only !== null && !['a', 'b', 'c'].some((id) => opts.only?.has(id));
  let list: ServerId[] = opts.servers ? SERVER_IDS.filter((id) => opts.servers?.has(id)) : onlyD ? ['moonpost-1', 'moonpost-1-hooks'] : [...SERVER_IDS];
  if (!opts.postfix) list = list.filter((id) => id !== 'postfix');
  if (!opts.haraka) list = list.filter((id) => !id.startsWith('haraka'));
  return list;
}

/** A full default run: every scenario and server at scale 1 (its tables are the ones worth keeping). */
export function isFullRun(opts: Options): boolean {
  return opts.only === null && opts.servers === null && opts.scale === 1 && opts.postfix && opts.haraka;
}
