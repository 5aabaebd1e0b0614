// Formatting, polling and routing shared by the pages.

import { useEffect, useRef, useState, useCallback } from "preact/hooks";
import type { ComponentChildren } from "preact";
import { ApiError } from "./api";

/** Local date and time in the viewer's zone (the browser's), e.g. `2026-12-02 14:03:07`. */
export function fmtTime(ms: number | null | undefined): string {
  if (!ms) return "—";
  const d = new Date(ms);
  const p = (n: number) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

const DAY_MS = 86_400_000;

/**
 * A time on a chart (an axis tick, an event drawn on it) on the clock of `fmtTime`: `14:03:07`
 * when the chart spans a day or less, the whole `2026-12-02 14:03:07` when it spans more.
 */
export function fmtChartTime(ms: number, spanMs: number): string {
  const t = fmtTime(ms);
  return spanMs > DAY_MS ? t : t.slice(11);
}

/** The viewer's zone, named once in the footer so local times are unambiguous. */
export function zoneName(): string {
  try {
    return Intl.DateTimeFormat().resolvedOptions().timeZone || "local time";
  } catch {
    return "local time";
  }
}

export function fmtAgo(ms: number | null | undefined, now = Date.now()): string {
  if (!ms) return "never";
  const s = Math.round((now - ms) / 1000);
  if (s < 0) return `in ${fmtDuration(-s * 1000)}`;
  if (s < 2) return "just now";
  return `${fmtDuration(s * 1000)} ago`;
}

export function fmtDuration(ms: number): string {
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s} s`;
  const m = Math.round(s / 60);
  if (m < 60) return `${m} min`;
  const h = Math.round(m / 6) / 10;
  if (h < 48) return `${h} h`;
  return `${Math.round(h / 24)} d`;
}

export function fmtNum(v: number | null | undefined, digits = 1): string {
  if (v === null || v === undefined || Number.isNaN(v)) return "—";
  if (Math.abs(v) >= 1e9) return `${(v / 1e9).toFixed(digits)} G`;
  if (Math.abs(v) >= 1e6) return `${(v / 1e6).toFixed(digits)} M`;
  if (Math.abs(v) >= 1e4) return `${(v / 1e3).toFixed(digits)} k`;
  return v.toFixed(Math.abs(v) < 10 && v !== Math.round(v) ? Math.max(digits, 2) : digits);
}

export function fmtBytes(v: number | null | undefined): string {
  if (v === null || v === undefined || Number.isNaN(v)) return "—";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  let x = v;
  while (Math.abs(x) >= 1024 && i < units.length - 1) {
    x /= 1024;
    i++;
  }
  return `${x.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
}

/** A value of metric `metric` with its unit. */
export function fmtMetric(metric: string, v: number | null | undefined): string {
  if (v === null || v === undefined) return "—";
  if (metric.endsWith("_pct")) return `${v.toFixed(1)} %`;
  if (metric.endsWith("bytes_per_s")) return `${fmtBytes(v)}/s`;
  if (metric.endsWith("_bytes")) return fmtBytes(v);
  if (metric.endsWith("_per_s")) return `${fmtNum(v)}/s`;
  return fmtNum(v, 2);
}

export function errorText(e: unknown): string {
  if (e instanceof ApiError) return e.status === 403 ? `Not allowed: ${e.message}` : e.message;
  if (e instanceof Error) return e.message;
  return String(e);
}

export interface Poll<T> {
  data: T | undefined;
  error: string | undefined;
  loading: boolean;
  /** Unix ms of the last successful load. */
  at: number | undefined;
  reload: () => void;
}

/**
 * Loads `load()` now and every `everyMs` while the page is visible; a change of `deps`
 * reloads at once. Answers of a superseded load are dropped.
 */
export function usePoll<T>(load: () => Promise<T>, everyMs: number, deps: unknown[]): Poll<T> {
  const [data, setData] = useState<T | undefined>(undefined);
  const [error, setError] = useState<string | undefined>(undefined);
  const [loading, setLoading] = useState(true);
  const [at, setAt] = useState<number | undefined>(undefined);
  const generation = useRef(0);
  const loadRef = useRef(load);
  loadRef.current = load;

  const run = useCallback(() => {
    const g = ++generation.current;
    setLoading(true);
    loadRef
      .current()
      .then((d) => {
        if (g !== generation.current) return;
        setData(d);
        setError(undefined);
        setAt(Date.now());
      })
      .catch((e) => {
        if (g !== generation.current) return;
        setError(errorText(e));
      })
      .finally(() => {
        if (g === generation.current) setLoading(false);
      });
  }, []);

  useEffect(() => {
    setData(undefined);
    run();
    if (!everyMs) return;
    const t = window.setInterval(() => {
      if (!document.hidden) run();
    }, everyMs);
    return () => {
      window.clearInterval(t);
      generation.current++;
    };
  }, deps);

  return { data, error, loading, at, reload: run };
}

/** The hash route split into segments: `#/hosts/agent-1` → `["hosts", "agent-1"]`. */
export function useRoute(): string[] {
  const parse = () =>
    window.location.hash
      .replace(/^#\/?/, "")
      .split("?")[0]
      .split("/")
      .filter(Boolean)
      .map((s) => decodeURIComponent(s));
  const [route, setRoute] = useState(parse);
  useEffect(() => {
    const f = () => setRoute(parse());
    window.addEventListener("hashchange", f);
    return () => window.removeEventListener("hashchange", f);
  }, []);
  return route;
}

export function href(...segments: string[]): string {
  return `#/${segments.map(encodeURIComponent).join("/")}`;
}

/** Re-renders every `ms` so relative times ("12 s ago") stay true between polls. */
export function useNow(ms = 1000): number {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    const t = window.setInterval(() => setNow(Date.now()), ms);
    return () => window.clearInterval(t);
  }, [ms]);
  return now;
}

