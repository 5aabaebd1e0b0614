//! `/policies`: signed fleet policies, their revisions, rollouts and
//! per-host status.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::auth::Caller;
use super::error::{ApiJson, AppError, ErrorBody};
use super::AppState;
use crate::fleet::{HostPolicyState, PolicyRevision, PolicyRolloutStatus, Rollout, RolloutRequest};

#[derive(Serialize, utoipa::ToSchema)]
pub struct PolicyWithdrawn {
    /// The withdrawal revision (empty document, signed).
    #[schema(value_type = Object)]
    policy: RevisionView,
    #[schema(value_type = Object)]
    rollout: Rollout,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct PolicyStatusResponse {
    name: String,
    #[schema(value_type = Option<Object>)]
    rollout: Option<Rollout>,
    /// Per host: desired_revision, canary, reported_revision, applied_revision, applied_at_ms, error, in_sync.
    #[schema(value_type = Vec<Object>)]
    hosts: Vec<HostPolicyState>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct RolloutResponse {
    #[schema(value_type = Object)]
    rollout: Rollout,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RolloutBody {
    /// Revision to roll out; the newest by default.
    #[serde(default)]
    revision: Option<i64>,
    /// Share of targeted hosts that get it first (0..=100, default 10; 0: all at once).
    #[serde(default = "default_canary_percent")]
    #[schema(default = 10)]
    canary_percent: i64,
    /// Canary duration in seconds (default 300).
    #[serde(default = "default_canary_secs")]
    #[schema(default = 300)]
    canary_secs: i64,
    /// Extra anomaly events canary hosts may open before the rollout stops (default 3).
    #[serde(default = "default_max_new_anomalies")]
    #[schema(default = 3)]
    max_new_anomalies: i64,
}

fn default_canary_percent() -> i64 {
    10
}
fn default_canary_secs() -> i64 {
    300
}
fn default_max_new_anomalies() -> i64 {
    3
}

impl From<RolloutBody> for RolloutRequest {
    fn from(b: RolloutBody) -> Self {
        RolloutRequest {
            revision: b.revision,
            canary_percent: b.canary_percent,
            canary_secs: b.canary_secs,
            max_new_anomalies: b.max_new_anomalies,
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct PolicyResponse {
    name: String,
    #[schema(value_type = Vec<Object>)]
    revisions: Vec<RevisionView>,
    #[schema(value_type = Vec<Object>)]
    rollouts: Vec<Rollout>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct PoliciesResponse {
    count: usize,
    #[schema(value_type = Vec<Object>)]
    policies: Vec<PolicySummary>,
}

/// A policy in the list: its newest revision and current rollout.
#[derive(Serialize)]
pub struct PolicySummary {
    name: String,
    latest_revision: i64,
    created_by: String,
    created_at_ms: i64,
    /// The parsed document; null for a withdrawal.
    document: Value,
    rollout: Option<Rollout>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct PolicyCreated {
    /// False when the document equals the newest revision's.
    created: bool,
    /// name, revision, document (canonical), signature, source, created_by, created_at_ms.
    #[schema(value_type = Object)]
    policy: RevisionView,
}

/// A revision as the API shows it: the parsed document, and the exact bytes the signature
/// covers beside it.
#[derive(Serialize)]
pub struct RevisionView {
    name: String,
    revision: i64,
    /// The parsed document; null for a withdrawal.
    document: Value,
    withdrawn: bool,
    signed_document: String,
    signature: String,
    source: String,
    created_by: String,
    created_at_ms: i64,
}

/// The document of a revision as JSON (null when empty: a withdrawal).
fn parsed_document(document: &str) -> Value {
    serde_json::from_str(document).unwrap_or_default()
}

impl From<PolicyRevision> for RevisionView {
    fn from(r: PolicyRevision) -> Self {
        RevisionView {
            document: parsed_document(&r.document),
            withdrawn: r.is_withdrawal(),
            name: r.name,
            revision: r.revision,
            signed_document: r.document,
            signature: r.signature,
            source: r.source,
            created_by: r.created_by,
            created_at_ms: r.created_at_ms,
        }
    }
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
#[utoipa::path(post, path = "/policies", tag = "policies", security(("bearer" = ["admin"])),
    request_body(content = String, content_type = "application/yaml", description = "policy document (YAML or JSON)"),
    responses(
        (status = 201, description = "new revision", body = PolicyCreated),
        (status = 200, description = "same as the newest revision", body = PolicyCreated),
        (status = 400, description = "invalid document (names the field and the reason)", body = ErrorBody),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 403, description = "not an admin", body = ErrorBody),
        (status = 409, description = "concurrent revisions", body = ErrorBody),
    ))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    body: String,
) -> Result<(StatusCode, Json<PolicyCreated>), AppError> {
    if body.trim().is_empty() {
        return Err(AppError::bad_request(
            "document: empty body; send the policy as YAML or JSON",
        ));
    }
    let (rev, created) = state
        .fleet
        .policies
        .create_policy(&caller.0.sub, &body)
        .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(PolicyCreated {
            created,
            policy: rev.into(),
        }),
    ))
}

/// Policies with their newest revision and current rollout.
#[utoipa::path(get, path = "/policies", tag = "policies", security(("bearer" = ["viewer"])),
    responses(
        (status = 200, description = "policies", body = PoliciesResponse),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 403, description = "role too low", body = ErrorBody),
    ))]
pub async fn list(State(state): State<AppState>) -> Result<Json<PoliciesResponse>, AppError> {
    let policies: Vec<PolicySummary> = state
        .fleet
        .policies
        .policies()
        .await?
        .into_iter()
        .map(|(p, rollout)| PolicySummary {
            document: parsed_document(&p.document),
            name: p.name,
            latest_revision: p.revision,
            created_by: p.created_by,
            created_at_ms: p.created_at_ms,
            rollout,
        })
        .collect();
    Ok(Json(PoliciesResponse {
        count: policies.len(),
        policies,
    }))
}

/// A policy with every revision and its rollouts.
#[utoipa::path(get, path = "/policies/{name}", tag = "policies", security(("bearer" = ["viewer"])),
    params(("name" = String, Path, description = "policy name")),
    responses(
        (status = 200, description = "policy", body = PolicyResponse),
        (status = 400, description = "invalid name", body = ErrorBody),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 403, description = "role too low", body = ErrorBody),
        (status = 404, description = "no such policy", body = ErrorBody),
    ))]
