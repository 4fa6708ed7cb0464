/**
 * The benchmark's output: a table on the terminal, and an SVG plot of convergence over time
 * (copies and patched ServiceAccounts against seconds, regcred and the floor on the same axes).
 */
import type { Timeline } from './observer.ts';

export interface Figure {
  id: string;
  what: string;
  measured: string;
  floor: string;
  ratio: string;
  target: string;
  met: boolean | undefined;
}

export function table(figures: Figure[]): string {
  const head = ['', 'figure', 'regcred', 'floor', 'ratio', 'target', ''];
  const rows = figures.map((f) => [
    f.id,
    f.what,
    f.measured,
    f.floor,
    f.ratio,
    f.target,
    f.met === undefined ? '' : f.met ? 'met' : 'MISSED',
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => c.padEnd(widths[i]!))
      .join('  ')
      .trimEnd();
  return [line(head), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n');
}

export function svgPlot(
  title: string,
  series: { label: string; color: string; dash?: string; points: [number, number][] }[],
): string {
  const W = 760;
  const H = 420;
  const m = { left: 64, right: 200, top: 40, bottom: 48 };
  const maxX = Math.max(1, ...series.flatMap((s) => s.points.map((p) => p[0])));
  const maxY = Math.max(1, ...series.flatMap((s) => s.points.map((p) => p[1])));
  const x = (v: number) => m.left + (v / maxX) * (W - m.left - m.right);
  const y = (v: number) => H - m.bottom - (v / maxY) * (H - m.top - m.bottom);
  const ticks = (max: number) => Array.from({ length: 6 }, (_, i) => (max * i) / 5);
  const fmt = (v: number) => (v >= 100 ? Math.round(v).toString() : v.toFixed(1));
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${m.left}" y="22" font-size="14">${escapeXml(title)}</text>`,
  ];
  for (const t of ticks(maxX)) {
    out.push(`<line x1="${x(t)}" y1="${m.top}" x2="${x(t)}" y2="${H - m.bottom}" stroke="#eee"/>`);
    out.push(`<text x="${x(t)}" y="${H - m.bottom + 16}" text-anchor="middle">${fmt(t)}</text>`);
  }
  for (const t of ticks(maxY)) {
    out.push(`<line x1="${m.left}" y1="${y(t)}" x2="${W - m.right}" y2="${y(t)}" stroke="#eee"/>`);
    out.push(`<text x="${m.left - 6}" y="${y(t) + 4}" text-anchor="end">${Math.round(t)}</text>`);
  }
  out.push(`<text x="${(m.left + W - m.right) / 2}" y="${H - 10}" text-anchor="middle">seconds</text>`);
  out.push(
    `<line x1="${m.left}" y1="${H - m.bottom}" x2="${W - m.right}" y2="${H - m.bottom}" stroke="black"/>`,
  );
  out.push(`<line x1="${m.left}" y1="${m.top}" x2="${m.left}" y2="${H - m.bottom}" stroke="black"/>`);
  series.forEach((s, i) => {
    const pts = [[0, 0] as [number, number], ...s.points]
      .map(([px, py]) => `${x(px).toFixed(1)},${y(py).toFixed(1)}`)
      .join(' ');
    out.push(
      `<polyline fill="none" stroke="${s.color}" stroke-width="2"${s.dash ? ` stroke-dasharray="${s.dash}"` : ''} points="${pts}"/>`,
    );
    const ly = m.top + 10 + i * 20;
    out.push(
      `<line x1="${W - m.right + 12}" y1="${ly}" x2="${W - m.right + 40}" y2="${ly}" stroke="${s.color}" stroke-width="2"${s.dash ? ` stroke-dasharray="${s.dash}"` : ''}/>`,
    );
    out.push(`<text x="${W - m.right + 46}" y="${ly + 4}">${escapeXml(s.label)}</text>`);
  });
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}

/** Thins a step series to at most `max` points, keeping the last. */
export function thin(points: [number, number][], max = 400): [number, number][] {
  if (points.length <= max) return points;
  const step = points.length / max;
  const out: [number, number][] = [];
  for (let i = 0; i < max; i++) out.push(points[Math.floor(i * step)]!);
  out.push(points.at(-1)!);
  return out;
}

export function convergencePlot(title: string, regcred: Timeline, floor: Timeline): string {
  return svgPlot(title, [
    { label: 'regcred: copies', color: '#1f6feb', points: thin(regcred.copies) },
    { label: 'regcred: ServiceAccounts', color: '#1f6feb', dash: '6 4', points: thin(regcred.patched) },
    { label: 'floor: copies', color: '#999', points: thin(floor.copies) },
    { label: 'floor: ServiceAccounts', color: '#999', dash: '6 4', points: thin(floor.patched) },
  ]);
}

function escapeXml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;');
}
