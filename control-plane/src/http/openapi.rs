//! `GET /openapi.json`: the OpenAPI 3 document, generated with utoipa from
//! the handlers' annotations, plus the role matrix ([`ROLES`]) that every
//! operation's description states and `tests/tests/roles.rs` checks
//! against the running server.

use std::sync::LazyLock;

use axum::http::header;
use axum::response::IntoResponse;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use super::error::ErrorBody;
use crate::auth::{Role, User};

/// Who may call each operation: `none` (no token needed), `any` (any valid
/// token), or the lowest role that may (admin > operator > viewer).
/// `/auth/register` is admin only, also before the first admin exists (then it is refused).
pub const ROLES: &[(&str, &str, &str)] = &[
    ("GET", "/health", "none"),
    ("GET", "/status", "none"),
    ("GET", "/metrics", "none"),
    ("GET", "/metrics/fleet", "viewer"),
    ("GET", "/openapi.json", "none"),
    ("POST", "/auth/register", "admin"),
    ("POST", "/auth/login", "none"),
    ("POST", "/auth/refresh", "none"),
    ("POST", "/auth/logout", "any"),
    ("POST", "/auth/password", "any"),
    ("GET", "/auth/verify", "any"),
    ("GET", "/users", "admin"),
    ("GET", "/hosts", "viewer"),
    ("GET", "/hosts/{id}", "viewer"),
    ("GET", "/monitoring/metrics", "viewer"),
    ("GET", "/anomaly", "viewer"),
    ("POST", "/anomaly", "viewer"),
    ("GET", "/anomaly/{id}", "viewer"),
    ("GET", "/enrollment-tokens", "admin"),
    ("POST", "/enrollment-tokens", "admin"),
    ("DELETE", "/enrollment-tokens/{id}", "admin"),
    ("POST", "/hosts/{id}/revoke", "admin"),
    ("POST", "/remediation/trigger", "operator"),
    ("GET", "/remediation/actions", "viewer"),
    ("POST", "/remediation/breakers/reset", "operator"),
    ("POST", "/remediation/actions/{id}/approve", "operator"),
    ("POST", "/remediation/actions/{id}/reject", "operator"),
    ("GET", "/policies", "viewer"),
    ("POST", "/policies", "admin"),
    ("GET", "/policies/{name}", "viewer"),
    ("DELETE", "/policies/{name}", "admin"),
    ("POST", "/policies/{name}/rollout", "admin"),
    ("GET", "/policies/{name}/status", "viewer"),
    ("GET", "/audit", "admin"),
];

#[derive(OpenApi)]
#[openapi(
    info(
        title = "SmartCloudOps control plane",
        description = "REST API of the SmartCloudOps control plane. Errors are JSON `{\"error\": message}` \
            with a 4xx status naming the problem. Access tokens are short-lived JWTs (HS256) sent as \
            `Authorization: Bearer`; refresh them with `POST /auth/refresh`. Request bodies are strict \
            JSON (unknown fields are refused) of at most 64 KiB (4 MiB for `POST /anomaly`)."
    ),
    paths(
        health,
        status,
        metrics,
        openapi_json,
        super::auth::register,
        super::auth::login,
        super::auth::refresh,
        super::auth::logout,
        super::auth::password,
        super::auth::verify,
        super::auth::users,
        super::fleet::hosts,
        super::fleet::host,
        super::fleet::monitoring_metrics,
        super::fleet_metrics::scrape,
        super::anomaly::list,
        super::anomaly::score,
        super::anomaly::get,
        list_enrollment_tokens,
        create_enrollment_token,
        revoke_enrollment_token,
        revoke_host,
        remediation_trigger,
        remediation_actions,
        reset_breaker,
        approve_action,
        reject_action,
        list_policies,
        create_policy,
        get_policy,
        withdraw_policy,
        rollout_policy,
        policy_status,
        audit,
    ),
    components(schemas(
        ErrorBody,
        Role,
        User,
        super::auth::RegisterBody,
        super::auth::UserResponse,
        super::auth::LoginBody,
        super::auth::TokenResponse,
        super::auth::RefreshBody,
        super::auth::PasswordBody,
        super::auth::VerifyResponse,
        super::auth::UsersResponse,
        super::anomaly::ScoreBody,
        HealthResponse,
        StatusResponse,
        super::fleet::HostsResponse,
        super::fleet::HostResponse,
        super::fleet::MetricsResponse,
        super::anomaly::AnomaliesResponse,
        super::anomaly::AnomalyResponse,
        super::anomaly::ScoreResponse,
        CreateEnrollmentToken,
        EnrollmentTokenCreated,
        EnrollmentTokens,
        HostRevoked,
        TriggerRequest,
        TriggerResponse,
        ActionsResponse,
        AuditResponse,
        ResetRequest,
        RejectRequest,
        PolicyCreated,
        PoliciesResponse,
        PolicyResponse,
        RolloutBody,
        RolloutResponse,
        PolicyStatusResponse,
        PolicyWithdrawn,
    )),
    modifiers(&Security),
    tags(
        (name = "service", description = "health, status, metrics, this document"),
        (name = "auth", description = "users, login, tokens"),
        (name = "fleet", description = "hosts and their metrics, also for Prometheus"),
        (name = "anomaly", description = "anomaly events and scoring"),
        (name = "enrollment", description = "enrollment tokens and host revocation"),
        (name = "remediation", description = "remediation actions and the audit log"),
        (name = "policies", description = "signed fleet policies and their rollouts"),
    )
)]
pub struct ApiDoc;

