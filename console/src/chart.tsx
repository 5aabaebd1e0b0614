// Time-series charts (uPlot): lines, a min–max band around a mean, and anomaly events drawn
// as shaded spans. Drag across a chart to zoom into a span; "Reset zoom" (or a double
// click) goes back to the whole range.

import { useEffect, useRef, useState } from "preact/hooks";
import uPlot from "uplot";
import { get, type RollupPoint } from "./api";
import { fmtChartTime, fmtTime } from "./util";

export const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2"];

export interface Line {
  label: string;
  values: (number | null)[];
}

export interface Mark {
  id: string;
  startMs: number;
  /** Null while the event is open. */
  endMs: number | null;
  label: string;
  severity: string;
}

export interface ChartProps {
  title: string;
  /** Unix milliseconds of each point. */
  x: number[];
  lines: Line[];
  /** A min–max band drawn around the first line. */
  band?: { min: (number | null)[]; max: (number | null)[] };
  marks?: Mark[];
  fmt: (v: number | null | undefined) => string;
  /** The x range to show (Unix ms), e.g. the picked time range. */
  range?: [number, number];
  testid?: string;
  height?: number;
  /** Values are percentages: the y axis stays within 0–100. */
  percent?: boolean;
}

const MARK_FILL: Record<string, string> = {
  low: "rgba(181, 137, 0, 0.18)",
  medium: "rgba(203, 75, 22, 0.20)",
  high: "rgba(220, 50, 47, 0.22)",
  critical: "rgba(160, 0, 60, 0.28)",
};

/** The span of the x axis as drawn now (Unix ms), zoom included. */
function xSpanMs(u: uPlot): number {
  const { min, max } = u.scales.x;
  return min == null || max == null ? 0 : (max - min) * 1000;
}

