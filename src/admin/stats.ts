import type { EventBus, LiveEvent } from './events.js';

/** One minute of the dashboard's series. */
export interface MinuteSample {
  /** Start of the minute (ISO). */
  minute: string;
  /** Messages accepted into the queue. */
  in: number;
  /** Recipients delivered: to a local mailbox or to a remote server. */
  out: number;
  /** Refusal replies (4xx/5xx) to MAIL, RCPT, DATA/BDAT and at the end of a message. */
  refused: number;
  /** Messages in the queue at the minute's last sample (null when none was taken). */
  queue: number | null;
}

const MINUTE = 60_000;
const REFUSABLE = /^(MAIL|RCPT|DATA|BDAT|\(end of data\))/;

interface Slot {
  minute: number;
  in: number;
  out: number;
  refused: number;
  queue: number | null;
}

/**
 * The last hour per minute for the dashboard: counts from the event bus, deliveries and queue
 * depth sampled from the server's counters every few seconds. 60 slots, nothing else kept.
 */
export class MinuteStats {
  private readonly slots: Slot[] = [];
  private timer: NodeJS.Timeout | null = null;
  private lastDelivered: number;
  private unsubscribe: (() => void) | null = null;

  constructor(
    private readonly source: { delivered(): number; queueSize(): number },
    private readonly now: () => number = Date.now,
  ) {
    this.lastDelivered = source.delivered();
  }

  start(bus: EventBus, sampleMs = 5000): void {
    this.unsubscribe = bus.subscribe((e) => this.hear(e));
    this.sample();
    this.timer = setInterval(() => this.sample(), sampleMs);
    this.timer.unref();
  }

  stop(): void {
    this.unsubscribe?.();
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  private slot(): Slot {
    const minute = Math.floor(this.now() / MINUTE) * MINUTE;
    let s = this.slots[this.slots.length - 1];
    if (!s || s.minute !== minute) {
      s = { minute, in: 0, out: 0, refused: 0, queue: null };
      this.slots.push(s);
      while (this.slots.length > 60) this.slots.shift();
    }
    return s;
  }

  private hear(e: LiveEvent): void {
    if (e.type === 'message' && e.outcome === 'queued') this.slot().in++;
    else if (e.type === 'command' && /^[45]/.test(e.reply) && REFUSABLE.test(e.command)) this.slot().refused++;
  }

  /** Takes the deliveries since the last sample and the queue depth now. */
  sample(): void {
    const s = this.slot();
    const delivered = this.source.delivered();
    s.out += Math.max(0, delivered - this.lastDelivered);
    this.lastDelivered = delivered;
    s.queue = this.source.queueSize();
  }

  /** The 60 minutes up to now, oldest first; minutes without activity are zeros. */
  series(): MinuteSample[] {
    this.sample();
    const current = Math.floor(this.now() / MINUTE) * MINUTE;
    const byMinute = new Map(this.slots.map((s) => [s.minute, s]));
    const out: MinuteSample[] = [];
    for (let i = 59; i >= 0; i--) {
      const minute = current - i * MINUTE;
      const s = byMinute.get(minute);
      out.push({ minute: new Date(minute).toISOString(), in: s?.in ?? 0, out: s?.out ?? 0, refused: s?.refused ?? 0, queue: s?.queue ?? null });
    }
    return out;
  }
}