/// Declares the bearer scheme and writes each operation's role into its
/// description.
struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
        for (path, item) in openapi.paths.paths.iter_mut() {
            let operations = [
                ("GET", &mut item.get),
                ("PUT", &mut item.put),
                ("POST", &mut item.post),
                ("DELETE", &mut item.delete),
                ("PATCH", &mut item.patch),
            ];
            for (method, op) in operations {
                let Some(op) = op else { continue };
                let role = ROLES
                    .iter()
                    .find(|(m, p, _)| *m == method && p == path)
                    .map_or("admin", |r| r.2);
                let line = match role {
                    "none" => "Role: none (no token needed).".to_string(),
                    "any" => "Role: any valid token.".to_string(),
                    r => format!("Role: {r} or higher."),
                };
                op.description = Some(match op.description.take() {
                    Some(d) if !d.is_empty() => format!("{d}\n\n{line}"),
                    _ => line,
                });
            }
        }
    }
}

static DOCUMENT: LazyLock<String> =
    LazyLock::new(|| ApiDoc::openapi().to_json().unwrap_or_default());

pub async fn document() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        DOCUMENT.as_str(),
    )
}

// Documentation of the handlers that live in `http.rs`.

#[derive(ToSchema)]
#[allow(dead_code)]
struct HealthResponse {
    #[schema(example = "ok")]
    status: String,
}

/// Version, uptime, database reachability, connected agents, ingest
/// counters.
#[derive(ToSchema)]
#[allow(dead_code)]
struct StatusResponse {
    /// `ok` or `degraded` (database unreachable).
    status: String,
    version: String,
    uptime_secs: u64,
    #[schema(value_type = Object)]
    database: (),
    agents_connected: u64,
    #[schema(value_type = Object)]
    ingest: (),
}

/// Liveness.
#[utoipa::path(get, path = "/health", tag = "service", security(()),
    responses((status = 200, description = "alive", body = HealthResponse)))]
#[allow(dead_code)]
fn health() {}

/// Version, uptime, database and ingest state.
#[utoipa::path(get, path = "/status", tag = "service", security(()),
    responses((status = 200, description = "status", body = StatusResponse)))]
#[allow(dead_code)]
fn status() {}

/// The control plane's own metrics (OpenMetrics text).
#[utoipa::path(get, path = "/metrics", tag = "service", security(()),
    responses((status = 200, description = "OpenMetrics text", body = String,
        content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8")))]
#[allow(dead_code)]
fn metrics() {}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "service", security(()),
    responses((status = 200, description = "the OpenAPI 3 document", body = Object)))]
#[allow(dead_code)]
fn openapi_json() {}

// The enrollment handlers (`http/enroll.rs`) are documented here.

