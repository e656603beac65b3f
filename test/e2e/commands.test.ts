import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, type Harness } from '../helpers/harness.js';
import { TestClient, openSession, sendMail, message } from '../helpers/smtp-client.js';

let h: Harness;
before(async () => {
  h = await startServer({
    domains: [{ name: 'localhost', catchAll: true }, { name: 'strict.test', catchAll: false }],
    users: [],
    aliases: { 'team@localhost': ['alice@localhost', 'bob@localhost'], 'out@localhost': ['someone@remote.test'] },
    limits: { recipients: 3, messageSize: 10000, lineLength: 1000, errors: 50 },
  });
});
after(() => h.stop());

test('EHLO advertises the extensions with one keyword per line', async () => {
  const c = await TestClient.connect(h.port);
  assert.match((await c.read()).lines[0], /^220 mx\.test ESMTP moonpost$/);
  const r = await c.cmd('EHLO client.test');
  assert.equal(r.lines[0], '250-mx.test Hello client.test [127.0.0.1]');
  const kw = r.lines.slice(1).map((l) => l.slice(4));
  assert.deepEqual(kw, ['PIPELINING', 'SIZE 10000', '8BITMIME', 'SMTPUTF8', 'ENHANCEDSTATUSCODES', 'CHUNKING', 'DSN', 'HELP']);
  assert.ok(r.lines.at(-1)!.startsWith('250 '));
  c.close();
});

test('bad sequence answers 503 5.5.1', async () => {
  const c = await TestClient.connect(h.port);
  await c.read();
  assert.match((await c.cmd('MAIL FROM:<a@b.test>')).lines[0], /^503 5\.5\.1 /);
  await c.cmd('HELO client.test');
  assert.match((await c.cmd('RCPT TO:<alice@localhost>')).lines[0], /^503 5\.5\.1 /);
  assert.match((await c.cmd('DATA')).lines[0], /^503 5\.5\.1 /);
  assert.equal((await c.cmd('MAIL FROM:<a@b.test>')).code, 250);
  assert.match((await c.cmd('MAIL FROM:<a@b.test>')).lines[0], /^503 5\.5\.1 Nested/);
  assert.match((await c.cmd('DATA')).lines[0], /^554 5\.5\.1 No valid recipients/);
  c.close();
});

test('bad syntax answers 501, unknown commands 500, unknown parameters 555', async () => {
  const c = await openSession(h.port);
  assert.match((await c.cmd('HELO')).lines[0], /^501 5\.5\.4 /);
  assert.match((await c.cmd('MAIL FROM:foo bar baz')).lines[0], /^501 5\.5\.4 /);
  assert.match((await c.cmd('MAIL FROM:<a b@c>')).lines[0], /^501 5\.5\.4 /);
  assert.match((await c.cmd('MAIL TO:<a@b.test>')).lines[0], /^501 5\.5\.4 /);
  assert.match((await c.cmd('MAIL FROM:<a@b.test> FOO=BAR')).lines[0], /^555 5\.5\.4 Unsupported parameter FOO/);
  assert.match((await c.cmd('XYZZY')).lines[0], /^500 5\.5\.2 /);
  assert.match((await c.cmd('RSET now')).lines[0], /^501 5\.5\.4 /);
  assert.match((await c.cmd('MAIL FROM:<a@b.test> SIZE=abc')).lines[0], /^501 5\.5\.4 /);
  assert.match((await c.cmd('DATA extra')).lines[0], /^501 5\.5\.4 /);
  assert.match((await c.cmd('MAIL FROM:<ü@b.test>')).lines[0], /^553 5\.6\.7 /);
  c.close();
});

