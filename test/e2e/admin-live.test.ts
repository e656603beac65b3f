import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startScriptServer, type ScriptHarness } from '../helpers/script-server.js';
import { AdminClient, adminSection, ADMIN_TOKEN, SseReader, type SseEvent } from '../helpers/admin-client.js';
import { message, openSession, sendMail, TestClient } from '../helpers/smtp-client.js';

// The admin API's live view (server-sent events), recent script errors, /metrics and /api/stats.

const SCRIPT = `function DoMAILFROM(data, mailfrom, params, spf, authSender)
  if mailfrom == "crash@localhost" then
    local t = nil
    return t.field
  end
  if mailfrom:match("@spam%.example$") then return params, "550 5.7.1 Go away" end
  return params, ""
end
`;

let h: ScriptHarness;
let api: AdminClient;

before(async () => {
  h = await startScriptServer(SCRIPT, { admin: await adminSection(), limits: { messageSize: 2000 } });
  api = AdminClient.forPort(h.adminPort!, ADMIN_TOKEN);
});
after(() => h.stop());

const openStream = (query = ''): Promise<SseReader> => SseReader.open(`${api.base}/api/live/stream${query}`, { authorization: `Bearer ${ADMIN_TOKEN}` });
const ofSession = (session: string, type: string) => (e: SseEvent) => e.event === type && e.data.session === session;

test('the stream: a connection, its commands, hook calls and its queued message as they happen', async () => {
  const sse = await openStream();
  assert.equal(sse.status, 200);
  assert.match(sse.contentType, /^text\/event-stream/);
  await sse.next((e) => e.event === 'hello');

  const c = await openSession(h.port, 'live.test');
  const connect = await sse.next((e) => e.event === 'connect');
  const session = connect.data.session;
  assert.equal(connect.data.ip, '127.0.0.1');
  assert.equal(connect.data.service, 'smtp');
  assert.match(connect.id!, /^\d+$/);

  // While it is open it is in the table of connections, with its HELO name.
  const open = await api.get('/api/live/connections');
  const mine = open.body.connections.find((x: { session: string }) => x.session === session);
  assert.ok(mine, JSON.stringify(open.body));
  assert.equal(mine.helo, 'live.test');
  assert.equal(mine.lastCommand, 'EHLO live.test');

  const r = await sendMail(c, 'someone@localhost', ['alice@localhost'], message('live'));
  assert.equal(r.code, 250);
  const queueId = /queued as (\S+)/.exec(r.raw)![1];
  const greeting = await sse.next((e) => ofSession(session, 'command')(e) && e.data.command === '(connect)');
  assert.match(greeting.data.reply, /^220 /);
  const ehlo = await sse.next((e) => ofSession(session, 'command')(e) && e.data.command === 'EHLO live.test');
  assert.match(ehlo.data.reply, /^250 mx\.test Hello live\.test/);
  const hook = await sse.next(ofSession(session, 'hook'));
  assert.equal(hook.data.hook, 'DoMAILFROM');
  assert.equal(hook.data.outcome, 'ok');
  assert.equal(hook.data.call, 'DoMAILFROM("<someone@localhost>", "someone@localhost", {}, "", "") -> {}, ""');
  assert.ok(hook.data.ms >= 0);
  const rcpt = await sse.next((e) => ofSession(session, 'command')(e) && e.data.command.startsWith('RCPT'));
  assert.equal(rcpt.data.reply, '250 2.1.5 Ok');
  const queued = await sse.next(ofSession(session, 'message'));
  assert.deepEqual(
    { ...queued.data, seq: 0, time: '' },
    { type: 'message', session, queueId, outcome: 'queued', from: 'someone@localhost', to: ['alice@localhost'], size: queued.data.size, reply: `250 2.0.0 Ok: queued as ${queueId}`, seq: 0, time: '' },
  );
  const end = await sse.next((e) => ofSession(session, 'command')(e) && e.data.command === '(end of data)');
  assert.match(end.data.reply, /^250 /);

  await c.cmd('QUIT');
  const gone = await sse.next(ofSession(session, 'disconnect'));
  assert.ok(gone.data.ms >= 0);
  const after = await api.get('/api/live/connections');
  assert.ok(!after.body.connections.some((x: { session: string }) => x.session === session));
  // Sequence numbers increase along the stream.
  const seqs = sse.events.filter((e) => e.id).map((e) => Number(e.id));
  assert.deepEqual(
    seqs,
    [...seqs].sort((a, b) => a - b),
  );
  sse.close();
});

