/** Postfix's smtp-sink on a loopback port (as root with `-u nobody`), counting delivered messages (-c). */
import { spawn } from 'node:child_process';
import { waitForGreeting } from './proc.js';

export interface SinkInstance {
  port: number;
  pid: number;
  /** Messages received so far (the -c counter as last printed). */
  received(): number;
  /** Stops the sink (SIGTERM, so it flushes its output) and returns the messages it received (-c counter). */
  stop(): Promise<number>;
}

export async function startSink(bin: string, port: number): Promise<SinkInstance> {
  const user = process.getuid?.() === 0 ? ['-u', 'nobody'] : [];
  const child = spawn(bin, [...user, '-c', `127.0.0.1:${port}`, '1024'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let max = 0;
  let rest = '';
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (s: string) => {
    // Lines such as "sess=0 quit=0 mesg=12\r".
    const text = rest + s;
    for (const m of text.matchAll(/mesg=(\d+)/g)) max = Math.max(max, Number(m[1]));
    rest = text.slice(-40);
  });
  let err = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (s: string) => (err = (err + s).slice(-2048)));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const stop = async (): Promise<number> => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(t);
    }
    return max;
  };
  if (!(await waitForGreeting(port, 10_000))) {
    await stop();
    throw new Error(`smtp-sink did not answer on 127.0.0.1:${port}: ${err}`);
  }
  return { port, pid: child.pid as number, received: () => max, stop };
}
