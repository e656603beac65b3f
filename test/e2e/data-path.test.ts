import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, writeFile, mkdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startServer, type Harness } from '../helpers/harness.js';
import { openSession, sendMail, message } from '../helpers/smtp-client.js';

let h: Harness;
before(async () => {
  h = await startServer();
});
after(() => h.stop());

// Each variant tries to end DATA early and start a second transaction inside the first.
const SMUGGLING: [string, string][] = [
  ['LF.LF', '\n.\n'],
  ['LF.CRLF', '\n.\r\n'],
  ['CRLF.LF', '\r\n.\n'],
  ['CR.CR', '\r.\r'],
  ['CR.CRLF', '\r.\r\n'],
  ['CRLF.CR', '\r\n.\r'],
  ['CRLF NUL.CRLF', '\r\n\x00.\r\n'],
  ['CR LF.CR LF split by bare LF line', '\nbare\n.\r\n'],
];

for (const [name, seq] of SMUGGLING) {
  test(`SMTP smuggling variant ${name} does not end the message`, async () => {
    const box = `smuggle${SMUGGLING.findIndex((s) => s[0] === name)}`;
    const c = await openSession(h.port);
    await c.cmd('MAIL FROM:<a@example.com>');
    await c.cmd(`RCPT TO:<${box}@localhost>`);
    assert.equal((await c.cmd('DATA')).code, 354);
    c.write(
      `Subject: first\r\n\r\nbody${seq}MAIL FROM:<evil@example.com>\r\nRCPT TO:<victim@localhost>\r\nDATA\r\nSubject: smuggled\r\n\r\nspoof\r\n.\r\n`,
    );
    const r = await c.read();
    assert.equal(r.code, 250, r.raw);
    // Only one reply: the smuggled commands were message content.
    assert.equal((await c.cmd('NOOP')).code, 250);
    c.close();
    const files = await h.mailbox(`localhost/${box}`);
    assert.equal(files.length, 1);
    assert.ok(files[0].includes('MAIL FROM:<evil@example.com>'), 'the smuggled text stays inside the first message');
    assert.deepEqual(await h.mailbox('localhost/victim'), []);
  });
}

test('bare LF line endings are stored as CRLF and a lone dot line is unstuffed', async () => {
  const c = await openSession(h.port);
  await c.cmd('MAIL FROM:<a@example.com>');
  await c.cmd('RCPT TO:<barelf@localhost>');
  await c.cmd('DATA');
  c.write('Subject: lf\n\nline one\n..dotted\nline two\r\n.\r\n');
  assert.equal((await c.read()).code, 250);
  c.close();
  const [m] = await h.mailbox('localhost/barelf');
  assert.ok(m.endsWith('Subject: lf\r\n\r\nline one\r\n.dotted\r\nline two\r\n'), JSON.stringify(m));
});

test('8-bit bytes survive unchanged', async () => {
  const c = await openSession(h.port);
  await c.cmd('MAIL FROM:<a@example.com> BODY=8BITMIME');
  await c.cmd('RCPT TO:<eight@localhost>');
  await c.cmd('DATA');
  const body = Buffer.from([0x53, 0x3a, 0x20, 0xff, 0xfe, 0x80, 0x0d, 0x0a, 0x0d, 0x0a, 0xe9, 0x00, 0x01, 0x0d, 0x0a]);
  c.write(Buffer.concat([body, Buffer.from('.\r\n')]));
  assert.equal((await c.read()).code, 250);
  c.close();
  const [m] = await h.mailbox('localhost/eight');
  assert.ok(Buffer.from(m, 'latin1').subarray(-body.length).equals(body));
});

test('a client that vanishes mid-DATA leaves no message and no queue file', async () => {
  const c = await openSession(h.port);
  await c.cmd('MAIL FROM:<a@example.com>');
  await c.cmd('RCPT TO:<vanish@localhost>');
  await c.cmd('DATA');
  c.write('Subject: half\r\n\r\n' + 'partial line\r\n'.repeat(50000));
  await new Promise((r) => setTimeout(r, 100));
  c.close();
  await new Promise((r) => setTimeout(r, 300));
  assert.deepEqual(await h.mailbox('localhost/vanish'), []);
  const left = await readdir(h.server.spool.dir);
  assert.deepEqual(left, [], 'queue folder is empty');
});

test('a large message streams to disk and arrives intact', async () => {
  const c = await openSession(h.port);
  const line = 'abcdefghijklmnopqrstuvwxyz0123456789'.repeat(2) + '\r\n';
  const body = line.repeat(Math.ceil((8 * 1024 * 1024) / line.length));
  const r = await sendMail(c, 'a@example.com', ['large@localhost'], message('large', body));
  assert.equal(r.code, 250);
  c.close();
  const [m] = await h.mailbox('localhost/large');
  assert.ok(m.endsWith(body));
});

