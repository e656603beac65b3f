import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import libmime from 'libmime';
import type { Envelope } from '../../src/queue/envelope.js';
import {
  buildDsn,
  prepareDsn,
  selectDsnRecipients,
  utf8AddrXtext,
  wantsNotification,
  type DsnOptions,
  type RecipientOutcome,
} from '../../src/delivery/dsn.js';

// ---------------------------------------------------------------- a small MIME reader

interface Part {
  fields: [string, string][];
  body: Buffer;
}

/** Header fields (unfolded) and body of an entity. */
function parseEntity(buf: Buffer): Part {
  const end = buf.indexOf('\r\n\r\n');
  const head = (end < 0 ? buf : buf.subarray(0, end)).toString('utf8');
  const body = end < 0 ? Buffer.alloc(0) : buf.subarray(end + 4);
  const fields: [string, string][] = [];
  for (const line of head.split('\r\n')) {
    assert.ok(line.length <= 998, 'line length');
    if (/^[ \t]/.test(line)) {
      assert.ok(fields.length, 'continuation without a field');
      fields[fields.length - 1][1] += '\r\n' + line;
    } else if (line) {
      const i = line.indexOf(':');
      assert.ok(i > 0, `not a header field: ${JSON.stringify(line)}`);
      fields.push([line.slice(0, i), line.slice(i + 1)]);
    }
  }
  return { fields: fields.map(([k, v]) => [k.toLowerCase(), v.replace(/\r\n/g, '').trim()]), body };
}

function field(p: Part, name: string): string | undefined {
  return p.fields.find(([k]) => k === name.toLowerCase())?.[1];
}

function contentType(p: Part): { value: string; params: Record<string, string> } {
  const v = libmime.parseHeaderValue(field(p, 'content-type') ?? 'text/plain');
  return { value: v.value.toLowerCase(), params: v.params as Record<string, string> };
}

/** Body parts of a multipart entity, byte-exact (RFC 2046 §5.1.1). */
function multipart(p: Part): Part[] {
  const boundary = contentType(p).params.boundary;
  assert.ok(boundary, 'boundary');
  const body = Buffer.concat([Buffer.from('\r\n'), p.body]);
  const delim = Buffer.from(`\r\n--${boundary}`);
  const parts: Part[] = [];
  let pos = body.indexOf(delim);
  assert.ok(pos >= 0, 'first delimiter');
  for (;;) {
    const after = pos + delim.length;
    if (body.subarray(after, after + 2).toString() === '--') break;
    const start = body.indexOf('\r\n', after) + 2;
    const next = body.indexOf(delim, start);
    assert.ok(next >= 0, 'close delimiter');
    parts.push(parseEntity(body.subarray(start, next)));
    pos = next;
  }
  return parts;
}

/** message/delivery-status groups: per-message fields first, then one per recipient. */
function statusGroups(p: Part): Map<string, string>[] {
  return p.body
    .toString('utf8')
    .trim()
    .split(/\r\n\r\n/)
    .map((g) => new Map(parseEntity(Buffer.from(g + '\r\n\r\n')).fields));
}

interface ParsedDsn {
  top: Part;
  text: string;
  textPart: Part;
  statusPart: Part;
  perMessage: Map<string, string>;
  recipients: Map<string, string>[];
  original?: Part;
}

function parseDsn(bytes: Buffer): ParsedDsn {
  assert.ok(!/(^|[^\r])\n/.test(bytes.toString('latin1')), 'only CRLF line ends');
  const top = parseEntity(bytes);
  assert.equal(contentType(top).value, 'multipart/report');
  assert.equal(contentType(top).params['report-type'], 'delivery-status');
  const parts = multipart(top);
  assert.ok(parts.length === 2 || parts.length === 3, `parts: ${parts.length}`);
  const [textPart, statusPart, original] = parts;
  assert.equal(contentType(textPart).value, 'text/plain');
  const raw = textPart.body.toString('latin1');
  const text =
    field(textPart, 'content-transfer-encoding') === 'quoted-printable'
      ? Buffer.from(raw.replace(/=\r\n/g, '').replace(/=([0-9A-F]{2})/g, (_, h: string) => String.fromCharCode(parseInt(h, 16))), 'latin1').toString('utf8')
      : raw;
  const [perMessage, ...recipients] = statusGroups(statusPart);
  return { top, text, textPart, statusPart, perMessage, recipients, original };
}

