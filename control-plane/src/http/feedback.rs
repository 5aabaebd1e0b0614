//! Verdicts on anomaly events: `POST /anomaly/{id}/feedback`, `GET /feedback`,
//! `GET /feedback/export` and `DELETE /feedback/{id}`.

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde::{Deserialize, Serialize};

use super::auth::Caller;
use super::error::{ApiJson, ApiQuery, AppError, ErrorBody};
use super::AppState;
use crate::fleet::{valid_agent_id, Anomaly, Feedback, FeedbackQuery, FeedbackRequest};

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FeedbackBody {
    /// `true_positive`, `false_positive` (not a problem on these hosts) or `expected`
    /// (planned work).
    verdict: String,
    /// Free text, at most 1000 characters.
    #[serde(default)]
    note: String,
    /// Where the lesson applies: `labels` (a host label selector; default: the event's host),
    /// `metrics` (globs; default: the event's top contributors), and for `expected` a
    /// recurring `window` `{days: [mon..sun], start: "HH:MM", end: "HH:MM"}` (UTC; default:
    /// every day at the event's hours).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    scope: Option<sco_policy::feedback::Scope>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct FeedbackResponse {
    /// id, anomaly_id, host_id, verdict, note, scope, policy (the generated policy's name, empty
    /// for a true positive), policy_revision, target, detection (what it changed), created_by,
    /// created_at_ms, undone, undone_by, undone_at_ms, withdrawn_revision.
    #[schema(value_type = Object)]
    feedback: Feedback,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct FeedbackListResponse {
    count: usize,
    offset: i64,
    /// The offset of the next page, null on the last one.
    next_offset: Option<i64>,
    #[schema(value_type = Vec<Object>)]
    feedback: Vec<Feedback>,
}

/// An anomaly event as `GET /anomaly` shows it: its fields, and the verdicts given on it.
#[derive(Serialize)]
pub struct WithVerdicts {
    #[serde(flatten)]
    event: Anomaly,
    feedback: Vec<VerdictSummary>,
}

/// A verdict in brief, beside its event.
#[derive(Serialize)]
struct VerdictSummary {
    id: String,
    verdict: String,
    policy: String,
    policy_revision: i64,
    created_by: String,
    created_at_ms: i64,
    undone: bool,
}

fn check_anomaly_id(id: &str) -> Result<(), AppError> {
    if id.is_empty() || id.len() > 200 {
        return Err(AppError::bad_request("anomaly id is empty or too long"));
    }
    Ok(())
}

/// Records a verdict on an event. A false positive or expected work generates a policy
/// (`feedback-<id>`: floors or a quiet window for the scope's hosts) that is signed and rolled
/// out with a canary like any policy; a true positive is recorded only.
#[utoipa::path(post, path = "/anomaly/{id}/feedback", tag = "anomaly", security(("bearer" = ["operator"])),
    params(("id" = String, Path, description = "event id, `<host>:<seq>`")),
    request_body = FeedbackBody,
    responses(
        (status = 201, description = "the verdict and what it changed", body = FeedbackResponse),
        (status = 400, description = "invalid verdict or scope (named)", body = ErrorBody),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 403, description = "role too low", body = ErrorBody),
        (status = 404, description = "no such event", body = ErrorBody),
        (status = 409, description = "concurrent policy revisions", body = ErrorBody),
    ))]
pub async fn give(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<FeedbackBody>,
) -> Result<(StatusCode, Json<FeedbackResponse>), AppError> {
    check_anomaly_id(&id)?;
    let verdict = body
        .verdict
        .parse()
        .map_err(|e: String| AppError::bad_request(format!("verdict: {e}")))?;
    let req = FeedbackRequest {
        verdict,
        note: body.note,
        scope: body.scope.unwrap_or_default(),
    };
    let feedback = state
        .fleet
        .verdicts
        .give_feedback(&caller.0.sub, &id, req)
        .await?;
    Ok((StatusCode::CREATED, Json(FeedbackResponse { feedback })))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Event id.
    anomaly: Option<String>,
    /// Host (agent) id.
    host: Option<String>,
    /// Given at or after (Unix milliseconds).
    #[param(value_type = Option<i64>)]
    from: Option<String>,
    /// Given before (Unix milliseconds).
    #[param(value_type = Option<i64>)]
    to: Option<String>,
    /// 1 to 1000 (export: 1 to 10000), default 100 (export: 10000).
    #[param(value_type = Option<i64>)]
    limit: Option<String>,
    /// Default 0.
    #[param(value_type = Option<i64>)]
    offset: Option<String>,
}

