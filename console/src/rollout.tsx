// What the policy and model pages share about rollouts: the badge colour of a rollout's
// state, the per-host table (meant, running, canary, in sync or the error) and the canary
// fields of the forms that start one.

import type { ComponentChildren } from "preact";
import type { Rollout } from "./api";
import { Badge, href } from "./util";

export function stateKind(state: Rollout["state"]): string {
  return state === "complete" ? "connected" : state === "stopped" ? "critical" : "medium";
}

/** One host's row: what is meant for it and what it runs, as each page names them. */
export interface HostRow {
  host: string;
  meant: ComponentChildren;
  running: ComponentChildren;
  canary: boolean;
  error: string;
  inSync: boolean;
  /** `data-*` attributes the page's tests find the row by. */
  attrs: Record<string, string | number>;
}

export function HostRolloutTable({ rows, runningLabel, empty }: { rows: HostRow[] | undefined; runningLabel: string; empty: string }) {
  return (
    <div class="table-wrap">
      <table>
        <thead>
          <tr>
            <th scope="col">Host</th>
            <th scope="col">Meant</th>
            <th scope="col">{runningLabel}</th>
            <th scope="col">Canary</th>
            <th scope="col">State</th>
          </tr>
        </thead>
        <tbody>
          {(rows ?? []).map((h) => (
            <tr key={h.host} {...h.attrs}>
              <td>
                <a href={href("hosts", h.host)}>{h.host}</a>
              </td>
              <td>{h.meant}</td>
              <td>{h.running}</td>
              <td>{h.canary ? "yes" : "no"}</td>
              <td>{h.error ? <Badge kind="critical">{h.error}</Badge> : h.inSync ? <Badge kind="connected">in sync</Badge> : <Badge kind="medium">pending</Badge>}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {rows && rows.length === 0 ? <p class="muted">{empty}</p> : null}
    </div>
  );
}

/** A rollout's canary settings, with the server's defaults. */
export interface Canary {
  canary_percent: number;
  canary_secs: number;
  max_new_anomalies: number;
}

export const DEFAULT_CANARY: Canary = { canary_percent: 10, canary_secs: 300, max_new_anomalies: 3 };

export function CanaryFields({ value, onChange, percent = true }: { value: Canary; onChange: (c: Canary) => void; percent?: boolean }) {
  const field = (key: keyof Canary) => (e: Event) => onChange({ ...value, [key]: Number((e.currentTarget as HTMLInputElement).value) });
  return (
    <>
      {percent ? (
        <label>
          Canary %
          <input name="canary_percent" type="number" min={0} max={100} value={value.canary_percent} onInput={field("canary_percent")} />
        </label>
      ) : null}
      <label>
        Canary seconds
        <input name="canary_secs" type="number" min={0} value={value.canary_secs} onInput={field("canary_secs")} />
      </label>
      <label>
        Max new anomalies
        <input name="max_new_anomalies" type="number" min={0} value={value.max_new_anomalies} onInput={field("max_new_anomalies")} />
      </label>
    </>
  );
}