export function Chart(props: ChartProps) {
  const figure = useRef<HTMLElement>(null);
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const shape = useRef("");
  const marks = useRef<Mark[]>([]);
  const [zoomed, setZoomed] = useState(false);
  const zoomedRef = useRef(false);
  zoomedRef.current = zoomed;
  marks.current = props.marks ?? [];

  const xs = props.x.map((t) => t / 1000);
  const data: uPlot.AlignedData = props.band
    ? [xs, props.lines[0]?.values ?? [], props.band.min, props.band.max, ...props.lines.slice(1).map((l) => l.values)]
    : [xs, ...props.lines.map((l) => l.values)];

  useEffect(() => {
    const el = box.current;
    if (!el) return;
    const key = `${props.band ? "band" : "lines"}:${props.lines.map((l) => l.label).join("|")}`;
    if (plot.current && shape.current === key) {
      plot.current.setData(data, !zoomedRef.current);
      if (!zoomedRef.current && props.range) {
        plot.current.setScale("x", { min: props.range[0] / 1000, max: props.range[1] / 1000 });
      }
      return;
    }
    plot.current?.destroy();
    shape.current = key;
    const series: uPlot.Series[] = [{ value: (_u, v) => (v == null ? "—" : fmtTime(v * 1000)) }];
    const bands: uPlot.Band[] = [];
    const value = (_u: uPlot, v: number | null) => props.fmt(v);
    if (props.band) {
      series.push({ label: `${props.lines[0]?.label ?? ""} (mean)`, stroke: COLORS[0], width: 1.5, value });
      series.push({ label: "min", stroke: "rgba(31,119,180,0.35)", width: 0.5, value });
      series.push({ label: "max", stroke: "rgba(31,119,180,0.35)", width: 0.5, value });
      bands.push({ series: [3, 2], fill: "rgba(31,119,180,0.15)" });
      props.lines.slice(1).forEach((l, i) => series.push({ label: l.label, stroke: COLORS[(i + 1) % COLORS.length], width: 1.5, value }));
    } else {
      props.lines.forEach((l, i) => series.push({ label: l.label, stroke: COLORS[i % COLORS.length], width: 1.5, value }));
    }
    const opts: uPlot.Options = {
      width: Math.max(200, el.clientWidth),
      height: props.height ?? 200,
      series,
      bands,
      scales: {
        x: { time: true },
        y: {
          range: (_u, min, max) => {
            const [lo, hi] = uPlot.rangeNum(min ?? 0, max ?? 1, 0.1, true) as [number, number];
            return props.percent ? [Math.max(0, lo ?? 0), Math.min(100, Math.max(hi ?? 100, max ?? 0))] : [lo, hi];
          },
        },
      },
      axes: [
        {
          stroke: "#888",
          grid: { stroke: "rgba(128,128,128,0.15)" },
          // The console's own times (`fmtTime`'s clock), not uPlot's 12-hour ones; a date
          // and time is wider, so its ticks are further apart.
          space: (u) => (xSpanMs(u) > 86_400_000 ? 150 : 70),
          values: (u, ticks) => {
            const span = xSpanMs(u);
            const labels = ticks.map((t) => fmtChartTime(t * 1000, span));
            // what the canvas shows, readable by tests and tools
            figure.current?.setAttribute("data-x-labels", labels.join("|"));
            return labels;
          },
        },
        { stroke: "#888", grid: { stroke: "rgba(128,128,128,0.15)" }, size: 70, values: (_u, ticks) => ticks.map((t) => props.fmt(t)) },
      ],
      cursor: { drag: { x: true, y: false } },
      legend: { live: true },
      hooks: {
        setSelect: [
          (u) => {
            if (u.select.width > 2) setZoomed(true);
          },
        ],
        draw: [
          (u) => {
            const ctx = u.ctx;
            const now = Date.now();
            ctx.save();
            for (const m of marks.current) {
              let x0 = u.valToPos(m.startMs / 1000, "x", true);
              let x1 = u.valToPos((m.endMs ?? now) / 1000, "x", true);
              x0 = Math.max(x0, u.bbox.left);
              x1 = Math.min(x1, u.bbox.left + u.bbox.width);
              if (x1 < u.bbox.left || x0 > u.bbox.left + u.bbox.width) continue;
              ctx.fillStyle = MARK_FILL[m.severity] ?? MARK_FILL.high;
              ctx.fillRect(x0, u.bbox.top, Math.max(3, x1 - x0), u.bbox.height);
              ctx.fillStyle = "rgba(220,50,47,0.9)";
              ctx.fillRect(x0, u.bbox.top, 2, u.bbox.height);
            }
            ctx.restore();
          },
        ],
      },
    };
    plot.current = new uPlot(opts, data, el);
    // The picked range, not the data's extent, until a zoom replaces it.
    if (props.range) plot.current.setScale("x", { min: props.range[0] / 1000, max: props.range[1] / 1000 });
    const ro = new ResizeObserver(() => {
      if (plot.current && el.clientWidth > 0) plot.current.setSize({ width: el.clientWidth, height: props.height ?? 200 });
    });
    ro.observe(el);
    return () => ro.disconnect();
  }, [props.x, props.lines, props.band, props.range?.[0], props.range?.[1]]);

  useEffect(() => () => plot.current?.destroy(), []);

  // Marks are drawn by the plot's draw hook; redraw when they change.
  useEffect(() => {
    plot.current?.redraw(false, false);
  }, [props.marks]);

  const resetZoom = () => {
    setZoomed(false);
    if (plot.current) {
      plot.current.setData(data, true);
      if (props.range) plot.current.setScale("x", { min: props.range[0] / 1000, max: props.range[1] / 1000 });
    }
  };

  const first = props.lines[0];
  const points = first ? first.values.filter((v) => v !== null && v !== undefined).length : 0;
  const lastValue = first ? [...first.values].reverse().find((v) => v !== null && v !== undefined) : undefined;
  return (
    <figure
      ref={figure}
      class="chart"
      data-testid={props.testid}
      data-points={points}
      data-marks={(props.marks ?? []).length}
    >
      <figcaption>
        <span class="chart-title">{props.title}</span>
        <span class="chart-now">{first ? `now ${props.fmt(lastValue)}` : ""}</span>
        {zoomed ? (
          <button type="button" class="link" onClick={resetZoom}>
            Reset zoom
          </button>
        ) : null}
      </figcaption>
      <div
        ref={box}
        class="chart-canvas"
        role="img"
        aria-label={`${props.title}: ${points} points${first ? `, latest ${props.fmt(lastValue)}` : ""}${props.marks?.length ? `, ${props.marks.length} anomaly events` : ""}`}
      />
      {points === 0 ? <p class="muted chart-empty">No data in this range.</p> : null}
      {props.marks && props.marks.length > 0 ? (
        <ul class="chart-marks">
          {props.marks.map((m) => (
            <li key={m.id}>
              <a href={`#/anomalies/${encodeURIComponent(m.id)}`} class={`sev-${m.severity}`}>
                {m.label}
              </a>
            </li>
          ))}
        </ul>
      ) : null}
    </figure>
  );
}

