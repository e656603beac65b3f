import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from '../helpers/harness.js';
import { openSession, sendMail, message } from '../helpers/smtp-client.js';

test('a message to a local address is acknowledged and lands in Maildir with trace headers', async () => {
  const h = await startServer();
  try {
    const c = await openSession(h.port);
    const r = await sendMail(c, 'sender@example.com', ['alice@localhost'], message('hello'));
    assert.equal(r.code, 250);
    assert.match(r.lines[0], /^250 2\.0\.0 Ok: queued as [A-Z0-9]+$/);
    await c.cmd('QUIT');
    const files = await h.mailbox('localhost/alice');
    assert.equal(files.length, 1);
    assert.match(files[0], /^Return-Path: <sender@example\.com>\r\nReceived: from client\.test \(\[127\.0\.0\.1\]\)\r\n\tby mx\.test \(moonpost\) with ESMTP id /);
    assert.ok(files[0].endsWith('Subject: hello\r\n\r\nHello.\r\n'));
    assert.deepEqual(await h.server.spool.list(), []);
  } finally {
    await h.stop();
  }
});
