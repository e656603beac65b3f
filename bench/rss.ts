/**
 * Memory of a process from /proc/PID/status: VmRSS sampled periodically, VmHWM (the kernel's peak).
 * Each window resets the kernel peak with /proc/PID/clear_refs ("5") when allowed, so a window's peak
 * is its own; if the reset is refused, VmHWM is the peak since the process started.
 */
import { readFileSync, writeFileSync } from 'node:fs';

function statusKb(pid: number, field: 'VmRSS' | 'VmHWM'): number | null {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

/** The current VmRSS of a process in kB, or null. */
export function rssKb(pid: number): number | null {
  return statusKb(pid, 'VmRSS');
}

export interface RssWindow {
  /** Ends the window; the peak in MB (max of sampled VmRSS and VmHWM), or null if nothing was readable. */
  end(): { peakMb: number | null; hwmIsLifetime: boolean };
}

export function startRssWindow(pid: number, intervalMs = 200): RssWindow {
  let hwmIsLifetime = false;
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, '5');
  } catch {
    hwmIsLifetime = true;
  }
  let maxKb = statusKb(pid, 'VmRSS') ?? 0;
  const timer = setInterval(() => {
    maxKb = Math.max(maxKb, statusKb(pid, 'VmRSS') ?? 0);
  }, intervalMs);
  timer.unref();
  return {
    end() {
      clearInterval(timer);
      const hwm = statusKb(pid, 'VmHWM');
      const kb = Math.max(maxKb, hwm ?? 0, statusKb(pid, 'VmRSS') ?? 0);
      return { peakMb: kb > 0 ? kb / 1024 : null, hwmIsLifetime };
    },
  };
}

/** The current VmHWM of a process in MB, or null. */
export function hwmMb(pid: number): number | null {
  const kb = statusKb(pid, 'VmHWM');
  return kb === null ? null : kb / 1024;
}
