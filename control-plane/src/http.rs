//! The REST API (axum). Paths follow the product's existing API:
//! `/health`, `/status`, `/metrics`, `/auth/*`, `/monitoring/metrics`, plus
//! `/hosts`, `/users` and `/metrics/fleet` (the fleet for Prometheus); the web console
//! under `/console/` ([`console`]).

pub mod access;
pub mod anomaly;
pub mod audit;
pub mod auth;
pub mod console;
pub mod enroll;
pub mod error;
pub mod feedback;
pub mod fleet;
pub mod fleet_metrics;
pub mod models;
pub mod notifications;
pub mod openapi;
pub mod policy;
pub mod query;
pub mod remediation;
pub mod runbooks;
pub mod slack;
pub mod tls;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json, Router};
use serde::Serialize;
use tower_http::timeout::TimeoutLayer;
use utoipa::OpenApi;
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;

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
    /// ChatOps (`/query`).
    pub chat: Arc<crate::chatops::ChatOps>,
    /// The knowledge base (`/runbooks`).
    pub runbooks: Arc<crate::runbooks::Runbooks>,
    pub notifier: Arc<crate::notify::Notifier>,
}

/// Every route, each from its handler's `#[utoipa::path]` declaration (method, path, role,
/// request and responses): the router and the OpenAPI document come from the same list.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(health))
        .routes(routes!(status))
        .routes(routes!(metrics))
        .routes(routes!(openapi::document))
        .routes(routes!(fleet_metrics::scrape))
        .routes(routes!(auth::register))
        .routes(routes!(auth::login))
        .routes(routes!(auth::verify))
        .routes(routes!(auth::refresh))
        .routes(routes!(auth::logout))
        .routes(routes!(auth::password))
        .routes(routes!(auth::users))
        .routes(routes!(fleet::hosts))
        .routes(routes!(fleet::host))
        .routes(routes!(fleet::revoke_host))
        .routes(routes!(fleet::monitoring_metrics))
        .routes(routes!(remediation::trigger))
        .routes(routes!(remediation::actions))
        .routes(routes!(remediation::reset_breaker))
        .routes(routes!(remediation::approve))
        .routes(routes!(remediation::reject))
        .routes(routes!(
            remediation::preferences,
            remediation::reset_preferences
        ))
        .routes(routes!(audit::audit))
        .routes(routes!(policy::list, policy::create))
        .routes(routes!(policy::get, policy::withdraw))
        .routes(routes!(policy::rollout))
        .routes(routes!(policy::status))
        .routes(
            routes!(models::list, models::upload)
                .layer(DefaultBodyLimit::max(models::MAX_UPLOAD_BODY)),
        )
        .routes(routes!(models::get))
        .routes(routes!(models::rollout))
        .routes(routes!(models::status))
        .routes(routes!(enroll::list_tokens, enroll::create_token))
        .routes(routes!(enroll::revoke_token))
        .routes(routes!(anomaly::list))
        .routes(routes!(anomaly::score).layer(DefaultBodyLimit::max(4 * 1024 * 1024)))
        .routes(routes!(anomaly::get))
        .routes(routes!(feedback::give))
        .routes(routes!(feedback::list))
        .routes(routes!(feedback::export))
        .routes(routes!(feedback::undo))
        .routes(routes!(query::ask, query::history))
        .routes(routes!(slack::command))
        .routes(routes!(slack::interaction))
        // a runbook body may be 64 KiB of markdown, JSON-escaped
        .routes(routes!(runbooks::list, runbooks::create).layer(DefaultBodyLimit::max(256 * 1024)))
        .routes(
            routes!(runbooks::get, runbooks::update, runbooks::delete)
                .layer(DefaultBodyLimit::max(256 * 1024)),
        )
        .routes(routes!(runbooks::revisions))
        .routes(routes!(notifications::list))
        .routes(routes!(notifications::ack))
        .routes(routes!(
            notifications::silences,
            notifications::create_silence
        ))
        .routes(routes!(
            notifications::silence,
            notifications::expire_silence
        ))
}

pub fn app(state: AppState) -> Router {
    let (router, mut doc) = routes().split_for_parts();
    openapi::finish(&mut doc);
    let access = Arc::new(openapi::access_table(&doc));
    for undeclared in access.undeclared() {
        tracing::error!(route = %undeclared, "refused: no access declaration");
    }
    let document = openapi::Document(doc.to_json().unwrap_or_default().into());
    router
        .route_layer(axum::middleware::from_fn_with_state(
            (access, state.clone()),
            access::enforce,
        ))
        .layer(Extension(document))
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

/// Liveness.
#[derive(Serialize, utoipa::ToSchema)]
struct HealthResponse {
    #[schema(example = "ok")]
    status: &'static str,
}

/// Liveness.
#[utoipa::path(get, path = "/health", tag = "service", security(()),
    responses((status = 200, description = "alive", body = HealthResponse)))]
async fn health() -> Json<HealthResponse> {
    Json(HealthResponse { status: "ok" })
}

