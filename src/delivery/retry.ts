import { z } from 'zod';

/**
 * The retry schedule of outbound delivery (R4): after a temporary failure (4xx, network
 * error, timeout) the next attempt waits `firstRetry`, then `multiplier` times longer after
 * each further failure, never longer than `maxInterval`; after `giveUpAfter` from queueing
 * the recipient is given up (a "failed" DSN), and once after `delayWarningAfter` the return
 * path gets a "delayed" DSN. All durations are seconds.
 */
export interface RetrySchedule {
  firstRetry: number;
  multiplier: number;
  maxInterval: number;
  giveUpAfter: number;
  /** 0 = never warn. */
  delayWarningAfter: number;
  /** Each wait is stretched or shrunk by up to this fraction at random (0 = exact). */
  jitter: number;
}

const UNIT_SECONDS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400 };

/** Seconds as a number, or a string such as `90s`, `5m`, `4h`, `4d` (also `1h30m`). */
export const duration = z.union([
  z.number().min(0),
  z
    .string()
    .regex(/^\s*(\d+(\.\d+)?\s*[smhd]\s*)+$/i, 'expected seconds or a duration such as 5m, 4h, 4d')
    .transform((s) => {
      let total = 0;
      for (const m of s.matchAll(/(\d+(?:\.\d+)?)\s*([smhd])/gi)) total += Number(m[1]) * UNIT_SECONDS[m[2].toLowerCase()];
      return total;
    }),
]);

const positiveDuration = duration.refine((n) => n > 0, { message: 'expected a duration above 0' });

/**
 * Configuration shape of a retry schedule (for a sender's `retry:` key, R1). Every key has a
 * default, so `retryScheduleSchema.parse({})` is the default schedule.
 */
export const retryScheduleSchema = z
  .strictObject({
    /** Wait after the first failed attempt. */
    firstRetry: positiveDuration.default(300),
    /** Each further wait is this many times the previous one. */
    multiplier: z.number().min(1).max(100).default(2),
    /** Longest wait between two attempts. */
    maxInterval: positiveDuration.default(4 * 3600),
    /** Time after queueing when a recipient still not delivered is bounced. */
    giveUpAfter: positiveDuration.default(4 * 86400),
    /** Time after queueing when the return path is told once that delivery is delayed; 0 = never. */
    delayWarningAfter: duration.default(4 * 3600),
    /** Random spread of each wait, as a fraction of it (0.1 = ±10%), so retries do not bunch. */
    jitter: z.number().min(0).max(0.5).default(0),
  })
  .refine((s) => s.maxInterval >= s.firstRetry, { message: 'maxInterval must not be below firstRetry', path: ['maxInterval'] });

export type RetryScheduleInput = z.input<typeof retryScheduleSchema>;

export const DEFAULT_RETRY_SCHEDULE: RetrySchedule = Object.freeze(retryScheduleSchema.parse({}));

type Time = Date | number;
const ms = (t: Time): number => (typeof t === 'number' ? t : t.getTime());

/** Seconds to wait after the `attempts`-th failed attempt (0 before any attempt). */
export function retryInterval(attempts: number, schedule: RetrySchedule = DEFAULT_RETRY_SCHEDULE, random: () => number = Math.random): number {
  if (attempts <= 0) return 0;
  // Capped before it can overflow: multiplier^(n) beyond the cap changes nothing.
  let wait = schedule.firstRetry;
  for (let i = 1; i < attempts && wait < schedule.maxInterval; i++) wait *= schedule.multiplier;
  wait = Math.min(wait, schedule.maxInterval);
  if (schedule.jitter > 0) wait *= 1 + schedule.jitter * (2 * random() - 1);
  return wait;
}

/** When the recipient is given up: queueing time plus `giveUpAfter` (epoch ms). */
export function giveUpAt(firstQueuedAt: Time, schedule: RetrySchedule = DEFAULT_RETRY_SCHEDULE): number {
  return ms(firstQueuedAt) + schedule.giveUpAfter * 1000;
}

/**
 * Epoch ms of the next attempt after `attempts` failed ones, the last of them at `now`:
 * `now` itself before any attempt, else `now` plus the backoff interval, but never later
 * than the give-up time, so that the last attempt is made right at it. A result at or
 * before `now` with `attempts > 0` only happens once `shouldGiveUp` is true.
 */
export function nextAttempt(
  firstQueuedAt: Time,
  attempts: number,
  now: Time,
  schedule: RetrySchedule = DEFAULT_RETRY_SCHEDULE,
  random: () => number = Math.random,
): number {
  const t = ms(now);
  if (attempts <= 0) return t;
  const next = t + Math.round(retryInterval(attempts, schedule, random) * 1000);
  return Math.max(t, Math.min(next, giveUpAt(firstQueuedAt, schedule)));
}

/** True once the message has been queued for `giveUpAfter` or longer: bounce what is left. */
export function shouldGiveUp(firstQueuedAt: Time, now: Time, schedule: RetrySchedule = DEFAULT_RETRY_SCHEDULE): boolean {
  return ms(now) >= giveUpAt(firstQueuedAt, schedule);
}

/**
 * True when the "delayed" DSN is due: warnings are on, the message has waited
 * `delayWarningAfter`, none was sent yet, and it is not being given up anyway (then the
 * "failed" DSN says it all).
 */
export function delayWarningDue(
  firstQueuedAt: Time,
  now: Time,
  alreadyWarned: boolean,
  schedule: RetrySchedule = DEFAULT_RETRY_SCHEDULE,
): boolean {
  if (alreadyWarned || schedule.delayWarningAfter <= 0) return false;
  if (shouldGiveUp(firstQueuedAt, now, schedule)) return false;
  return ms(now) - ms(firstQueuedAt) >= schedule.delayWarningAfter * 1000;
}