test('refusals in the stream: a refused sender and a message over the size limit', async () => {
  const sse = await openStream('?types=message,command');
  const c = await openSession(h.port);
  assert.equal((await c.cmd('MAIL FROM:<x@spam.example>')).code, 550);
  const big = await sendMail(c, 'ok@localhost', ['alice@localhost'], message('big', `${'x'.repeat(100)}\r\n`.repeat(40)));
  assert.equal(big.code, 552);
  const refusedMail = await sse.next((e) => e.event === 'command' && e.data.command === 'MAIL FROM:<x@spam.example>');
  assert.equal(refusedMail.data.reply, '550 5.7.1 Go away');
  const refused = await sse.next((e) => e.event === 'message' && e.data.outcome === 'refused: size');
  assert.match(refused.data.reply, /^552 5\.3\.4/);
  assert.ok(!sse.events.some((e) => e.event === 'hook' || e.event === 'connect'), 'types filters the stream');
  c.close();
  sse.close();
});

test('AUTH exchanges never appear in the stream', async () => {
  const sse = await openStream('?types=command');
  const c = await TestClient.connect(h.port);
  await c.read();
  await c.cmd('EHLO x');
  await c.cmd(`AUTH PLAIN ${Buffer.from('\0alice\0secret-password').toString('base64')}`);
  await c.cmd('NOOP');
  await sse.next((e) => e.data.command === 'NOOP');
  const text = JSON.stringify(sse.events);
  assert.doesNotMatch(text, /secret|AGFsaWNl/);
  assert.ok(sse.events.some((e) => e.data.command === 'AUTH PLAIN'));
  c.close();
  sse.close();
});

test('Last-Event-ID / since replays recent events; /api/live/events lists them', async () => {
  const first = await api.get('/api/live/events?types=connect');
  assert.equal(first.status, 200);
  assert.ok(first.body.events.length >= 1);
  const lastConnect = first.body.events[first.body.events.length - 1];
  const sse = await SseReader.open(`${api.base}/api/live/stream?types=connect`, { authorization: `Bearer ${ADMIN_TOKEN}`, 'last-event-id': String(lastConnect.seq - 1) });
  const replayed = await sse.next((e) => e.event === 'connect');
  assert.equal(replayed.data.seq, lastConnect.seq);
  sse.close();
  const since = await api.get(`/api/live/events?since=${first.body.lastSeq}`);
  assert.ok(since.body.events.every((e: { seq: number }) => e.seq > first.body.lastSeq));
});

test('recent script errors with file and line', async () => {
  const c = await openSession(h.port);
  await c.cmd('MAIL FROM:<crash@localhost>');
  c.close();
  const r = await api.get('/api/live/errors');
  assert.equal(r.status, 200);
  const err = r.body.errors.find((e: { hook: string }) => e.hook === 'DoMAILFROM');
  assert.ok(err, JSON.stringify(r.body));
  assert.equal(err.script, 'SMTPSVR.LUA');
  assert.equal(err.line, 4);
  assert.equal(err.kind, 'error');
  assert.match(err.message, /attempt to index a nil value/);
});

