import { request, type Session } from '../api.js';
import { h } from '../dom.js';

/** The login form: POST /api/login; 401 wrong name or password, 429 too many failures. */
export function loginPage(root: HTMLElement, message: string | undefined, done: (s: Session) => void): void {
  const user = h('input', { name: 'user', autocomplete: 'username', required: true, autofocus: true, spellcheck: 'false', autocapitalize: 'none' });
  const password = h('input', { name: 'password', type: 'password', autocomplete: 'current-password', required: true });
  const error = h('p.form-error', { role: 'alert', hidden: !message }, message ?? '');
  const button = h('button.primary', { type: 'submit' }, 'Log in');
  const form = h(
    'form.login',
    {
      onsubmit: (e: Event) => {
        e.preventDefault();
        void submit();
      },
    },
    h('div.login-brand', null, h('img', { src: '/assets/favicon.svg', alt: '', width: 40, height: 40 }), h('div', null, h('h1', null, 'moonpost'), h('p.muted', null, 'Mail server console'))),
    h('label.field', null, h('span', null, 'User'), user),
    h('label.field', null, h('span', null, 'Password'), password),
    error,
    button,
  );
  async function submit(): Promise<void> {
    button.disabled = true;
    error.hidden = true;
    try {
      const r = await request<Session & { error?: string }>('POST', '/api/login', { user: user.value, password: password.value }, [401, 429, 400]);
      if (r.status === 200) {
        done(r.body);
        return;
      }
      error.textContent = r.status === 400 ? 'Enter a user name and a password.' : (r.body.error ?? `login failed (${r.status})`);
      error.hidden = false;
      password.select();
    } catch (err) {
      error.textContent = (err as Error).message;
      error.hidden = false;
    } finally {
      button.disabled = false;
    }
  }
  root.appendChild(h('div.login-wrap', null, form));
  user.focus();
}