fn query_of(
    q: ListQuery,
    default_limit: i64,
    max_limit: i64,
) -> Result<(FeedbackQuery, super::Page), AppError> {
    if let Some(h) = &q.host {
        if !valid_agent_id(h) {
            return Err(AppError::bad_request(format!(
                "host: invalid host id {h:?}"
            )));
        }
    }
    if let Some(a) = &q.anomaly {
        check_anomaly_id(a)?;
    }
    let page = super::Page::parse(
        [
            q.limit.as_deref(),
            q.offset.as_deref(),
            q.from.as_deref(),
            q.to.as_deref(),
        ],
        default_limit,
        max_limit,
    )?;
    let query = FeedbackQuery {
        anomaly: q.anomaly,
        host: q.host,
        from_ms: page.from_ms,
        to_ms: page.to_ms,
        active_only: false,
        limit: page.limit,
        offset: page.offset,
    };
    Ok((query, page))
}

/// Verdicts, newest first, paged, each with the policy it generated and its settings.
#[utoipa::path(get, path = "/feedback", tag = "anomaly", security(("bearer" = ["viewer"])),
    params(ListQuery),
    responses(
        (status = 200, description = "a page of verdicts", body = FeedbackListResponse),
        (status = 400, description = "invalid parameter (named)", body = ErrorBody),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 403, description = "role too low", body = ErrorBody),
    ))]
pub async fn list(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<FeedbackListResponse>, AppError> {
    let (query, page) = query_of(q, 100, 1000)?;
    let records = state.fleet.verdicts.feedback_list(&query).await?;
    Ok(Json(FeedbackListResponse {
        count: records.len(),
        offset: page.offset,
        next_offset: page.next_offset(records.len()),
        feedback: records,
    }))
}

/// The labelled events as a training set, JSON lines: one object per verdict in force with
/// `label` (1 true positive, 0 otherwise), the event's family and contributors, and the raw
/// samples captured at onset (`metrics`, `rows`, `start_ms`, `step_ms`); `models/train`
/// reads it (`train.py --feedback FILE`).
#[utoipa::path(get, path = "/feedback/export", tag = "anomaly", security(("bearer" = ["viewer"])),
    params(ListQuery),
    responses(
        (status = 200, description = "JSON lines", body = String, content_type = "application/x-ndjson"),
        (status = 400, description = "invalid parameter (named)", body = ErrorBody),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 403, description = "role too low", body = ErrorBody),
    ))]
pub async fn export(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<impl IntoResponse, AppError> {
    let (mut query, _) = query_of(q, 10_000, 10_000)?;
    query.active_only = true;
    let lines = state.fleet.verdicts.feedback_export(&query).await?;
    let mut body = String::new();
    for l in lines {
        body.push_str(&l.to_string());
        body.push('\n');
    }
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], body))
}

/// Undoes a verdict: the policy it generated is withdrawn (a signed withdrawal to every host,
/// as `DELETE /policies/{name}`), and the verdict stays listed as undone.
#[utoipa::path(delete, path = "/feedback/{id}", tag = "anomaly", security(("bearer" = ["operator"])),
    params(("id" = String, Path, description = "feedback id")),
    responses(
        (status = 200, description = "the verdict, undone", body = FeedbackResponse),
        (status = 400, description = "id too long", body = ErrorBody),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 403, description = "role too low", body = ErrorBody),
        (status = 404, description = "no such verdict", body = ErrorBody),
        (status = 409, description = "already undone, or its policy's rollout is in its canary phase", body = ErrorBody),
    ))]
pub async fn undo(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<FeedbackResponse>, AppError> {
    if id.is_empty() || id.len() > 100 {
        return Err(AppError::bad_request("feedback id is empty or too long"));
    }
    let feedback = state
        .fleet
        .verdicts
        .undo_feedback(&caller.0.sub, &id)
        .await?;
    Ok(Json(FeedbackResponse { feedback }))
}

/// Each event with the verdicts given on it, as `feedback`.
pub async fn with_verdicts(
    state: &AppState,
    events: Vec<Anomaly>,
) -> Result<Vec<WithVerdicts>, AppError> {
    let ids: Vec<String> = events.iter().map(|e| e.id.clone()).collect();
    let verdicts = state.fleet.verdicts.feedback_for(&ids).await?;
    Ok(events
        .into_iter()
        .map(|event| {
            let feedback = verdicts
                .iter()
                .filter(|f| f.anomaly_id == event.id)
                .map(|f| VerdictSummary {
                    id: f.id.clone(),
                    verdict: f.verdict.clone(),
                    policy: f.policy.clone(),
                    policy_revision: f.policy_revision,
                    created_by: f.created_by.clone(),
                    created_at_ms: f.created_at_ms,
                    undone: f.undone,
                })
                .collect();
            WithVerdicts { event, feedback }
        })
        .collect())
}
