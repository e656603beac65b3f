import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeXtext, parseMailbox, parseParams, parsePath, validDomain } from '../../src/smtp/address.js';

const ascii = { allowNull: false, utf8: false };
const utf8 = { allowNull: false, utf8: true };

function mailbox(arg: string, opts = ascii): { localPart: string; domain: string; address: string } {
  const r = parsePath(arg, opts);
  assert.ok(r.ok, `expected <${arg}> to parse: ${r.ok ? '' : r.error}`);
  assert.ok(r.mailbox);
  return r.mailbox;
}

function refused(arg: string, opts = ascii): string {
  const r = parsePath(arg, opts);
  assert.equal(r.ok, false, `expected ${arg} to be refused`);
  return r.ok ? '' : r.error;
}

// ---- local parts --------------------------------------------------------------------------

test('dot-atom local parts with every atext character', () => {
  for (const local of ['a', 'john.doe', "!#$%&'*+-/=?^_`{|}~", 'a.b.c', 'A1', 'user+tag', 'x-y_z']) {
    const m = mailbox(`<${local}@example.com>`);
    assert.equal(m.localPart, local);
    assert.equal(m.domain, 'example.com');
    assert.equal(m.address, `${local}@example.com`);
  }
});

test('bad dot-atom local parts are refused', () => {
  for (const local of ['.a', 'a.', 'a..b', 'a b', 'a(b)', 'a,b', 'a[b]', 'a;b', 'a:b', 'a\\b', 'a"b', 'a<b']) {
    assert.equal(parseMailbox(`${local}@example.com`), null, local);
  }
});

test('quoted local parts keep their quoting, and may hold @, spaces, escapes and ">"', () => {
  const cases: [string, string][] = [
    ['"john doe"', '"john doe"'],
    ['"a@b"', '"a@b"'],
    ['"a\\"b"', '"a\\"b"'],
    ['"a\\\\b"', '"a\\\\b"'],
    ['"a>b"', '"a>b"'],
    ['""', '""'],
    ['"..."', '"..."'],
  ];
  for (const [local, kept] of cases) {
    const m = mailbox(`<${local}@example.com>`);
    assert.equal(m.localPart, kept, local);
    assert.equal(m.address, `${kept}@example.com`);
    assert.equal(m.domain, 'example.com');
  }
});

test('malformed quoted local parts are refused', () => {
  for (const text of ['"abc@example.com', '"a"b"@example.com', '"a\\"@example.com', '"a"x@example.com', '"a\x01b"@example.com', '"a\x7fb"@example.com']) {
    assert.equal(parseMailbox(text), null, JSON.stringify(text));
  }
});

test('a quoted local part with an @ is split at the @ after the closing quote', () => {
  const m = parseMailbox('"x@evil.example"@good.example');
  assert.deepEqual(m, { localPart: '"x@evil.example"', domain: 'good.example', address: '"x@evil.example"@good.example' });
});

test('an unquoted local part with @ in it is refused', () => {
  assert.equal(parseMailbox('a@b@example.com'), null);
  assert.equal(parseMailbox('@example.com'), null);
  assert.equal(parseMailbox('example.com'), null);
  assert.equal(parseMailbox('user@'), null);
});

test('local part limit: 64 octets accepted, 65 refused (UTF-8 counted in octets)', () => {
  assert.ok(parseMailbox(`${'a'.repeat(64)}@example.com`));
  assert.equal(parseMailbox(`${'a'.repeat(65)}@example.com`), null);
  assert.ok(parseMailbox(`${'é'.repeat(32)}@example.com`, true));
  assert.equal(parseMailbox(`${'é'.repeat(33)}@example.com`, true), null);
});

// ---- UTF-8 --------------------------------------------------------------------------------

test('non-ASCII local parts and domains only with the utf8 flag', () => {
  for (const text of ['jöe@example.com', 'user@bücher.example', '用户@例子.广告', '"jö e"@example.com']) {
    assert.equal(parseMailbox(text), null, `${text} without utf8`);
    const m = parseMailbox(text, true);
    assert.ok(m, `${text} with utf8`);
    assert.equal(m.address, text);
  }
  assert.equal(refused('<jöe@example.com>'), 'bad address syntax <jöe@example.com>');
  assert.equal(mailbox('<jöe@example.com>', utf8).localPart, 'jöe');
});

