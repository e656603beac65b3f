/**
 * Open-file limits for the idle-connections measurement. Node cannot change its own RLIMIT_NOFILE,
 * and a 1024 soft limit (a common default) is too low for 2,000 sockets, so processes that hold
 * many sockets are started through `sh -c 'ulimit -n N; exec ...'`: the soft limit is raised up to
 * the hard limit (no privilege needed), and `exec` keeps the pid, so the spawned pid is the real one.
 */
import { readFileSync } from 'node:fs';

/** The command and arguments that run `cmd args` with the soft open-files limit raised to `want` (or the hard limit). */
export function withFdLimit(cmd: string, args: string[], want: number): [string, string[]] {
  const n = Math.floor(want);
  const script =
    `cur=$(ulimit -n); ` +
    `if [ "$cur" != unlimited ] && [ "$cur" -lt ${n} ]; then ulimit -n ${n} 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null; fi; ` +
    `exec "$0" "$@"`;
  return ['/bin/sh', ['-c', script, cmd, ...args]];
}

/** The soft "Max open files" of a process from /proc/PID/limits (Infinity for unlimited), or null. */
export function fdSoftLimit(pid: number | 'self'): number | null {
  try {
    const m = /^Max open files\s+(\S+)/m.exec(readFileSync(`/proc/${pid}/limits`, 'utf8'));
    if (!m) return null;
    return m[1] === 'unlimited' ? Infinity : Number(m[1]);
  } catch {
    return null;
  }
}
