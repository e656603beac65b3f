import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { startScriptServer, type ScriptHarness } from '../helpers/script-server.js';
import { TestClient, sendMail, message } from '../helpers/smtp-client.js';
import { makeCert } from '../helpers/tls-cert.js';
import { hashPassword } from '../../src/policy/password.js';

// Every SMTPSVR.LUA global of the vendor page (and the S7 extensions), read and written by a
// script in a real session.

let h: ScriptHarness;
let cert: ReturnType<typeof makeCert>;
const PLAIN = 3;
const TLS = 5;
const AUTH = 6;
const SUBMISSION = 7;
const b64 = (s: string): string => Buffer.from(s).toString('base64');

/** DoNOOP answers with every global, one per reply line, so a test can read them back. */
const DUMP = `
  local names = { "IPAddress", "ServerID", "ServerName", "Encryption", "EncryptionDetails", "AuthenticatedUser",
    "SMTPAuthenticatedUser", "ValidClientAddress", "LocalClientAddress", "AuthenticationRequired", "AllowedUsers",
    "ForceDisconnect", "UseBATV", "MaxRecipientsPerLocalMessage", "MaxRecipientsPerIncomingMessage",
    "MaxMessagesPerLocalSession", "MaxLineLength", "AddUserAddresses", "HeloName", "MailFrom", "SessionID" }
  function dump()
    local out = {}
    for _, n in ipairs(names) do
      local v = _G[n]
      local t = math.type(v) or type(v)
      out[#out + 1] = n .. "=" .. t .. ":" .. tostring(v)
    end
    return table.concat(out, "\\r\\n")
  end
  function DoNOOP() return "250 " .. dump() end
`;

before(async () => {
  cert = makeCert();
  const tls = { cert: cert.cert, key: cert.key };
  h = await startScriptServer(DUMP, {
    domains: [{ name: 'localhost', catchAll: true }],
    aliases: { 'team@localhost': ['alice@localhost', 'bob@localhost'] },
    users: [
      { name: 'alice', password: await hashPassword('s3cret'), addresses: ['alice@localhost'] },
      { name: 'bob', password: await hashPassword('b0bpass'), addresses: ['bob@localhost'] },
    ],
    relay: { networks: ['127.0.0.1/32'], mode: 'either' },
    limits: { recipients: 50, lineLength: 1000, errors: 50 },
    services: [
      { id: PLAIN, name: 'mx-three', listen: '127.0.0.1', port: 0 },
      { id: TLS, name: 'mx-tls', listen: '127.0.0.1', port: 0, tls: 'starttls', ...tls },
      { id: AUTH, name: 'auth-plain', listen: '127.0.0.1', port: 0, authWithoutTls: true },
      { id: SUBMISSION, name: 'submission', listen: '127.0.0.1', port: 0, auth: true, authWithoutTls: true },
    ],
  });
});
after(async () => {
  await h.stop();
  rmSync(cert.dir, { recursive: true, force: true });
});

async function connect(service = PLAIN, localAddress?: string): Promise<TestClient> {
  const c = await TestClient.connect(h.ports.get(service)!, { localAddress });
  assert.equal((await c.read()).code, 220);
  return c;
}

/** The globals as DoNOOP saw them: name → "type:value". */
async function globals(c: TestClient): Promise<Record<string, string>> {
  const r = await c.cmd('NOOP');
  assert.equal(r.code, 250, r.raw);
  return Object.fromEntries(r.lines.map((l) => l.slice(4)).map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]));
}

async function auth(c: TestClient, user: string, password: string): Promise<number> {
  return (await c.cmd(`AUTH PLAIN ${b64(`\0${user}\0${password}`)}`)).code;
}

