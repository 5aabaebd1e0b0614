//! `/anomaly`: the history of anomaly events, one event, and scoring a
//! posted window with the current model.

use axum::extract::{Path, State};
use axum::Json;
use serde::{Deserialize, Serialize};

use super::error::{ApiQuery, AppError};
use super::feedback::WithVerdicts;
use super::AppState;
use crate::fleet::{valid_agent_id, AnomalyQuery, Severity};
use crate::notify::{Ack, Notification};
use crate::runbooks::Citation;

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Host (agent) id.
    host: Option<String>,
    /// Events started at or after (Unix milliseconds).
    #[param(value_type = Option<i64>)]
    from: Option<String>,
    /// Events started before (Unix milliseconds).
    #[param(value_type = Option<i64>)]
    to: Option<String>,
    /// low, medium, high or critical.
    min_severity: Option<String>,
    /// open or closed.
    status: Option<String>,
    /// 1 to 1000, default 100.
    #[param(value_type = Option<i64>)]
    limit: Option<String>,
    /// Default 0.
    #[param(value_type = Option<i64>)]
    offset: Option<String>,
}

const MAX_LIMIT: i64 = 1000;

/// The history of anomaly events, newest first, paged.
#[utoipa::path(get, path = "/anomaly", tag = "anomaly", security(("bearer" = ["viewer"])),
    params(ListQuery),
    responses(
        (status = 200, description = "a page of events, each with its verdicts (`feedback`)", body = inline(AnomaliesResponse)),
        (status = 400, description = "invalid parameter (named)", body = inline(super::error::ErrorBody)),
        (status = 401, description = "missing or invalid token", body = inline(super::error::ErrorBody)),
        (status = 403, description = "role too low", body = inline(super::error::ErrorBody)),
    ))]
pub async fn list(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<AnomaliesResponse>, AppError> {
    if let Some(h) = &q.host {
        if !valid_agent_id(h) {
            return Err(AppError::bad_request(format!(
                "host: invalid host id {h:?}"
            )));
        }
    }
    let min_severity = q
        .min_severity
        .as_deref()
        .map(|s| {
            Severity::parse(s).ok_or_else(|| {
                AppError::bad_request(format!(
                    "min_severity: {s:?} is not one of low, medium, high, critical"
                ))
            })
        })
        .transpose()?;
    if let Some(s) = &q.status {
        if s != "open" && s != "closed" {
            return Err(AppError::bad_request(format!(
                "status: {s:?} is not open or closed"
            )));
        }
    }
    let page = super::Page::parse(
        [
            q.limit.as_deref(),
            q.offset.as_deref(),
            q.from.as_deref(),
            q.to.as_deref(),
        ],
        100,
        MAX_LIMIT,
    )?;
    let (limit, offset, from_ms, to_ms) = (page.limit, page.offset, page.from_ms, page.to_ms);
    let query = AnomalyQuery {
        host: q.host,
        from_ms,
        to_ms,
        min_severity,
        status: q.status,
        limit,
        offset,
    };
    let events = state.fleet.hosts.anomalies(&query).await?;
    let next_offset = page.next_offset(events.len());
    let anomalies = super::feedback::with_verdicts(&state, events).await?;
    Ok(Json(AnomaliesResponse {
        count: anomalies.len(),
        offset,
        next_offset,
        anomalies,
    }))
}

/// One event with its context and the verdicts given on it (`feedback`).
#[utoipa::path(get, path = "/anomaly/{id}", tag = "anomaly", security(("bearer" = ["viewer"])),
    params(("id" = String, Path, description = "event id, `<host>:<seq>`")),
    responses(
        (status = 200, description = "the event", body = inline(AnomalyResponse)),
        (status = 400, description = "id too long", body = inline(super::error::ErrorBody)),
        (status = 401, description = "missing or invalid token", body = inline(super::error::ErrorBody)),
        (status = 403, description = "role too low", body = inline(super::error::ErrorBody)),
        (status = 404, description = "no such event", body = inline(super::error::ErrorBody)),
    ))]
pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<AnomalyResponse>, AppError> {
    if id.len() > 200 {
        return Err(AppError::bad_request("anomaly id is too long"));
    }
    let event = state
        .fleet
        .hosts
        .anomaly(&id)
        .await?
        .ok_or_else(|| AppError::not_found(format!("no anomaly {id:?}")))?;
    let runbooks = state.runbooks.for_event(&event).await?;
    let ack = state.notifier.ack_of(&id).await?;
    let notifications = state
        .notifier
        .notifications(&crate::notify::NotificationQuery {
            subject: Some(id.clone()),
            limit: 100,
            ..Default::default()
        })
        .await?;
    let anomaly = super::feedback::with_verdicts(&state, vec![event])
        .await?
        .pop()
        .ok_or_else(|| AppError::internal("an event went missing while adding its verdicts"))?;
    Ok(Json(AnomalyResponse {
        anomaly,
        runbooks,
        ack,
        notifications,
    }))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScoreBody {
    /// Column names, one per metric.
    metrics: Vec<String>,
    /// Rows of samples (ticks), each with one value per metric.
    rows: Vec<Vec<f64>>,
}

const MAX_ROWS: usize = 20_000;
const MAX_METRICS: usize = 256;

/// Scores a posted window with the current model: per-row scores in [0, 1]
/// (0.5 is the threshold) and the top contributors of the worst row.
#[utoipa::path(post, path = "/anomaly", tag = "anomaly", security(("bearer" = ["viewer"])),
    request_body = ScoreBody,
    responses(
        (status = 200, description = "scores", body = inline(ScoreResponse)),
        (status = 400, description = "invalid window (named)", body = inline(super::error::ErrorBody)),
        (status = 401, description = "missing or invalid token", body = inline(super::error::ErrorBody)),
        (status = 403, description = "role too low", body = inline(super::error::ErrorBody)),
        (status = 413, description = "body over 4 MiB", body = inline(super::error::ErrorBody)),
    ))]
pub async fn score(
    State(state): State<AppState>,
    super::error::ApiJson(body): super::error::ApiJson<ScoreBody>,
) -> Result<Json<ScoreResponse>, AppError> {
    if body.rows.len() > MAX_ROWS {
        return Err(AppError::bad_request(format!(
            "rows: {} rows, at most {MAX_ROWS}",
            body.rows.len()
        )));
    }
    if body.metrics.len() > MAX_METRICS {
        return Err(AppError::bad_request(format!(
            "metrics: {} metrics, at most {MAX_METRICS}",
            body.metrics.len()
        )));
    }
    let model = state.model.clone();
    let result = tokio::task::spawn_blocking(move || {
        sco_models::detect::score_window(&model, &body.metrics, &body.rows)
    })
    .await
    .map_err(AppError::internal)?;
    match result {
        Ok(result) => Ok(Json(ScoreResponse {
            model: format!(
                "{}@{}",
                state.model.manifest().name,
                state.model.manifest().version
            ),
            result,
        })),
        Err(sco_models::detect::DetectError::Model(e)) => Err(AppError::internal(e)),
        Err(e) => Err(AppError::bad_request(e.to_string())),
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct AnomaliesResponse {
    count: usize,
    offset: i64,
    /// The offset of the next page, null on the last one.
    next_offset: Option<i64>,
    #[schema(value_type = Vec<Object>)]
    anomalies: Vec<WithVerdicts>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct AnomalyResponse {
    /// The event with its context series and processes.
    #[schema(value_type = Object)]
    anomaly: WithVerdicts,
    /// The runbooks whose conditions match the event, best first.
    runbooks: Vec<Citation>,
    /// Who acknowledged it (`POST /anomaly/{id}/ack`); null while nobody has.
    ack: Option<Ack>,
    /// What the notification channels were told about it, newest first.
    notifications: Vec<Notification>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ScoreResponse {
    /// `name@version` of the model that scored.
    model: String,
    /// Per-row scores in [0, 1] (0.5 is the threshold) and the top
    /// contributors of the worst row.
    #[schema(value_type = Object)]
    result: sco_models::detect::WindowScore,
}
