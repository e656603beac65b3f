import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseSenderRules, selects } from '../../src/delivery/sender-rules.js';

test('domain filter rules: wildcards, negation, size conditions', () => {
  const all = parseSenderRules([]);
  assert.ok(selects(all, 'a@anything.test', 10));
  const r = parseSenderRules(['*.example.com', 'example.com', '!spam.example.com', 'size<=50000']);
  assert.ok(selects(r, 'a@example.com', 100));
  assert.ok(selects(r, 'a@mail.EXAMPLE.com', 100));
  assert.ok(!selects(r, 'a@spam.example.com', 100), 'negated');
  assert.ok(!selects(r, 'a@example.org', 100), 'not included');
  assert.ok(!selects(r, 'a@example.com', 50001), 'size');
  const big = parseSenderRules(['size>50000']);
  assert.ok(selects(big, 'x@y.test', 50001));
  assert.ok(!selects(big, 'x@y.test', 50000));
  const q = parseSenderRules(['example.?om']);
  assert.ok(selects(q, 'a@example.com', 1) && !selects(q, 'a@example.coom', 1));
  assert.throws(() => parseSenderRules(['size=>3']), /bad domain filter rule "size=>3"/);
  assert.throws(() => parseSenderRules(['a b']), /bad domain filter rule/);
});
