// Remediation: proposals waiting for approval (approve or reject with a reason), the
// action history with states and reports, what was learnt about rules' candidate actions
// (with its reset), and the reset of a rule's circuit breaker.
// Viewers see the same lists without the buttons; the server refuses them anyway.

import { useState } from "preact/hooks";
import { api, canOperate, get, withQuery, type Action, type Preference, type Session } from "../api";
import { Badge, Json, Status, Time, actionSummary, errorText, fmtAgo, href, useNow, usePoll } from "../util";

const STATES = ["", "proposed", "approved", "running", "succeeded", "failed", "refused", "rejected", "expired", "dry_run"];

function Proposal({ a, session, onDone }: { a: Action; session: Session; onDone: () => void }) {
  const now = useNow(5000);
  const [busy, setBusy] = useState(false);
  const [rejecting, setRejecting] = useState(false);
  const [reason, setReason] = useState("");
  const [message, setMessage] = useState<string | undefined>(undefined);
  const decide = async (what: "approve" | "reject") => {
    setBusy(true);
    setMessage(undefined);
    try {
      const body = what === "reject" && reason.trim() ? { reason: reason.trim() } : undefined;
      await api("POST", `/remediation/actions/${encodeURIComponent(a.id)}/${what}`, body);
      setMessage(what === "approve" ? "Approved." : "Rejected.");
      onDone();
    } catch (e) {
      setMessage(errorText(e));
    } finally {
      setBusy(false);
    }
  };
  return (
    <li class="card" data-proposal={a.id} data-rule={a.rule}>
      <div class="card-head">
        <strong>{a.rule}</strong> on <a href={href("hosts", a.host_id)}>{a.host_id}</a>
        <Badge kind="proposed">waiting</Badge>
      </div>
      <p>
        {actionSummary(a.action)} · proposed <Time ms={a.created_at_ms} /> · expires {fmtAgo(a.expires_at_ms, now)}
      </p>
      <details>
        <summary>Evidence and action</summary>
        <Json value={{ action: a.action, evidence: a.evidence }} />
      </details>
      {canOperate(session) ? (
        <div class="actions">
          <button type="button" class="approve" disabled={busy} onClick={() => void decide("approve")}>
            Approve
          </button>
          {rejecting ? (
            <form
              class="inline"
              onSubmit={(e) => {
                e.preventDefault();
                void decide("reject");
              }}
            >
              <label>
                Reason (optional)
                <input value={reason} maxLength={500} onInput={(e) => setReason(e.currentTarget.value)} />
              </label>
              <button type="submit" class="reject" disabled={busy}>
                Reject
              </button>
              <button type="button" class="link" onClick={() => setRejecting(false)}>
                Cancel
              </button>
            </form>
          ) : (
            <button type="button" class="reject" disabled={busy} onClick={() => setRejecting(true)}>
              Reject…
            </button>
          )}
        </div>
      ) : (
        <p class="muted">Approving needs the operator role.</p>
      )}
      {message ? <p role="status">{message}</p> : null}
    </li>
  );
}

function BreakerReset() {
  const [host, setHost] = useState("");
  const [rule, setRule] = useState("");
  const [message, setMessage] = useState<string | undefined>(undefined);
  const submit = async (e: Event) => {
    e.preventDefault();
    setMessage(undefined);
    try {
      await api("POST", "/remediation/breakers/reset", { host: host.trim(), rule: rule.trim() });
      setMessage(`Asked ${host.trim()} to close the breaker of ${rule.trim()}.`);
    } catch (err) {
      setMessage(errorText(err));
    }
  };
  return (
    <section aria-labelledby="breaker-title">
      <h2 id="breaker-title">Circuit breakers</h2>
      <p class="muted">A rule whose actions keep failing opens its breaker on that host; close it once the cause is fixed.</p>
      <form class="inline" onSubmit={submit}>
        <label>
          Host
          <input required value={host} onInput={(e) => setHost(e.currentTarget.value)} placeholder="agent id" />
        </label>
        <label>
          Rule
          <input required value={rule} onInput={(e) => setRule(e.currentTarget.value)} placeholder="policy/rule or manual" />
        </label>
        <button type="submit">Reset breaker</button>
      </form>
      {message ? <p role="status">{message}</p> : null}
    </section>
  );
}

