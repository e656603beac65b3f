import { isIP } from 'node:net';
import { z } from 'zod';
import { parseCidr } from '../policy/cidr.js';
import { retryScheduleSchema } from '../delivery/retry.js';

/** A secret is written inline or read from an environment variable at load time. */
const secret = z.union([z.string().min(1), z.strictObject({ env: z.string().min(1) })]);

const cidr = z.string().refine((s) => parseCidr(s) !== null, {
  message: 'expected an IP network such as 127.0.0.1/32 or ::1/128',
});

const domainName = z
  .string()
  .min(1)
  .regex(/^[A-Za-z0-9.-]+$/, 'expected a domain name (letters, digits, dots, hyphens)')
  .transform((s) => s.toLowerCase().replace(/\.$/, ''));

const address = z
  .string()
  .regex(/^[^@\s]+@[^@\s]+$/, 'expected an email address local@domain')
  .transform((s) => s.toLowerCase());

export const serviceSchema = z.strictObject({
  id: z.number().int().min(0),
  name: z.string().min(1),
  listen: z.string().refine((s) => isIP(s) !== 0, { message: 'expected an IP address to listen on' }),
  port: z.number().int().min(0).max(65535),
  tls: z.enum(['none', 'starttls', 'implicit']).default('none'),
  cert: z.string().optional(),
  key: z.string().optional(),
  /** Clients must authenticate before MAIL FROM (submission). */
  auth: z.boolean().default(false),
  /** Offer AUTH on a connection that is not encrypted (off by default: passwords stay inside TLS). */
  authWithoutTls: z.boolean().default(false),
  proxyProtocol: z.boolean().default(false),
  proxyTrusted: z.array(cidr).default(['127.0.0.1/32', '::1/128']),
  /** Check SPF for MAIL FROM (S15) and add a Received-SPF header. */
  spf: z.boolean().default(false),
});

const domainSchema = z.union([
  domainName.transform((name) => ({ name, catchAll: false })),
  z.strictObject({ name: domainName, catchAll: z.boolean().default(false) }),
]);

const userSchema = z.strictObject({
  name: z.string().min(1).regex(/^\S+$/, 'expected a user name without spaces'),
  password: secret.optional(),
  /** Plain shared secret enabling CRAM-MD5 for this user (kept as given; prefer {env: NAME}). */
  cramSecret: secret.optional(),
  addresses: z.array(address).default([]),
});

const seconds = z.number().positive();
const senderSeconds = seconds.max(3600, { message: 'seconds, at most 3600' });

export const limitsSchema = z.strictObject({
  messageSize: z.number().int().min(0).default(25 * 1024 * 1024),
  recipients: z.number().int().min(1).default(1000),
  /** Octets per command line and per message line (S25 MaxLineLength). */
  lineLength: z.number().int().min(512).default(4096),
  connections: z.number().int().min(1).default(1000),
  connectionsPerIp: z.number().int().min(1).default(100),
  errors: z.number().int().min(1).default(20),
  messagesPerSession: z.number().int().min(0).default(0),
  /**
   * Failed AUTH per client address, counted across connections: `free` failures cost
   * nothing, each further one is answered after a delay doubling from `delayMs` up to
   * `maxDelayMs`, and from `block` failures on AUTH gets 421 until they are `forgetSeconds` old.
   */
  authFailures: z
    .strictObject({
      free: z.number().int().min(0).default(2),
      block: z.number().int().min(1).default(10),
      delayMs: z.number().int().min(0).default(1000),
      maxDelayMs: z.number().int().min(0).default(8000),
      forgetSeconds: z.number().positive().default(900),
    })
    .prefault({}),
  timeouts: z
    .strictObject({
      command: seconds.default(300),
      data: seconds.default(600),
      shutdown: seconds.default(30),
    })
    .prefault({}),
});