// ---------------------------------------------------------------- fixtures

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'moonpost-dsn-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

const RETURN_PATH_LINE = 'Return-Path: <sender@example.com>\r\n';
const HEADER = 'From: Sender <sender@example.com>\r\nTo: x@remote.test, y@remote.test\r\nSubject: hello\r\nMessage-ID: <m1@example.com>\r\n';
const MESSAGE = HEADER + '\r\nFirst line\r\n\r\n--not-a-boundary\r\nLast line\r\n';

let fileNo = 0;
async function queueFile(message: string | Buffer, prefix = RETURN_PATH_LINE): Promise<{ path: string; offset: number }> {
  const path = join(dir, `m${++fileNo}.msg`);
  const msg = typeof message === 'string' ? Buffer.from(message, 'utf8') : message;
  await writeFile(path, Buffer.concat([Buffer.from(prefix), msg]));
  return { path, offset: Buffer.byteLength(prefix) };
}

function envelope(extra: Partial<Envelope> = {}): Envelope {
  return {
    id: 'QID1',
    sender: 'sender@example.com',
    recipients: [
      { address: 'x@remote.test', route: { kind: 'remote' }, state: 'pending', dsn: { notify: ['FAILURE', 'DELAY'], orcpt: 'rfc822;X@Remote.test' } },
      { address: 'y@remote.test', route: { kind: 'remote' }, state: 'pending' },
      { address: 'z@remote.test', route: { kind: 'remote' }, state: 'pending', original: 'list@example.com', dsn: { notify: ['NEVER'] } },
      { address: 's@remote.test', route: { kind: 'remote' }, state: 'pending', dsn: { notify: ['SUCCESS'] } },
    ],
    received: '2026-03-01T10:00:00.000Z',
    headerOffset: RETURN_PATH_LINE.length,
    size: 0,
    client: { ip: '192.0.2.9', helo: 'client.example.com' },
    service: { id: 0, name: 'smtp' },
    dsn: { envid: 'ENV-42' },
    ...extra,
  };
}

const lastAttempt = new Date('2026-03-02T11:22:33.000Z');
const failedX: RecipientOutcome = {
  address: 'x@remote.test',
  action: 'failed',
  status: '5.1.1',
  remoteMta: 'mx.remote.test',
  diagnostic: "550-5.1.1 The email account that you tried to reach does not exist. Please try\r\n550 5.1.1 double-checking the recipient's email address",
  lastAttempt,
};

async function dsnFor(outcomes: RecipientOutcome[], extra: Partial<DsnOptions> = {}, env = envelope(), message: string | Buffer = MESSAGE) {
  const file = await queueFile(message);
  const opts: DsnOptions = { envelope: { ...env, headerOffset: file.offset }, messagePath: file.path, reportingMta: 'mx.moon.test', outcomes, ...extra };
  return { dsn: await buildDsn(opts), file, opts };
}

// ---------------------------------------------------------------- tests

