import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type AddressInfo } from 'node:net';
import { SmtpClient, SmtpClientError } from '../../src/delivery/smtp-client.js';
import { startScriptedServer, type ScriptedServer, type ScriptedServerOptions } from '../helpers/scripted-smtp-server.js';
import { connectTo, text } from '../helpers/client-fixtures.js';

const MSG = 'Subject: t\r\n\r\nbody\r\n';
const tx = (...recipients: string[]) => ({ from: 'a@example.com', recipients: recipients.map((address) => ({ address })), size: MSG.length, data: text(MSG) });

async function withServer(opts: ScriptedServerOptions, fn: (port: number, srv: ScriptedServer) => Promise<void>): Promise<void> {
  const srv = await startScriptedServer(opts);
  try {
    await fn(srv.port, srv);
  } finally {
    await srv.close();
  }
}

const isError = (kind: string, command: string | null, re: RegExp) => (e: unknown) => {
  assert.ok(e instanceof SmtpClientError, String(e));
  assert.equal(e.kind, kind, e.message);
  assert.equal(e.command, command, e.message);
  assert.match(e.message, re);
  return true;
};

test('STARTTLS with a checked certificate, then EHLO again and AUTH PLAIN masked for onReply', () =>
  withServer({ starttls: true, auth: { user: 'relay', password: 'pa55word' } }, async (port, srv) => {
    const { client, seen } = await connectTo(port, {
      tls: 'starttls',
      rejectUnauthorized: true,
      ca: srv.certPem!,
      servername: 'localhost',
      auth: { user: 'relay', password: 'pa55word' },
    });
    assert.equal(client.tls?.authorized, true);
    assert.equal(client.authenticatedAs, 'relay');
    assert.equal(client.extensions.has('STARTTLS'), false, 'extensions from the EHLO after TLS');
    const r = await client.send(tx('b@example.com'));
    assert.equal(r.perRecipient[0].code, 250);
    await client.quit();
    assert.deepEqual(seen.slice(0, 5).map((s) => s.command), ['', 'EHLO client.test', 'STARTTLS', 'EHLO client.test', 'AUTH PLAIN ****']);
    assert.ok(!JSON.stringify(seen).includes(Buffer.from('\0relay\0pa55word').toString('base64')));
    const s = srv.sessions[0];
    assert.equal(s.tls, true);
    assert.equal(s.authUser, 'relay');
    assert.equal(s.injected, '');
    assert.equal(s.commands[3], `AUTH PLAIN ${Buffer.from('\0relay\0pa55word').toString('base64')}`);
  }));

test('AUTH LOGIN: both credential lines masked', () =>
  withServer({ auth: { user: 'u1', password: 'secret' } }, async (port, srv) => {
    const { client, seen } = await connectTo(port, { auth: { user: 'u1', password: 'secret', mechanism: 'LOGIN' } });
    await client.quit();
    assert.deepEqual(seen.slice(2, 5).map((s) => [s.command, s.last]), [
      ['AUTH LOGIN', '334 VXNlcm5hbWU6'],
      ['****', '334 UGFzc3dvcmQ6'],
      ['****', '235 2.7.0 Authentication successful'],
    ]);
    assert.equal(srv.sessions[0].authUser, 'u1');
  }));

test('AUTH refused: an auth error with the reply, the password nowhere in it', () =>
  withServer({ auth: { user: 'u1', password: 'right' } }, async (port, srv) => {
    await assert.rejects(connectTo(port, { auth: { user: 'u1', password: 'wrong-pw' } }), (e: SmtpClientError) => {
      assert.equal(e.kind, 'auth');
      assert.equal(e.command, 'AUTH PLAIN ****');
      assert.equal(e.reply?.code, 535);
      assert.ok(!e.message.includes('wrong-pw') && !e.message.includes(Buffer.from('\0u1\0wrong-pw').toString('base64')));
      return true;
    });
    await srv.closedSessions(1);
    assert.equal(srv.sessions[0].commands.at(-1), 'QUIT');
  }));

test('credentials configured but no AUTH offered is an error, not an unauthenticated send', () =>
  withServer({}, async (port) => {
    await assert.rejects(connectTo(port, { auth: { user: 'u', password: 'p' } }), isError('auth', null, /does not offer AUTH/));
  }));

test('tls "starttls" refuses a server without STARTTLS; "opportunistic" goes on in plain text', () =>
  withServer({}, async (port) => {
    await assert.rejects(connectTo(port, { tls: 'starttls' }), isError('extension', 'EHLO client.test', /STARTTLS is required but not offered/));
    const { client } = await connectTo(port, { tls: 'opportunistic' });
    assert.equal(client.tls, undefined);
    await client.quit();
  }));

