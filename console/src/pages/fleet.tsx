// Fleet: every host with its connection state, labels, agent version, certificate expiry,
// open anomalies and last contact. Filtering, sorting and paging happen in the browser on
// the one `/hosts` answer, and only one page of rows is rendered, so thousands of hosts
// stay responsive.

import { useMemo, useState } from "preact/hooks";
import { get, type Anomaly, type Host } from "../api";
import { Ago, Badge, Status, href, severityRank, useNow, usePoll, fmtTime } from "../util";

const PAGE = 50;
const DAY = 86_400_000;

interface OpenCount {
  count: number;
  worst: string;
}

type SortKey = "state" | "host" | "version" | "cert" | "anomalies" | "seen";

function hostState(h: Host): "revoked" | "connected" | "disconnected" {
  return h.revoked ? "revoked" : h.connected ? "connected" : "disconnected";
}

export async function openAnomalies(host?: string): Promise<{ byHost: Map<string, OpenCount>; more: boolean }> {
  const r = await get<{ anomalies: Anomaly[]; next_offset: number | null }>("/anomaly", {
    status: "open",
    host,
    limit: 1000,
  });
  const byHost = new Map<string, OpenCount>();
  for (const a of r.anomalies) {
    const c = byHost.get(a.host_id) ?? { count: 0, worst: "low" };
    c.count++;
    if (severityRank(a.severity) > severityRank(c.worst)) c.worst = a.severity;
    byHost.set(a.host_id, c);
  }
  return { byHost, more: r.next_offset !== null };
}