pub async fn get(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<PolicyResponse>, AppError> {
    check_name(&name)?;
    let (revisions, rollouts) = state.fleet.policies.policy_history(&name).await?;
    if revisions.is_empty() {
        return Err(AppError::not_found(format!("no policy {name:?}")));
    }
    Ok(Json(PolicyResponse {
        name,
        revisions: revisions.into_iter().map(RevisionView::from).collect(),
        rollouts,
    }))
}

/// Starts a rollout: the canary share of targeted hosts first, everyone
/// after `canary_secs` unless canary hosts refuse the revision or open
/// more anomaly events than allowed.
#[utoipa::path(post, path = "/policies/{name}/rollout", tag = "policies", security(("bearer" = ["admin"])),
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
pub async fn rollout(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<RolloutBody>,
) -> Result<(StatusCode, Json<RolloutResponse>), AppError> {
    check_name(&name)?;
    let rollout = state
        .fleet
        .policies
        .start_rollout(&caller.0.sub, &name, body.into())
        .await?;
    Ok((StatusCode::CREATED, Json(RolloutResponse { rollout })))
}

/// Withdraws a policy from every host (a signed empty revision, rolled out
/// at once). Its revisions stay; posting it again makes a new one.
#[utoipa::path(delete, path = "/policies/{name}", tag = "policies", security(("bearer" = ["admin"])),
    params(("name" = String, Path, description = "policy name")),
    responses(
        (status = 200, description = "withdrawn", body = PolicyWithdrawn),
        (status = 400, description = "invalid name", body = ErrorBody),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 403, description = "not an admin", body = ErrorBody),
        (status = 404, description = "no such policy", body = ErrorBody),
        (status = 409, description = "already withdrawn", body = ErrorBody),
    ))]
pub async fn withdraw(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<PolicyWithdrawn>, AppError> {
    check_name(&name)?;
    let (rev, rollout) = state
        .fleet
        .policies
        .withdraw_policy(&caller.0.sub, &name)
        .await?;
    Ok(Json(PolicyWithdrawn {
        policy: rev.into(),
        rollout,
    }))
}

/// Per host: the revision meant for it, the one it applied, when, and errors.
#[utoipa::path(get, path = "/policies/{name}/status", tag = "policies", security(("bearer" = ["viewer"])),
    params(("name" = String, Path, description = "policy name")),
    responses(
        (status = 200, description = "status", body = PolicyStatusResponse),
        (status = 400, description = "invalid name", body = ErrorBody),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 403, description = "role too low", body = ErrorBody),
        (status = 404, description = "no such policy", body = ErrorBody),
    ))]
pub async fn status(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<PolicyStatusResponse>, AppError> {
    check_name(&name)?;
    // Taken apart field by field, so a field added to the status is a compile error here
    // until the response (and its schema) shows it.
    let PolicyRolloutStatus {
        name,
        rollout,
        hosts,
    } = state.fleet.policies.policy_status(&name).await?;
    Ok(Json(PolicyStatusResponse {
        name,
        rollout,
        hosts,
    }))
}