test('an untrusted certificate fails the STARTTLS handshake when checked', () =>
  withServer({ starttls: true }, async (port) => {
    await assert.rejects(connectTo(port, { tls: 'starttls', rejectUnauthorized: true }), isError('tls', 'STARTTLS', /TLS handshake failed: .*self-signed/i));
  }));

test('implicit TLS', () =>
  withServer({ implicitTls: true }, async (port, srv) => {
    const { client } = await connectTo(port, { tls: 'implicit', rejectUnauthorized: true, ca: srv.certPem!, servername: 'localhost' });
    assert.match(client.tls?.protocol ?? '', /^TLSv1\.[23]$/);
    assert.equal((await client.send(tx('b@example.com'))).perRecipient[0].code, 250);
    await client.quit();
    assert.equal(srv.sessions[0].tls, true);
  }));

test('bytes after the STARTTLS reply (response injection) fail the connection', () =>
  withServer({ starttls: true, respond: (c) => (c === 'STARTTLS' ? '220 2.0.0 Ready\r\n250 injected' : undefined) }, async (port) => {
    await assert.rejects(connectTo(port, { tls: 'starttls' }), isError('protocol', 'STARTTLS', /data received after the STARTTLS reply/));
  }));

test('greeting timeout', () =>
  withServer({ greeting: { reply: '220 late', delayMs: 1000 } }, async (port) => {
    const t0 = Date.now();
    await assert.rejects(connectTo(port, { timeouts: { greeting: 150 } }), isError('timeout', '', new RegExp(`127\\.0\\.0\\.1:${port}: no reply within 0\\.2 s \\(greeting\\)`)));
    assert.ok(Date.now() - t0 < 900);
  }));

test('RCPT timeout names the command and the host; the connection is dropped', () =>
  withServer({ respond: (c) => (c.startsWith('RCPT TO:<slow') ? { reply: '250 ok', delayMs: 1000 } : undefined) }, async (port) => {
    const { client } = await connectTo(port, { timeouts: { rcpt: 150 } });
    await assert.rejects(client.send(tx('fast@example.com', 'slow@example.com')), isError('timeout', 'RCPT TO:<slow@example.com>', /scripted\.test/));
    assert.equal(client.closed, true);
  }));

test('MAIL timeout without pipelining; DATA initiation and termination timeouts', async () => {
  await withServer({ extensions: [], respond: (c) => (c.startsWith('MAIL') ? { reply: '250 ok', delayMs: 1000 } : undefined) }, async (port) => {
    const { client } = await connectTo(port, { timeouts: { mail: 150 } });
    await assert.rejects(client.send(tx('b@example.com')), isError('timeout', 'MAIL FROM:<a@example.com>', /no reply within/));
  });
  await withServer({ respond: (c) => (c === 'DATA' ? { reply: '354 go', delayMs: 1000 } : undefined) }, async (port) => {
    const { client } = await connectTo(port, { timeouts: { dataInit: 150 } });
    await assert.rejects(client.send(tx('b@example.com')), isError('timeout', 'DATA', /no reply within/));
  });
  await withServer({ respond: (c) => (c === '.' ? { reply: '250 ok', delayMs: 1000 } : undefined) }, async (port) => {
    const { client } = await connectTo(port, { timeouts: { dataEnd: 150 } });
    await assert.rejects(client.send(tx('b@example.com')), isError('timeout', '.', /no reply within/));
  });
});

test('data block timeout: a server that stops reading the message', () =>
  withServer({ extensions: ['PIPELINING'], respond: (c) => (c === 'DATA' ? { reply: '354 go', pauseReading: true } : undefined) }, async (port) => {
    const { client } = await connectTo(port, { timeouts: { dataBlock: 200 } });
    const block = Buffer.alloc(1024 * 1024, 'z\r\n');
    const data = function* (): Generator<Buffer> {
      for (let i = 0; i < 64; i++) yield block;
    };
    await assert.rejects(client.send({ ...tx('b@example.com'), size: 64 * block.length, data }), isError('timeout', 'DATA', /message data not taken within 0\.2 s/));
    assert.equal(client.closed, true);
  }));