/** The files in a mailbox's new/ folder now, without waiting for the queue. */
async function inMailboxNow(mailbox: string): Promise<string[]> {
  return readdir(join(h.dataDir, 'mail', mailbox, 'new')).catch(() => []);
}

test('mail for local mailboxes is in them when the 250 comes, and leaves nothing queued', async () => {
  const c = await openSession(h.port);
  const r = await sendMail(c, 'a@example.com', ['now1@localhost', 'now2@localhost'], message('at once'));
  assert.equal(r.code, 250, r.raw);
  // No waiting for the queue: the reply came after the mailboxes were written.
  const [a, b] = [await inMailboxNow('localhost/now1'), await inMailboxNow('localhost/now2')];
  assert.equal(a.length, 1);
  assert.deepEqual(b, a, 'one name for the message in every mailbox');
  const id = /queued as (\S+)/.exec(r.raw)?.[1] ?? '';
  assert.ok(a[0].includes(`Q${id}.`), `${a[0]} names queue id ${id}`);
  const { size } = await stat(join(h.dataDir, 'mail', 'localhost', 'now1', 'new', a[0]));
  assert.ok(a[0].endsWith(`,S=${size}`), `${a[0]}: the size in the name is the file's (${size})`);
  assert.deepEqual((await readdir(h.server.spool.dir)).filter((n) => n.startsWith(id)), [], 'no envelope, no queue file');
  c.close();
});

test('a mailbox that fails at once leaves the message queued for that recipient alone', async () => {
  await mkdir(join(h.dataDir, 'mail', 'localhost'), { recursive: true });
  await writeFile(join(h.dataDir, 'mail', 'localhost', 'blocked'), 'not a folder');
  try {
    const c = await openSession(h.port);
    const r = await sendMail(c, 'a@example.com', ['blocked@localhost', 'fine@localhost'], message('half now'));
    assert.equal(r.code, 250, r.raw);
    c.close();
    assert.equal((await inMailboxNow('localhost/fine')).length, 1);
    const id = /queued as (\S+)/.exec(r.raw)?.[1] ?? '';
    const env = (await h.server.spool.list()).find((e) => e.id === id);
    assert.ok(env, 'the message is queued');
    const state = Object.fromEntries(env.recipients.map((x) => [x.address, x.state]));
    assert.deepEqual(state, { 'blocked@localhost': 'pending', 'fine@localhost': 'delivered' });
    assert.match(env.recipients[0].lastError ?? '', /maildir .*blocked/);
    assert.ok((env.nextAttempt ?? 0) > Date.now(), 'the retry waits');
    assert.deepEqual(await h.server.queueOp({ op: 'delete', id }), { ok: true, changed: [id] });
  } finally {
    await rm(join(h.dataDir, 'mail', 'localhost', 'blocked'), { force: true });
  }
});

test('a queued message is delivered after a restart, and unfinished files are cleaned up', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'moonpost-restart-'));
  try {
    // First life: the mailbox path is blocked by a file, so delivery fails and the message stays queued.
    await mkdir(join(dir, 'mail', 'localhost'), { recursive: true });
    await writeFile(join(dir, 'mail', 'localhost', 'carol'), 'not a folder');
    const a = await startServer({}, dir);
    const c = await openSession(a.port);
    const r = await sendMail(c, 'a@example.com', ['carol@localhost'], message('survives'));
    assert.equal(r.code, 250);
    c.close();
    await a.settle();
    const queued = await a.server.spool.list();
    assert.equal(queued.length, 1);
    assert.equal(queued[0].recipients[0].state, 'pending');
    assert.match(queued[0].recipients[0].lastError ?? '', /maildir .*carol/);
    await a.stop();
    // Leftovers of a crash: a message file with no envelope, a torn envelope.
    await writeFile(join(dir, 'queue', 'ORPHAN.msg'), 'x');
    await writeFile(join(dir, 'queue', 'TORN.env'), '{"id":"TORN","sen');
    await writeFile(join(dir, 'queue', 'TORN.msg'), 'y');
    await rm(join(dir, 'mail', 'localhost', 'carol'));
    const b = await startServer({}, dir);
    const files = await b.mailbox('localhost/carol');
    assert.equal(files.length, 1);
    assert.ok(files[0].includes('Subject: survives'));
    assert.deepEqual(await readdir(join(dir, 'queue')), []);
    await b.stop();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
