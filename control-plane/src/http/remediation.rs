//! `/remediation/*`: trigger an action, list actions, approve or reject a proposal, reset a
//! circuit breaker, read and reset the learnt preferences among rules' candidate actions.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::auth::Caller;
use super::error::{ApiJson, ApiQuery, AppError, ErrorBody, OptionalJson};
use super::AppState;
use crate::domain::choice::Preference;
use crate::fleet::{ActionQuery, ActionRecord, ActionState, Decision};

/// The optional body of `POST /remediation/actions/{id}/reject`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RejectRequest {
    /// Why: one line, at most 500 characters, kept as the action's `reason` and in the audit
    /// entry. Blank is no reason. (`domain::remediation::check_reject_reason`, applied by the
    /// service.)
    #[schema(max_length = 500)]
    reason: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetRequest {
    /// Host (agent) id.
    host: String,
    /// `manual` or `policy/rule`.
    rule: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ActionsResponse {
    count: usize,
    #[schema(value_type = Vec<Object>)]
    actions: Vec<ActionRecord>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct TriggerResponse {
    #[schema(value_type = Object)]
    action: ActionRecord,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TriggerRequest {
    /// Host (agent) id.
    host: String,
    /// A typed action, e.g. `{"type": "kill_process", "name": "stress"}`.
    #[schema(value_type = Object)]
    action: Value,
    /// `dry_run` (default) or `execute`.
    #[serde(default)]
    mode: Option<String>,
}

/// Asks one host for one allowlisted action. The agent's local safety rules
/// still decide; its report updates the request.
#[utoipa::path(post, path = "/remediation/trigger", tag = "remediation", security(("bearer" = ["operator"])),
    request_body = TriggerRequest,
    responses(
        (status = 202, description = "requested", body = TriggerResponse),
        (status = 400, description = "invalid action or mode", body = ErrorBody),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 403, description = "role too low", body = ErrorBody),
        (status = 404, description = "no such host", body = ErrorBody),
    ))]
pub async fn trigger(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<TriggerRequest>,
) -> Result<(StatusCode, Json<TriggerResponse>), AppError> {
    let mode = body.mode.unwrap_or_else(|| "dry_run".into());
    let action = state
        .fleet
        .remediation
        .trigger(&caller.0.sub, &body.host, body.action, &mode)
        .await?;
    Ok((StatusCode::ACCEPTED, Json(TriggerResponse { action })))
}

/// Closes the circuit breaker of a rule on one host.
#[utoipa::path(post, path = "/remediation/breakers/reset", tag = "remediation", security(("bearer" = ["operator"])),
    request_body = ResetRequest,
    responses(
        (status = 202, description = "requested", body = TriggerResponse),
        (status = 400, description = "invalid host or rule (named)", body = ErrorBody),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 403, description = "role too low", body = ErrorBody),
        (status = 404, description = "no such host", body = ErrorBody),
    ))]
pub async fn reset_breaker(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<ResetRequest>,
) -> Result<(StatusCode, Json<TriggerResponse>), AppError> {
    let action = state
        .fleet
        .remediation
        .reset_breaker(&caller.0.sub, &body.host, &body.rule)
        .await?;
    Ok((StatusCode::ACCEPTED, Json(TriggerResponse { action })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionsQuery {
    host: Option<String>,
    state: Option<String>,
    rule: Option<String>,
    limit: Option<String>,
}

/// Remediation actions and their states.
#[utoipa::path(get, path = "/remediation/actions", tag = "remediation", security(("bearer" = ["viewer"])),
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
pub async fn actions(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<ActionsQuery>,
) -> Result<Json<ActionsResponse>, AppError> {
    let action_state = match &q.state {
        Some(s) => Some(ActionState::parse(s).ok_or_else(|| {
            AppError::bad_request(format!(
                "state: {s:?} is not one of {}",
                ActionState::names()
            ))
        })?),
        None => None,
    };
    let limit = super::int_param("limit", q.limit.as_deref())?.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(AppError::bad_request(format!(
            "limit: {limit} is outside 1..=1000"
        )));
    }
    let actions = state
        .fleet
        .remediation
        .actions(&ActionQuery {
            host: q.host,
            state: action_state,
            rule: q.rule,
            limit,
        })
        .await?;
    Ok(Json(ActionsResponse {
        count: actions.len(),
        actions,
    }))
}

/// Approves a proposal of an `approve` rule; it runs once a fleet lease is
/// free.
#[utoipa::path(post, path = "/remediation/actions/{id}/approve", tag = "remediation", security(("bearer" = ["operator"])),
    params(("id" = String, Path, description = "action id")),
    responses(
        (status = 200, description = "approved", body = TriggerResponse),
        (status = 400, description = "invalid id", body = ErrorBody),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 403, description = "role too low", body = ErrorBody),
        (status = 404, description = "no such action", body = ErrorBody),
        (status = 409, description = "not a proposal waiting for a decision (named state)", body = ErrorBody),
    ))]