test('the server closing mid-transaction is a network error naming the command and host', () =>
  withServer({ extensions: [], respond: (c) => (c.startsWith('RCPT') ? { close: true } : undefined) }, async (port) => {
    const { client } = await connectTo(port);
    await assert.rejects(client.send(tx('b@example.com')), isError('network', 'RCPT TO:<b@example.com>', /scripted\.test.*connection closed by the remote/));
    assert.equal(client.closed, true);
  }));

test('a 421 in a pipelined group: it answers that command and every later one; no rejection', () =>
  withServer({ respond: (c) => (c === 'RCPT TO:<second@example.com>' ? { reply: '421 4.3.2 going down', close: true } : undefined) }, async (port) => {
    const { client, seen } = await connectTo(port);
    const r = await client.send(tx('first@example.com', 'second@example.com', 'third@example.com'));
    assert.deepEqual(r.perRecipient.map((p) => [p.address, p.code, p.stage]), [
      ['first@example.com', 421, 'DATA'],
      ['second@example.com', 421, 'RCPT'],
      ['third@example.com', 421, 'RCPT'],
    ]);
    assert.equal(seen.filter((s) => s.last.startsWith('421')).length, 1, 'onReply sees the real reply once');
    assert.equal(client.closed, true);
  }));

test('the server closing during the message data is a network error', () =>
  withServer({ respond: (c) => (c === 'DATA' ? { reply: '354 go', close: true } : undefined) }, async (port) => {
    const { client } = await connectTo(port);
    const big = Buffer.alloc(8 * 1024 * 1024, 'q');
    await assert.rejects(client.send({ ...tx('b@example.com'), size: big.length, data: () => [big] }), (e: SmtpClientError) => e.kind === 'network' && (e.command === 'DATA' || e.command === '.'));
  }));

test('a refusal sent in the middle of the data settles the recipients; the connection is dropped', async () => {
  // A raw server: replies 552 after the first data bytes and discards the rest. (One that also
  // closes at once resets the connection, and the reply may be lost: a network error then.)
  const server = createServer((s) => {
    s.write('220 raw.test\r\n');
    let inData = 0;
    s.on('data', (d: Buffer) => {
      if (inData === 1) {
        s.write('552 5.3.4 message too big\r\n');
        inData = 2;
      }
      if (inData) return;
      for (const l of d.toString('latin1').split('\r\n').filter(Boolean)) {
        if (l.startsWith('EHLO')) s.write('250-raw.test\r\n250 PIPELINING\r\n');
        else if (l === 'DATA') {
          s.write('354 go\r\n');
          inData = 1;
        } else s.write('250 ok\r\n');
      }
    });
    s.on('error', () => undefined);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  try {
    const { client, seen } = await connectTo((server.address() as AddressInfo).port);
    const chunk = Buffer.alloc(256 * 1024, 'w');
    const data = async function* (): AsyncGenerator<Buffer> {
      for (let i = 0; i < 200; i++) {
        yield chunk;
        await new Promise((r) => setTimeout(r, 2));
      }
    };
    const r = await client.send({ ...tx('b@example.com'), size: 200 * chunk.length, data });
    assert.deepEqual(r.perRecipient.map((p) => [p.code, p.stage]), [[552, 'DOT']]);
    assert.equal(seen.at(-1)?.command, '.');
    assert.equal(client.closed, true);
  } finally {
    server.close();
  }
});

test('onReply throwing fails the operation with a hook error', () =>
  withServer({}, async (port) => {
    await assert.rejects(
      connectTo(port, {
        onReply: (cmd) => {
          if (cmd.startsWith('EHLO')) throw new Error('script exploded');
        },
      }),
      isError('hook', 'EHLO client.test', /onReply failed: script exploded/),
    );
  }));

test('a malformed reply is a protocol error', () =>
  withServer({ respond: (c) => (c.startsWith('MAIL') ? 'hello there' : undefined) }, async (port) => {
    const { client } = await connectTo(port);
    await assert.rejects(client.send(tx('b@example.com')), isError('protocol', `MAIL FROM:<a@example.com> SIZE=${MSG.length}`, /malformed reply line "hello there"/));
  }));

test('a connect timeout (implicit TLS to a server that never answers the handshake)', async () => {
  const silent = createServer(() => undefined);
  await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
  const port = (silent.address() as AddressInfo).port;
  try {
    await assert.rejects(
      SmtpClient.connect({ host: '127.0.0.1', port, tls: 'implicit', rejectUnauthorized: false, helo: 'c.test', timeouts: { connect: 150 } }),
      isError('timeout', null, new RegExp(`127\\.0\\.0\\.1:${port}: connect timed out after 0\\.2 s`)),
    );
  } finally {
    silent.close();
  }
});