test('the globals of a plain session from an allowed address, and the extensions HeloName, MailFrom, SessionID', async () => {
  await h.setScript(DUMP);
  const c = await connect();
  const g = await globals(c);
  assert.deepEqual({ ...g, SessionID: undefined }, {
    IPAddress: 'string:127.0.0.1',
    ServerID: 'integer:3',
    ServerName: 'string:mx-three',
    Encryption: 'boolean:false',
    EncryptionDetails: 'string:',
    AuthenticatedUser: 'string:',
    SMTPAuthenticatedUser: 'string:',
    ValidClientAddress: 'boolean:true',
    LocalClientAddress: 'boolean:true',
    AuthenticationRequired: 'boolean:false',
    AllowedUsers: 'string:',
    ForceDisconnect: 'boolean:false',
    UseBATV: 'boolean:false',
    MaxRecipientsPerLocalMessage: 'integer:50',
    MaxRecipientsPerIncomingMessage: 'integer:50',
    MaxMessagesPerLocalSession: 'integer:0',
    MaxLineLength: 'integer:1000',
    AddUserAddresses: 'boolean:false',
    HeloName: 'string:',
    MailFrom: 'string:',
    SessionID: undefined,
  });
  assert.match(g.SessionID, /^string:S[0-9A-Z]+$/);
  await c.cmd('EHLO client.example');
  await c.cmd('MAIL FROM:<sender@example.com>');
  const g2 = await globals(c);
  assert.equal(g2.HeloName, 'string:client.example');
  assert.equal(g2.MailFrom, 'string:sender@example.com');
  assert.equal(g2.SessionID, g.SessionID, 'one session, one id');
  await c.cmd('RSET');
  assert.equal((await globals(c)).MailFrom, 'string:');
  c.close();
  const d = await connect();
  assert.notEqual((await globals(d)).SessionID, g.SessionID);
  d.close();
});

test('an outside client: IPAddress, ValidClientAddress and LocalClientAddress; Start sees the globals too', async () => {
  await h.setScript(`${DUMP}
    function Start() return "220 " .. dump() end`);
  const c = await TestClient.connect(h.port, { localAddress: '127.0.0.2' });
  const greeting = (await c.read()).raw;
  assert.match(greeting, /^220-IPAddress=string:127\.0\.0\.2\r\n220-ServerID=integer:3\r\n220-ServerName=string:mx-three\r\n/);
  assert.match(greeting, /\r\n220-ValidClientAddress=boolean:false\r\n220-LocalClientAddress=boolean:false\r\n220-AuthenticationRequired=boolean:false\r\n/);
  c.close();
});

test('Encryption and EncryptionDetails follow STARTTLS; AuthenticatedUser and SMTPAuthenticatedUser follow AUTH', async () => {
  await h.setScript(DUMP);
  const c = await connect(TLS);
  await c.cmd('EHLO client.test');
  let g = await globals(c);
  assert.equal(g.Encryption, 'boolean:false');
  assert.equal(g.EncryptionDetails, 'string:');
  assert.equal(g.ServerID, 'integer:5');
  assert.equal(g.ServerName, 'string:mx-tls');
  assert.equal((await c.cmd('STARTTLS')).code, 220);
  await c.startTls();
  await c.cmd('EHLO client.test');
  g = await globals(c);
  assert.equal(g.Encryption, 'boolean:true');
  assert.match(g.EncryptionDetails, /^string:version=TLSv1\.[23] cipher=\S+$/);
  assert.equal(g.AuthenticatedUser, 'string:');
  assert.equal(await auth(c, 'alice', 's3cret'), 235);
  g = await globals(c);
  assert.equal(g.AuthenticatedUser, 'string:alice');
  assert.equal(g.SMTPAuthenticatedUser, 'string:alice');
  c.close();
});

test('AUTH without TLS (authWithoutTls): the user shows in the globals and as DoMAILFROM authSender', async () => {
  await h.setScript(`${DUMP}
    function DoMAILFROM(data, from, params, spf, authSender) return params, "250 2.1.0 authSender=" .. authSender end`);
  const c = await connect(AUTH);
  await c.cmd('EHLO client.test');
  assert.equal(await auth(c, 'bob', 'b0bpass'), 235);
  const g = await globals(c);
  assert.equal(g.AuthenticatedUser, 'string:bob');
  assert.equal(g.SMTPAuthenticatedUser, 'string:bob');
  assert.equal((await c.cmd('MAIL FROM:<bob@localhost>')).raw, '250 2.1.0 authSender=bob\r\n');
  c.close();
});

