/**
 * The pieces of the WebAssembly binary format (Core Specification 2.0, §5) that the modules we
 * assemble ourselves share: LEB128 integers, vectors, sections and names.
 */

/** An unsigned LEB128 integer (n below 2^32). */
export function uleb(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n) b |= 0x80;
    out.push(b);
  } while (n);
  return out;
}

/** A signed LEB128 integer: an i32 as a number, or any i64 as a bigint. */
export function sleb(value: number | bigint): number[] {
  let n = BigInt(value);
  const out: number[] = [];
  for (;;) {
    const b = Number(n & 0x7fn);
    n >>= 7n;
    if ((n === 0n && (b & 0x40) === 0) || (n === -1n && (b & 0x40) !== 0)) {
      out.push(b);
      return out;
    }
    out.push(b | 0x80);
  }
}

/** A vector: its length, then its items. */
export const vec = (items: number[][]): number[] => [...uleb(items.length), ...items.flat()];

/** A section: its id, then its size and content. */
export const section = (id: number, content: number[]): number[] => [id, ...uleb(content.length), ...content];

/** A name: its UTF-8 bytes with their count. */
export function name(s: string): number[] {
  const bytes = Buffer.from(s, 'utf8');
  return [...uleb(bytes.length), ...bytes];
}
