import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { analyseFile } from '../../src/message/index.js';
import type { MimePart } from '../../src/message/types.js';
import { LuaVm } from '../../src/script/lua-vm.js';
import { LuaState, type CallResult, type LuaValue } from '../../src/script/lua-state.js';
import { DEFAULT_MAX_BYTES, installVpop3Library, vpop3Library, type MessageContext, type Vpop3Library } from '../../src/script/vpop3-lib.js';
import { validateConfig } from '../../src/config/load.js';
import { embeddedDefaults } from '../../src/config/defaults.js';
import { ScriptHost } from '../../src/script/script-host.js';
import { ScriptHooks } from '../../src/script/smtpsvr-hooks.js';
import { ScriptMetrics } from '../../src/script/metrics.js';
import { compileScript } from '../../src/script/compile.js';
import type { SessionFacts, SessionPolicy } from '../../src/smtp/hooks.js';

const BUDGET = { timeMs: 5000, instructions: 1e9 };

let vm: LuaVm;
let dir: string;
let file: string;
let message: Buffer;
let ctx: MessageContext;

/** Every byte value, as the base64 attachment carries it. */
const ALL_BYTES = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
/** A raw 8-bit line with a NUL in it (an 8bit part). */
const EIGHT_BIT = Buffer.from([0x63, 0x61, 0x66, 0xe9, 0x00, 0xff, 0x80, 0x7f, 0x20, 0x21]);
/** What the quoted-printable part decodes to. */
const QP_DECODED = Buffer.concat([Buffer.from('caf'), Buffer.from([0xe9, 0x20, 0x00, 0x3d]), Buffer.from(' a long line joined\r\nend')]);

function buildMessage(): Buffer {
  const b64 = ALL_BYTES.toString('base64').replace(/.{1,76}/g, '$&\r\n');
  return Buffer.concat([
    Buffer.from(
      [
        'From: a@example.com',
        'To: b@example.com',
        'Subject: helpers',
        'MIME-Version: 1.0',
        'Content-Type: multipart/mixed; boundary="XX"',
        '',
        'preamble',
        '--XX',
        'Content-Type: text/plain; charset=iso-8859-1',
        'Content-Transfer-Encoding: quoted-printable',
        '',
        'caf=E9 =00=3D a long line=',
        ' joined',
        'end',
        '--XX',
        'Content-Type: text/plain',
        'Content-Transfer-Encoding: 8bit',
        '',
        '',
      ].join('\r\n'),
      'latin1',
    ),
    EIGHT_BIT,
    Buffer.from(
      [
        '',
        '--XX',
        'Content-Type: application/octet-stream; name="all.bin"',
        'Content-Disposition: attachment;',
        '  filename="all.bin"',
        'Content-Transfer-Encoding:  Base64 (comment)',
        '',
        b64 + '--XX',
        'Content-Type: message/rfc822',
        '',
        'Subject: inner',
        '',
        'inner body',
        '--XX--',
        'epilogue',
        '',
      ].join('\r\n'),
      'latin1',
    ),
  ]);
}

before(async () => {
  vm = await LuaVm.create();
  dir = mkdtempSync(join(tmpdir(), 'vpop3-lib-'));
  file = join(dir, 'message.eml');
  message = buildMessage();
  writeFileSync(file, message);
  const r = await analyseFile(file);
  assert.deepEqual(
    r.structure.map((p) => p.Path),
    ['TEXT', '1', '2', '3', '4', '4.1'],
  );
  ctx = { path: file, size: r.size, structure: r.structure };
});
after(() => rmSync(dir, { recursive: true, force: true }));

/** A state with the library and `code` loaded; the context is set unless `withMessage` is false. */
function setup(code: string, options: { maxBytes?: number; withMessage?: boolean; context?: MessageContext } = {}): { state: LuaState; lib: Vpop3Library } {
  const state = new LuaState(vm, 32 * 1024 * 1024, '=test');
  const lib = installVpop3Library(state, { maxBytes: options.maxBytes });
  if (options.withMessage !== false) lib.setMessage(options.context ?? ctx);
  const r = state.loadAndRun(Buffer.from(code), '=test', 't', BUDGET);
  assert.equal(r.kind, 'ok', JSON.stringify(r));
  return { state, lib };
}