pub async fn approve(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<TriggerResponse>, AppError> {
    decide(state, caller, id, Decision::Approve).await
}

/// Rejects a proposal; a JSON body `{"reason": "..."}` says why, and the reason is kept
/// with the decision. Without a body it rejects exactly as before.
#[utoipa::path(post, path = "/remediation/actions/{id}/reject", tag = "remediation", security(("bearer" = ["operator"])),
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
pub async fn reject(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    OptionalJson(body): OptionalJson<RejectRequest>,
) -> Result<Json<TriggerResponse>, AppError> {
    let reason = body.and_then(|b| b.reason).unwrap_or_default();
    decide(state, caller, id, Decision::Reject { reason }).await
}

async fn decide(
    state: AppState,
    caller: Caller,
    id: String,
    decision: Decision,
) -> Result<Json<TriggerResponse>, AppError> {
    if id.is_empty() || id.len() > 128 || id.chars().any(|c| c.is_control()) {
        return Err(AppError::bad_request("id: not an action id"));
    }
    let action = state
        .fleet
        .remediation
        .decide(&caller.0.sub, &id, decision)
        .await?;
    Ok(Json(TriggerResponse { action }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreferencesQuery {
    rule: Option<String>,
    context: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct PreferencesResponse {
    count: usize,
    /// Per rule (`policy/rule`) and context (`family/severity`, or `family/state` for a
    /// rule on metric values only): `preferred`, the action the next incident would run,
    /// and each candidate in written order with its verified `successes`, `failures` and
    /// `score` (posterior mean of success).
    #[schema(value_type = Vec<Object>)]
    preferences: Vec<Preference>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct PreferencesResetResponse {
    /// Candidates' tallies removed.
    deleted: u64,
}

/// What was learnt about rules' candidate actions from their verified outcomes.
#[utoipa::path(get, path = "/remediation/preferences", tag = "remediation", security(("bearer" = ["viewer"])),
    params(
        ("rule" = Option<String>, Query, description = "`policy/rule`"),
        ("context" = Option<String>, Query, description = "e.g. `cpu/high` or `memory/state`"),
    ),
    responses(
        (status = 200, description = "learnt preferences", body = PreferencesResponse),
        (status = 400, description = "invalid parameter (named)", body = ErrorBody),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 403, description = "role too low", body = ErrorBody),
    ))]
pub async fn preferences(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<PreferencesQuery>,
) -> Result<Json<PreferencesResponse>, AppError> {
    let preferences = state
        .fleet
        .remediation
        .preferences(q.rule.as_deref(), q.context.as_deref())
        .await?;
    Ok(Json(PreferencesResponse {
        count: preferences.len(),
        preferences,
    }))
}

/// Forgets what was learnt (all of it, or of one rule and/or context): the next incidents
/// start again from the order the candidates are written in. Audited.
#[utoipa::path(delete, path = "/remediation/preferences", tag = "remediation", security(("bearer" = ["operator"])),
    params(
        ("rule" = Option<String>, Query, description = "only this `policy/rule`"),
        ("context" = Option<String>, Query, description = "only this context"),
    ),
    responses(
        (status = 200, description = "reset", body = PreferencesResetResponse),
        (status = 400, description = "invalid parameter (named)", body = ErrorBody),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 403, description = "role too low", body = ErrorBody),
    ))]
pub async fn reset_preferences(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<PreferencesQuery>,
) -> Result<Json<PreferencesResetResponse>, AppError> {
    let deleted = state
        .fleet
        .remediation
        .reset_preferences(&caller.0.sub, q.rule.as_deref(), q.context.as_deref())
        .await?;
    Ok(Json(PreferencesResetResponse { deleted }))
}

#[cfg(test)]
mod tests {
    use axum::response::IntoResponse;

    use super::*;
    use crate::fleet::TriggerError;

    #[tokio::test]
    async fn an_invalid_trigger_is_a_400_naming_the_problem() {
        let message = "action: kill_process needs one target";
        let response = AppError::from(TriggerError::Invalid(message.into())).into_response();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let body = axum::body::to_bytes(response.into_body(), 64 * 1024)
            .await
            .expect("body");
        let body: Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(body["error"], message);
    }
}