test('a failure: top header, human text quoting the reply, status fields, the original in full', async () => {
  const now = new Date('2026-03-02T11:22:40.000Z');
  const { dsn } = await dsnFor([failedX], { now, messageId: '<dsn1@mx.moon.test>' });
  assert.ok(dsn);
  assert.equal(dsn.sender, '');
  assert.equal(dsn.recipient, 'sender@example.com');
  assert.equal(dsn.body, '7BIT');
  assert.equal(dsn.smtputf8, false);
  assert.equal(dsn.returned, 'full');
  assert.equal(dsn.size, dsn.bytes.length);
  const p = parseDsn(dsn.bytes);
  assert.equal(field(p.top, 'from'), 'Mail Delivery System <MAILER-DAEMON@mx.moon.test>');
  assert.equal(field(p.top, 'to'), '<sender@example.com>');
  assert.equal(field(p.top, 'subject'), 'Undelivered Mail Returned to Sender');
  assert.equal(field(p.top, 'message-id'), '<dsn1@mx.moon.test>');
  assert.equal(field(p.top, 'auto-submitted'), 'auto-replied');
  assert.equal(field(p.top, 'mime-version'), '1.0');
  assert.equal(Date.parse(field(p.top, 'date')!), now.getTime());
  assert.equal(field(p.top, 'content-transfer-encoding'), undefined);

  assert.match(p.text, /mx\.moon\.test/);
  assert.match(p.text, /<x@remote\.test>:\r\n {4}host mx\.remote\.test said:\r\n {4}550-5\.1\.1 The email account .* Please try\r\n {4}550 5\.1\.1 double-checking/);

  assert.equal(contentType(p.statusPart).value, 'message/delivery-status');
  assert.equal(p.perMessage.get('original-envelope-id'), 'ENV-42');
  assert.equal(p.perMessage.get('reporting-mta'), 'dns; mx.moon.test');
  assert.equal(p.perMessage.get('x-moonpost-queue-id'), 'QID1');
  assert.equal(Date.parse(p.perMessage.get('arrival-date')!), Date.parse('2026-03-01T10:00:00.000Z'));
  assert.equal(p.recipients.length, 1);
  const r = p.recipients[0];
  assert.equal(r.get('original-recipient'), 'rfc822; X@Remote.test');
  assert.equal(r.get('final-recipient'), 'rfc822; x@remote.test');
  assert.equal(r.get('action'), 'failed');
  assert.equal(r.get('status'), '5.1.1');
  assert.equal(r.get('remote-mta'), 'dns; mx.remote.test');
  assert.match(r.get('diagnostic-code')!, /^smtp; 550-5\.1\.1 The email account that you tried to reach\s+does not exist\. Please try\s+550 5\.1\.1 double-checking the recipient's email address$/);
  assert.equal(Date.parse(r.get('last-attempt-date')!), lastAttempt.getTime());
  assert.equal(r.get('will-retry-until'), undefined);

  assert.ok(p.original);
  assert.equal(contentType(p.original).value, 'message/rfc822');
  assert.equal(field(p.original, 'content-transfer-encoding'), '7bit');
  assert.equal(p.original.body.toString('utf8'), MESSAGE, 'the original byte for byte, without our Return-Path line');
});

test('NOTIFY decides who is reported (RFC 3461 §4.1)', () => {
  const t = (notify: string[] | undefined, action: RecipientOutcome['action'], delayWithoutNotify?: boolean): boolean => wantsNotification(notify, action, { delayWithoutNotify });
  assert.equal(t(undefined, 'failed'), true);
  assert.equal(t(undefined, 'delayed'), true);
  assert.equal(t(undefined, 'delayed', false), false);
  assert.equal(t(undefined, 'delivered'), false);
  assert.equal(t(['NEVER'], 'failed'), false);
  assert.equal(t(['SUCCESS'], 'failed'), false);
  assert.equal(t(['SUCCESS'], 'delivered'), true);
  assert.equal(t(['SUCCESS'], 'relayed'), true);
  assert.equal(t(['failure'], 'failed'), true);
  assert.equal(t(['FAILURE'], 'delayed'), false);
  assert.equal(t(['DELAY'], 'delayed'), true);
  assert.equal(t(['DELAY'], 'failed'), false);

  const env = envelope();
  const outcomes: RecipientOutcome[] = [
    { address: 'X@remote.test', action: 'failed', status: '5.1.1' },
    { address: 'y@remote.test', action: 'failed', status: '5.1.1' },
    { address: 'z@remote.test', action: 'failed', status: '5.1.1' },
    { address: 's@remote.test', action: 'failed', status: '5.1.1' },
  ];
  const chosen = selectDsnRecipients(env, outcomes);
  assert.deepEqual(chosen.map((o) => o.address), ['X@remote.test', 'y@remote.test']);
  assert.equal(chosen[0].orcpt, 'rfc822;X@Remote.test', 'envelope data found case-insensitively');
  // An outcome's own NOTIFY wins over the envelope's.
  assert.equal(selectDsnRecipients(env, [{ address: 'z@remote.test', notify: ['FAILURE'], action: 'failed', status: '5.0.0' }]).length, 1);
  // The null return path never gets a DSN (R4).
  assert.deepEqual(selectDsnRecipients({ ...env, sender: '' }, outcomes), []);
});

test('nothing to report: null', async () => {
  assert.equal((await dsnFor([failedX], {}, envelope({ sender: '' }))).dsn, null);
  assert.equal((await dsnFor([{ address: 'z@remote.test', action: 'failed', status: '5.1.1' }])).dsn, null);
  assert.equal((await dsnFor([{ address: 'x@remote.test', action: 'delivered', status: '2.0.0' }])).dsn, null);
  assert.equal((await dsnFor([])).dsn, null);
});

test('RET=HDRS returns the header only, as text/rfc822-headers', async () => {
  const { dsn } = await dsnFor([failedX], {}, envelope({ dsn: { ret: 'HDRS' } }));
  assert.ok(dsn);
  assert.equal(dsn.returned, 'headers');
  const p = parseDsn(dsn.bytes);
  assert.equal(p.perMessage.get('original-envelope-id'), undefined);
  assert.equal(contentType(p.original!).value, 'text/rfc822-headers');
  assert.equal(p.original!.body.toString(), HEADER);
});

test('a delay notice: Will-Retry-Until, header only, only to those who allow DELAY', async () => {
  const until = new Date('2026-03-05T10:00:00.000Z');
  const delayed = (address: string): RecipientOutcome => ({ address, action: 'delayed', status: '4.4.1', diagnostic: 'connect to mx.remote.test[192.0.2.1]:25: Connection timed out', lastAttempt, willRetryUntil: until });
  const { dsn } = await dsnFor([delayed('x@remote.test'), delayed('y@remote.test'), delayed('z@remote.test'), delayed('s@remote.test')]);
  assert.ok(dsn);
  assert.equal(dsn.subject, 'Delayed Mail (still being retried)');
  assert.equal(dsn.returned, 'headers');
  const p = parseDsn(dsn.bytes);
  assert.deepEqual(p.recipients.map((r) => r.get('final-recipient')), ['rfc822; x@remote.test', 'rfc822; y@remote.test']);
  for (const r of p.recipients) {
    assert.equal(r.get('action'), 'delayed');
    assert.equal(r.get('status'), '4.4.1');
    assert.equal(Date.parse(r.get('will-retry-until')!), until.getTime());
    assert.equal(r.get('diagnostic-code'), 'X-Moonpost; connect to mx.remote.test[192.0.2.1]:25: Connection timed out');
    assert.equal(r.get('remote-mta'), undefined);
  }
  assert.match(p.text, /not been delivered yet/);
  assert.match(p.text, /tried again until .*2026/);
  assert.equal(contentType(p.original!).value, 'text/rfc822-headers');
  // Without NOTIFY the policy may switch delay notices off.
  assert.equal((await dsnFor([delayed('y@remote.test')], { delayWithoutNotify: false })).dsn, null);
});

test('failed and delayed together; the alias a recipient came from', async () => {
  const env = envelope();
  env.recipients[1].original = 'team@example.com';
  const { dsn } = await dsnFor([{ address: 'y@remote.test', action: 'delayed', status: '4.2.2', diagnostic: '452 4.2.2 mailbox full' }, failedX], {}, env);
  assert.ok(dsn);
  assert.equal(dsn.subject, 'Undelivered Mail Returned to Sender');
  assert.equal(dsn.returned, 'full');
  const p = parseDsn(dsn.bytes);
  assert.deepEqual(p.recipients.map((r) => r.get('action')), ['delayed', 'failed']);
  assert.equal(p.recipients[0].get('original-recipient'), 'rfc822; team@example.com');
  assert.equal(p.recipients[0].get('diagnostic-code'), 'smtp; 452 4.2.2 mailbox full');
  assert.match(p.text, /<y@remote\.test> \(expanded from <team@example\.com>\)/);
});

test('a success report on NOTIFY=SUCCESS', async () => {
  const { dsn } = await dsnFor([{ address: 's@remote.test', action: 'relayed', status: '2.0.0', remoteMta: 'old.remote.test' }]);
  assert.ok(dsn);
  assert.equal(dsn.subject, 'Successful Mail Delivery Report');
  assert.equal(dsn.returned, 'headers');
  const p = parseDsn(dsn.bytes);
  assert.equal(p.recipients[0].get('action'), 'relayed');
  assert.equal(p.recipients[0].get('status'), '2.0.0');
  assert.match(p.text, /relayed to a system that sends no further reports/);
});

test('a large original is returned as its header; returnContent and a missing file', async () => {
  const big = HEADER + '\r\n' + 'x'.repeat(100) + '\r\n';
  const capped = (await dsnFor([failedX], { maxOriginalBytes: 100 }, envelope(), big)).dsn!;
  assert.equal(capped.returned, 'headers');
  const p = parseDsn(capped.bytes);
  assert.equal(p.original!.body.toString(), HEADER);
  assert.match(p.text, /larger than 100 bytes, so only its header is included/);

  const none = (await dsnFor([failedX], { returnContent: 'none' })).dsn!;
  assert.equal(none.returned, 'none');
  assert.equal(parseDsn(none.bytes).original, undefined);

  const { opts } = await dsnFor([failedX]);
  const gone = (await buildDsn({ ...opts, messagePath: join(dir, 'no-such-file.msg') }))!;
  assert.equal(gone.returned, 'none');
  assert.match(parseDsn(gone.bytes).text, /could not be read/);
});

test('streaming: the original is read in chunks, the sizes add up', async () => {
  const body = ('0123456789'.repeat(99) + '\r\n').repeat(3000); // about 3 MB
  const { dsn, opts } = await dsnFor([failedX], {}, envelope(), HEADER + '\r\n' + body);
  assert.ok(dsn);
  const streamed = await prepareDsn(opts);
  assert.ok(streamed);
  let n = 0;
  const parts: Buffer[] = [];
  for await (const c of streamed.chunks()) {
    n++;
    parts.push(c);
  }
  assert.ok(n > 10, `chunks: ${n}`);
  const all = Buffer.concat(parts);
  assert.equal(all.length, streamed.size);
  assert.equal(all.length, dsn.bytes.length);
  assert.equal(parseDsn(all).original!.body.toString(), HEADER + '\r\n' + body);
});

test('8-bit content makes an 8BITMIME notification; binary content is returned as its header', async () => {
  const utf8 = HEADER + '\r\nGrüße aus Köln\r\n';
  const { dsn } = await dsnFor([failedX], {}, envelope(), utf8);
  assert.ok(dsn);
  assert.equal(dsn.body, '8BITMIME');
  const p = parseDsn(dsn.bytes);
  assert.equal(field(p.top, 'content-transfer-encoding'), '8bit');
  assert.equal(field(p.original!, 'content-transfer-encoding'), '8bit');
  assert.equal(p.original!.body.toString('utf8'), utf8);

  const declared = (await dsnFor([failedX], {}, envelope({ body: '8BITMIME' }))).dsn!;
  assert.equal(declared.body, '8BITMIME');

  const binary = (await dsnFor([failedX], {}, envelope({ body: 'BINARYMIME' }))).dsn!;
  assert.equal(binary.returned, 'headers');
  assert.equal(binary.body, '7BIT');
  assert.match(parseDsn(binary.bytes).text, /binary content/);
});

test('SMTPUTF8: UTF-8 addresses and header in the RFC 6533 global types', async () => {
  const header = 'From: José <josé@exämple.test>\r\nTo: ü@remote.test\r\nSubject: Grüße\r\n';
  const env = envelope({
    sender: 'josé@exämple.test',
    smtputf8: true,
    recipients: [{ address: 'ü@remote.test', route: { kind: 'remote' }, state: 'pending', dsn: { orcpt: 'utf-8;ü@remote.test' } }],
  });
  const { dsn } = await dsnFor([{ address: 'ü@remote.test', action: 'failed', status: '5.1.1', diagnostic: '550 5.1.1 Benutzer unbekannt: ü' }], {}, env, header + '\r\nText\r\n');
  assert.ok(dsn);
  assert.equal(dsn.smtputf8, true);
  assert.equal(dsn.body, '8BITMIME');
  assert.equal(dsn.recipient, 'josé@exämple.test');
  const p = parseDsn(dsn.bytes);
  assert.equal(field(p.top, 'to'), '<josé@exämple.test>');
  assert.equal(contentType(p.statusPart).value, 'message/global-delivery-status');
  assert.equal(p.recipients[0].get('final-recipient'), 'utf-8; ü@remote.test');
  assert.equal(p.recipients[0].get('original-recipient'), 'utf-8; ü@remote.test');
  assert.equal(p.recipients[0].get('diagnostic-code'), 'smtp; 550 5.1.1 Benutzer unbekannt: ü');
  assert.equal(contentType(p.original!).value, 'message/global');
  assert.match(p.text, /Benutzer unbekannt: ü/, 'the text part in quoted-printable UTF-8');
  assert.equal(field(p.textPart, 'content-transfer-encoding'), 'quoted-printable');
});

test('without SMTPUTF8 the report stays ASCII', async () => {
  assert.equal(utf8AddrXtext('a+b=ü\\c@x'), 'a\\x{2B}b\\x{3D}\\x{FC}\\x{5C}c@x');
  const { dsn } = await dsnFor([{ ...failedX, diagnostic: '550 5.1.1 Benutzer unbekannt: ü', remoteMta: 'mx.bücher.test' }], {}, envelope({ dsn: { envid: 'id-ü' } }));
  assert.ok(dsn);
  const p = parseDsn(dsn.bytes);
  assert.equal(contentType(p.statusPart).value, 'message/delivery-status');
  assert.equal(p.perMessage.get('original-envelope-id'), 'id-?');
  assert.equal(p.recipients[0].get('remote-mta'), 'dns; mx.b?cher.test');
  assert.equal(p.recipients[0].get('diagnostic-code'), 'smtp; 550 5.1.1 Benutzer unbekannt: ?');
  assert.ok(!/[^\x00-\x7f]/.test(p.statusPart.body.toString('latin1')));
});

test('remote text cannot add fields, parts or lines of its own', async () => {
  const evil: RecipientOutcome = {
    address: 'x@remote.test\r\nBcc: victim@example.com',
    action: 'failed',
    status: '5.1.1\r\nX-Evil: 1',
    remoteMta: 'mx.remote.test\r\nX-Evil: 2',
    diagnostic: '550 5.1.1 no\r\nX-Evil: 3\r\n\r\nFinal-Recipient: rfc822; forged@x\r\n--=_moonpost_boundary--\n\x00\x1b[31m',
  };
  const { dsn } = await dsnFor([evil], { boundary: '=_moonpost_boundary' }, envelope({ recipients: [] }));
  assert.ok(dsn);
  const p = parseDsn(dsn.bytes);
  assert.equal(p.recipients.length, 1);
  const r = p.recipients[0];
  assert.deepEqual(
    [...r.keys()],
    ['final-recipient', 'action', 'status', 'remote-mta', 'diagnostic-code'],
  );
  assert.equal(r.get('status'), '5.0.0', 'a malformed status falls back by action');
  assert.equal(r.get('final-recipient'), 'rfc822; x@remote.test Bcc: victim@example.com');
  assert.ok(!dsn.bytes.includes('\x1b') && !dsn.bytes.includes('\x00'));
  assert.ok(p.original, 'the original part is still there');
});

test('headers: a message without body, bare-LF files and an over-long header', async () => {
  const noBody = (await dsnFor([failedX], { returnContent: 'headers' }, envelope(), 'Subject: only a header\r\nX-A: b')).dsn!;
  assert.equal(parseDsn(noBody.bytes).original!.body.toString(), 'Subject: only a header\r\nX-A: b\r\n');

  const lf = (await dsnFor([failedX], { returnContent: 'headers' }, envelope(), 'Subject: lf\nX-A: b\n\nbody\n')).dsn!;
  assert.ok(lf.bytes.includes('Subject: lf\nX-A: b\n'));

  const empty = (await dsnFor([failedX], { returnContent: 'headers' }, envelope(), '\r\nbody only\r\n')).dsn!;
  assert.equal(empty.returned, 'headers');
  assert.equal(parseDsn(empty.bytes).original!.body.length, 0);

  const long = 'Subject: x\r\n' + Array.from({ length: 2000 }, (_, i) => `X-Line-${i}: ${'v'.repeat(40)}\r\n`).join('') + '\r\nbody\r\n';
  const cut = (await dsnFor([failedX], { returnContent: 'headers', maxHeaderBytes: 10_000 }, envelope(), long)).dsn!;
  const h = parseDsn(cut.bytes).original!.body.toString();
  assert.ok(h.length <= 10_000 && h.length > 9_000, String(h.length));
  assert.ok(h.startsWith('Subject: x\r\n') && h.endsWith('\r\n'));
});
