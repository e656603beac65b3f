import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { AdminConfig, Config } from '../../config/schema.js';
import type { QueueIndex } from '../../queue/queue-index.js';
import type { ScriptHost } from '../../script/script-host.js';
import type { EventBus } from '../events.js';
import type { LiveFeed } from '../live.js';
import type { QueueRequest, QueueResponse } from '../queue-ops.js';
import type { ScriptFiles } from '../script-files.js';
import type { MinuteStats } from '../stats.js';

/** What the admin API's routes work on: the running server's parts, nothing else. */
export interface AdminContext {
  config: Config;
  admin: AdminConfig;
  scripts: ScriptHost;
  files: ScriptFiles;
  queue: QueueIndex;
  /** The queue commands (src/admin/queue-ops.ts) as the running server applies them. */
  queueOp(req: QueueRequest): Promise<QueueResponse>;
  bus: EventBus;
  live: LiveFeed;
  stats: MinuteStats;
  metrics: Registry;
  log: Logger;
  /** The built browser console (default: dist/ui of this installation). */
  consoleDir?: string;
}
