import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { startScriptServer, type ScriptHarness } from '../helpers/script-server.js';
import { TestClient, openSession, sendMail } from '../helpers/smtp-client.js';
import { REPORT_PRELUDE, report } from '../helpers/lua-report.js';

// The VPOP3 helper functions inside ProcessMessage over SMTP (README, "VPOP3 helper
// functions"), their error outside it, a runaway ProcessMessage (S4), and malformed MIME.

let h: ScriptHarness;

before(async () => {
  // Generous: the helpers walk the stored file; only the runaway test needs the budget to fire.
  h = await startScriptServer('', { scripts: { timeMs: 1500 } });
});
after(async () => {
  await h.stop();
});

const setScript = (lua: string): Promise<void> => h.setScript(REPORT_PRELUDE + lua);
const queueId = (r: { lines: string[] }): string => /queued as (\S+)/.exec(r.lines[0])?.[1] ?? '';
const bytes = (s: string): Buffer => Buffer.from(s, 'latin1');

const BINARY = Buffer.from(Array.from({ length: 700 }, (_, i) => (i * 131 + 7) & 0xff));
const QP_TEXT = 'Caf\xe9 cr\xe8me, a line long enough to need a soft break in quoted-printable, really quite long.\r\nSecond line.';
const QP_BODY = 'Caf=E9 cr=E8me, a line long enough to need a soft break in quoted-printab=\r\nle, really quite long.\r\nSecond line.';
const HELPER_MSG =
  'From: s@example.com\r\n' +
  'To: helper@localhost\r\n' +
  'Subject: helpers\r\n' +
  'Content-Type: multipart/mixed; boundary=b1\r\n' +
  '\r\n' +
  '--b1\r\n' +
  'Content-Type: text/plain; charset=iso-8859-1\r\n' +
  'Content-Transfer-Encoding: quoted-printable\r\n' +
  '\r\n' +
  `${QP_BODY}\r\n` +
  '--b1\r\n' +
  'Content-Type: application/octet-stream; name=data.bin\r\n' +
  'Content-Transfer-Encoding: BASE64\r\n' +
  '\r\n' +
  `${(BINARY.toString('base64').match(/.{1,76}/g) ?? []).join('\r\n')}\r\n` +
  '--b1--\r\n';

test('helpers inside ProcessMessage: GetMessageLines and MessageReset walk the stored file; parts, headers and decoded bodies', async () => {
  await setScript(`
    function ProcessMessage(mailfrom, subject, recipients, actions, structure)
      local first = VPOP3.GetMessageLines()
      local three = VPOP3.GetMessageLines(3)
      local all = { first[1], three[1], three[2], three[3] }
      repeat
        local l = VPOP3.GetMessageLines(7)
        for _, x in ipairs(l) do all[#all + 1] = x end
      until #l == 0
      put("counts", { #first, #three, #VPOP3.GetMessageLines(5) })
      VPOP3.MessageReset()
      put("again", VPOP3.GetMessageLines(2))
      put("all", table.concat(all, "\\n"))
      put("paths", (function() local p = {} for i, r in ipairs(structure) do p[i] = r.Path end return p end)())
      put("part2", VPOP3.GetMessagePart(2))
      put("header2", VPOP3.GetMessagePartHeader("2"))
      put("body2", VPOP3.GetMessagePartBody("2"))
      put("body1", VPOP3.GetMessagePartBody("1"))
      put("headerText", VPOP3.GetMessagePartHeader("text"))
      put("bodyText", VPOP3.GetMessagePartBody("TEXT"))
      put("missing", { VPOP3.GetMessagePart("9") == nil, VPOP3.GetMessagePartBody("1.5") == nil })
      put("sha", VPOP3.HexString(VPOP3.SHA256(VPOP3.GetMessagePartBody("2"))))
      put("ranges", (function() local t = {} for _, r in ipairs(structure) do t[r.Path] = { r.Start, r.End } end return t end)())
    end`);
  const c = await openSession(h.port);
  const r = await sendMail(c, 's@example.com', ['helper@localhost'], HELPER_MSG);
  assert.equal(r.code, 250, r.raw);
  const got = await report(c);
  c.close();
  const [file] = await h.mailbox('localhost/helper');
  // The stored file is the message the helpers read: our Return-Path and Received lines first.
  assert.ok(file.startsWith('Return-Path: <s@example.com>\r\nReceived: '));
  const lines = file.slice(0, -2).split('\r\n');
  assert.equal(got.all, lines.join('\n'));
  assert.deepEqual(got.counts, [1, 3, 0]);
  assert.deepEqual(got.again, lines.slice(0, 2));
  assert.deepEqual(got.paths, ['TEXT', '1', '2']);

  const [s2, e2] = got.ranges['2'];
  assert.equal(got.part2, file.slice(s2, e2));
  const header2 = 'Content-Type: application/octet-stream; name=data.bin\r\nContent-Transfer-Encoding: BASE64\r\n';
  assert.ok(got.part2.startsWith(`${header2}\r\n`));
  assert.equal(got.header2, header2);
  assert.ok(bytes(got.body2).equals(BINARY), 'base64 body decoded byte for byte');
  assert.equal(got.body1, QP_TEXT);
  // The top-level row's header is the message header (trace lines included); a multipart's
  // body comes back as stored.
  const blank = file.indexOf('\r\n\r\n');
  assert.equal(got.headerText, file.slice(0, blank + 2));
  assert.equal(got.bodyText, file.slice(blank + 4));
  assert.deepEqual(got.missing, [true, true]);
  assert.equal(got.sha, createHash('sha256').update(BINARY).digest('hex'));
});

