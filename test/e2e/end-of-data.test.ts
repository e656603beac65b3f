import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { startScriptServer, type ScriptHarness } from '../helpers/script-server.js';
import { TestClient, openSession, sendMail } from '../helpers/smtp-client.js';
import { REPORT_PRELUDE, report, utf8Bytes } from '../helpers/lua-report.js';

// ProcessMessage (vendor page; SEMANTICS S19, S6) over SMTP: its arguments, and each action,
// with the stored Maildir files checked.

let h: ScriptHarness;

before(async () => {
  h = await startScriptServer('', { domains: [{ name: 'localhost', catchAll: true }] });
});
after(async () => {
  await h.stop();
});

const setScript = (lua: string): Promise<void> => h.setScript(REPORT_PRELUDE + lua);

/** The queue id from a `250 ... queued as ID` reply. */
const queueId = (r: { lines: string[] }): string => /queued as (\S+)/.exec(r.lines[0])?.[1] ?? '';

/** Files of the queue folder that belong to queue id `id`. */
async function queueFiles(id: string): Promise<string[]> {
  return (await readdir(join(h.dataDir, 'queue'))).filter((n) => n.startsWith(id));
}

/** The header (up to the empty line, without it) and the body of a stored file. */
function split(file: string): { header: string; body: string } {
  const at = file.indexOf('\r\n\r\n');
  return { header: file.slice(0, at + 2), body: file.slice(at + 4) };
}

/** uuencodes `data` as a `begin 644 name` ... `end` block (CRLF lines). */
function uuencode(name: string, data: Buffer): string {
  const ch = (x: number): string => String.fromCharCode(x === 0 ? 96 : x + 32);
  let out = `begin 644 ${name}\r\n`;
  for (let i = 0; i < data.length; i += 45) {
    const chunk = data.subarray(i, i + 45);
    let line = ch(chunk.length);
    for (let j = 0; j < chunk.length; j += 3) {
      const [b0, b1, b2] = [chunk[j], chunk[j + 1] ?? 0, chunk[j + 2] ?? 0];
      line += ch(b0 >> 2) + ch(((b0 & 3) << 4) | (b1 >> 4)) + ch(((b1 & 15) << 2) | (b2 >> 6)) + ch(b2 & 63);
    }
    out += `${line}\r\n`;
  }
  return `${out}\`\r\nend\r\n`;
}

const PDF = Buffer.concat([Buffer.from('%PDF-1.4\n'), Buffer.from(Array.from({ length: 300 }, (_, i) => (i * 37) & 0xff))]);
const b64Lines = (b: Buffer): string => (b.toString('base64').match(/.{1,76}/g) ?? []).join('\r\n');
const SUBJECT = 'Grüße – Bericht';
const PART1 = 'Content-Type: text/plain; charset=us-ascii\r\n\r\nHello, the report is attached.\r\n.leading dot line';
const PART2 =
  'Content-Type: application/pdf; name="report.pdf"\r\n' +
  'Content-Disposition: attachment; filename="report.pdf"\r\n' +
  'Content-Transfer-Encoding: base64\r\n\r\n' +
  b64Lines(PDF);
const MULTIPART =
  'From: Sender <sender@example.com>\r\n' +
  'To: Alice <alice@localhost>\r\n' +
  `Subject: =?UTF-8?B?${Buffer.from(SUBJECT).toString('base64')}?=\r\n` +
  'MIME-Version: 1.0\r\n' +
  'Content-Type: multipart/mixed; boundary="XYZ"\r\n' +
  '\r\n' +
  'This is a preamble.\r\n' +
  `--XYZ\r\n${PART1}\r\n` +
  `--XYZ\r\n${PART2}\r\n` +
  '--XYZ--\r\n' +
  'epilogue\r\n';

/** Sends one message on a new session and returns the final reply and the session. */
async function send(from: string, to: string[], data: string, localAddress?: string): Promise<{ c: TestClient; r: Awaited<ReturnType<typeof sendMail>> }> {
  const c = localAddress ? await TestClient.connect(h.port, { localAddress }) : await openSession(h.port);
  if (localAddress) {
    assert.equal((await c.read()).code, 220);
    assert.equal((await c.cmd('EHLO client.test')).code, 250);
  }
  const r = await sendMail(c, from, to, data);
  return { c, r };
}

// ---- arguments ---------------------------------------------------------------------------

