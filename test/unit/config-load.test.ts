import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { ConfigError, loadConfig, resolveSecret, validateConfig } from '../../src/config/load.js';
import { hashPassword } from '../../src/policy/password.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Input = Record<string, any>;

function base(): Input {
  return { services: [{ id: 0, name: 'smtp', listen: '127.0.0.1', port: 2525 }] };
}

/** Runs `fn` with environment variables set (undefined = unset), restoring them afterwards. */
function withEnv<T>(vars: Record<string, string | undefined>, fn: () => T): T {
  const saved = Object.fromEntries(Object.keys(vars).map((k) => [k, process.env[k]]));
  const apply = (v: Record<string, string | undefined>): void => {
    for (const [k, val] of Object.entries(v)) {
      if (val === undefined) delete process.env[k];
      else process.env[k] = val;
    }
  };
  apply(vars);
  try {
    return fn();
  } finally {
    apply(saved);
  }
}

function configError(input: unknown, file = 'test.yaml'): ConfigError {
  try {
    withEnv({ MOONPOST_DATA: undefined }, () => validateConfig(input, file, '/base'));
  } catch (err) {
    assert.ok(err instanceof ConfigError, `a ConfigError, got ${String(err)}`);
    assert.equal(err.file, file);
    assert.ok(err.message.startsWith(`${file}: `), err.message);
    return err;
  }
  assert.fail('expected the configuration to be refused');
}

test('a minimal config gets every default', () => {
  const c = withEnv({ MOONPOST_DATA: undefined }, () => validateConfig(base(), 'test.yaml', '/base'));
  assert.equal(c.hostname, 'localhost');
  assert.equal(c.dataDir, '/base/var');
  assert.deepEqual(c.services[0], {
    id: 0,
    name: 'smtp',
    listen: '127.0.0.1',
    port: 2525,
    tls: 'none',
    auth: false,
    authWithoutTls: false,
    proxyProtocol: false,
    proxyTrusted: ['127.0.0.1/32', '::1/128'],
    spf: false,
  });
  assert.deepEqual(c.relay, { networks: ['127.0.0.1/32', '::1/128'], mode: 'either' });
  assert.equal(c.limits.messageSize, 25 * 1024 * 1024);
  assert.equal(c.limits.timeouts.command, 300);
  assert.equal(c.limits.timeouts.data, 600);
  assert.equal(c.limits.timeouts.shutdown, 30);
  assert.equal(c.queue.fsync, true);
  assert.equal(c.log.level, 'info');
  assert.deepEqual(c.domains, []);
  assert.deepEqual(c.users, []);
  assert.deepEqual(c.aliases, {});
});

test('the embedded defaults are a valid configuration', () => {
  const c = withEnv({ MOONPOST_DATA: undefined }, () => loadConfig());
  assert.equal(c.services.length, 1);
  assert.equal(c.services[0].listen, '127.0.0.1');
  assert.equal(c.services[0].port, 2525);
  assert.deepEqual(c.domains, [{ name: 'localhost', catchAll: true }]);
  assert.deepEqual(c.relay, { networks: ['127.0.0.1/32'], mode: 'ip' });
  assert.equal(c.dataDir, resolve(process.cwd(), 'var'));
});

test('a config without services is refused', () => {
  assert.match(configError({}).message, /services/);
  assert.match(configError({ services: [] }).message, /services/);
});

test('an unknown top-level key is named', () => {
  const err = configError({ ...base(), relayy: {} });
  assert.match(err.message, /invalid configuration/);
  assert.match(err.message, /\(top\): unknown key\(s\) "relayy"/);
});

test('an unknown nested key is named with its path', () => {
  assert.match(configError({ services: [{ ...base().services[0], tsl: 'none' }] }).message, /services\[0\]: unknown key\(s\) "tsl"/);
  assert.match(configError({ ...base(), limits: { timeouts: { dat: 5 } } }).message, /limits\.timeouts: unknown key\(s\) "dat"/);
  assert.match(configError({ ...base(), relay: { networks: [], modes: 'ip' } }).message, /relay: unknown key\(s\) "modes"/);
});

test('wrong types are refused with the path of the value', () => {
  assert.match(configError({ services: [{ ...base().services[0], port: '25' }] }).message, /services\[0\]\.port:/);
  assert.match(configError({ services: [{ ...base().services[0], port: 70000 }] }).message, /services\[0\]\.port:/);
  assert.match(configError({ ...base(), hostname: 5 }).message, /hostname:/);
  assert.match(configError({ ...base(), queue: { fsync: 'yes' } }).message, /queue\.fsync:/);
  assert.match(configError({ ...base(), limits: { lineLength: 10 } }).message, /limits\.lineLength:/);
  assert.match(configError({ services: [{ ...base().services[0], tls: 'ssl' }] }).message, /services\[0\]\.tls:/);
});

