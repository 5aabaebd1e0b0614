// Audit (admins): who did what to which host, newest first.

import { useState } from "preact/hooks";
import { get, type AuditEntry } from "../api";
import { Json, Status, Time, href, usePoll } from "../util";

export function AuditPage() {
  const [actor, setActor] = useState("");
  const [action, setAction] = useState("");
  const [host, setHost] = useState("");
  const poll = usePoll(
    () => get<{ entries: AuditEntry[] }>("/audit", { actor: actor.trim(), action: action.trim(), host: host.trim(), limit: 200 }),
    10_000,
    [actor, action, host],
  );
  return (
    <section aria-labelledby="audit-title">
      <div class="page-head">
        <h1 id="audit-title">Audit log</h1>
        <Status poll={poll} />
      </div>
      <div class="filters" role="search">
        <label>
          Actor
          <input type="search" value={actor} onChange={(e) => setActor(e.currentTarget.value)} placeholder="admin, agent:…" />
        </label>
        <label>
          Action
          <input type="search" value={action} onChange={(e) => setAction(e.currentTarget.value)} placeholder="remediation.approve" />
        </label>
        <label>
          Host
          <input type="search" value={host} onChange={(e) => setHost(e.currentTarget.value)} placeholder="host id" />
        </label>
      </div>
      <div class="table-wrap">
        <table>
          <thead>
            <tr>
              <th scope="col">When</th>
              <th scope="col">Actor</th>
              <th scope="col">Action</th>
              <th scope="col">Host</th>
              <th scope="col">Result</th>
              <th scope="col">Detail</th>
            </tr>
          </thead>
          <tbody>
            {(poll.data?.entries ?? []).map((e) => (
              <tr key={e.id} data-audit={e.action} data-actor={e.actor}>
                <td>
                  <Time ms={e.at_ms} />
                </td>
                <td>{e.actor}</td>
                <td>{e.action}</td>
                <td>{e.host_id ? <a href={href("hosts", e.host_id)}>{e.host_id}</a> : "—"}</td>
                <td>{e.result}</td>
                <td>
                  <details>
                    <summary>detail</summary>
                    <Json value={e.detail} />
                  </details>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </section>
  );
}
