import { pino, type Logger } from 'pino';

/** JSON lines on stdout (pino); `MOONPOST_LOG` overrides the configured level. */
export function createLogger(level: string): Logger {
  return pino({ level: process.env.MOONPOST_LOG ?? level, base: { app: 'moonpost' } });
}
