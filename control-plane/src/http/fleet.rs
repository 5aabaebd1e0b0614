//! `/hosts` (list, one host, revoke) and `/monitoring/metrics`.

use axum::extract::{Path, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::auth::Caller;
use super::error::{ApiQuery, AppError, ErrorBody};
use super::AppState;
use crate::fleet::{
    now_ms, valid_agent_id, Host, LatestValue, ProcessRow, RollupPoint, RollupQuery,
};

/// Hosts with hostname, OS, kernel, agent version, labels, first/last seen
/// and whether connected.
#[utoipa::path(get, path = "/hosts", tag = "fleet", security(("bearer" = ["viewer"])),
    responses(
        (status = 200, description = "every host", body = inline(HostsResponse)),
        (status = 401, description = "missing or invalid token", body = inline(super::error::ErrorBody)),
        (status = 403, description = "role too low", body = inline(super::error::ErrorBody)),
    ))]
pub async fn hosts(State(state): State<AppState>) -> Result<Json<HostsResponse>, AppError> {
    let hosts = state.fleet.hosts.hosts(state.stale_after_ms).await?;
    Ok(Json(HostsResponse { hosts }))
}

/// One host with the latest value of every metric and its top processes.
#[utoipa::path(get, path = "/hosts/{id}", tag = "fleet", security(("bearer" = ["viewer"])),
    params(("id" = String, Path, description = "host (agent) id")),
    responses(
        (status = 200, description = "the host", body = inline(HostResponse)),
        (status = 400, description = "invalid host id", body = inline(super::error::ErrorBody)),
        (status = 401, description = "missing or invalid token", body = inline(super::error::ErrorBody)),
        (status = 403, description = "role too low", body = inline(super::error::ErrorBody)),
        (status = 404, description = "no such host", body = inline(super::error::ErrorBody)),
    ))]
pub async fn host(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<HostResponse>, AppError> {
    if !valid_agent_id(&id) {
        return Err(AppError::bad_request(format!("invalid host id {id:?}")));
    }
    let d = state
        .fleet
        .hosts
        .host_detail(&id, state.stale_after_ms)
        .await?
        .ok_or_else(|| AppError::not_found(format!("no host {id:?}")))?;
    Ok(Json(HostResponse {
        host: d.host,
        latest: d.latest,
        top_processes: TopProcesses {
            ts_ms: d.processes_at_ms,
            processes: d.processes,
        },
    }))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct MetricsQuery {
    /// Host (agent) id.
    host: String,
    /// Metric name, e.g. `cpu.total_pct`.
    metric: Option<String>,
    /// Device (mount point, disk, interface); `""` for host-wide metrics.
    device: Option<String>,
    /// Unix milliseconds; default one hour before `to`.
    #[param(value_type = Option<i64>)]
    from: Option<String>,
    /// Unix milliseconds; default now.
    #[param(value_type = Option<i64>)]
    to: Option<String>,
    /// 1 to 10000, default 1000.
    #[param(value_type = Option<i64>)]
    limit: Option<String>,
}

const MAX_LIMIT: i64 = 10_000;

/// Rollups (min/mean/max/last per window) of one host.
#[utoipa::path(get, path = "/monitoring/metrics", tag = "fleet", security(("bearer" = ["viewer"])),
    params(MetricsQuery),
    responses(
        (status = 200, description = "rollups", body = inline(MetricsResponse)),
        (status = 400, description = "invalid parameter (named)", body = inline(super::error::ErrorBody)),
        (status = 401, description = "missing or invalid token", body = inline(super::error::ErrorBody)),
        (status = 403, description = "role too low", body = inline(super::error::ErrorBody)),
    ))]
pub async fn monitoring_metrics(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<MetricsQuery>,
) -> Result<Json<MetricsResponse>, AppError> {
    if !valid_agent_id(&q.host) {
        return Err(AppError::bad_request(format!("invalid host {:?}", q.host)));
    }
    let to = super::int_param("to", q.to.as_deref())?.unwrap_or_else(now_ms);
    let from = super::int_param("from", q.from.as_deref())?.unwrap_or(to - 3_600_000);
    if from > to {
        return Err(AppError::bad_request(format!(
            "from ({from}) is after to ({to})"
        )));
    }
    let limit = super::int_param("limit", q.limit.as_deref())?.unwrap_or(1000);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(AppError::bad_request(format!(
            "limit {limit} is outside 1..={MAX_LIMIT}"
        )));
    }
    let points = state
        .fleet
        .hosts
        .rollups(&RollupQuery {
            host: q.host.clone(),
            metric: q.metric.clone(),
            device: q.device.clone(),
            from_ms: from,
            to_ms: to,
            limit,
        })
        .await?;
    Ok(Json(MetricsResponse {
        host: q.host,
        from,
        to,
        count: points.len(),
        truncated: points.len() as i64 == limit,
        points,
    }))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct HostsResponse {
    /// Hosts with hostname, OS, kernel, agent version, labels, first/last
    /// seen and whether connected.
    #[schema(value_type = Vec<Object>)]
    hosts: Vec<Host>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct HostResponse {
    #[schema(value_type = Object)]
    host: Host,
    /// The latest value of every metric.
    #[schema(value_type = Vec<Object>)]
    latest: Vec<LatestValue>,
    /// `{ts_ms, processes}`.
    #[schema(value_type = Object)]
    top_processes: TopProcesses,
}

/// The top processes of a host and when they were sampled.
#[derive(Serialize)]
pub struct TopProcesses {
    ts_ms: i64,
    processes: Vec<ProcessRow>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct MetricsResponse {
    host: String,
    /// Unix milliseconds.
    from: i64,
    /// Unix milliseconds.
    to: i64,
    count: usize,
    /// True when `limit` points were returned (there may be more).
    truncated: bool,
    /// Rollups: metric, device, window start/end, min, mean, max, last, count.
    #[schema(value_type = Vec<Object>)]
    points: Vec<RollupPoint>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct HostRevoked {
    host: String,
    revoked: bool,
}

/// Revokes a host: its certificate is refused from now on.
#[utoipa::path(post, path = "/hosts/{id}/revoke", tag = "enrollment", security(("bearer" = ["admin"])),
    params(("id" = String, Path, description = "host (agent) id")),
    responses(
        (status = 200, description = "revoked", body = HostRevoked),
        (status = 400, description = "invalid host id", body = ErrorBody),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 403, description = "not an admin", body = ErrorBody),
        (status = 404, description = "no such host", body = ErrorBody),
    ))]
pub async fn revoke_host(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<HostRevoked>, AppError> {
    if !valid_agent_id(&id) {
        return Err(AppError::bad_request(format!("invalid host id {id:?}")));
    }
    if !state.fleet.enrollment.revoke(&id).await? {
        return Err(AppError::not_found(format!("no host {id:?}")));
    }
    state
        .fleet
        .audit
        .record(&caller.0.sub, "host.revoke", &id, "revoked", json!({}))
        .await;
    tracing::warn!(host = %id, by = %caller.0.sub, "host revoked");
    Ok(Json(HostRevoked {
        host: id,
        revoked: true,
    }))
}
