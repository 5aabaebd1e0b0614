// Anomalies: a timeline of events across the fleet with a paged list, and one event's page
// with its score, severity, contributors against their expected ranges, the runbooks that
// match it, the onset context as a chart and the processes behind it; operators acknowledge it
// and say what it was (a verdict that changes detection), and everyone sees who was told.

import { useMemo, useState } from "preact/hooks";
import {
  api,
  canOperate,
  currentSession,
  get,
  type Ack,
  type Anomaly,
  type Citation,
  type Contributor,
  type Notification,
  type Runbook,
} from "../api";
import { Chart, type Line } from "../chart";
import {
  Badge,
  Json,
  Status,
  Time,
  errorText,
  fmtBytes,
  fmtDuration,
  fmtMetric,
  fmtTime,
  href,
  useNow,
  usePoll,
} from "../util";

const WINDOWS: { label: string; ms: number }[] = [
  { label: "1 h", ms: 3_600_000 },
  { label: "24 h", ms: 86_400_000 },
  { label: "7 d", ms: 7 * 86_400_000 },
];
const PAGE = 50;
const LANES = 20;

function hashQuery(): URLSearchParams {
  const q = window.location.hash.split("?")[1] ?? "";
  return new URLSearchParams(q);
}

export function AnomaliesPage() {
  const now = useNow(5000);
  const [windowMs, setWindowMs] = useState(WINDOWS[1].ms);
  const [status, setStatus] = useState("");
  const [minSeverity, setMinSeverity] = useState("");
  const [host, setHost] = useState(hashQuery().get("host") ?? "");
  const [offset, setOffset] = useState(0);
  const poll = usePoll(
    () =>
      get<{ anomalies: Anomaly[]; next_offset: number | null }>("/anomaly", {
        from: Date.now() - windowMs,
        status,
        min_severity: minSeverity,
        host: host.trim(),
        limit: PAGE,
        offset,
      }),
    5000,
    [windowMs, status, minSeverity, host, offset],
  );
  const events = poll.data?.anomalies ?? [];
  const from = now - windowMs;

  const lanes = useMemo(() => {
    const byHost = new Map<string, Anomaly[]>();
    for (const a of events) byHost.set(a.host_id, [...(byHost.get(a.host_id) ?? []), a]);
    return [...byHost.entries()].slice(0, LANES);
  }, [events]);

  const x = (ms: number) => Math.max(0, Math.min(1000, ((ms - from) / windowMs) * 1000));
  const set = (f: (v: string) => void) => (e: Event) => {
    f((e.currentTarget as HTMLInputElement).value);
    setOffset(0);
  };

  return (
    <section aria-labelledby="anomalies-title">
      <div class="page-head">
        <h1 id="anomalies-title">Anomalies</h1>
        <Status poll={poll} />
      </div>
      <div class="filters" role="search">
        <div class="range" role="group" aria-label="Time window">
          {WINDOWS.map((w) => (
            <button
              type="button"
              key={w.ms}
              aria-pressed={windowMs === w.ms}
              onClick={() => {
                setWindowMs(w.ms);
                setOffset(0);
              }}
            >
              {w.label}
            </button>
          ))}
        </div>
        <label>
          Status
          <select value={status} onChange={set(setStatus)}>
            <option value="">any</option>
            <option value="open">open</option>
            <option value="closed">closed</option>
          </select>
        </label>
        <label>
          Min severity
          <select value={minSeverity} onChange={set(setMinSeverity)}>
            <option value="">any</option>
            <option value="low">low</option>
            <option value="medium">medium</option>
            <option value="high">high</option>
            <option value="critical">critical</option>
          </select>
        </label>
        <label>
          Host
          <input type="search" value={host} onChange={set(setHost)} placeholder="host id" />
        </label>
      </div>

      <figure class="timeline" aria-label="Timeline of the events on this page, one lane per host">
        <svg viewBox={`0 0 1000 ${Math.max(1, lanes.length) * 22 + 20}`} preserveAspectRatio="none" role="presentation">
          {lanes.map(([hostId, list], i) => (
            <g key={hostId}>
              <line x1="0" x2="1000" y1={i * 22 + 11} y2={i * 22 + 11} class="lane" />
              {list.map((a) => (
                <a href={href("anomalies", a.id)} key={a.id}>
                  <rect
                    x={x(a.started_ms)}
                    width={Math.max(4, x(a.ended_ms ?? now) - x(a.started_ms))}
                    y={i * 22 + 4}
                    height="14"
                    rx="2"
                    class={`ev sev-fill-${a.severity}`}
                  >
                    <title>
                      {hostId}: {a.severity} {a.family} from {fmtTime(a.started_ms)}
                    </title>
                  </rect>
                </a>
              ))}
            </g>
          ))}
        </svg>
        <figcaption class="timeline-axis">
          <span>{fmtTime(from)}</span>
          <span>lanes: {lanes.map(([h]) => h).join(", ") || "none"}</span>
          <span>now</span>
        </figcaption>
      </figure>

      <div class="table-wrap">
        <table>
          <thead>
            <tr>
              <th scope="col">Started</th>
              <th scope="col">Host</th>
              <th scope="col">Family</th>
              <th scope="col">Severity</th>
              <th scope="col">Score (peak)</th>
              <th scope="col">Top metric</th>
              <th scope="col">Status</th>
              <th scope="col">Lasted</th>
            </tr>
          </thead>
          <tbody>
            {events.map((a) => (
              <tr key={a.id} data-anomaly={a.id} data-family={a.family}>
                <td>
                  <a href={href("anomalies", a.id)}>
                    <Time ms={a.started_ms} />
                  </a>
                </td>
                <td>
                  <a href={href("hosts", a.host_id)}>{a.host_id}</a>
                </td>
                <td>{a.family}</td>
                <td>
                  <Badge kind={a.severity}>{a.severity}</Badge>
                </td>
                <td>
                  {a.score.toFixed(2)} ({a.peak_score.toFixed(2)})
                </td>
                <td>{a.top_metric}</td>
                <td>
                  <Badge kind={a.status === "open" ? "open" : "closed"}>{a.status}</Badge>
                  {a.status === "open" && a.recovered_ms ? " recovered, held" : null}
                </td>
                <td>{fmtDuration((a.ended_ms ?? now) - a.started_ms)}</td>
              </tr>
            ))}
          </tbody>
        </table>
        {poll.data && events.length === 0 ? <p class="muted">No anomaly events in this window.</p> : null}
      </div>
      <nav class="pager" aria-label="Pages of events">
        <button type="button" disabled={offset === 0} onClick={() => setOffset(Math.max(0, offset - PAGE))}>
          Newer
        </button>
        <span>
          Events {events.length ? offset + 1 : 0}–{offset + events.length}
        </span>
        <button type="button" disabled={poll.data?.next_offset == null} onClick={() => setOffset(poll.data?.next_offset ?? offset)}>
          Older
        </button>
      </nav>
    </section>
  );
}

