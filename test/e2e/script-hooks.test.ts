import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { startScriptServer, type ScriptHarness } from '../helpers/script-server.js';
import { TestClient, openSession, sendMail, message } from '../helpers/smtp-client.js';
import { makeCert } from '../helpers/tls-cert.js';

// Every SMTPSVR.LUA callback of the vendor page, through a real server and a raw client.

let h: ScriptHarness;
let cert: ReturnType<typeof makeCert>;
let tlsPort: number;

before(async () => {
  cert = makeCert();
  h = await startScriptServer('', {
    domains: [{ name: 'localhost', catchAll: true }, { name: 'strict.test', catchAll: false }],
    aliases: { 'team@localhost': ['alice@localhost', 'bob@localhost'] },
    limits: { messageSize: 10000, errors: 50 },
    services: [
      { id: 0, name: 'mx', listen: '127.0.0.1', port: 0 },
      { id: 1, name: 'mx-tls', listen: '127.0.0.1', port: 0, tls: 'starttls', cert: cert.cert, key: cert.key },
    ],
  });
  tlsPort = h.ports.get(1)!;
});
after(async () => {
  await h.stop();
  rmSync(cert.dir, { recursive: true, force: true });
});

/** Connects and reads the greeting. */
async function connect(opts: { port?: number; localAddress?: string } = {}): Promise<TestClient> {
  const c = await TestClient.connect(opts.port ?? h.port, { localAddress: opts.localAddress });
  assert.equal((await c.read()).code, 220);
  return c;
}

/** The message body of a delivered file: everything after the first empty line. */
const bodyOf = (file: string): string => file.slice(file.indexOf('\r\n\r\n') + 4);

// ---- Start -------------------------------------------------------------------------------

test('Start: a returned string replaces the greeting; "" keeps the default', async () => {
  await h.setScript(`
    function Start()
      if IPAddress == "127.0.0.2" then return "" end
      return "220-mx.test custom welcome\\r\\n220 second line"
    end`);
  const c = await TestClient.connect(h.port);
  assert.equal((await c.read()).raw, '220-mx.test custom welcome\r\n220 second line\r\n');
  assert.equal((await c.cmd('EHLO client.test')).code, 250);
  c.close();
  const d = await TestClient.connect(h.port, { localAddress: '127.0.0.2' });
  assert.equal((await d.read()).raw, '220 mx.test ESMTP moonpost\r\n');
  d.close();
});

test('Start: a 4xx or 5xx greeting is sent and the connection closed; End still runs once', async () => {
  await h.setScript(`
    function Start()
      if IPAddress == "127.0.0.2" then return "421 4.7.0 come back later" end
      return "554 5.7.1 go away"
    end
    function End() end`);
  const ends = h.hookStats('End').calls;
  const c = await TestClient.connect(h.port);
  assert.equal((await c.read()).raw, '554 5.7.1 go away\r\n');
  await c.waitClosed();
  const d = await TestClient.connect(h.port, { localAddress: '127.0.0.2' });
  assert.equal((await d.read()).raw, '421 4.7.0 come back later\r\n');
  await d.waitClosed();
  await h.waitHookCalls('End', ends + 2);
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(h.hookStats('End').calls, ends + 2);
});

// ---- GetMaxMessageSize --------------------------------------------------------------------

test('GetMaxMessageSize: called at start with the IP and at EHLO/HELO with the host; the size is advertised and enforced', async () => {
  await h.setScript(`
    calls = {}
    function GetMaxMessageSize(host, current)
      calls[#calls + 1] = host .. "=" .. current
      if host == "127.0.0.1" then return 5000 end
      if host == "small.test" then return 300 end
      return current
    end
    function DoNOOP() return "250 " .. table.concat(calls, " ") end`);
  const c = await connect();
  let r = await c.cmd('EHLO big.test');
  assert.ok(r.lines.includes('250-SIZE 5000'), r.raw);
  r = await c.cmd('EHLO small.test');
  assert.ok(r.lines.includes('250-SIZE 300'), r.raw);
  assert.equal((await c.cmd('HELO other.test')).code, 250);
  assert.equal((await c.cmd('NOOP')).lines[0], '250 127.0.0.1=10000 big.test=5000 small.test=5000 other.test=300');
  // SIZE= over the limit is refused at MAIL.
  assert.match((await c.cmd('MAIL FROM:<a@example.com> SIZE=301')).lines[0], /^552 5\.3\.4 /);
  // A body over the limit is refused at the end of data, and nothing is stored.
  r = await sendMail(c, 'a@example.com', ['size@localhost'], message('big', 'x'.repeat(400) + '\r\n'));
  assert.match(r.lines[0], /^552 5\.3\.4 /);
  r = await sendMail(c, 'a@example.com', ['size@localhost'], message('small', 'ok\r\n'));
  assert.equal(r.code, 250);
  c.close();
  const box = await h.mailbox('localhost/size');
  assert.equal(box.length, 1);
  assert.match(box[0], /Subject: small/);
});

