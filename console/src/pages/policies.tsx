// Policies: the list with each one's newest revision and rollout; one policy's revisions
// with a diff between any two, its rollouts, the rollout state per host, and (admins) a
// form that starts a rollout.

import { useEffect, useMemo, useState } from "preact/hooks";
import { api, get, isAdmin, type PolicyStatus, type PolicySummary, type Revision, type Rollout, type Session } from "../api";
import { Badge, Status, Time, errorText, href, usePoll } from "../util";
import { diffLines } from "../diff";
import { CanaryFields, DEFAULT_CANARY, HostRolloutTable, stateKind } from "../rollout";

export function PoliciesPage() {
  const poll = usePoll(() => get<{ policies: PolicySummary[] }>("/policies"), 10_000, []);
  return (
    <section aria-labelledby="policies-title">
      <div class="page-head">
        <h1 id="policies-title">Policies</h1>
        <Status poll={poll} />
      </div>
      <div class="table-wrap">
        <table>
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Newest revision</th>
              <th scope="col">Written</th>
              <th scope="col">Rollout</th>
            </tr>
          </thead>
          <tbody>
            {(poll.data?.policies ?? []).map((p) => (
              <tr key={p.name} data-policy={p.name}>
                <td>
                  <a href={href("policies", p.name)}>{p.name}</a>
                </td>
                <td>r{p.latest_revision}</td>
                <td>
                  <Time ms={p.created_at_ms} /> by {p.created_by}
                </td>
                <td>{p.rollout ? <RolloutBadge r={p.rollout} /> : <span class="muted">not rolled out</span>}</td>
              </tr>
            ))}
          </tbody>
        </table>
        {poll.data && poll.data.policies.length === 0 ? <p class="muted">No policies yet (`scoctl apply` or `POST /policies`).</p> : null}
      </div>
    </section>
  );
}

function RolloutBadge({ r }: { r: Rollout }) {
  return (
    <span>
      <Badge kind={stateKind(r.state)}>{r.state}</Badge> r{r.revision}
      {r.reason ? <span class="muted"> {r.reason}</span> : null}
    </span>
  );
}

function pretty(doc: unknown): string {
  return JSON.stringify(doc, null, 2) ?? "";
}

function Diff({ revisions }: { revisions: Revision[] }) {
  const [a, setA] = useState(0);
  const [b, setB] = useState(0);
  useEffect(() => {
    // Default: the newest revision against the one before it.
    const n = revisions.length;
    setB(revisions[n - 1]?.revision ?? 0);
    setA(revisions[Math.max(0, n - 2)]?.revision ?? 0);
  }, [revisions.length]);
  const left = revisions.find((r) => r.revision === a);
  const right = revisions.find((r) => r.revision === b);
  const lines = useMemo(() => diffLines(pretty(left?.document), pretty(right?.document)), [left, right]);
  const options = revisions.map((r) => (
    <option key={r.revision} value={r.revision}>
      r{r.revision}
      {r.withdrawn ? " (withdrawal)" : ""}
    </option>
  ));
  return (
    <section aria-labelledby="diff-title">
      <h2 id="diff-title">Compare revisions</h2>
      <div class="filters">
        <label>
          From
          <select value={a} onChange={(e) => setA(Number(e.currentTarget.value))}>
            {options}
          </select>
        </label>
        <label>
          To
          <select value={b} onChange={(e) => setB(Number(e.currentTarget.value))}>
            {options}
          </select>
        </label>
      </div>
      <pre class="diff" data-testid="policy-diff" aria-label={`Changes from r${a} to r${b}`}>
        {lines.map((l, i) => (
          <div key={i} class={l.op === "+" ? "add" : l.op === "-" ? "del" : "same"}>
            {l.op} {l.text}
          </div>
        ))}
      </pre>
    </section>
  );
}

