// The console's shell: login, the navigation and the page of the current hash route.

import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import "uplot/dist/uPlot.min.css";
import "./style.css";
import { currentSession, isAdmin, login, logout, onSession, verify, type Session } from "./api";
import { errorText, useRoute, zoneName } from "./util";
import { FleetPage } from "./pages/fleet";
import { HostPage } from "./pages/host";
import { AnomaliesPage, AnomalyPage } from "./pages/anomalies";
import { RemediationPage } from "./pages/remediation";
import { PoliciesPage, PolicyPage } from "./pages/policies";
import { AuditPage } from "./pages/audit";
import { ModelsPage } from "./pages/models";

function Login({ notice }: { notice?: string }) {
  const [username, setUsername] = useState("");
  const [password, setPassword] = useState("");
  const [error, setError] = useState<string | undefined>(undefined);
  const [busy, setBusy] = useState(false);
  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError(undefined);
    try {
      await login(username.trim(), password);
      setPassword("");
    } catch (err) {
      setError(errorText(err));
    } finally {
      setBusy(false);
    }
  };
  return (
    <main id="main" class="login">
      <form onSubmit={submit} aria-labelledby="login-title">
        <h1 id="login-title">SmartCloudOps</h1>
        {notice ? <p class="notice" role="status">{notice}</p> : null}
        <label>
          Username
          <input name="username" autoComplete="username" required value={username} onInput={(e) => setUsername(e.currentTarget.value)} />
        </label>
        <label>
          Password
          <input
            name="password"
            type="password"
            autoComplete="current-password"
            required
            value={password}
            onInput={(e) => setPassword(e.currentTarget.value)}
          />
        </label>
        {error ? (
          <p class="error" role="alert">
            {error}
          </p>
        ) : null}
        <button type="submit" disabled={busy}>
          {busy ? "Logging in…" : "Log in"}
        </button>
      </form>
    </main>
  );
}

const NAV: { route: string; label: string; admin?: boolean }[] = [
  { route: "fleet", label: "Fleet" },
  { route: "anomalies", label: "Anomalies" },
  { route: "remediation", label: "Remediation" },
  { route: "policies", label: "Policies" },
  { route: "models", label: "Models" },
  { route: "audit", label: "Audit", admin: true },
];

function Page({ route, session }: { route: string[]; session: Session }) {
  const [page, id] = route;
  switch (page) {
    case undefined:
    case "fleet":
      return <FleetPage />;
    case "hosts":
      return id ? <HostPage id={id} /> : <FleetPage />;
    case "anomalies":
      return id ? <AnomalyPage id={id} /> : <AnomaliesPage />;
    case "remediation":
      return <RemediationPage session={session} />;
    case "policies":
      return id ? <PolicyPage name={id} session={session} /> : <PoliciesPage />;
    case "models":
      return <ModelsPage session={session} />;
    case "audit":
      return isAdmin(session) ? <AuditPage /> : <p class="error">The audit log is for admins.</p>;
    default:
      return <p class="error">No page {page}.</p>;
  }
}

function App() {
  const [session, setSession] = useState<Session | null>(currentSession());
  const [notice, setNotice] = useState<string | undefined>(undefined);
  const route = useRoute();
  useEffect(
    () =>
      onSession((s, why) => {
        setSession(s);
        if (why) setNotice(why);
      }),
    [],
  );
  // The role can change while logged in (a demotion applies at once on the server).
  useEffect(() => {
    if (!session) return;
    const t = window.setInterval(() => void verify().catch(() => undefined), 60_000);
    return () => window.clearInterval(t);
  }, [session?.token]);

  if (!session) return <Login notice={notice} />;
  const active = route[0] === "hosts" ? "fleet" : (route[0] ?? "fleet");
  return (
    <>
      <a class="skip" href="#main" onClick={(e) => (e.preventDefault(), document.getElementById("main")?.focus())}>
        Skip to content
      </a>
      <header class="top">
        <a class="brand" href="#/fleet">
          SmartCloudOps
        </a>
        <nav aria-label="Main">
          <ul>
            {NAV.filter((n) => !n.admin || isAdmin(session)).map((n) => (
              <li key={n.route}>
                <a href={`#/${n.route}`} aria-current={active === n.route ? "page" : undefined}>
                  {n.label}
                </a>
              </li>
            ))}
          </ul>
        </nav>
        <div class="who">
          <span data-testid="whoami">
            {session.username} <span class="muted">({session.role})</span>
          </span>
          <button type="button" onClick={() => void logout()}>
            Log out
          </button>
        </div>
      </header>
      <main id="main" tabIndex={-1}>
        <Page route={route} session={session} />
      </main>
      <footer class="muted">Times are in {zoneName()}.</footer>
    </>
  );
}

const root = document.getElementById("app");
if (root) {
  root.textContent = "";
  render(<App />, root);
}
