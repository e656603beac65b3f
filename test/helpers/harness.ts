import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { validateConfig } from '../../src/config/load.js';
import type { ConfigInput } from '../../src/config/schema.js';
import { MoonpostServer } from '../../src/server.js';

export interface Harness {
  server: MoonpostServer;
  port: number;
  /** Ports of every service, by service id. */
  ports: Map<number, number>;
  dataDir: string;
  /** Port of the admin API when the config has an enabled `admin` section (port 0 = ephemeral). */
  adminPort: number | null;
  stop(): Promise<void>;
  /** Files delivered to `<domain>/<local-part>` (full contents), oldest first. */
  mailbox(mailbox: string): Promise<string[]>;
  /** Waits until local delivery has nothing in hand. */
  settle(): Promise<void>;
}

export type HarnessOptions = Partial<Omit<ConfigInput, 'services'>> & { services?: ConfigInput['services'] };

/** A real moonpost on an ephemeral loopback port with its own temporary data folder. */
export async function startServer(opts: HarnessOptions = {}, dataDir?: string): Promise<Harness> {
  const dir = dataDir ?? (await mkdtemp(join(tmpdir(), 'moonpost-test-')));
  const input: ConfigInput = {
    hostname: 'mx.test',
    domains: [{ name: 'localhost', catchAll: true }],
    relay: { networks: ['127.0.0.1/32'], mode: 'ip' },
    ...opts,
    services: opts.services ?? [{ id: 0, name: 'smtp', listen: '127.0.0.1', port: 0 }],
    dataDir: dir,
  };
  const config = validateConfig(input, 'test');
  const log = pino({ level: process.env.MOONPOST_TEST_LOG ?? 'silent' });
  const server = new MoonpostServer(config, log);
  const bound = await server.start();
  const ports = new Map(bound.map((b) => [b.id, b.port]));
  return {
    server,
    port: bound[0].port,
    ports,
    dataDir: dir,
    adminPort: server.adminAddress?.port ?? null,
    async stop() {
      await server.stop(2000);
      if (!dataDir) await rm(dir, { recursive: true, force: true });
    },
    async mailbox(mailbox: string) {
      await server.dispatcher.idle();
      const folder = join(dir, 'mail', mailbox, 'new');
      let names: string[];
      try {
        names = await readdir(folder);
      } catch {
        return [];
      }
      // Maildir names carry the queue id, which sorts by time of acceptance.
      const id = (n: string): string => /Q([0-9A-Z]+)\./.exec(n)?.[1] ?? n;
      names.sort((a, b) => (id(a) < id(b) ? -1 : id(a) > id(b) ? 1 : 0));
      return Promise.all(names.map((n) => readFile(join(folder, n), 'latin1')));
    },
    settle: () => server.dispatcher.idle(),
  };
}