test('unknown local user 550 5.1.1, relay denied 554 5.7.1, postmaster always accepted', async () => {
  const c = await openSession(h.port);
  await c.cmd('MAIL FROM:<a@example.com>');
  assert.match((await c.cmd('RCPT TO:<nobody@strict.test>')).lines[0], /^550 5\.1\.1 <nobody@strict\.test>: Recipient address rejected: User unknown$/);
  assert.equal((await c.cmd('RCPT TO:<postmaster@strict.test>')).code, 250);
  assert.equal((await c.cmd('RCPT TO:<Postmaster>')).code, 250);
  c.close();
  // 127.0.0.2 is outside the relay networks.
  const o = await TestClient.connect(h.port, { localAddress: '127.0.0.2' });
  await o.read();
  await o.cmd('EHLO outside.test');
  await o.cmd('MAIL FROM:<a@example.com>');
  assert.match((await o.cmd('RCPT TO:<user@remote.test>')).lines[0], /^554 5\.7\.1 <user@remote\.test>: Relay access denied$/);
  assert.match((await o.cmd('RCPT TO:<@localhost:user@remote.test>')).lines[0], /^554 5\.7\.1 /);
  assert.equal((await o.cmd('RCPT TO:<alice@LOCALHOST>')).code, 250);
  o.close();
});

test('too many recipients 452 4.5.3; declared size over the limit 552 5.3.4', async () => {
  const c = await openSession(h.port);
  assert.match((await c.cmd('MAIL FROM:<a@example.com> SIZE=20000')).lines[0], /^552 5\.3\.4 /);
  await c.cmd('MAIL FROM:<a@example.com> SIZE=100');
  for (const r of ['a', 'b', 'c']) assert.equal((await c.cmd(`RCPT TO:<${r}@localhost>`)).code, 250);
  assert.match((await c.cmd('RCPT TO:<d@localhost>')).lines[0], /^452 4\.5\.3 /);
  c.close();
});

test('a body over the size limit is refused at the end with 552 5.3.4 and nothing is stored', async () => {
  const c = await openSession(h.port);
  const r = await sendMail(c, 'a@example.com', ['big@localhost'], message('big', 'x'.repeat(900) + '\r\n').repeat(1).concat(('y'.repeat(900) + '\r\n').repeat(20)));
  assert.match(r.lines[0], /^552 5\.3\.4 /);
  assert.equal((await c.cmd('NOOP')).code, 250, 'the session goes on after a refused message');
  c.close();
  assert.deepEqual(await h.mailbox('localhost/big'), []);
  assert.deepEqual(await h.server.spool.list(), []);
});

test('a data line over the line limit is refused with 552 5.3.4, never truncated', async () => {
  const c = await openSession(h.port);
  const r = await sendMail(c, 'a@example.com', ['long@localhost'], message('long', 'z'.repeat(1001) + '\r\n'));
  assert.match(r.lines[0], /^552 5\.3\.4 Message line longer than 1000 octets/);
  c.close();
  assert.deepEqual(await h.mailbox('localhost/long'), []);
});

test('an over-long command line gets 500 5.5.2 and the session stays in step', async () => {
  const c = await openSession(h.port);
  c.write(`NOOP ${'x'.repeat(5000)}\r\nNOOP\r\n`);
  assert.match((await c.read()).lines[0], /^500 5\.5\.2 Line too long/);
  assert.equal((await c.read()).code, 250);
  c.close();
});

test('pipelined commands get their replies in order, in one batch', async () => {
  const c = await openSession(h.port);
  c.write('MAIL FROM:<p@example.com>\r\nRCPT TO:<pipe@localhost>\r\nRCPT TO:<nobody@strict.test>\r\nRCPT TO:<pipe2@localhost>\r\nDATA\r\n');
  const replies = [];
  for (let i = 0; i < 5; i++) replies.push(await c.read());
  assert.deepEqual(replies.map((r) => r.code), [250, 250, 550, 250, 354]);
  c.write(`${message('piped')}.\r\nMAIL FROM:<q@example.com>\r\nRCPT TO:<pipe@localhost>\r\nDATA\r\n`);
  const after = [await c.read(), await c.read(), await c.read(), await c.read()];
  assert.deepEqual(after.map((r) => r.code), [250, 250, 250, 354]);
  c.write(`${message('second')}.\r\nQUIT\r\n`);
  assert.equal((await c.read()).code, 250);
  assert.equal((await c.read()).code, 221);
  await c.waitClosed();
  const box = await h.mailbox('localhost/pipe');
  assert.equal(box.length, 2);
  assert.equal((await h.mailbox('localhost/pipe2')).length, 1);
});

