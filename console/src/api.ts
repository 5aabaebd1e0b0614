// The REST client and the session. Tokens live in this module's memory only (never in
// localStorage or a cookie): a reload asks for the password again, and a script injected
// elsewhere cannot read them from storage. The access token is renewed with the refresh
// token a minute before it expires, and once more when a request is answered 401.

export type Role = "viewer" | "operator" | "admin";

export interface Session {
  token: string;
  refreshToken: string;
  /** Unix seconds. */
  expiresAt: number;
  role: Role;
  username: string;
}

interface TokenResponse {
  token: string;
  expires_at: number;
  refresh_token: string;
  role: Role;
  username: string;
}

export class ApiError extends Error {
  constructor(
    public status: number,
    message: string,
  ) {
    super(message);
  }
}

let session: Session | null = null;
let refreshTimer: number | undefined;
let refreshing: Promise<boolean> | null = null;
const listeners = new Set<(s: Session | null, why?: string) => void>();

export function currentSession(): Session | null {
  return session;
}

export function onSession(f: (s: Session | null, why?: string) => void): () => void {
  listeners.add(f);
  return () => listeners.delete(f);
}

function setSession(s: Session | null, why?: string) {
  session = s;
  window.clearTimeout(refreshTimer);
  if (s) {
    // A minute early, and never sooner than in five seconds.
    const inMs = Math.max(5_000, s.expiresAt * 1000 - Date.now() - 60_000);
    refreshTimer = window.setTimeout(() => void refresh(), inMs);
  }
  for (const f of listeners) f(s, why);
}

function fromTokens(t: TokenResponse): Session {
  return {
    token: t.token,
    refreshToken: t.refresh_token,
    expiresAt: t.expires_at,
    role: t.role,
    username: t.username,
  };
}

async function errorOf(r: Response): Promise<ApiError> {
  let message = `${r.status} ${r.statusText}`;
  try {
    const body = await r.json();
    if (body && typeof body.error === "string") message = body.error;
  } catch {
    // not JSON: keep the status line
  }
  return new ApiError(r.status, message);
}

export async function login(username: string, password: string): Promise<void> {
  const r = await fetch("/auth/login", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ username, password }),
    credentials: "omit",
  });
  if (!r.ok) throw await errorOf(r);
  setSession(fromTokens(await r.json()));
}

/** Rotates the refresh token; false (and logged out) when the server refuses it. */
function refresh(): Promise<boolean> {
  if (refreshing) return refreshing;
  const s = session;
  if (!s) return Promise.resolve(false);
  refreshing = (async () => {
    try {
      const r = await fetch("/auth/refresh", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ refresh_token: s.refreshToken }),
        credentials: "omit",
      });
      if (!r.ok) {
        setSession(null, "Your session ended; please log in again.");
        return false;
      }
      setSession(fromTokens(await r.json()));
      return true;
    } catch {
      // network trouble: keep the session and try again at the next request
      return false;
    } finally {
      refreshing = null;
    }
  })();
  return refreshing;
}

export async function logout(): Promise<void> {
  const s = session;
  setSession(null, "Logged out.");
  if (s) {
    await fetch("/auth/logout", {
      method: "POST",
      headers: { authorization: `Bearer ${s.token}` },
      credentials: "omit",
    }).catch(() => undefined);
  }
}

/** The role the server gives the token now (a demotion shows at once). */
export async function verify(): Promise<void> {
  const v = await api<{ role: Role; username: string }>("GET", "/auth/verify");
  if (session && (v.role !== session.role || v.username !== session.username)) {
    setSession({ ...session, role: v.role, username: v.username });
  }
}

export async function api<T>(method: "GET" | "POST" | "DELETE", path: string, body?: unknown): Promise<T> {
  const send = () => {
    const headers: Record<string, string> = {};
    if (session) headers.authorization = `Bearer ${session.token}`;
    if (body !== undefined) headers["content-type"] = "application/json";
    return fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "omit",
    });
  };
  let r = await send();
  if (r.status === 401 && session && (await refresh())) r = await send();
  if (r.status === 401 && session) setSession(null, "Your session ended; please log in again.");
  if (!r.ok) throw await errorOf(r);
  if (r.status === 204) return undefined as T;
  return (await r.json()) as T;
}

export function get<T>(path: string, query?: Record<string, string | number | undefined | null>): Promise<T> {
  return api<T>("GET", withQuery(path, query));
}

export function withQuery(path: string, query?: Record<string, string | number | undefined | null>): string {
  if (!query) return path;
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) {
    if (v !== undefined && v !== null && v !== "") q.set(k, String(v));
  }
  const s = q.toString();
  return s ? `${path}?${s}` : path;
}

export function canOperate(s: Session | null): boolean {
  return s?.role === "operator" || s?.role === "admin";
}

export function isAdmin(s: Session | null): boolean {
  return s?.role === "admin";
}

// Shapes of the API's answers, as far as the console reads them.

export interface Host {
  id: string;
  hostname: string;
  os: string;
  kernel: string;
  agent_version: string;
  labels: Record<string, string>;
  interval_ms: number;
  first_seen_ms: number;
  last_seen_ms: number;
  connected: boolean;
  /** How the current or last stream came: "grpc" (HTTP/2 over TCP) or "quic"; "" if unknown. */
  transport: string;
  outbox_dropped_total: number;
  cert_not_after_ms: number;
  revoked: boolean;
  detector: { state: string; warm_until_ms: number; calibrated_at_ms: number };
}

