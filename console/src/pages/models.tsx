// Models: the registry's versions (number, version, created, the state of their rollouts)
// and, for one version, the newest model rollout and what each host was meant to run and
// reports running. Uploads and rollouts stay in the API and `scoctl` (they need the files).

import { useState } from "preact/hooks";
import { get, type ModelStatus, type ModelVersion, type Rollout } from "../api";
import { Badge, Status, Time, fmtBytes, href, usePoll } from "../util";

function stateKind(state: Rollout["state"]): string {
  return state === "complete" ? "connected" : state === "stopped" ? "critical" : "medium";
}

function targetText(r: Rollout): string {
  const labels = Object.entries(r.target?.labels ?? {}).map(([k, v]) => `${k}=${v}`);
  const hosts = r.target?.hosts ?? [];
  const parts = [...labels, ...(hosts.length ? [`hosts ${hosts.join(", ")}`] : [])];
  return parts.length ? parts.join(", ") : "every host";
}

/** The name of model number `n`: its version, or the agents' own model for 0. */
function nameOf(n: number, models: ModelVersion[]): string {
  if (n === 0) return "own model";
  return models.find((m) => m.number === n)?.version ?? `#${n}`;
}

function RolloutLine({ r, models }: { r: Rollout; models: ModelVersion[] }) {
  return (
    <p data-rollout-state={r.state} data-rollout-number={r.revision}>
      <Badge kind={stateKind(r.state)}>{r.state}</Badge> {nameOf(r.revision, models)} (from {nameOf(r.previous_revision, models)}), started{" "}
      <Time ms={r.started_at_ms} /> by {r.started_by}; for {targetText(r)}; canary {r.canary_hosts.length ? r.canary_hosts.join(", ") : "none"}
      {r.canary_hosts.length ? ` for ${r.canary_secs} s, at most ${r.max_new_anomalies} new anomaly events` : ""}
      {r.reason ? <span class="muted" data-rollout-reason> — {r.reason}</span> : null}
    </p>
  );
}

function HostStates({ version, models }: { version: string; models: ModelVersion[] }) {
  const poll = usePoll(() => get<ModelStatus>(`/models/${encodeURIComponent(version)}/status`), 5000, [version]);
  const history = usePoll(() => get<{ rollouts: Rollout[] }>(`/models/${encodeURIComponent(version)}`), 10_000, [version]);
  const hosts = poll.data?.hosts ?? [];
  const rollouts = history.data?.rollouts ?? [];
  return (
    <section aria-labelledby="model-hosts-title" data-model-status={version}>
      <h2 id="model-hosts-title">Hosts and {version}</h2>
      <Status poll={poll} />
      {rollouts.length ? (
        <ul class="plain" aria-label={`rollouts of ${version}`}>
          {rollouts.map((r) => (
            <li key={r.id}>
              <RolloutLine r={r} models={models} />
            </li>
          ))}
        </ul>
      ) : (
        <p class="muted">{version} was never rolled out.</p>
      )}
      <div class="table-wrap">
        <table>
          <thead>
            <tr>
              <th scope="col">Host</th>
              <th scope="col">Meant</th>
              <th scope="col">Running</th>
              <th scope="col">Canary</th>
              <th scope="col">State</th>
            </tr>
          </thead>
          <tbody>
            {hosts.map((h) => (
              <tr key={h.host_id} data-model-host={h.host_id} data-applied={h.applied_number} data-in-sync={String(h.in_sync)}>
                <td>
                  <a href={href("hosts", h.host_id)}>{h.host_id}</a>
                </td>
                <td>{nameOf(h.desired_number, models)}</td>
                <td>
                  {h.applied_model || nameOf(h.applied_number, models)} {h.applied_at_ms ? <Time ms={h.applied_at_ms} /> : null}
                </td>
                <td>{h.canary ? "yes" : "no"}</td>
                <td>
                  {h.error ? (
                    <Badge kind="critical">{h.error}</Badge>
                  ) : h.in_sync ? (
                    <Badge kind="connected">in sync</Badge>
                  ) : (
                    <Badge kind="medium">pending</Badge>
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
        {poll.data && hosts.length === 0 ? <p class="muted">No host is meant to run it or reported on it.</p> : null}
      </div>
    </section>
  );
}

export function ModelsPage() {
  const poll = usePoll(() => get<{ models: ModelVersion[]; rollout: Rollout | null }>("/models"), 5000, []);
  const [chosen, setChosen] = useState<string | undefined>(undefined);
  const models = poll.data?.models ?? [];
  const rollout = poll.data?.rollout ?? null;
  // the version whose hosts are shown: the chosen one, else that of the newest rollout
  const shown = chosen ?? (rollout ? models.find((m) => m.number === rollout.revision)?.version : undefined) ?? models[0]?.version;
  return (
    <section aria-labelledby="models-title">
      <div class="page-head">
        <h1 id="models-title">Models</h1>
        <Status poll={poll} />
      </div>
      <section aria-labelledby="model-rollout-title">
        <h2 id="model-rollout-title">Newest rollout</h2>
        {rollout ? <RolloutLine r={rollout} models={models} /> : <p class="muted">No model was rolled out: every agent runs its own.</p>}
      </section>
      <section aria-labelledby="model-versions-title">
        <h2 id="model-versions-title">Versions ({models.length})</h2>
        <div class="table-wrap">
          <table>
            <thead>
              <tr>
                <th scope="col">Number</th>
                <th scope="col">Version</th>
                <th scope="col">Created</th>
                <th scope="col">Size</th>
                <th scope="col">sha256</th>
                <th scope="col">Rollout</th>
                <th scope="col">Hosts</th>
              </tr>
            </thead>
            <tbody>
              {models.map((m) => {
                const newest = rollout && rollout.revision === m.number ? rollout : null;
                return (
                  <tr key={m.number} data-model={m.version} data-number={m.number}>
                    <td>{m.number}</td>
                    <td>
                      {m.name} <strong>{m.version}</strong>
                    </td>
                    <td>
                      <Time ms={m.created_at_ms} /> <span class="muted">by {m.created_by}</span>
                    </td>
                    <td>{fmtBytes(m.size_bytes)}</td>
                    <td>
                      <code title={m.sha256}>{m.sha256.slice(0, 12)}</code>
                    </td>
                    <td data-model-rollout={newest ? newest.state : ""}>
                      {newest ? <Badge kind={stateKind(newest.state)}>{newest.state}</Badge> : <span class="muted">—</span>}
                    </td>
                    <td>
                      <button type="button" class="link" aria-pressed={shown === m.version} onClick={() => setChosen(m.version)}>
                        per host
                      </button>
                    </td>
                  </tr>
                );
              })}
            </tbody>
          </table>
          {poll.data && models.length === 0 ? <p class="muted">No model uploaded yet (`POST /models`).</p> : null}
        </div>
      </section>
      {shown ? <HostStates version={shown} models={models} /> : null}
    </section>
  );
}