test('BDAT chunks, with LAST, are stored byte for byte and BDAT mixes with pipelining', async () => {
  const c = await openSession(h.port);
  const part1 = 'From: a@example.com\r\nSubject: chunked\r\n\r\n.leading dot stays\r\n';
  const part2 = 'second chunk\r\n';
  c.write(`MAIL FROM:<a@example.com>\r\nRCPT TO:<chunky@localhost>\r\nBDAT ${part1.length}\r\n${part1}BDAT ${part2.length} LAST\r\n${part2}`);
  const codes = [];
  for (let i = 0; i < 4; i++) codes.push(await c.read());
  assert.deepEqual(codes.map((r) => r.code), [250, 250, 250, 250]);
  assert.match(codes[2].lines[0], new RegExp(`^250 2\\.0\\.0 ${part1.length} octets received`));
  assert.match(codes[3].lines[0], /queued as/);
  assert.match((await c.cmd('BDAT 0 LAST')).lines[0], /^503 5\.5\.1 /);
  // DATA after BDAT in the same transaction is refused.
  await c.cmd('MAIL FROM:<a@example.com>');
  await c.cmd('RCPT TO:<chunky@localhost>');
  c.write('BDAT 3\r\nabc');
  assert.equal((await c.read()).code, 250);
  assert.match((await c.cmd('DATA')).lines[0], /^503 5\.5\.1 /);
  c.close();
  const box = await h.mailbox('localhost/chunky');
  assert.equal(box.length, 1);
  assert.ok(box[0].endsWith(part1 + part2));
});

test('a refused BDAT chunk is still consumed so the session stays in step', async () => {
  const c = await openSession(h.port);
  c.write('BDAT 10 LAST\r\n0123456789NOOP\r\n');
  assert.match((await c.read()).lines[0], /^503 5\.5\.1 /);
  assert.equal((await c.read()).code, 250);
  c.close();
});

test('RSET, NOOP, HELP, VRFY, EXPN and QUIT', async () => {
  const c = await openSession(h.port);
  await c.cmd('MAIL FROM:<a@example.com>');
  assert.match((await c.cmd('RSET')).lines[0], /^250 2\.0\.0 /);
  assert.equal((await c.cmd('MAIL FROM:<a@example.com>')).code, 250, 'RSET ended the transaction');
  assert.match((await c.cmd('NOOP')).lines[0], /^250 2\.0\.0 /);
  const help = await c.cmd('HELP');
  assert.equal(help.code, 214);
  assert.ok(help.lines.length > 1 && help.lines.slice(0, -1).every((l) => l.startsWith('214-')));
  assert.match((await c.cmd('VRFY alice')).lines[0], /^252 2\.1\.5 /);
  assert.match((await c.cmd('VRFY')).lines[0], /^501 /);
  const expn = await c.cmd('EXPN team');
  assert.deepEqual(expn.lines, ['250-2.1.5 <alice@localhost>', '250 2.1.5 <bob@localhost>']);
  assert.match((await c.cmd('EXPN nosuchlist@strict.test')).lines[0], /^550 5\.1\.1 /);
  assert.match((await c.cmd('QUIT')).lines[0], /^221 2\.0\.0 /);
  await c.waitClosed();
  const o = await TestClient.connect(h.port, { localAddress: '127.0.0.3' });
  await o.read();
  await o.cmd('EHLO x.test');
  assert.match((await o.cmd('EXPN team')).lines[0], /^502 5\.5\.1 /, 'no EXPN for outside clients');
  o.close();
});