test('AllowedUsers limits who may authenticate from this address (535 for the others)', async () => {
  await h.setScript(`${DUMP}
    function Start() AllowedUsers = "carol  BOB" return "" end`);
  const c = await connect(AUTH);
  await c.cmd('EHLO client.test');
  assert.equal((await globals(c)).AllowedUsers, 'string:carol  BOB');
  assert.match((await c.cmd(`AUTH PLAIN ${b64('\0alice\0s3cret')}`)).lines[0], /^535 5\.7\.8 /);
  assert.equal(await auth(c, 'bob', 'b0bpass'), 235);
  c.close();
});

test('AuthenticationRequired on a submission service; LocalClientAddress and ValidClientAddress written by the script decide relaying', async () => {
  await h.setScript(DUMP);
  const s = await connect(SUBMISSION);
  await s.cmd('EHLO client.test');
  const g = await globals(s);
  assert.equal(g.AuthenticationRequired, 'boolean:true');
  assert.equal(g.LocalClientAddress, 'boolean:false');
  assert.equal(g.ValidClientAddress, 'boolean:true');
  s.close();

  await h.setScript(`${DUMP}
    function Start()
      if IPAddress == "127.0.0.2" then
        if ServerID == ${AUTH} then ValidClientAddress = true else LocalClientAddress = true end
      else
        LocalClientAddress = false
        AuthenticationRequired = true
      end
      return ""
    end`);
  // An outside address made local by the script may relay.
  const o = await connect(PLAIN, '127.0.0.2');
  await o.cmd('EHLO outside.test');
  await o.cmd('MAIL FROM:<a@example.com>');
  assert.equal((await o.cmd('RCPT TO:<x@remote.test>')).code, 250);
  o.close();
  // An outside address made valid by the script may relay (no AUTH required) and EXPN.
  const v = await connect(AUTH, '127.0.0.2');
  await v.cmd('EHLO outside.test');
  assert.equal((await globals(v)).ValidClientAddress, 'boolean:true');
  assert.equal((await v.cmd('EXPN team')).code, 250);
  await v.cmd('MAIL FROM:<a@example.com>');
  assert.equal((await v.cmd('RCPT TO:<x@remote.test>')).code, 250);
  v.close();
  // An allowed address that the script says must authenticate may not relay until it does.
  const l = await connect(AUTH);
  await l.cmd('EHLO client.test');
  await l.cmd('MAIL FROM:<a@example.com>');
  assert.match((await l.cmd('RCPT TO:<x@remote.test>')).lines[0], /^554 5\.7\.1 /);
  assert.equal((await l.cmd('RCPT TO:<alice@localhost>')).code, 250, 'local delivery needs no AUTH');
  await l.cmd('RSET');
  assert.equal(await auth(l, 'alice', 's3cret'), 235);
  await l.cmd('MAIL FROM:<alice@localhost>');
  assert.equal((await l.cmd('RCPT TO:<x@remote.test>')).code, 250);
  l.close();
});

test('ForceDisconnect: the pending reply is sent, then the connection closes (numbers count as booleans)', async () => {
  await h.setScript(`${DUMP}
    function DoHELO(host) if host == "num.test" then ForceDisconnect = 1 end return false, "" end
    function DoMAILFROM(data, from, params) ForceDisconnect = true return params, "" end`);
  const c = await connect();
  await c.cmd('EHLO client.test');
  c.write('MAIL FROM:<a@example.com>\r\nRCPT TO:<alice@localhost>\r\n');
  assert.equal((await c.read()).raw, '250 2.1.0 Ok\r\n');
  await c.waitClosed();
  const d = await connect();
  assert.equal((await d.cmd('EHLO num.test')).code, 250);
  await d.waitClosed();
});

test('MaxRecipientsPerIncomingMessage applies to outside clients, MaxRecipientsPerLocalMessage to local ones: 452 4.5.3', async () => {
  await h.setScript(`${DUMP}
    function Start() MaxRecipientsPerIncomingMessage = 2 MaxRecipientsPerLocalMessage = 3 return "" end`);
  const o = await connect(PLAIN, '127.0.0.2');
  await o.cmd('EHLO outside.test');
  await o.cmd('MAIL FROM:<a@example.com>');
  assert.equal((await o.cmd('RCPT TO:<r1@localhost>')).code, 250);
  assert.equal((await o.cmd('RCPT TO:<r2@localhost>')).code, 250);
  assert.match((await o.cmd('RCPT TO:<r3@localhost>')).lines[0], /^452 4\.5\.3 /);
  o.close();
  const l = await connect();
  await l.cmd('EHLO client.test');
  await l.cmd('MAIL FROM:<a@example.com>');
  for (const r of ['r1', 'r2', 'r3']) assert.equal((await l.cmd(`RCPT TO:<${r}@localhost>`)).code, 250);
  assert.match((await l.cmd('RCPT TO:<r4@localhost>')).lines[0], /^452 4\.5\.3 /);
  l.close();
});

