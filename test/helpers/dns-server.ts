import { createSocket, type Socket } from 'node:dgram';
import * as packet from 'dns-packet';

/**
 * Zone data: "name TYPE" → records in dns-packet's shapes, e.g. "2.0.0.127.zen.test A" →
 * ["127.0.0.2"], "example.test MX" → [{ preference: 10, exchange: "mx.example.test" }]
 * (exchange "." is a null MX, RFC 7505).
 */
export type Zone = Map<string, unknown[]>;

/**
 * A small authoritative DNS server on 127.0.0.1 for tests: answers from an in-memory zone,
 * NXDOMAIN for unknown names, never answers names listed in `silent` (to test timeouts),
 * answers those in `delays` late and those in `rcodes` with that error (SERVFAIL...).
 */
export class TestDnsServer {
  readonly records: Zone = new Map();
  readonly silent = new Set<string>();
  /** Names answered only after this many milliseconds (a slow blocklist). */
  readonly delays = new Map<string, number>();
  /** Names answered with this response code instead (2 SERVFAIL, 5 REFUSED), for DNS failures. */
  readonly rcodes = new Map<string, number>();
  queries: string[] = [];
  private socket: Socket | null = null;
  port = 0;

  add(name: string, type: string, ...data: unknown[]): this {
    const key = `${name.toLowerCase().replace(/\.$/, '')} ${type}`;
    this.records.set(key, [...(this.records.get(key) ?? []), ...data]);
    return this;
  }

  async start(): Promise<string> {
    const socket = createSocket('udp4');
    this.socket = socket;
    socket.on('message', (msg, rinfo) => {
      let q: packet.Packet;
      try {
        q = packet.decode(msg);
      } catch {
        return;
      }
      const question = q.questions?.[0];
      if (!question) return;
      const name = question.name.toLowerCase().replace(/\.$/, '');
      this.queries.push(`${name} ${question.type}`);
      if (this.silent.has(name)) return;
      const data = this.records.get(`${name} ${question.type}`);
      const exists = [...this.records.keys()].some((k) => k.startsWith(`${name} `));
      const rcode = this.rcodes.get(name) ?? (exists ? 0 : 3);
      const answers = (rcode ? [] : (data ?? [])).map((d) => ({ name: question.name, type: question.type, class: 'IN', ttl: 60, data: d }) as unknown as packet.Answer);
      const reply = packet.encode({
        id: q.id,
        type: 'response',
        flags: packet.AUTHORITATIVE_ANSWER | rcode | (q.flags ?? 0) & packet.RECURSION_DESIRED,
        questions: q.questions,
        answers,
      });
      const delay = this.delays.get(name);
      if (delay) setTimeout(() => this.socket?.send(reply, rinfo.port, rinfo.address), delay);
      else socket.send(reply, rinfo.port, rinfo.address);
    });
    await new Promise<void>((res) => socket.bind(0, '127.0.0.1', () => res()));
    this.port = socket.address().port;
    return `127.0.0.1:${this.port}`;
  }

  stop(): void {
    this.socket?.close();
    this.socket = null;
  }
}