test('outside ProcessMessage the message helpers raise a clear Lua error: a script error, and the default reply', async () => {
  await setScript(`
    local function try(where)
      local ok, err = pcall(VPOP3.GetMessageLines, 1)
      local ok2, err2 = pcall(VPOP3.GetMessagePart, "1")
      put(where, { ok, tostring(err), ok2, tostring(err2) })
    end
    function EndMessage() try("EndMessage") return "" end
    function CheckRecipients() try("CheckRecipients") end
    function ProcessMessage() put("inside", #VPOP3.GetMessageLines(1)) end
    function MonitorBcc() try("MonitorBcc") return "" end
    function LogRecipients() try("LogRecipients") end
    function DoRSET() VPOP3.MessageReset() return "250 2.0.0 not reached" end
    function DoHELP() return VPOP3.GetMessagePartBody("1") end`);
  const c = await openSession(h.port);
  // A BCC recipient (not in To), so MonitorBcc runs too.
  assert.equal((await sendMail(c, 's@example.com', ['o1@localhost', 'o2@localhost'], 'To: o1@localhost\r\nSubject: x\r\n\r\nb\r\n')).code, 250);
  const rsetErrors = h.hookStats('DoRSET').errors;
  assert.equal((await c.cmd('RSET')).raw, '250 2.0.0 Ok\r\n');
  assert.equal(h.hookStats('DoRSET').errors, rsetErrors + 1);
  const help = await c.cmd('HELP');
  assert.equal(help.code, 214);
  assert.match(help.raw, /Commands: EHLO/);
  const got = await report(c);
  c.close();
  assert.equal(got.inside, 1);
  for (const where of ['EndMessage', 'CheckRecipients', 'MonitorBcc', 'LogRecipients']) {
    const [ok, err, ok2, err2] = got[where];
    assert.equal(ok, false, where);
    assert.match(err, /VPOP3\.GetMessageLines is only available inside ProcessMessage/, where);
    assert.equal(ok2, false, where);
    assert.match(err2, /VPOP3\.GetMessagePart is only available inside ProcessMessage/, where);
  }
});