test('MaxMessagesPerLocalSession: the MAIL over the limit gets 452 4.5.3', async () => {
  await h.setScript(`${DUMP}
    function Start() MaxMessagesPerLocalSession = 1 return "" end`);
  const c = await connect();
  await c.cmd('EHLO client.test');
  assert.equal((await sendMail(c, 'a@example.com', ['m1@localhost'], message('one'))).code, 250);
  assert.match((await c.cmd('MAIL FROM:<a@example.com>')).lines[0], /^452 4\.5\.3 /);
  c.close();
  // Not a local session: the limit does not apply.
  const o = await connect(PLAIN, '127.0.0.2');
  await o.cmd('EHLO outside.test');
  assert.equal((await sendMail(o, 'a@example.com', ['m1@localhost'], message('two'))).code, 250);
  assert.equal((await sendMail(o, 'a@example.com', ['m1@localhost'], message('three'))).code, 250);
  o.close();
});

test('MaxLineLength: a longer command line gets 500 5.5.2, a longer data line 552 5.3.4', async () => {
  await h.setScript(`${DUMP}
    function Start() MaxLineLength = 100 return "" end
    function DoUnrecognised(line) return "250 2.0.0 len=" .. #line end`);
  const c = await connect();
  await c.cmd('EHLO client.test');
  assert.equal((await globals(c)).MaxLineLength, 'integer:100');
  assert.equal((await c.cmd(`X${'y'.repeat(99)}`)).raw, '250 2.0.0 len=100\r\n');
  assert.match((await c.cmd(`X${'y'.repeat(100)}`)).lines[0], /^500 5\.5\.2 /);
  assert.match((await c.cmd(`X${'y'.repeat(300)}`)).lines[0], /^500 5\.5\.2 /);
  assert.equal((await sendMail(c, 'a@example.com', ['ll@localhost'], message('fits', `${'z'.repeat(100)}\r\n`))).code, 250);
  assert.match((await sendMail(c, 'a@example.com', ['ll@localhost'], message('long', `${'z'.repeat(101)}\r\n`))).lines[0], /^552 5\.3\.4 /);
  c.close();
  const box = await h.mailbox('localhost/ll');
  assert.equal(box.length, 1);
  assert.match(box[0], /Subject: fits/);
});

test('UseBATV and AddUserAddresses are readable and writable; a write lasts for the session', async () => {
  await h.setScript(`${DUMP}
    function Start() UseBATV = true AddUserAddresses = 1 return "" end
    function DoRSET() UseBATV = false return "" end`);
  const c = await connect();
  let g = await globals(c);
  assert.equal(g.UseBATV, 'boolean:true');
  assert.equal(g.AddUserAddresses, 'boolean:true');
  await c.cmd('RSET');
  g = await globals(c);
  assert.equal(g.UseBATV, 'boolean:false');
  assert.equal(g.AddUserAddresses, 'boolean:true');
  c.close();
  // A new session starts from the configuration again.
  await h.setScript(DUMP);
  const d = await connect();
  assert.equal((await globals(d)).UseBATV, 'boolean:false');
  d.close();
});

