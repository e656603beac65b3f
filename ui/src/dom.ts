/** Small DOM helpers: the console has no framework, only elements built from data. */

type Child = Node | string | number | null | undefined | false | Child[];
type Attrs = Record<string, string | number | boolean | null | undefined | EventListener>;

/** `h('button.primary', { onclick }, 'Save')`: tag with optional `.class` and `#id` parts. */
export function h<K extends keyof HTMLElementTagNameMap>(spec: K | `${K}${'.' | '#'}${string}`, attrs?: Attrs | null, ...children: Child[]): HTMLElementTagNameMap[K] {
  const m = /^([a-z0-9]+)((?:[.#][\w-]+)*)$/.exec(spec);
  if (!m) throw new Error(`bad element spec ${spec}`);
  const el = document.createElement(m[1] as K);
  for (const part of m[2].match(/[.#][\w-]+/g) ?? []) {
    if (part[0] === '.') el.classList.add(part.slice(1));
    else el.id = part.slice(1);
  }
  for (const [k, v] of Object.entries(attrs ?? {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = `${el.className} ${String(v)}`.trim();
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

export function append(el: Node, children: Child[]): void {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.appendChild(typeof c === 'string' || typeof c === 'number' ? document.createTextNode(String(c)) : c);
  }
}

/** Replaces an element's children. */
export function fill(el: Element, ...children: Child[]): void {
  el.replaceChildren();
  append(el, children);
}

/** `3 s`, `4 min`, `2 h 5 min`, `3 d 4 h`. */
export function duration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
}

export function bytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}

/** Local date and time, seconds included, without the year when it is this year. */
export function when(iso: string | undefined): string {
  if (!iso) return '';
  const d = new Date(iso);
  const sameDay = d.toDateString() === new Date().toDateString();
  const time = d.toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false });
  if (sameDay) return time;
  return `${d.toLocaleDateString(undefined, { month: 'short', day: 'numeric', year: d.getFullYear() === new Date().getFullYear() ? undefined : 'numeric' })} ${time}`;
}

/** A status line that says what just happened (role=status for screen readers). */
export function statusLine(): { el: HTMLElement; set(kind: 'ok' | 'error' | 'info' | 'busy', text: string): void; clear(): void } {
  const el = h('div.status', { role: 'status', 'aria-live': 'polite' });
  return {
    el,
    set(kind, text) {
      el.className = `status status-${kind}`;
      el.textContent = text;
    },
    clear() {
      el.className = 'status';
      el.textContent = '';
    },
  };
}

/**
 * A modal question (the native <dialog>): resolves to the text typed (or '' without an input
 * field) on OK, null on Cancel or Escape.
 */
export function ask(opts: { title: string; text: string; ok: string; danger?: boolean; input?: { label: string; value?: string; placeholder?: string } }): Promise<string | null> {
  return new Promise((resolve) => {
    const input = opts.input ? h('input', { type: 'text', name: 'answer', value: opts.input.value ?? '', placeholder: opts.input.placeholder ?? '' }) : null;
    const form = h(
      'form',
      { method: 'dialog' },
      h('h2', null, opts.title),
      h('p', null, opts.text),
      input ? h('label.field', null, h('span', null, opts.input!.label), input) : null,
      h('div.dialog-buttons', null, h('button', { type: 'button', value: 'cancel', class: 'secondary', onclick: () => dialog.close('cancel') }, 'Cancel'), h('button', { type: 'submit', value: 'ok', class: opts.danger ? 'danger' : 'primary' }, opts.ok)),
    );
    const dialog = h('dialog.modal', { 'aria-label': opts.title }, form);
    dialog.addEventListener('close', () => {
      const ok = dialog.returnValue === 'ok';
      dialog.remove();
      resolve(ok ? (input?.value ?? '') : null);
    });
    document.body.appendChild(dialog);
    dialog.showModal();
    (input ?? dialog.querySelector<HTMLButtonElement>('button[type=submit]'))?.focus();
  });
}