/** Calls global `fn`, strings back as Buffers. */
function call(state: LuaState, fn: string, args: LuaValue[] = []): LuaValue[] {
  const r = state.call(fn, args, BUDGET, true);
  assert.equal(r.kind, 'ok', JSON.stringify(r));
  return (r as Extract<CallResult, { kind: 'ok' }>).values;
}

/** Calls global `fn`, which must raise; returns the message. */
function callError(state: LuaState, fn: string, args: LuaValue[] = []): string {
  const r = state.call(fn, args, BUDGET);
  assert.equal(r.kind, 'error', JSON.stringify(r));
  return (r as Extract<CallResult, { kind: 'error' }>).message;
}

const row = (path: string): MimePart => ctx.structure.find((p) => p.Path === path)!;
/** Lua wrapper returning a GetMessageLines table as its size and its lines joined by LF (strings, also inside tables, come back as bytes). */
const BATCH = 'function batch(n) local t = VPOP3.GetMessageLines(n) return #t, table.concat(t, "\\n") end';
function batch(state: LuaState, n?: LuaValue): Buffer[] {
  const [count, joined] = call(state, 'batch', n === undefined ? [] : [n]);
  if (count === 0) return [];
  const out: Buffer[] = [];
  let from = 0;
  const b = joined as Buffer;
  for (;;) {
    const lf = b.indexOf(10, from);
    out.push(b.subarray(from, lf < 0 ? b.length : lf));
    if (lf < 0) break;
    from = lf + 1;
  }
  assert.equal(out.length, count);
  return out;
}
const text = (b: Buffer[]): string[] => b.map((x) => x.toString('latin1'));

// ---- The message helpers --------------------------------------------------------------------

