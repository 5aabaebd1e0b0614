// Host: its details, charts of CPU, memory, disk, network and pressure over a picked time
// range (rollup min/mean/max, anomaly events shaded), top processes, the policies it runs
// and its recent actions.

import { useMemo, useState } from "preact/hooks";
import { get, type Action, type Anomaly, type Host, type PolicyStatus, type PolicySummary, type Process } from "../api";
import { Chart, bucketize, loadRollups, type Line, type Mark } from "../chart";
import { Ago, Badge, Status, Time, actionSummary, fmtBytes, fmtChartTime, fmtMetric, href, useNow, usePoll } from "../util";

const RANGES: { label: string; ms: number }[] = [
  { label: "15 min", ms: 15 * 60_000 },
  { label: "1 h", ms: 3_600_000 },
  { label: "6 h", ms: 6 * 3_600_000 },
  { label: "24 h", ms: 24 * 3_600_000 },
  { label: "7 d", ms: 7 * 24 * 3_600_000 },
];

interface ChartSpec {
  id: string;
  title: string;
  metrics: string[];
  /** Anomaly families shaded on this chart. */
  families: string[];
  /** Draw min–max bands (one metric, host-wide). */
  band?: boolean;
  /** Devices to leave out. */
  skipDevices?: string[];
}

const CHARTS: ChartSpec[] = [
  { id: "cpu", title: "CPU used (%)", metrics: ["cpu.total_pct"], families: ["cpu", "host"], band: true },
  { id: "memory", title: "Memory used (%)", metrics: ["mem.used_pct"], families: ["memory"], band: true },
  { id: "disk", title: "Disk space used (%)", metrics: ["disk.used_pct"], families: ["disk_space"] },
  { id: "diskio", title: "Disk busy (%)", metrics: ["disk.busy_pct"], families: ["disk_io"] },
  { id: "network", title: "Network (bytes/s)", metrics: ["net.rx_bytes_per_s", "net.tx_bytes_per_s"], families: ["network"], skipDevices: ["lo"] },
  { id: "pressure", title: "Pressure, some (%)", metrics: ["psi.cpu.some_pct", "psi.memory.some_pct", "psi.io.some_pct"], families: ["cpu", "memory", "disk_io"] },
];

const BUCKETS = 600;
const MAX_LINES = 6;

interface HostDetail {
  host: Host;
  latest: { metric: string; device: string; ts_ms: number; value: number }[];
  top_processes: { ts_ms: number; processes: Process[] };
}

interface ChartData {
  spec: ChartSpec;
  x: number[];
  lines: Line[];
  band?: { min: (number | null)[]; max: (number | null)[] };
  truncated: boolean;
}

async function loadChart(host: string, spec: ChartSpec, from: number, to: number): Promise<ChartData> {
  const lines: Line[] = [];
  let band: ChartData["band"];
  let x: number[] = [];
  let truncated = false;
  for (const metric of spec.metrics) {
    const r = await loadRollups(host, metric, from, to);
    truncated ||= r.truncated;
    const b = bucketize(r.points, from, to, BUCKETS);
    x = b.x;
    const devices = [...b.byDevice.keys()].filter((d) => !(spec.skipDevices ?? []).includes(d)).sort();
    for (const device of devices.slice(0, MAX_LINES)) {
      const s = b.byDevice.get(device)!;
      const name = spec.metrics.length > 1 ? metric.replace(/^(psi|net)\./, "").replace(/_bytes_per_s$|_pct$/, "") : metric;
      lines.push({ label: device ? `${name} ${device}` : name, values: s.mean });
      if (spec.band && !band) band = { min: s.min, max: s.max };
    }
  }
  if (x.length === 0) x = bucketize([], from, to, BUCKETS).x;
  return { spec, x, lines, band, truncated };
}

// The range picked last, kept while the console is open (moving between hosts keeps it).
let lastRangeMs = RANGES[1].ms;

