import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startScriptedServer, type ScriptedServer, type ScriptedServerOptions, type ScriptedSession } from '../helpers/scripted-smtp-server.js';
import {
  mail,
  parseDsn,
  queueMail,
  quickDelivery,
  smarthost,
  stageMessages,
  startRelayServer,
  subjects,
  waitFor,
  type RelayHarness,
  type SenderInput,
} from '../helpers/relay-fixtures.js';
import type { HarnessOptions } from '../helpers/harness.js';
import { Batv } from '../../src/policy/batv.js';
import { creationTime } from '../../src/delivery/relay/send-run.js';

// relayout.lua (R1-R6) end to end: a real moonpost relays to scripted SMTP servers on
// loopback; what the script saw comes back through print() (ScriptHost.printSink).

interface Setup {
  h: RelayHarness;
  peers: ScriptedServer[];
  prints: string[];
}

/** Peers, then a moonpost relaying to them (sender i → peer i), with relayout.lua. */
async function setup(
  t: TestContext,
  relayout: string | undefined,
  o: { peers?: ScriptedServerOptions[]; senders?: (ports: number[]) => SenderInput[]; opts?: HarnessOptions; dataDir?: string } = {},
): Promise<Setup> {
  const peers: ScriptedServer[] = [];
  for (const p of o.peers ?? [{ hostname: 'peer.example' }]) peers.push(await startScriptedServer(p));
  const ports = peers.map((p) => p.port);
  const h = await startRelayServer({ senders: o.senders ? o.senders(ports) : [smarthost(0, ports[0])], ...o.opts }, relayout, o.dataDir);
  const prints: string[] = [];
  h.server.scripts.printSink = (s) => prints.push(s);
  t.after(async () => {
    await h.stop();
    for (const p of peers) await p.close();
  });
  return { h, peers, prints };
}

/** Waits for the relay to have settled `n` recipients in all (delivered + deferred + bounced). */
async function settled(h: RelayHarness, n: number): Promise<void> {
  const c = h.server.relay.counters;
  await waitFor(`${n} settled recipients`, () => c.delivered + c.deferred + c.bounced >= n);
  await h.server.relay.idle();
}

/** Runs every sender now and waits for the runs. */
async function runNow(h: RelayHarness): Promise<void> {
  h.server.relay.kick();
  await new Promise((r) => setTimeout(r, 30));
  await h.server.relay.idle();
}

const rcptCount = (s: ScriptedSession): number => s.commands.filter((c) => c.startsWith('RCPT')).length;
const mailCount = (s: ScriptedSession): number => s.commands.filter((c) => c.startsWith('MAIL')).length;
const subjectOf = (text: string | null): string | undefined => /^Subject: (.*)$/m.exec(text ?? '')?.[1]?.trim();
const texts = (p: ScriptedServer): (string | null)[] => p.sessions.flatMap((s) => s.messages.map((m) => m.text));