test('HexString and SHA256 work in any callback', async () => {
  await setScript(`
    function Start() put("start", VPOP3.HexString("\\0\\255A")) return "" end
    function DoHELO(host) put("helo", VPOP3.HexString(VPOP3.SHA256(host))) return false, "" end
    function CheckRecipients(r) put("check", VPOP3.HexString(VPOP3.SHA256(r[1]))) end
    function LogRecipients(r) put("log", VPOP3.HexString(VPOP3.SHA256("x"))) end
    function DoNOOP() put("noop", VPOP3.HexString(VPOP3.SHA256(""))) return REPORT() end`);
  const c = await openSession(h.port, 'hash.test');
  assert.equal((await sendMail(c, 's@example.com', ['hx@localhost'], 'Subject: x\r\n\r\nb\r\n')).code, 250);
  const got = await report(c);
  c.close();
  const sha = (s: string): string => createHash('sha256').update(s).digest('hex');
  assert.deepEqual(
    { start: got.start, helo: got.helo, check: got.check, log: got.log, noop: got.noop },
    { start: '00ff41', helo: sha('hash.test'), check: sha('hx@localhost'), log: sha('x'), noop: sha('') },
  );
});

test('a runaway ProcessMessage is stopped: 451 4.3.0, nothing stored, the script off for that session; other sessions unaffected', async () => {
  await setScript(`
    function ProcessMessage(mailfrom, subject)
      if subject == "loop" then while true do end end
      note("ProcessMessage " .. subject)
    end`);
  const stops = h.hookStats('ProcessMessage').stops;
  const other = await openSession(h.port);
  assert.equal((await other.cmd('MAIL FROM:<b@example.com>')).code, 250);
  assert.equal((await other.cmd('RCPT TO:<calm@localhost>')).code, 250);
  const c = await openSession(h.port);
  await h.settle();
  const before = await readdir(join(h.dataDir, 'queue'));
  const t0 = Date.now();
  const r = await sendMail(c, 's@example.com', ['loop@localhost'], 'Subject: loop\r\n\r\nspin\r\n');
  assert.equal(r.raw, '451 4.3.0 Local error in processing (script stopped)\r\n');
  assert.ok(Date.now() - t0 < 5000);
  assert.equal(h.hookStats('ProcessMessage').stops, stops + 1);
  assert.deepEqual(await h.mailbox('localhost/loop'), []);
  // No queue file left behind (mailbox() waited for delivery to settle).
  assert.deepEqual((await readdir(join(h.dataDir, 'queue'))).sort(), before.sort());
  // The session goes on without its script: the next message is accepted with the defaults.
  assert.equal((await sendMail(c, 's@example.com', ['loop@localhost'], 'Subject: after\r\n\r\nok\r\n')).code, 250);
  assert.equal((await c.cmd('NOOP')).raw, '250 2.0.0 Ok\r\n');
  c.close();
  assert.equal((await h.mailbox('localhost/loop')).length, 1);
  // The other session, opened before and finishing after, still has its script.
  assert.equal((await other.cmd('DATA')).code, 354);
  other.write('Subject: calm\r\n\r\nfine\r\n.\r\n');
  assert.equal((await other.read()).code, 250);
  assert.deepEqual((await report(other)).order, ['ProcessMessage calm']);
  other.close();
  assert.equal((await h.mailbox('localhost/calm')).length, 1);
});