const senderSchema = z.strictObject({
  id: z.number().int().min(0),
  name: z.string().min(1),
  /** smarthost: everything to `host`; mx: straight to each domain's MX hosts. */
  mode: z.enum(['smarthost', 'mx']),
  host: z.string().min(1).optional(),
  /** Port of the smarthost, or of every MX host (25 on the Internet). */
  port: z.number().int().min(1).max(65535).default(25),
  /** opportunistic: STARTTLS when offered. */
  tls: z.enum(['none', 'starttls', 'opportunistic', 'implicit']).default('opportunistic'),
  verifyCertificate: z.boolean().default(true),
  /** PEM file of CA certificates to trust instead of the system's (a private smarthost). */
  ca: z.string().optional(),
  auth: z.strictObject({ user: z.string().min(1), password: secret, mechanism: z.enum(['PLAIN', 'LOGIN']).optional() }).optional(),
  /** Our EHLO name; default the server's hostname. */
  helo: z.string().min(1).optional(),
  /** Domain filter rules (R1): patterns, !patterns, size conditions; none = every domain. */
  rules: z.array(z.string().min(1)).default([]),
  /** Initial relayout.lua globals (R2); 0 = unlimited. */
  maxMessagesPerConnection: z.number().int().min(0).default(0),
  maxRecipientsPerConnection: z.number().int().min(0).default(0),
  maxRecipientsPerMessage: z.number().int().min(0).default(0),
  useBATV: z.boolean().default(false),
  /** Parallel connections to one destination host. */
  connectionsPerDestination: z.number().int().min(1).default(4),
  /**
   * Seconds, as every other timeout in the config (without them, the client's RFC 5321
   * defaults). At most an hour: a value in milliseconds is refused, not taken as hours.
   */
  timeouts: z.strictObject({ connect: senderSeconds.optional(), command: senderSeconds.optional() }).prefault({}),
});

/** The admin console's HTTP API (src/admin/http): off unless the section is present. */
export const adminSchema = z.strictObject({
  /** With the section present the API runs unless this is false. */
  enabled: z.boolean().default(true),
  listen: z.string().refine((s) => isIP(s) !== 0, { message: 'expected an IP address to listen on' }).default('127.0.0.1'),
  port: z.number().int().min(0).max(65535).default(8025),
  /** HTTPS with these PEM files; without it plain HTTP (keep it on loopback then). */
  tls: z.strictObject({ cert: z.string().min(1), key: z.string().min(1) }).optional(),
  /** Who may log in to the console: scrypt hashes from `moonpost hash-password`. */
  users: z
    .array(z.strictObject({ name: z.string().min(1).regex(/^\S+$/, 'expected a user name without spaces'), password: secret }))
    .default([]),
  /** Bearer tokens for scripts and CI (`Authorization: Bearer <token>`), at least 16 characters. */
  tokens: z.array(z.strictObject({ name: z.string().min(1), token: secret })).default([]),
  /** A console login lasts this long. */
  sessionMinutes: z.number().int().min(1).default(720),
  /** Failed logins per client address: after `attempts` within `windowSeconds`, 429 until they age out. */
  login: z
    .strictObject({
      attempts: z.number().int().min(1).default(5),
      windowSeconds: z.number().int().min(1).default(300),
    })
    .prefault({}),
  /** Serve /metrics without a login or token (for a Prometheus on the same host). */
  metricsWithoutAuth: z.boolean().default(false),
});