export function FleetPage() {
  const now = useNow(5000);
  const poll = usePoll(
    async () => {
      const [hosts, open] = await Promise.all([get<{ hosts: Host[] }>("/hosts"), openAnomalies()]);
      return { hosts: hosts.hosts, ...open };
    },
    5000,
    [],
  );
  const [filter, setFilter] = useState("");
  const [state, setState] = useState("all");
  const [onlyAnomalous, setOnlyAnomalous] = useState(false);
  const [sort, setSort] = useState<{ key: SortKey; desc: boolean }>({ key: "anomalies", desc: true });
  const [page, setPage] = useState(0);

  const rows = useMemo(() => {
    const hosts = poll.data?.hosts ?? [];
    const open = poll.data?.byHost ?? new Map<string, OpenCount>();
    const needle = filter.trim().toLowerCase();
    const list = hosts.filter((h) => {
      if (state !== "all" && hostState(h) !== state) return false;
      if (onlyAnomalous && !open.get(h.id)) return false;
      if (!needle) return true;
      const text = `${h.id} ${h.hostname} ${h.agent_version} ${h.os} ${Object.entries(h.labels)
        .map(([k, v]) => `${k}=${v}`)
        .join(" ")}`.toLowerCase();
      return needle.split(/\s+/).every((w) => text.includes(w));
    });
    const key = (h: Host): string | number => {
      switch (sort.key) {
        case "state":
          return hostState(h);
        case "host":
          return h.id;
        case "version":
          return h.agent_version;
        case "cert":
          return h.cert_not_after_ms || Number.MAX_SAFE_INTEGER;
        case "anomalies": {
          const c = open.get(h.id);
          return c ? c.count * 10 + severityRank(c.worst) : 0;
        }
        case "seen":
          return h.last_seen_ms;
      }
    };
    list.sort((a, b) => {
      const ka = key(a);
      const kb = key(b);
      const c = ka < kb ? -1 : ka > kb ? 1 : a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
      return sort.desc ? -c : c;
    });
    return list;
  }, [poll.data, filter, state, onlyAnomalous, sort]);

  const pages = Math.max(1, Math.ceil(rows.length / PAGE));
  const current = Math.min(page, pages - 1);
  const shown = rows.slice(current * PAGE, current * PAGE + PAGE);
  const open = poll.data?.byHost ?? new Map<string, OpenCount>();
  const hosts = poll.data?.hosts ?? [];
  const connected = hosts.filter((h) => h.connected && !h.revoked).length;

  const header = (key: SortKey, label: string) => {
    const active = sort.key === key;
    return (
      <th scope="col" aria-sort={active ? (sort.desc ? "descending" : "ascending") : "none"}>
        <button
          type="button"
          class="sort"
          onClick={() => {
            setSort({ key, desc: active ? !sort.desc : key === "anomalies" || key === "seen" });
            setPage(0);
          }}
        >
          {label}
          <span aria-hidden="true">{active ? (sort.desc ? " ▼" : " ▲") : ""}</span>
        </button>
      </th>
    );
  };

  return (
    <section aria-labelledby="fleet-title">
      <div class="page-head">
        <h1 id="fleet-title">Fleet</h1>
        <p class="summary" data-testid="fleet-summary">
          {hosts.length} hosts · {connected} connected · {[...open.values()].reduce((n, c) => n + c.count, 0)} open anomalies
          {poll.data?.more ? " (first 1,000 counted)" : ""}
        </p>
        <Status poll={poll} />
      </div>
      <div class="filters" role="search">
        <label>
          Filter
          <input
            type="search"
            placeholder="id, hostname, label=value, version"
            value={filter}
            onInput={(e) => {
              setFilter(e.currentTarget.value);
              setPage(0);
            }}
          />
        </label>
        <label>
          State
          <select
            value={state}
            onChange={(e) => {
              setState(e.currentTarget.value);
              setPage(0);
            }}
          >
            <option value="all">all</option>
            <option value="connected">connected</option>
            <option value="disconnected">disconnected</option>
            <option value="revoked">revoked</option>
          </select>
        </label>
        <label class="check">
          <input
            type="checkbox"
            checked={onlyAnomalous}
            onChange={(e) => {
              setOnlyAnomalous(e.currentTarget.checked);
              setPage(0);
            }}
          />
          with open anomalies
        </label>
      </div>
      <div class="table-wrap">
        <table class="hosts">
          <caption class="sr-only">Hosts, {rows.length} matching</caption>
          <thead>
            <tr>
              {header("state", "State")}
              {header("host", "Host")}
              <th scope="col">Labels</th>
              {header("version", "Agent")}
              {header("cert", "Cert expires")}
              {header("anomalies", "Open anomalies")}
              {header("seen", "Last seen")}
            </tr>
          </thead>
          <tbody>
            {shown.map((h) => {
              const st = hostState(h);
              const c = open.get(h.id);
              const certLeft = h.cert_not_after_ms ? h.cert_not_after_ms - now : null;
              return (
                <tr key={h.id} data-host={h.id}>
                  <td data-state={st}>
                    <Badge kind={st}>{st}</Badge>
                  </td>
                  <td>
                    <a href={href("hosts", h.id)}>{h.id}</a>
                    {h.hostname && h.hostname !== h.id ? <div class="muted">{h.hostname}</div> : null}
                  </td>
                  <td>
                    {Object.entries(h.labels).map(([k, v]) => (
                      <span class="chip" key={k}>
                        {k}={v}
                      </span>
                    ))}
                  </td>
                  <td>{h.agent_version || "—"}</td>
                  <td title={fmtTime(h.cert_not_after_ms)}>
                    {certLeft === null ? (
                      "—"
                    ) : certLeft < 0 ? (
                      <Badge kind="critical">expired</Badge>
                    ) : (
                      <span class={certLeft < 14 * DAY ? "warn" : ""}>
                        <Ago ms={h.cert_not_after_ms} now={now} />
                      </span>
                    )}
                  </td>
                  <td data-open-anomalies={c?.count ?? 0}>
                    {c ? (
                      <a href={`#/anomalies?host=${encodeURIComponent(h.id)}`}>
                        <Badge kind={c.worst}>
                          {c.count} {c.worst}
                        </Badge>
                      </a>
                    ) : (
                      <span class="muted">0</span>
                    )}
                  </td>
                  <td>
                    <Ago ms={h.last_seen_ms} now={now} />
                  </td>
                </tr>
              );
            })}
          </tbody>
        </table>
        {poll.data && rows.length === 0 ? <p class="muted">No host matches.</p> : null}
      </div>
      <nav class="pager" aria-label="Pages of hosts">
        <button type="button" disabled={current === 0} onClick={() => setPage(current - 1)}>
          Previous
        </button>
        <span>
          Page {current + 1} of {pages} · {rows.length} hosts
        </span>
        <button type="button" disabled={current >= pages - 1} onClick={() => setPage(current + 1)}>
          Next
        </button>
      </nav>
    </section>
  );
}
