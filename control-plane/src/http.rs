//! The REST API (axum). Paths follow the product's existing API:
//! `/health`, `/status`, `/metrics`, `/auth/*`, `/monitoring/metrics`, plus
//! `/hosts`, `/users` and `/metrics/fleet` (the fleet for Prometheus); the web console
//! under `/console/` ([`console`]).

pub mod anomaly;
pub mod auth;
pub mod console;
pub mod enroll;
pub mod error;
pub mod fleet;
pub mod fleet_metrics;
pub mod openapi;
pub mod policy;
pub mod remediation;
pub mod tls;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use tower_http::timeout::TimeoutLayer;

use crate::accounts::Accounts;
use crate::fleet::Fleet;
use crate::telemetry::{RequestLabels, Telemetry};
use error::AppError;

#[derive(Clone)]
pub struct AppState {
    pub fleet: Arc<Fleet>,
    pub accounts: Arc<Accounts>,
    pub telemetry: Arc<Telemetry>,
    /// The model `POST /anomaly` scores with.
    pub model: Arc<sco_models::Model>,
    pub started: Instant,
    /// A host whose last message is older than this is shown disconnected.
    pub stale_after_ms: i64,
    /// TLS and CORS settings.
    pub security: Arc<auth::Security>,
}

pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/status", get(status))
        .route("/metrics", get(metrics))
        .route("/metrics/fleet", get(fleet_metrics::scrape))
        .route("/auth/register", post(auth::register))
        .route("/auth/login", post(auth::login))
        .route("/auth/verify", get(auth::verify))
        .route("/auth/refresh", post(auth::refresh))
        .route("/auth/logout", post(auth::logout))
        .route("/auth/password", post(auth::password))
        .route("/openapi.json", get(openapi::document))
        .route("/users", get(auth::users))
        .route("/hosts", get(fleet::hosts))
        .route("/hosts/:id", get(fleet::host))
        .route("/hosts/:id/revoke", post(enroll::revoke_host))
        .route("/remediation/trigger", post(remediation::trigger))
        .route("/remediation/actions", get(remediation::actions))
        .route(
            "/remediation/breakers/reset",
            post(remediation::reset_breaker),
        )
        .route("/remediation/actions/:id/approve", post(policy::approve))
        .route("/remediation/actions/:id/reject", post(policy::reject))
        .route("/policies", get(policy::list).post(policy::create))
        .route("/policies/:name", get(policy::get).delete(policy::withdraw))
        .route("/policies/:name/rollout", post(policy::rollout))
        .route("/policies/:name/status", get(policy::status))
        .route("/audit", get(remediation::audit))
        .route(
            "/enrollment-tokens",
            get(enroll::list_tokens).post(enroll::create_token),
        )
        .route(
            "/enrollment-tokens/:id",
            axum::routing::delete(enroll::revoke_token),
        )
        .route("/monitoring/metrics", get(fleet::monitoring_metrics))
        .route(
            "/anomaly",
            get(anomaly::list)
                .post(anomaly::score)
                .layer(DefaultBodyLimit::max(4 * 1024 * 1024)),
        )
        .route("/anomaly/:id", get(anomaly::get))
        .merge(console::router())
        .fallback(|| async { error::AppError::not_found("no such endpoint") })
        .layer(axum::middleware::from_fn_with_state(state.clone(), observe))
        .layer(DefaultBodyLimit::max(64 * 1024))
        .layer(TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(30),
        ))
        .layer(tower::util::option_layer(auth::cors_layer(
            &state.security.cors_allowed_origins,
        )))
        .with_state(state)
}

/// Records latency per route template and adds security headers.
async fn observe(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let mut response = next.run(req).await;
    state
        .telemetry
        .http_requests
        .get_or_create(&RequestLabels {
            method,
            route,
            status: response.status().as_u16(),
        })
        .observe(started.elapsed().as_secs_f64());
    let h = response.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        header::HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::X_FRAME_OPTIONS,
        header::HeaderValue::from_static("DENY"),
    );
    h.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    // The console's pages set their own policy; everything else loads nothing.
    if !h.contains_key(header::CONTENT_SECURITY_POLICY) {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            header::HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
        );
    }
    h.insert(
        header::REFERRER_POLICY,
        header::HeaderValue::from_static("no-referrer"),
    );
    if state.security.tls {
        h.insert(
            header::STRICT_TRANSPORT_SECURITY,
            header::HeaderValue::from_static("max-age=31536000; includeSubDomains"),
        );
    }
    response
}

async fn health() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

async fn status(State(state): State<AppState>) -> Json<Value> {
    let (database, backend) = state.fleet.database().await;
    let t = &state.telemetry;
    Json(json!({
        "status": if database { "ok" } else { "degraded" },
        "version": crate::VERSION,
        "uptime_secs": state.started.elapsed().as_secs(),
        "database": { "reachable": database, "backend": backend },
        "agents_connected": state.fleet.connected_agents(),
        "ingest": {
            "messages": t.ingest_messages.get(),
            "rows": t.ingest_rows.get(),
            "duplicates": t.ingest_duplicates.get(),
        },
    }))
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.telemetry.encode(),
    )
}

/// Parses an optional integer query parameter, naming it when it is bad.
pub(crate) fn int_param(name: &str, value: Option<&str>) -> Result<Option<i64>, AppError> {
    value
        .map(|v| {
            v.trim().parse::<i64>().map_err(|_| {
                AppError::bad_request(format!(
                    "{name}: {v:?} is not an integer (Unix milliseconds for from/to)"
                ))
            })
        })
        .transpose()
}