test('a bad CIDR is refused', () => {
  for (const net of ['10.0.0.0/33', '10.0.0.0/', 'localhost', '1.2.3.4/8/8']) {
    const err = configError({ ...base(), relay: { networks: [net] } });
    assert.match(err.message, /relay\.networks\[0\]: expected an IP network/, net);
  }
  assert.match(configError({ services: [{ ...base().services[0], proxyTrusted: ['x'] }] }).message, /services\[0\]\.proxyTrusted\[0\]:/);
});

test('a listen address must be an IP address', () => {
  for (const listen of ['localhost', '0.0.0.0:25', '', '1.2.3']) {
    const err = configError({ services: [{ ...base().services[0], listen }] });
    assert.match(err.message, /services\[0\]\.listen: expected an IP address to listen on/, listen);
  }
  const ok = withEnv({ MOONPOST_DATA: undefined }, () => validateConfig({ services: [{ ...base().services[0], listen: '::' }] }, 't'));
  assert.equal(ok.services[0].listen, '::');
});

test('duplicate service ids are refused', () => {
  const s = base().services[0];
  const err = configError({ services: [s, { ...s, name: 'sub', port: 587 }] });
  assert.match(err.message, /services\[1\]\.id: duplicate service id 0/);
});

test('tls needs both cert and key; relative paths resolve from the config folder', () => {
  const s = base().services[0];
  assert.match(configError({ services: [{ ...s, tls: 'starttls' }] }).message, /services\[0\]: tls "starttls" needs both "cert" and "key"/);
  assert.match(configError({ services: [{ ...s, tls: 'implicit', cert: 'c.pem' }] }).message, /tls "implicit" needs both/);
  const c = withEnv({ MOONPOST_DATA: undefined }, () =>
    validateConfig({ services: [{ ...s, tls: 'starttls', cert: 'tls/c.pem', key: '/etc/k.pem' }] }, 't', '/etc/moonpost'),
  );
  assert.equal(c.services[0].cert, '/etc/moonpost/tls/c.pem');
  assert.equal(c.services[0].key, '/etc/k.pem');
});

test('duplicate user names are refused', () => {
  const err = configError({ ...base(), users: [{ name: 'a' }, { name: 'a' }] });
  assert.match(err.message, /users\[1\]\.name: duplicate user "a"/);
});

test('a password must be an scrypt hash', async () => {
  const hash = await hashPassword('secret');
  const c = withEnv({ MOONPOST_DATA: undefined }, () => validateConfig({ ...base(), users: [{ name: 'a', password: hash }] }, 't'));
  assert.equal(c.users[0].password, hash);
  const err = configError({ ...base(), users: [{ name: 'ok' }, { name: 'a', password: 'secret' }] });
  assert.match(err.message, /users\[1\]\.password: expected an scrypt hash/);
});

test('an {env: NAME} password must name a set variable holding a hash', async () => {
  const hash = await hashPassword('pw');
  const input = { ...base(), users: [{ name: 'a', password: { env: 'MOONPOST_TEST_PW' } }] };
  withEnv({ MOONPOST_TEST_PW: undefined }, () => {
    assert.match(configError(input).message, /users\[0\]\.password: environment variable MOONPOST_TEST_PW is not set/);
  });
  withEnv({ MOONPOST_TEST_PW: '' }, () => {
    assert.match(configError(input).message, /MOONPOST_TEST_PW is not set/);
  });
  withEnv({ MOONPOST_TEST_PW: 'plain' }, () => {
    assert.match(configError(input).message, /users\[0\]\.password: expected an scrypt hash/);
  });
  withEnv({ MOONPOST_TEST_PW: hash, MOONPOST_DATA: undefined }, () => {
    const c = validateConfig(input, 't');
    assert.deepEqual(c.users[0].password, { env: 'MOONPOST_TEST_PW' });
    assert.equal(resolveSecret(c.users[0].password!), hash);
  });
  assert.match(configError({ ...base(), users: [{ name: 'a', password: { env: '' } }] }).message, /users\[0\]\.password/);
  assert.match(configError({ ...base(), users: [{ name: 'a', password: { env: 'X', other: 1 } }] }).message, /users\[0\]\.password/);
});

test('resolveSecret: inline strings and environment variables', () => {
  assert.equal(resolveSecret('inline'), 'inline');
  withEnv({ MOONPOST_TEST_SECRET: 'v' }, () => assert.equal(resolveSecret({ env: 'MOONPOST_TEST_SECRET' }), 'v'));
  withEnv({ MOONPOST_TEST_SECRET: undefined }, () => {
    assert.throws(() => resolveSecret({ env: 'MOONPOST_TEST_SECRET' }, 'f.yaml', 'x.y'), (err: Error) => {
      assert.ok(err instanceof ConfigError);
      assert.equal(err.message, 'f.yaml: x.y: environment variable MOONPOST_TEST_SECRET is not set');
      return true;
    });
  });
});