/**
 * Rollups of one metric of one host between `from` and `to`, every device, following the
 * API's pages (it answers at most 10,000 windows, oldest first) up to `maxPages`.
 */
export async function loadRollups(
  host: string,
  metric: string,
  from: number,
  to: number,
  maxPages = 8,
): Promise<{ points: RollupPoint[]; truncated: boolean }> {
  const points: RollupPoint[] = [];
  let start = from;
  for (let page = 0; page < maxPages; page++) {
    const r = await get<{ points: RollupPoint[]; truncated: boolean }>("/monitoring/metrics", {
      host,
      metric,
      from: start,
      to,
      limit: 10000,
    });
    points.push(...r.points);
    if (!r.truncated || r.points.length === 0) return { points, truncated: false };
    start = r.points[r.points.length - 1].window_start_ms + 1;
  }
  return { points, truncated: true };
}

export interface Bucketed {
  x: number[];
  byDevice: Map<string, { min: (number | null)[]; mean: (number | null)[]; max: (number | null)[] }>;
}

/**
 * Windows into at most `buckets` time buckets per device: the lowest minimum, the mean of
 * the means weighted by samples, the highest maximum. Empty buckets are gaps (null).
 */
export function bucketize(points: RollupPoint[], from: number, to: number, buckets: number): Bucketed {
  const windowMs = points.length > 1 ? Math.max(1, medianStep(points)) : 1000;
  const step = Math.max(windowMs, Math.ceil((to - from) / buckets));
  const n = Math.max(1, Math.ceil((to - from) / step));
  const x = Array.from({ length: n }, (_, i) => from + (i + 1) * step);
  const byDevice: Bucketed["byDevice"] = new Map();
  const acc = new Map<string, { min: number[]; max: number[]; sum: number[]; w: number[] }>();
  for (const p of points) {
    const i = Math.min(n - 1, Math.max(0, Math.floor((p.window_end_ms - 1 - from) / step)));
    let a = acc.get(p.device);
    if (!a) {
      a = { min: new Array(n).fill(Infinity), max: new Array(n).fill(-Infinity), sum: new Array(n).fill(0), w: new Array(n).fill(0) };
      acc.set(p.device, a);
    }
    const w = Math.max(1, p.count);
    a.min[i] = Math.min(a.min[i], p.min);
    a.max[i] = Math.max(a.max[i], p.max);
    a.sum[i] += p.mean * w;
    a.w[i] += w;
  }
  for (const [device, a] of acc) {
    byDevice.set(device, {
      min: a.min.map((v, i) => (a.w[i] ? v : null)),
      max: a.max.map((v, i) => (a.w[i] ? v : null)),
      mean: a.sum.map((v, i) => (a.w[i] ? v / a.w[i] : null)),
    });
  }
  return { x, byDevice };
}

function medianStep(points: RollupPoint[]): number {
  const d = points.slice(0, 200).map((p) => p.window_end_ms - p.window_start_ms);
  d.sort((a, b) => a - b);
  return d[Math.floor(d.length / 2)] ?? 1000;
}
