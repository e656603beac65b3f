/**
 * Fuzzing of the envelope parsers: parsePath, parseMailbox, validDomain, parseParams,
 * decodeXtext (src/smtp/address.ts) and parseEsmtpLine (src/smtp/envelope-args.ts), with
 * hostile strings, mutated valid lines, and generated valid input that must be accepted.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { decodeXtext, parseMailbox, parseParams, parsePath, validDomain } from '../../src/smtp/address.js';
import { parseEsmtpLine, type MailCommand, type RcptCommand } from '../../src/smtp/envelope-args.js';
import { formatReply } from '../../src/smtp/reply.js';
import { checkWireReply, glue, hostileString, mutateString, params } from './fuzz-common.js';

// ---- generators of valid syntax ----------------------------------------------------------

const ATEXT = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&\'*+-/=?^_`{|}~';
const atext = fc.string({ unit: fc.constantFrom(...ATEXT), minLength: 1, maxLength: 10 });
const dotAtom = fc.array(atext, { minLength: 1, maxLength: 4 }).map((a) => a.join('.'));
const qtextChar = fc.oneof(
  fc.string({ unit: fc.integer({ min: 0x20, max: 0x7e }).filter((c) => c !== 0x22 && c !== 0x5c).map((c) => String.fromCharCode(c)), minLength: 1, maxLength: 1 }),
  fc.integer({ min: 0x20, max: 0x7e }).map((c) => `\\${String.fromCharCode(c)}`),
);
const quoted = fc.array(qtextChar, { maxLength: 12 }).map((a) => `"${a.join('')}"`);
const localPart = fc.oneof({ weight: 4, arbitrary: dotAtom }, { weight: 1, arbitrary: quoted }).filter((l) => Buffer.byteLength(l) <= 64);

const alnum = fc.constantFrom(...'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789');
const label = fc.oneof(
  alnum,
  fc.tuple(alnum, fc.string({ unit: fc.oneof(alnum, fc.constant('-')), maxLength: 12 }), alnum).map(([a, mid, b]) => `${a}${mid}${b}`),
);
const hostname = fc.array(label, { minLength: 1, maxLength: 5 }).map((a) => a.join('.'));
const domain = fc.oneof(
  { weight: 6, arbitrary: hostname },
  { weight: 1, arbitrary: fc.ipV4().map((ip) => `[${ip}]`) },
  { weight: 1, arbitrary: fc.ipV6().map((ip) => `[IPv6:${ip}]`) },
);
const mailbox = fc.tuple(localPart, domain).map(([l, d]) => `${l}@${d}`).filter((m) => Buffer.byteLength(m) <= 254);

const xtextEncode = (s: string): string =>
  [...s].map((c) => (c.charCodeAt(0) >= 0x21 && c.charCodeAt(0) <= 0x7e && c !== '+' && c !== '=' ? c : `+${c.charCodeAt(0).toString(16).toUpperCase().padStart(2, '0')}`)).join('');

/** Text near the syntax: fragments of valid paths and parameters, glued with junk. */
const pathish = glue(
  fc.oneof(
    { weight: 3, arbitrary: fc.constantFrom('<', '>', '<>', '@', ':', ',', '"', '\\', ' ', '.', '[', ']', 'IPv6:', '=', 'SIZE=', 'BODY=8BITMIME', 'SMTPUTF8', 'NOTIFY=', 'ORCPT=rfc822;', 'ENVID=', 'RET=HDRS', 'AUTH=<>', 'postmaster') },
    { weight: 3, arbitrary: mailbox },
    { weight: 2, arbitrary: hostileString(12) },
  ),
  10,
);

const hostile = fc.oneof(hostileString(120), pathish, mutateString(mailbox.map((m) => `<${m}>`)));

// ---- address.ts ----------------------------------------------------------------------------