export function Time({ ms }: { ms: number | null | undefined }) {
  return ms ? <time dateTime={new Date(ms).toISOString()}>{fmtTime(ms)}</time> : <span>—</span>;
}

export function Ago({ ms, now }: { ms: number | null | undefined; now: number }) {
  return ms ? (
    <time dateTime={new Date(ms).toISOString()} title={fmtTime(ms)}>
      {fmtAgo(ms, now)}
    </time>
  ) : (
    <span>never</span>
  );
}

export function Badge({ kind, children }: { kind: string; children: ComponentChildren }) {
  return <span class={`badge badge-${kind}`}>{children}</span>;
}

export function Status({ poll }: { poll: { error?: string; loading: boolean; at?: number } }) {
  return (
    // Only a failure is announced: a live region that changed on every poll would keep
    // interrupting a screen reader.
    <p class="status" aria-live={poll.error ? "polite" : "off"}>
      {poll.error ? (
        <span class="error">{poll.error}</span>
      ) : poll.at ? (
        <span>Updated {fmtTime(poll.at).slice(11)}</span>
      ) : (
        <span>Loading…</span>
      )}
    </p>
  );
}

const SEVERITY_RANK: Record<string, number> = { low: 1, medium: 2, high: 3, critical: 4 };

export function severityRank(s: string): number {
  return SEVERITY_RANK[s] ?? 0;
}

export function Json({ value }: { value: unknown }) {
  return <pre class="json">{JSON.stringify(value, null, 2)}</pre>;
}

/** A one-line summary of a typed action, e.g. `kill_process *burn*`. */
export function actionSummary(a: Record<string, unknown> | null | undefined): string {
  if (!a) return "—";
  const type = String(a.type ?? "?");
  const target = a.pattern ?? a.name ?? a.unit ?? a.root ?? a.pid ?? "";
  return target === "" ? type : `${type} ${String(target)}`;
}