/** One rule in one context: its candidates' verified outcomes and the next choice. */
function Learnt({ p, session, onReset }: { p: Preference; session: Session; onReset: () => void }) {
  const [confirming, setConfirming] = useState(false);
  const [busy, setBusy] = useState(false);
  const [message, setMessage] = useState<string | undefined>(undefined);
  const next = actionSummary(p.preferred);
  const reset = async () => {
    setBusy(true);
    setMessage(undefined);
    try {
      const r = await api<{ deleted: number }>("DELETE", withQuery("/remediation/preferences", { rule: p.rule, context: p.context }));
      setMessage(`Forgot ${r.deleted} tallies: the written order again.`);
      setConfirming(false);
      onReset();
    } catch (e) {
      setMessage(errorText(e));
    } finally {
      setBusy(false);
    }
  };
  return (
    <li class="card" data-preference={p.rule} data-context={p.context}>
      <div class="card-head">
        <strong>{p.rule}</strong> <span class="chip">{p.context}</span>
        <span class="muted">
          updated <Time ms={p.updated_at_ms} />
        </span>
      </div>
      <p>
        Next incident runs: <strong data-next>{next}</strong>
      </p>
      <div class="table-wrap">
        <table>
          <thead>
            <tr>
              <th scope="col">#</th>
              <th scope="col">Candidate</th>
              <th scope="col">Verified</th>
              <th scope="col">Failed</th>
              <th scope="col">Score</th>
            </tr>
          </thead>
          <tbody>
            {p.candidates.map((c) => (
              <tr key={c.position} data-candidate={String(c.action.type ?? "")} data-successes={c.successes} data-failures={c.failures}>
                <td>{c.position + 1}</td>
                <td>
                  {actionSummary(c.action)} {JSON.stringify(c.action) === JSON.stringify(p.preferred) ? <Badge kind="succeeded">next</Badge> : null}
                </td>
                <td>{c.successes}</td>
                <td>{c.failures}</td>
                <td>{c.score.toFixed(2)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {canOperate(session) ? (
        <div class="actions">
          {confirming ? (
            <>
              <button type="button" class="reject" disabled={busy} onClick={() => void reset()}>
                Forget what was learnt
              </button>
              <button type="button" class="link" onClick={() => setConfirming(false)}>
                Cancel
              </button>
            </>
          ) : (
            <button type="button" disabled={busy} onClick={() => setConfirming(true)}>
              Reset…
            </button>
          )}
        </div>
      ) : null}
      {message ? <p role="status">{message}</p> : null}
    </li>
  );
}

function Preferences({ session }: { session: Session }) {
  const poll = usePoll(() => get<{ preferences: Preference[] }>("/remediation/preferences"), 10_000, []);
  const all = poll.data?.preferences ?? [];
  return (
    <section aria-labelledby="preferences-title">
      <h2 id="preferences-title">Learnt preferences ({all.length})</h2>
      <p class="muted">
        A rule with candidate actions runs the one whose verified outcomes are best in the incident's context (family and
        severity); a reset goes back to the order they are written in.
        {canOperate(session) ? "" : " Resetting needs the operator role."}
      </p>
      <Status poll={poll} />
      {poll.data && all.length === 0 ? <p class="muted">Nothing learnt yet.</p> : null}
      <ul class="cards">
        {all.map((p) => (
          <Learnt key={`${p.rule} ${p.context}`} p={p} session={session} onReset={poll.reload} />
        ))}
      </ul>
    </section>
  );
}

export function RemediationPage({ session }: { session: Session }) {
  const [state, setState] = useState("");
  const [host, setHost] = useState("");
  const proposals = usePoll(() => get<{ actions: Action[] }>("/remediation/actions", { state: "proposed", limit: 100 }), 3000, []);
  const history = usePoll(
    () => get<{ actions: Action[] }>("/remediation/actions", { state, host: host.trim(), limit: 100 }),
    5000,
    [state, host],
  );
  const reload = () => {
    proposals.reload();
    history.reload();
  };
  const waiting = proposals.data?.actions ?? [];
  return (
    <section aria-labelledby="remediation-title">
      <div class="page-head">
        <h1 id="remediation-title">Remediation</h1>
      </div>
      <section aria-labelledby="proposals-title">
        <h2 id="proposals-title">Waiting for approval ({waiting.length})</h2>
        <Status poll={proposals} />
        {proposals.data && waiting.length === 0 ? <p class="muted">Nothing waits for approval.</p> : null}
        <ul class="cards">
          {waiting.map((a) => (
            <Proposal key={a.id} a={a} session={session} onDone={reload} />
          ))}
        </ul>
      </section>
      <section aria-labelledby="history-title">
        <h2 id="history-title">Action history</h2>
        <div class="filters" role="search">
          <label>
            State
            <select value={state} onChange={(e) => setState(e.currentTarget.value)}>
              {STATES.map((s) => (
                <option key={s} value={s}>
                  {s || "any"}
                </option>
              ))}
            </select>
          </label>
          <label>
            Host
            <input type="search" value={host} onChange={(e) => setHost(e.currentTarget.value)} placeholder="host id" />
          </label>
          <Status poll={history} />
        </div>
        <div class="table-wrap">
          <table>
            <thead>
              <tr>
                <th scope="col">Created</th>
                <th scope="col">Host</th>
                <th scope="col">Rule</th>
                <th scope="col">Action</th>
                <th scope="col">Approval</th>
                <th scope="col">State</th>
                <th scope="col">Report</th>
              </tr>
            </thead>
            <tbody>
              {(history.data?.actions ?? []).map((a) => (
                <tr key={a.id} data-action={a.id} data-state={a.state}>
                  <td>
                    <Time ms={a.created_at_ms} />
                  </td>
                  <td>
                    <a href={href("hosts", a.host_id)}>{a.host_id}</a>
                  </td>
                  <td>{a.rule}</td>
                  <td>
                    {actionSummary(a.action)} <span class="muted">({a.mode})</span>
                  </td>
                  <td>
                    {a.approval}
                    {a.decided_by ? <div class="muted">by {a.decided_by}</div> : null}
                  </td>
                  <td>
                    <Badge kind={a.state}>{a.state}</Badge>
                    {a.reason ? <div class="muted">{a.reason}</div> : null}
                  </td>
                  <td>
                    {a.report ? (
                      <details>
                        <summary>report</summary>
                        <Json value={a.report} />
                      </details>
                    ) : (
                      "—"
                    )}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      </section>
      <Preferences session={session} />
      {canOperate(session) ? <BreakerReset /> : null}
    </section>
  );
}
