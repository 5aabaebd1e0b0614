//! The role matrix of docs/API.md, walked against a real control plane:
//! every endpoint, called as admin, operator, viewer and without a token,
//! must answer the status in the table. The table must cover every
//! operation in `/openapi.json` (which a unit test ties to the router).

use reqwest::{Method, StatusCode};
use sco_tests::{Db, Sandbox};
use serde_json::{json, Value};

/// What a case sends as its body.
#[derive(Clone, Copy)]
enum Body {
    Empty,
    /// A new user with a unique name.
    Register,
    /// The caller's own credentials (the viewer's without a token).
    Login,
    /// A fresh refresh token.
    Refresh,
    /// Changes the caller's password to itself.
    Password,
    /// A window `POST /anomaly` can score.
    Score,
    /// A new enrollment token.
    Token,
    /// A remediation request.
    Trigger,
    /// A policy document (YAML).
    Policy,
    /// A rollout of every host at once.
    Rollout,
    /// The shipped model uploaded under a new version.
    Model,
    /// A circuit breaker reset.
    Reset,
    /// A ChatOps question.
    Query,
    /// A runbook with a unique title.
    Runbook,
    /// An acknowledgement note.
    Ack,
    /// A one-hour silence of one host.
    Silence,
    /// A verdict on the seeded event.
    Feedback,
}

const ADMIN: usize = 0;
const NONE: usize = 3;
const ROLES: [&str; 4] = ["admin", "operator", "viewer", "none"];

