//! `/remediation/trigger`, `/remediation/actions` and `/audit`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::Caller;
use super::error::{ApiJson, ApiQuery, AppError};
use super::AppState;
use crate::auth::Role;
use crate::fleet::{ActionQuery, ActionState, AuditQuery};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriggerBody {
    host: String,
    /// A typed action, e.g. `{"type": "kill_process", "name": "stress"}`.
    action: Value,
    /// `dry_run` (default) or `execute`.
    #[serde(default)]
    mode: Option<String>,
}

/// Asks one host for one allowlisted action. The agent's local safety rules
/// still decide; its report updates the request.
pub async fn trigger(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<TriggerBody>,
) -> Result<(StatusCode, Json<Value>), AppError> {
    caller.require(Role::Operator)?;
    let mode = body.mode.unwrap_or_else(|| "dry_run".into());
    let record = state
        .fleet
        .trigger(&caller.0.sub, &body.host, body.action, &mode)
        .await?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "action": record }))))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResetBody {
    host: String,
    /// `manual` or `policy/rule`.
    rule: String,
}

/// Closes the circuit breaker of a rule on one host.
pub async fn reset_breaker(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<ResetBody>,
) -> Result<(StatusCode, Json<Value>), AppError> {
    caller.require(Role::Operator)?;
    let record = state
        .fleet
        .reset_breaker(&caller.0.sub, &body.host, &body.rule)
        .await?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "action": record }))))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionsQuery {
    host: Option<String>,
    state: Option<String>,
    rule: Option<String>,
    limit: Option<String>,
}

pub async fn actions(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ActionsQuery>,
) -> Result<Json<Value>, AppError> {
    caller.require(Role::Viewer)?;
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
        .actions(&ActionQuery {
            host: q.host,
            state: action_state,
            rule: q.rule,
            limit,
        })
        .await?;
    Ok(Json(json!({ "count": actions.len(), "actions": actions })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditParams {
    host: Option<String>,
    actor: Option<String>,
    action: Option<String>,
    limit: Option<String>,
}

pub async fn audit(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<AuditParams>,
) -> Result<Json<Value>, AppError> {
    caller.require(Role::Admin)?;
    let limit = super::int_param("limit", q.limit.as_deref())?.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(AppError::bad_request(format!(
            "limit: {limit} is outside 1..=1000"
        )));
    }
    let entries = state
        .fleet
        .audit_log(&AuditQuery {
            host: q.host,
            actor: q.actor,
            action: q.action,
            limit,
        })
        .await?;
    Ok(Json(json!({ "count": entries.len(), "entries": entries })))
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
