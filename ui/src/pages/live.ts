import { get, seg, type LiveEvent, type OpenConnection } from '../api.js';
import { duration, fill, h, when } from '../dom.js';
import type { PageFn } from '../main.js';

const MAX_SESSIONS = 150;
const MAX_ROWS = 200;
const MAX_ERRORS = 50;

type Ev<T extends LiveEvent['type']> = Extract<LiveEvent, { type: T }>;

interface Card {
  el: HTMLElement;
  rows: HTMLElement;
  head: HTMLElement;
  outcome: HTMLElement;
  state: HTMLElement;
  rowCount: number;
  ip: string;
}

/** `refused: script` → the badge class and text of a message outcome. */
function outcomeBadge(outcome: string): HTMLElement {
  const cls = outcome === 'queued' ? 'badge-ok' : outcome.startsWith('refused') ? 'badge-bad' : outcome.startsWith('deferred') ? 'badge-warn' : 'badge';
  return h('span', { class: `badge ${cls}` }, outcome);
}

const REFUSABLE = /^(MAIL|RCPT|DATA|BDAT|\(end of data\))/;

/**
 * Live: the server's SMTP sessions as they happen (server-sent events), each with its commands
 * and replies, script hook calls and the outcome of its messages; open connections; recent
 * script errors with the file and line, linked to the editor.
 */