// ---- GetEHLOCapabilities ------------------------------------------------------------------

test('GetEHLOCapabilities: gets the keywords joined by CRLF; removing STARTTLS switches it off, an added keyword is advertised', async () => {
  await h.setScript(`
    function GetEHLOCapabilities(host, caps)
      seen = host .. ":" .. caps:gsub("\\r\\n", "|")
      local out = caps:gsub("\\r\\nSTARTTLS", "")
      return out .. "\\r\\nXMOON lua"
    end
    function DoNOOP() return "250 " .. seen end`);
  const c = await connect({ port: tlsPort });
  const r = await c.cmd('EHLO client.test');
  const kw = r.lines.slice(1).map((l) => l.slice(4));
  assert.deepEqual(kw, ['PIPELINING', 'SIZE 10000', '8BITMIME', 'SMTPUTF8', 'ENHANCEDSTATUSCODES', 'CHUNKING', 'DSN', 'HELP', 'XMOON lua']);
  assert.equal(
    (await c.cmd('NOOP')).lines[0],
    '250 client.test:PIPELINING|SIZE 10000|8BITMIME|SMTPUTF8|ENHANCEDSTATUSCODES|CHUNKING|DSN|STARTTLS|HELP',
  );
  assert.match((await c.cmd('STARTTLS')).lines[0], /^502 5\.5\.1 /);
  c.close();
});

// ---- DoHELO ------------------------------------------------------------------------------

test('DoHELO: gets host, bRefuse and bEHLO; a response replaces the reply; bRefuse closes with the response', async () => {
  await h.setScript(`
    function DoHELO(host, refuse, ehlo)
      if host == "bad.test" then return true, "550 5.7.1 you are bad" end
      if host == "worse.test" then return true, "" end
      if host == "plain.test" then return refuse, "" end
      return refuse, "250 hi " .. host .. " refuse=" .. tostring(refuse) .. " ehlo=" .. tostring(ehlo)
    end
    function End() end`);
  const c = await connect();
  assert.equal((await c.cmd('EHLO one.test')).raw, '250 hi one.test refuse=false ehlo=true\r\n');
  assert.equal((await c.cmd('HELO two.test')).raw, '250 hi two.test refuse=false ehlo=false\r\n');
  const plain = await c.cmd('EHLO plain.test');
  assert.equal(plain.lines[0], '250-mx.test Hello plain.test [127.0.0.1]');
  assert.equal((await c.cmd('MAIL FROM:<a@example.com>')).code, 250);
  const ends = h.hookStats('End').calls;
  assert.equal((await c.cmd('EHLO bad.test')).raw, '550 5.7.1 you are bad\r\n');
  await c.waitClosed();
  const d = await connect();
  assert.match((await d.cmd('HELO worse.test')).lines[0], /^554 5\.7\.1 /);
  await d.waitClosed();
  await h.waitHookCalls('End', ends + 2);
});

// ---- DoHELP, DoQUIT, DoNOOP, DoRSET ------------------------------------------------------

