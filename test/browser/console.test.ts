import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { startScriptServer, type ScriptHarness } from '../helpers/script-server.js';
import { adminSection, ADMIN_PASSWORD, ADMIN_USER } from '../helpers/admin-client.js';
import { openSession } from '../helpers/smtp-client.js';
import { startScriptedServer, type ScriptedServer } from '../helpers/scripted-smtp-server.js';
import { mail, queueMail, quickDelivery, smarthost, waitFor } from '../helpers/relay-fixtures.js';

// The admin console in a real headless Chromium (Debian's chromium, driven by playwright-core):
// log in, edit SMTPSVR.LUA with a syntax error marked at its line, save, see an SMTP refusal
// on the live page, restore; on the queue page retry and delete a message a relay defers.
// Screenshots of every page, wide and narrow, go to artifacts/screenshots/.

const CHROMIUM = '/usr/bin/chromium';
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const SHOTS = join(ROOT, 'artifacts', 'screenshots');
const WIDE = { width: 1280, height: 800 };
const NARROW = { width: 400, height: 800 };

const V1 = `-- Accept every sender.
function DoMAILFROM(data, mailfrom, params, spf, authSender)
  return params, ""
end
`;
const V2 = `-- Refuse one domain.
function DoMAILFROM(data, mailfrom, params, spf, authSender)
  print("checking " .. mailfrom)
  if mailfrom:match("@spam%.example$") then return params, "550 5.7.1 Go away" end
  return params, ""
end
`;

const missing = !existsSync(CHROMIUM);
// On CI chromium is installed by .ci/run: a missing browser there is a failure, not a skip.
const skip = missing && !process.env.CI ? `no ${CHROMIUM} (apt-get install chromium)` : false;

let h: ScriptHarness;
let peer: ScriptedServer;
let browser: Browser;
let context: BrowserContext;
let page: Page;
let base: string;
const consoleErrors: string[] = [];

/** The window as it is; narrow ones as the whole page, to see what comes below the fold. */
async function shot(p: Page, name: string, fullPage = false): Promise<void> {
  await p.screenshot({ path: join(SHOTS, `${name}.png`), fullPage });
}

/** The 1-based editor line holding the error mark, and the line number its gutter shows. */
async function markedLine(p: Page): Promise<{ index: number; gutter: string }> {
  const mark = p.locator('.cm-content .cm-lintRange-error').first();
  await mark.waitFor();
  return p.evaluate(() => {
    const el = document.querySelector('.cm-content .cm-lintRange-error')!;
    const line = el.closest('.cm-line')!;
    const index = [...document.querySelectorAll('.cm-content > .cm-line')].indexOf(line) + 1;
    // The line-number gutter element level with the marked line.
    const top = line.getBoundingClientRect().top;
    const gutter = [...document.querySelectorAll('.cm-lineNumbers .cm-gutterElement')].find((g) => Math.abs(g.getBoundingClientRect().top - top) < 3);
    return { index, gutter: gutter?.textContent ?? '' };
  });
}

async function openPage(name: 'Dashboard' | 'Scripts' | 'Queue' | 'Live'): Promise<void> {
  await page.getByRole('navigation', { name: 'Pages' }).getByRole('link', { name, exact: true }).click();
  await page.locator(`main#page[data-page="${name.toLowerCase()}"]`).waitFor();
}

