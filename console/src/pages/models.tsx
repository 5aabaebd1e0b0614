// Models: the registry's versions (number, version, created, the state of their rollouts)
// and, for one version, the newest model rollout and what each host was meant to run and
// reports running. Admins upload a model (the browser reads the files and posts the same
// body as `scoctl model upload`) and start a version's rollout.

import { useState } from "preact/hooks";
import { api, get, isAdmin, type ModelStatus, type ModelVersion, type Rollout, type Session } from "../api";
import { Badge, Status, Time, errorText, fmtBytes, usePoll } from "../util";
import { CanaryFields, DEFAULT_CANARY, HostRolloutTable, stateKind } from "../rollout";

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
      <HostRolloutTable
        runningLabel="Running"
        empty="No host is meant to run it or reported on it."
        rows={poll.data?.hosts.map((h) => ({
          host: h.host_id,
          meant: nameOf(h.desired_number, models),
          running: (
            <>
              {h.applied_model || nameOf(h.applied_number, models)} {h.applied_at_ms ? <Time ms={h.applied_at_ms} /> : null}
            </>
          ),
          canary: h.canary,
          error: h.error,
          inSync: h.in_sync,
          attrs: { "data-model-host": h.host_id, "data-applied": h.applied_number, "data-in-sync": String(h.in_sync) },
        }))}
      />
    </section>
  );
}

/** Base64 of a file's bytes (in chunks: one `String.fromCharCode` call per 32 KiB). */
function base64Of(bytes: Uint8Array): string {
  let text = "";
  for (let i = 0; i < bytes.length; i += 0x8000) text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(text);
}

async function jsonFile(f: File, what: string): Promise<unknown> {
  const text = await f.text();
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new Error(`${what} (${f.name}) is not JSON: ${e instanceof Error ? e.message : String(e)}`);
  }
}

/** The files of a model directory, read by the browser into the `POST /models` body. */
function UploadModel({ onUploaded }: { onUploaded: (version: string) => void }) {
  const [message, setMessage] = useState<{ ok: boolean; text: string } | undefined>(undefined);
  const [busy, setBusy] = useState(false);
  const submit = async (e: Event) => {
    e.preventDefault();
    const form = e.currentTarget as HTMLFormElement;
    const file = (name: string) => (form.elements.namedItem(name) as HTMLInputElement | null)?.files?.[0];
    setBusy(true);
    setMessage(undefined);
    try {
      const onnx = file("onnx");
      const manifest = file("manifest");
      const golden = file("golden");
      if (!onnx || !manifest || !golden) throw new Error("Choose the model file, manifest.json and golden.json.");
      const body: Record<string, unknown> = {
        manifest: await jsonFile(manifest, "the manifest"),
        golden: await jsonFile(golden, "the golden outputs"),
        onnx_base64: base64Of(new Uint8Array(await onnx.arrayBuffer())),
      };
      const card = file("card");
      if (card) body.card = await card.text();
      const evaluation = file("evaluation");
      if (evaluation) body.evaluation = await jsonFile(evaluation, "the evaluation");
      const r = await api<{ model: ModelVersion }>("POST", "/models", body);
      setMessage({ ok: true, text: `Stored ${r.model.name} ${r.model.version} as number ${r.model.number}.` });
      form.reset();
      onUploaded(r.model.version);
    } catch (err) {
      // The server's message as it sent it: a 400 names the check that failed.
      setMessage({ ok: false, text: errorText(err) });
    } finally {
      setBusy(false);
    }
  };
  return (
    <section aria-labelledby="model-upload-title">
      <h2 id="model-upload-title">Upload a model</h2>
      <form class="inline" onSubmit={submit} data-testid="model-upload-form">
        <label>
          Model file (.onnx)
          <input name="onnx" type="file" accept=".onnx" required />
        </label>
        <label>
          manifest.json
          <input name="manifest" type="file" accept=".json,application/json" required />
        </label>
        <label>
          golden.json
          <input name="golden" type="file" accept=".json,application/json" required />
        </label>
        <label>
          Model card (optional)
          <input name="card" type="file" accept=".md,text/markdown,text/plain" />
        </label>
        <label>
          evaluation.json (optional)
          <input name="evaluation" type="file" accept=".json,application/json" />
        </label>
        <button type="submit" disabled={busy}>
          Upload
        </button>
      </form>
      {message ? (
        <p role={message.ok ? "status" : "alert"} class={message.ok ? undefined : "error"} data-testid="model-upload-message" data-ok={String(message.ok)}>
          {message.text}
        </p>
      ) : null}
    </section>
  );
}

/** `a, b c` → `["a", "b", "c"]`. */
function words(text: string): string[] {
  return text.split(/[\s,]+/).filter(Boolean);
}