test('DoHELP: gets the help text; the returned text is sent, lines without a code get 214', async () => {
  await h.setScript(`
    function DoHELP(text)
      if HeloName == "coded.test" then return "211-first\\r\\n211 second" end
      return "See https://example.test/help\\r\\n" .. text
    end`);
  const c = await openSession(h.port);
  const r = await c.cmd('HELP');
  assert.deepEqual(r.lines, [
    '214-2.0.0 See https://example.test/help',
    '214-2.0.0 Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT',
    '214-2.0.0           VRFY EXPN HELP STARTTLS AUTH',
    '214 2.0.0 moonpost SMTP server, see RFC 5321',
  ]);
  await c.cmd('EHLO coded.test');
  assert.equal((await c.cmd('HELP')).raw, '211-first\r\n211 second\r\n');
  c.close();
});

test('DoQUIT, DoNOOP, DoRSET: the returned text is the reply, "" the default; QUIT still closes', async () => {
  await h.setScript(`
    n = 0
    function DoNOOP() n = n + 1 if n == 1 then return "250 2.0.0 noop seen" end return "" end
    function DoRSET() return "250 2.0.0 reset by script, tx=" .. MailFrom end
    function DoQUIT() return "221 2.0.0 script says bye" end`);
  const c = await openSession(h.port);
  assert.equal((await c.cmd('NOOP')).raw, '250 2.0.0 noop seen\r\n');
  assert.equal((await c.cmd('NOOP')).raw, '250 2.0.0 Ok\r\n');
  await c.cmd('MAIL FROM:<x@example.com>');
  // RSET drops the transaction before the callback runs.
  assert.equal((await c.cmd('RSET')).raw, '250 2.0.0 reset by script, tx=\r\n');
  assert.equal((await c.cmd('MAIL FROM:<y@example.com>')).code, 250, 'RSET really reset');
  assert.equal((await c.cmd('QUIT')).raw, '221 2.0.0 script says bye\r\n');
  await c.waitClosed();
});

// ---- DoVRFY / DoEXPN ---------------------------------------------------------------------

test('DoVRFY and DoEXPN: get the expanded recipients and the current response; returning it keeps the default', async () => {
  await h.setScript(`
    function DoVRFY(list, current)
      if #list == 0 then return current end
      return "250 " .. table.concat(list, ",") .. " | " .. current
    end
    function DoEXPN(list, current)
      if HeloName == "pass.test" then return current end
      return "250 n=" .. #list .. " " .. current:gsub("\\r\\n", "|")
    end`);
  const c = await openSession(h.port);
  assert.equal((await c.cmd('VRFY team')).raw, '250 alice@localhost,bob@localhost | 252 2.1.5 Cannot VRFY user, but will accept message\r\n');
  assert.equal((await c.cmd('VRFY <carol@localhost>')).raw, '250 carol@localhost | 252 2.1.5 Cannot VRFY user, but will accept message\r\n');
  assert.equal((await c.cmd('VRFY nobody@strict.test')).raw, '252 2.1.5 Cannot VRFY user, but will accept message\r\n');
  assert.equal((await c.cmd('EXPN team@localhost')).raw, '250 n=2 250-2.1.5 <alice@localhost>|250 2.1.5 <bob@localhost>\r\n');
  await c.cmd('EHLO pass.test');
  assert.equal((await c.cmd('EXPN team')).raw, '250-2.1.5 <alice@localhost>\r\n250 2.1.5 <bob@localhost>\r\n');
  c.close();
  // An outside client's EXPN is refused by default; the script sees that reply.
  const o = await connect({ localAddress: '127.0.0.2' });
  await o.cmd('EHLO outside.test');
  assert.equal((await o.cmd('EXPN team')).raw, '250 n=2 502 5.5.1 EXPN not available\r\n');
  o.close();
});

// ---- DoMAILFROM --------------------------------------------------------------------------

