/**
 * Fuzzing of reply rendering (src/smtp/reply.ts: formatReply, parseReplyText) and of the SASL
 * exchanges (src/smtp/sasl.ts): whatever goes in, a reply goes out as well-formed wire text
 * (no bare CR or LF, no line over 512 octets), and SASL never throws.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { formatReply, parseReplyText, reply } from '../../src/smtp/reply.js';
import { SaslExchange, SASL_MECHANISMS, type SaslStep } from '../../src/smtp/sasl.js';
import { checkWireReply, glue, hostileString, params } from './fuzz-common.js';

const longText = fc.oneof(
  { weight: 4, arbitrary: hostileString(100) },
  { weight: 1, arbitrary: fc.tuple(fc.constantFrom('a', 'é', '€', '😀', '\r\n', ' ', '\ud800'), fc.nat({ max: 700 })).map(([c, n]) => c.repeat(n)) },
  { weight: 1, arbitrary: fc.tuple(fc.string({ maxLength: 20 }), fc.nat({ max: 600 }), hostileString(20)).map(([a, n, b]) => `${a}${'x'.repeat(n)}${b}`) },
);

const enhanced = fc.option(fc.tuple(fc.constantFrom(2, 4, 5), fc.nat({ max: 999 }), fc.nat({ max: 999 })).map(([a, b, c]) => `${a}.${b}.${c}`));

test('fuzz formatReply: well-formed lines, none over 512 octets, no bare CR/LF, text only cut', () => {
  fc.assert(
    fc.property(fc.integer({ min: 100, max: 599 }), enhanced, fc.array(longText, { maxLength: 6 }), fc.boolean(), (code, enh, lines, enhancedCodes) => {
      const r = { code, enhanced: enh ?? undefined, lines };
      const wire = formatReply(r, enhancedCodes);
      const problem = checkWireReply(wire, code);
      assert.equal(problem, null, problem ?? '');
      const out = wire.slice(0, -2).split('\r\n');
      assert.equal(out.length, Math.max(1, lines.length));
      for (const [i, line] of out.entries()) {
        // What follows the code and enhanced status is the start of the line's text, cleaned.
        let text = line.slice(4);
        const cls = Math.floor(code / 100);
        if (enhancedCodes && enh && [2, 4, 5].includes(cls)) {
          const want = `${cls}${enh.slice(1)}`;
          assert.ok(text.startsWith(want), `enhanced status ${want} on every line: ${JSON.stringify(line)}`);
          text = text.slice(want.length + 1);
        }
        // Compared as the UTF-8 octets that go on the wire.
        const source = Buffer.from((lines[i] ?? '').replace(/[\r\n\0]/g, ' '));
        const sent = Buffer.from(text);
        assert.ok(source.subarray(0, sent.length).equals(sent), `line ${i} text is the start of the given text`);
      }
    }),
    params(25_000, [[250, '2.0.0', ['é'.repeat(300)], true], [554, null, ['\ud83d'.repeat(200)], false], [220, '5.5.5', ['a\r\n221 injected'], true]]),
  );
});

test('fuzz parseReplyText: never throws; what it returns renders well-formed', () => {
  const replyish = glue(
    fc.oneof(
      fc.constantFrom('250', '250 ', '250-', '550 5.7.1 ', '4.4.4 ', '\r\n', '\n', '\r', '199 ', '600 ', '421', ' '),
      hostileString(20),
      longText,
    ),
    8,
  );
  fc.assert(
    fc.property(replyish, (text) => {
      const r = parseReplyText(text);
      if (!r) return;
      assert.ok(r.code >= 200 && r.code <= 599);
      const problem = checkWireReply(formatReply(r), r.code);
      assert.equal(problem, null, problem ?? '');
    }),
    params(25_000),
  );
});

test('fuzz formatReply(reply(...)): arbitrary texts of the constructors', () => {
  fc.assert(
    fc.property(fc.integer({ min: 200, max: 599 }), fc.array(longText, { maxLength: 3 }), (code, lines) => {
      const problem = checkWireReply(formatReply(reply(code, '5.5.4', ...lines)), code);
      assert.equal(problem, null, problem ?? '');
    }),
    params(10_000),
  );
});

// ---- SASL ----------------------------------------------------------------------------------

const b64 = (s: string): string => Buffer.from(s).toString('base64');
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

function checkStep(step: SaslStep): void {
  switch (step.kind) {
    case 'challenge':
      assert.match(step.text, BASE64);
      break;
    case 'error':
      assert.ok(step.code >= 500 && step.code <= 599, `code ${step.code}`);
      assert.match(step.enhanced, /^5\.\d+\.\d+$/);
      assert.equal(checkWireReply(formatReply(reply(step.code, step.enhanced, step.text)), step.code), null);
      break;
    case 'credentials':
      assert.equal(typeof step.user, 'string');
      assert.equal(typeof step.password, 'string');
      break;
    case 'cram':
      assert.match(step.digest, /^[0-9a-f]{32}$/);
      assert.match(step.challenge, /^<[0-9a-f]{16}\.\d+@[^>]*>$/);
      break;
    default:
      assert.fail(`unknown step ${JSON.stringify(step)}`);
  }
}

const saslLine = fc.oneof(
  { weight: 3, arbitrary: hostileString(60) },
  { weight: 3, arbitrary: fc.string({ maxLength: 60 }).map(b64) },
  { weight: 2, arbitrary: fc.tuple(hostileString(10), hostileString(10), hostileString(10)).map(([a, u, p]) => b64(`${a}\0${u}\0${p}`)) },
  { weight: 1, arbitrary: fc.constantFrom('*', ' * ', '=', '', 'AA==', 'A===', '====', 'AAA', '\u00a0*') },
  { weight: 1, arbitrary: fc.tuple(hostileString(10), fc.stringMatching(/^[0-9a-fA-F]{32}$/)).map(([u, d]) => b64(`${u} ${d}`)) },
);

test('fuzz SASL exchanges: never throw; every step is a well-formed challenge, error or result', () => {
  fc.assert(
    fc.property(fc.constantFrom(...SASL_MECHANISMS), fc.option(saslLine), fc.array(saslLine, { maxLength: 4 }), hostileString(20), (mech, initial, lines, hostname) => {
      const x = new SaslExchange(mech, hostname.replace(/[>\r\n]/g, '') || 'localhost');
      let step = x.start(initial ?? undefined);
      checkStep(step);
      for (const line of lines) {
        if (step.kind !== 'challenge') break;
        step = x.next(line);
        checkStep(step);
      }
    }),
    params(30_000),
  );
});

test('fuzz SASL: PLAIN, LOGIN and CRAM-MD5 answers round-trip', () => {
  // Well-formed Unicode (what a client can encode in UTF-8); no NUL inside PLAIN's fields.
  const field = fc.string({ unit: 'binary', maxLength: 20 }).filter((s) => !s.includes('\0'));
  fc.assert(
    fc.property(field, field.filter((s) => s !== ''), field, fc.stringMatching(/^[0-9a-fA-F]{32}$/), (authzid, user, password, digest) => {
      const plain = new SaslExchange('PLAIN').start(b64(`${authzid}\0${user}\0${password}`));
      assert.deepEqual(plain, { kind: 'credentials', authzid, user, password });

      const login = new SaslExchange('LOGIN');
      assert.equal(login.start(b64(user)).kind, 'challenge');
      assert.deepEqual(login.next(` ${b64(password) || '='} `), { kind: 'credentials', authzid: '', user, password });

      const cram = new SaslExchange('CRAM-MD5', 'mx.test');
      const ch = cram.start(undefined);
      assert.equal(ch.kind, 'challenge');
      const cramUser = user.replace(/\s/g, '_');
      const answer = cram.next(b64(`${cramUser} ${digest}`));
      assert.deepEqual(answer, {
        kind: 'cram',
        user: cramUser,
        digest: digest.toLowerCase(),
        challenge: Buffer.from(ch.kind === 'challenge' ? ch.text : '', 'base64').toString(),
      });
    }),
    params(10_000),
  );
});
