//! `/notifications`, `/silences` and `POST /anomaly/{id}/ack`: what people were told, the
//! maintenance windows that hold news back, and acknowledging an event. Viewers read;
//! operators acknowledge and silence. Every write is audited.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::auth::Caller;
use super::error::{ApiJson, ApiQuery, AppError, ErrorBody};
use super::AppState;
use crate::fleet::valid_agent_id;
use crate::notify::{Ack, Notification, NotificationQuery, Silence, SilenceIn};

const MAX_LIMIT: i64 = 1000;
const STATES: [&str; 4] = ["pending", "sent", "failed", "silenced"];

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// An anomaly event id or an action id.
    subject: Option<String>,
    /// A channel name of `[notify]`.
    channel: Option<String>,
    /// pending, sent, failed or silenced.
    state: Option<String>,
    /// Host (agent) id.
    host: Option<String>,
    /// Created at or after (Unix milliseconds).
    #[param(value_type = Option<i64>)]
    from: Option<String>,
    /// 1 to 1000, default 100.
    #[param(value_type = Option<i64>)]
    limit: Option<String>,
    /// Default 0.
    #[param(value_type = Option<i64>)]
    offset: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct NotificationsResponse {
    count: usize,
    offset: i64,
    /// The offset of the next page, null on the last one.
    next_offset: Option<i64>,
    /// Newest first.
    notifications: Vec<Notification>,
}

/// What was told to whom, newest first, paged: each channel's notification of each event
/// opening, acknowledgement, reminder and closing and of each remediation outcome, with its
/// delivery state, attempts and last error.
#[utoipa::path(get, path = "/notifications", tag = "notifications", security(("bearer" = ["viewer"])),
    params(ListQuery),
    responses(
        (status = 200, description = "a page of notifications", body = NotificationsResponse),
        (status = 400, description = "invalid parameter (named)", body = ErrorBody),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 403, description = "role too low", body = ErrorBody),
    ))]
pub async fn list(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<NotificationsResponse>, AppError> {
    if let Some(s) = &q.state {
        if !STATES.contains(&s.as_str()) {
            return Err(AppError::bad_request(format!(
                "state: {s:?} is not one of {}",
                STATES.join(", ")
            )));
        }
    }
    if let Some(h) = &q.host {
        if !valid_agent_id(h) {
            return Err(AppError::bad_request(format!(
                "host: invalid host id {h:?}"
            )));
        }
    }
    for (name, v) in [("subject", &q.subject), ("channel", &q.channel)] {
        if v.as_ref().is_some_and(|v| v.len() > 200) {
            return Err(AppError::bad_request(format!("{name}: too long")));
        }
    }
    let page = super::Page::parse(
        [
            q.limit.as_deref(),
            q.offset.as_deref(),
            q.from.as_deref(),
            None,
        ],
        100,
        MAX_LIMIT,
    )?;
    let query = NotificationQuery {
        subject: q.subject,
        channel: q.channel,
        state: q.state,
        host: q.host,
        from_ms: page.from_ms,
        limit: page.limit,
        offset: page.offset,
    };
    let found = state.notifier.notifications(&query).await?;
    Ok(Json(NotificationsResponse {
        count: found.len(),
        offset: page.offset,
        next_offset: page.next_offset(found.len()),
        notifications: found,
    }))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AckBody {
    /// Why, or what is being done (at most 1000 characters).
    #[serde(default)]
    note: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct AckResponse {
    ack: Ack,
    /// False when the event had been acknowledged before (that acknowledgement is returned).
    acknowledged_now: bool,
}

/// Acknowledges an event: someone is on it. Reminders stop; the channels that were told of
/// its opening are told who acknowledged it (PagerDuty: `acknowledge`). Acknowledging again
/// changes nothing and returns the first acknowledgement.
#[utoipa::path(post, path = "/anomaly/{id}/ack", tag = "anomaly", security(("bearer" = ["operator"])),
    params(("id" = String, Path, description = "event id, `<host>:<seq>`")),
    request_body = AckBody,
    responses(
        (status = 200, description = "acknowledged", body = AckResponse),
        (status = 400, description = "invalid note or id", body = ErrorBody),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 403, description = "role too low", body = ErrorBody),
        (status = 404, description = "no such event", body = ErrorBody),
        (status = 415, description = "not JSON", body = ErrorBody),
        (status = 422, description = "body does not match the schema", body = ErrorBody),
    ))]