test('DoMAILFROM: gets data, address, upper-cased params, spf "" and the auth sender; may refuse', async () => {
  await h.setScript(`
    function DoMAILFROM(data, from, params, spf, auth)
      if from == "spam@example.com" then return params, "550 5.7.1 not you" end
      local keys = {}
      for k, v in pairs(params) do keys[#keys + 1] = k .. "=" .. v end
      table.sort(keys)
      return params, "250 2.1.0 data=[" .. data .. "] from=[" .. from .. "] params=[" .. table.concat(keys, ",")
        .. "] spf=[" .. spf .. "] auth=[" .. auth .. "]"
    end`);
  const c = await openSession(h.port);
  assert.equal(
    (await c.cmd('MAIL FROM:<a@example.com> size=100 body=8BITMIME')).raw,
    '250 2.1.0 data=[<a@example.com> size=100 body=8BITMIME] from=[a@example.com] params=[BODY=8BITMIME,SIZE=100] spf=[] auth=[]\r\n',
  );
  await c.cmd('RSET');
  assert.equal((await c.cmd('MAIL FROM:<>')).raw, '250 2.1.0 data=[<>] from=[] params=[] spf=[] auth=[]\r\n');
  await c.cmd('RSET');
  assert.equal((await c.cmd('MAIL FROM:<spam@example.com>')).raw, '550 5.7.1 not you\r\n');
  // Refused: no transaction was opened.
  assert.match((await c.cmd('RCPT TO:<alice@localhost>')).lines[0], /^503 /);
  c.close();
});

test('DoMAILFROM: params.MAILFROM replaces the return path of the stored message', async () => {
  await h.setScript(`
    function DoMAILFROM(data, from, params)
      params.MAILFROM = "bounces+" .. from:gsub("@", "=") .. "@mx.test"
      return params, ""
    end`);
  const c = await openSession(h.port);
  const r = await sendMail(c, 'orig@example.com', ['rp@localhost'], message('return path'));
  assert.equal(r.code, 250);
  c.close();
  const [m] = await h.mailbox('localhost/rp');
  assert.match(m, /^Return-Path: <bounces\+orig=example\.com@mx\.test>\r\n/);
});

// ---- DoRCPTTO ----------------------------------------------------------------------------

test('DoRCPTTO: gets data, recipient, params and the recipients so far; may refuse', async () => {
  await h.setScript(`
    function DoRCPTTO(data, rcpt, params, list)
      if rcpt == "blocked@localhost" then return params, "550 5.7.1 blocked by script" end
      local keys = {}
      for k, v in pairs(params) do keys[#keys + 1] = k .. "=" .. v end
      return params, "250 2.1.5 data=[" .. data .. "] rcpt=[" .. rcpt .. "] params=[" .. table.concat(keys, ",")
        .. "] so-far=[" .. table.concat(list, ",") .. "]"
    end`);
  const c = await openSession(h.port);
  await c.cmd('MAIL FROM:<a@example.com>');
  assert.equal((await c.cmd('RCPT TO:<one@localhost>')).raw, '250 2.1.5 data=[<one@localhost>] rcpt=[one@localhost] params=[] so-far=[]\r\n');
  assert.equal((await c.cmd('RCPT TO:<blocked@localhost>')).raw, '550 5.7.1 blocked by script\r\n');
  assert.equal(
    (await c.cmd('RCPT TO:<two@localhost> NOTIFY=NEVER')).raw,
    '250 2.1.5 data=[<two@localhost> NOTIFY=NEVER] rcpt=[two@localhost] params=[NOTIFY=NEVER] so-far=[one@localhost]\r\n',
  );
  assert.match((await c.cmd('RCPT TO:<three@localhost>')).lines[0], /so-far=\[one@localhost,two@localhost\]$/);
  c.close();
});

test('DoRCPTTO: a 2xx accepts what the default policy refuses (unknown user, relay from outside)', async () => {
  await h.setScript(`
    function DoRCPTTO(data, rcpt, params, list)
      if rcpt == "ghost@strict.test" or rcpt == "far@remote.test" then return params, "250 2.1.5 accepted by policy script" end
      return params, ""
    end`);
  const c = await openSession(h.port);
  await c.cmd('MAIL FROM:<a@example.com>');
  assert.match((await c.cmd('RCPT TO:<nobody@strict.test>')).lines[0], /^550 5\.1\.1 /, 'the default still applies to others');
  assert.equal((await c.cmd('RCPT TO:<ghost@strict.test>')).raw, '250 2.1.5 accepted by policy script\r\n');
  assert.equal((await c.cmd('DATA')).code, 354);
  c.write(`${message('ghost')}.\r\n`);
  assert.equal((await c.read()).code, 250);
  c.close();
  const box = await h.mailbox('strict.test/ghost');
  assert.equal(box.length, 1);

  const o = await connect({ localAddress: '127.0.0.2' });
  await o.cmd('EHLO outside.test');
  await o.cmd('MAIL FROM:<a@example.com>');
  assert.match((await o.cmd('RCPT TO:<other@remote.test>')).lines[0], /^554 5\.7\.1 .*Relay access denied/);
  assert.equal((await o.cmd('RCPT TO:<far@remote.test>')).raw, '250 2.1.5 accepted by policy script\r\n');
  assert.equal((await o.cmd('DATA')).code, 354);
  o.write(`${message('relayed')}.\r\n`);
  const done = await o.read();
  assert.equal(done.code, 250);
  o.close();
  const id = /queued as (\S+)/.exec(done.lines[0])![1];
  await h.settle();
  const queued = (await h.server.spool.list()).find((e) => e.id === id);
  assert.ok(queued, 'the relayed message waits in the queue');
  assert.deepEqual(
    queued.recipients.map((r) => [r.address, r.route.kind]),
    [['far@remote.test', 'remote']],
  );
});

