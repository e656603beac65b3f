import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Directory, safeFolderName } from '../../src/policy/directory.js';
import { validateConfig } from '../../src/config/load.js';
import type { Config } from '../../src/config/schema.js';

type DirConfig = Pick<Config, 'domains' | 'users' | 'aliases'>;

function dir(partial: Partial<DirConfig>): Directory {
  return new Directory({ domains: [], users: [], aliases: {}, ...partial });
}

const local = (address: string, mailbox: string) => ({ address, route: { kind: 'local' as const, mailbox } });
const remote = (address: string) => ({ address, route: { kind: 'remote' as const } });

// ---- safeFolderName --------------------------------------------------------------------------

test('safeFolderName: ordinary local parts are lower-cased and kept', () => {
  assert.equal(safeFolderName('Alice'), 'alice');
  assert.equal(safeFolderName('john.doe+tag'), 'john.doe+tag');
  assert.equal(safeFolderName('jöe'), 'jöe');
});

test('safeFolderName: separators, controls and the escape character itself are escaped', () => {
  assert.equal(safeFolderName('a/b'), 'a%2fb');
  assert.equal(safeFolderName('a\\b'), 'a%5cb');
  assert.equal(safeFolderName('a:b'), 'a%3ab');
  assert.equal(safeFolderName('100%'), '100%25');
  assert.equal(safeFolderName('a\x00b\x1fc\x7f'), 'a%00b%1fc%7f');
});

test('safeFolderName: no dot files, no "." or ".."', () => {
  assert.equal(safeFolderName('.hidden'), '%2ehidden');
  assert.equal(safeFolderName('"."'), '%2e');
  assert.equal(safeFolderName('".."'), '%2e.');
  assert.equal(safeFolderName('"../../etc"'), '%2e.%2f..%2fetc');
  assert.equal(safeFolderName('""'), '%');
  assert.equal(safeFolderName(''), '%');
});

test('safeFolderName: quoted local parts lose their quotes and escapes', () => {
  assert.equal(safeFolderName('"John Doe"'), 'john doe');
  assert.equal(safeFolderName('"a\\"b"'), 'a"b');
  assert.equal(safeFolderName('"a\\\\b"'), 'a%5cb');
  assert.equal(safeFolderName('"a@b"'), 'a@b');
  assert.equal(safeFolderName('"a/b"'), 'a%2fb');
});

test('safeFolderName: never produces a separator or a leading dot', () => {
  const samples = ['/', '//', '.', '..', '.a/b', '"/"', '"\\/"', 'a/../b', '"\\.x"', '\\', '%2f'];
  for (const s of samples) {
    const f = safeFolderName(s);
    assert.ok(!f.includes('/') && !f.includes('\\') && !f.startsWith('.') && f.length > 0, `${s} -> ${f}`);
  }
  // Distinct local parts give distinct folders.
  assert.notEqual(safeFolderName('a/b'), safeFolderName('a%2fb'));
});

// ---- resolve -----------------------------------------------------------------------------------

test('catch-all domain: every local part gets its own folder', () => {
  const d = dir({ domains: [{ name: 'example.com', catchAll: true }] });
  assert.deepEqual(d.resolve('anyone@example.com'), [local('anyone@example.com', 'example.com/anyone')]);
  assert.deepEqual(d.resolve('Bob@EXAMPLE.com'), [local('Bob@EXAMPLE.com', 'example.com/bob')]);
  assert.deepEqual(d.resolve('"x/y"@example.com'), [local('"x/y"@example.com', 'example.com/x%2fy')]);
  assert.deepEqual(d.resolve('.dot@example.com'), [local('.dot@example.com', 'example.com/%2edot')]);
});