test('an alias delivers to every member; an alias to a remote address stays queued for the relay', async () => {
  const c = await openSession(h.port);
  assert.equal((await sendMail(c, 'a@example.com', ['team@localhost'], message('team'))).code, 250);
  assert.equal((await sendMail(c, 'a@example.com', ['out@localhost'], message('out'))).code, 250);
  c.close();
  assert.equal((await h.mailbox('localhost/alice')).filter((m) => m.includes('Subject: team')).length, 1);
  assert.equal((await h.mailbox('localhost/bob')).filter((m) => m.includes('Subject: team')).length, 1);
  const q = await h.server.spool.list();
  const out = q.find((e) => e.recipients.some((r) => r.address === 'someone@remote.test'));
  assert.ok(out, 'the remote alias target is queued');
  assert.equal(out.recipients[0].route.kind, 'remote');
  assert.equal(out.recipients[0].original, 'out@localhost');
});

test('relayed mail from an allowed client waits in the queue with its DSN parameters', async () => {
  const c = await openSession(h.port);
  await c.cmd('MAIL FROM:<a@example.com> RET=HDRS ENVID=abc+2Bdef');
  assert.equal((await c.cmd('RCPT TO:<x@remote.example> NOTIFY=FAILURE,DELAY ORCPT=rfc822;x+40remote.example')).code, 250);
  assert.equal((await c.cmd('DATA')).code, 354);
  c.write(`${message('relay')}.\r\n`);
  const r = await c.read();
  assert.equal(r.code, 250);
  const id = /queued as (\S+)/.exec(r.lines[0])![1];
  c.close();
  const env = await h.server.spool.read(id);
  assert.deepEqual(env.dsn, { ret: 'HDRS', envid: 'abc+def' });
  assert.deepEqual(env.recipients[0].dsn, { notify: ['FAILURE', 'DELAY'], orcpt: 'rfc822;x@remote.example' });
  assert.equal(env.recipients[0].state, 'pending');
});

test('SMTPUTF8 addresses are accepted with the parameter and stamped UTF8ESMTP', async () => {
  const c = await openSession(h.port);
  await c.cmd('MAIL FROM:<jörg@example.com> SMTPUTF8');
  assert.equal((await c.cmd('RCPT TO:<müller@localhost>')).code, 250);
  await c.cmd('DATA');
  c.write(Buffer.from(`${message('ütf')}.\r\n`, 'utf8'));
  assert.equal((await c.read()).code, 250);
  c.close();
  const box = await h.mailbox('localhost/müller');
  assert.equal(box.length, 1);
  assert.match(Buffer.from(box[0], 'latin1').toString('utf8'), /with UTF8ESMTP id/);
});

test('too many errors end the session with 421 4.7.0', async () => {
  const h2 = await startServer({ limits: { errors: 3 } });
  try {
    const c = await openSession(h2.port);
    await c.cmd('BOGUS1');
    await c.cmd('BOGUS2');
    c.write('BOGUS3\r\n');
    const r = await c.read();
    assert.match(r.lines.at(-1)!, /^500 5\.5\.2/);
    assert.match((await c.read()).lines[0], /^421 4\.7\.0 /);
    await c.waitClosed();
  } finally {
    await h2.stop();
  }
});

test('a client that pipelines without reading gets every reply once it reads', async () => {
  const c = await openSession(h.port);
  const n = 20000;
  c.write('NOOP\r\n'.repeat(n));
  await new Promise((r) => setTimeout(r, 200));
  let got = 0;
  while (got < n) {
    const r = await c.read();
    assert.equal(r.code, 250);
    got++;
  }
  assert.equal((await c.cmd('QUIT')).code, 221);
});

test('a queue write failure answers 451 4.3.0 and acknowledges nothing', async () => {
  const { rm, mkdir } = await import('node:fs/promises');
  const h2 = await startServer();
  try {
    const c = await openSession(h2.port);
    await rm(h2.server.spool.dir, { recursive: true });
    const r = await sendMail(c, 'a@example.com', ['x@localhost'], message('lost?'));
    assert.match(r.lines[0], /^451 4\.3\.0 /);
    await mkdir(h2.server.spool.dir);
    assert.equal((await sendMail(c, 'a@example.com', ['x@localhost'], message('retry'))).code, 250, 'the client can retry');
    c.close();
    const box = await h2.mailbox('localhost/x');
    assert.equal(box.length, 1);
    assert.match(box[0], /Subject: retry/);
  } finally {
    await h2.stop();
  }
});