test('DoRCPTTO: params.RCPTTO replaces the recipient', async () => {
  await h.setScript(`
    function DoRCPTTO(data, rcpt, params, list)
      if rcpt == "old@localhost" then params.RCPTTO = "new@localhost" end
      return params, ""
    end
    function DoDATAStart(list) return "", "X-Rcpts: " .. table.concat(list, ",") end`);
  const c = await openSession(h.port);
  const r = await sendMail(c, 'a@example.com', ['old@localhost', 'keep@localhost'], message('redirected'));
  assert.equal(r.code, 250);
  c.close();
  assert.equal((await h.mailbox('localhost/old')).length, 0);
  const [m] = await h.mailbox('localhost/new');
  assert.match(m, /\r\nX-Rcpts: new@localhost,keep@localhost\r\n/);
  assert.equal((await h.mailbox('localhost/keep')).length, 1);
});

// ---- DoDATAStart -------------------------------------------------------------------------

test('DoDATAStart: gets the recipients; may refuse; header lines (string or array) are prepended', async () => {
  await h.setScript(`
    function DoDATAStart(list)
      if list[1] == "refused@localhost" then return "554 5.7.1 no data for you" end
      if list[1] == "string@localhost" then return "", "X-One: 1\\r\\nX-Two: " .. #list end
      return "", { "X-A: a", "X-B: " .. list[#list] }
    end`);
  const c = await openSession(h.port);
  await c.cmd('MAIL FROM:<a@example.com>');
  await c.cmd('RCPT TO:<refused@localhost>');
  assert.equal((await c.cmd('DATA')).raw, '554 5.7.1 no data for you\r\n');
  await c.cmd('RSET');
  assert.equal((await sendMail(c, 'a@example.com', ['string@localhost', 'second@localhost'], message('string form'))).code, 250);
  assert.equal((await sendMail(c, 'a@example.com', ['array@localhost'], message('array form'))).code, 250);
  c.close();
  assert.deepEqual(await h.mailbox('localhost/refused'), []);
  const [s] = await h.mailbox('localhost/string');
  // After our Return-Path and Received lines, before the message's own header.
  assert.match(s, /^Return-Path: <a@example\.com>\r\nReceived: [^]*?\r\nX-One: 1\r\nX-Two: 2\r\nFrom: sender@example\.com\r\n/);
  const [a] = await h.mailbox('localhost/array');
  assert.match(a, /\r\nX-A: a\r\nX-B: array@localhost\r\nFrom: sender@example\.com\r\n/);
});

// ---- DoUnrecognised ----------------------------------------------------------------------

test('DoUnrecognised: gets the raw line; its result is the reply, "" the default 500', async () => {
  await h.setScript(`
    function DoUnrecognised(line)
      if line:sub(1, 4) == "XYZ " then return "250 2.0.0 got [" .. line .. "]" end
      return ""
    end`);
  const c = await openSession(h.port);
  assert.equal((await c.cmd('XYZ  some  args ')).raw, '250 2.0.0 got [XYZ  some  args ]\r\n');
  assert.match((await c.cmd('FOO')).lines[0], /^500 5\.5\.2 /);
  c.close();
});

// ---- StartMessage, MessageLineRaw, MessageLine, EndMessage -------------------------------