before(async () => {
  if (skip) return;
  assert.ok(!missing, `${CHROMIUM} is missing: apt-get install chromium`);
  // The server serves dist/ui (npm run build); an older build than the sources would test old code.
  const built = join(ROOT, 'dist', 'ui', 'assets', 'app.js');
  assert.ok(existsSync(built), 'the console is not built: npm run build (or node ui/build.mjs)');
  const sources = [join(ROOT, 'ui', 'style.css'), join(ROOT, 'ui', 'index.html'), ...readdirSync(join(ROOT, 'ui', 'src'), { recursive: true, encoding: 'utf8' }).map((f) => join(ROOT, 'ui', 'src', f))];
  const stale = sources.filter((f) => statSync(f).mtimeMs > statSync(built).mtimeMs);
  assert.deepEqual(stale, [], 'dist/ui is older than these sources: npm run build (or node ui/build.mjs)');
  await mkdir(SHOTS, { recursive: true });
  peer = await startScriptedServer({ hostname: 'peer.example', respond: (cmd) => (cmd.startsWith('RCPT') ? '451 4.7.1 Try again later' : undefined) });
  h = await startScriptServer(V1, { admin: await adminSection(), senders: [smarthost(0, peer.port)], delivery: quickDelivery(3600) });
  base = `http://127.0.0.1:${h.adminPort}`;
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  context = await browser.newContext({ viewport: WIDE });
  context.setDefaultTimeout(10_000);
  page = await context.newPage();
  page.on('pageerror', (err) => consoleErrors.push(`pageerror: ${err.message}`));
  page.on('console', (m) => {
    // The browser logs every 4xx answer (401 before logging in, 422 for the refused save): expected here.
    if (m.type() === 'error' && !/^Failed to load resource: the server responded with a status of 4\d\d/.test(m.text())) consoleErrors.push(m.text());
  });
});

after(async () => {
  await browser?.close();
  await h?.stop();
  await peer?.close();
});

test('login: a wrong password is refused in place, the right one opens the dashboard', { skip }, async () => {
  await page.goto(base + '/');
  await page.getByLabel('User').waitFor();
  await shot(page, 'login-1280');
  await page.getByLabel('User').fill(ADMIN_USER);
  await page.getByLabel('Password').fill('not the password');
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.getByRole('alert').filter({ hasText: 'wrong user name or password' }).waitFor();
  await page.getByLabel('Password').fill(ADMIN_PASSWORD);
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.locator('main#page[data-page="dashboard"]').waitFor();
  await page.locator('.chart-panel svg.chart').first().waitFor();
  assert.equal(await page.locator('.topbar .user').textContent(), ADMIN_USER);
  const cookies = await context.cookies();
  const session = cookies.find((c) => c.name === 'moonpost_session');
  assert.ok(session?.httpOnly, 'the session cookie is HttpOnly');
  assert.equal(session?.sameSite, 'Strict');
});

test('scripts: a syntax error is marked at its line, Save refuses it; fixed, saved and live', { skip }, async () => {
  await openPage('Scripts');
  await page.locator('.script-item[data-name="SMTPSVR.LUA"]').click();
  await page.locator('.cm-content').filter({ hasText: 'Accept every sender' }).waitFor();
  // Paste the new version over the old one, then break line 3 by typing at its start.
  await page.locator('.cm-content').click();
  await page.keyboard.press('Control+A');
  await page.keyboard.insertText(V2);
  await page.locator('.script-title.dirty').waitFor();
  await page.keyboard.press('Control+Home');
  await page.keyboard.press('ArrowDown');
  await page.keyboard.press('ArrowDown');
  await page.keyboard.press('Home');
  await page.keyboard.type('local = ');
  await page.getByRole('button', { name: 'Check', exact: true }).click();
  const status = page.locator('.editor-pane .status');
  await status.filter({ hasText: /^Line 3: / }).waitFor();
  assert.deepEqual(await markedLine(page), { index: 3, gutter: '3' });
  await page.locator('.cm-gutter-lint .cm-lint-marker-error').waitFor();
  await shot(page, 'scripts-error-1280');

  await page.getByRole('button', { name: 'Save', exact: true }).click();
  await status.filter({ hasText: /^Not saved: line 3: / }).waitFor();
  assert.equal(await readFile(join(h.dataDir, 'scripts', 'SMTPSVR.LUA'), 'utf8'), V1, 'a script that does not compile is not saved');

  // Fix it: select the typed text at the start of line 3 and delete it.
  await page.locator('.cm-content').click();
  await page.keyboard.press('Control+Home');
  await page.keyboard.press('ArrowDown');
  await page.keyboard.press('ArrowDown');
  await page.keyboard.press('Home');
  for (let i = 0; i < 'local = '.length; i++) await page.keyboard.press('Shift+ArrowRight');
  await page.keyboard.press('Delete');
  await page.getByRole('button', { name: 'Check', exact: true }).click();
  await status.filter({ hasText: 'No syntax errors.' }).waitFor();
  assert.equal(await page.locator('.cm-content .cm-lintRange-error').count(), 0, 'the mark is gone');
  await page.getByRole('button', { name: 'Save', exact: true }).click();
  await status.filter({ hasText: /^Saved\. Live as version \d+/ }).waitFor();
  assert.equal(await readFile(join(h.dataDir, 'scripts', 'SMTPSVR.LUA'), 'utf8'), V2);
  await page.locator('.script-title:not(.dirty)').waitFor();
  await page.getByRole('tab', { name: 'History' }).click();
  await page.locator('.history-item').first().waitFor();
  assert.equal(await page.locator('.history-item').count(), 1, 'the replaced version is in the history');
});

