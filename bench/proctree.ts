/**
 * Memory of a process tree (a server and the processes it forked: moonpost's workers, Haraka's
 * cluster, Postfix's master with its smtpd/cleanup/qmgr children), sampled from /proc.
 * RSS is summed over the processes (shared pages such as libraries and Node's code counted once per
 * process, as `ps` would); PSS (proportional set size) splits shared pages among their sharers, so its
 * sum is what the tree really occupies. For a lone process the kernel's own peak (VmHWM, reset at the
 * start of a window) is taken into account too, so a spike between two samples is not missed.
 */
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';

/** Children of a process (all its threads), from /proc/PID/task/TID/children. */
function children(pid: number): number[] {
  let tids: string[];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return [];
  }
  const out: number[] = [];
  for (const tid of tids) {
    try {
      for (const c of readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').split(' ')) if (c.trim()) out.push(Number(c));
    } catch {
      /* the thread ended */
    }
  }
  return out;
}

/** The pids of `root` and all its descendants (bounded to 5,000). */
export function treePids(root: number): number[] {
  const seen = new Set<number>();
  const todo = [root];
  while (todo.length > 0 && seen.size < 5_000) {
    const p = todo.pop() as number;
    if (seen.has(p)) continue;
    seen.add(p);
    todo.push(...children(p));
  }
  return [...seen];
}

/** Rss and Pss of one process in kB from /proc/PID/smaps_rollup, or null once it is gone. */
function memKb(pid: number): { rss: number; pss: number } | null {
  try {
    const t = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
    const rss = /^Rss:\s+(\d+) kB/m.exec(t);
    const pss = /^Pss:\s+(\d+) kB/m.exec(t);
    return rss && pss ? { rss: Number(rss[1]), pss: Number(pss[1]) } : null;
  } catch {
    return null;
  }
}

function hwmKb(pid: number): number | null {
  try {
    const m = /^VmHWM:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

export interface TreeMem {
  /** Sum of RSS over the tree, MB. */
  rssMb: number;
  /** Sum of PSS over the tree, MB. */
  pssMb: number;
  processes: number;
}

/** Current memory of the trees rooted at `roots` (several roots for servers with several top processes). */
export function treeMem(roots: number[]): TreeMem {
  let rss = 0;
  let pss = 0;
  let n = 0;
  for (const r of roots) {
    for (const p of treePids(r)) {
      const m = memKb(p);
      if (!m) continue;
      rss += m.rss;
      pss += m.pss;
      n++;
    }
  }
  return { rssMb: rss / 1024, pssMb: pss / 1024, processes: n };
}

export interface TreeWindow {
  /** Stops sampling; the peaks seen (null if nothing was readable). */
  end(): { peakRssMb: number | null; peakPssMb: number | null; maxProcesses: number };
}

/** Samples the trees every `intervalMs` until end(). */
export function startTreeWindow(roots: () => number[], intervalMs = 250): TreeWindow {
  let peakRss = 0;
  let peakPss = 0;
  let maxProcs = 0;
  const lone = roots();
  // Reset the kernel's peak for the root processes so VmHWM is this window's own.
  for (const p of lone) {
    try {
      writeFileSync(`/proc/${p}/clear_refs`, '5');
    } catch {
      /* not allowed: VmHWM stays lifetime, only used when no sample exceeds it anyway */
    }
  }
  const sample = (): void => {
    const m = treeMem(roots());
    peakRss = Math.max(peakRss, m.rssMb);
    peakPss = Math.max(peakPss, m.pssMb);
    maxProcs = Math.max(maxProcs, m.processes);
  };
  sample();
  const timer = setInterval(sample, intervalMs);
  timer.unref();
  return {
    end() {
      clearInterval(timer);
      sample();
      const rs = roots();
      if (maxProcs === 1 && rs.length === 1) {
        const h = hwmKb(rs[0]);
        if (h !== null) peakRss = Math.max(peakRss, h / 1024);
      }
      return { peakRssMb: peakRss > 0 ? peakRss : null, peakPssMb: peakPss > 0 ? peakPss : null, maxProcesses: maxProcs };
    },
  };
}

/** Linux reports times in /proc/PID/stat in USER_HZ ticks, 100 per second on every architecture Node runs on. */
const TICK_MS = 10;

export interface TreeCpu {
  userMs: number;
  sysMs: number;
}

/**
 * CPU time the trees at `roots` have used so far (all threads of each process). A process's
 * reaped children are in its cutime/cstime, so the difference of two readings also counts the
 * processes that ended between them (Postfix's smtpd and cleanup come and go).
 */
export function treeCpu(roots: number[]): TreeCpu {
  let user = 0;
  let sys = 0;
  for (const r of roots) {
    for (const p of treePids(r)) {
      try {
        const stat = readFileSync(`/proc/${p}/stat`, 'utf8');
        // Fields from the 3rd (state) on; the command name before them may hold spaces.
        const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
        user += Number(f[11]) + Number(f[13]);
        sys += Number(f[12]) + Number(f[14]);
      } catch {
        /* the process ended */
      }
    }
  }
  return { userMs: user * TICK_MS, sysMs: sys * TICK_MS };
}
