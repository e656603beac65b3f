import { ApiError, get, request, setCsrf, whenUnauthorized, type Session } from './api.js';
import { fill, h } from './dom.js';
import { dashboardPage } from './pages/dashboard.js';
import { livePage } from './pages/live.js';
import { loginPage } from './pages/login.js';
import { queuePage } from './pages/queue.js';
import { scriptsPage } from './pages/scripts.js';

/**
 * The moonpost admin console: a single page with hash routes (#/dashboard, #/scripts/NAME,
 * #/queue/ID, #/live). A page is a function that fills its element and returns a cleanup
 * (timers, event streams) and, optionally, a guard asked before leaving (unsaved changes).
 */
export interface Page {
  cleanup?(): void;
  /** False keeps the page (the user chose to stay). */
  canLeave?(): Promise<boolean>;
}
export type PageFn = (el: HTMLElement, params: string[], nav: Nav) => Page;

export interface Nav {
  user: string;
  /** Changes the hash without re-rendering the page (it already shows that state). */
  replace(hash: string): void;
  go(hash: string): void;
}

const PAGES: { path: string; title: string; fn: PageFn }[] = [
  { path: 'dashboard', title: 'Dashboard', fn: dashboardPage },
  { path: 'scripts', title: 'Scripts', fn: scriptsPage },
  { path: 'queue', title: 'Queue', fn: queuePage },
  { path: 'live', title: 'Live', fn: livePage },
];

const root = document.getElementById('app')!;
let session: Session | null = null;
let current: { path: string; page: Page; key: string } | null = null;
let suppress: string | null = null;
let lastHash = location.hash;

function parseHash(hash = location.hash): { path: string; params: string[]; key: string } {
  const parts = hash.replace(/^#\/?/, '').split('/').filter(Boolean).map(decodeURIComponent);
  const first = parts[0] ?? 'dashboard';
  const path = PAGES.some((p) => p.path === first) ? first : 'dashboard';
  const params = parts.slice(1);
  return { path, params, key: [path, ...params].join('/') };
}

function leaveCurrent(): void {
  current?.page.cleanup?.();
  current = null;
}

async function logout(): Promise<void> {
  if (current?.page.canLeave && !(await current.page.canLeave())) return;
  await request('POST', '/api/logout', {}).catch(() => undefined);
  showLogin();
}

function showLogin(message?: string): void {
  leaveCurrent();
  session = null;
  setCsrf(null);
  document.title = 'Log in · moonpost';
  fill(root);
  loginPage(root, message, (s) => {
    session = s;
    setCsrf(s.csrfToken ?? null);
    if (!location.hash || location.hash === '#/login') location.hash = '#/dashboard';
    render(true);
  });
}

function shell(active: string): HTMLElement {
  const nav = h(
    'nav.tabs',
    { 'aria-label': 'Pages' },
    PAGES.map((p) => h('a', { href: `#/${p.path}`, class: p.path === active ? 'active' : null, 'aria-current': p.path === active ? 'page' : null, 'data-page': p.path }, p.title)),
  );
  const main = h('main#page', { 'data-page': active });
  fill(
    root,
    h(
      'header.topbar',
      null,
      h('a.brand', { href: '#/dashboard' }, h('img', { src: '/assets/favicon.svg', alt: '', width: 22, height: 22 }), 'moonpost'),
      nav,
      h('div.who', null, h('span.user', { title: 'Logged in as' }, session?.user ?? ''), h('button.link', { type: 'button', onclick: () => void logout() }, 'Log out')),
    ),
    main,
  );
  return main;
}

/** Shows the page for the hash; `force` re-renders even when the same page is up. */
function render(force = false): void {
  if (!session) return showLogin();
  const { path, params, key } = parseHash();
  if (!force && current && current.key === key) return;
  const def = PAGES.find((p) => p.path === path)!;
  leaveCurrent();
  document.title = `${def.title} · moonpost`;
  const main = shell(path);
  const nav: Nav = {
    user: session.user,
    replace(hash) {
      if (location.hash === hash) return;
      suppress = hash;
      location.hash = hash;
      lastHash = hash;
      if (current) current.key = parseHash(hash).key;
    },
    go(hash) {
      location.hash = hash;
    },
  };
  current = { path, key, page: def.fn(main, params, nav) };
}

window.addEventListener('hashchange', () => {
  const hash = location.hash;
  if (suppress === hash) {
    suppress = null;
    lastHash = hash;
    return;
  }
  if (current && parseHash().key === current.key) {
    lastHash = hash;
    return;
  }
  const guard = current?.page.canLeave;
  if (guard) {
    void guard().then((ok) => {
      if (ok) {
        lastHash = location.hash;
        render();
      } else {
        suppress = lastHash;
        location.hash = lastHash;
      }
    });
    return;
  }
  lastHash = hash;
  render();
});

window.addEventListener('beforeunload', (e) => {
  if (current?.page.canLeave && document.querySelector('[data-dirty="true"]')) e.preventDefault();
});

whenUnauthorized(() => showLogin('Your session has ended: please log in again.'));

async function start(): Promise<void> {
  try {
    session = await get<Session>('/api/session');
    setCsrf(session.csrfToken ?? null);
    render(true);
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) showLogin();
    else fill(root, h('p.boot.error', null, `The console cannot reach the server: ${(err as Error).message}`));
  }
}

void start();