/// (method, path template, concrete path, body, expected status for
/// admin, operator, viewer, no token; 0 = allowed: any status but 401, 403
/// or 5xx). Logout and password change end
/// every session of the caller, so they run last.
const CASES: &[(&str, &str, &str, Body, [u16; 4])] = &[
    (
        "GET",
        "/health",
        "/health",
        Body::Empty,
        [200, 200, 200, 200],
    ),
    (
        "GET",
        "/status",
        "/status",
        Body::Empty,
        [200, 200, 200, 200],
    ),
    (
        "GET",
        "/metrics",
        "/metrics",
        Body::Empty,
        [200, 200, 200, 200],
    ),
    (
        "GET",
        "/metrics/fleet",
        "/metrics/fleet",
        Body::Empty,
        [200, 200, 200, 401],
    ),
    (
        "GET",
        "/openapi.json",
        "/openapi.json",
        Body::Empty,
        [200, 200, 200, 200],
    ),
    (
        "POST",
        "/auth/login",
        "/auth/login",
        Body::Login,
        [200, 200, 200, 200],
    ),
    (
        "POST",
        "/auth/refresh",
        "/auth/refresh",
        Body::Refresh,
        [200, 200, 200, 200],
    ),
    (
        "POST",
        "/auth/register",
        "/auth/register",
        Body::Register,
        [201, 403, 403, 403],
    ),
    (
        "GET",
        "/auth/verify",
        "/auth/verify",
        Body::Empty,
        [200, 200, 200, 401],
    ),
    ("GET", "/users", "/users", Body::Empty, [200, 403, 403, 401]),
    ("GET", "/hosts", "/hosts", Body::Empty, [200, 200, 200, 401]),
    (
        "GET",
        "/hosts/{id}",
        "/hosts/web-01",
        Body::Empty,
        [200, 200, 200, 401],
    ),
    (
        "GET",
        "/monitoring/metrics",
        "/monitoring/metrics?host=web-01",
        Body::Empty,
        [200, 200, 200, 401],
    ),
    (
        "GET",
        "/anomaly",
        "/anomaly",
        Body::Empty,
        [200, 200, 200, 401],
    ),
    (
        "POST",
        "/anomaly",
        "/anomaly",
        Body::Score,
        [200, 200, 200, 401],
    ),
    (
        "GET",
        "/anomaly/{id}",
        "/anomaly/web-01:7",
        Body::Empty,
        [200, 200, 200, 401],
    ),
    (
        "POST",
        "/anomaly/{id}/feedback",
        "/anomaly/web-01:7/feedback",
        Body::Feedback,
        [201, 201, 403, 401],
    ),
    (
        "GET",
        "/feedback",
        "/feedback",
        Body::Empty,
        [200, 200, 200, 401],
    ),
    (
        "GET",
        "/feedback/export",
        "/feedback/export",
        Body::Empty,
        [200, 200, 200, 401],
    ),
    (
        "DELETE",
        "/feedback/{id}",
        "/feedback/fb-0000000000000000",
        Body::Empty,
        [404, 404, 403, 401],
    ),
    (
        "GET",
        "/remediation/actions",
        "/remediation/actions",
        Body::Empty,
        [200, 200, 200, 401],
    ),
    (
        "GET",
        "/remediation/preferences",
        "/remediation/preferences",
        Body::Empty,
        [200, 200, 200, 401],
    ),
    (
        "DELETE",
        "/remediation/preferences",
        "/remediation/preferences?rule=no-such-rule",
        Body::Empty,
        [200, 200, 403, 401],
    ),
    ("GET", "/audit", "/audit", Body::Empty, [200, 403, 403, 401]),
    (
        "POST",
        "/query",
        "/query",
        Body::Query,
        [200, 200, 200, 401],
    ),
    ("GET", "/query", "/query", Body::Empty, [200, 200, 200, 401]),
    (
        "GET",
        "/runbooks",
        "/runbooks?q=disk",
        Body::Empty,
        [200, 200, 200, 401],
    ),
    (
        "POST",
        "/runbooks",
        "/runbooks",
        Body::Runbook,
        [201, 201, 403, 401],
    ),
    (
        "GET",
        "/runbooks/{id}",
        "/runbooks/cpu-saturation",
        Body::Empty,
        [200, 200, 200, 401],
    ),
    (
        "PUT",
        "/runbooks/{id}",
        "/runbooks/no-such-runbook",
        Body::Runbook,
        [404, 404, 403, 401],
    ),
    (
        "DELETE",
        "/runbooks/{id}",
        "/runbooks/no-such-runbook",
        Body::Empty,
        [404, 404, 403, 401],
    ),
    (
        "GET",
        "/runbooks/{id}/revisions",
        "/runbooks/cpu-saturation/revisions",
        Body::Empty,
        [200, 200, 200, 401],
    ),
    (
        "GET",
        "/notifications",
        "/notifications?state=sent",
        Body::Empty,
        [200, 200, 200, 401],
    ),
    (
        "POST",
        "/anomaly/{id}/ack",
        "/anomaly/web-01:999/ack",
        Body::Ack,
        [404, 404, 403, 401],
    ),
    (
        "GET",
        "/silences",
        "/silences",
        Body::Empty,
        [200, 200, 200, 401],
    ),
    (
        "POST",
        "/silences",
        "/silences",
        Body::Silence,
        [201, 201, 403, 401],
    ),
    (
        "GET",
        "/silences/{id}",
        "/silences/sil-none",
        Body::Empty,
        [404, 404, 404, 401],
    ),
    (
        "DELETE",
        "/silences/{id}",
        "/silences/sil-none",
        Body::Empty,
        [404, 404, 403, 401],
    ),
    // Public, but only Slack's signature gets in: none is sent here.
    (
        "POST",
        "/slack/commands",
        "/slack/commands",
        Body::Empty,
        [401, 401, 401, 401],
    ),
    (
        "POST",
        "/slack/interactions",
        "/slack/interactions",
        Body::Empty,
        [401, 401, 401, 401],
    ),
    // 0: allowed, whatever the handler then says about the action.
    (
        "POST",
        "/remediation/trigger",
        "/remediation/trigger",
        Body::Trigger,
        [0, 0, 403, 401],
    ),
    (
        "POST",
        "/remediation/breakers/reset",
        "/remediation/breakers/reset",
        Body::Reset,
        [202, 202, 403, 401],
    ),
    (
        "POST",
        "/remediation/actions/{id}/approve",
        "/remediation/actions/no-such-action/approve",
        Body::Empty,
        [404, 404, 403, 401],
    ),
    (
        "POST",
        "/remediation/actions/{id}/reject",
        "/remediation/actions/no-such-action/reject",
        Body::Empty,
        [404, 404, 403, 401],
    ),
    // The admin's POST creates the policy the later rows read.
    (
        "POST",
        "/policies",
        "/policies",
        Body::Policy,
        [201, 403, 403, 401],
    ),
    (
        "GET",
        "/policies",
        "/policies",
        Body::Empty,
        [200, 200, 200, 401],
    ),
    (
        "GET",
        "/policies/{name}",
        "/policies/seeded",
        Body::Empty,
        [200, 200, 200, 401],
    ),
    (
        "POST",
        "/policies/{name}/rollout",
        "/policies/seeded/rollout",
        Body::Rollout,
        [201, 403, 403, 401],
    ),
    (
        "GET",
        "/policies/{name}/status",
        "/policies/seeded/status",
        Body::Empty,
        [200, 200, 200, 401],
    ),
    (
        "DELETE",
        "/policies/{name}",
        "/policies/seeded",
        Body::Empty,
        [200, 403, 403, 401],
    ),
    // The admin's POST stores the model the later rows read (version "seeded").
    (
        "POST",
        "/models",
        "/models",
        Body::Model,
        [201, 403, 403, 401],
    ),
    (
        "GET",
        "/models",
        "/models",
        Body::Empty,
        [200, 200, 200, 401],
    ),
    (
        "GET",
        "/models/{version}",
        "/models/seeded",
        Body::Empty,
        [200, 200, 200, 401],
    ),
    (
        "POST",
        "/models/{version}/rollout",
        "/models/seeded/rollout",
        Body::Rollout,
        [201, 403, 403, 401],
    ),
    (
        "GET",
        "/models/{version}/status",
        "/models/seeded/status",
        Body::Empty,
        [200, 200, 200, 401],
    ),
    (
        "GET",
        "/enrollment-tokens",
        "/enrollment-tokens",
        Body::Empty,
        [200, 403, 403, 401],
    ),
    (
        "POST",
        "/enrollment-tokens",
        "/enrollment-tokens",
        Body::Token,
        [201, 403, 403, 401],
    ),
    (
        "DELETE",
        "/enrollment-tokens/{id}",
        "/enrollment-tokens/no-such-token",
        Body::Empty,
        [404, 403, 403, 401],
    ),
    (
        "POST",
        "/hosts/{id}/revoke",
        "/hosts/web-01/revoke",
        Body::Empty,
        [200, 403, 403, 401],
    ),
    (
        "POST",
        "/auth/logout",
        "/auth/logout",
        Body::Empty,
        [204, 204, 204, 401],
    ),
    (
        "POST",
        "/auth/password",
        "/auth/password",
        Body::Password,
        [200, 200, 200, 401],
    ),
];

