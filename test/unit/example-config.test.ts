import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadConfig } from '../../src/config/load.js';
import { configSchema } from '../../src/config/schema.js';
import { readFileSync } from 'node:fs';
import { parse } from 'yaml';

test('moonpost.example.yaml is valid and names every configuration key', () => {
  const config = loadConfig('moonpost.example.yaml');
  assert.equal(config.services.length, 2);
  const raw = parse(readFileSync('moonpost.example.yaml', 'utf8')) as Record<string, unknown>;
  const top = Object.keys(configSchema.shape).sort();
  assert.deepEqual(Object.keys(raw).sort(), top);
  const limits = raw.limits as Record<string, unknown>;
  assert.deepEqual(Object.keys(limits).sort(), Object.keys(configSchema.shape.limits.unwrap().shape).sort());
});
