import type { ConfigInput } from './schema.js';

/** What `moonpost serve` runs with when no config file is given: a loopback test server. */
export function embeddedDefaults(): ConfigInput {
  return {
    hostname: 'localhost',
    services: [{ id: 0, name: 'smtp', listen: '127.0.0.1', port: 2525, tls: 'none' }],
    domains: [{ name: 'localhost', catchAll: true }],
    relay: { networks: ['127.0.0.1/32'], mode: 'ip' },
  };
}