function StartRollout({ name, revisions, onStarted }: { name: string; revisions: Revision[]; onStarted: () => void }) {
  const newest = revisions[revisions.length - 1]?.revision ?? 1;
  const [revision, setRevision] = useState(newest);
  const [canary, setCanary] = useState(DEFAULT_CANARY);
  const [message, setMessage] = useState<string | undefined>(undefined);
  const [busy, setBusy] = useState(false);
  useEffect(() => setRevision(newest), [newest]);
  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setMessage(undefined);
    try {
      const r = await api<{ rollout: Rollout }>("POST", `/policies/${encodeURIComponent(name)}/rollout`, {
        revision,
        ...canary,
      });
      setMessage(`Rollout of r${r.rollout.revision} started: ${r.rollout.state}.`);
      onStarted();
    } catch (err) {
      setMessage(errorText(err));
    } finally {
      setBusy(false);
    }
  };
  return (
    <section aria-labelledby="rollout-title">
      <h2 id="rollout-title">Start a rollout</h2>
      <form class="inline" onSubmit={submit} data-testid="rollout-form">
        <label>
          Revision
          <select value={revision} onChange={(e) => setRevision(Number(e.currentTarget.value))}>
            {revisions
              .filter((r) => !r.withdrawn)
              .map((r) => (
                <option key={r.revision} value={r.revision}>
                  r{r.revision}
                </option>
              ))}
          </select>
        </label>
        <CanaryFields value={canary} onChange={setCanary} />
        <button type="submit" disabled={busy}>
          Start rollout
        </button>
      </form>
      {message ? <p role="status">{message}</p> : null}
    </section>
  );
}

export function PolicyPage({ name, session }: { name: string; session: Session }) {
  const history = usePoll(() => get<{ revisions: Revision[]; rollouts: Rollout[] }>(`/policies/${encodeURIComponent(name)}`), 10_000, [name]);
  const status = usePoll(() => get<PolicyStatus>(`/policies/${encodeURIComponent(name)}/status`), 3000, [name]);
  const revisions = history.data?.revisions ?? [];
  const reload = () => {
    history.reload();
    status.reload();
  };
  return (
    <section aria-labelledby="policy-title">
      <p class="crumbs">
        <a href="#/policies">Policies</a> / {name}
      </p>
      <div class="page-head">
        <h1 id="policy-title">{name}</h1>
        {status.data?.rollout ? <RolloutBadge r={status.data.rollout} /> : <span class="muted">not rolled out</span>}
        <Status poll={history} />
      </div>

      <section aria-labelledby="hosts-title">
        <h2 id="hosts-title">Rollout state per host</h2>
        <Status poll={status} />
        <HostRolloutTable
          runningLabel="Applied"
          empty="No host is targeted yet."
          rows={status.data?.hosts.map((h) => ({
            host: h.host_id,
            meant: `r${h.desired_revision}`,
            running: (
              <>
                r{h.applied_revision} {h.applied_at_ms ? <Time ms={h.applied_at_ms} /> : null}
              </>
            ),
            canary: h.canary,
            error: h.error,
            inSync: h.in_sync,
            attrs: { "data-host": h.host_id, "data-applied": h.applied_revision, "data-in-sync": String(h.in_sync) },
          }))}
        />
      </section>

      {isAdmin(session) && revisions.length > 0 ? <StartRollout name={name} revisions={revisions} onStarted={reload} /> : null}

      <section aria-labelledby="revisions-title">
        <h2 id="revisions-title">Revisions</h2>
        <div class="table-wrap">
          <table>
            <thead>
              <tr>
                <th scope="col">Revision</th>
                <th scope="col">Written</th>
                <th scope="col">By</th>
                <th scope="col">Rules</th>
              </tr>
            </thead>
            <tbody>
              {[...revisions].reverse().map((r) => (
                <tr key={r.revision}>
                  <td>
                    r{r.revision} {r.withdrawn ? <Badge kind="revoked">withdrawal</Badge> : null}
                  </td>
                  <td>
                    <Time ms={r.created_at_ms} />
                  </td>
                  <td>{r.created_by}</td>
                  <td>{ruleNames(r.document)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      </section>
      {revisions.length > 1 ? <Diff revisions={revisions} /> : null}

      <section aria-labelledby="rollouts-title">
        <h2 id="rollouts-title">Rollouts</h2>
        <ul class="plain">
          {(history.data?.rollouts ?? []).map((r) => (
            <li key={r.id}>
              <Time ms={r.started_at_ms} /> by {r.started_by}: r{r.previous_revision} → <RolloutBadge r={r} /> (canary {r.canary_percent} %
              {r.canary_hosts.length ? `: ${r.canary_hosts.join(", ")}` : ""})
            </li>
          ))}
        </ul>
      </section>
    </section>
  );
}

function ruleNames(doc: unknown): string {
  const rules = (doc as { rules?: { name?: string }[] } | null)?.rules;
  return Array.isArray(rules) ? rules.map((r) => r.name ?? "?").join(", ") : "—";
}