/** The form that starts a rollout of `version`: canary by share or by hosts, and a target. */
function StartModelRollout({ version, onStarted, onClose }: { version: string; onStarted: () => void; onClose: () => void }) {
  const [byHosts, setByHosts] = useState(false);
  const [canaryHosts, setCanaryHosts] = useState("");
  const [canary, setCanary] = useState(DEFAULT_CANARY);
  const [labels, setLabels] = useState("");
  const [hosts, setHosts] = useState("");
  const [message, setMessage] = useState<{ ok: boolean; text: string } | undefined>(undefined);
  const [busy, setBusy] = useState(false);
  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setMessage(undefined);
    try {
      const body: Record<string, unknown> = { canary_secs: canary.canary_secs, max_new_anomalies: canary.max_new_anomalies };
      if (byHosts) body.canary_hosts = words(canaryHosts);
      else body.canary_percent = canary.canary_percent;
      const targetLabels: Record<string, string> = {};
      for (const kv of words(labels)) {
        const at = kv.indexOf("=");
        if (at <= 0) throw new Error(`Target label "${kv}" is not key=value.`);
        targetLabels[kv.slice(0, at)] = kv.slice(at + 1);
      }
      const targetHosts = words(hosts);
      if (Object.keys(targetLabels).length || targetHosts.length) body.target = { labels: targetLabels, ...(targetHosts.length ? { hosts: targetHosts } : {}) };
      const r = await api<{ rollout: Rollout }>("POST", `/models/${encodeURIComponent(version)}/rollout`, body);
      setMessage({ ok: true, text: `Rollout ${r.rollout.id} of ${version} started: ${r.rollout.state}.` });
      onStarted();
    } catch (err) {
      setMessage({ ok: false, text: errorText(err) });
    } finally {
      setBusy(false);
    }
  };
  return (
    <section aria-labelledby="model-start-title" data-rollout-form={version}>
      <h2 id="model-start-title">Roll out {version}</h2>
      <form class="inline" onSubmit={submit} data-testid="model-rollout-form">
        <label>
          Canary by
          <select name="canary_by" value={byHosts ? "hosts" : "percent"} onChange={(e) => setByHosts(e.currentTarget.value === "hosts")}>
            <option value="percent">share of hosts</option>
            <option value="hosts">host ids</option>
          </select>
        </label>
        {byHosts ? (
          <label>
            Canary hosts
            <input name="canary_hosts" placeholder="agent-1, agent-2" value={canaryHosts} onInput={(e) => setCanaryHosts(e.currentTarget.value)} />
          </label>
        ) : null}
        <CanaryFields value={canary} onChange={setCanary} percent={!byHosts} />
        <label>
          Target labels
          <input name="target_labels" placeholder="role=web env=prod" value={labels} onInput={(e) => setLabels(e.currentTarget.value)} />
        </label>
        <label>
          Target hosts
          <input name="target_hosts" placeholder="host ids (optional)" value={hosts} onInput={(e) => setHosts(e.currentTarget.value)} />
        </label>
        <button type="submit" disabled={busy}>
          Start rollout
        </button>
        <button type="button" class="link" onClick={onClose}>
          Close
        </button>
      </form>
      {message ? (
        <p role={message.ok ? "status" : "alert"} class={message.ok ? undefined : "error"} data-testid="model-rollout-message" data-ok={String(message.ok)}>
          {message.text}
        </p>
      ) : null}
    </section>
  );
}

export function ModelsPage({ session }: { session: Session }) {
  const poll = usePoll(() => get<{ models: ModelVersion[]; rollout: Rollout | null }>("/models"), 5000, []);
  const [chosen, setChosen] = useState<string | undefined>(undefined);
  const [rolling, setRolling] = useState<string | undefined>(undefined);
  const admin = isAdmin(session);
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
                      {admin ? (
                        <>
                          {" "}
                          <button type="button" class="link" aria-label={`Roll out ${m.version}`} onClick={() => setRolling(m.version)}>
                            Roll out
                          </button>
                        </>
                      ) : null}
                    </td>
                  </tr>
                );
              })}
            </tbody>
          </table>
          {poll.data && models.length === 0 ? <p class="muted">No model uploaded yet{admin ? "" : " (uploads need the admin role)"}.</p> : null}
        </div>
      </section>
      {admin && rolling ? (
        <StartModelRollout
          key={rolling}
          version={rolling}
          onStarted={() => {
            setChosen(rolling);
            poll.reload();
          }}
          onClose={() => setRolling(undefined)}
        />
      ) : null}
      {admin ? <UploadModel onUploaded={() => poll.reload()} /> : null}
      {shown ? <HostStates version={shown} models={models} /> : null}
    </section>
  );
}
