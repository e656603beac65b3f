/**
 * rewriteHeader (ProcessMessage's HeaderModifiers on the stored file, in place) against an
 * in-memory reference: headers of every size around its first read (64 KiB) and its limit
 * (1 MiB), headers that grow, shrink or keep their length, the blank line cut by a read,
 * header-only files, bodies of megabytes, concurrent rewrites sharing the copy buffers.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, writeFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import fc from 'fast-check';
import { applyModifiers, rewriteHeader } from '../../src/queue/header-rewrite.js';
import { prng, withTempDir } from '../helpers/test-util.js';
import { params } from './fuzz-common.js';

const MAX_HEADER = 1024 * 1024;

/** What the rewritten file must hold: the header is up to the first CRLF CRLF within 1 MiB after `keep`. */
function reference(file: Buffer, modifiers: string[], keep: number): Buffer {
  const head = file.subarray(keep, keep + MAX_HEADER);
  const end = head.indexOf('\r\n\r\n');
  const bodyStart = end < 0 ? keep + head.length : keep + end + 2;
  const header = end < 0 ? head : head.subarray(0, end + 2);
  const asBytes = modifiers.map((m) => Buffer.from(m, 'utf8').toString('latin1'));
  const edited = Buffer.from(applyModifiers(header.toString('latin1'), asBytes), 'latin1');
  return Buffer.concat([file.subarray(0, keep), edited, file.subarray(bodyStart)]);
}

function message(seed: number, headerBytes: number, bodyBytes: number, blank: boolean): { file: Buffer; keep: number } {
  const rand = prng(seed);
  const returnPath = 'Return-Path: <a@example.com>\r\n';
  const fields: string[] = ['Subject: hello', 'X-Bench-Structure: old'];
  let size = 0;
  while (size < headerBytes) {
    const f = `X-F${fields.length}: ${'v'.repeat(Math.floor(rand() * 900))}${rand() < 0.2 ? '\r\n\tfolded' : ''}`;
    fields.push(f);
    size += f.length + 2;
  }
  const body = Buffer.alloc(bodyBytes);
  for (let i = 0; i < body.length; i++) body[i] = rand() < 0.02 ? 10 : 32 + Math.floor(rand() * 90);
  const file = Buffer.concat([Buffer.from(returnPath + fields.map((f) => `${f}\r\n`).join('') + (blank ? '\r\n' : ''), 'latin1'), blank ? body : Buffer.alloc(0)]);
  return { file, keep: Buffer.byteLength(returnPath) };
}

const MODIFIERS = ['X-Bench-Structure: ok', 'Subject:', 'X-New: é ünï'];

const withDir = (fn: (dir: string) => Promise<void>): Promise<void> => withTempDir('rewrite', fn);

test('rewriteHeader: the same file as the reference, around the read sizes', async () => {
  await withDir(async (dir) => {
    const path = join(dir, 'msg');
    await fc.assert(
      fc.asyncProperty(
        fc.integer(),
        fc.oneof(fc.integer({ min: 0, max: 2000 }), fc.integer({ min: 60 * 1024, max: 70 * 1024 }), fc.integer({ min: MAX_HEADER - 4000, max: MAX_HEADER + 4000 })),
        fc.oneof(fc.integer({ min: 0, max: 5000 }), fc.integer({ min: 1_000_000, max: 2_500_000 })),
        fc.boolean(),
        fc.boolean(),
        // The header grows, shrinks (the body moves the other way, the file is cut) or keeps its length.
        fc.constantFrom(MODIFIERS, ['Subject:', 'X-Bench-Structure:'], ['X-Bench-Structure: new'], ['X-Long: ' + 'l'.repeat(3000)]),
        async (seed, headerBytes, bodyBytes, blank, sync, modifiers) => {
          const { file, keep } = message(seed, headerBytes, bodyBytes, blank);
          await writeFile(path, file);
          await rewriteHeader(path, modifiers, keep, sync);
          const got = await readFile(path);
          assert.ok(got.equals(reference(file, modifiers, keep)), `header ${headerBytes}, body ${bodyBytes}, blank ${blank}, ${modifiers[0]}`);
        },
      ),
      params(40),
    );
    assert.deepEqual(await readdir(dir), ['msg'], 'no temporary file left');
  });
});

test('rewriteHeader: the blank line cut by the first read, at every place', async () => {
  await withDir(async (dir) => {
    const path = join(dir, 'msg');
    const keep = 10;
    for (let shift = -6; shift <= 6; shift++) {
      // The blank line's CRLF CRLF ends `shift` bytes around the end of the first 64 KiB read.
      const fill = 64 * 1024 + keep - 4 + shift - keep - 'X-Pad: '.length - 2;
      const file = Buffer.from(`${'R'.repeat(keep - 2)}\r\nX-Pad: ${'p'.repeat(fill)}\r\n\r\nbody\r\n`, 'latin1');
      await writeFile(path, file);
      await rewriteHeader(path, ['X-Pad: short'], keep, false);
      assert.ok((await readFile(path)).equals(reference(file, ['X-Pad: short'], keep)), `shift ${shift}`);
      assert.equal((await readFile(path)).toString('latin1'), `${'R'.repeat(keep - 2)}\r\nX-Pad: short\r\n\r\nbody\r\n`);
    }
  });
});

test('rewriteHeader: concurrent rewrites each get their own file right', async () => {
  await withDir(async (dir) => {
    const jobs = Array.from({ length: 8 }, (_, i) => ({ path: join(dir, `m${i}`), ...message(i, 500 + i * 9000, 300_000 + i * 50_000, true) }));
    for (const j of jobs) await writeFile(j.path, j.file);
    await Promise.all(jobs.map((j, i) => rewriteHeader(j.path, [`X-Job: ${i}`], j.keep, false)));
    for (const [i, j] of jobs.entries()) assert.ok((await readFile(j.path)).equals(reference(j.file, [`X-Job: ${i}`], j.keep)), `job ${i}`);
  });
});

test('rewriteHeader: a missing file is an error and leaves nothing behind', async () => {
  await withDir(async (dir) => {
    await assert.rejects(rewriteHeader(join(dir, 'gone'), MODIFIERS, 5, false), /ENOENT/);
    assert.deepEqual(await readdir(dir), []);
  });
});
