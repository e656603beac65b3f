/** Cleanup actions run once, in reverse order of registration, at the end, on error, or on SIGINT/SIGTERM. */

type Action = { name: string; fn: () => Promise<void> | void };

const actions: Action[] = [];
let running: Promise<void> | null = null;

export function onCleanup(name: string, fn: () => Promise<void> | void): void {
  actions.push({ name, fn });
}

export function cleanup(): Promise<void> {
  running ??= (async () => {
    while (actions.length > 0) {
      const a = actions.pop() as Action;
      try {
        await a.fn();
      } catch (err) {
        process.stderr.write(`bench: cleanup "${a.name}" failed: ${(err as Error).message}\n`);
      }
    }
  })();
  return running;
}

/** On SIGINT/SIGTERM: clean up and exit (a second signal exits at once). */
export function installSignalHandlers(): void {
  let seen = false;
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.on(sig, () => {
      if (seen) process.exit(130);
      seen = true;
      process.stderr.write(`\nbench: ${sig}, cleaning up...\n`);
      const hard = setTimeout(() => process.exit(130), 30_000);
      hard.unref();
      void cleanup().finally(() => process.exit(130));
    });
  }
}
