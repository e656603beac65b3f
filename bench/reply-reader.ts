/** Reads SMTP replies for the bench's own load clients (the probe and the MIME load). */
import type { Socket } from 'node:net';

/** Complete SMTP replies from a socket; next() waits for one (its code), failing on close or after `timeoutMs`. */
export class ReplyReader {
  private buf = '';
  private ready: number[] = [];
  private waiter: ((r: number | Error) => void) | null = null;
  private ended: Error | null = null;
  constructor(
    sock: Socket,
    private readonly timeoutMs: number,
  ) {
    sock.setEncoding('latin1');
    sock.on('data', (s: string) => {
      this.buf += s;
      let i: number;
      while ((i = this.buf.indexOf('\n')) >= 0) {
        const line = this.buf.slice(0, i);
        this.buf = this.buf.slice(i + 1);
        if (/^\d{3}( |\r?$)/.test(line)) this.push(Number(line.slice(0, 3)));
      }
    });
    const end = (e: Error): void => {
      this.ended ??= e;
      this.push(this.ended);
    };
    sock.on('error', (e) => end(e));
    sock.on('close', () => end(new Error('connection closed')));
  }
  private push(r: number | Error): void {
    const w = this.waiter;
    if (w) {
      this.waiter = null;
      w(r);
    } else if (typeof r === 'number') this.ready.push(r);
  }
  next(): Promise<number> {
    const r = this.ready.shift();
    if (r !== undefined) return Promise.resolve(r);
    if (this.ended) return Promise.reject(this.ended);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => {
        this.waiter = null;
        reject(new Error(`no reply within ${this.timeoutMs / 1000} s`));
      }, this.timeoutMs);
      this.waiter = (x) => {
        clearTimeout(t);
        if (typeof x === 'number') resolve(x);
        else reject(x);
      };
    });
  }
}