test('ProcessMessage arguments: sender, decoded subject, envelope recipients, default actions, structure, size, attachments', async () => {
  await setScript(`
    function ProcessMessage(mailfrom, subject, recipients, actions, structure, size, attachments)
      put("mailfrom", mailfrom) put("subject", subject) put("recipients", recipients)
      put("actions", actions) put("structure", structure) put("size", size) put("attachments", attachments)
      put("types", { type(actions.SendToOriginalRecipients), type(actions.Delete), type(actions.Ignore),
        type(actions.Reason), type(actions.Recipients), type(actions.HeaderModifiers), math.type(size),
        math.type(structure[1].Start), math.type(structure[1].End) })
      local parts = {}
      for _, p in ipairs(structure) do parts[p.Path] = VPOP3.GetMessagePart(p.Path) end
      put("parts", parts)
      return actions
    end`);
  const { c, r } = await send('sender@example.com', ['bob@localhost', 'carol@localhost'], MULTIPART);
  assert.equal(r.code, 250, r.raw);
  const got = await report(c);
  c.close();

  assert.equal(got.mailfrom, 'sender@example.com');
  assert.equal(got.subject, utf8Bytes(SUBJECT));
  // The envelope, not the To header.
  assert.deepEqual(got.recipients, ['bob@localhost', 'carol@localhost']);
  assert.deepEqual(got.actions, { SendToOriginalRecipients: true, Delete: false, Ignore: false, Reason: '', Recipients: [], HeaderModifiers: [] });
  assert.deepEqual(got.types, ['boolean', 'boolean', 'boolean', 'string', 'table', 'table', 'integer', 'integer', 'integer']);
  // The size of the message as the client sent it.
  assert.equal(got.size, Buffer.byteLength(MULTIPART));

  const [file] = await h.mailbox('localhost/bob');
  assert.deepEqual(await h.mailbox('localhost/carol'), [file]);
  const first = file.indexOf('--XYZ\r\n') + 7;
  const second = file.indexOf('--XYZ\r\n', first) + 7;
  const row = (Path: string, ContentType: string, ContentSubtype: string, Start: number, End: number, names: [string, string, string] = ['', '', '']) => ({
    Path,
    ContentType,
    ContentSubtype,
    ContentTypeFilename: names[0],
    ContentDisposition: names[1],
    ContentDispositionFilename: names[2],
    Start,
    End,
  });
  assert.deepEqual(got.structure, [
    row('TEXT', 'multipart', 'mixed', 0, file.length),
    row('1', 'text', 'plain', first, file.indexOf('\r\n--XYZ\r\n', first)),
    row('2', 'application', 'pdf', second, file.indexOf('\r\n--XYZ--\r\n'), ['report.pdf', 'attachment', 'report.pdf']),
  ]);
  // Start/End are offsets into the stored file (which is the queue file): each part's bytes
  // are exactly the part as sent, and GetMessagePart returns exactly those bytes.
  const slice = (p: { Start: number; End: number }): string => file.slice(p.Start, p.End);
  assert.equal(slice(got.structure[1]), PART1);
  assert.equal(slice(got.structure[2]), PART2);
  assert.equal(slice(got.structure[0]), file);
  for (const p of got.structure) assert.equal(got.parts[p.Path], slice(p), `GetMessagePart("${p.Path}")`);

  assert.deepEqual(got.attachments, [{ MIMESection: 3, Name: 'report.pdf', MIMEType: 'application/pdf', Size: PDF.length, Type: 'MIME' }]);
});

test('ProcessMessage attachments: a uuencoded file in the text body is listed as UUE; a plain message has one structure row', async () => {
  await setScript(`
    function ProcessMessage(mailfrom, subject, recipients, actions, structure, size, attachments)
      put("structure", structure) put("attachments", attachments) put("subject", subject)
    end`);
  const data = Buffer.from('Hello from the uuencoding era.\nSecond line of it, a bit longer than one uu line holds.\n');
  const msg = `From: old@example.com\r\nTo: uu@localhost\r\nSubject: plain =?ISO-8859-1?Q?caf=E9?=\r\n\r\nSee the file below.\r\n\r\n${uuencode('hello.txt', data)}Bye.\r\n`;
  const { c, r } = await send('old@example.com', ['uu@localhost'], msg);
  assert.equal(r.code, 250, r.raw);
  const got = await report(c);
  c.close();
  const [file] = await h.mailbox('localhost/uu');
  assert.equal(got.subject, utf8Bytes('plain café'));
  assert.deepEqual(got.structure, [
    { Path: '1', ContentType: 'text', ContentSubtype: 'plain', ContentTypeFilename: '', ContentDisposition: '', ContentDispositionFilename: '', Start: 0, End: file.length },
  ]);
  assert.deepEqual(got.attachments, [{ MIMESection: 1, Name: 'hello.txt', MIMEType: 'text/plain', Size: data.length, Type: 'UUE' }]);
  // ProcessMessage returned nothing: the defaults apply, the message is delivered untouched.
  assert.ok(file.endsWith(msg), 'stored as sent');
});