test('/metrics: Prometheus text with connections, messages, queue, deliveries, hooks and versions', async () => {
  // Something waiting for the relay, so the queue gauge has a message.
  const c = await openSession(h.port);
  assert.equal((await sendMail(c, 'someone@localhost', ['far@remote.example'], message('wait'))).code, 250);
  await c.cmd('QUIT');
  await c.waitClosed();
  await h.settle();
  // The server hears of every client's close soon after.
  for (let i = 0; (await api.get('/api/live/connections')).body.connections.length && i < 100; i++) await new Promise((res) => setTimeout(res, 20));
  const r = await api.get('/metrics');
  assert.equal(r.status, 200);
  assert.match(r.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
  const text: string = r.body;
  const value = (line: string): number => {
    const m = new RegExp(`^${line.replace(/[{}".+$]/g, (ch) => `\\${ch}`)} (\\S+)$`, 'm').exec(text);
    assert.ok(m, `no line ${line}`);
    return Number(m[1]);
  };
  assert.ok(value('moonpost_smtp_connections_total{service="smtp"}') >= 4);
  assert.ok(value('moonpost_messages_accepted_total') >= 2);
  assert.ok(value('moonpost_messages_refused_total{reason="size"}') >= 1);
  assert.ok(value('moonpost_smtp_refusals_total{command="MAIL",code="550",status="5.7.1"}') >= 1);
  assert.equal(value('moonpost_queue_messages{state="queued"}'), 1);
  assert.equal(value('moonpost_queue_messages{state="held"}'), 0);
  assert.ok(value('moonpost_deliveries_total{via="local",result="delivered"}') >= 1);
  assert.equal(value('moonpost_deliveries_total{via="relay",result="bounced"}'), 0);
  assert.ok(value('moonpost_script_hook_calls_total{hook="DoMAILFROM"}') >= 4);
  assert.ok(value('moonpost_script_hook_errors_total{hook="DoMAILFROM"}') >= 1);
  assert.equal(value('moonpost_script_hook_stops_total{hook="DoMAILFROM"}'), 0);
  const calls = value('moonpost_script_hook_calls_total{hook="DoMAILFROM"}');
  assert.equal(value('moonpost_script_hook_duration_seconds_bucket{le="+Inf",hook="DoMAILFROM"}'), calls);
  assert.equal(value('moonpost_script_hook_duration_seconds_count{hook="DoMAILFROM"}'), calls);
  assert.ok(value('moonpost_script_hook_duration_seconds_bucket{le="5",hook="DoMAILFROM"}') <= calls);
  assert.ok(value('moonpost_script_hook_duration_seconds_sum{hook="DoMAILFROM"}') > 0);
  assert.match(text, /^# TYPE moonpost_script_hook_duration_seconds histogram$/m);
  assert.equal(value('moonpost_script_version{script="SMTPSVR.LUA"}'), 1);
  assert.equal(value('moonpost_script_version{script="relayout.lua"}'), 0);
  assert.equal(value('moonpost_smtp_connections_open'), 0);
  assert.match(text, /^process_resident_memory_bytes /m, 'the process metrics too');
});

test('/api/stats: the last hour per minute', async () => {
  const r = await api.get('/api/stats');
  assert.equal(r.status, 200);
  assert.equal(r.body.minutes.length, 60);
  const minutes = r.body.minutes as { minute: string; in: number; out: number; refused: number; queue: number | null }[];
  for (let i = 1; i < 60; i++) assert.equal(Date.parse(minutes[i].minute) - Date.parse(minutes[i - 1].minute), 60_000);
  const now = minutes[59];
  assert.ok(Date.now() - Date.parse(now.minute) < 60_000);
  // Activity may straddle a minute boundary: the hour's totals hold all of it.
  assert.ok(r.body.lastHour.in >= 2, JSON.stringify(r.body.lastHour));
  assert.ok(r.body.lastHour.out >= 1);
  assert.ok(r.body.lastHour.refused >= 2, 'the refused MAIL and the oversized message');
  assert.equal(now.queue, 1);
  assert.equal(r.body.queue, 1);
});