#[derive(ToSchema)]
#[allow(dead_code)]
struct CreateEnrollmentToken {
    /// Seconds until the token expires (default 3600).
    ttl_secs: Option<i64>,
    /// How many agents may enroll with it (default 1).
    max_uses: Option<i64>,
    /// Labels every agent enrolled with it gets (at most 64).
    #[schema(value_type = Option<Object>)]
    labels: (),
}

#[derive(ToSchema)]
#[allow(dead_code)]
struct EnrollmentTokenCreated {
    /// The secret, shown only in this response.
    token: String,
    #[schema(value_type = Object)]
    enrollment_token: (),
    /// SHA-256 of the fleet CA certificate, for the agent to pin.
    ca_sha256: String,
    note: String,
}

#[derive(ToSchema)]
#[allow(dead_code)]
struct EnrollmentTokens {
    #[schema(value_type = Vec<Object>)]
    enrollment_tokens: (),
}

#[derive(ToSchema)]
#[allow(dead_code)]
struct HostRevoked {
    host: String,
    revoked: bool,
}

/// Enrollment tokens (without their secrets).
#[utoipa::path(get, path = "/enrollment-tokens", tag = "enrollment", security(("bearer" = [])),
    responses(
        (status = 200, description = "enrollment tokens", body = EnrollmentTokens),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 403, description = "not an admin", body = ErrorBody),
    ))]
#[allow(dead_code)]
fn list_enrollment_tokens() {}

/// Creates an enrollment token; its secret is shown once.
#[utoipa::path(post, path = "/enrollment-tokens", tag = "enrollment", security(("bearer" = [])),
    request_body = CreateEnrollmentToken,
    responses(
        (status = 201, description = "created", body = EnrollmentTokenCreated),
        (status = 400, description = "invalid ttl_secs, max_uses or labels", body = ErrorBody),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 403, description = "not an admin", body = ErrorBody),
    ))]
#[allow(dead_code)]
fn create_enrollment_token() {}

/// Revokes an enrollment token.
#[utoipa::path(delete, path = "/enrollment-tokens/{id}", tag = "enrollment", security(("bearer" = [])),
    params(("id" = String, Path, description = "enrollment token id")),
    responses(
        (status = 204, description = "revoked"),
        (status = 400, description = "id too long", body = ErrorBody),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 403, description = "not an admin", body = ErrorBody),
        (status = 404, description = "no such token", body = ErrorBody),
    ))]
#[allow(dead_code)]
fn revoke_enrollment_token() {}

/// Revokes a host: its certificate is refused from now on.
#[utoipa::path(post, path = "/hosts/{id}/revoke", tag = "enrollment", security(("bearer" = [])),
    params(("id" = String, Path, description = "host (agent) id")),
    responses(
        (status = 200, description = "revoked", body = HostRevoked),
        (status = 400, description = "invalid host id", body = ErrorBody),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 403, description = "not an admin", body = ErrorBody),
        (status = 404, description = "no such host", body = ErrorBody),
    ))]
#[allow(dead_code)]
fn revoke_host() {}

// The remediation handlers (`http/remediation.rs`) are documented here.

#[derive(ToSchema)]
#[allow(dead_code)]
struct TriggerRequest {
    /// Host (agent) id.
    host: String,
    /// A typed action, e.g. `{"type": "kill_process", "name": "stress"}`.
    #[schema(value_type = Object)]
    action: (),
    /// `dry_run` (default) or `execute`.
    mode: Option<String>,
}

#[derive(ToSchema)]
#[allow(dead_code)]
struct TriggerResponse {
    #[schema(value_type = Object)]
    action: (),
}

#[derive(ToSchema)]
#[allow(dead_code)]
struct ActionsResponse {
    count: u64,
    #[schema(value_type = Vec<Object>)]
    actions: (),
}

#[derive(ToSchema)]
#[allow(dead_code)]
struct AuditResponse {
    count: u64,
    #[schema(value_type = Vec<Object>)]
    entries: (),
}

/// Asks one host for one allowlisted action; the agent's local safety rules
/// still decide.
#[utoipa::path(post, path = "/remediation/trigger", tag = "remediation", security(("bearer" = [])),
    request_body = TriggerRequest,
    responses(
        (status = 202, description = "requested", body = TriggerResponse),
        (status = 400, description = "invalid action or mode", body = ErrorBody),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 403, description = "role too low", body = ErrorBody),
        (status = 404, description = "no such host", body = ErrorBody),
    ))]
