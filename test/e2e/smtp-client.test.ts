import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { SmtpClient, SmtpClientError } from '../../src/delivery/smtp-client.js';
import { startScriptedServer, DEFAULT_EXTENSIONS, type ScriptedServerOptions } from '../helpers/scripted-smtp-server.js';
import { connectTo, peakMemoryGrowth, text, writeQueueFile } from '../helpers/client-fixtures.js';

const MSG = 'From: a@example.com\r\nTo: b@example.com\r\nSubject: hi\r\n\r\nHello.\r\n';
const tx = (recipients: string[], extra: object = {}) => ({
  from: 'a@example.com',
  recipients: recipients.map((address) => ({ address })),
  size: MSG.length,
  data: text(MSG),
  ...extra,
});

async function waitUntil(cond: () => boolean, ms = 5000): Promise<void> {
  for (const t0 = Date.now(); !cond(); ) {
    if (Date.now() - t0 > ms) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}

async function withServer(opts: ScriptedServerOptions, fn: (port: number, srv: Awaited<ReturnType<typeof startScriptedServer>>) => Promise<void>): Promise<void> {
  const srv = await startScriptedServer(opts);
  try {
    await fn(srv.port, srv);
  } finally {
    await srv.close();
  }
}

test('every reply passes onReply, the greeting with "" and the end of data with "."', () =>
  withServer({ greeting: '220-scripted.test ESMTP\r\n220 second greeting line' }, async (port, srv) => {
    const { client, seen } = await connectTo(port, { localAddress: '127.0.0.1' });
    assert.equal(client.remote, 'scripted.test');
    assert.equal(client.greeting.full, '220-scripted.test ESMTP\r\n220 second greeting line');
    const r = await client.send(tx(['b@example.com']));
    await client.quit();
    assert.deepEqual(
      seen.map((s) => s.command),
      ['', 'EHLO client.test', `MAIL FROM:<a@example.com> SIZE=${MSG.length}`, 'RCPT TO:<b@example.com>', 'DATA', '.', 'QUIT'],
    );
    assert.equal(seen[0].full, '220-scripted.test ESMTP\r\n220 second greeting line');
    assert.equal(seen[0].last, '220 second greeting line');
    assert.match(seen[1].full, /^250-scripted\.test Hello\r\n250-PIPELINING\r\n.*\r\n250 ENHANCEDSTATUSCODES$/s);
    assert.equal(seen[1].last, '250 ENHANCEDSTATUSCODES');
    assert.deepEqual(r.perRecipient, [{ address: 'b@example.com', stage: 'DOT', code: 250, enhanced: '2.0.0', reply: '250 2.0.0 Ok: queued' }]);
    assert.equal(srv.sessions[0].messages[0].text, MSG);
  }));

test('a 4xx rewritten to 5xx by onReply changes the result; multi-line replies are joined by CRLF', () =>
  withServer(
    { respond: (c) => (c === 'RCPT TO:<full@example.com>' ? '452-4.2.2 Mailbox full\r\n452-4.2.2 really full\r\n452 4.2.2 try later' : undefined) },
    async (port) => {
      const fulls: string[] = [];
      const { client } = await connectTo(port, {
        onReply: (cmd, full) => {
          if (cmd.startsWith('RCPT TO:<full@')) {
            fulls.push(full);
            return '550 5.2.2 Mailbox full for good';
          }
          return null;
        },
      });
      const r = await client.send(tx(['ok@example.com', 'full@example.com']));
      assert.deepEqual(fulls, ['452-4.2.2 Mailbox full\r\n452-4.2.2 really full\r\n452 4.2.2 try later']);
      assert.deepEqual(
        r.perRecipient.map((p) => [p.address, p.code, p.stage, p.reply]),
        [
          ['ok@example.com', 250, 'DOT', '250 2.0.0 Ok: queued'],
          ['full@example.com', 550, 'RCPT', '550 5.2.2 Mailbox full for good'],
        ],
      );
      await client.quit();
    },
  ));

test('without a rewrite the multi-line refusal comes back whole', () =>
  withServer({ respond: (c) => (c.startsWith('RCPT') ? '550-5.1.1 No such user\r\n550 5.1.1 see https://example.com' : undefined) }, async (port) => {
    const { client } = await connectTo(port);
    const r = await client.send(tx(['x@example.com']));
    assert.equal(r.perRecipient[0].reply, '550-5.1.1 No such user\r\n550 5.1.1 see https://example.com');
    assert.equal(r.perRecipient[0].enhanced, '5.1.1');
    assert.equal(r.data, undefined);
    await client.quit();
  }));

test('onReply can refuse the greeting; connect then fails with that reply', () =>
  withServer({}, async (port, srv) => {
    await assert.rejects(
      connectTo(port, { onReply: (cmd) => (cmd === '' ? '554 5.7.1 not this one' : null) }),
      (e: SmtpClientError) => e.kind === 'reply' && e.command === '' && e.reply?.code === 554 && /greeting refused/.test(e.message),
    );
    await srv.closedSessions(1);
    assert.deepEqual(srv.sessions[0].commands, ['QUIT']);
  }));

test('EHLO refused with 5xx falls back to HELO; no extensions, no pipelining', () =>
  withServer({ respond: (c) => (c.startsWith('EHLO') ? '502 5.5.2 Error: command not recognized' : undefined) }, async (port, srv) => {
    const { client, seen } = await connectTo(port);
    assert.equal(client.esmtp, false);
    assert.equal(client.extensions.size, 0);
    const r = await client.send(tx(['b@example.com'], { body: '7BIT' }));
    assert.equal(r.pipelined, false);
    assert.equal(r.perRecipient[0].code, 250);
    await client.quit();
    assert.deepEqual(srv.sessions[0].commands.slice(0, 3), ['EHLO client.test', 'HELO client.test', 'MAIL FROM:<a@example.com>']);
    assert.deepEqual(seen.slice(1, 3).map((s) => s.command), ['EHLO client.test', 'HELO client.test']);
  }));

test('EHLO refused with 4xx is an error, not a HELO fallback', () =>
  withServer({ respond: (c) => (c.startsWith('EHLO') ? '421 4.3.2 shutting down' : undefined) }, async (port) => {
    await assert.rejects(connectTo(port), (e: SmtpClientError) => e.kind === 'reply' && e.command === 'EHLO client.test' && e.reply?.code === 421);
  }));

test('onReply rewriting EHLO decides the extensions (hiding PIPELINING)', () =>
  withServer({}, async (port, srv) => {
    const { client } = await connectTo(port, {
      onReply: (cmd, full) => (cmd.startsWith('EHLO') ? full.split('\r\n').filter((l) => !l.includes('PIPELINING')).join('\r\n') : null),
    });
    assert.equal(client.extensions.has('PIPELINING'), false);
    const r = await client.send(tx(['b@example.com']));
    assert.equal(r.pipelined, false);
    await client.quit();
    const s = srv.sessions[0];
    assert.equal(new Set(s.reads.slice(1, 4)).size, 3, 'MAIL, RCPT, DATA in separate reads');
  }));

test('PIPELINING: MAIL, every RCPT and DATA in one write, replies read in order, mixed results', () =>
  withServer(
    {
      respond: (c) => {
        if (c === 'RCPT TO:<bad@example.com>') return '550 5.1.1 <bad@example.com>: unknown';
        if (c === 'RCPT TO:<later@example.com>') return '450 4.2.0 greylisted';
        return undefined;
      },
    },
    async (port, srv) => {
      const { client, seen } = await connectTo(port);
      const r = await client.send(tx(['one@example.com', 'bad@example.com', 'later@example.com', 'two@example.com']));
      await client.quit();
      const s = srv.sessions[0];
      const i = s.commands.findIndex((c) => c.startsWith('MAIL'));
      assert.deepEqual(s.commands.slice(i, i + 6), [
        `MAIL FROM:<a@example.com> SIZE=${MSG.length}`,
        'RCPT TO:<one@example.com>',
        'RCPT TO:<bad@example.com>',
        'RCPT TO:<later@example.com>',
        'RCPT TO:<two@example.com>',
        'DATA',
      ]);
      assert.equal(new Set(s.reads.slice(i, i + 6)).size, 1, 'one write');
      assert.deepEqual(seen.slice(2, 8).map((x) => x.command), s.commands.slice(i, i + 6));
      assert.deepEqual(seen.slice(3, 7).map((x) => x.last.slice(0, 3)), ['250', '550', '450', '250']);
      assert.equal(r.pipelined, true);
      assert.deepEqual(
        r.perRecipient.map((p) => [p.address, p.code, p.stage]),
        [
          ['one@example.com', 250, 'DOT'],
          ['bad@example.com', 550, 'RCPT'],
          ['later@example.com', 450, 'RCPT'],
          ['two@example.com', 250, 'DOT'],
        ],
      );
    },
  ));

test('without PIPELINING: one command at a time; MAIL refused settles everyone; RSET before the next MAIL when needed', () =>
  withServer(
    {
      extensions: DEFAULT_EXTENSIONS.filter((e) => e !== 'PIPELINING'),
      respond: (c) => {
        if (c.startsWith('MAIL FROM:<blocked@')) return '553 5.7.1 sender blocked';
        if (c.startsWith('RCPT TO:<nobody')) return '550 5.1.1 unknown';
        return undefined;
      },
    },
    async (port, srv) => {
      const { client } = await connectTo(port);
      const blocked = await client.send({ ...tx(['x@example.com', 'y@example.com']), from: 'blocked@example.com' });
      assert.deepEqual(blocked.perRecipient.map((p) => [p.code, p.stage]), [[553, 'MAIL'], [553, 'MAIL']]);
      const none = await client.send(tx(['nobody1@example.com', 'nobody2@example.com']));
      assert.deepEqual(none.perRecipient.map((p) => [p.code, p.stage]), [[550, 'RCPT'], [550, 'RCPT']]);
      const ok = await client.send(tx(['b@example.com']));
      assert.equal(ok.perRecipient[0].code, 250);
      assert.equal(ok.pipelined, false);
      await client.quit();
      const cmds = srv.sessions[0].commands.map((c) => c.split(' ')[0]);
      assert.deepEqual(cmds, ['EHLO', 'MAIL', 'MAIL', 'RCPT', 'RCPT', 'RSET', 'MAIL', 'RCPT', 'DATA', '.', 'QUIT']);
      const reads = srv.sessions[0].reads;
      assert.equal(new Set(reads).size, reads.length - 0, 'every command in its own read');
    },
  ));

test('PIPELINING across transactions: the next MAIL, RCPT and DATA go out with the "." in one write; a refused "." does not touch the next', () =>
  withServer({ respond: (c, sess) => (c === '.' && sess.messages.length === 1 ? '554 5.6.0 first refused' : undefined) }, async (port, srv) => {
    const { client, seen } = await connectTo(port);
    const second = tx(['c@example.com']);
    const r1 = await client.send(tx(['b@example.com']), second);
    assert.equal(client.pipelinedAhead, true);
    assert.deepEqual(r1.perRecipient.map((p) => [p.address, p.code, p.stage]), [['b@example.com', 554, 'DOT']]);
    const r2 = await client.send(second);
    assert.equal(client.pipelinedAhead, false);
    assert.deepEqual(r2.perRecipient.map((p) => [p.address, p.code, p.stage]), [['c@example.com', 250, 'DOT']]);
    const r3 = await client.send(tx(['d@example.com']));
    assert.equal(r3.perRecipient[0].code, 250);
    await client.quit();
    const s = srv.sessions[0];
    const dots = s.commands.flatMap((c, i) => (c === '.' ? [i] : []));
    assert.equal(dots.length, 3);
    assert.deepEqual(s.commands.slice(dots[0], dots[0] + 4), ['.', `MAIL FROM:<a@example.com> SIZE=${MSG.length}`, 'RCPT TO:<c@example.com>', 'DATA']);
    assert.equal(new Set(s.reads.slice(dots[0], dots[0] + 4)).size, 1, 'the "." and the next group in one write');
    assert.equal(s.messages.length, 3);
    assert.ok(s.messages.every((m) => m.text === MSG));
    // onReply saw every reply once, in the order the commands went out.
    assert.deepEqual(seen.slice(2).map((x) => x.command), s.commands.slice(1));
  }));

test('a transaction pipelined ahead and then abandoned is dropped with the connection: the server gets no data for it', () =>
  withServer({}, async (port, srv) => {
    const { client } = await connectTo(port);
    await client.send(tx(['b@example.com']), tx(['c@example.com']));
    assert.equal(client.pipelinedAhead, true);
    await client.quit();
    assert.equal(client.closed, true);
    await waitUntil(() => srv.sessions[0].closed);
    const s = srv.sessions[0];
    assert.equal(s.messages.length, 1);
    assert.deepEqual(s.commands.slice(-3).map((c) => c.split(' ')[0]), ['MAIL', 'RCPT', 'DATA'], 'no QUIT inside the pending DATA');
  }));

test('after a transaction pipelined ahead, only that transaction may follow', () =>
  withServer({}, async (port, srv) => {
    const { client } = await connectTo(port);
    await client.send(tx(['b@example.com']), tx(['c@example.com']));
    await assert.rejects(client.send(tx(['other@example.com'])), (e: unknown) => e instanceof SmtpClientError && e.kind === 'protocol');
    assert.equal(client.closed, true);
    await waitUntil(() => srv.sessions[0].closed);
    assert.equal(srv.sessions[0].messages.length, 1);
  }));

test('without PIPELINING, or when the next one is refused locally, nothing is sent ahead', () =>
  withServer({ extensions: DEFAULT_EXTENSIONS.filter((e) => e !== 'PIPELINING') }, async (port, srv) => {
    const { client } = await connectTo(port);
    await client.send(tx(['b@example.com']), tx(['c@example.com']));
    assert.equal(client.pipelinedAhead, false);
    await client.quit();
    assert.deepEqual(srv.sessions[0].commands.map((c) => c.split(' ')[0]), ['EHLO', 'MAIL', 'RCPT', 'DATA', '.', 'QUIT']);
  }).then(() =>
    withServer({ extensions: ['PIPELINING', 'SIZE 100'] }, async (port, srv) => {
      const { client } = await connectTo(port);
      const big = { ...tx(['c@example.com']), size: 500 };
      await client.send(tx(['b@example.com']), big);
      assert.equal(client.pipelinedAhead, false, 'over the SIZE limit: not presented');
      await client.quit();
      assert.equal(srv.sessions[0].commands.filter((c) => c.startsWith('MAIL')).length, 1);
    }),
  ));

test('DATA refused: accepted recipients get the DATA reply, refused ones keep theirs', () =>
  withServer(
    { respond: (c) => (c === 'DATA' ? '451 4.3.0 queue full' : c === 'RCPT TO:<bad@example.com>' ? '550 5.1.1 no' : undefined) },
    async (port, srv) => {
      const { client } = await connectTo(port);
      const r = await client.send(tx(['a1@example.com', 'bad@example.com', 'a2@example.com']));
      assert.deepEqual(r.perRecipient.map((p) => [p.code, p.stage]), [[451, 'DATA'], [550, 'RCPT'], [451, 'DATA']]);
      assert.equal(r.data?.reply, '451 4.3.0 queue full');
      // The transaction stays open on the server: the next one starts with RSET.
      const again = await client.send(tx(['a1@example.com']));
      assert.equal(again.data?.code, 451);
      await client.quit();
      assert.ok(srv.sessions[0].commands.includes('RSET'));
      assert.equal(srv.sessions[0].messages.length, 0);
    },
  ));

test('the final "." refused: every accepted recipient gets it', () =>
  withServer({ respond: (c) => (c === '.' ? '554 5.7.1 looks like spam' : undefined) }, async (port) => {
    const { client } = await connectTo(port);
    const r = await client.send(tx(['a1@example.com', 'a2@example.com']));
    assert.deepEqual(r.perRecipient.map((p) => [p.code, p.stage, p.reply]), [
      [554, 'DOT', '554 5.7.1 looks like spam'],
      [554, 'DOT', '554 5.7.1 looks like spam'],
    ]);
    await client.quit();
  }));

test('a 354 the server gives although every RCPT failed gets an empty "." and nothing is delivered', () =>
  withServer({ respond: (c) => (c.startsWith('RCPT') ? '550 5.1.1 no' : c === 'DATA' ? '354 go ahead anyway' : undefined) }, async (port, srv) => {
    const { client, seen } = await connectTo(port);
    const r = await client.send(tx(['x@example.com']));
    assert.deepEqual(r.perRecipient.map((p) => p.code), [550]);
    assert.equal(seen.at(-1)?.command, '.');
    assert.equal(srv.sessions[0].messages[0].size, 0);
    assert.equal(client.closed, false);
    await client.quit();
  }));

test('onReply refusing a 354 the server gave drops the connection instead of sending anything', () =>
  withServer({}, async (port, srv) => {
    const { client } = await connectTo(port, { onReply: (cmd) => (cmd === 'DATA' ? '554 5.7.0 not today' : null) });
    const r = await client.send(tx(['x@example.com']));
    assert.deepEqual(r.perRecipient.map((p) => [p.code, p.stage]), [[554, 'DATA']]);
    assert.equal(client.closed, true);
    await srv.closedSessions(1);
    assert.equal(srv.sessions[0].messages.length, 0);
  }));

test('onReply cannot make up a 354: the server refusal stands and no data is sent', () =>
  withServer({ respond: (c) => (c === 'DATA' ? '452 4.3.1 no space' : undefined) }, async (port, srv) => {
    const { client } = await connectTo(port, { onReply: (cmd) => (cmd === 'DATA' ? '354 sure' : null) });
    const r = await client.send(tx(['x@example.com']));
    assert.deepEqual(r.perRecipient.map((p) => [p.code, p.stage]), [[452, 'DATA']]);
    await client.quit();
    assert.deepEqual(srv.sessions[0].commands.at(-1), 'QUIT');
    assert.equal(srv.sessions[0].messages.length, 0);
  }));

test('dot-stuffing: lines starting with "." arrive intact; LF and CR line ends become CRLF', () =>
  withServer({}, async (port, srv) => {
    const { client } = await connectTo(port);
    const body = 'Subject: dots\r\n\r\n.\r\n..\r\n.leading\r\nmiddle . dot\n.lf line\rcr line\r\n. \r\nlast without newline';
    await client.send({ ...tx(['b@example.com']), data: () => [body.slice(0, 20), body.slice(20, 21), body.slice(21)] });
    await client.quit();
    const m = srv.sessions[0].messages[0];
    assert.equal(m.text, 'Subject: dots\r\n\r\n.\r\n..\r\n.leading\r\nmiddle . dot\r\n.lf line\r\ncr line\r\n. \r\nlast without newline\r\n');
    assert.equal(m.wire, 'Subject: dots\r\n\r\n..\r\n...\r\n..leading\r\nmiddle . dot\r\n..lf line\r\ncr line\r\n.. \r\nlast without newline\r\n.\r\n');
  }));

test('a stored file is sent from an offset (the Return-Path line skipped)', () =>
  withServer({}, async (port, srv) => {
    const f = await writeQueueFile(3, '.dotted line');
    try {
      const { client } = await connectTo(port);
      const r = await client.send({ ...tx(['b@example.com']), size: f.size, data: { path: f.path, offset: f.offset } });
      assert.equal(r.perRecipient[0].code, 250);
      await client.quit();
      assert.equal(srv.sessions[0].messages[0].text, '.dotted line\r\n'.repeat(3));
      assert.match(srv.sessions[0].commands.find((c) => c.startsWith('MAIL'))!, new RegExp(` SIZE=${f.size}$`));
    } finally {
      await rm(f.dir, { recursive: true, force: true });
    }
  }));

test('a missing message file drops the connection rather than ending a partial message', () =>
  withServer({}, async (port, srv) => {
    const { client } = await connectTo(port);
    await assert.rejects(
      client.send({ ...tx(['b@example.com']), data: { path: join('/nonexistent', 'x.msg'), offset: 0 } }),
      (e: SmtpClientError) => e.kind === 'source' && e.command === 'DATA' && /ENOENT/.test(e.message),
    );
    assert.equal(client.closed, true);
    await srv.closedSessions(1);
    assert.equal(srv.sessions[0].messages.length, 0);
  }));

test('a 20 MB message streams from the file without being held in memory', () =>
  withServer({ extensions: ['PIPELINING', 'SIZE 52428800'], keepBytes: 0 }, async (port, srv) => {
    const f = await writeQueueFile(270_000, 'x'.repeat(76));
    try {
      const { client } = await connectTo(port);
      let code = 0;
      const growth = await peakMemoryGrowth(async () => {
        const r = await client.send({ ...tx(['b@example.com']), size: f.size, data: { path: f.path, offset: f.offset } });
        code = r.perRecipient[0].code;
      });
      await client.quit();
      assert.equal(code, 250);
      const m = srv.sessions[0].messages[0];
      assert.equal(m.size, f.size);
      assert.equal(m.sha256, f.sha256);
      assert.ok(f.size > 20_000_000);
      assert.ok(growth < 16 * 1024 * 1024, `memory grew by ${(growth / 1048576).toFixed(1)} MB`);
    } finally {
      await rm(f.dir, { recursive: true, force: true });
    }
  }));

test('message data is read only as fast as the server takes it (backpressure)', () =>
  withServer({ extensions: ['PIPELINING'], keepBytes: 0 }, async (port, srv) => {
    const { client } = await connectTo(port);
    const line = Buffer.from(`${'y'.repeat(1022)}\r\n`);
    const chunk = Buffer.concat(Array.from({ length: 64 }, () => line));
    let produced = 0;
    let lead = 0;
    const total = 20 * 1024 * 1024;
    async function* source(): AsyncGenerator<Buffer> {
      while (produced < total) {
        lead = Math.max(lead, produced - (srv.sessions[0]?.bytesIn ?? 0));
        produced += chunk.length;
        yield chunk;
        if (produced % (1024 * 1024) === 0) await new Promise((r) => setImmediate(r));
      }
    }
    const r = await client.send({ ...tx(['b@example.com']), size: total, data: source });
    await client.quit();
    assert.equal(r.perRecipient[0].code, 250);
    assert.equal(srv.sessions[0].messages[0].size, total);
    assert.ok(lead < 8 * 1024 * 1024, `the client read ${(lead / 1048576).toFixed(1)} MB ahead of the server`);
  }));

test('an 8-bit message to a server without 8BITMIME is refused cleanly, nothing sent', () =>
  withServer({ extensions: ['PIPELINING', 'SIZE 1000000'] }, async (port, srv) => {
    const { client, seen } = await connectTo(port);
    const r = await client.send(tx(['b@example.com', 'c@example.com'], { body: '8BITMIME' }));
    assert.deepEqual(r.perRecipient.map((p) => [p.code, p.enhanced, p.stage]), [
      [554, '5.6.3', 'local'],
      [554, '5.6.3', 'local'],
    ]);
    assert.match(r.perRecipient[0].reply, /^554 5\.6\.3 .*does not offer 8BITMIME/);
    assert.equal(seen.length, 2, 'no command sent for it');
    const ok = await client.send(tx(['b@example.com'], { body: '7BIT' }));
    assert.equal(ok.perRecipient[0].code, 250);
    await client.quit();
    assert.equal(srv.sessions[0].commands.filter((c) => c.startsWith('MAIL')).length, 1);
  }));

test('SIZE, BODY=8BITMIME, SMTPUTF8 and the DSN parameters when offered', () =>
  withServer({}, async (port, srv) => {
    const { client } = await connectTo(port);
    const r = await client.send({
      from: 'a@example.com',
      recipients: [
        { address: 'b@example.com', notify: ['SUCCESS', 'DELAY'], orcpt: 'rfc822;B+x@example.com' },
        { address: 'ü@example.com', notify: ['NEVER'] },
      ],
      size: 1234,
      body: '8BITMIME',
      ret: 'HDRS',
      envid: 'QUEUE=1 x',
      data: text('Subject: é\r\n\r\nbody é\r\n'),
    });
    assert.equal(r.dsn, true);
    await client.quit();
    const cmds = srv.sessions[0].commands;
    assert.ok(cmds.includes('MAIL FROM:<a@example.com> SIZE=1234 BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=QUEUE+3D1+20x'), cmds.join('\n'));
    assert.ok(cmds.includes('RCPT TO:<b@example.com> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;B+2Bx@example.com'));
    assert.ok(cmds.includes('RCPT TO:<ü@example.com> NOTIFY=NEVER'));
    assert.equal(srv.sessions[0].messages[0].text, 'Subject: é\r\n\r\nbody é\r\n');
  }));

test('no DSN parameters (and result.dsn false) when DSN is not offered; SMTPUTF8 needed but missing is refused', () =>
  withServer({ extensions: ['PIPELINING', '8BITMIME'] }, async (port, srv) => {
    const { client } = await connectTo(port);
    const r = await client.send({
      ...tx([]),
      recipients: [{ address: 'b@example.com', notify: ['SUCCESS'], orcpt: 'rfc822;b@example.com' }],
      ret: 'FULL',
      envid: 'x',
    });
    assert.equal(r.dsn, false);
    const utf8 = await client.send(tx(['ü@example.com']));
    assert.deepEqual(utf8.perRecipient.map((p) => [p.code, p.enhanced, p.stage]), [[553, '5.6.7', 'local']]);
    const header = await client.send(tx(['b@example.com'], { smtputf8: true }));
    assert.equal(header.perRecipient[0].enhanced, '5.6.9');
    await client.quit();
    const cmds = srv.sessions[0].commands;
    assert.ok(cmds.includes('MAIL FROM:<a@example.com>'));
    assert.ok(cmds.includes('RCPT TO:<b@example.com>'));
    assert.equal(cmds.filter((c) => c.startsWith('MAIL')).length, 1);
  }));

test('a message over the server\'s SIZE is refused locally with 552 5.3.4', () =>
  withServer({ extensions: ['PIPELINING', 'SIZE 100'] }, async (port, srv) => {
    const { client } = await connectTo(port);
    const r = await client.send({ ...tx(['b@example.com']), size: 101 });
    assert.deepEqual(r.perRecipient.map((p) => [p.code, p.enhanced, p.stage]), [[552, '5.3.4', 'local']]);
    await client.quit();
    assert.ok(!srv.sessions[0].commands.some((c) => c.startsWith('MAIL')));
  }));

test('one operation at a time; send on a closed client is an error', () =>
  withServer({ respond: (c) => (c === '.' ? { reply: '250 ok', delayMs: 100 } : undefined) }, async (port) => {
    const { client } = await connectTo(port);
    const first = client.send(tx(['b@example.com']));
    await assert.rejects(client.send(tx(['c@example.com'])), /while another operation is running/);
    await first;
    await assert.rejects(client.send(tx([])), /at least one recipient/);
    await client.quit();
    await assert.rejects(client.send(tx(['b@example.com'])), (e: SmtpClientError) => e.kind === 'network' && /closed connection/.test(e.message));
  }));

test('SmtpClient.connect to a port nobody listens on names the host', async () => {
  const srv = await startScriptedServer();
  const port = srv.port;
  await srv.close();
  await assert.rejects(
    SmtpClient.connect({ host: '127.0.0.1', port, tls: 'none', rejectUnauthorized: false, helo: 'c.test' }),
    (e: SmtpClientError) => e.kind === 'network' && e.message.includes(`127.0.0.1:${port}`) && /ECONNREFUSED/.test(e.message),
  );
});
