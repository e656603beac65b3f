import { get, type QueueCounts, type ScriptInfo, type Stats } from '../api.js';
import { chart, type Series } from '../chart.js';
import { fill, h } from '../dom.js';
import type { PageFn } from '../main.js';

const REFRESH_MS = 15_000;

/**
 * The dashboard: the last hour per minute (messages in and out, refusals, queue depth), totals
 * of the hour, the queue by state and which scripts are live.
 */
export const dashboardPage: PageFn = (el) => {
  let closed = false;
  let stats: Stats | null = null;
  const cards = h('div.cards.dash-cards');
  const charts = h('div.charts');
  const side = h('div.dash-side');
  const updated = h('span.muted.small');
  fill(el, h('div.dash-head', null, h('h2', null, 'Last hour'), updated), cards, charts, side);

  const panels = {
    traffic: h('figure.chart-panel', { 'data-chart': 'traffic' }),
    refused: h('figure.chart-panel', { 'data-chart': 'refused' }),
    queue: h('figure.chart-panel', { 'data-chart': 'queue' }),
  };
  fill(charts, panels.traffic, panels.refused, panels.queue);

  const card = (value: number | string, label: string, cls = '', href?: string): HTMLElement =>
    h(href ? 'a.card' : 'div.card', { class: cls || null, href: href ?? null }, h('span.card-value', null, value), h('span.card-label', null, label));

  function legend(series: Series[]): HTMLElement {
    return h('div.legend', null, series.map((s) => h('span.legend-item', null, h('i', { class: `swatch ${s.cls}` }), s.name)));
  }

  function draw(): void {
    if (!stats) return;
    const labels = stats.minutes.map((m) => new Date(m.minute).toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit', hour12: false }));
    const one = (panel: HTMLElement, title: string, series: Series[], total: string) => {
      const width = panel.clientWidth - 24;
      fill(panel, h('figcaption', null, h('span.chart-title', null, title), h('span.muted.small', null, total)), chart(series, labels, { title, width, height: width < 420 ? 140 : 180 }), legend(series));
    };
    const inS: Series = { name: 'in (accepted)', cls: 's-in', values: stats.minutes.map((m) => m.in), kind: 'line' };
    const outS: Series = { name: 'out (delivered)', cls: 's-out', values: stats.minutes.map((m) => m.out), kind: 'line' };
    one(panels.traffic, 'Messages per minute', [inS, outS], `${stats.lastHour.in} in · ${stats.lastHour.out} out`);
    one(panels.refused, 'Refusals per minute', [{ name: 'refusal replies', cls: 's-refused', values: stats.minutes.map((m) => m.refused), kind: 'bar' }], `${stats.lastHour.refused} in the hour`);
    one(panels.queue, 'Queue depth', [{ name: 'messages queued', cls: 's-queue', values: stats.minutes.map((m) => m.queue), kind: 'line' }], `${stats.queue} now`);
  }

  async function refresh(): Promise<void> {
    try {
      const [s, q, sc] = await Promise.all([get<Stats>('/api/stats'), get<QueueCounts>('/api/queue/counts'), get<{ scripts: ScriptInfo[] }>('/api/scripts')]);
      if (closed) return;
      stats = s;
      fill(
        cards,
        card(s.lastHour.in, 'accepted', 's-in'),
        card(s.lastHour.out, 'delivered', 's-out'),
        card(s.lastHour.refused, 'refusals', 's-refused'),
        card(s.queue, 'in the queue', '', '#/queue'),
        card(s.connections, 'connections open', '', '#/live'),
      );
      draw();
      fill(
        side,
        h(
          'section.panel',
          null,
          h('h3', null, 'Queue by state'),
          h(
            'div.state-row',
            null,
            (['queued', 'deferred', 'held'] as const).map((st) => h('a', { class: `badge state-${st}`, href: '#/queue' }, `${q.byState[st]} ${st}`)),
          ),
          q.byDomain.length
            ? h('p.small', null, 'Most waiting: ', q.byDomain.slice(0, 3).map((d, i) => [i ? ', ' : '', h('span.mono', null, d.domain), ` (${d.recipients})`]))
            : h('p.muted.small', null, 'No recipient is waiting.'),
        ),
        h(
          'section.panel',
          null,
          h('h3', null, 'Scripts'),
          sc.scripts.filter((x) => x.kind !== 'module').length
            ? h(
                'ul.plain',
                null,
                sc.scripts
                  .filter((x) => x.kind !== 'module')
                  .map((x) =>
                    h(
                      'li',
                      null,
                      h('a.mono', { href: `#/scripts/${encodeURIComponent(x.name)}` }, x.name),
                      ' ',
                      x.live && x.live.version ? h('span', { class: `badge ${x.live.current ? 'badge-ok' : 'badge-warn'}` }, x.live.current ? `live v${x.live.version}` : `live v${x.live.version} · file differs`) : h('span.badge.badge-warn', null, 'not live'),
                    ),
                  ),
              )
            : h('p.muted.small', null, 'No SMTPSVR.LUA or relayout.lua: every hook keeps its default.'),
        ),
      );
      updated.textContent = `updated ${new Date().toLocaleTimeString(undefined, { hour12: false })}`;
    } catch (err) {
      updated.textContent = (err as Error).message;
    }
  }

  let lastWidth = 0;
  const resize = new ResizeObserver(() => {
    const w = charts.clientWidth;
    if (Math.abs(w - lastWidth) > 4) {
      lastWidth = w;
      draw();
    }
  });
  resize.observe(charts);
  const timer = window.setInterval(() => {
    if (!document.hidden) void refresh();
  }, REFRESH_MS);
  void refresh();
  return {
    cleanup() {
      closed = true;
      window.clearInterval(timer);
      resize.disconnect();
    },
  };
};