test('MessageLineRaw sees every line as sent, dot-stuffing included; MessageLine the stored line; EndMessage sees MailFrom', async () => {
  await h.setScript(`
    function StartMessage() raw = {} cooked = {} started = true end
    function MessageLineRaw(line) raw[#raw + 1] = "[" .. line .. "]" return "ignored" end
    function MessageLine(line) cooked[#cooked + 1] = "[" .. line .. "]" end
    function EndMessage()
      return "250 2.0.0 started=" .. tostring(started) .. " raw=" .. table.concat(raw) .. " cooked=" .. table.concat(cooked)
        .. " from=" .. MailFrom .. " helo=" .. HeloName
    end`);
  const c = await openSession(h.port);
  await c.cmd('MAIL FROM:<a@example.com>');
  await c.cmd('RCPT TO:<lines@localhost>');
  assert.equal((await c.cmd('DATA')).code, 354);
  c.write('Subject: dots\r\n\r\n..x\r\n..\r\nplain\r\n.\r\n');
  assert.equal((await c.read()).raw, '250 2.0.0 started=true raw=[Subject: dots][][..x][..][plain] cooked=[Subject: dots][][.x][.][plain] from=a@example.com helo=client.test\r\n');
  c.close();
  const [m] = await h.mailbox('localhost/lines');
  assert.equal(bodyOf(m), '.x\r\n.\r\nplain\r\n');
});

test('MessageLine: nil keeps, a string replaces, CRLF splits, false drops; 8-bit bytes survive byte-exact', async () => {
  await h.setScript(`
    function MessageLine(line)
      if line == "keep" then return nil end
      if line == "replace" then return "replaced" end
      if line == "split" then return "first half\\r\\nsecond half" end
      if line == "drop" then return false end
      if line:sub(1, 4) == "8bit" then return line .. "\\255" end
    end`);
  const c = await openSession(h.port);
  await c.cmd('MAIL FROM:<a@example.com> BODY=8BITMIME');
  await c.cmd('RCPT TO:<edit@localhost>');
  assert.equal((await c.cmd('DATA')).code, 354);
  const body = 'Subject: edit\r\n\r\nkeep\r\nreplace\r\nsplit\r\ndrop\r\n8bit \xe9\xfc\x80\x00\xff\r\nraw \xc3\x28 \xa0\r\n';
  c.write(Buffer.from(`${body}.\r\n`, 'latin1'));
  assert.equal((await c.read()).code, 250);
  c.close();
  const [m] = await h.mailbox('localhost/edit');
  assert.equal(bodyOf(m), 'keep\r\nreplaced\r\nfirst half\r\nsecond half\r\n8bit \xe9\xfc\x80\x00\xff\xff\r\nraw \xc3\x28 \xa0\r\n');
});

test('EndMessage: a 5xx or 4xx refuses the message and nothing is stored; a 2xx replaces the final reply', async () => {
  await h.setScript(`
    function MessageLine(line) if line:match("^Subject:") then subject = line end end
    function EndMessage()
      if subject == "Subject: five" then return "554 5.7.1 content refused" end
      if subject == "Subject: four" then return "451 4.7.1 try later" end
      return "250 2.0.0 accepted by script"
    end`);
  const c = await openSession(h.port);
  assert.equal((await sendMail(c, 'a@example.com', ['end@localhost'], message('five'))).raw, '554 5.7.1 content refused\r\n');
  assert.equal((await sendMail(c, 'a@example.com', ['end@localhost'], message('four'))).raw, '451 4.7.1 try later\r\n');
  assert.equal((await sendMail(c, 'a@example.com', ['end@localhost'], message('ok'))).raw, '250 2.0.0 accepted by script\r\n');
  c.close();
  const box = await h.mailbox('localhost/end');
  assert.equal(box.length, 1);
  assert.match(box[0], /Subject: ok/);
  // Nothing of the refused ones is left in the queue either.
  assert.deepEqual((await h.server.spool.list()).filter((e) => e.recipients.some((r) => r.address === 'end@localhost')), []);
});

