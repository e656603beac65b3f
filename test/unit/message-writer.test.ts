import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, writeFile, access } from 'node:fs/promises';
import { join } from 'node:path';
import { MessageWriter } from '../../src/queue/message-writer.js';
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