#[allow(dead_code)]
fn remediation_trigger() {}

/// Remediation actions and their states.
#[utoipa::path(get, path = "/remediation/actions", tag = "remediation", security(("bearer" = [])),
    params(
        ("host" = Option<String>, Query, description = "host (agent) id"),
        ("state" = Option<String>, Query, description = "action state"),
        ("rule" = Option<String>, Query, description = "rule that asked for it"),
        ("limit" = Option<i64>, Query, description = "at most this many"),
    ),
    responses(
        (status = 200, description = "actions", body = ActionsResponse),
        (status = 400, description = "invalid parameter (named)", body = ErrorBody),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 403, description = "role too low", body = ErrorBody),
    ))]
#[allow(dead_code)]
fn remediation_actions() {}

/// The audit log.
#[utoipa::path(get, path = "/audit", tag = "remediation", security(("bearer" = [])),
    params(
        ("host" = Option<String>, Query, description = "host (agent) id"),
        ("actor" = Option<String>, Query, description = "who acted"),
        ("action" = Option<String>, Query, description = "what was done"),
        ("limit" = Option<i64>, Query, description = "at most this many"),
    ),
    responses(
        (status = 200, description = "audit entries", body = AuditResponse),
        (status = 400, description = "invalid parameter (named)", body = ErrorBody),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 403, description = "not an admin", body = ErrorBody),
    ))]
#[allow(dead_code)]
fn audit() {}

#[derive(ToSchema)]
#[allow(dead_code)]
struct ResetRequest {
    /// Host (agent) id.
    host: String,
    /// `manual` or `policy/rule`.
    rule: String,
}

/// Asks a host to close the circuit breaker of one rule (the breaker opens
/// after failed verifications and stays open until a human resets it).
#[utoipa::path(post, path = "/remediation/breakers/reset", tag = "remediation", security(("bearer" = [])),
    request_body = ResetRequest,
    responses(
        (status = 202, description = "requested", body = TriggerResponse),
        (status = 400, description = "invalid host or rule (named)", body = ErrorBody),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 403, description = "role too low", body = ErrorBody),
        (status = 404, description = "no such host", body = ErrorBody),
    ))]
#[allow(dead_code)]
fn reset_breaker() {}

/// Approves a proposal of an `approve` rule; it runs once a fleet lease is
/// free.
#[utoipa::path(post, path = "/remediation/actions/{id}/approve", tag = "remediation", security(("bearer" = [])),
    params(("id" = String, Path, description = "action id")),
    responses(
        (status = 200, description = "approved", body = TriggerResponse),
        (status = 400, description = "invalid id", body = ErrorBody),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 403, description = "role too low", body = ErrorBody),
        (status = 404, description = "no such action", body = ErrorBody),
        (status = 409, description = "not a proposal waiting for a decision (named state)", body = ErrorBody),
    ))]
#[allow(dead_code)]
fn approve_action() {}

#[derive(ToSchema)]
#[allow(dead_code)]
struct RejectRequest {
    /// Why: one line, at most 500 characters, kept as the action's `reason` and in the audit
    /// entry. Blank is no reason.
    #[schema(max_length = 500)]
    reason: Option<String>,
}

/// Rejects a proposal of an `approve` rule. The body is optional: without one the action is
/// rejected without a reason.
#[utoipa::path(post, path = "/remediation/actions/{id}/reject", tag = "remediation", security(("bearer" = [])),
    params(("id" = String, Path, description = "action id")),
    request_body = Option<RejectRequest>,
    responses(
        (status = 200, description = "rejected", body = TriggerResponse),
        (status = 400, description = "invalid id or reason (named)", body = ErrorBody),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 403, description = "role too low", body = ErrorBody),
        (status = 404, description = "no such action", body = ErrorBody),
        (status = 409, description = "not a proposal waiting for a decision (named state)", body = ErrorBody),
        (status = 413, description = "body over 64 KiB", body = ErrorBody),
        (status = 415, description = "a body that is not JSON", body = ErrorBody),
    ))]
