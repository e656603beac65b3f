import { openSearchPanel } from '@codemirror/search';
import { ApiError, get, request, seg, type CompileError, type HistoryEntry, type ScriptFile, type ScriptInfo, type TryResult } from '../api.js';
import { createEditor } from '../editor.js';
import { ask, bytes, fill, h, statusLine, when } from '../dom.js';
import type { PageFn } from '../main.js';

const KIND_LABEL: Record<ScriptInfo['kind'], string> = { smtpsvr: 'SMTP hooks', relayout: 'relay hooks', module: 'module' };

const DEFAULT_TRANSCRIPT = `# One client line per line; DATA is followed by the message up to a lone "."
EHLO client.example
MAIL FROM:<alice@example.com>
RCPT TO:<postmaster@localhost>
DATA
From: alice@example.com
To: postmaster@localhost
Subject: A test

Hello.
.
QUIT
`;

const TEMPLATES: Record<ScriptInfo['kind'], string> = {
  smtpsvr: `-- SMTPSVR.LUA: moonpost calls these functions during each SMTP session.
-- Return "" to go on as usual, or an SMTP reply ("550 5.7.1 ...") to refuse.

function DoMAILFROM(data, mailfrom, params, spf, authSender)
  return params, ""
end
`,
  relayout: `-- relayout.lua: moonpost calls these functions when it relays mail.
`,
  module: `-- A module for require() from the scripts.
local M = {}

return M
`,
};

interface Loaded {
  name: string;
  kind: ScriptInfo['kind'];
  encoding: 'utf8' | 'latin1';
  saved: string;
}

/**
 * Scripts: the list (SMTPSVR.LUA, relayout.lua, modules), a Lua editor whose text is compiled
 * on the server as you type and on Check; Save (refused unless it compiles), the history with
 * diffs and one-click restore, and Try (a transcript through the unsaved text).
 */
