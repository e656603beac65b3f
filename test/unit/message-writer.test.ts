import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, writeFile, access } from 'node:fs/promises';
import { join } from 'node:path';
import { MessageWriter } from '../../src/queue/message-writer.js';
import { after } from '../../src/util/file-ops.js';
import { withTempDir } from '../helpers/test-util.js';

const inTemp = (fn: (dir: string) => Promise<void>): Promise<void> => withTempDir('writer', fn);

test('message writer: the pieces given reach the file, in order, on finish', () =>
  inTemp(async (dir) => {
    const w = new MessageWriter(join(dir, 'm'));
    w.write([Buffer.from('Subject: a\r\n'), Buffer.from('\r\n')]);
    w.write([Buffer.from('body\r\n')]);
    await w.finish(true);
    assert.equal(await readFile(join(dir, 'm'), 'latin1'), 'Subject: a\r\n\r\nbody\r\n');
    assert.equal(w.bytes, 20);
  }));

test('message writer: abort removes the file it made', () =>
  inTemp(async (dir) => {
    const w = new MessageWriter(join(dir, 'm'));
    w.write([Buffer.from('partial')]);
    await w.flushed();
    await w.abort();
    await assert.rejects(access(join(dir, 'm')), { code: 'ENOENT' });
  }));

test('message writer: a name already taken fails the write and abort leaves that file alone', () =>
  inTemp(async (dir) => {
    const path = join(dir, 'm');
    await writeFile(path, 'someone else\n');
    const w = new MessageWriter(path);
    w.write([Buffer.from('ours')]);
    await assert.rejects(w.flushed(), { code: 'EEXIST' });
    await w.abort();
    assert.equal(await readFile(path, 'utf8'), 'someone else\n');
    const again = new MessageWriter(path);
    await assert.rejects(again.finish(true), { code: 'EEXIST' });
    await again.abort();
    assert.equal(await readFile(path, 'utf8'), 'someone else\n');
  }));

test('message writer: a small rest given while a large piece is still being written lands after it', () =>
  inTemp(async (dir) => {
    const w = new MessageWriter(join(dir, 'm'));
    const big = Buffer.alloc(300 * 1024, 'a');
    const rest = Buffer.from('the end\r\n');
    w.write([big]); // past the flush size: written through the thread pool
    w.write([rest]); // small: would be written at once if nothing were in flight
    await w.finish(false);
    const got = await readFile(join(dir, 'm'));
    assert.equal(got.length, big.length + rest.length);
    assert.equal(got.subarray(big.length).toString(), 'the end\r\n');
    assert.ok(got.subarray(0, big.length).every((b) => b === 0x61));
  }));

test('message writer: reading stops past 4 MB in flight and resumes on drain; every byte arrives in order', () =>
  inTemp(async (dir) => {
    const w = new MessageWriter(join(dir, 'm'));
    const pieces: Buffer[] = [];
    let paused = false;
    for (let i = 0; i < 90 && !paused; i++) {
      const piece = Buffer.alloc(64 * 1024, i);
      pieces.push(piece);
      paused = !w.write([piece]);
    }
    assert.ok(paused, 'write asks to pause once 4 MB wait');
    await new Promise<void>((resolve) => w.onDrain(resolve));
    await w.finish(true);
    assert.ok((await readFile(join(dir, 'm'))).equals(Buffer.concat(pieces)));
  }));

test('file ops: what is left after a partial write, within a buffer and across buffers', () => {
  const bufs = [Buffer.from('abc'), Buffer.from('de'), Buffer.from('fgh')];
  const text = (b: Buffer[]): string => Buffer.concat(b).toString();
  assert.equal(text(after(bufs, 0)), 'abcdefgh');
  assert.equal(text(after(bufs, 2)), 'cdefgh');
  assert.equal(text(after(bufs, 3)), 'defgh');
  assert.equal(text(after(bufs, 6)), 'gh');
  assert.deepEqual(after(bufs, 8), []);
  assert.equal(text(bufs), 'abcdefgh', 'the caller\'s buffers are left as they were');
});