/// Version, uptime, database reachability, connected agents, ingest counters.
#[derive(Serialize, utoipa::ToSchema)]
struct StatusResponse {
    /// `ok` or `degraded` (database unreachable).
    status: &'static str,
    version: &'static str,
    uptime_secs: u64,
    database: DatabaseStatus,
    agents_connected: u64,
    ingest: IngestCounters,
    replica: ReplicaStatus,
}

/// This control plane among the replicas sharing its database.
#[derive(Serialize, utoipa::ToSchema)]
struct ReplicaStatus {
    /// The holder name of its leases.
    id: String,
    /// Where agents are told to reach it (`replicas.advertise`); absent: never named to agents.
    advertise: Option<String>,
    /// Where agents that came over QUIC are told to reach it (`replicas.advertise_quic`);
    /// absent: they are sent to `advertise` over TCP.
    advertise_quic: Option<String>,
    /// The leases on fleet-wide work it holds now, e.g. `["notify-route", "ticks"]`; empty
    /// when the database cannot be read.
    leases: Vec<String>,
    /// Agent streams it holds.
    streams: u64,
    /// Its stream limit; 0: none.
    max_streams: u64,
    /// How late its runtime runs tasks, in ms: the largest lateness of a 100 ms timer over
    /// about the last 2 s.
    lag_ms: u64,
    /// `replicas.max_lag_ms`: over this lag new agent streams are refused; 0: never.
    max_lag_ms: u64,
    /// Whether new agent streams are refused now because the runtime is late (until the lag
    /// is under half of `max_lag_ms`); the streams held go on.
    shedding: bool,
}

#[derive(Serialize, utoipa::ToSchema)]
struct DatabaseStatus {
    reachable: bool,
    /// `sqlite` or `postgres`.
    backend: String,
}

/// Since the control plane started.
#[derive(Serialize, utoipa::ToSchema)]
struct IngestCounters {
    messages: u64,
    rows: u64,
    duplicates: u64,
}

/// Version, uptime, database and ingest state, and this replica's leases and streams.
#[utoipa::path(get, path = "/status", tag = "service", security(()),
    responses((status = 200, description = "status", body = StatusResponse)))]
async fn status(State(state): State<AppState>) -> Json<StatusResponse> {
    let (database, backend) = state.fleet.hosts.database().await;
    let t = &state.telemetry;
    let r = &state.fleet.replicas;
    let leases = r.held_leases().await.unwrap_or_else(|e| {
        tracing::warn!(error = %e, "cannot read this replica's leases");
        Vec::new()
    });
    Json(StatusResponse {
        status: if database { "ok" } else { "degraded" },
        version: crate::VERSION,
        uptime_secs: state.started.elapsed().as_secs(),
        database: DatabaseStatus {
            reachable: database,
            backend,
        },
        agents_connected: state.fleet.hosts.connected_agents() as u64,
        ingest: IngestCounters {
            messages: t.ingest_messages.get(),
            rows: t.ingest_rows.get(),
            duplicates: t.ingest_duplicates.get(),
        },
        replica: ReplicaStatus {
            id: r.id().to_string(),
            advertise: r.advertise().map(str::to_string),
            advertise_quic: r.advertise_quic().map(str::to_string),
            leases,
            streams: r.streams() as u64,
            max_streams: r.max_streams() as u64,
            lag_ms: r.load().lag_ms(),
            max_lag_ms: r.load().limit_ms(),
            shedding: r.load().shedding(),
        },
    })
}

#[utoipa::path(get, path = "/metrics", tag = "service", security(()),
    responses((status = 200, description = "OpenMetrics text", body = String,
        content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8")))]
async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.telemetry.encode(),
    )
}

/// The checked paging of a list: `limit` in 1..=max (or its default), `offset` not negative,
/// and the time window `from`..`to` (Unix ms) in order.
pub(crate) struct Page {
    pub limit: i64,
    pub offset: i64,
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
}

impl Page {
    /// Reads `limit`, `offset`, `from` and `to`, naming the one that is bad.
    pub fn parse(
        [limit, offset, from, to]: [Option<&str>; 4],
        default_limit: i64,
        max_limit: i64,
    ) -> Result<Self, AppError> {
        let limit = int_param("limit", limit)?.unwrap_or(default_limit);
        if !(1..=max_limit).contains(&limit) {
            return Err(AppError::bad_request(format!(
                "limit: {limit} is outside 1..={max_limit}"
            )));
        }
        let offset = int_param("offset", offset)?.unwrap_or(0);
        if offset < 0 {
            return Err(AppError::bad_request(format!(
                "offset: {offset} is negative"
            )));
        }
        let from_ms = int_param("from", from)?;
        let to_ms = int_param("to", to)?;
        if let (Some(f), Some(t)) = (from_ms, to_ms) {
            if f > t {
                return Err(AppError::bad_request(format!(
                    "from ({f}) is after to ({t})"
                )));
            }
        }
        Ok(Self {
            limit,
            offset,
            from_ms,
            to_ms,
        })
    }

    /// The offset of the next page after one of `len` items, None on the last page.
    pub fn next_offset(&self, len: usize) -> Option<i64> {
        (len as i64 == self.limit).then_some(self.offset + self.limit)
    }
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
