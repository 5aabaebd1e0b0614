//! `/policies`: signed fleet policies, their revisions, rollouts and
//! per-host status; and the approval of proposed remediation actions.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::Caller;
use super::error::{ApiJson, AppError, OptionalJson};
use super::AppState;
use crate::auth::Role;
use crate::fleet::{Decision, PolicyRevision, RolloutRequest};

/// A revision as the API shows it: the parsed document, and the exact bytes the signature
/// covers beside it.
fn revision_view(r: &PolicyRevision) -> Value {
    json!({
        "name": r.name,
        "revision": r.revision,
        "document": serde_json::from_str::<Value>(&r.document).unwrap_or_default(),
        "withdrawn": r.is_withdrawal(),
        "signed_document": r.document,
        "signature": r.signature,
        "source": r.source,
        "created_by": r.created_by,
        "created_at_ms": r.created_at_ms,
    })
}

fn check_name(name: &str) -> Result<(), AppError> {
    let ok = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(AppError::bad_request(format!(
            "name: {:?} is not a policy name",
            name.chars().take(80).collect::<String>()
        )))
    }
}

/// Validates a policy (YAML, or JSON when it starts with `{`), signs it as
/// the next revision and stores it. The same document as the newest
/// revision returns that revision with 200.
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    body: String,
) -> Result<(StatusCode, Json<Value>), AppError> {
    caller.require(Role::Admin)?;
    if body.trim().is_empty() {
        return Err(AppError::bad_request(
            "document: empty body; send the policy as YAML or JSON",
        ));
    }
    let (rev, created) = state.fleet.create_policy(&caller.0.sub, &body).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(json!({ "created": created, "policy": revision_view(&rev) })),
    ))
}

pub async fn list(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>, AppError> {
    caller.require(Role::Viewer)?;
    let policies: Vec<Value> = state
        .fleet
        .policies()
        .await?
        .into_iter()
        .map(|(p, rollout)| {
            json!({
                "name": p.name,
                "latest_revision": p.revision,
                "created_by": p.created_by,
                "created_at_ms": p.created_at_ms,
                "document": serde_json::from_str::<Value>(&p.document).unwrap_or_default(),
                "rollout": rollout,
            })
        })
        .collect();
    Ok(Json(
        json!({ "count": policies.len(), "policies": policies }),
    ))
}

pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Value>, AppError> {
    caller.require(Role::Viewer)?;
    check_name(&name)?;
    let (revisions, rollouts) = state.fleet.policy_history(&name).await?;
    if revisions.is_empty() {
        return Err(AppError::not_found(format!("no policy {name:?}")));
    }
    Ok(Json(json!({
        "name": name,
        "revisions": revisions.iter().map(revision_view).collect::<Vec<_>>(),
        "rollouts": rollouts,
    })))
}

/// Starts a rollout: the canary share of targeted hosts first, everyone
/// after `canary_secs` unless canary hosts refuse the revision or open
/// more anomaly events than allowed.
pub async fn rollout(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<RolloutRequest>,
) -> Result<(StatusCode, Json<Value>), AppError> {
    caller.require(Role::Admin)?;
    check_name(&name)?;
    let rollout = state
        .fleet
        .start_rollout(&caller.0.sub, &name, body)
        .await?;
    Ok((StatusCode::CREATED, Json(json!({ "rollout": rollout }))))
}

/// Withdraws a policy from every host (a signed empty revision, rolled out
/// at once). Its revisions stay; posting it again makes a new one.
pub async fn withdraw(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Value>, AppError> {
    caller.require(Role::Admin)?;
    check_name(&name)?;
    let (rev, rollout) = state.fleet.withdraw_policy(&caller.0.sub, &name).await?;
    Ok(Json(
        json!({ "policy": revision_view(&rev), "rollout": rollout }),
    ))
}

pub async fn status(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Value>, AppError> {
    caller.require(Role::Viewer)?;
    check_name(&name)?;
    Ok(Json(json!(state.fleet.policy_status(&name).await?)))
}

pub async fn approve(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, AppError> {
    decide(state, caller, id, Decision::Approve).await
}

/// The optional body of `POST /remediation/actions/{id}/reject`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RejectBody {
    /// Why: one line, at most 500 characters (`domain::remediation::check_reject_reason`,
    /// applied by the service).
    reason: Option<String>,
}

/// Rejects a proposal; a JSON body `{"reason": "..."}` says why, and the reason is kept
/// with the decision. Without a body it rejects exactly as before.
pub async fn reject(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    OptionalJson(body): OptionalJson<RejectBody>,
) -> Result<Json<Value>, AppError> {
    let reason = body.and_then(|b| b.reason).unwrap_or_default();
    decide(state, caller, id, Decision::Reject { reason }).await
}

async fn decide(
    state: AppState,
    caller: Caller,
    id: String,
    decision: Decision,
) -> Result<Json<Value>, AppError> {
    caller.require(Role::Operator)?;
    if id.is_empty() || id.len() > 128 || id.chars().any(|c| c.is_control()) {
        return Err(AppError::bad_request("id: not an action id"));
    }
    let record = state.fleet.decide(&caller.0.sub, &id, decision).await?;
    Ok(Json(json!({ "action": record })))
}