function ContributorRow({ c }: { c: Contributor }) {
  // Where the value sits against its expected range, on a scale that holds both.
  const lo = Math.min(c.expected_low, c.value);
  const hi = Math.max(c.expected_high, c.value);
  const span = hi - lo || 1;
  const pos = (v: number) => `${(((v - lo) / span) * 100).toFixed(1)}%`;
  return (
    <tr>
      <th scope="row">{c.metric}</th>
      <td>{fmtMetric(c.metric, c.value)}</td>
      <td>
        {fmtMetric(c.metric, c.expected_low)} – {fmtMetric(c.metric, c.expected_high)}
      </td>
      <td class="range-cell" aria-hidden="true">
        <div class="range-bar">
          <div class="range-expected" style={{ left: pos(c.expected_low), width: `calc(${pos(c.expected_high)} - ${pos(c.expected_low)})` }} />
          <div class="range-value" style={{ left: pos(c.value) }} />
        </div>
      </td>
      <td>{(c.contribution * 100).toFixed(0)} %</td>
    </tr>
  );
}

const VERDICTS: { verdict: string; label: string; what: string }[] = [
  { verdict: "true_positive", label: "Real problem", what: "recorded; never suppresses anything" },
  { verdict: "false_positive", label: "False alarm", what: "raises the floors of its top metrics on this host" },
  { verdict: "expected", label: "Planned work", what: "keeps this family quiet on this host at these hours every day" },
];