export const scriptsPage: PageFn = (el, params, nav) => {
  let scripts: ScriptInfo[] = [];
  let dir = '';
  let loaded: Loaded | null = null;
  let dirty = false;
  let closed = false;

  const list = h('ul.script-list', { 'aria-label': 'Scripts' });
  const dirNote = h('p.muted.small');
  const newName = h('input', { name: 'new-script', placeholder: 'name.lua', 'aria-label': 'New script name', spellcheck: 'false' });
  const newForm = h(
    'form.new-script',
    {
      onsubmit: (e: Event) => {
        e.preventDefault();
        void create(newName.value.trim());
      },
    },
    newName,
    h('button.secondary', { type: 'submit' }, 'New'),
  );

  const title = h('h2.script-title', null, 'No script open');
  const liveBadge = h('span.badge');
  const status = statusLine();
  const checkBtn = h('button.secondary', { type: 'button', onclick: () => void check(), title: 'Compile with the Lua compiler of the server' }, 'Check');
  const saveBtn = h('button.primary', { type: 'button', onclick: () => void save(), title: 'Save and make live (Ctrl+S)' }, 'Save');
  const findBtn = h('button.secondary', { type: 'button', onclick: () => openSearchPanel(editor.view), title: 'Search and replace (Ctrl+F)' }, 'Find');
  const revertBtn = h('button.secondary', { type: 'button', onclick: () => void revert(), title: 'Back to the saved text' }, 'Revert');
  const editorHost = h('div.editor-host');
  const pane = h(
    'section.editor-pane',
    { 'data-dirty': 'false' },
    h('div.editor-toolbar', null, h('div.title-row', null, title, liveBadge), h('div.buttons', null, checkBtn, saveBtn, findBtn, revertBtn)),
    status.el,
    editorHost,
  );

  // Side panel: Try and History.
  const tryTab = h('button.tab', { type: 'button', role: 'tab', onclick: () => showTab('try', true) }, 'Try');
  const historyTab = h('button.tab', { type: 'button', role: 'tab', onclick: () => showTab('history', true) }, 'History');
  const tryPanel = h('div.tab-panel', { role: 'tabpanel', 'data-panel': 'try' });
  const historyPanel = h('div.tab-panel', { role: 'tabpanel', 'data-panel': 'history' });
  const side = h('aside.side-pane', null, h('div.tabbar', { role: 'tablist' }, tryTab, historyTab), tryPanel, historyPanel);

  const transcript = h('textarea.mono', { name: 'transcript', rows: 12, wrap: 'off', spellcheck: 'false', 'aria-label': 'Transcript' });
  transcript.value = DEFAULT_TRANSCRIPT;
  const tryIp = h('input', { name: 'ip', value: '192.0.2.10', spellcheck: 'false' });
  const tryTls = h('input', { name: 'tls', type: 'checkbox' });
  const tryAuth = h('input', { name: 'authUser', placeholder: 'none', spellcheck: 'false' });
  const tryRun = h('button.primary', { type: 'submit' }, 'Run');
  const tryStatus = statusLine();
  const tryOut = h('div.try-output');
  const tryForm = h(
    'form.try-form',
    {
      onsubmit: (e: Event) => {
        e.preventDefault();
        void runTry();
      },
    },
    h('p.muted.small', null, 'Runs the text in the editor (saved or not) against this SMTP transcript, as ', h('code', null, 'moonpost script try'), ' does. Nothing is sent or queued.'),
    transcript,
    h(
      'div.inline-fields',
      null,
      h('label.field', null, h('span', null, 'Client IP'), tryIp),
      h('label.field', null, h('span', null, 'Auth user'), tryAuth),
      h('label.check', null, tryTls, ' TLS'),
    ),
    h('div.buttons', null, tryRun),
  );
  fill(tryPanel, tryForm, tryStatus.el, tryOut);

  const historyList = h('ul.history-list', { 'aria-label': 'Earlier versions' });
  const diffView = h('div.diff-view');
  fill(historyPanel, h('p.muted.small', null, 'Every save keeps the version it replaces. Pick one to see what changed since, and restore it in one click.'), historyList, diffView);

  const layout = h('div.scripts-layout', null, h('aside.script-side', null, h('h2', null, 'Scripts'), list, newForm, dirNote), pane, side);
  fill(el, layout);

  const editor = createEditor(editorHost, {
    check: async (text) => (loaded ? compileCheck(text) : null),
    onChange: () => setDirty(loaded !== null && editor.text() !== loaded.saved),
    onSave: () => void save(),
    onLint: (err) => {
      if (err) status.set('error', `Line ${err.line ?? '?'}: ${err.message}`);
      else if (status.el.classList.contains('status-error') && status.el.dataset.from === 'lint') status.clear();
      status.el.dataset.from = err ? 'lint' : '';
    },
  });

  function setDirty(d: boolean): void {
    dirty = d;
    pane.dataset.dirty = String(d);
    title.classList.toggle('dirty', d);
    title.title = d ? 'Unsaved changes' : '';
    revertBtn.disabled = !d;
  }

  /** The tab the user last picked; Try falls back to History for scripts it cannot run. */
  let wantTab: 'try' | 'history' = 'try';
  function showTab(tab: 'try' | 'history' = wantTab, picked = false): void {
    if (picked) wantTab = tab;
    const tryable = loaded === null || loaded.kind === 'smtpsvr';
    const t = tab === 'try' && !tryable ? 'history' : tab;
    tryTab.hidden = !tryable;
    tryTab.setAttribute('aria-selected', String(t === 'try'));
    historyTab.setAttribute('aria-selected', String(t === 'history'));
    tryPanel.hidden = t !== 'try';
    historyPanel.hidden = t !== 'history';
  }

  async function compileCheck(text: string): Promise<CompileError | null> {
    if (!loaded) return null;
    const r = await request<{ ok: boolean } & CompileError>('POST', `/api/scripts/${seg(loaded.name)}/check`, { source: text, encoding: loaded.encoding });
    return r.body.ok ? null : r.body;
  }

  function liveText(s: { kind: ScriptInfo['kind']; live?: { version: number; current: boolean } }): { text: string; cls: string; title: string } {
    if (s.kind === 'module') return { text: 'module', cls: 'badge', title: 'Loaded by require() in new script states' };
    if (!s.live || s.live.version === 0) return { text: 'not live', cls: 'badge badge-warn', title: 'No version of this script is running' };
    if (!s.live.current) return { text: `live v${s.live.version} · file differs`, cls: 'badge badge-warn', title: 'The file on disk is not the running version (edited outside the console, or it did not compile)' };
    return { text: `live v${s.live.version}`, cls: 'badge badge-ok', title: 'This file is the running version' };
  }

  function renderList(): void {
    fill(
      list,
      scripts.map((s) => {
        const live = liveText(s);
        return h(
          'li',
          null,
          h(
            'button.script-item',
            { type: 'button', class: loaded?.name === s.name ? 'active' : null, 'data-name': s.name, onclick: () => void open(s.name) },
            h('span.name', null, s.name),
            h('span.meta', null, `${KIND_LABEL[s.kind]} · ${bytes(s.size)}${s.versions ? ` · ${s.versions} earlier` : ''}`),
            h('span', { class: live.cls, title: live.title }, live.text),
          ),
        );
      }),
      scripts.length ? null : h('li.muted.small', null, 'No scripts yet.'),
    );
    for (const main of ['SMTPSVR.LUA', 'relayout.lua']) {
      if (!scripts.some((s) => s.name.toLowerCase() === main.toLowerCase())) {
        list.appendChild(h('li', null, h('button.script-item.missing', { type: 'button', onclick: () => void create(main) }, h('span.name', null, main), h('span.meta', null, 'not created yet: click to start one'))));
      }
    }
    dirNote.textContent = dir ? `Folder: ${dir}` : '';
  }

  async function refreshList(): Promise<void> {
    const r = await get<{ dir: string; scripts: ScriptInfo[] }>('/api/scripts');
    scripts = r.scripts;
    dir = r.dir;
    renderList();
  }

  async function confirmDiscard(): Promise<boolean> {
    if (!dirty) return true;
    return (await ask({ title: 'Unsaved changes', text: `${loaded?.name ?? 'The script'} has changes that are not saved. Discard them?`, ok: 'Discard', danger: true })) !== null;
  }

  async function open(name: string, line?: number): Promise<void> {
    if (loaded?.name !== name && !(await confirmDiscard())) return;
    try {
      const f = await get<ScriptFile>(`/api/scripts/${seg(name)}`);
      if (closed) return;
      loaded = { name: f.name, kind: f.kind, encoding: f.encoding, saved: f.source };
      editor.load(f.source);
      setDirty(false);
      title.textContent = f.name;
      const live = liveText(f);
      liveBadge.className = live.cls;
      liveBadge.textContent = live.text;
      liveBadge.title = live.title;
      status.set('info', `${KIND_LABEL[f.kind]} · modified ${when(f.modified)}${f.encoding === 'latin1' ? ' · Latin-1 text' : ''}`);
      nav.replace(`#/scripts/${seg(f.name)}${line ? `/${line}` : ''}`);
      renderList();
      showTab();
      fill(tryOut);
      tryStatus.clear();
      fill(diffView);
      await loadHistory();
      if (line) editor.goto(line);
    } catch (err) {
      status.set('error', (err as Error).message);
    }
  }

  async function create(name: string): Promise<void> {
    if (!/^[A-Za-z0-9_][A-Za-z0-9_.-]*\.lua$/i.test(name)) {
      status.set('error', 'A script name is letters, digits, _ . - and ends in .lua');
      return;
    }
    if (scripts.some((s) => s.name.toLowerCase() === name.toLowerCase())) return open(name);
    if (!(await confirmDiscard())) return;
    const kind: ScriptInfo['kind'] = name.toLowerCase() === 'smtpsvr.lua' ? 'smtpsvr' : name.toLowerCase() === 'relayout.lua' ? 'relayout' : 'module';
    try {
      await request('PUT', `/api/scripts/${seg(name)}`, { source: TEMPLATES[kind] });
      newName.value = '';
      setDirty(false);
      await refreshList();
      await open(name);
      status.set('ok', `Created ${name}.`);
    } catch (err) {
      status.set('error', (err as Error).message);
    }
  }

  async function check(): Promise<void> {
    if (!loaded) return;
    status.set('busy', 'Checking…');
    try {
      const err = await compileCheck(editor.text());
      editor.showError(err);
      if (err) {
        status.set('error', `Line ${err.line ?? '?'}: ${err.message}`);
        if (err.line) editor.goto(err.line);
      } else status.set('ok', 'No syntax errors.');
    } catch (e) {
      status.set('error', (e as Error).message);
    }
  }

  async function save(): Promise<void> {
    if (!loaded) return;
    const name = loaded.name;
    const text = editor.text();
    status.set('busy', 'Saving…');
    saveBtn.disabled = true;
    try {
      const r = await request<CompileError & { archived: string | null; live?: { version: number } }>('PUT', `/api/scripts/${seg(name)}`, { source: text, encoding: loaded.encoding }, [422]);
      if (r.status === 422) {
        editor.showError(r.body);
        status.set('error', `Not saved: line ${r.body.line ?? '?'}: ${r.body.message}`);
        if (r.body.line) editor.goto(r.body.line);
        return;
      }
      editor.showError(null);
      if (loaded?.name === name) loaded.saved = text;
      setDirty(loaded !== null && editor.text() !== loaded.saved);
      await refreshList();
      const info = scripts.find((s) => s.name === name);
      if (info) {
        const live = liveText(info);
        liveBadge.className = live.cls;
        liveBadge.textContent = live.text;
      }
      await loadHistory();
      if (!r.body.archived) status.set('ok', 'Saved (no changes).');
      else if (loaded?.kind === 'module') status.set('ok', 'Saved. Script states created from now on use it.');
      else status.set('ok', `Saved. Live as version ${r.body.live?.version ?? '?'} for the next connection${loaded?.kind === 'relayout' ? ' or send run' : ''}.`);
    } catch (err) {
      status.set('error', `Not saved: ${(err as Error).message}`);
    } finally {
      saveBtn.disabled = false;
    }
  }

  async function revert(): Promise<void> {
    if (!loaded || !dirty) return;
    if (!(await confirmDiscard())) return;
    editor.load(loaded.saved);
    setDirty(false);
    status.set('info', 'Back to the saved text.');
  }

  async function loadHistory(): Promise<void> {
    if (!loaded) return;
    const name = loaded.name;
    const r = await get<{ versions: HistoryEntry[] }>(`/api/scripts/${seg(name)}/history`);
    if (loaded?.name !== name) return;
    fill(
      historyList,
      r.versions.length
        ? r.versions.map((v) =>
            h(
              'li',
              null,
              h('button.history-item', { type: 'button', 'data-version': v.id, onclick: () => void showVersion(v) }, h('span', null, when(v.saved)), h('span.muted', null, bytes(v.size))),
            ),
          )
        : h('li.muted.small', null, 'No earlier versions yet.'),
    );
  }

  async function showVersion(v: HistoryEntry): Promise<void> {
    if (!loaded) return;
    const name = loaded.name;
    for (const b of historyList.querySelectorAll('.history-item')) b.classList.toggle('active', (b as HTMLElement).dataset.version === v.id);
    try {
      const r = await get<{ diff: string; source: string }>(`/api/scripts/${seg(name)}/history/${seg(v.id)}`);
      // The file names (---/+++) come before the first hunk; after it, "--- x" is a removed "-- x".
      const all = r.diff.split('\n').filter((l) => !/^(Index:|====)/.test(l));
      const firstHunk = all.findIndex((l) => l.startsWith('@@'));
      const heads = firstHunk < 0 ? all : all.slice(0, firstHunk);
      const body = firstHunk < 0 ? [] : all.slice(firstHunk);
      while (body.length && body[body.length - 1] === '') body.pop();
      const kind = (l: string): string => (l.startsWith('@@') ? 'hunk' : l.startsWith('+') ? 'add' : l.startsWith('-') ? 'del' : 'ctx');
      const changed = body.some((l) => /^[+-]/.test(l));
      fill(
        diffView,
        h(
          'div.diff-head',
          null,
          h('div', null, h('strong', null, `Version of ${when(v.saved)}`), h('div.muted.small', null, '− lines of that version, + lines of the saved file now')),
          h('button.primary', { type: 'button', onclick: () => void restore(v) }, 'Restore this version'),
        ),
        changed
          ? h(
              'pre.diff',
              { 'aria-label': 'Differences' },
              heads.filter(Boolean).map((l) => h('span.file', null, `${l}\n`)),
              body.map((l) => h('span', { class: kind(l) }, `${l}\n`)),
            )
          : h('p.muted', null, 'Same text as the saved file.'),
      );
    } catch (err) {
      fill(diffView, h('p.form-error', null, (err as Error).message));
    }
  }

  async function restore(v: HistoryEntry): Promise<void> {
    if (!loaded) return;
    if (!(await confirmDiscard())) return;
    const name = loaded.name;
    status.set('busy', 'Restoring…');
    try {
      const r = await request<CompileError & { live?: { version: number } }>('POST', `/api/scripts/${seg(name)}/history/${seg(v.id)}/restore`, {}, [422]);
      if (r.status === 422) {
        status.set('error', `Not restored: that version does not compile: line ${r.body.line ?? '?'}: ${r.body.message}`);
        return;
      }
      setDirty(false);
      await refreshList();
      await open(name);
      status.set('ok', `Restored the version of ${when(v.saved)}${r.body.live ? `: live as version ${r.body.live.version}` : ''}.`);
    } catch (err) {
      status.set('error', (err as Error).message);
    }
  }

  async function runTry(): Promise<void> {
    if (!loaded || loaded.kind !== 'smtpsvr') return;
    tryRun.disabled = true;
    tryStatus.set('busy', 'Running…');
    fill(tryOut);
    try {
      const body: Record<string, unknown> = { transcript: transcript.value, source: editor.text(), encoding: loaded.encoding, tls: tryTls.checked };
      if (tryIp.value.trim()) body.ip = tryIp.value.trim();
      if (tryAuth.value.trim()) body.authUser = tryAuth.value.trim();
      const r = await request<TryResult & CompileError>('POST', `/api/scripts/${seg(loaded.name)}/try`, body, [400, 422]);
      if (r.status === 422) {
        editor.showError(r.body);
        tryStatus.set('error', `The script does not compile: line ${r.body.line ?? '?'}: ${r.body.message}`);
        return;
      }
      if (r.status === 400) {
        tryStatus.set('error', r.body.error);
        return;
      }
      const t = r.body;
      tryStatus.set('ok', `${t.hooks.length} hook call${t.hooks.length === 1 ? '' : 's'}, ${t.prints.length} print line${t.prints.length === 1 ? '' : 's'}${t.queued.length ? `, ${t.queued.length} queued` : ''}.`);
      const section = (titleText: string, items: string[], cls: string) =>
        items.length ? h('section.try-section', null, h('h3', null, `${titleText} (${items.length})`), h('ol', { class: `try-list ${cls}` }, items.map((i) => h('li', null, i)))) : null;
      fill(
        tryOut,
        section('Hook calls', t.hooks, 'hooks'),
        section('print output', t.prints, 'prints'),
        section('Queued', t.queued, 'queued'),
        section('Warnings', t.warnings, 'warnings'),
        h(
          'details.try-transcript',
          { open: true },
          h('summary', null, 'Session transcript'),
          h(
            'pre.transcript',
            null,
            t.output
              .split('\n')
              .filter((l) => l !== '')
              .map((l) => h('span', { class: `t-${(/^([A-Z]):/.exec(l)?.[1] ?? 'x').toLowerCase()}` }, `${l}\n`)),
          ),
        ),
      );
    } catch (err) {
      tryStatus.set('error', err instanceof ApiError ? err.message : String(err));
    } finally {
      tryRun.disabled = false;
    }
  }

  setDirty(false);
  showTab();
  void (async () => {
    try {
      await refreshList();
      const want = params[0] ? scripts.find((s) => s.name.toLowerCase() === params[0].toLowerCase()) : scripts[0];
      if (want) await open(want.name, params[1] ? Number(params[1]) || undefined : undefined);
      else status.set('info', 'No script to edit yet: create SMTPSVR.LUA, relayout.lua or a module on the left.');
    } catch (err) {
      status.set('error', (err as Error).message);
    }
  })();

  return {
    cleanup() {
      closed = true;
      editor.destroy();
    },
    canLeave: confirmDiscard,
  };
};
