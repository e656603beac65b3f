import { open, rename, unlink } from 'node:fs/promises';

const MAX_HEADER = 1024 * 1024;
const COPY_CHUNK = 256 * 1024;

/**
 * Applies ProcessMessage's HeaderModifiers (S19) to a stored message: each `Name: value`
 * line replaces the fields of that name (at the first one's place) or is added at the end
 * of the header; `Name:` with nothing after it removes them. `keep` leading octets (our
 * Return-Path line) are left as they are. The new file replaces the old one atomically.
 */
export async function rewriteHeader(path: string, modifiers: string[], keep: number, fsync: boolean): Promise<void> {
  const src = await open(path, 'r');
  let header: Buffer;
  let bodyStart: number;
  try {
    const buf = Buffer.alloc(MAX_HEADER);
    const { bytesRead } = await src.read(buf, 0, MAX_HEADER, keep);
    const head = buf.subarray(0, bytesRead);
    const end = head.indexOf('\r\n\r\n');
    // No blank line within reach: the whole read part is header (a header-only message).
    bodyStart = end < 0 ? keep + bytesRead : keep + end + 2;
    header = end < 0 ? head : head.subarray(0, end + 2);
  } catch (err) {
    await src.close();
    throw err;
  }
  // The header is worked on as bytes (one character each), so the modifiers, which are text,
  // go in as their UTF-8 bytes: both come out as they were.
  const asBytes = modifiers.map((m) => Buffer.from(m, 'utf8').toString('latin1'));
  const edited = Buffer.from(applyModifiers(header.toString('latin1'), asBytes), 'latin1');
  const tmp = `${path}.rewrite`;
  const dst = await open(tmp, 'w', 0o600);
  try {
    const prefix = Buffer.alloc(keep);
    if (keep) await src.read(prefix, 0, keep, 0);
    await dst.write(prefix);
    await dst.write(edited);
    const chunk = Buffer.alloc(COPY_CHUNK);
    for (let pos = bodyStart; ; ) {
      const { bytesRead } = await src.read(chunk, 0, COPY_CHUNK, pos);
      if (!bytesRead) break;
      await dst.write(chunk.subarray(0, bytesRead));
      pos += bytesRead;
    }
    if (fsync) await dst.sync();
  } catch (err) {
    await dst.close();
    await src.close();
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
  await dst.close();
  await src.close();
  await rename(tmp, path);
}

/** The header text (fields with CRLFs, no blank line) after the modifiers. */
export function applyModifiers(header: string, modifiers: string[]): string {
  // Fields with their continuation lines.
  const fields: string[] = [];
  for (const line of header.split('\r\n')) {
    if (line === '') continue;
    if (/^[ \t]/.test(line) && fields.length) fields[fields.length - 1] += `\r\n${line}`;
    else fields.push(line);
  }
  const nameOf = (f: string): string => f.slice(0, Math.max(0, f.indexOf(':'))).trim().toLowerCase();
  let out = fields;
  for (const m of modifiers) {
    const colon = m.indexOf(':');
    if (colon <= 0) continue;
    const name = m.slice(0, colon).trim().toLowerCase();
    if (!/^[\x21-\x39\x3b-\x7e]+$/.test(name)) continue;
    const value = m.slice(colon + 1).replace(/[\r\n]+/g, ' ').trim();
    const first = out.findIndex((f) => nameOf(f) === name);
    out = out.filter((f) => nameOf(f) !== name);
    if (!value) continue;
    const line = `${m.slice(0, colon).trim()}: ${value}`;
    if (first < 0) out.push(line);
    else out.splice(Math.min(first, out.length), 0, line);
  }
  return out.map((f) => `${f}\r\n`).join('');
}