test('try: the unsaved text runs a transcript and shows each hook call and print line', { skip }, async () => {
  await page.getByRole('tab', { name: 'Try' }).click();
  await page.getByLabel('Transcript').fill('EHLO client.example\nMAIL FROM:<a@spam.example>\nQUIT\n');
  await page.getByRole('button', { name: 'Run', exact: true }).click();
  await page.locator('.try-list.hooks li').first().waitFor();
  assert.match((await page.locator('.try-list.hooks li').first().textContent()) ?? '', /^DoMAILFROM\("<a@spam\.example>".*"550 5\.7\.1 Go away"$/);
  assert.equal(await page.locator('.try-list.prints li').first().textContent(), 'checking a@spam.example');
  await page.locator('.transcript .t-s', { hasText: 'S: 550 5.7.1 Go away' }).waitFor();
  await shot(page, 'scripts-1280');
});

test('live: a mail the new script refuses shows up with its hook call and outcome', { skip }, async () => {
  await openPage('Live');
  await page.locator('.stream-state[data-state="open"]').waitFor();
  const c = await openSession(h.port);
  const r = await c.cmd('MAIL FROM:<mallory@spam.example>');
  assert.equal(r.code, 550, r.raw);
  await c.cmd('QUIT');
  c.close();
  const session = page.locator('article.session').filter({ hasText: 'mallory@spam.example' });
  await session.locator('.session-outcome', { hasText: 'MAIL refused 550' }).waitFor();
  await session.locator('.row.cmd.refused', { hasText: '550 5.7.1 Go away' }).waitFor();
  await session.locator('.row.hook .hook-name', { hasText: 'DoMAILFROM' }).waitFor();
  assert.match((await session.locator('.row.hook .hook-call').first().textContent()) ?? '', /"550 5\.7\.1 Go away"/);
  await session.locator('.session-state.closed').waitFor();
  await shot(page, 'live-1280');
});

test('history: the diff of the old version, restored in one click', { skip }, async () => {
  await openPage('Scripts');
  await page.getByRole('tab', { name: 'History' }).click();
  await page.locator('.history-item').first().click();
  await page.locator('pre.diff .del', { hasText: '-- Accept every sender.' }).waitFor();
  await page.locator('pre.diff .add', { hasText: 'Go away' }).waitFor();
  await shot(page, 'scripts-history-1280');
  await page.getByRole('button', { name: 'Restore this version' }).click();
  await page.locator('.editor-pane .status', { hasText: /^Restored the version/ }).waitFor();
  await page.locator('.cm-content').filter({ hasText: 'Accept every sender' }).waitFor();
  assert.equal(await readFile(join(h.dataDir, 'scripts', 'SMTPSVR.LUA'), 'utf8'), V1);
  const c = await openSession(h.port);
  assert.equal((await c.cmd('MAIL FROM:<mallory@spam.example>')).code, 250, 'the restored script is live for the next connection');
  c.close();
});

test('queue: a message the relay defers (451) is retried, then deleted', { skip }, async () => {
  const id = await queueMail(h.port, 'alice@localhost', ['bob@remote.test'], mail('deferred by the relay', { from: 'alice@localhost', to: 'bob@remote.test' }));
  await waitFor('the first attempt', () => (h.server.queue.get(id)?.recipients[0].attempts ?? 0) >= 1);
  await openPage('Queue');
  const row = page.locator(`.queue-table tr[data-id="${id}"]`);
  await row.locator('.badge', { hasText: 'deferred' }).waitFor();
  await page.locator('.card[data-state="deferred"] .card-value', { hasText: '1' }).waitFor();
  await page.locator('.domain-table td', { hasText: 'remote.test' }).waitFor();

  // Filters: a domain that matches nothing, then the message's.
  await page.getByLabel('Domain').fill('nowhere.example');
  await page.getByRole('button', { name: 'Filter', exact: true }).click();
  await page.locator('.queue-table td.empty').waitFor();
  await page.getByLabel('Domain').fill('remote.test');
  await page.getByRole('button', { name: 'Filter', exact: true }).click();
  await row.click();

  const detail = page.locator('.queue-detail');
  const rcpt = detail.locator('[data-address="bob@remote.test"]');
  await rcpt.locator('.reply', { hasText: '451 4.7.1 Try again later' }).waitFor();
  assert.equal(await rcpt.locator('.attempts').textContent(), '1');
  await shot(page, 'queue-1280');

  const sessions = peer.sessions.length;
  await detail.getByRole('button', { name: 'Retry now' }).click();
  await rcpt.locator('.attempts', { hasText: '2' }).waitFor();
  assert.ok(peer.sessions.length > sessions, 'the retry reached the relay');
  assert.equal(h.server.queue.get(id)?.recipients[0].attempts, 2);

  await detail.getByRole('button', { name: 'Delete' }).click();
  const dialog = page.getByRole('dialog');
  await dialog.getByText('the sender gets no bounce').waitFor();
  await shot(page, 'queue-delete-1280');
  await dialog.getByRole('button', { name: 'Delete' }).click();
  await page.locator('.queue-main .status', { hasText: `${id} deleted.` }).waitFor();
  await row.waitFor({ state: 'detached' });
  assert.equal(h.server.queue.get(id), undefined, 'the message left the queue');
});

test('every page at 1280x800 and at 400 px wide; no script errors in the page', { skip }, async () => {
  // Something to show: a message waiting, and a script error on the live page.
  await queueMail(h.port, 'carol@localhost', ['dave@remote.test', 'erin@other.test'], mail('waiting', { from: 'carol@localhost' }));
  await h.setScript('function DoMAILFROM(data, mailfrom, params)\n  local t = nil\n  return t.x\nend\n');
  const c = await openSession(h.port);
  await c.cmd('MAIL FROM:<x@example.com>');
  c.close();

  await openPage('Dashboard');
  await page.locator('.dash-cards .card').first().waitFor();
  await shot(page, 'dashboard-1280');
  await openPage('Live');
  await page.locator('.script-error a', { hasText: 'SMTPSVR.LUA:3' }).waitFor();
  await shot(page, 'live-errors-1280');

  await page.setViewportSize(NARROW);
  for (const name of ['Dashboard', 'Scripts', 'Queue', 'Live'] as const) {
    await openPage(name);
    if (name === 'Scripts') await page.locator('.cm-content .cm-line').first().waitFor();
    if (name === 'Queue') await page.locator('.queue-table tbody tr[data-id]').first().waitFor();
    if (name === 'Dashboard') await page.locator('.chart-panel svg.chart').first().waitFor();
    if (name === 'Live') await page.locator('article.session').first().waitFor();
    // Nothing may stick out sideways on a narrow screen.
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
    assert.ok(overflow <= 0, `${name} is ${overflow} px wider than a 400 px window`);
    await shot(page, `${name.toLowerCase()}-400`, true);
  }
  const fresh = await browser.newContext({ viewport: NARROW });
  const login = await fresh.newPage();
  await login.goto(base + '/');
  await login.getByLabel('User').waitFor();
  await shot(login, 'login-400');
  await fresh.close();
  await page.setViewportSize(WIDE);

  // Logging out ends the session on the server too.
  await page.getByRole('button', { name: 'Log out' }).click();
  await page.getByLabel('User').waitFor();
  const r = await page.request.get(base + '/api/session');
  assert.equal(r.status(), 401);
  assert.deepEqual(consoleErrors, []);
});