test('fuzz parsePath: never throws; what it accepts is a well-formed mailbox', () => {
  fc.assert(
    fc.property(hostile, fc.boolean(), fc.boolean(), (arg, allowNull, utf8) => {
      const r = parsePath(arg, { allowNull, utf8 });
      if (!r.ok) {
        assert.equal(typeof r.error, 'string');
        return;
      }
      assert.equal(r.rest, r.rest.trim());
      if (r.mailbox === null) {
        assert.ok(allowNull, 'null path only where allowed');
        return;
      }
      const m = r.mailbox;
      assert.equal(m.address, `${m.localPart}@${m.domain}`);
      assert.ok(Buffer.byteLength(m.address) <= 254, 'address length');
      assert.ok(Buffer.byteLength(m.localPart) <= 64, 'local part length');
      assert.doesNotMatch(m.address, /[\x00-\x1f\x7f]/, 'no control characters');
      if (!utf8) assert.match(m.address, /^[\x20-\x7e]+$/, 'ASCII only without SMTPUTF8');
      assert.deepEqual(parseMailbox(m.address, utf8), m, 'the address parses again to itself');
      assert.ok(validDomain(m.domain, utf8));
    }),
    params(40_000, [['<"\\', false, false], ['<"a\\"@b>', true, true], ['<@a,@:x@y>', false, false], ['"\\\\"@a', false, false]]),
  );
});

test('fuzz parsePath: generated valid paths (with source routes and parameters) are accepted', () => {
  const route = fc.array(hostname, { maxLength: 3 }).map((hops) => (hops.length ? `${hops.map((h) => `@${h}`).join(',')}:` : ''));
  fc.assert(
    fc.property(mailbox, route, fc.boolean(), fc.constantFrom('', ' SIZE=10', '  BODY=7BIT SMTPUTF8 '), fc.constantFrom('', ' ', '   '), (mb, rt, bracket, rest, lead) => {
      const text = bracket || rt || mb.includes(' ') ? `${lead}<${rt}${mb}>${rest}` : `${lead}${mb}${rest}`;
      const r = parsePath(text, { allowNull: false, utf8: false });
      assert.ok(r.ok, `${JSON.stringify(text)}: ${r.ok ? '' : r.error}`);
      assert.equal(r.mailbox?.address, mb);
      assert.equal(r.rest, rest.trim());
      assert.equal(r.sourceRoute, rt !== '');
    }),
    params(20_000),
  );
});

/** validDomain for host names, written independently of the module's regular expressions. */
function referenceHostname(d: string): boolean {
  if (!d || Buffer.byteLength(d) > 255) return false;
  const isAlnum = (c: string): boolean => /^[A-Za-z0-9]$/.test(c);
  return d.split('.').every((l) => {
    if (l.length < 1 || l.length > 63) return false;
    if (!isAlnum(l[0]) || !isAlnum(l[l.length - 1])) return false;
    return [...l].every((c) => isAlnum(c) || c === '-');
  });
}

test('fuzz validDomain: agrees with a reference for host names; literals are IP addresses', () => {
  const domainish = fc.oneof(
    hostile,
    domain,
    mutateString(domain),
    fc.array(fc.oneof(label, fc.constantFrom('', '-', 'a-', '-a', 'x'.repeat(64))), { maxLength: 6 }).map((a) => a.join('.')),
  );
  fc.assert(
    fc.property(domainish, (d) => {
      const ok = validDomain(d);
      if (d.startsWith('[') && d.endsWith(']')) {
        if (ok) assert.match(d, /^\[(IPv6:[0-9A-Fa-f:.]+|[0-9.]+)\]$/i);
        return;
      }
      assert.equal(ok, referenceHostname(d), JSON.stringify(d));
      validDomain(d, true); // with UTF-8 labels: must not throw
    }),
    params(30_000, [
      ['a'.repeat(63) + '.' + 'b'.repeat(63) + '.' + 'c'.repeat(63) + '.' + 'd'.repeat(63)],
      // Found by this property: isIP accepts an IPv6 zone index, which no address literal has.
      ['[IPv6:::00:00:0%000:000:0:0:0]'],
      ['[IPv6:fe80::1%eth0]'],
    ]),
  );
});