#[allow(dead_code)]
fn reject_action() {}

#[derive(ToSchema)]
#[allow(dead_code)]
struct PolicyCreated {
    /// False when the document equals the newest revision's.
    created: bool,
    /// name, revision, document (canonical), signature, source, created_by, created_at_ms.
    #[schema(value_type = Object)]
    policy: (),
}

#[derive(ToSchema)]
#[allow(dead_code)]
struct PoliciesResponse {
    count: u64,
    #[schema(value_type = Vec<Object>)]
    policies: (),
}

#[derive(ToSchema)]
#[allow(dead_code)]
struct PolicyResponse {
    name: String,
    #[schema(value_type = Vec<Object>)]
    revisions: (),
    #[schema(value_type = Vec<Object>)]
    rollouts: (),
}

#[derive(ToSchema)]
#[allow(dead_code)]
struct RolloutBody {
    /// Revision to roll out; the newest by default.
    revision: Option<i64>,
    /// Share of targeted hosts that get it first (0..=100, default 10; 0: all at once).
    canary_percent: Option<i64>,
    /// Canary duration in seconds (default 300).
    canary_secs: Option<i64>,
    /// Extra anomaly events canary hosts may open before the rollout stops (default 3).
    max_new_anomalies: Option<i64>,
}

#[derive(ToSchema)]
#[allow(dead_code)]
struct RolloutResponse {
    #[schema(value_type = Object)]
    rollout: (),
}

#[derive(ToSchema)]
#[allow(dead_code)]
struct PolicyStatusResponse {
    name: String,
    #[schema(value_type = Option<Object>)]
    rollout: (),
    /// Per host: desired_revision, canary, reported_revision, applied_revision, applied_at_ms, error, in_sync.
    #[schema(value_type = Vec<Object>)]
    hosts: (),
}

/// Policies with their newest revision and current rollout.
#[utoipa::path(get, path = "/policies", tag = "policies", security(("bearer" = [])),
    responses(
        (status = 200, description = "policies", body = PoliciesResponse),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 403, description = "role too low", body = ErrorBody),
    ))]
#[allow(dead_code)]
fn list_policies() {}

/// Validates a policy document (YAML, or JSON), signs it with the fleet's
/// ed25519 key and stores it as the next immutable revision.
#[utoipa::path(post, path = "/policies", tag = "policies", security(("bearer" = [])),
    request_body(content = String, content_type = "application/yaml", description = "policy document (YAML or JSON)"),
    responses(
        (status = 201, description = "new revision", body = PolicyCreated),
        (status = 200, description = "same as the newest revision", body = PolicyCreated),
        (status = 400, description = "invalid document (names the field and the reason)", body = ErrorBody),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 403, description = "not an admin", body = ErrorBody),
        (status = 409, description = "concurrent revisions", body = ErrorBody),
    ))]
#[allow(dead_code)]
fn create_policy() {}

/// A policy with every revision and its rollouts.
#[utoipa::path(get, path = "/policies/{name}", tag = "policies", security(("bearer" = [])),
    params(("name" = String, Path, description = "policy name")),
    responses(
        (status = 200, description = "policy", body = PolicyResponse),
        (status = 400, description = "invalid name", body = ErrorBody),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 403, description = "role too low", body = ErrorBody),
        (status = 404, description = "no such policy", body = ErrorBody),
    ))]
#[allow(dead_code)]
fn get_policy() {}

#[derive(ToSchema)]
#[allow(dead_code)]
struct PolicyWithdrawn {
    /// The withdrawal revision (empty document, signed).
    #[schema(value_type = Object)]
    policy: (),
    #[schema(value_type = Object)]
    rollout: (),
}

/// Withdraws a policy from every host: a signed revision with an empty
/// document, rolled out at once. Earlier revisions stay.
#[utoipa::path(delete, path = "/policies/{name}", tag = "policies", security(("bearer" = [])),
    params(("name" = String, Path, description = "policy name")),
    responses(
        (status = 200, description = "withdrawn", body = PolicyWithdrawn),
        (status = 400, description = "invalid name", body = ErrorBody),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 403, description = "not an admin", body = ErrorBody),
        (status = 404, description = "no such policy", body = ErrorBody),
        (status = 409, description = "already withdrawn", body = ErrorBody),
    ))]