// ---- actions -----------------------------------------------------------------------------

test('Delete and Ignore: refused with a 5xx carrying Reason; nothing is stored or queued', async () => {
  await setScript(`
    function ProcessMessage(mailfrom, subject, recipients, actions)
      actions.Delete = true
      actions.Ignore = true
      if subject == "own" then actions.Reason = "554 5.7.0 Own reply from the script"
      elseif subject == "numbers" then actions.Delete = 1 actions.Ignore = 1 actions.Reason = "Numbers count as true"
      else actions.Reason = "Spam detected, go away" end
      return actions
    end`);
  const queued = async (): Promise<string[]> => (await readdir(join(h.dataDir, 'queue'))).sort();
  const before = await queued();
  let { c, r } = await send('s@example.com', ['rej@localhost'], 'Subject: plain\r\n\r\nbody\r\n');
  assert.equal(r.raw, '550 5.7.1 Spam detected, go away\r\n');
  // The session goes on.
  r = await sendMail(c, 's@example.com', ['rej@localhost'], 'Subject: own\r\n\r\nbody\r\n');
  assert.equal(r.raw, '554 5.7.0 Own reply from the script\r\n');
  r = await sendMail(c, 's@example.com', ['rej@localhost'], 'Subject: numbers\r\n\r\nbody\r\n');
  assert.equal(r.raw, '550 5.7.1 Numbers count as true\r\n');
  c.close();
  ({ c, r } = await send('s@example.com', ['rej@localhost'], 'Subject: plain\r\n\r\nbody\r\n'));
  c.close();
  assert.equal(r.code, 550);
  assert.deepEqual(await h.mailbox('localhost/rej'), []);
  // No queue file was left behind, committed or not.
  assert.deepEqual(await queued(), before);
});

test('Ignore alone: 250, and the message is neither stored nor queued (blackholed); Ignore = 0 is false', async () => {
  await setScript(`
    function ProcessMessage(mailfrom, subject, recipients, actions)
      if subject == "zero" then actions.Ignore = 0 else actions.Ignore = true end
      actions.Reason = "not used"
      return actions
    end`);
  const { c, r } = await send('s@example.com', ['hole@localhost'], 'Subject: gone\r\n\r\nbody\r\n');
  assert.match(r.raw, /^250 2\.0\.0 Ok: queued as \S+\r\n$/);
  const id = queueId(r);
  assert.deepEqual(await h.mailbox('localhost/hole'), []);
  assert.deepEqual(await queueFiles(id), []);
  assert.equal((await h.server.spool.list()).some((e) => e.id === id), false);
  const kept = await sendMail(c, 's@example.com', ['hole@localhost'], 'Subject: zero\r\n\r\nbody\r\n');
  assert.equal(kept.code, 250);
  c.close();
  const box = await h.mailbox('localhost/hole');
  assert.equal(box.length, 1);
  assert.match(box[0], /\r\nSubject: zero\r\n/);
});

test('Recipients: added addresses (with or without <>) get the message too; a remote one is queued for relay with a remote route', async () => {
  await setScript(`
    function ProcessMessage(mailfrom, subject, recipients, actions)
      actions.Recipients = { "extra@localhost", "<far@remote.example>", " orig@localhost ", "" }
      return actions
    end`);
  const msg = 'From: s@example.com\r\nSubject: fan out\r\n\r\nfor everyone\r\n';
  const { c, r } = await send('s@example.com', ['orig@localhost'], msg);
  c.close();
  assert.equal(r.code, 250, r.raw);
  const id = queueId(r);
  const orig = await h.mailbox('localhost/orig');
  const extra = await h.mailbox('localhost/extra');
  // An added address that was already a recipient gets one copy.
  assert.equal(orig.length, 1);
  assert.deepEqual(extra, orig);
  assert.ok(orig[0].endsWith(msg));
  const env = (await h.server.spool.list()).find((e) => e.id === id);
  assert.ok(env, 'the message stays queued for its remote recipient');
  const remote = env.recipients.filter((x) => x.state === 'pending');
  assert.deepEqual(
    remote.map((x) => [x.address, x.route.kind]),
    [['far@remote.example', 'remote']],
  );
  assert.deepEqual(env.recipients.map((x) => x.address).sort(), ['extra@localhost', 'far@remote.example', 'orig@localhost']);
});