test('utf8 does not loosen the ASCII rules', () => {
  assert.equal(parseMailbox('a b@example.com', true), null);
  assert.equal(parseMailbox('a..ö@example.com', true), null);
  assert.equal(parseMailbox('ö@-bücher.example', true), null);
  assert.equal(parseMailbox('ö@bücher..example', true), null);
});

// ---- domains ------------------------------------------------------------------------------

test('validDomain: ordinary names', () => {
  for (const d of ['example.com', 'a', 'a-b.c', 'xn--bcher-kva.example', '1.example', 'EXAMPLE.COM', '123']) {
    assert.equal(validDomain(d), true, d);
  }
});

test('validDomain: bad names, including a trailing dot', () => {
  for (const d of ['', 'example.com.', '.example.com', 'a..b', '-a.com', 'a-.com', 'a_b.com', 'a b.com', 'a.com/', 'exa mple']) {
    assert.equal(validDomain(d), false, JSON.stringify(d));
  }
  assert.equal(parseMailbox('user@example.com.'), null);
});

test('validDomain: label limit 63, name limit 255 octets', () => {
  assert.equal(validDomain(`${'a'.repeat(63)}.com`), true);
  assert.equal(validDomain(`${'a'.repeat(64)}.com`), false);
  const label = 'a'.repeat(63);
  const name255 = [label, label, label, 'a'.repeat(63)].join('.'); // 255 octets
  assert.equal(name255.length, 255);
  assert.equal(validDomain(name255), true);
  assert.equal(validDomain(`${name255}a`), false);
});

test('address literals: IPv4 and IPv6 tagged', () => {
  for (const d of ['[1.2.3.4]', '[127.0.0.1]', '[IPv6:::1]', '[IPv6:2001:db8::1]', '[ipv6:fe80::1]', '[IPv6:::ffff:1.2.3.4]']) {
    assert.equal(validDomain(d), true, d);
  }
  for (const d of ['[1.2.3]', '[1.2.3.256]', '[::1]', '[IPv6:1.2.3.4]', '[IPv6:]', '[]', '[1.2.3.4', '1.2.3.4]', '[x:y]', '[IPv6:::1', '[ 1.2.3.4]']) {
    assert.equal(validDomain(d), false, d);
  }
  const m = mailbox('<postmaster@[192.0.2.1]>');
  assert.equal(m.domain, '[192.0.2.1]');
  assert.equal(mailbox('<user@[IPv6:::1]>').domain, '[IPv6:::1]');
});

// ---- paths --------------------------------------------------------------------------------

test('parsePath: a plain path and the rest after it', () => {
  const r = parsePath('<a@example.com> SIZE=100 BODY=8BITMIME', ascii);
  assert.deepEqual(r, {
    ok: true,
    mailbox: { localPart: 'a', domain: 'example.com', address: 'a@example.com' },
    rest: 'SIZE=100 BODY=8BITMIME',
    sourceRoute: false,
  });
});

test('parsePath: leading spaces are allowed; text glued to ">" is not', () => {
  assert.equal(mailbox('   <a@example.com>').address, 'a@example.com');
  assert.equal(refused('<a@example.com>SIZE=1'), 'unexpected text after address');
});

test('parsePath: the null path only where allowed', () => {
  assert.deepEqual(parsePath('<>', { allowNull: true, utf8: false }), { ok: true, mailbox: null, rest: '', sourceRoute: false });
  assert.deepEqual(parsePath('<> SIZE=5', { allowNull: true, utf8: false }), { ok: true, mailbox: null, rest: 'SIZE=5', sourceRoute: false });
  assert.equal(refused('<>'), 'null address not allowed here');
});

test('parsePath: missing brackets', () => {
  assert.equal(refused('<a@example.com'), 'missing closing ">" in address');
  assert.equal(refused('<"a>b@example.com'), 'missing closing ">" in address');
  assert.equal(refused(''), 'missing address');
  assert.equal(refused('   '), 'missing address');
  assert.match(refused('a@example.com>'), /bad address syntax/);
});