test('users: addresses lead to the mailbox of their first address', () => {
  const d = dir({
    domains: [{ name: 'example.com', catchAll: false }, { name: 'example.org', catchAll: false }],
    users: [
      { name: 'alice', addresses: ['alice@example.com', 'a.smith@example.org'] },
      { name: 'svc', addresses: [] },
    ],
  });
  assert.deepEqual(d.resolve('alice@example.com'), [local('alice@example.com', 'example.com/alice')]);
  assert.deepEqual(d.resolve('A.Smith@Example.ORG'), [local('A.Smith@Example.ORG', 'example.com/alice')]);
  assert.equal(d.users.get('alice')?.mailbox, 'example.com/alice');
  assert.equal(d.users.get('svc')?.mailbox, 'users/svc');
  assert.equal(d.userByAddress('ALICE@example.com')?.name, 'alice');
  assert.equal(d.userByAddress('nobody@example.com'), undefined);
});

test('unknown user in a domain that is not catch-all: null', () => {
  const d = dir({ domains: [{ name: 'example.com', catchAll: false }], users: [{ name: 'a', addresses: ['a@example.com'] }] });
  assert.equal(d.resolve('b@example.com'), null);
  assert.equal(d.resolve('a+tag@example.com'), null);
});

test('postmaster is always accepted in a local domain', () => {
  const d = dir({ domains: [{ name: 'example.com', catchAll: false }] });
  assert.deepEqual(d.resolve('postmaster@example.com'), [local('postmaster@example.com', 'example.com/postmaster')]);
  assert.deepEqual(d.resolve('PostMaster@Example.com'), [local('PostMaster@Example.com', 'example.com/postmaster')]);
});

test('postmaster that is a user or an alias goes there', () => {
  const d = dir({
    domains: [{ name: 'example.com', catchAll: false }],
    users: [{ name: 'admin', addresses: ['admin@example.com'] }],
    aliases: { 'postmaster@example.com': ['admin@example.com'] },
  });
  assert.deepEqual(d.resolve('postmaster@example.com'), [local('admin@example.com', 'example.com/admin')]);
});

test('addresses in other domains are remote', () => {
  const d = dir({ domains: [{ name: 'example.com', catchAll: true }] });
  assert.deepEqual(d.resolve('someone@elsewhere.example'), [remote('someone@elsewhere.example')]);
  assert.deepEqual(d.resolve('x@sub.example.com'), [remote('x@sub.example.com')]);
  assert.equal(d.isLocalDomain('EXAMPLE.com'), true);
  assert.equal(d.isLocalDomain('sub.example.com'), false);
});

test('aliases: recursive, to several targets, local and remote, deduplicated', () => {
  const d = dir({
    domains: [{ name: 'example.com', catchAll: false }],
    users: [
      { name: 'alice', addresses: ['alice@example.com'] },
      { name: 'bob', addresses: ['bob@example.com'] },
    ],
    aliases: {
      'team@example.com': ['devs@example.com', 'ops@example.com'],
      'devs@example.com': ['alice@example.com', 'bob@example.com'],
      'ops@example.com': ['bob@example.com', 'pager@remote.example'],
    },
  });
  assert.deepEqual(d.resolve('Team@Example.com'), [
    local('alice@example.com', 'example.com/alice'),
    local('bob@example.com', 'example.com/bob'),
    remote('pager@remote.example'),
  ]);
});

test('aliases: a loop on its own resolves to nothing; a loop with an exit resolves to the exit', () => {
  const d = dir({
    domains: [{ name: 'example.com', catchAll: false }],
    users: [{ name: 'carol', addresses: ['carol@example.com'] }],
    aliases: {
      'a@example.com': ['b@example.com'],
      'b@example.com': ['a@example.com'],
      'self@example.com': ['self@example.com'],
      'c@example.com': ['d@example.com', 'carol@example.com'],
      'd@example.com': ['c@example.com'],
    },
  });
  assert.equal(d.resolve('a@example.com'), null);
  assert.equal(d.resolve('self@example.com'), null);
  assert.deepEqual(d.resolve('c@example.com'), [local('carol@example.com', 'example.com/carol')]);
  assert.deepEqual(d.resolve('d@example.com'), [local('carol@example.com', 'example.com/carol')]);
});

