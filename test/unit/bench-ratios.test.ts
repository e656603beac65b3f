import { test } from 'node:test';
import assert from 'node:assert/strict';
import { medianRate, pairedRatio, type Trial } from '../../bench/peers.js';

const trial = (server: Trial['server'], rate: number | null): Trial => ({ server, scenario: 'a', rate, samples: [], peakRssMb: null, peakPssMb: null, cpuMsPerMsg: null, sysShare: null, problem: rate === null ? 'failed' : null });

test('pairedRatio compares the two runs of each repetition, then takes the median', () => {
  // The machine doubles its speed in the third repetition: every pair says 0.7, while the
  // ratio of the medians (700 / 1200) says 0.58.
  const trials = [trial('moonpost-1', 1000), trial('moonpost-1-hooks', 700), trial('moonpost-1', 1200), trial('moonpost-1-hooks', 840), trial('moonpost-1', 2400), trial('moonpost-1-hooks', 1680)];
  assert.equal(pairedRatio(trials, 'moonpost-1-hooks', 'moonpost-1', 'a'), 0.7);
  assert.equal((medianRate(trials, 'moonpost-1-hooks', 'a') ?? 0) / (medianRate(trials, 'moonpost-1', 'a') ?? 1), 840 / 1200);
});

test('pairedRatio skips a repetition where either run failed, and has no answer without a pair', () => {
  const trials = [trial('postfix', 100), trial('moonpost-2-hooks', 150), trial('postfix', null), trial('moonpost-2-hooks', 10), trial('postfix', 100), trial('moonpost-2-hooks', 170)];
  assert.equal(pairedRatio(trials, 'moonpost-2-hooks', 'postfix', 'a'), 1.6);
  assert.equal(pairedRatio(trials, 'moonpost-2-hooks', 'haraka-2', 'a'), null);
  assert.equal(pairedRatio(trials, 'moonpost-2-hooks', 'postfix', 'b'), null);
});