#[allow(dead_code)]
fn withdraw_policy() {}

/// Rolls a revision out: canary hosts first; everyone after `canary_secs`
/// unless a canary host refuses it or canary hosts open more anomaly
/// events than allowed, which stops the rollout by itself.
#[utoipa::path(post, path = "/policies/{name}/rollout", tag = "policies", security(("bearer" = [])),
    params(("name" = String, Path, description = "policy name")),
    request_body = RolloutBody,
    responses(
        (status = 201, description = "rollout started", body = RolloutResponse),
        (status = 400, description = "invalid parameter (named)", body = ErrorBody),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 403, description = "not an admin", body = ErrorBody),
        (status = 404, description = "no such policy or revision", body = ErrorBody),
        (status = 409, description = "a rollout is still in its canary phase", body = ErrorBody),
    ))]
#[allow(dead_code)]
fn rollout_policy() {}

/// Per host: the revision meant for it, the one it applied, when, and errors.
#[utoipa::path(get, path = "/policies/{name}/status", tag = "policies", security(("bearer" = [])),
    params(("name" = String, Path, description = "policy name")),
    responses(
        (status = 200, description = "status", body = PolicyStatusResponse),
        (status = 400, description = "invalid name", body = ErrorBody),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 403, description = "role too low", body = ErrorBody),
        (status = 404, description = "no such policy", body = ErrorBody),
    ))]
#[allow(dead_code)]
fn policy_status() {}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `.route(..)` in the router source, as (METHOD, /openapi/{path}).
    fn router_routes() -> Vec<(String, String)> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = vec![dir.join("http.rs")];
        if let Ok(entries) = std::fs::read_dir(dir.join("http")) {
            files.extend(
                entries
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| !p.ends_with("openapi.rs")),
            );
        }
        let mut routes = Vec::new();
        for file in files {
            let text = std::fs::read_to_string(&file).expect("read router source");
            // Routers built in tests are not the API.
            let text = text.split("#[cfg(test)]").next().unwrap_or_default();
            for chunk in text.split(".route(").skip(1) {
                let Some(path) = chunk.split('"').nth(1) else {
                    continue;
                };
                // The route's method router ends where the next builder
                // call on the Router starts.
                let end = [
                    ".route(",
                    ".fallback(",
                    ".layer(axum::middleware",
                    ".with_state(",
                ]
                .iter()
                .filter_map(|m| chunk.find(m))
                .min()
                .unwrap_or(chunk.len());
                let body = &chunk[..end];
                let openapi_path = path
                    .split('/')
                    .map(|seg| match seg.strip_prefix(':') {
                        Some(name) => format!("{{{name}}}"),
                        None => seg.to_string(),
                    })
                    .collect::<Vec<_>>()
                    .join("/");
                for method in ["get", "post", "put", "delete", "patch"] {
                    let called = body.match_indices(&format!("{method}(")).any(|(i, _)| {
                        i == 0 || !body[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_')
                    });
                    if called {
                        routes.push((method.to_uppercase(), openapi_path.clone()));
                    }
                }
            }
        }
        routes
    }

    #[test]
    fn every_route_is_documented_with_a_role() {
        let doc: serde_json::Value =
            serde_json::from_str(&ApiDoc::openapi().to_json().expect("json")).expect("parse");
        let routes = router_routes();
        assert!(routes.len() >= 21, "found only {routes:?}");
        for (method, path) in &routes {
            let op = &doc["paths"][path][method.to_lowercase()];
            assert!(
                op.is_object(),
                "{method} {path} is routed but not in /openapi.json"
            );
            assert!(
                ROLES.iter().any(|(m, p, _)| m == method && p == path),
                "{method} {path} has no entry in ROLES"
            );
        }
        for (method, path, _) in ROLES {
            assert!(
                routes.iter().any(|(m, p)| m == method && p == path),
                "ROLES names {method} {path}, which is not routed"
            );
        }
        assert_eq!(doc["openapi"].as_str().map(|v| &v[..2]), Some("3."));
    }
}