pub async fn ack(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<AckBody>,
) -> Result<Json<AckResponse>, AppError> {
    if id.is_empty() || id.len() > 200 {
        return Err(AppError::bad_request("anomaly id: 1 to 200 characters"));
    }
    let (ack, fresh) = state
        .notifier
        .acknowledge(&id, &caller.0.sub, &body.note)
        .await?;
    if fresh {
        let host = id.rsplit_once(':').map_or("", |(h, _)| h);
        state
            .fleet
            .audit
            .record(
                &caller.0.sub,
                "anomaly.ack",
                host,
                "ok",
                json!({ "anomaly": id, "note": ack.note }),
            )
            .await;
    }
    Ok(Json(AckResponse {
        ack,
        acknowledged_now: fresh,
    }))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SilencesQuery {
    /// `true`: also the silences that have ended.
    all: Option<bool>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct SilencesResponse {
    count: usize,
    /// Newest first.
    silences: Vec<Silence>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct SilenceResponse {
    silence: Silence,
    /// Whether it holds news back now.
    active: bool,
}

fn one(silence: Silence) -> Json<SilenceResponse> {
    let active = silence.active(crate::domain::now_ms());
    Json(SilenceResponse { silence, active })
}

/// Silences not yet over (with `all=true`, every one kept).
#[utoipa::path(get, path = "/silences", tag = "notifications", security(("bearer" = ["viewer"])),
    params(SilencesQuery),
    responses(
        (status = 200, description = "silences", body = SilencesResponse),
        (status = 400, description = "invalid parameter", body = ErrorBody),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 403, description = "role too low", body = ErrorBody),
    ))]
pub async fn silences(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<SilencesQuery>,
) -> Result<Json<SilencesResponse>, AppError> {
    let silences = state.notifier.silences(q.all.unwrap_or(false)).await?;
    Ok(Json(SilencesResponse {
        count: silences.len(),
        silences,
    }))
}

/// Creates a silence: while it lasts, notifications of matching events (hosts by id or
/// labels, families) and of those hosts' remediation outcomes are recorded as `silenced`
/// and not sent. An event still open when it ends is told then.
#[utoipa::path(post, path = "/silences", tag = "notifications", security(("bearer" = ["operator"])),
    request_body = SilenceIn,
    responses(
        (status = 201, description = "created", body = SilenceResponse),
        (status = 400, description = "invalid silence (names the field)", body = ErrorBody),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 403, description = "role too low", body = ErrorBody),
        (status = 415, description = "not JSON", body = ErrorBody),
        (status = 422, description = "body does not match the schema", body = ErrorBody),
    ))]
pub async fn create_silence(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(input): ApiJson<SilenceIn>,
) -> Result<(StatusCode, Json<SilenceResponse>), AppError> {
    let s = state.notifier.create_silence(&caller.0.sub, input).await?;
    audit(&state, &caller, "silence.create", &s).await;
    Ok((StatusCode::CREATED, one(s)))
}

fn check_id(id: &str) -> Result<(), AppError> {
    if id.is_empty() || id.len() > 64 {
        return Err(AppError::bad_request("id: 1 to 64 characters"));
    }
    Ok(())
}

/// One silence.
#[utoipa::path(get, path = "/silences/{id}", tag = "notifications", security(("bearer" = ["viewer"])),
    params(("id" = String, Path, description = "silence id")),
    responses(
        (status = 200, description = "the silence", body = SilenceResponse),
        (status = 400, description = "invalid id", body = ErrorBody),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 403, description = "role too low", body = ErrorBody),
        (status = 404, description = "no such silence", body = ErrorBody),
    ))]
pub async fn silence(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<SilenceResponse>, AppError> {
    check_id(&id)?;
    Ok(one(state.notifier.silence(&id).await?))
}

/// Ends a silence now; it stays listed with `all=true`.
#[utoipa::path(delete, path = "/silences/{id}", tag = "notifications", security(("bearer" = ["operator"])),
    params(("id" = String, Path, description = "silence id")),
    responses(
        (status = 200, description = "ended", body = SilenceResponse),
        (status = 400, description = "invalid id", body = ErrorBody),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 403, description = "role too low", body = ErrorBody),
        (status = 404, description = "no such silence", body = ErrorBody),
        (status = 409, description = "already ended", body = ErrorBody),
    ))]
pub async fn expire_silence(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<SilenceResponse>, AppError> {
    check_id(&id)?;
    let s = state.notifier.expire_silence(&id, &caller.0.sub).await?;
    audit(&state, &caller, "silence.expire", &s).await;
    Ok(one(s))
}

async fn audit(state: &AppState, caller: &Caller, action: &str, s: &Silence) {
    state
        .fleet
        .audit
        .record(
            &caller.0.sub,
            action,
            "",
            "ok",
            json!({ "silence": s.id, "labels": s.labels, "hosts": s.hosts,
                "families": s.families, "starts_ms": s.starts_ms, "ends_ms": s.ends_ms,
                "comment": s.comment }),
        )
        .await;
}