test('domains, users and aliases are normalized', () => {
  const c = withEnv({ MOONPOST_DATA: undefined }, () =>
    validateConfig(
      {
        ...base(),
        domains: ['Example.COM.', { name: 'Other.example', catchAll: true }],
        users: [{ name: 'alice', addresses: ['Alice@Example.com'] }],
        aliases: { 'Info@Example.com': ['Alice@Example.com'] },
      },
      't',
    ),
  );
  assert.deepEqual(c.domains, [
    { name: 'example.com', catchAll: false },
    { name: 'other.example', catchAll: true },
  ]);
  assert.deepEqual(c.users[0].addresses, ['alice@example.com']);
  assert.deepEqual(c.aliases, { 'info@example.com': ['alice@example.com'] });
  assert.match(configError({ ...base(), users: [{ name: 'a', addresses: ['no-at-sign'] }] }).message, /users\[0\]\.addresses\[0\]/);
  assert.match(configError({ ...base(), aliases: { 'a@b': [] } }).message, /aliases/);
  assert.match(configError({ ...base(), domains: ['bad domain'] }).message, /domains\[0\]/);
});

test('MOONPOST_DATA sets the data folder when the config does not', () => {
  withEnv({ MOONPOST_DATA: '/srv/moonpost' }, () => {
    assert.equal(validateConfig(base(), 't', '/base').dataDir, '/srv/moonpost');
    assert.equal(validateConfig({ ...base(), dataDir: '/explicit' }, 't', '/base').dataDir, '/explicit');
    assert.equal(validateConfig({ ...base(), dataDir: 'rel' }, 't', '/base').dataDir, '/base/rel');
  });
  withEnv({ MOONPOST_DATA: 'relative/data' }, () => {
    assert.equal(validateConfig(base(), 't', '/base').dataDir, '/base/relative/data');
  });
  withEnv({ MOONPOST_DATA: '' }, () => {
    assert.equal(validateConfig(base(), 't', '/base').dataDir, '/base/var');
  });
});

test('MOONPOST_DATA also applies with no config file (embedded defaults)', () => {
  withEnv({ MOONPOST_DATA: '/srv/moonpost' }, () => {
    assert.equal(loadConfig().dataDir, '/srv/moonpost');
  });
});

test('loadConfig reads YAML, resolves paths from its folder and reports YAML errors', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'moonpost-config-'));
  try {
    const file = join(dir, 'moonpost.yaml');
    await writeFile(file, 'hostname: mx.example\ndataDir: data\nservices:\n  - {id: 1, name: mx, listen: "::1", port: 25}\n');
    const c = withEnv({ MOONPOST_DATA: undefined }, () => loadConfig(file));
    assert.equal(c.hostname, 'mx.example');
    assert.equal(c.dataDir, join(dir, 'data'));
    assert.equal(c.services[0].id, 1);

    const dup = join(dir, 'dup.yaml');
    await writeFile(dup, 'hostname: a\nhostname: b\nservices: []\n');
    assert.throws(() => loadConfig(dup), (err: Error) => err instanceof ConfigError && /YAML syntax/.test(err.message));

    const unknown = join(dir, 'unknown.yaml');
    await writeFile(unknown, 'services:\n  - {id: 0, name: s, listen: 127.0.0.1, port: 25, bogus: 1}\n');
    assert.throws(() => loadConfig(unknown), (err: Error) => err instanceof ConfigError && err.message.startsWith(unknown) && /services\[0\]: unknown key\(s\) "bogus"/.test(err.message));

    assert.throws(() => loadConfig(join(dir, 'missing.yaml')), (err: Error) => err instanceof ConfigError && /cannot read/.test(err.message));

    const empty = join(dir, 'empty.yaml');
    await writeFile(empty, '');
    assert.throws(() => loadConfig(empty), (err: Error) => err instanceof ConfigError && /services/.test(err.message));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('a sender\'s timeouts are seconds, as the client gets them in milliseconds', async () => {
  const { clientTimeouts } = await import('../../src/delivery/relay/send-run.js');
  const c = validateConfig({ ...base(), senders: [{ id: 0, name: 'out', mode: 'mx', timeouts: { connect: 2, command: 0.5 } }] }, 't.yaml');
  assert.deepEqual(c.senders[0].timeouts, { connect: 2, command: 0.5 });
  assert.deepEqual(clientTimeouts(c.senders[0].timeouts), { connect: 2000, mail: 500, rcpt: 500, greeting: 500, ehlo: 500, dataInit: 500 });
  assert.deepEqual(clientTimeouts({}), {});
  assert.throws(() => validateConfig({ ...base(), senders: [{ id: 0, name: 'out', mode: 'mx', timeouts: { connect: 0 } }] }, 't.yaml'), ConfigError);
  // Milliseconds by mistake are refused, not taken as hours.
  assert.throws(() => validateConfig({ ...base(), senders: [{ id: 0, name: 'out', mode: 'mx', timeouts: { connect: 30000 } }] }, 't.yaml'), /seconds, at most 3600/);
});
