/** A small SVG chart of per-minute series: lines or bars, a y axis with round ticks, time labels. */

const NS = 'http://www.w3.org/2000/svg';

export interface Series {
  name: string;
  /** CSS class for colour (stroke/fill set in style.css). */
  cls: string;
  values: (number | null)[];
  kind: 'line' | 'bar';
}

function svg<K extends keyof SVGElementTagNameMap>(tag: K, attrs: Record<string, string | number>, text?: string): SVGElementTagNameMap[K] {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = text;
  return el;
}

/** 1, 2, 5 × 10^n at or above `max / 4`, so the axis has about four steps. */
function niceStep(max: number): number {
  const raw = Math.max(max, 1) / 4;
  const p = 10 ** Math.floor(Math.log10(raw));
  for (const m of [1, 2, 5, 10]) if (m * p >= raw) return Math.max(1, m * p);
  return 10 * p;
}

/**
 * Draws the series over `labels` (one per minute, oldest first) at `width` pixels (the caller
 * redraws when its container is resized, so text keeps its size). The last value of each line
 * is marked; every bar and mark has its value as a title.
 */
export function chart(series: Series[], labels: string[], opts: { title: string; width: number; height?: number }): SVGSVGElement {
  const W = Math.max(240, Math.round(opts.width));
  const H = opts.height ?? 180;
  const left = 34;
  const right = 8;
  const top = 10;
  const bottom = 22;
  const n = labels.length;
  const max = Math.max(0, ...series.flatMap((s) => s.values.map((v) => v ?? 0)));
  const step = niceStep(max);
  const yMax = Math.max(step * Math.ceil(max / step), step);
  const x = (i: number): number => left + ((W - left - right) * (i + 0.5)) / n;
  const y = (v: number): number => top + (H - top - bottom) * (1 - v / yMax);
  const root = svg('svg', { viewBox: `0 0 ${W} ${H}`, width: W, height: H, class: 'chart', role: 'img', 'aria-label': opts.title });
  root.appendChild(svg('title', {}, opts.title));
  for (let v = 0; v <= yMax; v += step) {
    root.appendChild(svg('line', { x1: left, x2: W - right, y1: y(v), y2: y(v), class: v === 0 ? 'axis' : 'grid' }));
    root.appendChild(svg('text', { x: left - 5, y: y(v) + 3.5, class: 'tick', 'text-anchor': 'end' }, String(v)));
  }
  const every = W < 420 ? 30 : 15;
  for (let i = 0; i < n - 5; i += every) root.appendChild(svg('text', { x: x(i), y: H - 6, class: 'tick', 'text-anchor': 'middle' }, labels[i]));
  root.appendChild(svg('text', { x: x(n - 1), y: H - 6, class: 'tick', 'text-anchor': 'end' }, 'now'));
  const bars = series.filter((s) => s.kind === 'bar');
  const slot = (W - left - right) / n;
  const bw = Math.max(1, (slot * 0.8) / Math.max(bars.length, 1));
  bars.forEach((s, k) => {
    s.values.forEach((v, i) => {
      if (!v) return;
      const bx = x(i) - (slot * 0.8) / 2 + k * bw;
      const r = svg('rect', { x: bx, y: y(v), width: bw, height: y(0) - y(v), class: `bar ${s.cls}` });
      r.appendChild(svg('title', {}, `${labels[i]}: ${v} ${s.name}`));
      root.appendChild(r);
    });
  });
  for (const s of series.filter((t) => t.kind === 'line')) {
    // A null (no sample that minute) breaks the line rather than drawing a false zero.
    let d = '';
    let pen = false;
    s.values.forEach((v, i) => {
      if (v === null) {
        pen = false;
        return;
      }
      d += `${pen ? 'L' : 'M'}${x(i).toFixed(1)},${y(v).toFixed(1)}`;
      pen = true;
    });
    if (d) root.appendChild(svg('path', { d, class: `line ${s.cls}` }));
    const lastIdx = s.values.length - 1 - [...s.values].reverse().findIndex((v) => v !== null);
    if (lastIdx < s.values.length && s.values[lastIdx] !== null && s.values[lastIdx] !== undefined) {
      const dot = svg('circle', { cx: x(lastIdx), cy: y(s.values[lastIdx]!), r: 3, class: `dot ${s.cls}` });
      dot.appendChild(svg('title', {}, `${labels[lastIdx]}: ${s.values[lastIdx]} ${s.name}`));
      root.appendChild(dot);
    }
  }
  return root;
}