test('fuzz parseParams: never throws; keys are upper-case keywords, values kept, no duplicates', () => {
  const paramish = glue(fc.oneof(hostileString(10), fc.constantFrom(' ', '=', 'SIZE', 'size', '__proto__', 'constructor', 'TOSTRING', 'A-1', '-X')), 8);
  fc.assert(
    fc.property(paramish, (rest) => {
      const r = parseParams(rest);
      if (typeof r === 'string') return;
      assert.equal(Object.getPrototypeOf(r), Object.prototype);
      const parts = rest.split(' ').filter((p) => p);
      assert.equal(Object.keys(r).length, parts.length);
      for (const part of parts) {
        const eq = part.indexOf('=');
        const key = (eq < 0 ? part : part.slice(0, eq)).toUpperCase();
        assert.match(key, /^[A-Z0-9][A-Z0-9-]*$/);
        assert.equal(r[key], eq < 0 ? '' : part.slice(eq + 1));
      }
    }),
    params(30_000),
  );
});

test('fuzz decodeXtext: never throws; decodes what encodeXtext made; output of valid input is printable-escaped', () => {
  const latin = fc.string({ unit: 'binary-ascii', maxLength: 40 }).filter((s) => !/[^\x00-\xff]/.test(s));
  fc.assert(
    fc.property(latin, (s) => {
      assert.equal(decodeXtext(xtextEncode(s)), s);
    }),
    params(20_000),
  );
  fc.assert(
    fc.property(fc.oneof(hostileString(40), glue(fc.constantFrom('+', '+2', '+2B', '+ab', '=', 'A', '+3D', ' '), 10)), (s) => {
      const d = decodeXtext(s);
      if (d === null) return;
      assert.doesNotMatch(s, /[^\x21-\x7e]/, 'only printable ASCII is valid xtext');
      assert.ok(d.length <= s.length);
    }),
    params(20_000),
  );
});

// ---- envelope-args.ts ----------------------------------------------------------------------

const esmtpLine = fc.oneof(
  { weight: 2, arbitrary: hostile },
  { weight: 3, arbitrary: fc.tuple(fc.constantFrom('FROM:', 'TO:', 'from:', 'To:', 'FROM: ', 'TO:  ', 'FROM'), hostile).map(([a, b]) => a + b) },
  {
    weight: 3,
    arbitrary: mutateString(
      fc
        .tuple(fc.constantFrom('FROM:', 'TO:'), mailbox, fc.array(fc.constantFrom('SIZE=100', 'BODY=8BITMIME', 'SMTPUTF8', 'RET=FULL', 'ENVID=a+2Bb', 'NOTIFY=SUCCESS,FAILURE', 'ORCPT=rfc822;a+40b', 'AUTH=<>', 'X=1'), { maxLength: 4 }))
        .map(([k, m, ps]) => `${k}<${m}>${ps.map((p) => ` ${p}`).join('')}`),
    ),
  },
);

test('fuzz parseEsmtpLine: never throws; errors are well-formed replies; results are consistent', () => {
  fc.assert(
    fc.property(esmtpLine, fc.constantFrom<'FROM' | 'TO'>('FROM', 'TO'), fc.boolean(), fc.boolean(), (arg, kind, smtputf8, dsn) => {
      const r = parseEsmtpLine(arg, kind, { smtputf8, dsn });
      if ('error' in r) {
        assert.ok([501, 553, 555].includes(r.error.code), `code ${r.error.code}`);
        const problem = checkWireReply(formatReply(r.error), r.error.code);
        assert.equal(problem, null, problem ?? '');
        return;
      }
      assert.equal(Object.getPrototypeOf(r.params), Object.prototype);
      for (const k of Object.keys(r.params)) assert.match(k, /^[A-Z0-9][A-Z0-9-]*$/);
      if (kind === 'FROM') {
        const m = r as MailCommand;
        if (m.size !== undefined) assert.ok(Number.isSafeInteger(m.size) || m.size > Number.MAX_SAFE_INTEGER);
        if (m.body !== undefined) assert.ok(['7BIT', '8BITMIME'].includes(m.body));
        if (m.ret !== undefined) assert.ok(dsn && ['FULL', 'HDRS'].includes(m.ret));
        if (m.envid !== undefined) assert.ok(dsn && m.envid.length <= 100);
        if (m.smtputf8) assert.ok(smtputf8);
        if (m.address === '') return;
      } else {
        const c = r as RcptCommand;
        assert.notEqual(c.address, '', 'RCPT never has a null path');
        if (c.notify) assert.ok(dsn && c.notify.every((n) => ['NEVER', 'SUCCESS', 'FAILURE', 'DELAY'].includes(n)));
        if (c.orcpt) assert.ok(dsn && /^[A-Za-z0-9-]+;/.test(c.orcpt));
        if (c.address === 'postmaster') return;
      }
      const mb = parseMailbox(r.address, true);
      assert.ok(mb, `address ${JSON.stringify(r.address)} is a mailbox`);
      if (!/[^\x00-\x7f]/.test(r.address)) return;
      // A non-ASCII address needs SMTPUTF8 (on MAIL: the parameter, on RCPT: the transaction's).
      assert.ok(smtputf8, 'non-ASCII address without SMTPUTF8');
      if (kind === 'FROM') assert.ok('SMTPUTF8' in r.params);
    }),
    params(50_000, [['FROM:<postmaster>', 'TO', false, false], ['TO:<postmaster> NOTIFY=NEVER', 'TO', false, true], ['TO:<Postmaster>x', 'TO', false, false]]),
  );
});

