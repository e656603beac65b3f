import { createHmac, timingSafeEqual } from 'node:crypto';

/**
 * BATV "prvs" return paths (S26, R6): `prvs=KDDDHHHHHH=local@domain`, with K the key number
 * (0-9), DDD the day number (days since the epoch, mod 1000) and HHHHHH the first three bytes
 * of HMAC-SHA1(key, "KDDD" + address) in hex. Keys rotate by number; tags expire.
 */
export interface BatvKey {
  id: number;
  secret: string;
}

const DAY_MS = 86_400_000;
const PRVS = /^prvs=(\d)(\d{3})([0-9a-f]{6})=(.+)$/i;

export class Batv {
  private readonly keys = new Map<number, string>();
  private readonly current: BatvKey;

  constructor(
    keys: BatvKey[],
    private readonly validDays: number,
    private readonly now: () => number = Date.now,
  ) {
    if (!keys.length) throw new Error('BATV needs at least one key');
    for (const k of keys) this.keys.set(k.id, k.secret);
    // The highest key number signs; older ones still verify until their tags expire.
    this.current = keys.reduce((a, b) => (b.id > a.id ? b : a));
  }

  private day(): number {
    return Math.floor(this.now() / DAY_MS) % 1000;
  }

  private hash(secret: string, keyDay: string, address: string): string {
    return createHmac('sha1', secret).update(keyDay + address.toLowerCase()).digest('hex').slice(0, 6);
  }

  /** The tagged form of `address` (local@domain). */
  sign(address: string): string {
    if (isTagged(address)) return address;
    const keyDay = `${this.current.id}${String(this.day()).padStart(3, '0')}`;
    return `prvs=${keyDay}${this.hash(this.current.secret, keyDay, address)}=${address}`;
  }

  /** The original address when `tagged` carries a valid, unexpired tag of ours; else null. */
  verify(tagged: string): string | null {
    const at = tagged.lastIndexOf('@');
    const m = PRVS.exec(tagged.slice(0, at));
    if (!m || at < 0) return null;
    const address = `${m[4]}${tagged.slice(at)}`;
    const secret = this.keys.get(Number(m[1]));
    if (secret === undefined) return null;
    const age = (this.day() - Number(m[2]) + 1000) % 1000;
    if (age > this.validDays) return null;
    const want = Buffer.from(this.hash(secret, `${m[1]}${m[2]}`, address));
    const got = Buffer.from(m[3].toLowerCase());
    return want.length === got.length && timingSafeEqual(want, got) ? address : null;
  }
}

export function isTagged(address: string): boolean {
  return /^prvs=/i.test(address);
}
