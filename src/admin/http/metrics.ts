import { collectDefaultMetrics, Counter, Registry, type Metric } from 'prom-client';
import { LATENCY_BUCKETS } from '../../script/metrics.js';
import type { ScriptHost } from '../../script/script-host.js';
import type { QueueIndex } from '../../queue/queue-index.js';
import type { RelayCounters } from '../../delivery/relay/outcomes.js';
import { counts, MESSAGE_STATES } from '../queue-view.js';
import type { EventBus, LiveEvent } from '../events.js';

export interface MetricsSources {
  bus: EventBus;
  scripts: ScriptHost;
  queue: QueueIndex;
  relay: RelayCounters;
  local: { delivered: number; deferred: number };
  openConnections(): number;
}

type Labels = Record<string, string | number>;
interface Value {
  value: number;
  labels: Labels;
  metricName?: string;
}

/**
 * A metric whose values are computed at scrape time from counters the server keeps anyway
 * (Prometheus' "const metrics"): the registry calls `get()` and formats what it returns.
 */
function constMetric(name: string, help: string, type: 'counter' | 'gauge' | 'histogram', values: () => Value[]): Metric {
  const metric = {
    name,
    help,
    type,
    aggregator: 'sum',
    get: async () => ({ name, help, type, aggregator: 'sum', values: values() }),
    reset: () => undefined,
  };
  return metric as unknown as Metric;
}

/** `refused: size` → `size`. */
const reasonOf = (outcome: string): string => outcome.replace(/^refused: /, '');
const REFUSABLE = /^(MAIL|RCPT|DATA|BDAT|\(end of data\))/;

/**
 * The Prometheus registry of one server (not the global one: several servers may share a
 * process in tests). Event counters hear the bus; the rest is read from the server's objects
 * when scraped.
 */
export function createMetrics(src: MetricsSources): { registry: Registry; stop(): void } {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });

  const connections = new Counter({ name: 'moonpost_smtp_connections_total', help: 'SMTP connections accepted', labelNames: ['service'], registers: [registry] });
  const accepted = new Counter({ name: 'moonpost_messages_accepted_total', help: 'Messages accepted into the queue', registers: [registry] });
  const refused = new Counter({
    name: 'moonpost_messages_refused_total',
    help: 'Messages refused at the end of DATA/BDAT, by reason (size, line length, script, EndMessage, script stopped, deferred: queue write failed)',
    labelNames: ['reason'],
    registers: [registry],
  });
  const discarded = new Counter({ name: 'moonpost_messages_discarded_total', help: 'Messages accepted and discarded (script Ignore, RBL blackhole, no recipients left)', registers: [registry] });
  const refusals = new Counter({
    name: 'moonpost_smtp_refusals_total',
    help: 'Refusal replies (4xx/5xx) to MAIL, RCPT, DATA, BDAT and at the end of a message, by command and reply code',
    labelNames: ['command', 'code', 'status'],
    registers: [registry],
  });
  const unsubscribe = src.bus.subscribe((e: LiveEvent) => {
    if (e.type === 'connect') connections.inc({ service: e.service });
    else if (e.type === 'message') {
      if (e.outcome === 'queued') accepted.inc();
      else if (e.outcome.startsWith('discarded')) discarded.inc();
      else refused.inc({ reason: reasonOf(e.outcome) });
    } else if (e.type === 'command' && /^[45]/.test(e.reply)) {
      const m = REFUSABLE.exec(e.command);
      if (!m) return;
      const [code, status] = e.reply.split(' ');
      refusals.inc({ command: m[1] === '(end of data)' ? 'end-of-data' : m[1], code, status: /^\d\.\d+\.\d+$/.test(status ?? '') ? status : '' });
    }
  });

  const hooks = (): [string, ReturnType<ScriptHost['metrics']['snapshot']>[string]][] => Object.entries(src.scripts.metrics.snapshot());
  const metrics: Metric[] = [
    constMetric('moonpost_smtp_connections_open', 'SMTP connections open now', 'gauge', () => [{ value: src.openConnections(), labels: {} }]),
    constMetric('moonpost_queue_messages', 'Messages in the queue by state (held, deferred after a failed attempt, queued)', 'gauge', () => {
      const c = counts(src.queue.list());
      return MESSAGE_STATES.map((state) => ({ value: c.byState[state], labels: { state } }));
    }),
    constMetric('moonpost_deliveries_total', 'Delivery results per recipient: via relay (delivered, deferred, bounced) or local Maildir (delivered, deferred)', 'counter', () => [
      { value: src.relay.delivered, labels: { via: 'relay', result: 'delivered' } },
      { value: src.relay.deferred, labels: { via: 'relay', result: 'deferred' } },
      { value: src.relay.bounced, labels: { via: 'relay', result: 'bounced' } },
      { value: src.local.delivered, labels: { via: 'local', result: 'delivered' } },
      { value: src.local.deferred, labels: { via: 'local', result: 'deferred' } },
    ]),
    constMetric('moonpost_script_hook_calls_total', 'Script callbacks run, per hook (relayout.lua hooks as relayout.<hook>)', 'counter', () =>
      hooks().map(([hook, s]) => ({ value: s.calls, labels: { hook } })),
    ),
    constMetric('moonpost_script_hook_errors_total', 'Script callbacks that raised a Lua error', 'counter', () => hooks().map(([hook, s]) => ({ value: s.errors, labels: { hook } }))),
    constMetric('moonpost_script_hook_stops_total', 'Script callbacks stopped over their budget (time, instructions, memory)', 'counter', () =>
      hooks().map(([hook, s]) => ({ value: s.stops, labels: { hook } })),
    ),
    constMetric('moonpost_script_hook_duration_seconds', 'Time spent in each script callback', 'histogram', () =>
      hooks().flatMap(([hook, s]) => {
        const counts = src.scripts.metrics.histogram(hook);
        let cumulative = 0;
        const out: Value[] = LATENCY_BUCKETS.map((le, i) => {
          cumulative += counts[i];
          return { metricName: 'moonpost_script_hook_duration_seconds_bucket', value: cumulative, labels: { le, hook } };
        });
        out.push({ metricName: 'moonpost_script_hook_duration_seconds_bucket', value: s.calls, labels: { le: '+Inf', hook } });
        out.push({ metricName: 'moonpost_script_hook_duration_seconds_sum', value: s.totalMs / 1000, labels: { hook } });
        out.push({ metricName: 'moonpost_script_hook_duration_seconds_count', value: s.calls, labels: { hook } });
        return out;
      }),
    ),
    constMetric('moonpost_script_version', 'Version number of the live script (counts loads since start; 0 = no script)', 'gauge', () =>
      (['smtpsvr', 'relayout'] as const).map((k) => {
        const store = src.scripts[k];
        return { value: store?.current ? store.version : 0, labels: { script: store?.name ?? k } };
      }),
    ),
  ];
  for (const m of metrics) registry.registerMetric(m);
  return { registry, stop: unsubscribe };
}
