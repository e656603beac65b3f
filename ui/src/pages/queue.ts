import { ApiError, get, request, seg, type MessageState, type QueueCounts, type QueueDetail, type QueueMessage } from '../api.js';
import { ask, bytes, duration, fill, h, statusLine, when } from '../dom.js';
import type { PageFn } from '../main.js';

const REFRESH_MS = 4000;
const STATES: MessageState[] = ['queued', 'deferred', 'held'];
const STATE_HELP: Record<MessageState, string> = {
  queued: 'not tried yet, or no route to send it',
  deferred: 'a failed attempt: waits for its retry',
  held: 'kept from delivery until released',
};

interface Filter {
  sender: string;
  recipient: string;
  domain: string;
  /** Minutes. */
  olderThan: string;
  newerThan: string;
  state: '' | MessageState;
}

const EMPTY: Filter = { sender: '', recipient: '', domain: '', olderThan: '', newerThan: '', state: '' };

function query(f: Filter): string {
  const q = new URLSearchParams();
  for (const k of ['sender', 'recipient', 'domain', 'state'] as const) if (f[k].trim()) q.set(k, f[k].trim());
  const minutes = (s: string): number | null => (s.trim() && Number.isFinite(Number(s)) && Number(s) >= 0 ? Number(s) * 60 : null);
  const min = minutes(f.olderThan);
  const max = minutes(f.newerThan);
  if (min !== null) q.set('minAge', String(min));
  if (max !== null) q.set('maxAge', String(max));
  q.set('limit', '500');
  return q.toString();
}

const stateBadge = (s: MessageState): HTMLElement => h('span', { class: `badge state-${s}`, title: STATE_HELP[s] }, s);

/**
 * The queue: counts by state and destination domain, the messages with filters, one message in
 * detail (envelope, header, each recipient's attempts and last reply) and its actions.
 */