async function withDir(t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'moonpost-relay-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

// ------------------------------------------------------------------ globals and arguments

test('globals senderid/sendername/UseBATV/Max* and every CheckFile argument (R2, R5)', async (t) => {
  const { h, prints } = await setup(
    t,
    `
function Start()
  print("Start", senderid, sendername, tostring(UseBATV), MaxMessagesPerConnection, MaxRecipientsPerConnection, MaxRecipientsPerMessage, "[" .. ConnectedServer .. "]")
end
function CheckFile(filename, actions, size, createtime, mailfrom, recipients, headerdata, headerlines)
  print("CheckFile", senderid, filename, size, createtime, mailfrom, table.concat(recipients, ","),
    headerdata["Subject"], headerdata["subject"], headerdata["SUBJECT"], headerdata["x-folded"], headerdata["X-MIXED-CASE"],
    tostring(headerdata["No-Such-Header"]), tostring(actions.SkipSend), actions.Priority, "[" .. actions.Reason .. "]")
  print("HeaderLines", table.concat(headerlines, "|"))
  actions.SkipSend = true   -- keep it queued so the test can look at the file
  actions.Reason = "inspected"
  return actions
end
`,
    {
      peers: [{}, {}],
      senders: ([p0, p1]) => [
        smarthost(0, p0, { name: 'Main ISP', rules: ['remote.test'], maxMessagesPerConnection: 7, useBATV: true }),
        smarthost(1, p1, { name: 'Backup', rules: ['other.test'], maxRecipientsPerConnection: 9, maxRecipientsPerMessage: 3 }),
      ],
      opts: { batv: { keys: [{ id: 1, secret: 's' }] } },
    },
  );
  const data = [
    'From: Sender <sender@localhost>',
    'To: a@remote.test, b@other.test',
    'Subject: first subject',
    'X-Folded: part one',
    '\tpart two',
    'X-MiXeD-CaSe: value',
    'Subject: second subject',
    '',
    'body',
    '',
  ].join('\r\n');
  const before = Date.now();
  const id = await queueMail(h.port, 'sender@localhost', ['a@remote.test', 'b@other.test', 'local@localhost'], data);
  await waitFor('both CheckFile calls', () => prints.filter((p) => p.startsWith('CheckFile')).length === 2);
  await h.server.relay.idle();

  const starts = prints.filter((p) => p.startsWith('Start')).sort();
  assert.deepEqual(starts, ['Start\t0\tMain ISP\ttrue\t7\t0\t0\t[]', 'Start\t1\tBackup\tfalse\t0\t9\t3\t[]']);

  const env = h.server.queue.get(id);
  assert.ok(env, 'skipped: still queued');
  const file = h.server.spool.messagePath(id);
  const onDisk = (await stat(file)).size;
  const calls = prints.filter((p) => p.startsWith('CheckFile')).map((p) => p.split('\t')).sort((a, b) => Number(a[1]) - Number(b[1]));
  for (const [i, c] of calls.entries()) {
    const [, sid, filename, size, ctime, from, rcpts, s1, s2, s3, folded, mixed, none, skip, prio, reason] = c;
    assert.equal(sid, String(i));
    assert.equal(filename, file, 'Filename: the queue file');
    assert.equal(Number(size), onDisk, 'Size: bytes on disk');
    assert.match(ctime, /^\d{14}$/);
    assert.equal(ctime, creationTime(env.received), 'CreationTime: local time of queueing');
    const y = new Date(before);
    assert.ok(ctime.startsWith(String(y.getFullYear())));
    assert.equal(from, 'sender@localhost');
    // Only this sender's pending remote recipients.
    assert.equal(rcpts, i === 0 ? 'a@remote.test' : 'b@other.test');
    // First occurrence, looked up case-insensitively, continuation lines unfolded.
    assert.deepEqual([s1, s2, s3], ['first subject', 'first subject', 'first subject']);
    assert.equal(folded, 'part one part two');
    assert.equal(mixed, 'value');
    assert.equal(none, 'nil');
    assert.deepEqual([skip, prio, reason], ['false', '50', '[]'], 'Actions start as SkipSend=false, Priority=50, Reason=""');
  }
  const lines = prints.find((p) => p.startsWith('HeaderLines'))!.slice('HeaderLines\t'.length).split('|');
  assert.match(lines[0], /^Received: from client\.test /, 'our Received line comes first; Return-Path is not part of the header');
  assert.deepEqual(lines.slice(-7), ['From: Sender <sender@localhost>', 'To: a@remote.test, b@other.test', 'Subject: first subject', 'X-Folded: part one', '\tpart two', 'X-MiXeD-CaSe: value', 'Subject: second subject']);
  // The local recipient went to its mailbox; the remote ones wait, untried.
  assert.equal((await h.mailbox('localhost/local')).length, 1);
  assert.deepEqual(
    env.recipients.map((r) => [r.address, r.state, r.route.kind === 'remote' ? (r.attempts ?? 0) : '-']),
    [['a@remote.test', 'pending', 0], ['b@other.test', 'pending', 0], ['local@localhost', 'delivered', '-']],
  );
});

test('each run is a fresh state: Start, CheckFile, then ServerConnected with ConnectedServer; read-only globals restored', async (t) => {
  const { h, peers, prints } = await setup(
    t,
    `
runs = 0
function Start() runs = runs + 1; senderid = 99; sendername = "changed"; ConnectedServer = "mine"; print("Start", runs) end
function CheckFile(f, actions, size, ct, from, rcpts, hd, hl) print("CheckFile", runs, senderid, sendername, "[" .. ConnectedServer .. "]") return actions end
function ServerConnected() print("ServerConnected", runs, ConnectedServer) end
`,
    { peers: [{ hostname: 'relay.peer.example' }], senders: ([p]) => [smarthost(0, p, { name: 'isp' })] },
  );
  for (const n of [1, 2]) {
    await queueMail(h.port, 'sender@localhost', ['x@remote.test'], mail(`run ${n}`));
    await settled(h, n);
  }
  assert.deepEqual(prints, [
    'Start\t1',
    'CheckFile\t1\t0\tisp\t[]',
    'ServerConnected\t1\trelay.peer.example',
    'Start\t1',
    'CheckFile\t1\t0\tisp\t[]',
    'ServerConnected\t1\trelay.peer.example',
  ]);
  assert.deepEqual(subjects(texts(peers[0])), ['run 1', 'run 2']);
  assert.equal(h.server.scripts.metrics.snapshot()['relayout.Start']?.calls, 2);
});

test('ReturnCodeHandler sees every reply: greeting (""), multi-line EHLO, each command, "." and QUIT', async (t) => {
  const { h, peers, prints } = await setup(
    t,
    `
function ReturnCodeHandler(LastCommand, FullResponse, LastLine)
  print("RC", "[" .. LastCommand .. "]", (FullResponse:gsub("\\r\\n", "~")), LastLine)
end
`,
    { peers: [{ hostname: 'peer.example', auth: { user: 'u', password: 'secret-pw' } }], senders: ([p]) => [smarthost(0, p, { auth: { user: 'u', password: 'secret-pw' } })] },
  );
  await queueMail(h.port, 'sender@localhost', ['x@remote.test', 'y@remote.test'], mail('rc'));
  await settled(h, 2);
  const size = /SIZE=(\d+)/.exec(prints.find((p) => p.includes('MAIL FROM'))!)![1];
  assert.equal(Number(size), peers[0].sessions[0].messages[0].size, 'SIZE= is the size of what is sent (RFC 1870)');
  assert.deepEqual(prints, [
    'RC\t[]\t220 peer.example ESMTP scripted\t220 peer.example ESMTP scripted',
    'RC\t[EHLO mx.test]\t250-peer.example Hello~250-PIPELINING~250-SIZE 10240000~250-8BITMIME~250-SMTPUTF8~250-DSN~250-ENHANCEDSTATUSCODES~250 AUTH PLAIN LOGIN\t250 AUTH PLAIN LOGIN',
    'RC\t[AUTH PLAIN ****]\t235 2.7.0 Authentication successful\t235 2.7.0 Authentication successful',
    `RC\t[MAIL FROM:<sender@localhost> SIZE=${size}]\t250 2.1.0 Ok\t250 2.1.0 Ok`,
    'RC\t[RCPT TO:<x@remote.test>]\t250 2.1.5 Ok\t250 2.1.5 Ok',
    'RC\t[RCPT TO:<y@remote.test>]\t250 2.1.5 Ok\t250 2.1.5 Ok',
    'RC\t[DATA]\t354 End data with <CR><LF>.<CR><LF>\t354 End data with <CR><LF>.<CR><LF>',
    'RC\t[.]\t250 2.0.0 Ok: queued\t250 2.0.0 Ok: queued',
    'RC\t[QUIT]\t221 2.0.0 Bye\t221 2.0.0 Bye',
  ]);
  assert.ok(!prints.join('\n').includes(Buffer.from('\0u\0secret-pw').toString('base64')), 'AUTH arguments masked');
});

test('ReturnCodeHandler turns a 450 for an unknown user into 550: bounced at once, others still retried', async (t) => {
  const { h, peers } = await setup(
    t,
    `
function ReturnCodeHandler(LastCommand, FullResponse, LastLine)
  if LastCommand:sub(1, 4) == "RCPT" and FullResponse:sub(1, 3) == "450" and FullResponse:find("User unknown", 1, true) then
    return (FullResponse:gsub("^450 4%.", "550 5."))
  end
  return ""
end
`,
    {
      peers: [
        {
          respond: (cmd) => {
            if (cmd === 'RCPT TO:<ghost@remote.test>') return '450 4.1.1 <ghost@remote.test>: Recipient address rejected: User unknown in local recipient table';
            if (cmd === 'RCPT TO:<busy@remote.test>') return '450 4.2.1 <busy@remote.test>: Mailbox busy, try later';
            return undefined;
          },
        },
      ],
      opts: { delivery: quickDelivery(3600) },
    },
  );
  const id = await queueMail(h.port, 'sender@localhost', ['ok@remote.test', 'ghost@remote.test', 'busy@remote.test'], mail('unknown users'));
  await settled(h, 3);
  assert.deepEqual({ ...h.server.relay.counters }, { delivered: 1, deferred: 1, bounced: 1 });
  assert.equal(texts(peers[0]).length, 1);
  const env = h.server.queue.get(id)!;
  const byAddr = Object.fromEntries(env.recipients.map((r) => [r.address, r]));
  assert.equal(byAddr['ok@remote.test'].state, 'delivered');
  assert.equal(byAddr['ghost@remote.test'].state, 'failed');
  assert.equal(byAddr['busy@remote.test'].state, 'pending');
  assert.match(byAddr['busy@remote.test'].lastError!, /^450 4\.2\.1 /);
  assert.ok(byAddr['busy@remote.test'].nextAttempt! > Date.now() + 3000_000);
  const [dsnText] = await waitFor('the DSN', async () => {
    const box = await h.mailbox('localhost/sender');
    return box.length ? box : null;
  });
  const dsn = parseDsn(dsnText);
  assert.equal(dsn.recipients.length, 1, 'only the bounced recipient is reported');
  const r = dsn.recipients[0];
  assert.equal(r.get('final-recipient'), 'rfc822; ghost@remote.test');
  assert.equal(r.get('action'), 'failed');
  assert.equal(r.get('status'), '5.1.1');
  assert.match(r.get('diagnostic-code')!, /^smtp; 550 5\.1\.1 <ghost@remote\.test>: Recipient address rejected: User unknown/);
});

test('a ReturnCodeHandler result without a reply code is ignored', async (t) => {
  const { h, peers } = await setup(t, 'function ReturnCodeHandler(c, f, l) if c == "." then return "please bounce this" end end');
  await queueMail(h.port, 'sender@localhost', ['x@remote.test'], mail('kept'));
  await settled(h, 1);
  assert.deepEqual({ ...h.server.relay.counters }, { delivered: 1, deferred: 0, bounced: 0 });
  assert.deepEqual(subjects(texts(peers[0])), ['kept']);
});

// ------------------------------------------------------------------ CheckFile actions

test('Priority orders a run: 100 first, 1 last, oldest first on ties; out-of-range values are clamped', async (t) => {
  const dir = await withDir(t);
  const prio = ['50-a', '10', '90', '50-b', '150', '0', '100'];
  await stageMessages(
    dir,
    {},
    prio.map((p) => ({ to: ['x@remote.test'], data: mail(`prio ${p}`, { headers: [`X-Test-Priority: ${parseInt(p, 10)}`] }) })),
  );
  const { h, peers } = await setup(
    t,
    `
function CheckFile(f, actions, size, ct, from, rcpts, headerdata, hl)
  actions["Priority"] = tonumber(headerdata["x-test-priority"])
  return actions
end
`,
    { dataDir: dir },
  );
  await settled(h, prio.length);
  assert.equal(peers[0].sessions.length, 1, 'one connection for the whole run');
  assert.deepEqual(subjects(texts(peers[0])), ['prio 150', 'prio 100', 'prio 90', 'prio 50-a', 'prio 50-b', 'prio 10', 'prio 0']);
});

test('SkipSend keeps a message queued (untried, no DSN) until a run sends it; SkipSend = 0 is false (S6)', async (t) => {
  const { h, peers } = await setup(
    t,
    `
function CheckFile(f, actions, size, ct, from, rcpts, headerdata, hl)
  if headerdata.subject:find("hold") then actions.SkipSend = 1; actions.Reason = "held by policy"
  else actions.SkipSend = 0 end
  return actions
end
`,
  );
  const held = await queueMail(h.port, 'sender@localhost', ['x@remote.test'], mail('hold me'));
  await queueMail(h.port, 'sender@localhost', ['x@remote.test'], mail('send me'));
  await settled(h, 1);
  await runNow(h);
  await runNow(h);
  assert.deepEqual(subjects(texts(peers[0])), ['send me']);
  const env = h.server.queue.get(held);
  assert.ok(env, 'still queued');
  assert.deepEqual(env.recipients.map((r) => [r.state, r.attempts ?? 0, r.lastError]), [['pending', 0, undefined]]);
  assert.ok((h.server.scripts.metrics.snapshot()['relayout.CheckFile']?.calls ?? 0) >= 4, 'offered again in every run');
  assert.deepEqual(await h.mailbox('localhost/sender'), [], 'no DSN');

  await h.setRelayout('function CheckFile(f, a) return a end');
  await runNow(h);
  assert.deepEqual(subjects(texts(peers[0])), ['send me', 'hold me']);
  assert.equal(h.server.queue.get(held), undefined);
});

test('a message every run skips is bounced at its give-up time (R1), with the reason', async (t) => {
  const { h, peers } = await setup(
    t,
    `
function CheckFile(f, actions)
  actions.SkipSend = true
  actions.Reason = "too big for daytime"
  return actions
end
`,
    { opts: { delivery: quickDelivery(0.2, 1, 0.2) } },
  );
  const id = await queueMail(h.port, 'sender@localhost', ['x@remote.test'], mail('never sent'));
  await waitFor('the give-up', () => !h.server.queue.get(id), 4000);
  assert.equal(peers[0].sessions.length, 0, 'never connected');
  const [dsnText] = await waitFor('the DSN', async () => {
    const box = await h.mailbox('localhost/sender');
    return box.length ? box : null;
  });
  const r = parseDsn(dsnText).recipients[0];
  assert.equal(r.get('action'), 'failed');
  assert.match(r.get('status')!, /^4\.4\.7$/);
  assert.match(r.get('diagnostic-code')!, /too big for daytime/);
});

// ------------------------------------------------------------------ the vendor page's examples

const VENDOR_EXAMPLE_1 = `
function CheckFile(filename, actions, size, createtime, mailfrom, recipients, headerdata, headerlines)

 time = os.date("*t");
 if size > 10000000 and (time.hour > 7 and time.hour < 19) then
  actions["SkipSend"] = 1;
 end;

 if size > 5000000 then
  actions["Priority"] = 1;
 end;

 return actions;
end;
`;

const VENDOR_EXAMPLE_2 = `
function CheckFile(filename, actions, size, createtime, mailfrom, recipients, headerdata, headerlines)

 if size > 50000 then
  if senderid ~= 0 then
   actions["SkipSend"] = 1;
  end;
 else
  if senderid ~= 1 then
   actions["SkipSend"] = 1;
  end;
 end;

 return actions;
end;
`;

/** A body of about `bytes` in 998-octet lines. */
const bigBody = (bytes: number): string => ('x'.repeat(998) + '\r\n').repeat(Math.ceil(bytes / 1000));

test('vendor example 1: over 10,000,000 bytes skipped between 8:00 and 18:59, over 5,000,000 sent last', async (t) => {
  const dir = await withDir(t);
  await stageMessages(dir, {}, [
    { to: ['x@remote.test'], data: mail('big 10M', { body: bigBody(10_050_000) }) },
    { to: ['x@remote.test'], data: mail('small 1') },
    { to: ['x@remote.test'], data: mail('big 5M', { body: bigBody(5_050_000) }) },
    { to: ['x@remote.test'], data: mail('small 2') },
  ]);
  const hour = new Date().getHours();
  const { h, peers } = await setup(t, VENDOR_EXAMPLE_1, { dataDir: dir, peers: [{ keepBytes: 32 * 1024 * 1024, extensions: ['PIPELINING', 'SIZE 20000000', '8BITMIME'] }] });
  const daytime = hour > 7 && hour < 19;
  await settled(h, daytime ? 3 : 4);
  if (new Date().getHours() !== hour) return t.skip('the hour changed during the test');
  assert.deepEqual(subjects(texts(peers[0])), daytime ? ['small 1', 'small 2', 'big 5M'] : ['small 1', 'small 2', 'big 10M', 'big 5M']);
  // Both big ones have priority 1: among equals the older goes first.
  assert.equal(h.server.queue.size, daytime ? 1 : 0);
});

test('vendor example 2: messages over 50000 bytes through sender 0, the rest through sender 1 (R1)', async (t) => {
  const { h, peers } = await setup(t, VENDOR_EXAMPLE_2, {
    peers: [{ hostname: 'big.example' }, { hostname: 'small.example' }],
    senders: ([p0, p1]) => [smarthost(0, p0, { name: 'large' }), smarthost(1, p1, { name: 'normal' })],
  });
  await queueMail(h.port, 'sender@localhost', ['x@remote.test'], mail('small one'));
  await queueMail(h.port, 'sender@localhost', ['y@remote.test'], mail('large one', { body: bigBody(60_000) }));
  await queueMail(h.port, 'sender@localhost', ['z@remote.test'], mail('small two'));
  await settled(h, 3);
  await runNow(h);
  assert.deepEqual(subjects(texts(peers[0])), ['large one']);
  assert.deepEqual(subjects(texts(peers[1])).sort(), ['small one', 'small two']);
  assert.equal(h.server.queue.size, 0);
  assert.deepEqual({ ...h.server.relay.counters }, { delivered: 3, deferred: 0, bounced: 0 });
});

// ------------------------------------------------------------------ Max* limits

test('MaxRecipientsPerMessage splits a message into transactions on one connection', async (t) => {
  const { h, peers } = await setup(t, undefined, { senders: ([p]) => [smarthost(0, p, { maxRecipientsPerMessage: 2 })] });
  const rcpts = ['r1', 'r2', 'r3', 'r4', 'r5'].map((r) => `${r}@remote.test`);
  await queueMail(h.port, 'sender@localhost', rcpts, mail('split'));
  await settled(h, 5);
  assert.equal(peers[0].sessions.length, 1);
  const s = peers[0].sessions[0];
  assert.equal(mailCount(s), 3);
  assert.deepEqual(
    s.commands.filter((c) => /^(MAIL|RCPT)/.test(c)).map((c) => c.replace(/ SIZE=\d+/, '')),
    ['MAIL FROM:<sender@localhost>', 'RCPT TO:<r1@remote.test>', 'RCPT TO:<r2@remote.test>', 'MAIL FROM:<sender@localhost>', 'RCPT TO:<r3@remote.test>', 'RCPT TO:<r4@remote.test>', 'MAIL FROM:<sender@localhost>', 'RCPT TO:<r5@remote.test>'],
  );
  assert.equal(new Set(s.messages.map((m) => m.sha256)).size, 1, 'the same message each time');
  assert.equal(h.server.relay.counters.delivered, 5);
});

test('MaxMessagesPerConnection set in Start makes the sender QUIT and reconnect, ServerConnected each time', async (t) => {
  const { h, peers, prints } = await setup(
    t,
    `
function Start() MaxMessagesPerConnection = 2; MaxRecipientsPerMessage = 1 end
function ServerConnected() print("connected", ConnectedServer, MaxMessagesPerConnection) end
`,
  );
  await queueMail(h.port, 'sender@localhost', ['r1@remote.test', 'r2@remote.test', 'r3@remote.test', 'r4@remote.test', 'r5@remote.test'], mail('per connection'));
  await settled(h, 5);
  await peers[0].closedSessions(3);
  assert.deepEqual(peers[0].sessions.map(mailCount), [2, 2, 1]);
  for (const s of peers[0].sessions) assert.equal(s.commands.at(-1), 'QUIT');
  assert.deepEqual(prints, ['connected\tpeer.example\t2', 'connected\tpeer.example\t2', 'connected\tpeer.example\t2']);
});

test('MaxRecipientsPerConnection: no connection gets more RCPTs, even from one large message', async (t) => {
  const { h, peers } = await setup(t, undefined, { senders: ([p]) => [smarthost(0, p, { maxRecipientsPerConnection: 3 })] });
  const rcpts = ['r1', 'r2', 'r3', 'r4', 'r5', 'r6', 'r7'].map((r) => `${r}@remote.test`);
  await queueMail(h.port, 'sender@localhost', rcpts, mail('seven recipients'));
  await settled(h, 7);
  assert.deepEqual(peers[0].sessions.map(rcptCount), [3, 3, 1]);
  assert.equal(h.server.relay.counters.delivered, 7);
});

test('connectionsPerDestination: a run works through its messages over that many connections at once', async (t) => {
  const dir = await withDir(t);
  await stageMessages(
    dir,
    {},
    ['a', 'b', 'c', 'd', 'e', 'f'].map((x) => ({ to: [`${x}@remote.test`], data: mail(`parallel ${x}`) })),
  );
  const { h, peers } = await setup(t, undefined, { dataDir: dir, senders: ([p]) => [smarthost(0, p, { connectionsPerDestination: 3 })] });
  await settled(h, 6);
  assert.equal(peers[0].sessions.length, 3, 'three connections');
  assert.deepEqual(peers[0].sessions.map(mailCount).sort(), [2, 2, 2]);
  assert.equal(h.server.relay.counters.delivered, 6);
});

test('one connection: each transaction goes out behind the previous one\'s data (PIPELINING), QUIT after the last', async (t) => {
  const dir = await withDir(t);
  await stageMessages(dir, {}, ['p1', 'p2', 'p3'].map((x) => ({ to: [`${x}@remote.test`], data: mail(`pipelined ${x}`) })));
  const { h, peers } = await setup(t, undefined, { dataDir: dir });
  await settled(h, 3);
  await peers[0].closedSessions(1);
  const [s] = peers[0].sessions;
  assert.deepEqual(s.messages.map((m) => subjectOf(m.text)), ['pipelined p1', 'pipelined p2', 'pipelined p3']);
  const dots = s.commands.flatMap((c, i) => (c === '.' ? [i] : []));
  for (const i of dots.slice(0, 2)) {
    assert.match(s.commands[i + 1], /^MAIL FROM:/);
    assert.equal(s.reads[i + 1], s.reads[i], 'the next MAIL came in the same write as the "."');
  }
  assert.equal(s.commands.at(-1), 'QUIT');
  assert.equal(h.server.relay.counters.delivered, 3);
});

test('a limit lowered by ReturnCodeHandler after a transaction was pipelined ahead: that one is dropped with the connection and sent once on the next', async (t) => {
  const dir = await withDir(t);
  await stageMessages(dir, {}, ['q1', 'q2', 'q3'].map((x) => ({ to: [`${x}@remote.test`], data: mail(`limited ${x}`) })));
  const { h, peers } = await setup(
    t,
    `
local dots = 0
function ReturnCodeHandler(cmd, full, last)
  if cmd == "." then dots = dots + 1; if dots == 1 then MaxMessagesPerConnection = 1 end end
end
`,
    { dataDir: dir },
  );
  await settled(h, 3);
  await peers[0].closedSessions(3);
  assert.deepEqual(peers[0].sessions.map((s) => s.messages.length), [1, 1, 1]);
  assert.deepEqual(texts(peers[0]).map(subjectOf), ['limited q1', 'limited q2', 'limited q3'], 'each message once, in order');
  // The first connection had q2's MAIL, RCPT and DATA out already: it was dropped, not QUIT inside the DATA.
  assert.deepEqual(peers[0].sessions[0].commands.slice(-3).map((c) => c.split(/[ :]/)[0]), ['MAIL', 'RCPT', 'DATA']);
  assert.equal(peers[0].sessions[2].commands.at(-1), 'QUIT');
  assert.equal(h.server.relay.counters.delivered, 3);
});

test('MaxRecipientsPerConnection counts across messages; Start overrides the configured limits, 0 = unlimited', async (t) => {
  const dir = await withDir(t);
  await stageMessages(dir, {}, [
    { to: ['a1@remote.test'], data: mail('one') },
    { to: ['b1@remote.test', 'b2@remote.test'], data: mail('two') },
    { to: ['c1@remote.test', 'c2@remote.test'], data: mail('three') },
  ]);
  const { h, peers } = await setup(t, 'function Start() MaxRecipientsPerConnection = 3; MaxRecipientsPerMessage = 0 end', {
    dataDir: dir,
    senders: ([p]) => [smarthost(0, p, { maxRecipientsPerConnection: 1, maxRecipientsPerMessage: 1 })],
  });
  await settled(h, 5);
  // 1 + 2 fill the first connection; the third message opens a second one, whole.
  assert.deepEqual(peers[0].sessions.map(rcptCount), [3, 2]);
  assert.deepEqual(peers[0].sessions.map(mailCount), [2, 1]);
});

// ------------------------------------------------------------------ UseBATV

test('UseBATV set in Start signs a local return path (prvs=); other senders and <> stay as they are', async (t) => {
  const keys = [{ id: 3, secret: 'batv secret' }];
  const { h, peers } = await setup(t, 'function Start() UseBATV = true end', {
    opts: { batv: { keys }, domains: [{ name: 'localhost', catchAll: true }] },
  });
  await queueMail(h.port, 'sender@localhost', ['x@remote.test'], mail('signed'));
  await queueMail(h.port, 'someone@elsewhere.example', ['x@remote.test'], mail('foreign sender'));
  await queueMail(h.port, '', ['x@remote.test'], mail('null sender'));
  await settled(h, 3);
  const froms = peers[0].sessions.flatMap((s) => s.commands.filter((c) => c.startsWith('MAIL')).map((c) => /<([^>]*)>/.exec(c)![1]));
  assert.equal(froms.length, 3);
  assert.match(froms[0], /^prvs=3\d{3}[0-9a-f]{6}=sender@localhost$/);
  assert.equal(new Batv(keys, 7).verify(froms[0]), 'sender@localhost');
  assert.deepEqual(froms.slice(1), ['someone@elsewhere.example', '']);
});

test('useBATV in the sender configuration is the initial UseBATV; false set in Start wins', async (t) => {
  const keys = [{ id: 3, secret: 'batv secret' }];
  const { h, peers, prints } = await setup(t, 'function Start() print("initial", tostring(UseBATV)); UseBATV = false end', {
    senders: ([p]) => [smarthost(0, p, { useBATV: true })],
    opts: { batv: { keys } },
  });
  await queueMail(h.port, 'sender@localhost', ['x@remote.test'], mail('unsigned'));
  await settled(h, 1);
  assert.deepEqual(prints, ['initial\ttrue']);
  assert.equal(peers[0].sessions[0].commands.find((c) => c.startsWith('MAIL'))!.replace(/ SIZE=\d+/, ''), 'MAIL FROM:<sender@localhost>');
});

test('a CheckFile that raises an error acts as absent: the message is sent', async (t) => {
  const { h, peers } = await setup(t, 'function CheckFile(f, a, size) error("broken script") end');
  await queueMail(h.port, 'sender@localhost', ['x@remote.test'], mail('despite the error'));
  await settled(h, 1);
  assert.deepEqual(subjects(texts(peers[0])), ['despite the error']);
  assert.equal(h.server.scripts.metrics.snapshot()['relayout.CheckFile']?.errors, 1);
});

test('a relayout.lua that traps _G cannot stall the run the host sets up after its main chunk', async (t) => {
  // The host defines its CheckFile trampoline after the script's main chunk has run: a global
  // write there must not run the script's __newindex outside every budget.
  const { h, peers } = await setup(
    t,
    `function CheckFile(f, a, size) a.Priority = 50 return a end
    setmetatable(_G, { __newindex = function(t, k, v) while true do end end, __index = function(t, k) while true do end end })`,
  );
  await queueMail(h.port, 'sender@localhost', ['x@remote.test'], mail('trapped globals'));
  await settled(h, 1);
  assert.deepEqual(subjects(texts(peers[0])), ['trapped globals']);
});