test('an error in a line callback is that callback\'s alone: the line is kept and every other callback still runs', async () => {
  await h.setScript(`
    local seen = {}
    function MessageLineRaw(line) if line == "raw-boom" then error("raw fails") end end
    function MessageLine(line)
      seen[#seen + 1] = line
      if line == "boom" then error("line fails") end
      if line == "swap" then return "swapped" end
    end
    function EndMessage() return "250 2.0.0 seen " .. table.concat(seen, ",") end`);
  const before = h.hookStats('MessageLine').errors;
  const c = await openSession(h.port);
  await c.cmd('MAIL FROM:<a@example.com>');
  await c.cmd('RCPT TO:<errs@localhost>');
  assert.equal((await c.cmd('DATA')).code, 354);
  assert.equal((await c.cmd('Subject: e\r\n\r\nswap\r\nboom\r\nswap\r\nraw-boom\r\nswap\r\n.')).raw, '250 2.0.0 seen Subject: e,,swap,boom,swap,raw-boom,swap\r\n');
  c.close();
  const [m] = await h.mailbox('localhost/errs');
  assert.equal(bodyOf(m), 'swapped\r\nboom\r\nswapped\r\nraw-boom\r\nswapped\r\n');
  assert.ok(h.hookStats('MessageLine').errors > before, 'the error is counted');
});

test('line callbacks that keep every line store the message byte for byte as without a script, however the data arrives', async () => {
  // Bare LF (stored as CRLF), CR before CRLF, a bare CR, dot-stuffing, 8-bit bytes, a long line,
  // and a last line that ends in the final dot's CRLF.
  const body = `Subject: bytes\r\n\r\nbare\nlf\r\ncr\r\r\nmid\rcr\r\n..dotted\r\n8bit \xe9\xff\x00\r\n${'x'.repeat(900)}\r\n\r\nlast`;
  const send = async (box: string): Promise<string> => {
    const c = await openSession(h.port);
    await c.cmd('MAIL FROM:<a@example.com>');
    await c.cmd(`RCPT TO:<${box}@localhost>`);
    assert.equal((await c.cmd('DATA')).code, 354);
    const data = Buffer.from(`${body}\r\n.\r\n`, 'latin1');
    // Odd-sized writes with pauses, so lines and CRLFs arrive split across reads.
    for (let at = 0; at < data.length; at += 37) {
      c.write(data.subarray(at, at + 37));
      if (at % 5 === 0) await new Promise((r) => setTimeout(r, 2));
    }
    assert.equal((await c.read()).code, 250);
    c.close();
    const [m] = await h.mailbox(`localhost/${box}`);
    return bodyOf(m);
  };
  await h.setScript('function DoNOOP() end');
  const plain = await send('bytes-plain');
  await h.setScript('local n = 0 function MessageLineRaw(line) n = n + 1 end function MessageLine(line) return nil end');
  const kept = await send('bytes-kept');
  assert.equal(kept, plain);
  assert.ok(plain.includes('bare\r\nlf\r\ncr\r\r\nmid\rcr\r\n.dotted\r\n'), JSON.stringify(plain.slice(0, 80)));
  // One changed line in a batch: the others are still stored as they came.
  await h.setScript('function MessageLine(line) if line == "lf" then return "LF" end end');
  assert.equal(await send('bytes-one'), plain.replace('\r\nlf\r\n', '\r\nLF\r\n'));
});

test('with line callbacks, an over-long data line still gets 552 and the session goes on', async () => {
  await h.setScript('local n = 0 function MessageLine(line) n = n + 1 end function EndMessage() return "" end');
  const c = await openSession(h.port);
  await c.cmd('MAIL FROM:<a@example.com>');
  await c.cmd('RCPT TO:<longline@localhost>');
  assert.equal((await c.cmd('DATA')).code, 354);
  // 2 MB without a line end, in pieces: held back only up to the line limit meanwhile.
  c.write('Subject: long\r\n\r\n');
  for (let i = 0; i < 32; i++) c.write('x'.repeat(64 * 1024));
  assert.match((await c.cmd('\r\nshort\r\n.')).raw, /^552 5\.3\.4 /);
  await c.cmd('MAIL FROM:<a@example.com>');
  await c.cmd('RCPT TO:<longline@localhost>');
  assert.equal((await c.cmd('DATA')).code, 354);
  assert.equal((await c.cmd('Subject: fine\r\n\r\nbody\r\n.')).code, 250);
  c.close();
  const box = await h.mailbox('localhost/longline');
  assert.equal(box.length, 1);
  assert.equal(bodyOf(box[0]), 'body\r\n');
});