test('aliases: unknown local targets are dropped; only unknown targets means null', () => {
  const d = dir({
    domains: [{ name: 'example.com', catchAll: false }],
    users: [{ name: 'alice', addresses: ['alice@example.com'] }],
    aliases: {
      'some@example.com': ['ghost@example.com', 'alice@example.com'],
      'none@example.com': ['ghost@example.com', 'phantom@example.com'],
    },
  });
  assert.deepEqual(d.resolve('some@example.com'), [local('alice@example.com', 'example.com/alice')]);
  assert.equal(d.resolve('none@example.com'), null);
});

test('aliases: an alias in a remote domain still applies', () => {
  const d = dir({
    domains: [{ name: 'example.com', catchAll: false }],
    users: [{ name: 'alice', addresses: ['alice@example.com'] }],
    aliases: { 'old@legacy.example': ['alice@example.com'] },
  });
  assert.deepEqual(d.resolve('old@legacy.example'), [local('alice@example.com', 'example.com/alice')]);
});

test('aliases: a very long chain stops after 10 levels', () => {
  const aliases: Record<string, string[]> = {};
  for (let i = 0; i < 15; i++) aliases[`l${i}@example.com`] = [`l${i + 1}@example.com`];
  const strict = dir({ domains: [{ name: 'example.com', catchAll: false }], aliases });
  assert.equal(strict.resolve('l0@example.com'), null);
  assert.deepEqual(strict.resolve('l6@example.com'), null);
  const catchAll = dir({ domains: [{ name: 'example.com', catchAll: true }], aliases });
  assert.deepEqual(catchAll.resolve('l0@example.com'), [local('l10@example.com', 'example.com/l10')]);
  assert.deepEqual(catchAll.resolve('l5@example.com'), [local('l15@example.com', 'example.com/l15')]);
});

test('expand: an alias shows its own list, a user their address, unknown nothing', () => {
  const d = dir({
    domains: [{ name: 'example.com', catchAll: false }],
    users: [{ name: 'alice', addresses: ['alice@example.com'] }],
    aliases: {
      'list@example.com': ['alice@example.com', 'sub@example.com', 'x@remote.example'],
      'sub@example.com': ['alice@example.com'],
    },
  });
  assert.deepEqual(d.expand('LIST@example.com'), ['alice@example.com', 'sub@example.com', 'x@remote.example']);
  assert.deepEqual(d.expand('alice@example.com'), ['alice@example.com']);
  assert.deepEqual(d.expand('ghost@example.com'), []);
  assert.deepEqual(d.expand('x@remote.example'), ['x@remote.example']);
  // The list returned is a copy.
  d.expand('list@example.com').push('mutated');
  assert.equal(d.expand('list@example.com').length, 3);
});

test('firstDomain is the first configured domain', () => {
  assert.equal(dir({ domains: [{ name: 'a.example', catchAll: false }, { name: 'b.example', catchAll: true }] }).firstDomain, 'a.example');
  assert.equal(dir({}).firstDomain, undefined);
});

test('built from a validated config: case-insensitive everywhere, passwords resolved', () => {
  const config = validateConfig(
    {
      services: [{ id: 0, name: 's', listen: '127.0.0.1', port: 25 }],
      domains: ['Example.COM'],
      users: [{ name: 'alice', addresses: ['Alice@Example.com'], password: '$scrypt$N=16384,r=8,p=1$c2FsdA==$a2V5' }],
      aliases: { 'Info@EXAMPLE.com': ['ALICE@example.com'] },
    },
    't',
  );
  const d = new Directory(config);
  assert.deepEqual(d.resolve('INFO@example.com'), [local('alice@example.com', 'example.com/alice')]);
  assert.equal(d.users.get('alice')?.passwordHash, '$scrypt$N=16384,r=8,p=1$c2FsdA==$a2V5');
});