fn credentials(role: usize) -> (&'static str, &'static str) {
    match role {
        ADMIN => ("admin", "admin-password-1"),
        1 => ("olga", "operator-password-1"),
        _ => ("vera", "viewer-password-1"),
    }
}

async fn login(sb: &Sandbox, role: usize) -> Value {
    let (username, password) = credentials(role);
    let r = reqwest::Client::new()
        .post(format!("{}/auth/login", sb.base_url()))
        .json(&json!({"username": username, "password": password}))
        .send()
        .await
        .expect("login");
    assert_eq!(r.status(), StatusCode::OK, "login as {username}");
    r.json().await.expect("login json")
}

async fn seed(sb: &Sandbox) {
    let db = sb.db().await;
    sqlx::query("INSERT INTO hosts (id, hostname, first_seen_ms, last_seen_ms) VALUES ('web-01', 'web-01', 1, 2)")
        .execute(&db)
        .await
        .expect("insert host");
    sqlx::query(
        "INSERT INTO anomalies (id, host_id, run_started_ms, status, started_ms, updated_ms, ended_ms,
            score, peak_score, severity, severity_rank, top_metric, contributors, context, model, close_reason)
         VALUES ('web-01:7', 'web-01', 1, 'open', 10, 10, NULL, 0.9, 0.9, 'high', 3, 'cpu.total_pct',
            '[]', '{}', 'test@1', '')",
    )
    .execute(&db)
    .await
    .expect("insert anomaly");
    db.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn every_endpoint_with_every_role() {
    let Some(sb) = Sandbox::new(Db::Sqlite).await else {
        return;
    };
    let _cp = sb.start_control_plane();
    let http = reqwest::Client::new();
    let admin = sb.admin_token().await;
    for (role, (username, password)) in [(1, credentials(1)), (2, credentials(2))] {
        let r = http
            .post(format!("{}/auth/register", sb.base_url()))
            .bearer_auth(&admin)
            .json(&json!({"username": username, "password": password, "role": ROLES[role]}))
            .send()
            .await
            .expect("register");
        assert_eq!(r.status(), StatusCode::CREATED);
    }
    seed(&sb).await;

    // Every operation of the document has a row here.
    let doc: Value = http
        .get(format!("{}/openapi.json", sb.base_url()))
        .send()
        .await
        .expect("openapi")
        .json()
        .await
        .expect("openapi json");
    let paths = doc["paths"].as_object().expect("paths");
    for (path, item) in paths {
        for method in item.as_object().expect("path item").keys() {
            assert!(
                CASES
                    .iter()
                    .any(|(m, p, ..)| m.eq_ignore_ascii_case(method) && p == path),
                "{method} {path} is in /openapi.json but not in the role matrix test"
            );
        }
    }
    for (method, path, ..) in CASES {
        assert!(
            doc["paths"][path][method.to_lowercase()].is_object(),
            "{method} {path} is tested but not documented"
        );
    }

    let mut tokens: Vec<Option<String>> = Vec::new();
    for role in 0..NONE {
        tokens.push(login(&sb, role).await["token"].as_str().map(String::from));
    }
    tokens.push(None);
    let mut refresh = login(&sb, 2).await["refresh_token"]
        .as_str()
        .expect("refresh token")
        .to_string();
    let mut serial = 0;
    let mut failures = Vec::new();
    for (method, template, path, body, expected) in CASES {
        for role in 0..ROLES.len() {
            if *template == "/auth/password" && role < NONE {
                // The logout case before revoked this role's token.
                tokens[role] = login(&sb, role).await["token"].as_str().map(String::from);
            }
            let mut req = http.request(
                Method::from_bytes(method.as_bytes()).expect("method"),
                format!("{}{path}", sb.base_url()),
            );
            if let Some(t) = &tokens[role] {
                req = req.bearer_auth(t);
            }
            serial += 1;
            let (me, my_password) = credentials(role);
            req = match body {
                Body::Empty => req,
                Body::Register => req.json(&json!({
                    "username": format!("user-{serial}"), "password": "a-long-password", "role": "viewer"
                })),
                Body::Login => req.json(&json!({"username": me, "password": my_password})),
                Body::Refresh => req.json(&json!({"refresh_token": refresh})),
                Body::Password => req.json(&json!({
                    "current_password": my_password, "new_password": my_password
                })),
                Body::Trigger => req.json(&json!({
                    "host": "web-01", "action": {"type": "no-such-action"}, "mode": "dry_run"
                })),
                Body::Policy => req.header("content-type", "application/yaml").body(
                    "name: seeded\nrules:\n  - name: r\n    when: { state: ['disk.used_pct:/ > 95'] }\n    \
                     action: { type: journal_vacuum, max_size_mb: 200 }\n",
                ),
                Body::Rollout => req.json(&json!({"canary_percent": 0})),
                Body::Model => req.json(&model_upload()),
                Body::Reset => req.json(&json!({"host": "web-01", "rule": "manual"})),
                Body::Query => req.json(&json!({"text": "fleet status"})),
                Body::Runbook => req.json(&json!({
                    "title": format!("runbook {serial}"), "body": "# steps\n"
                })),
                Body::Feedback => req.json(&json!({"verdict": "true_positive", "note": "real"})),
                Body::Token => req.json(&json!({"ttl_secs": 600, "max_uses": 1})),
                Body::Ack => req.json(&json!({"note": "on it"})),
                Body::Silence => req.json(&json!({
                    "hosts": ["web-01"], "duration_secs": 3600, "comment": "maintenance"
                })),
                Body::Score => {
                    let rows: Vec<Vec<f64>> =
                        (0..32).map(|i| vec![10.0 + f64::from(i % 5)]).collect();
                    req.json(&json!({"metrics": ["cpu.total_pct"], "rows": rows}))
                }
            };
            let r = req.send().await.expect("send");
            let status = r.status().as_u16();
            let text = r.text().await.unwrap_or_default();
            if matches!(body, Body::Refresh) && status == 200 {
                let v: Value = serde_json::from_str(&text).expect("refresh json");
                refresh = v["refresh_token"].as_str().expect("rotated").to_string();
            }
            let allowed_anyhow =
                expected[role] == 0 && ![401, 403].contains(&status) && status < 500;
            if status != expected[role] && !allowed_anyhow {
                failures.push(format!(
                    "{method} {path} as {}: {status}, expected {}: {text}",
                    ROLES[role], expected[role]
                ));
            } else if status >= 400 {
                let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                if !v["error"].is_string() {
                    failures.push(format!(
                        "{method} {path} as {}: not a JSON error: {text}",
                        ROLES[role]
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "role matrix violations:\n{}",
        failures.join("\n")
    );
}

/// The shipped model under version "seeded" (the first upload; later ones get 409 or 403).
fn model_upload() -> Value {
    use base64::Engine as _;
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/shipped");
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).expect("shipped file");
    let mut manifest: Value = serde_json::from_str(&read("manifest.json")).expect("manifest");
    manifest["version"] = json!("seeded");
    let golden: Value = serde_json::from_str(&read("golden.json")).expect("golden");
    let onnx = std::fs::read(dir.join("sco-window-pca.onnx")).expect("onnx");
    json!({
        "manifest": manifest,
        "onnx_base64": base64::engine::general_purpose::STANDARD.encode(onnx),
        "golden": golden,
    })
}