export const livePage: PageFn = (el) => {
  const cards = new Map<string, Card>();
  let source: EventSource | null = null;
  let closed = false;
  let paused = false;
  const held: LiveEvent[] = [];
  let lastSeq = 0;
  let connRefresh: number | undefined;

  const streamState = h('span.stream-state', { 'data-state': 'connecting' }, 'connecting…');
  const search = h('input', { type: 'search', name: 'filter', placeholder: 'Filter: address, IP, text', 'aria-label': 'Filter sessions', spellcheck: 'false' });
  const pauseBtn = h('button.secondary', { type: 'button', onclick: () => togglePause() }, 'Pause');
  const clearBtn = h('button.secondary', { type: 'button', onclick: () => clearAll() }, 'Clear');
  const feed = h('div.feed', { 'aria-live': 'off' });
  const empty = h('p.muted.feed-empty', null, 'No SMTP session yet. Sessions appear here as clients connect.');
  const conns = h('div.conn-list');
  const errors = h('ol.error-list');
  const errorsEmpty = h('p.muted.small', null, 'No script error recently.');

  fill(
    el,
    h(
      'div.live-layout',
      null,
      h(
        'section.live-main',
        null,
        h('div.live-head', null, h('h2', null, 'Live sessions'), streamState, h('div.live-tools', null, search, pauseBtn, clearBtn)),
        empty,
        feed,
      ),
      h('aside.live-side', null, h('h2', null, 'Open connections'), conns, h('h2', null, 'Script errors'), errorsEmpty, errors),
    ),
  );

  search.addEventListener('input', () => applyFilter());

  function applyFilter(card?: Card): void {
    const q = search.value.trim().toLowerCase();
    const list = card ? [card] : [...cards.values()];
    for (const c of list) c.el.hidden = !!q && !(c.el.textContent ?? '').toLowerCase().includes(q);
  }

  function togglePause(): void {
    paused = !paused;
    pauseBtn.textContent = paused ? `Resume` : 'Pause';
    pauseBtn.classList.toggle('primary', paused);
    if (!paused) {
      for (const e of held.splice(0)) handle(e);
    }
  }

  function clearAll(): void {
    cards.clear();
    fill(feed);
    empty.hidden = false;
  }

  function card(session: string, e?: Ev<'connect'>): Card {
    let c = cards.get(session);
    if (c) return c;
    const state = h('span.session-state.open', null, 'open');
    const outcome = h('span.session-outcome');
    const head = h(
      'div.session-head',
      null,
      h('span.session-time', null, when(e?.time)),
      h('span.session-ip.mono', null, e ? `${e.ip}:${e.port}` : '(connected earlier)'),
      e ? h('span.muted', null, e.service) : null,
      h('span.session-id.muted.mono', { title: 'Session id' }, session),
      outcome,
      state,
    );
    const rows = h('ol.session-rows');
    const elc = h('article.session', { 'data-session': session }, head, rows);
    c = { el: elc, rows, head, outcome, state, rowCount: 0, ip: e?.ip ?? '' };
    cards.set(session, c);
    feed.prepend(elc);
    empty.hidden = true;
    while (cards.size > MAX_SESSIONS) {
      const [oldest, oc] = cards.entries().next().value as [string, Card];
      oc.el.remove();
      cards.delete(oldest);
    }
    return c;
  }

  function row(c: Card, cls: string, ...parts: (Node | string | null)[]): void {
    if (c.rowCount >= MAX_ROWS) {
      if (c.rowCount === MAX_ROWS) c.rows.appendChild(h('li.row.muted', null, '… (more lines not shown)'));
      c.rowCount++;
      return;
    }
    c.rowCount++;
    c.rows.appendChild(h('li', { class: `row ${cls}` }, ...parts));
    applyFilter(c);
  }

  function handle(e: LiveEvent): void {
    if (e.seq <= lastSeq) return;
    lastSeq = e.seq;
    switch (e.type) {
      case 'connect':
        card(e.session, e);
        scheduleConnections();
        break;
      case 'command': {
        const c = card(e.session);
        const refused = /^[45]/.test(e.reply);
        row(c, refused ? 'cmd refused' : 'cmd', h('span.c', null, e.command), h('span.s', null, e.reply));
        const m = REFUSABLE.exec(e.command);
        if (refused && m && e.command !== '(end of data)') c.outcome.appendChild(h('span.badge.badge-bad', { title: e.reply }, `${m[1]} refused ${e.reply.split(' ')[0]}`));
        break;
      }
      case 'hook': {
        const c = card(e.session);
        row(
          c,
          `hook hook-${e.outcome}`,
          h('span.hook-name', null, e.hook),
          h('span.hook-call.mono', null, e.call ?? ''),
          e.error ? h('span.hook-error', null, e.error) : null,
          h('span.hook-ms.muted', null, `${e.ms} ms`),
        );
        break;
      }
      case 'message': {
        const c = card(e.session);
        row(
          c,
          'msg',
          h('span.msg-label', null, 'message'),
          outcomeBadge(e.outcome),
          h('span.mono', null, `${e.queueId || ''}`),
          h('span', null, `${e.from || '<>'} → ${e.to.join(', ')}`),
          h('span.muted', null, e.reply),
        );
        c.outcome.appendChild(outcomeBadge(e.outcome));
        break;
      }
      case 'disconnect': {
        const c = card(e.session);
        c.state.className = 'session-state closed';
        c.state.textContent = `closed after ${e.ms < 1000 ? `${e.ms} ms` : duration(e.ms / 1000)}`;
        scheduleConnections();
        break;
      }
      case 'script-error':
        addError(e, true);
        break;
    }
  }

  const errorSeqs = new Set<number>();
  function addError(e: Ev<'script-error'>, fresh: boolean): void {
    if (errorSeqs.has(e.seq)) return;
    errorSeqs.add(e.seq);
    errorsEmpty.hidden = true;
    const where = e.script ? `${e.script}${e.line ? `:${e.line}` : ''}` : '(unknown script)';
    const link = e.script && /\.lua$/i.test(e.script) ? h('a.mono', { href: `#/scripts/${seg(e.script)}${e.line ? `/${e.line}` : ''}`, title: 'Open in the editor' }, where) : h('span.mono', null, where);
    const item = h(
      'li',
      { class: `script-error kind-${e.kind}${fresh ? ' fresh' : ''}` },
      h('div.error-head', null, link, h('span.muted', null, ` in ${e.hook}`), h('span.muted.error-time', null, when(e.time))),
      h('div.error-kind', null, e.kind === 'stopped' ? 'stopped (over its budget)' : 'error'),
      h('pre.error-message', null, e.message.split('\n').slice(0, 6).join('\n')),
    );
    errors.prepend(item);
    while (errors.children.length > MAX_ERRORS) errors.lastElementChild?.remove();
  }

  async function loadConnections(): Promise<void> {
    try {
      const r = await get<{ connections: OpenConnection[] }>('/api/live/connections');
      if (closed) return;
      fill(
        conns,
        r.connections.length
          ? h(
              'table.grid.compact',
              null,
              h('thead', null, h('tr', null, h('th', null, 'Client'), h('th', null, 'For'), h('th', null, 'Last'))),
              h(
                'tbody',
                null,
                r.connections.map((c) =>
                  h(
                    'tr',
                    null,
                    h('td.mono', null, c.ip, c.helo ? h('div.muted.small', null, c.helo) : null),
                    h('td', null, duration((Date.now() - Date.parse(c.since)) / 1000)),
                    h('td.small', null, c.lastCommand ? `${c.lastCommand} → ${c.lastReply ?? ''}` : ''),
                  ),
                ),
              ),
            )
          : h('p.muted.small', null, 'None right now.'),
      );
    } catch {
      /* shown by the stream state */
    }
  }

  function scheduleConnections(): void {
    if (connRefresh !== undefined) return;
    connRefresh = window.setTimeout(() => {
      connRefresh = undefined;
      void loadConnections();
    }, 300);
  }

  function connect(): void {
    source = new EventSource(`/api/live/stream?since=${lastSeq}`);
    source.addEventListener('open', () => {
      streamState.dataset.state = 'open';
      streamState.textContent = 'live';
    });
    source.addEventListener('error', () => {
      streamState.dataset.state = 'error';
      streamState.textContent = source?.readyState === EventSource.CLOSED ? 'disconnected' : 'reconnecting…';
      // A closed stream (the session ended: 401) is not retried by the browser.
      if (source?.readyState === EventSource.CLOSED && !closed) {
        source.close();
        window.setTimeout(() => {
          if (!closed) void get('/api/session').then(connect, () => undefined);
        }, 3000);
      }
    });
    for (const type of ['connect', 'disconnect', 'command', 'hook', 'message', 'script-error']) {
      source.addEventListener(type, (m) => {
        const e = JSON.parse((m as MessageEvent<string>).data) as LiveEvent;
        if (paused) held.push(e);
        else handle(e);
      });
    }
  }

  void (async () => {
    try {
      const [recent, errs] = await Promise.all([get<{ lastSeq: number; events: LiveEvent[] }>('/api/live/events?limit=600&types=connect,disconnect,command,hook,message'), get<{ errors: Ev<'script-error'>[] }>('/api/live/errors')]);
      if (closed) return;
      for (const e of errs.errors) addError(e, false);
      for (const e of recent.events) handle(e);
      lastSeq = Math.max(lastSeq, recent.lastSeq);
      connect();
    } catch (err) {
      streamState.dataset.state = 'error';
      streamState.textContent = (err as Error).message;
    }
  })();
  void loadConnections();
  const connTimer = window.setInterval(() => {
    if (!document.hidden) void loadConnections();
  }, 10_000);

  return {
    cleanup() {
      closed = true;
      source?.close();
      window.clearInterval(connTimer);
      window.clearTimeout(connRefresh);
    },
  };
};