test('the per-line callbacks also see BDAT data', async () => {
  await h.setScript(`
    function MessageLine(line) if line == "swap" then return "swapped" end end`);
  const c = await openSession(h.port);
  await c.cmd('MAIL FROM:<a@example.com>');
  await c.cmd('RCPT TO:<bdat@localhost>');
  const data = 'Subject: bdat\r\n\r\nsw';
  c.write(`BDAT ${data.length}\r\n${data}`);
  assert.equal((await c.read()).code, 250);
  c.write('BDAT 8 LAST\r\nap\r\n..\r\n');
  assert.equal((await c.read()).code, 250);
  c.close();
  const [m] = await h.mailbox('localhost/bdat');
  assert.equal(bodyOf(m), 'swapped\r\n..\r\n');
});

// ---- End ---------------------------------------------------------------------------------

test('End: called exactly once per session, whether it ends by QUIT or by the client going away', async () => {
  await h.setScript('function End() end');
  const before = h.hookStats('End').calls;
  const c = await openSession(h.port);
  await c.cmd('QUIT');
  await c.waitClosed();
  const d = await openSession(h.port);
  await d.cmd('MAIL FROM:<a@example.com>');
  d.close();
  await h.waitHookCalls('End', before + 2);
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(h.hookStats('End').calls, before + 2);
});

// ---- reply strings (S5) ------------------------------------------------------------------

test('S5: multi-line replies get continuation, LF alone separates lines, 421 closes', async () => {
  await h.setScript(`
    function DoNOOP()
      if HeloName == "lf.test" then return "250 one\\ntwo\\nthree" end
      if HeloName == "close.test" then return "421 4.3.2 closing now" end
      return "250-2.0.0 first\\r\\n250 2.0.0 last"
    end`);
  const c = await openSession(h.port);
  assert.equal((await c.cmd('NOOP')).raw, '250-2.0.0 first\r\n250 2.0.0 last\r\n');
  await c.cmd('EHLO lf.test');
  assert.equal((await c.cmd('NOOP')).raw, '250-one\r\n250-two\r\n250 three\r\n');
  await c.cmd('EHLO close.test');
  assert.equal((await c.cmd('NOOP')).raw, '421 4.3.2 closing now\r\n');
  await c.waitClosed();
});

test('S5: a string without a valid code is the default reply; CR/LF cannot inject a reply; lines stay within 512 octets', async () => {
  await h.setScript(`
    function DoNOOP()
      if HeloName == "nocode.test" then return "hello there" end
      if HeloName == "badcode.test" then return "600 out of range" end
      if HeloName == "long.test" then return "250 " .. string.rep("x", 2000) end
      return "250 ok\\r\\n550 5.7.1 injected\\r\\n"
    end
    function DoRSET() return "250 a\\rb\\0c\\n\\n221 x" end`);
  const c = await openSession(h.port);
  // Every line of the script's text stays inside the one 250 reply.
  const r = await c.cmd('NOOP');
  assert.equal(r.raw, '250-ok\r\n250 injected\r\n');
  // A bare CR separates lines too; NUL never reaches the wire; an empty line stays a line.
  assert.equal((await c.cmd('RSET')).raw, '250-a\r\n250-b c\r\n250-\r\n250 x\r\n');
  await c.cmd('EHLO nocode.test');
  assert.equal((await c.cmd('NOOP')).raw, '250 2.0.0 Ok\r\n');
  await c.cmd('EHLO badcode.test');
  assert.equal((await c.cmd('NOOP')).raw, '250 2.0.0 Ok\r\n');
  await c.cmd('EHLO long.test');
  const long = await c.cmd('NOOP');
  assert.equal(long.lines.length, 1);
  assert.ok(long.raw.length <= 512, `line of ${long.raw.length} octets`);
  assert.match(long.raw, /^250 x+\r\n$/);
  // The session is still in step.
  assert.equal((await c.cmd('MAIL FROM:<a@example.com>')).code, 250);
  c.close();
});