export const queuePage: PageFn = (el, params, nav) => {
  let filter: Filter = { ...EMPTY };
  let selected: string | null = params[0] ?? null;
  let closed = false;
  let busy = false;

  const stateCards = h('div.cards.state-cards');
  const domains = h('div.domain-table');
  const status = statusLine();

  const inputs = {
    sender: h('input', { name: 'sender', placeholder: 'contains', spellcheck: 'false' }),
    recipient: h('input', { name: 'recipient', placeholder: 'contains', spellcheck: 'false' }),
    domain: h('input', { name: 'domain', placeholder: 'example.com', spellcheck: 'false' }),
    olderThan: h('input', { name: 'olderThan', type: 'number', min: 0, step: 'any', placeholder: 'min' }),
    newerThan: h('input', { name: 'newerThan', type: 'number', min: 0, step: 'any', placeholder: 'min' }),
  };
  const stateSelect = h('select', { name: 'state' }, h('option', { value: '' }, 'any'), STATES.map((s) => h('option', { value: s }, s)));
  const filterForm = h(
    'form.filters',
    {
      onsubmit: (e: Event) => {
        e.preventDefault();
        filter = {
          sender: inputs.sender.value,
          recipient: inputs.recipient.value,
          domain: inputs.domain.value,
          olderThan: inputs.olderThan.value,
          newerThan: inputs.newerThan.value,
          state: stateSelect.value as Filter['state'],
        };
        void refresh();
      },
    },
    h('label.field', null, h('span', null, 'Sender'), inputs.sender),
    h('label.field', null, h('span', null, 'Recipient'), inputs.recipient),
    h('label.field', null, h('span', null, 'Domain'), inputs.domain),
    h('label.field.narrow', null, h('span', null, 'Older than'), inputs.olderThan),
    h('label.field.narrow', null, h('span', null, 'Newer than'), inputs.newerThan),
    h('label.field.narrow', null, h('span', null, 'State'), stateSelect),
    h(
      'div.filter-buttons',
      null,
      h('button.primary', { type: 'submit' }, 'Filter'),
      h('button.secondary', { type: 'button', onclick: () => setFilter({ ...EMPTY }) }, 'Clear'),
    ),
  );

  const total = h('span.muted');
  const tbody = h('tbody');
  const table = h(
    'table.grid.queue-table',
    null,
    h('thead', null, h('tr', null, h('th', null, 'Queue id'), h('th', null, 'Age'), h('th', null, 'Sender'), h('th', null, 'Recipients'), h('th', null, 'State'), h('th', null, 'Last reply'))),
    tbody,
  );
  const detail = h('section.queue-detail', { 'aria-label': 'Message' });

  fill(
    el,
    h(
      'div.queue-layout',
      null,
      h(
        'section.queue-summary',
        null,
        h('div.summary-states', null, h('h2', null, 'Queue'), stateCards),
        h('div.summary-domains', null, h('h3', null, 'Waiting by destination domain'), domains),
      ),
      h(
        'div.queue-body',
        null,
        h(
        'section.queue-main',
        null,
        filterForm,
        h(
          'div.list-head',
          null,
          total,
          h(
            'div.buttons',
            null,
            h('button.secondary', { type: 'button', onclick: () => void refresh(), title: 'Refresh now' }, 'Refresh'),
            h('button.secondary', { type: 'button', onclick: () => void act('all', 'retry'), title: 'Try every waiting message now' }, 'Retry all'),
          ),
        ),
        status.el,
        h('div.table-wrap', null, table),
      ),
      detail,
      ),
    ),
  );

  function setFilter(f: Filter): void {
    filter = f;
    inputs.sender.value = f.sender;
    inputs.recipient.value = f.recipient;
    inputs.domain.value = f.domain;
    inputs.olderThan.value = f.olderThan;
    inputs.newerThan.value = f.newerThan;
    stateSelect.value = f.state;
    void refresh();
  }

  function renderCounts(c: QueueCounts): void {
    fill(
      stateCards,
      h('button.card', { type: 'button', class: filter.state === '' ? 'active' : null, onclick: () => setFilter({ ...filter, state: '' }) }, h('span.card-value', null, c.messages), h('span.card-label', null, 'messages')),
      STATES.map((s) =>
        h(
          'button.card',
          { type: 'button', class: `state-${s}${filter.state === s ? ' active' : ''}`, title: STATE_HELP[s], 'data-state': s, onclick: () => setFilter({ ...filter, state: filter.state === s ? '' : s }) },
          h('span.card-value', null, c.byState[s]),
          h('span.card-label', null, s),
        ),
      ),
    );
    fill(
      domains,
      c.byDomain.length
        ? h(
            'table.grid.compact',
            null,
            h('thead', null, h('tr', null, h('th', null, 'Domain'), h('th.num', null, 'Recipients'), h('th.num', null, 'Messages'))),
            h(
              'tbody',
              null,
              c.byDomain.slice(0, 12).map((d) =>
                h(
                  'tr',
                  null,
                  h('td', null, h('button.link', { type: 'button', onclick: () => setFilter({ ...filter, domain: d.domain }) }, d.domain)),
                  h('td.num', null, d.recipients),
                  h('td.num', null, d.messages),
                ),
              ),
            ),
          )
        : h('p.muted.small', null, 'No recipient is waiting.'),
      c.byDomain.length > 12 ? h('p.muted.small', null, `and ${c.byDomain.length - 12} more domains`) : null,
    );
  }

  function lastReply(m: QueueMessage): string {
    return m.recipients.find((r) => r.state === 'pending' && r.lastReply)?.lastReply ?? '';
  }

  function renderList(total_: number, messages: QueueMessage[]): void {
    total.textContent = `${total_} message${total_ === 1 ? '' : 's'}${query(filter) !== 'limit=500' ? (total_ === 1 ? ' matches the filter' : ' match the filter') : ' in the queue'}${messages.length < total_ ? ` (first ${messages.length} shown)` : ''}`;
    fill(
      tbody,
      messages.length
        ? messages.map((m) => {
            const pending = m.recipients.filter((r) => r.state === 'pending');
            const first = pending[0] ?? m.recipients[0];
            const reply = lastReply(m);
            return h(
              'tr',
              {
                class: m.id === selected ? 'selected' : null,
                'data-id': m.id,
                tabindex: 0,
                onclick: () => select(m.id),
                onkeydown: (e: Event) => {
                  if ((e as KeyboardEvent).key === 'Enter') select(m.id);
                },
              },
              h('td.mono', null, m.id),
              h('td', { title: when(m.received) }, duration(m.ageSeconds)),
              h('td.addr', null, m.sender || '<>'),
              h('td.addr', null, first?.address ?? '', pending.length > 1 ? h('span.muted', null, ` +${pending.length - 1}`) : null),
              h('td', null, stateBadge(m.state)),
              h('td.reply', { title: reply }, reply),
            );
          })
        : h('tr', null, h('td.empty', { colspan: 6 }, 'No message matches.')),
    );
  }

  async function refresh(): Promise<void> {
    if (busy) return;
    busy = true;
    try {
      const [list, counts] = await Promise.all([get<{ total: number; messages: QueueMessage[] }>(`/api/queue?${query(filter)}`), get<QueueCounts>('/api/queue/counts')]);
      if (closed) return;
      renderCounts(counts);
      renderList(list.total, list.messages);
      if (selected) await loadDetail(selected, false);
    } catch (err) {
      status.set('error', (err as Error).message);
    } finally {
      busy = false;
    }
  }

  function select(id: string): void {
    selected = id;
    nav.replace(`#/queue/${seg(id)}`);
    for (const tr of tbody.querySelectorAll('tr')) tr.classList.toggle('selected', tr.dataset.id === id);
    void loadDetail(id, true);
  }

  function closeDetail(): void {
    selected = null;
    nav.replace('#/queue');
    for (const tr of tbody.querySelectorAll('tr.selected')) tr.classList.remove('selected');
    fill(detail);
    detail.classList.remove('open');
  }

  async function loadDetail(id: string, scroll: boolean): Promise<void> {
    let m: QueueDetail;
    try {
      m = await get<QueueDetail>(`/api/queue/${seg(id)}`);
    } catch (err) {
      if (closed || selected !== id) return;
      if (err instanceof ApiError && err.status === 404) {
        fill(detail, h('div.detail-head', null, h('h2', null, 'Message'), h('button.link', { type: 'button', onclick: closeDetail }, 'Close')), h('p.muted', null, `${id} is no longer in the queue (delivered, bounced or deleted).`));
        detail.classList.add('open');
      } else status.set('error', (err as Error).message);
      return;
    }
    if (closed || selected !== id) return;
    const actions = h(
      'div.buttons.actions',
      null,
      h('button.primary', { type: 'button', 'data-action': 'retry', onclick: () => void act(id, 'retry'), title: 'Try the pending recipients now' }, 'Retry now'),
      m.hold
        ? h('button.secondary', { type: 'button', 'data-action': 'release', onclick: () => void act(id, 'release') }, 'Release')
        : h('button.secondary', { type: 'button', 'data-action': 'hold', onclick: () => void act(id, 'hold'), title: 'Keep it from delivery' }, 'Hold'),
      h('button.secondary', { type: 'button', 'data-action': 'bounce', onclick: () => void act(id, 'bounce'), title: 'Fail the pending recipients now; the sender gets a DSN' }, 'Bounce'),
      h('button.danger', { type: 'button', 'data-action': 'delete', onclick: () => void act(id, 'delete'), title: 'Remove without telling the sender' }, 'Delete'),
    );
    const dl = (rows: [string, Node | string | null | undefined][]) => h('dl.props', null, rows.filter(([, v]) => v !== undefined && v !== null && v !== '').map(([k, v]) => [h('dt', null, k), h('dd', null, v!)]));
    fill(
      detail,
      h('div.detail-head', null, h('h2', null, 'Message ', h('span.mono', null, m.id)), h('button.link', { type: 'button', onclick: closeDetail, 'aria-label': 'Close the message' }, 'Close')),
      actions,
      dl([
        ['State', h('span', null, stateBadge(m.state), m.hold ? ' (held by the administrator)' : '')],
        ['From', m.sender || '<> (a bounce)'],
        ['Received', `${when(m.received)} (${duration(m.ageSeconds)} ago)`],
        ['Size', bytes(m.size)],
        ['Client', m.client ? `${m.client.helo} [${m.client.ip}]${m.client.authUser ? `, authenticated as ${m.client.authUser}` : ''}${m.client.tls ? `, ${m.client.tls}` : ''}` : undefined],
        ['Service', m.service?.name],
        ['Next attempt', m.nextAttempt ? when(m.nextAttempt) : undefined],
        ['DSN', m.dsn ? [m.dsn.ret ? `RET=${m.dsn.ret}` : '', m.dsn.envid ? `ENVID=${m.dsn.envid}` : ''].filter(Boolean).join(' ') : undefined],
        ['Body', [m.body, m.smtputf8 ? 'SMTPUTF8' : ''].filter(Boolean).join(', ')],
      ]),
      h('h3', null, `Recipients (${m.recipients.length})`),
      h(
        'ul.recipients',
        null,
        m.recipients.map((r) =>
          h(
            'li.recipient',
            { 'data-address': r.address },
            h(
              'div.rcpt-head',
              null,
              h('span.addr.mono', null, r.address),
              h('span', { class: `badge rcpt-${r.state}` }, r.state),
              h('span.muted.small', null, h('span.attempts', null, r.attempts), r.attempts === 1 ? ' attempt' : ' attempts'),
            ),
            r.original ? h('div.muted.small', null, `for ${r.original}`) : null,
            h('div.muted.small', null, r.route === 'remote' ? 'to a remote server' : r.route),
            r.lastReply ? h('div.reply', { title: 'Last reply' }, r.lastReply) : null,
            r.nextAttempt ? h('div.muted.small', null, `next try ${when(r.nextAttempt)}`) : null,
          ),
        ),
      ),
      h('h3', null, 'Header'),
      h('pre.header-lines', null, m.header.length ? m.header.join('\n') : '(not readable)'),
    );
    detail.classList.add('open');
    if (scroll && window.matchMedia('(max-width: 1100px)').matches) detail.scrollIntoView({ behavior: 'smooth', block: 'start' });
  }

  async function act(id: string, action: 'retry' | 'hold' | 'release' | 'bounce' | 'delete'): Promise<void> {
    let body: Record<string, string> = {};
    if (action === 'delete') {
      const ok = await ask({ title: 'Delete the message?', text: `${id} leaves the queue and nobody is told: the sender gets no bounce.`, ok: 'Delete', danger: true });
      if (ok === null) return;
    } else if (action === 'bounce') {
      const reason = await ask({
        title: 'Bounce the message?',
        text: `Every pending recipient of ${id} fails now; the sender gets a delivery status notification with this reason.`,
        ok: 'Bounce',
        danger: true,
        input: { label: 'Reason', placeholder: 'Delivery cancelled by the administrator' },
      });
      if (reason === null) return;
      if (reason.trim()) body = { reason: reason.trim() };
    }
    status.set('busy', `${action}…`);
    try {
      const r = action === 'delete' ? await request<{ changed: string[] }>('DELETE', `/api/queue/${seg(id)}`) : await request<{ changed: string[] }>('POST', `/api/queue/${seg(id)}/${action}`, body);
      const n = r.body.changed.length;
      const what = id === 'all' ? `${n} message${n === 1 ? '' : 's'}` : id;
      const done: Record<typeof action, string> = { retry: 'will be tried now', hold: n === 1 ? 'is held' : 'are held', release: n === 1 ? 'is released' : 'are released', bounce: n === 1 ? 'is bounced' : 'are bounced', delete: 'deleted' };
      status.set('ok', `${what} ${done[action]}.`);
      if (action === 'delete' || action === 'bounce') closeDetail();
    } catch (err) {
      status.set('error', `${action}: ${(err as Error).message}`);
    }
    await refresh();
    // A retry or release starts a delivery attempt: show its result without waiting for the next poll.
    if (action === 'retry' || action === 'release') window.setTimeout(() => void refresh(), 1000);
  }

  const tick = (): void => {
    if (!document.hidden) void refresh();
  };
  const timer = window.setInterval(tick, REFRESH_MS);
  void refresh();

  return {
    cleanup() {
      closed = true;
      window.clearInterval(timer);
    },
  };
};