export interface Contributor {
  metric: string;
  value: number;
  expected_low: number;
  expected_high: number;
  contribution: number;
}

export interface Process {
  pid: number;
  name: string;
  cpu_pct: number;
  rss_bytes: number;
  cmdline?: string;
  unit?: string;
  read_bytes_per_s?: number;
  write_bytes_per_s?: number;
}

export interface Series {
  metric: string;
  start_ms: number;
  step_ms: number;
  values: (number | null)[];
}

export type Severity = "low" | "medium" | "high" | "critical";

export interface Anomaly {
  id: string;
  host_id: string;
  status: "open" | "closed";
  started_ms: number;
  updated_ms: number;
  ended_ms: number | null;
  score: number;
  peak_score: number;
  severity: Severity;
  family: string;
  top_metric: string;
  contributors: Contributor[];
  culprits: Process[];
  model: string;
  close_reason: string;
  /** Open only: when it recovered, while its agent holds it open in case it comes back. */
  recovered_ms?: number | null;
  context?: { series?: Series[]; processes?: Process[] } | null;
  /** Operators' verdicts on the event (`POST /anomaly/{id}/feedback`). */
  feedback?: VerdictRef[];
}

/** A verdict as an event shows it. */
export interface VerdictRef {
  id: string;
  verdict: "true_positive" | "false_positive" | "expected";
  policy: string;
  policy_revision: number;
  created_by: string;
  created_at_ms: number;
  undone: boolean;
}

/** Who acknowledged an event. */
export interface Ack {
  by: string;
  at_ms: number | null;
  note: string;
}

/** What a notification channel was told about an event. */
export interface Notification {
  id: string;
  channel: string;
  kind: string;
  event: string;
  state: "pending" | "sent" | "failed" | "silenced";
  attempts: number;
  last_error: string;
  created_ms: number;
  sent_ms: number | null;
}

/** A runbook an event or a search cites. */
export interface Citation {
  id: string;
  title: string;
  revision: number;
  rank: number;
  why: string;
}

export interface Runbook {
  id: string;
  revision: number;
  title: string;
  tags: string[];
  body: string;
  updated_ms: number;
  updated_by: string;
}

export interface RollupPoint {
  metric: string;
  device: string;
  window_start_ms: number;
  window_end_ms: number;
  min: number;
  mean: number;
  max: number;
  last: number;
  count: number;
}

export interface Action {
  id: string;
  host_id: string;
  rule: string;
  policy: string;
  action: Record<string, unknown>;
  mode: string;
  approval: string;
  state: string;
  reason: string;
  requested_by: string;
  decided_by: string;
  expires_at_ms: number;
  evidence: unknown;
  created_at_ms: number;
  updated_at_ms: number;
  report: Record<string, unknown> | null;
}

export interface AuditEntry {
  id: string;
  at_ms: number;
  actor: string;
  action: string;
  host_id: string;
  result: string;
  detail: unknown;
}

export interface Rollout {
  id: string;
  name: string;
  revision: number;
  previous_revision: number;
  canary_percent: number;
  canary_hosts: string[];
  canary_secs: number;
  max_new_anomalies: number;
  state: "canary" | "complete" | "stopped";
  reason: string;
  started_by: string;
  started_at_ms: number;
  updated_at_ms: number;
  /** Model rollouts limited to some hosts; absent: every host. */
  target?: { labels?: Record<string, string>; hosts?: string[] };
}

export interface PolicySummary {
  name: string;
  latest_revision: number;
  created_by: string;
  created_at_ms: number;
  document: unknown;
  rollout: Rollout | null;
}

export interface Revision {
  name: string;
  revision: number;
  document: unknown;
  withdrawn: boolean;
  source: string;
  created_by: string;
  created_at_ms: number;
}

export interface HostPolicyState {
  host_id: string;
  desired_revision: number;
  canary: boolean;
  reported_revision: number;
  applied_revision: number;
  applied_at_ms: number;
  error: string;
  in_sync: boolean;
}

export interface PolicyStatus {
  name: string;
  rollout: Rollout | null;
  hosts: HostPolicyState[];
}

export interface ModelVersion {
  number: number;
  name: string;
  version: string;
  sha256: string;
  size_bytes: number;
  created_by: string;
  created_at_ms: number;
}

export interface HostModelState {
  host_id: string;
  desired_number: number;
  canary: boolean;
  reported_number: number;
  applied_number: number;
  applied_model: string;
  applied_at_ms: number;
  error: string;
  in_sync: boolean;
}

export interface ModelStatus {
  number: number;
  version: string;
  rollout: Rollout | null;
  hosts: HostModelState[];
}

export interface CandidateView {
  position: number;
  action: Record<string, unknown>;
  successes: number;
  failures: number;
  /** Posterior mean of success. */
  score: number;
}

export interface Preference {
  rule: string;
  context: string;
  /** The action the next incident in this context would run. */
  preferred: Record<string, unknown>;
  candidates: CandidateView[];
  updated_at_ms: number;
}