export function HostPage({ id }: { id: string }) {
  const now = useNow(5000);
  const [rangeMs, setRange] = useState(lastRangeMs);
  const setRangeMs = (ms: number) => {
    lastRangeMs = ms;
    setRange(ms);
  };
  const detail = usePoll(() => get<HostDetail>(`/hosts/${encodeURIComponent(id)}`), 5000, [id]);

  const charts = usePoll(
    async () => {
      const to = Date.now();
      const from = to - rangeMs;
      const [data, events, open] = await Promise.all([
        Promise.all(CHARTS.map((c) => loadChart(id, c, from, to))),
        get<{ anomalies: Anomaly[] }>("/anomaly", { host: id, from, limit: 200 }),
        get<{ anomalies: Anomaly[] }>("/anomaly", { host: id, status: "open", limit: 200 }),
      ]);
      const byId = new Map<string, Anomaly>();
      for (const a of [...events.anomalies, ...open.anomalies]) byId.set(a.id, a);
      return { data, events: [...byId.values()], from, to };
    },
    rangeMs <= 3_600_000 ? 5000 : 30_000,
    [id, rangeMs],
  );

  const marksByChart = useMemo(() => {
    const m = new Map<string, Mark[]>();
    const { from, to } = charts.data ?? { from: 0, to: 0 };
    for (const spec of CHARTS) {
      m.set(
        spec.id,
        (charts.data?.events ?? [])
          .filter((a) => spec.families.includes(a.family))
          .map((a) => ({
            id: a.id,
            startMs: a.started_ms,
            endMs: a.ended_ms,
            severity: a.severity,
            // as the chart's axis writes times; with the date when it started over a day ago
            label: `${a.severity} ${a.family} anomaly at ${fmtChartTime(a.started_ms, Math.max(to - from, to - a.started_ms))}${a.status === "open" ? " (open)" : ""}: ${a.top_metric}`,
          })),
      );
    }
    return m;
  }, [charts.data]);

  const h = detail.data?.host;
  return (
    <section aria-labelledby="host-title">
      <p class="crumbs">
        <a href="#/fleet">Fleet</a> / {id}
      </p>
      <div class="page-head">
        <h1 id="host-title">{id}</h1>
        {h ? (
          <Badge kind={h.revoked ? "revoked" : h.connected ? "connected" : "disconnected"}>
            {h.revoked ? "revoked" : h.connected ? "connected" : "disconnected"}
          </Badge>
        ) : null}
        <Status poll={detail} />
      </div>
      {h ? (
        <dl class="facts">
          <div>
            <dt>Hostname</dt>
            <dd>{h.hostname || "—"}</dd>
          </div>
          <div>
            <dt>OS / kernel</dt>
            <dd>
              {h.os || "—"} / {h.kernel || "—"}
            </dd>
          </div>
          <div>
            <dt>Agent</dt>
            <dd>{h.agent_version || "—"}</dd>
          </div>
          <div>
            <dt>Stream</dt>
            <dd>{h.transport === "quic" ? "QUIC" : h.transport === "grpc" ? "gRPC over TCP" : "—"}</dd>
          </div>
          <div>
            <dt>Detector</dt>
            <dd>{h.detector?.state || "—"}</dd>
          </div>
          <div>
            <dt>Last seen</dt>
            <dd>
              <Ago ms={h.last_seen_ms} now={now} />
            </dd>
          </div>
          <div>
            <dt>Certificate expires</dt>
            <dd>
              <Time ms={h.cert_not_after_ms} />
            </dd>
          </div>
          <div>
            <dt>Labels</dt>
            <dd>
              {Object.entries(h.labels).map(([k, v]) => (
                <span class="chip" key={k}>
                  {k}={v}
                </span>
              ))}
            </dd>
          </div>
        </dl>
      ) : null}

      <div class="range" role="group" aria-label="Time range">
        {RANGES.map((r) => (
          <button type="button" key={r.ms} aria-pressed={rangeMs === r.ms} onClick={() => setRangeMs(r.ms)}>
            {r.label}
          </button>
        ))}
        <Status poll={charts} />
      </div>
      <div class="charts">
        {(charts.data?.data ?? []).map((c) => (
          <div key={c.spec.id}>
            <Chart
              title={c.spec.title}
              testid={`chart-${c.spec.id}`}
              x={c.x}
              lines={c.lines}
              band={c.band}
              marks={marksByChart.get(c.spec.id)}
              range={[charts.data!.from, charts.data!.to]}
              fmt={(v) => fmtMetric(c.spec.metrics[0], v)}
              percent={c.spec.metrics[0].endsWith("_pct")}
            />
            {c.truncated ? <p class="muted">Only the oldest windows of this range were loaded; pick a shorter range.</p> : null}
          </div>
        ))}
      </div>

      <div class="two">
        <section aria-labelledby="procs-title">
          <h2 id="procs-title">Top processes</h2>
          <p class="muted">
            at <Time ms={detail.data?.top_processes.ts_ms} />
          </p>
          <div class="table-wrap">
            <table>
              <thead>
                <tr>
                  <th scope="col">PID</th>
                  <th scope="col">Name</th>
                  <th scope="col">CPU</th>
                  <th scope="col">Memory</th>
                  <th scope="col">Unit</th>
                </tr>
              </thead>
              <tbody>
                {(detail.data?.top_processes.processes ?? []).slice(0, 15).map((p) => (
                  <tr key={p.pid}>
                    <td>{p.pid}</td>
                    <td title={p.cmdline}>{p.name}</td>
                    <td>{p.cpu_pct.toFixed(1)} %</td>
                    <td>{fmtBytes(p.rss_bytes)}</td>
                    <td class="clip" title={p.unit}>{p.unit || "—"}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        </section>
        <HostPolicies id={id} />
      </div>
      <HostActions id={id} />
    </section>
  );
}

function HostPolicies({ id }: { id: string }) {
  const poll = usePoll(
    async () => {
      const list = await get<{ policies: PolicySummary[] }>("/policies");
      const states = await Promise.all(
        list.policies.map(async (p) => {
          const s = await get<PolicyStatus>(`/policies/${encodeURIComponent(p.name)}/status`);
          return { name: p.name, state: s.hosts.find((x) => x.host_id === id) };
        }),
      );
      return states.filter((s) => s.state);
    },
    30_000,
    [id],
  );
  return (
    <section aria-labelledby="host-policies-title">
      <h2 id="host-policies-title">Policies</h2>
      <Status poll={poll} />
      {poll.data && poll.data.length === 0 ? <p class="muted">No policy targets this host.</p> : null}
      <ul class="plain">
        {(poll.data ?? []).map(({ name, state }) => (
          <li key={name} data-policy={name}>
            <a href={href("policies", name)}>{name}</a>: meant r{state!.desired_revision}, applied r{state!.applied_revision}{" "}
            {state!.error ? <Badge kind="critical">{state!.error}</Badge> : state!.in_sync ? <Badge kind="connected">in sync</Badge> : <Badge kind="medium">pending</Badge>}
          </li>
        ))}
      </ul>
    </section>
  );
}

function HostActions({ id }: { id: string }) {
  const poll = usePoll(() => get<{ actions: Action[] }>("/remediation/actions", { host: id, limit: 20 }), 5000, [id]);
  return (
    <section aria-labelledby="host-actions-title">
      <h2 id="host-actions-title">Recent actions</h2>
      <Status poll={poll} />
      <div class="table-wrap">
        <table>
          <thead>
            <tr>
              <th scope="col">Created</th>
              <th scope="col">Rule</th>
              <th scope="col">Action</th>
              <th scope="col">Mode</th>
              <th scope="col">State</th>
            </tr>
          </thead>
          <tbody>
            {(poll.data?.actions ?? []).map((a) => (
              <tr key={a.id}>
                <td>
                  <Time ms={a.created_at_ms} />
                </td>
                <td>{a.rule}</td>
                <td>{actionSummary(a.action)}</td>
                <td>{a.mode}</td>
                <td>
                  <Badge kind={a.state}>{a.state}</Badge>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      <p>
        <a href="#/remediation">All remediation</a>
      </p>
    </section>
  );
}