test('writes to IN globals are ignored: the next callback sees the real values, and they grant nothing', async () => {
  await h.setScript(`${DUMP}
    function Start()
      IPAddress = "6.6.6.6" ServerID = 99 ServerName = "fake" Encryption = true EncryptionDetails = "fake"
      AuthenticatedUser = "alice" SMTPAuthenticatedUser = "alice" HeloName = "fake" MailFrom = "fake" SessionID = "fake"
      return ""
    end`);
  const c = await connect(PLAIN, '127.0.0.2');
  const g = await globals(c);
  assert.equal(g.IPAddress, 'string:127.0.0.2');
  assert.equal(g.ServerID, 'integer:3');
  assert.equal(g.ServerName, 'string:mx-three');
  assert.equal(g.Encryption, 'boolean:false');
  assert.equal(g.EncryptionDetails, 'string:');
  assert.equal(g.AuthenticatedUser, 'string:');
  assert.equal(g.SMTPAuthenticatedUser, 'string:');
  assert.equal(g.HeloName, 'string:');
  assert.equal(g.MailFrom, 'string:');
  assert.match(g.SessionID, /^string:S[0-9A-Z]+$/);
  await c.cmd('EHLO outside.test');
  await c.cmd('MAIL FROM:<a@example.com>');
  assert.match((await c.cmd('RCPT TO:<x@remote.test>')).lines[0], /^554 5\.7\.1 /, 'a written AuthenticatedUser grants no relaying');
  c.close();
});

test('line callbacks see the globals even when no callback ran before; an IN global one overwrites is back for the next whole callback', async () => {
  await h.setScript(`
    function MessageLine(line)
      if not first then first = IPAddress .. "/" .. MailFrom .. "/" .. MaxRecipientsPerLocalMessage end
      IPAddress = "6.6.6.6" MailFrom = "fake" MaxRecipientsPerLocalMessage = 7
    end
    function EndMessage() return "250 2.0.0 first=" .. first .. " ip=" .. IPAddress .. " from=" .. MailFrom .. " max=" .. MaxRecipientsPerLocalMessage end
    function DoNOOP() return "250 2.0.0 ip=" .. IPAddress .. " max=" .. MaxRecipientsPerLocalMessage end`);
  const c = await connect();
  await c.cmd('EHLO client.test');
  await c.cmd('MAIL FROM:<a@example.com>');
  await c.cmd('RCPT TO:<alice@localhost>');
  assert.equal((await c.cmd('DATA')).code, 354);
  assert.equal((await c.cmd('Subject: lines\r\n\r\nbody\r\n.')).raw, '250 2.0.0 first=127.0.0.1/a@example.com/50 ip=127.0.0.1 from=a@example.com max=7\r\n');
  assert.equal((await c.cmd('NOOP')).raw, '250 2.0.0 ip=127.0.0.1 max=7\r\n');
  c.close();
});

test('a script that replaces rawget, rawset, rawequal, select, type, pcall, tostring and table.unpack cannot get into the globals round trip', async () => {
  // The host's sync runs outside any budget: were it to call these globals, a loop here would
  // stall the process. It must still put IN globals back and read IN/OUT ones.
  await h.setScript(`
    local spin = function() while true do end end
    function DoHELO(host)
      IPAddress = "6.6.6.6"
      MaxRecipientsPerLocalMessage = 1
      RBLServers[#RBLServers + 1] = "added.in.place.test"
      return false, ""
    end
    function DoNOOP() return "250 ip=" .. IPAddress .. " max=" .. MaxRecipientsPerLocalMessage .. " rbl=" .. #RBLServers end
    function MessageLine(line) if line == "drop me" then return false end end
    rawget, rawset, rawequal, select, type, pcall, tostring = spin, spin, spin, spin, spin, spin, spin
    table.unpack = spin`);
  const c = await connect();
  assert.equal((await c.cmd('EHLO client.test')).code, 250);
  assert.equal((await c.cmd('NOOP')).raw, '250 ip=127.0.0.1 max=1 rbl=1\r\n');
  await c.cmd('MAIL FROM:<a@example.com>');
  assert.equal((await c.cmd('RCPT TO:<alice@localhost>')).code, 250);
  assert.match((await c.cmd('RCPT TO:<bob@localhost>')).lines[0], /^452 4\.5\.3 /);
  assert.equal((await c.cmd('DATA')).code, 354);
  assert.equal((await c.cmd('Subject: spin\r\n\r\nkeep me\r\ndrop me\r\n.')).code, 250);
  c.close();
  const mail = (await h.mailbox('localhost/alice')).find((m) => m.includes('Subject: spin\r\n'));
  assert.ok(mail, 'delivered');
  assert.ok(mail.includes('keep me\r\n') && !mail.includes('drop me'), mail);
});