test('SendToOriginalRecipients false: the added recipients replace the envelope ones (0 counts as false)', async () => {
  await setScript(`
    function ProcessMessage(mailfrom, subject, recipients, actions)
      actions.SendToOriginalRecipients = (subject == "number") and 0 or false
      actions.Recipients = { "instead@localhost" }
      return actions
    end`);
  const { c, r } = await send('s@example.com', ['first@localhost', 'second@localhost'], 'Subject: bool\r\n\r\nredirected\r\n');
  assert.equal(r.code, 250, r.raw);
  const r2 = await sendMail(c, 's@example.com', ['first@localhost'], 'Subject: number\r\n\r\nredirected\r\n');
  assert.equal(r2.code, 250, r2.raw);
  c.close();
  assert.deepEqual(await h.mailbox('localhost/first'), []);
  assert.deepEqual(await h.mailbox('localhost/second'), []);
  const box = await h.mailbox('localhost/instead');
  assert.equal(box.length, 2);
  assert.match(box[0], /\r\nSubject: bool\r\n/);
  assert.match(box[1], /\r\nSubject: number\r\n/);
});

test('HeaderModifiers: replace a field in place, add one, remove one with "Name:"; the body is untouched byte for byte', async () => {
  await setScript(`
    function ProcessMessage(mailfrom, subject, recipients, actions)
      actions.HeaderModifiers = { "Subject: Rewritten subject", "X-Foo: bar baz", "X-Mailer:", "x-folded: now one line" }
      return actions
    end`);
  const body =
    'Subject: not a header, this is the body\r\n' +
    'X-Mailer: also body\r\n' +
    '\r\n' +
    '.dot\r\n' +
    'bytes \xe9\xff\x01 and a tab\there   \r\n' +
    'no final newline';
  const msg =
    'From: s@example.com\r\n' +
    'Subject: original subject\r\n' +
    'X-Mailer: Mailer 1.0\r\n' +
    'X-Folded: first\r\n\tsecond\r\n' +
    'X-Mailer: second copy\r\n' +
    'To: mod@localhost\r\n' +
    '\r\n' +
    body;
  const c = await openSession(h.port);
  let r = await c.cmd('MAIL FROM:<s@example.com> BODY=8BITMIME');
  assert.equal(r.code, 250);
  assert.equal((await c.cmd('RCPT TO:<mod@localhost>')).code, 250);
  assert.equal((await c.cmd('DATA')).code, 354);
  c.write(Buffer.from(`${msg.replace(/^\./gm, '..')}\r\n.\r\n`, 'latin1'));
  r = await c.read();
  c.close();
  assert.equal(r.code, 250, r.raw);
  const [file] = await h.mailbox('localhost/mod');
  const { header, body: stored } = split(file);
  // Our trace lines stay first, as received.
  assert.match(header, /^Return-Path: <s@example\.com>\r\nReceived: from client\.test /);
  const fields = header.slice(header.indexOf('\r\nFrom: ') + 2);
  assert.equal(fields, 'From: s@example.com\r\nSubject: Rewritten subject\r\nx-folded: now one line\r\nTo: mod@localhost\r\nX-Foo: bar baz\r\n');
  // The data ends with the CRLF in front of the final dot, which is the message's.
  assert.equal(stored, `${body}\r\n`);
});

test('ProcessMessage raising an error: logged, and the message goes through with the default actions', async () => {
  await setScript(`
    function ProcessMessage(mailfrom, subject, recipients, actions)
      actions.Ignore = true
      error("broken script")
    end`);
  const errors = h.hookStats('ProcessMessage').errors;
  const { c, r } = await send('s@example.com', ['err@localhost'], 'Subject: still here\r\n\r\nbody\r\n');
  c.close();
  assert.equal(r.code, 250, r.raw);
  assert.equal(h.hookStats('ProcessMessage').errors, errors + 1);
  assert.equal((await h.mailbox('localhost/err')).length, 1);
});

test('HeaderModifiers: a value in UTF-8 is stored in UTF-8; 8-bit bytes elsewhere in the header stay as they were', async () => {
  await setScript(`
    function ProcessMessage(mailfrom, subject, recipients, actions)
      actions.HeaderModifiers = { "X-Note: Grüße – ok", "Subject: Café" }
      return actions
    end`);
  const c = await openSession(h.port);
  assert.equal((await c.cmd('MAIL FROM:<s@example.com>')).code, 250);
  assert.equal((await c.cmd('RCPT TO:<utf@localhost>')).code, 250);
  assert.equal((await c.cmd('DATA')).code, 354);
  c.write(Buffer.from('X-Legacy: caf\xe9\r\nSubject: old\r\n\r\nbody \xff\r\n.\r\n', 'latin1'));
  assert.equal((await c.read()).code, 250);
  c.close();
  const [file] = await h.mailbox('localhost/utf');
  assert.ok(file.endsWith(`X-Legacy: caf\xe9\r\n${utf8Bytes('Subject: Café\r\nX-Note: Grüße – ok')}\r\n\r\nbody \xff\r\n`), JSON.stringify(file));
});