test('malformed MIME (no boundary, bad base64, unterminated multipart) still reaches ProcessMessage with a best-effort structure and is delivered', async () => {
  await setScript(`
    function ProcessMessage(mailfrom, subject, recipients, actions, structure, size, attachments)
      local bodies = {}
      for _, r in ipairs(structure) do bodies[r.Path] = VPOP3.GetMessagePartBody(r.Path) end
      put(subject, { structure = structure, attachments = attachments, bodies = bodies })
    end`);
  const noBoundary = 'Subject: noboundary\r\nContent-Type: multipart/mixed\r\n\r\n--x\r\nContent-Type: text/plain\r\n\r\nhi\r\n--x--\r\n';
  const badBase64 =
    'Subject: badbase64\r\nContent-Type: multipart/mixed; boundary="q"\r\n\r\n' +
    '--q\r\nContent-Type: text/plain\r\n\r\ntext\r\n' +
    '--q\r\nContent-Type: image/png; name="pic.png"\r\nContent-Transfer-Encoding: base64\r\n\r\nQU*JD\r\n!!! ???\r\nRE%VG\r\n' +
    '--q--\r\n';
  const unterminated = 'Subject: unterminated\r\nContent-Type: multipart/mixed; boundary="u"\r\n\r\n--u\r\nContent-Type: text/plain\r\n\r\nfirst\r\n--u\r\nContent-Type: text/html\r\n\r\n<p>runs to the end\r\n';
  const c = await openSession(h.port);
  const sent = new Map<string, string>();
  for (const [name, msg] of [['noboundary', noBoundary], ['badbase64', badBase64], ['unterminated', unterminated]]) {
    const r = await sendMail(c, 's@example.com', ['bad@localhost'], msg);
    assert.equal(r.code, 250, `${name}: ${r.raw}`);
    sent.set(queueId(r), msg);
  }
  const got = await report(c);
  c.close();
  const box = await h.mailbox('localhost/bad');
  assert.equal(box.length, 3);
  // Delivered byte for byte after our trace lines.
  assert.deepEqual(
    box.map((f) => f.slice(f.indexOf('\r\nSubject: ') + 2)),
    [noBoundary, badBase64, unterminated],
  );
  const paths = (name: string): string[] => got[name].structure.map((r: { Path: string }) => r.Path);

  // No boundary: the multipart is one leaf, the whole message.
  assert.deepEqual(paths('noboundary'), ['1']);
  assert.deepEqual([got.noboundary.structure[0].ContentType, got.noboundary.structure[0].ContentSubtype], ['multipart', 'mixed']);
  assert.equal(got.noboundary.structure[0].End, box[0].length);

  // Bad base64: the part is there, decoded with the characters outside the alphabet skipped
  // (RFC 2045 §6.8), and listed as an attachment of that decoded size.
  assert.deepEqual(paths('badbase64'), ['TEXT', '1', '2']);
  assert.equal(got.badbase64.bodies['1'], 'text');
  assert.equal(got.badbase64.bodies['2'], 'ABCDEF');
  assert.deepEqual(got.badbase64.attachments, [{ MIMESection: 3, Name: 'pic.png', MIMEType: 'image/png', Size: 6, Type: 'MIME' }]);

  // Unterminated: the last part runs to the end of the message.
  assert.deepEqual(paths('unterminated'), ['TEXT', '1', '2']);
  const last = got.unterminated.structure[2];
  assert.deepEqual([last.ContentType, last.ContentSubtype, last.End], ['text', 'html', box[2].length]);
  assert.equal(got.unterminated.bodies['2'], '<p>runs to the end\r\n');
  assert.equal(got.unterminated.bodies['1'], 'first');
});

test('BDAT: the end-of-data hooks see the message sent in chunks just as with DATA', async () => {
  await setScript(`
    function ProcessMessage(mailfrom, subject, recipients, actions, structure, size)
      local all = {}
      repeat
        local l = VPOP3.GetMessageLines(100)
        for _, x in ipairs(l) do all[#all + 1] = x end
      until #l == 0
      put("pm", { subject = subject, size = size, lines = #all, last = all[#all] })
      actions.HeaderModifiers = { "X-Chunked: yes" }
      return actions
    end`);
  const c = await TestClient.connect(h.port);
  await c.read();
  assert.equal((await c.cmd('EHLO chunk.test')).code, 250);
  assert.equal((await c.cmd('MAIL FROM:<s@example.com>')).code, 250);
  assert.equal((await c.cmd('RCPT TO:<chunk@localhost>')).code, 250);
  const part1 = 'Subject: chunked\r\n\r\nfirst ';
  const part2 = 'half\r\nlast line\r\n';
  c.write(`BDAT ${part1.length}\r\n${part1}`);
  assert.equal((await c.read()).code, 250);
  c.write(`BDAT ${part2.length} LAST\r\n${part2}`);
  assert.equal((await c.read()).code, 250);
  const got = (await report(c)).pm;
  c.close();
  const [file] = await h.mailbox('localhost/chunk');
  // ProcessMessage saw the stored file before its HeaderModifiers line was added.
  const lines = file.slice(0, -2).split('\r\n').filter((l) => l !== 'X-Chunked: yes');
  assert.deepEqual(got, { subject: 'chunked', size: part1.length + part2.length, lines: lines.length, last: 'last line' });
  assert.ok(file.endsWith('Subject: chunked\r\nX-Chunked: yes\r\n\r\nfirst half\r\nlast line\r\n'), file);
});