/** Acknowledge, give a verdict, and see what people were told. */
function Triage({
  a,
  ack,
  notifications,
  onDone,
}: {
  a: Anomaly;
  ack: Ack | null;
  notifications: Notification[];
  onDone: () => void;
}) {
  const operator = canOperate(currentSession());
  const [note, setNote] = useState("");
  const [busy, setBusy] = useState(false);
  const [message, setMessage] = useState<string | undefined>(undefined);
  const send = async (path: string, body: unknown, done: string) => {
    setBusy(true);
    setMessage(undefined);
    try {
      await api("POST", path, body);
      setMessage(done);
      setNote("");
      onDone();
    } catch (e) {
      setMessage(errorText(e));
    } finally {
      setBusy(false);
    }
  };
  const base = `/anomaly/${encodeURIComponent(a.id)}`;
  const verdicts = a.feedback ?? [];
  return (
    <>
      <h2>Acknowledgement and verdicts</h2>
      <p data-testid="ack">
        {ack ? (
          <>
            Acknowledged by <strong>{ack.by}</strong> <Time ms={ack.at_ms} />
            {ack.note ? `: ${ack.note}` : ""}
          </>
        ) : (
          <span class="muted">Nobody has acknowledged it.</span>
        )}
      </p>
      {verdicts.length ? (
        <ul class="verdicts" data-testid="verdicts">
          {verdicts.map((v) => (
            <li key={v.id} data-verdict={v.verdict}>
              {VERDICTS.find((x) => x.verdict === v.verdict)?.label ?? v.verdict} by {v.created_by}{" "}
              <Time ms={v.created_at_ms} />
              {v.policy ? ` (policy ${v.policy} r${v.policy_revision})` : ""}
              {v.undone ? " — undone" : ""}
            </li>
          ))}
        </ul>
      ) : null}
      {operator ? (
        <form
          class="inline"
          onSubmit={(e) => {
            e.preventDefault();
          }}
        >
          <label>
            Note (optional)
            <input value={note} maxLength={1000} onInput={(e) => setNote(e.currentTarget.value)} />
          </label>
          {ack ? null : (
            <button
              type="button"
              disabled={busy}
              onClick={() => void send(`${base}/ack`, { note: note.trim() }, "Acknowledged.")}
            >
              Acknowledge
            </button>
          )}
          {VERDICTS.map((v) => (
            <button
              key={v.verdict}
              type="button"
              class="link"
              title={v.what}
              disabled={busy}
              onClick={() =>
                void send(
                  `${base}/feedback`,
                  note.trim() ? { verdict: v.verdict, note: note.trim() } : { verdict: v.verdict },
                  `Recorded: ${v.label.toLowerCase()}.`,
                )
              }
            >
              {v.label}
            </button>
          ))}
        </form>
      ) : (
        <p class="muted">Acknowledging and verdicts need the operator role.</p>
      )}
      {message ? <p role="status">{message}</p> : null}
      <h2>Who was told</h2>
      {notifications.length ? (
        <div class="table-wrap">
          <table data-testid="notifications">
            <thead>
              <tr>
                <th scope="col">Channel</th>
                <th scope="col">What</th>
                <th scope="col">State</th>
                <th scope="col">Attempts</th>
                <th scope="col">When</th>
              </tr>
            </thead>
            <tbody>
              {notifications.map((n) => (
                <tr key={n.id} data-state={n.state}>
                  <td>
                    {n.channel} ({n.kind})
                  </td>
                  <td>{n.event}</td>
                  <td title={n.last_error}>
                    <Badge kind={n.state}>{n.state}</Badge>
                  </td>
                  <td>{n.attempts}</td>
                  <td>
                    <Time ms={n.sent_ms ?? n.created_ms} />
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      ) : (
        <p class="muted">No notification channel was told about it.</p>
      )}
    </>
  );
}

export function AnomalyPage({ id }: { id: string }) {
  const now = useNow(5000);
  const poll = usePoll(
    () =>
      get<{ anomaly: Anomaly; runbooks?: Citation[]; ack?: Ack | null; notifications?: Notification[] }>(
        `/anomaly/${encodeURIComponent(id)}`,
      ),
    5000,
    [id],
  );
  const a = poll.data?.anomaly;
  const runbooks = poll.data?.runbooks ?? [];

  const context = useMemo(() => {
    const series = a?.context?.series ?? [];
    if (series.length === 0 || !a) return null;
    const wanted = new Set([a.top_metric, ...a.contributors.map((c) => c.metric)]);
    const chosen = series.filter((s) => wanted.has(s.metric)).slice(0, 6);
    const use = chosen.length ? chosen : series.slice(0, 4);
    const start = Math.min(...use.map((s) => s.start_ms));
    const step = Math.min(...use.map((s) => s.step_ms)) || 1000;
    const end = Math.max(...use.map((s) => s.start_ms + s.step_ms * s.values.length));
    const x: number[] = [];
    for (let t = start; t < end; t += step) x.push(t);
    const lines: Line[] = use.map((s) => ({
      label: s.metric,
      values: x.map((t) => {
        const i = Math.floor((t - s.start_ms) / s.step_ms);
        return i >= 0 && i < s.values.length ? s.values[i] : null;
      }),
    }));
    return { x, lines, metric: use[0].metric, range: [start, Math.max(end, start + step)] as [number, number] };
  }, [a]);

  return (
    <section aria-labelledby="anomaly-title">
      <p class="crumbs">
        <a href="#/anomalies">Anomalies</a> / {id}
      </p>
      <div class="page-head">
        <h1 id="anomaly-title">
          {a ? `${a.family} anomaly on ${a.host_id}` : id}
        </h1>
        <Status poll={poll} />
      </div>
      {a ? (
        <>
          <dl class="facts">
            <div>
              <dt>Host</dt>
              <dd>
                <a href={href("hosts", a.host_id)}>{a.host_id}</a>
              </dd>
            </div>
            <div>
              <dt>Severity</dt>
              <dd>
                <Badge kind={a.severity}>{a.severity}</Badge>
              </dd>
            </div>
            <div>
              <dt>Score</dt>
              <dd data-testid="anomaly-score">
                {a.score.toFixed(3)} (peak {a.peak_score.toFixed(3)}; 0.5 is the threshold)
              </dd>
            </div>
            <div>
              <dt>Status</dt>
              <dd>
                <Badge kind={a.status}>{a.status}</Badge> {a.close_reason}
                {a.status === "open" && a.recovered_ms ? (
                  <>
                    recovered at <Time ms={a.recovered_ms} />; held open in case it comes back
                  </>
                ) : null}
              </dd>
            </div>
            <div>
              <dt>Started</dt>
              <dd>
                <Time ms={a.started_ms} />
              </dd>
            </div>
            <div>
              <dt>{a.ended_ms ? "Ended" : "Open for"}</dt>
              <dd>{a.ended_ms ? <Time ms={a.ended_ms} /> : fmtDuration(now - a.started_ms)}</dd>
            </div>
            <div>
              <dt>Model</dt>
              <dd>{a.model}</dd>
            </div>
          </dl>
          <h2>Contributors</h2>
          <div class="table-wrap">
            <table class="contributors">
              <thead>
                <tr>
                  <th scope="col">Metric</th>
                  <th scope="col">Value</th>
                  <th scope="col">Expected</th>
                  <th scope="col">
                    <span class="sr-only">Value against the expected range</span>
                  </th>
                  <th scope="col">Share</th>
                </tr>
              </thead>
              <tbody>
                {a.contributors.map((c) => (
                  <ContributorRow key={c.metric} c={c} />
                ))}
              </tbody>
            </table>
          </div>
          <Triage
            a={a}
            ack={poll.data?.ack ?? null}
            notifications={poll.data?.notifications ?? []}
            onDone={poll.reload}
          />
          <h2>Runbooks</h2>
          {runbooks.length ? (
            <ul class="runbooks" data-testid="runbooks">
              {runbooks.map((c) => (
                <RunbookItem key={c.id} c={c} />
              ))}
            </ul>
          ) : (
            <p class="muted">No runbook matches this event.</p>
          )}
          <h2>Onset context</h2>
          {context ? (
            <Chart
              title="Before and at the onset"
              testid="chart-context"
              x={context.x}
              lines={context.lines}
              range={context.range}
              marks={[{ id: a.id, startMs: a.started_ms, endMs: a.ended_ms, severity: a.severity, label: "this event" }]}
              fmt={(v) => fmtMetric(context.metric, v)}
              percent={context.lines.every((l) => l.label.endsWith("_pct"))}
            />
          ) : (
            <p class="muted">The event carries no context series.</p>
          )}
          <h2>Processes at the onset</h2>
          <div class="table-wrap">
            <table>
              <thead>
                <tr>
                  <th scope="col">PID</th>
                  <th scope="col">Name</th>
                  <th scope="col">CPU</th>
                  <th scope="col">Memory</th>
                </tr>
              </thead>
              <tbody>
                {(a.culprits.length ? a.culprits : (a.context?.processes ?? [])).slice(0, 10).map((p) => (
                  <tr key={p.pid}>
                    <td>{p.pid}</td>
                    <td title={p.cmdline}>{p.name}</td>
                    <td>{p.cpu_pct.toFixed(1)} %</td>
                    <td>{fmtBytes(p.rss_bytes)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
          <details>
            <summary>The event as the API returns it</summary>
            <Json value={{ ...a, context: undefined }} />
          </details>
        </>
      ) : null}
    </section>
  );
}

/** One cited runbook: its title and why it matches; opening it loads its text. */
function RunbookItem({ c }: { c: Citation }) {
  const [rb, setRb] = useState<Runbook | null>(null);
  const [error, setError] = useState<string | null>(null);
  const load = (open: boolean) => {
    if (!open || rb) return;
    get<{ runbook: Runbook }>(`/runbooks/${encodeURIComponent(c.id)}`)
      .then((r) => setRb(r.runbook))
      .catch((e: unknown) => setError(String(e)));
  };
  return (
    <li data-runbook={c.id}>
      <details onToggle={(e) => load((e.currentTarget as HTMLDetailsElement).open)}>
        <summary>
          {c.title} <span class="muted">({c.why})</span>
        </summary>
        {rb ? (
          <pre class="runbook-body">{rb.body}</pre>
        ) : error ? (
          <p class="error">{error}</p>
        ) : (
          <p class="muted">Loading…</p>
        )}
      </details>
    </li>
  );
}