test('fuzz parseEsmtpLine: generated valid MAIL and RCPT lines are accepted as written', () => {
  const envid = fc.string({ unit: 'grapheme-ascii', maxLength: 30 });
  const notify = fc.oneof(fc.constant(['NEVER']), fc.uniqueArray(fc.constantFrom('SUCCESS', 'FAILURE', 'DELAY'), { minLength: 1, maxLength: 3 }));
  fc.assert(
    fc.property(
      mailbox,
      fc.option(fc.bigInt({ min: 0n, max: 10n ** 20n - 1n })),
      fc.option(fc.constantFrom('7bit', '8BITMIME', '8bitmime')),
      fc.option(fc.constantFrom('FULL', 'hdrs')),
      fc.option(envid),
      notify,
      fc.option(mailbox),
      (mb, size, body, ret, id, nt, orcpt) => {
        const mailArgs = [size !== null ? `SIZE=${size}` : '', body ? `BODY=${body}` : '', ret ? `RET=${ret}` : '', id !== null ? `ENVID=${xtextEncode(id)}` : '']
          .filter((p) => p)
          .join(' ');
        const mail = parseEsmtpLine(`FROM:<${mb}> ${mailArgs}`, 'FROM', { smtputf8: true, dsn: true });
        assert.ok(!('error' in mail), `MAIL FROM:<${mb}> ${mailArgs}: ${'error' in mail ? mail.error.lines[0] : ''}`);
        const m = mail as MailCommand;
        assert.equal(m.address, mb);
        assert.equal(m.size, size === null ? undefined : Number(size));
        assert.equal(m.body, body?.toUpperCase());
        assert.equal(m.ret, ret?.toUpperCase());
        if (id !== null && id.length <= 100) assert.equal(m.envid, id);

        const rcptArgs = `NOTIFY=${nt.join(',')}${orcpt ? ` ORCPT=rfc822;${xtextEncode(orcpt)}` : ''}`;
        const rcpt = parseEsmtpLine(`TO: <${mb}> ${rcptArgs}`, 'TO', { smtputf8: false, dsn: true });
        assert.ok(!('error' in rcpt), `RCPT TO:<${mb}> ${rcptArgs}: ${'error' in rcpt ? rcpt.error.lines[0] : ''}`);
        const c = rcpt as RcptCommand;
        assert.equal(c.address, mb);
        assert.deepEqual(c.notify, nt);
        assert.equal(c.orcpt, orcpt ? `rfc822;${orcpt}` : undefined);
      },
    ),
    params(15_000),
  );
});

// ---- regressions found by the properties above ----------------------------------------------

test('regression: an IPv6 address literal with a zone index is not a domain', () => {
  assert.equal(validDomain('[IPv6:fe80::1%eth0]'), false);
  assert.equal(validDomain('[IPv6:fe80::1]'), true);
  assert.equal(parsePath('<user@[IPv6:fe80::1%eth0]>', { allowNull: false, utf8: false }).ok, false);
  const r = parseEsmtpLine('TO:<user@[IPv6:fe80::1%1]>', 'TO', { smtputf8: false, dsn: false });
  assert.ok('error' in r && r.error.code === 501);
});
