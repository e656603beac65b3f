/** Median, number formatting, a plain-text table, and the printed part of one benchmark section. */

/** What one part of the benchmark prints at the end, and the problems that make it exit 1. */
export interface Section {
  title: string;
  table: string;
  notes: string[];
  problems: string[];
}

export function printSection(s: Section): void {
  process.stdout.write(`\n${s.title}\n${s.table}\n`);
  for (const n of s.notes) process.stdout.write(`${n}\n`);
}

export function median(xs: number[]): number | null {
  if (xs.length === 0) return null;
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

export function fmt(n: number | null, digits = 0): string {
  return n === null || !Number.isFinite(n) ? 'n/a' : n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });
}

/** Renders rows as a Markdown-style table with right-aligned columns after the first. */
export function renderTable(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]): string =>
    '| ' + cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join(' | ') + ' |';
  const sep = '|' + widths.map((w, i) => (i === 0 ? '-'.repeat(w + 2) : '-'.repeat(w + 1) + ':')).join('|') + '|';
  return [line(header), sep, ...rows.map(line)].join('\n');
}