export const configSchema = z.strictObject({
  hostname: z.string().min(1).default('localhost'),
  dataDir: z.string().min(1).default('./var'),
  /**
   * SMTP worker processes sharing the listening sockets; "auto" = one per CPU. 1 runs
   * everything in one process, as without the key.
   */
  workers: z.union([z.number().int().min(1).max(256), z.literal('auto')]).default(1),
  /**
   * How several workers share a listening socket: "kernel", each worker accepts from it
   * itself; "primary", the primary accepts and hands each connection to the next worker in
   * turn (an IPC message and a file descriptor per connection).
   */
  workerAccept: z.enum(['kernel', 'primary']).default('kernel'),
  services: z.array(serviceSchema).min(1),
  domains: z.array(domainSchema).default([]),
  users: z.array(userSchema).default([]),
  aliases: z.record(address, z.array(address).min(1)).default({}),
  relay: z
    .strictObject({
      networks: z.array(cidr).default(['127.0.0.1/32', '::1/128']),
      mode: z.enum(['ip', 'auth', 'either']).default('either'),
    })
    .prefault({}),
  limits: limitsSchema.prefault({}),
  log: z
    .strictObject({
      level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    })
    .prefault({}),
  /** Outbound message senders (R1), ids from 0; none = remote mail waits in the queue. */
  senders: z.array(senderSchema).default([]),
  delivery: z
    .strictObject({
      /** A send run of every sender at least this often (and soon after mail is queued). */
      runIntervalSeconds: z.number().positive().default(60),
      retry: retryScheduleSchema.prefault({}),
    })
    .prefault({}),
  /** Where a copy of every message with BCC recipients goes (MonitorBcc's default, S22); "" = none. */
  monitorBcc: z.string().default(''),
  dns: z
    .strictObject({
      /** Resolvers as `ip` or `ip:port` (a test zone on 127.0.0.1, a local cache); empty = the system's. */
      servers: z.array(z.string().min(1)).default([]),
      timeoutMs: z.number().int().positive().default(5000),
      tries: z.number().int().min(1).default(2),
    })
    .prefault({}),
  rbl: z
    .strictObject({
      /** Initial CheckRBL; a script may change it in Start (S20). */
      enabled: z.boolean().default(false),
      /** DNSBL zones (RBLServers). */
      servers: z.array(domainName).default([]),
      /** Client addresses never looked up, with * and ? wildcards (RBLWhitelist). */
      whitelist: z.array(z.string().min(1)).default([]),
      checkAll: z.boolean().default(false),
      /** One deadline for all lookups of a connection. */
      deadlineMs: z.number().int().positive().default(5000),
      /** Reply for each RCPT of a listed client (RBLRejectMessage); "" = accept. */
      rejectMessage: z.string().default('550 5.7.1 Client host blocked by a DNS blocklist'),
    })
    .prefault({}),
  batv: z
    .strictObject({
      /** Initial UseBATV. */
      enabled: z.boolean().default(false),
      /** Signing keys; the highest id signs, all verify. */
      keys: z.array(z.strictObject({ id: z.number().int().min(0).max(9), secret })).default([]),
      validDays: z.number().int().min(1).max(999).default(7),
    })
    .prefault({}),
  scripts: z
    .strictObject({
      /** Folder of SMTPSVR.LUA, relayout.lua and shared modules; default <dataDir>/scripts. */
      dir: z.string().min(1).optional(),
      /** Wall-clock budget of one callback (S4). */
      timeMs: z.number().positive().default(1000),
      /** Lua VM instructions one callback may run, counted at branches and calls (README); 0 = no count limit (the time budget still applies). */
      instructions: z.number().int().min(0).default(200_000_000),
      /** Memory of one session's Lua state. */
      memoryMB: z.number().positive().default(32),
    })
    .prefault({}),
  queue: z
    .strictObject({
      /** fsync files and folders before acknowledging (Q1). Turning it off loses mail on power failure. */
      fsync: z.boolean().default(true),
    })
    .prefault({}),
  admin: adminSchema.optional(),
});

export type SenderConfig = z.output<typeof senderSchema>;
export type AdminConfig = z.output<typeof adminSchema>;

export type ConfigInput = z.input<typeof configSchema>;
export type Config = z.output<typeof configSchema>;
export type ServiceConfig = z.output<typeof serviceSchema>;
export type LimitsConfig = z.output<typeof limitsSchema>;
export type Secret = z.output<typeof secret>;