test('GetMessageLines walks the message in byte-exact lines; MessageReset rewinds', () => {
  const { state } = setup(`
    ${BATCH}
    function one() return VPOP3.GetMessageLines() end
    function reset() return VPOP3.MessageReset() end
    function first() return VPOP3.GetMessageLines(1)[1] end
  `);
  const expected = message.toString('latin1').split('\r\n').slice(0, -1);
  const got: Buffer[] = [];
  for (;;) {
    const b = batch(state, 3);
    assert.ok(b.length <= 3);
    if (b.length === 0) break;
    got.push(...b);
  }
  assert.deepEqual(text(got), expected);
  // The 8-bit line with its NUL comes back byte for byte.
  assert.ok(got.some((b) => b.equals(EIGHT_BIT)));
  // At the end: an empty table, every time.
  assert.deepEqual(batch(state, 10), []);
  assert.deepEqual(call(state, 'one'), [{}]);
  assert.deepEqual(call(state, 'reset'), []);
  assert.deepEqual(call(state, 'one'), [[Buffer.from('From: a@example.com')]]);
  assert.deepEqual(text(batch(state, 2)), ['To: b@example.com', 'Subject: helpers']);
  assert.deepEqual(text(batch(state)), ['MIME-Version: 1.0']);
  assert.match(callError(state, 'batch', [0]), /^test:2: bad argument #1 to 'VPOP3\.GetMessageLines' \(number of lines must be at least 1\)\n/);
  assert.match(callError(state, 'batch', ['x']), /bad argument #1 to 'VPOP3\.GetMessageLines' \(integer expected, got string\)/);
  assert.match(callError(state, 'batch', [1.5]), /integer expected, got number/);
  state.close();
});

test('GetMessageLines: LF line ends, CR kept inside lines, a last line without a line end', () => {
  const path = join(dir, 'lf.eml');
  const body = Buffer.from('A: 1\nB: 2\r\n\r\nx\ry\r\nlast\r', 'latin1');
  writeFileSync(path, body);
  const { state } = setup(BATCH, { context: { path, size: body.length, structure: [] } });
  assert.deepEqual(text(batch(state, 100)), ['A: 1', 'B: 2', '', 'x\ry', 'last\r']);
  assert.deepEqual(batch(state, 100), []);
  state.close();
});

test('GetMessageLines: the size the context gives is the end of the message', () => {
  const path = join(dir, 'size.eml');
  writeFileSync(path, 'one\r\ntwo\r\nthree\r\n');
  const { state } = setup(BATCH, { context: { path, size: 7, structure: [] } });
  assert.deepEqual(text(batch(state, 100)), ['one', 'tw']);
  state.close();
});

test('GetMessageLines reads a large message in pieces, and at most 10000 lines a call', () => {
  const path = join(dir, 'many.eml');
  const many = Array.from({ length: 25000 }, (_, i) => `line ${i} ${'z'.repeat(i % 97)}`);
  writeFileSync(path, many.join('\r\n') + '\r\n');
  const size = Buffer.byteLength(many.join('\r\n') + '\r\n');
  const { state } = setup(BATCH, { context: { path, size, structure: [] } });
  const sizes: number[] = [];
  const got: string[] = [];
  for (;;) {
    const b = batch(state, 1e9);
    if (!b.length) break;
    sizes.push(b.length);
    got.push(...text(b));
  }
  assert.deepEqual(sizes, [10000, 10000, 5000]);
  assert.deepEqual(got, many);
  state.close();
});

test('GetMessagePart returns the stored bytes of every structure row; unknown paths give nil', () => {
  const { state } = setup(`
    function part(p) return VPOP3.GetMessagePart(p) end
    function direct() return VPOP3.GetMessagePart() end
    function kinds() return type(VPOP3.GetMessagePart("9")), type(VPOP3.GetMessagePart("")), type(VPOP3.GetMessagePart("1.2")) end
  `);
  for (const p of ctx.structure) {
    const [v] = call(state, 'part', [p.Path]);
    assert.ok(Buffer.isBuffer(v), p.Path);
    assert.ok(v.equals(message.subarray(p.Start, p.End)), p.Path);
  }
  assert.equal((call(state, 'part', ['TEXT'])[0] as Buffer).length, message.length);
  // A number path and a lower-case TEXT.
  assert.ok((call(state, 'part', [3])[0] as Buffer).equals(message.subarray(row('3').Start, row('3').End)));
  assert.equal((call(state, 'part', ['text'])[0] as Buffer).length, message.length);
  assert.deepEqual(call(state, 'kinds').map(String), ['nil', 'nil', 'nil']);
  assert.match(callError(state, 'part', [true]), /bad argument #1 to 'VPOP3\.GetMessagePart' \(string expected, got boolean\)/);
  assert.match(callError(state, 'part'), /bad argument #1 to 'VPOP3\.GetMessagePart' \(string expected, got nil\)/);
  assert.match(callError(state, 'direct'), /bad argument #1 to 'VPOP3\.GetMessagePart' \(string expected, got no value\)/);
  state.close();
});

test('GetMessagePartHeader and GetMessagePartBody: header lines, and the body decoded', () => {
  const { state } = setup(`
    function header(p) return VPOP3.GetMessagePartHeader(p) end
    function body(p) return VPOP3.GetMessagePartBody(p) end
  `);
  const header = (p: string): string => (call(state, 'header', [p])[0] as Buffer).toString('latin1');
  const body = (p: string): Buffer => call(state, 'body', [p])[0] as Buffer;
  assert.equal(header('1'), 'Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n');
  assert.ok(body('1').equals(QP_DECODED), body('1').toString('hex'));
  assert.equal(header('2'), 'Content-Type: text/plain\r\nContent-Transfer-Encoding: 8bit\r\n');
  assert.ok(body('2').equals(EIGHT_BIT));
  // Folded header lines stay as stored; "Base64 (comment)" is base64.
  assert.match(header('3'), /^Content-Type: application\/octet-stream; name="all.bin"\r\nContent-Disposition: attachment;\r\n {2}filename="all.bin"\r\n/);
  assert.ok(body('3').equals(ALL_BYTES));
  // message/rfc822: the part's body is the encapsulated message; 4.1 is that message.
  assert.equal(header('4'), 'Content-Type: message/rfc822\r\n');
  assert.equal(body('4').toString(), 'Subject: inner\r\n\r\ninner body');
  assert.equal(header('4.1'), 'Subject: inner\r\n');
  assert.equal(body('4.1').toString(), 'inner body');
  // The top-level multipart: the message header, and its body as stored.
  assert.ok(header('TEXT').startsWith('From: a@example.com\r\n'));
  assert.ok(header('TEXT').endsWith('boundary="XX"\r\n'));
  assert.ok(body('TEXT').toString('latin1').startsWith('preamble\r\n--XX\r\n'));
  assert.ok(body('TEXT').equals(message.subarray(message.indexOf('preamble'))));
  assert.deepEqual(call(state, 'header', ['7']), [null]);
  assert.deepEqual(call(state, 'body', ['7']), [null]);
  state.close();
});

test('a part without a header, and one without an empty line', () => {
  const path = join(dir, 'odd.eml');
  const text = Buffer.from('Subject: x\r\n--b\r\n\r\nno header\r\n--b\r\nContent-Type: text/plain\r\n--b--\r\n');
  writeFileSync(path, text);
  const at = (s: string): number => text.indexOf(s);
  const part = (Path: string, Start: number, End: number): MimePart => ({
    Path,
    Start,
    End,
    ContentType: 'text',
    ContentSubtype: 'plain',
    ContentTypeFilename: '',
    ContentDisposition: '',
    ContentDispositionFilename: '',
  });
  const structure = [part('1', at('\r\nno header') , at('\r\n--b\r\nContent')), part('2', at('Content-Type'), at('\r\n--b--')), part('3', 5, 5)];
  const { state } = setup('function f(p) return VPOP3.GetMessagePartHeader(p), VPOP3.GetMessagePartBody(p) end', { context: { path, size: text.length, structure } });
  assert.deepEqual(
    call(state, 'f', ['1']).map((b) => (b as Buffer).toString()),
    ['', 'no header'],
  );
  assert.deepEqual(
    call(state, 'f', ['2']).map((b) => (b as Buffer).toString()),
    ['Content-Type: text/plain', ''],
  );
  assert.deepEqual(
    call(state, 'f', ['3']).map((b) => (b as Buffer).toString()),
    ['', ''],
  );
  state.close();
});

test('the message helpers outside ProcessMessage raise a clear error', () => {
  const { state, lib } = setup(
    `
    function lines() return VPOP3.GetMessageLines(1) end
    function reset() return VPOP3.MessageReset() end
    function part() return VPOP3.GetMessagePart("1") end
    function header() return VPOP3.GetMessagePartHeader("1") end
    function body() return VPOP3.GetMessagePartBody("1") end
    function caught() local ok, err = pcall(VPOP3.GetMessagePart, "1") return ok, err end
  `,
    { withMessage: false },
  );
  const names: [string, string][] = [
    ['lines', 'GetMessageLines'],
    ['reset', 'MessageReset'],
    ['part', 'GetMessagePart'],
    ['header', 'GetMessagePartHeader'],
    ['body', 'GetMessagePartBody'],
  ];
  for (const [fn, name] of names) {
    assert.match(callError(state, fn), new RegExp(`^test:\\d+: VPOP3\\.${name} is only available inside ProcessMessage\\n`), fn);
  }
  assert.deepEqual(call(state, 'caught').map((v) => (Buffer.isBuffer(v) ? v.toString() : v)), [false, 'VPOP3.GetMessagePart is only available inside ProcessMessage']);
  // Set for one callback, cleared after it.
  lib.setMessage(ctx);
  assert.ok(Buffer.isBuffer(call(state, 'part')[0]));
  assert.equal(lib.message, ctx);
  lib.setMessage(null);
  assert.match(callError(state, 'part'), /VPOP3\.GetMessagePart is only available inside ProcessMessage/);
  assert.equal(vpop3Library(state), lib);
  state.close();
});

test('a new message context starts the line cursor again', () => {
  const { state, lib } = setup('function one() return VPOP3.GetMessageLines(1)[1] end');
  assert.equal((call(state, 'one')[0] as Buffer).toString(), 'From: a@example.com');
  assert.equal((call(state, 'one')[0] as Buffer).toString(), 'To: b@example.com');
  lib.setMessage(ctx);
  assert.equal((call(state, 'one')[0] as Buffer).toString(), 'From: a@example.com');
  state.close();
});

test('the size cap: parts, decoded bodies, headers and lines over it raise an error', () => {
  const max = 200;
  const { state } = setup(
    `
    function part(p) return VPOP3.GetMessagePart(p) end
    function header(p) return VPOP3.GetMessagePartHeader(p) end
    function body(p) return VPOP3.GetMessagePartBody(p) end
    ${BATCH}
  `,
    { maxBytes: max },
  );
  const p3 = row('3');
  assert.ok(p3.End - p3.Start > max);
  assert.match(callError(state, 'part', ['3']), new RegExp(`VPOP3\\.GetMessagePart: part 3 is ${p3.End - p3.Start} bytes, over the limit of 200 bytes`));
  assert.match(callError(state, 'part', ['TEXT']), /over the limit of 200 bytes/);
  // 256 decoded bytes: over; the stored part 1 is small enough.
  assert.match(callError(state, 'body', ['3']), /VPOP3\.GetMessagePartBody: the body of part 3 is over the limit of 200 bytes/);
  assert.ok((call(state, 'body', ['1'])[0] as Buffer).equals(QP_DECODED));
  assert.ok((call(state, 'part', ['1'])[0] as Buffer).equals(message.subarray(row('1').Start, row('1').End)));
  // Lines: a batch stops before the line that would pass the cap.
  const first = batch(state, 1000);
  assert.ok(first.length > 1 && first.length < 10);
  assert.ok(first.reduce((n, b) => n + b.length, 0) <= max);
  assert.deepEqual(text(batch(state, 1)), [message.toString('latin1').split('\r\n')[first.length]]);
  state.close();

  // One line longer than the cap: an error, and the cursor moves past it.
  const path = join(dir, 'long.eml');
  writeFileSync(path, Buffer.from(`short\r\n${'x'.repeat(300)}\r\nafter\r\n`));
  const s2 = setup(BATCH, { maxBytes: max, context: { path, size: 316, structure: [] } }).state;
  assert.deepEqual(text(batch(s2, 5)), ['short']);
  assert.match(callError(s2, 'batch', [5]), /VPOP3\.GetMessageLines: the line at offset 7 is over the limit of 200 bytes/);
  assert.deepEqual(text(batch(s2, 5)), ['after']);
  s2.close();

  // A line of exactly the cap fits; a CR before its LF does not count.
  const epath = join(dir, 'exact.eml');
  writeFileSync(epath, `${'e'.repeat(200)}\r\n${'f'.repeat(200)}`);
  const s4 = setup(BATCH, { maxBytes: max, context: { path: epath, size: 402, structure: [] } }).state;
  assert.deepEqual(text(batch(s4, 5)), ['e'.repeat(200)]);
  assert.deepEqual(text(batch(s4, 5)), ['f'.repeat(200)]);
  assert.deepEqual(batch(s4, 5), []);
  s4.close();

  // A header longer than the cap.
  const hpath = join(dir, 'big-header.eml');
  const big = Buffer.from(`X-Big: ${'y'.repeat(70000)}\r\n\r\nbody\r\n`);
  writeFileSync(hpath, big);
  const whole: MimePart = { ...row('2'), Path: '1', Start: 0, End: big.length };
  const s3 = setup('function header(p) return VPOP3.GetMessagePartHeader(p) end', { maxBytes: 1000, context: { path: hpath, size: big.length, structure: [whole] } }).state;
  assert.match(callError(s3, 'header', ['1']), /the header of part 1 is over the limit of 1000 bytes/);
  s3.close();
});

test('large parts: a header across read chunks, a base64 body of 300 KB', () => {
  const path = join(dir, 'large.eml');
  // The CR of the empty line is the last byte of the first 64 KiB read, its LF the first of the next.
  const headerText = `X-Big: ${'y'.repeat(65535 - 9)}\r\n`;
  assert.equal(headerText.length, 65535);
  const data = createHash('sha256').update('seed').digest();
  const blob = Buffer.concat(Array.from({ length: 300 * 1024 / 32 }, (_, i) => createHash('sha256').update(data).update(String(i)).digest()));
  const text = Buffer.from(`${headerText}\r\n${blob.toString('base64').replace(/.{76}/g, '$&\r\n')}\r\n`);
  writeFileSync(path, text);
  const whole: MimePart = { ...row('3'), Path: '1', Start: 0, End: text.length };
  const { state } = setup('function f() return VPOP3.GetMessagePartHeader("1"), VPOP3.GetMessagePartBody("1") end', {
    context: { path, size: text.length, structure: [whole] },
  });
  const [h, b] = call(state, 'f') as Buffer[];
  assert.equal(h.toString(), headerText);
  // No Content-Transfer-Encoding: the body as stored.
  assert.equal(b.length, text.length - 65537);
  state.close();
  const b64 = Buffer.from(`Content-Transfer-Encoding: base64\r\n\r\n${blob.toString('base64').replace(/.{76}/g, '$&\r\n')}\r\n`);
  writeFileSync(path, b64);
  const s2 = setup('function f() return VPOP3.GetMessagePartBody("1") end', {
    context: { path, size: b64.length, structure: [{ ...whole, End: b64.length }] },
  }).state;
  assert.ok((call(s2, 'f')[0] as Buffer).equals(blob));
  s2.close();
});

test('a missing message file is a Lua error, not a crash', () => {
  const { state } = setup('function part() return VPOP3.GetMessagePart("1") end', { context: { ...ctx, path: join(dir, 'gone.eml') } });
  assert.match(callError(state, 'part'), /VPOP3\.GetMessagePart: cannot read the message \(ENOENT\)/);
  state.close();
});

// ---- Hex, hashes, HMAC ----------------------------------------------------------------------

test('HexString and UnHexString, byte for byte', () => {
  const { state } = setup(`
    function hex(x) return VPOP3.HexString(x) end
    function unhex(x) return VPOP3.UnHexString(x) end
    function lua() return VPOP3.HexString("\\0\\255\\128A"), VPOP3.HexString({0, 255, 128, 65}), VPOP3.HexString({}), VPOP3.HexString(""),
      VPOP3.UnHexString("00FFab") == "\\0\\255\\171", #VPOP3.UnHexString("00ff00") end
    function roundtrip(s) return VPOP3.UnHexString(VPOP3.HexString(s)) == s end
    function direct() return VPOP3.HexString() end
    function in_coroutine() return coroutine.wrap(function(x) return VPOP3.HexString(x), VPOP3.UnHexString("ff00") end)("\\255\\0") end
  `);
  assert.deepEqual(call(state, 'lua').map((v) => (Buffer.isBuffer(v) ? v.toString() : v)), ['00ff8041', '00ff8041', '', '', true, 3]);
  assert.equal((call(state, 'hex', [ALL_BYTES])[0] as Buffer).toString(), ALL_BYTES.toString('hex'));
  assert.ok((call(state, 'unhex', [ALL_BYTES.toString('hex').toUpperCase()])[0] as Buffer).equals(ALL_BYTES));
  assert.deepEqual(call(state, 'roundtrip', [ALL_BYTES]), [true]);
  const [hexOut, bytesOut] = call(state, 'in_coroutine') as Buffer[];
  assert.equal(hexOut.toString(), 'ff00');
  assert.ok(bytesOut.equals(Buffer.from([0xff, 0])));
  assert.deepEqual(call(state, 'hex', [12]).map(String), ['3132']);
  for (const bad of ['abc', 'zz', '0x00', 'ab cd']) assert.deepEqual(call(state, 'unhex', [bad]), [null], bad);
  assert.match(callError(state, 'hex', [true]), /^test:2: bad argument #1 to 'VPOP3\.HexString' \(string or byte table expected, got boolean\)/);
  assert.match(callError(state, 'hex'), /bad argument #1 to 'VPOP3\.HexString' \(string or byte table expected, got nil\)/);
  assert.match(callError(state, 'direct'), /^test:\d+: bad argument #1 to 'VPOP3\.HexString' \(string or byte table expected, got no value\)/);
  assert.match(callError(state, 'hex', [[1, 256]]), /bad argument #1 to 'VPOP3\.HexString' \(byte table entry 2 is not a number from 0 to 255\)/);
  assert.match(callError(state, 'hex', [[1, 'a']]), /byte table entry 2 is not a number from 0 to 255/);
  assert.match(callError(state, 'hex', [[1.5]]), /byte table entry 1/);
  assert.match(callError(state, 'unhex', [[1]]), /bad argument #1 to 'VPOP3\.UnHexString' \(string expected, got table\)/);
  state.close();
});

test('MD5, SHA1, SHA256 return byte tables; known vectors; 8-bit input', () => {
  const { state } = setup(`
    function digests(s) return VPOP3.HexString(VPOP3.MD5(s)), VPOP3.HexString(VPOP3.SHA1(s)), VPOP3.HexString(VPOP3.SHA256(s)) end
    function shape() local t = VPOP3.SHA256("abc") return type(t), #t, t[1], t[32], math.type(t[1]) end
    function table_input() return VPOP3.HexString(VPOP3.SHA1({97, 98, 99})) end
  `);
  const hex = (vals: LuaValue[]): string[] => vals.map((v) => (v as Buffer).toString());
  assert.deepEqual(hex(call(state, 'digests', ['abc'])), [
    '900150983cd24fb0d6963f7d28e17f72',
    'a9993e364706816aba3e25717850c26c9cd0d89d',
    'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad',
  ]);
  assert.deepEqual(hex(call(state, 'digests', [''])), [
    'd41d8cd98f00b204e9800998ecf8427e',
    'da39a3ee5e6b4b0d3255bfef95601890afd80709',
    'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
  ]);
  assert.deepEqual(call(state, 'shape').map((v) => (Buffer.isBuffer(v) ? v.toString() : v)), ['table', 32, 0xba, 0xad, 'integer']);
  assert.deepEqual(hex(call(state, 'table_input')), ['a9993e364706816aba3e25717850c26c9cd0d89d']);
  // Bytes that are not UTF-8 hash as themselves.
  const nasty = Buffer.concat([ALL_BYTES, EIGHT_BIT]);
  assert.deepEqual(
    hex(call(state, 'digests', [nasty])),
    ['md5', 'sha1', 'sha256'].map((a) => createHash(a).update(nasty).digest('hex')),
  );
  state.close();
});

test('HMAC: RFC 2202 (SHA1) and RFC 4231 (SHA256) test vectors', () => {
  const { state } = setup(`
    local function h(alg, text, key) return VPOP3.HexString(VPOP3.HMAC(alg, text, key)) end
    function vectors()
      local k20 = string.rep("\\11", 20)
      local kaa = VPOP3.UnHexString(string.rep("aa", 131))
      local kaa80 = VPOP3.UnHexString(string.rep("aa", 80))
      local d50 = string.rep("\\221", 50)
      local keyTable = {} for i = 1, 20 do keyTable[i] = 11 end
      return h("SHA1", "Hi There", k20),
        h("SHA1", "what do ya want for nothing?", "Jefe"),
        h("sha1", d50, string.rep("\\170", 20)),
        h("SHA1", "Test Using Larger Than Block-Size Key - Hash Key First", kaa80),
        h("SHA256", "Hi There", k20),
        h("SHA256", "what do ya want for nothing?", "Jefe"),
        h("Sha256", d50, string.rep("\\170", 20)),
        h("SHA256", "Test Using Larger Than Block-Size Key - Hash Key First", kaa),
        h("SHA256", "Hi There", keyTable),
        #VPOP3.HMAC("SHA1", "", ""), #VPOP3.HMAC("SHA256", "", "")
    end
    function hmac(alg, text, key) return VPOP3.HMAC(alg, text, key) end
  `);
  assert.deepEqual(
    call(state, 'vectors').map((v) => (Buffer.isBuffer(v) ? v.toString() : v)),
    [
      // RFC 2202 §3, test cases 1, 2, 3, 6
      'b617318655057264e28bc0b6fb378c8ef146be00',
      'effcdf6ae5eb2fa2d27416d5f184df9c259a7c79',
      '125d7342b9ac11cd91a39af48aa17b4f63f175d3',
      'aa4ae5e15272d00e95705637ce8a3b55ed402112',
      // RFC 4231 §4, test cases 1, 2, 3, 6
      'b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7',
      '5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843',
      '773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe',
      '60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54',
      'b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7',
      20,
      32,
    ],
  );
  assert.match(callError(state, 'hmac', ['MD4', 'x', 'k']), /bad argument #1 to 'VPOP3\.HMAC' \(unknown algorithm "MD4": use "SHA1" or "SHA256"\)/);
  assert.match(callError(state, 'hmac', ['SHA1', 'x']), /bad argument #3 to 'VPOP3\.HMAC' \(string or byte table expected, got nil\)/);
  state.close();
});

test('the byte helpers work outside ProcessMessage', () => {
  const { state } = setup('function f() return VPOP3.HexString(VPOP3.SHA256("x")) end', { withMessage: false });
  assert.deepEqual(
    call(state, 'f').map(String),
    [createHash('sha256').update('x').digest('hex')],
  );
  state.close();
});

// ---- Installed by the script host -----------------------------------------------------------

test('ScriptHost installs the library in every state; ScriptHooks.setMessageContext drives it', async () => {
  const config = validateConfig({ ...embeddedDefaults(), dataDir: dir, scripts: { memoryMB: 8 } }, 'test', dir);
  const log = pino({ level: 'silent' });
  const host = new ScriptHost(config, log);
  const hostVm = await host.openVm();
  const source = Buffer.from(`
    local V = VPOP3
    function ProcessMessage() return V.GetMessagePartBody("3") end
    function digest() return V.HexString(V.MD5("abc")) end
  `);
  const compiled = compileScript(hostVm, source, 'SMTPSVR.LUA');
  assert.ok(!('error' in compiled));
  const state = host.newState({ ...compiled, version: 1 }, log)!;
  assert.ok(state);
  const lib = vpop3Library(state)!;
  assert.equal(lib.maxBytes, 2 * 1024 * 1024);
  assert.ok(DEFAULT_MAX_BYTES >= lib.maxBytes);
  assert.deepEqual(call(state, 'digest').map(String), ['900150983cd24fb0d6963f7d28e17f72']);
  const hooks = new ScriptHooks(state, {} as SessionPolicy, () => ({}) as SessionFacts, BUDGET, log, new ScriptMetrics());
  assert.match(callError(state, 'ProcessMessage'), /^SMTPSVR\.LUA:3: VPOP3\.GetMessagePartBody is only available inside ProcessMessage/);
  hooks.setMessageContext(ctx);
  assert.ok((call(state, 'ProcessMessage')[0] as Buffer).equals(ALL_BYTES));
  hooks.setMessageContext(null);
  assert.match(callError(state, 'ProcessMessage'), /only available inside ProcessMessage/);
  state.close();
});