test('parsePath: a bare mailbox without brackets, as many clients send', () => {
  const r = parsePath('a@example.com SIZE=10', ascii);
  assert.ok(r.ok);
  assert.equal(r.mailbox?.address, 'a@example.com');
  assert.equal(r.rest, 'SIZE=10');
});

test('parsePath: a quoted local part with ">" and spaces does not end the path', () => {
  const r = parsePath('<"a> b"@example.com> X=1', ascii);
  assert.ok(r.ok);
  assert.equal(r.mailbox?.localPart, '"a> b"');
  assert.equal(r.rest, 'X=1');
});

test('parsePath: source routes are accepted and ignored', () => {
  const r = parsePath('<@relay1.example,@relay2.example:user@example.com>', ascii);
  assert.ok(r.ok);
  assert.equal(r.sourceRoute, true);
  assert.equal(r.mailbox?.address, 'user@example.com');
  const one = parsePath('<@[10.0.0.1]:u@example.com>', ascii);
  assert.ok(one.ok && one.sourceRoute);
  assert.equal(one.mailbox?.address, 'u@example.com');
});

test('parsePath: bad source routes', () => {
  for (const arg of ['<@relay.example>', '<@:u@example.com>', '<@relay..example:u@example.com>', '<@a.example,b.example:u@example.com>', '<@a.example,:u@example.com>']) {
    assert.equal(refused(arg), 'bad source route', arg);
  }
  assert.match(refused('<@a.example:>'), /bad address syntax/);
});

test('parsePath: the mailbox may be at most 254 octets', () => {
  const domain = `${'d'.repeat(63)}.${'d'.repeat(63)}.${'d'.repeat(63)}.${'d'.repeat(60)}`; // 252
  const ok = `a@${domain}`; // 254
  assert.equal(ok.length, 254);
  assert.equal(mailbox(`<${ok}>`).address, ok);
  assert.equal(refused(`<ab@${domain}>`), 'address too long');
});

// ---- ESMTP parameters ----------------------------------------------------------------------

test('parseParams: keywords are upper-cased, values kept as sent', () => {
  assert.deepEqual(parseParams(' size=100  Body=8bitmime SMTPUTF8 ENVID=a=b'), {
    SIZE: '100',
    BODY: '8bitmime',
    SMTPUTF8: '',
    ENVID: 'a=b',
  });
  assert.deepEqual(parseParams(''), {});
  assert.deepEqual(parseParams('X-FOO='), { 'X-FOO': '' });
});

test('parseParams: duplicates are refused whatever their case', () => {
  assert.equal(parseParams('SIZE=1 size=2'), 'duplicate parameter SIZE');
  assert.equal(parseParams('smtputf8 SMTPUTF8'), 'duplicate parameter SMTPUTF8');
});

test('parseParams: bad keywords', () => {
  assert.equal(parseParams('=1'), 'bad parameter "=1"');
  assert.equal(parseParams('-X=1'), 'bad parameter "-X=1"');
  assert.equal(parseParams('A_B=1'), 'bad parameter "A_B=1"');
  assert.equal(parseParams('SIZé=1'), 'bad parameter "SIZé=1"');
});

test('parseParams: object prototype names are plain keywords', () => {
  const p = parseParams('CONSTRUCTOR=1 TOSTRING');
  assert.ok(typeof p === 'object');
  assert.deepEqual(Object.keys(p), ['CONSTRUCTOR', 'TOSTRING']);
});

// ---- xtext ----------------------------------------------------------------------------------

test('decodeXtext: plain and escaped', () => {
  assert.equal(decodeXtext('abc'), 'abc');
  assert.equal(decodeXtext(''), '');
  assert.equal(decodeXtext('a+2Bb'), 'a+b');
  assert.equal(decodeXtext('+3D+20+7E'), '= ~');
  assert.equal(decodeXtext('rfc822;user@example.com'), 'rfc822;user@example.com');
  assert.equal(decodeXtext('<>'), '<>');
});

test('decodeXtext: malformed', () => {
  for (const s of ['a+b', '+2', '+2b', '+GG', 'a=b', 'a b', 'é', 'a\x7f', '+']) {
    assert.equal(decodeXtext(s), null, JSON.stringify(s));
  }
});
