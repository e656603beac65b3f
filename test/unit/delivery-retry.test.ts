import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  DEFAULT_RETRY_SCHEDULE,
  delayWarningDue,
  giveUpAt,
  nextAttempt,
  retryInterval,
  retryScheduleSchema,
  shouldGiveUp,
  type RetrySchedule,
} from '../../src/delivery/retry.js';

const MIN = 60_000;
const HOUR = 60 * MIN;
const DAY = 24 * HOUR;
const t0 = Date.UTC(2026, 0, 1);

test('defaults: 5 minutes doubling to 4 hours, give up after 4 days, warn after 4 hours', () => {
  assert.deepEqual(DEFAULT_RETRY_SCHEDULE, {
    firstRetry: 300,
    multiplier: 2,
    maxInterval: 14400,
    giveUpAfter: 345600,
    delayWarningAfter: 14400,
    jitter: 0,
  });
  assert.deepEqual(
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 50, 5000].map((n) => retryInterval(n)),
    [0, 300, 600, 1200, 2400, 4800, 9600, 14400, 14400, 14400, 14400],
  );
});

test('nextAttempt: now before any attempt, then now + backoff, never past the give-up time', () => {
  assert.equal(nextAttempt(t0, 0, t0), t0);
  assert.equal(nextAttempt(t0, 1, t0 + 1000), t0 + 1000 + 5 * MIN);
  assert.equal(nextAttempt(new Date(t0), 3, new Date(t0 + HOUR)), t0 + HOUR + 20 * MIN);
  assert.equal(nextAttempt(t0, 30, t0 + DAY), t0 + DAY + 4 * HOUR);
  // Close to the deadline: the last attempt is made right at it.
  assert.equal(nextAttempt(t0, 30, t0 + 4 * DAY - HOUR), t0 + 4 * DAY);
  // Past it: nothing later than now; shouldGiveUp says so.
  assert.equal(nextAttempt(t0, 30, t0 + 5 * DAY), t0 + 5 * DAY);
});

test('a whole schedule: attempts until the give-up time, then given up', () => {
  let now = t0;
  let attempts = 0;
  const times: number[] = [];
  while (!shouldGiveUp(t0, now)) {
    attempts++; // an attempt at `now` failed
    times.push(now);
    now = nextAttempt(t0, attempts, now);
  }
  assert.equal(now, giveUpAt(t0));
  assert.equal(times[1] - times[0], 5 * MIN);
  assert.equal(times[2] - times[1], 10 * MIN);
  assert.ok(attempts > 20 && attempts < 40, `attempts ${attempts}`);
  assert.ok(times.every((t, i) => i === 0 || t - times[i - 1] <= 4 * HOUR));
});

test('shouldGiveUp and delayWarningDue', () => {
  assert.equal(shouldGiveUp(t0, t0 + 4 * DAY - 1), false);
  assert.equal(shouldGiveUp(t0, t0 + 4 * DAY), true);
  assert.equal(delayWarningDue(t0, t0 + 4 * HOUR - 1, false), false);
  assert.equal(delayWarningDue(t0, t0 + 4 * HOUR, false), true);
  assert.equal(delayWarningDue(t0, t0 + 5 * HOUR, true), false, 'only once');
  assert.equal(delayWarningDue(t0, t0 + 4 * DAY, false), false, 'the failure report says it all');
  const never: RetrySchedule = { ...DEFAULT_RETRY_SCHEDULE, delayWarningAfter: 0 };
  assert.equal(delayWarningDue(t0, t0 + DAY, false, never), false);
});

test('configuration: numbers or durations, defaults, errors', () => {
  const s = retryScheduleSchema.parse({ firstRetry: '1m', maxInterval: '1h30m', giveUpAfter: '2d', delayWarningAfter: 0, multiplier: 3 });
  assert.deepEqual(s, { firstRetry: 60, multiplier: 3, maxInterval: 5400, giveUpAfter: 172800, delayWarningAfter: 0, jitter: 0 });
  assert.equal(retryInterval(3, s), 540);
  assert.equal(retryInterval(4, s), 1620);
  assert.equal(retryInterval(5, s), 4860);
  assert.equal(retryInterval(6, s), 5400);
  assert.equal(nextAttempt(t0, 1, t0, s), t0 + MIN);
  assert.equal(retryScheduleSchema.parse({ giveUpAfter: 600 }).giveUpAfter, 600);
  for (const bad of [{ firstRetry: 0 }, { firstRetry: '5 minutes' }, { multiplier: 0.5 }, { extra: 1 }, { firstRetry: '2h', maxInterval: '1h' }, { jitter: 2 }]) {
    assert.equal(retryScheduleSchema.safeParse(bad).success, false, JSON.stringify(bad));
  }
});

test('jitter spreads a wait within its fraction', () => {
  const s: RetrySchedule = { ...DEFAULT_RETRY_SCHEDULE, jitter: 0.1 };
  assert.equal(retryInterval(1, s, () => 0), 270);
  assert.equal(retryInterval(1, s, () => 0.5), 300);
  assert.ok(Math.abs(retryInterval(1, s, () => 0.999999) - 330) < 0.01);
  assert.equal(nextAttempt(t0, 1, t0, s, () => 0), t0 + 270_000);
});
