//! `/audit`: who did what, when, on which host, with which result (admin only).

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};

use super::error::{ApiQuery, AppError, ErrorBody};
use super::AppState;
use crate::fleet::{AuditEntry, AuditQuery};

#[derive(Serialize, utoipa::ToSchema)]
pub struct AuditResponse {
    count: usize,
    #[schema(value_type = Vec<Object>)]
    entries: Vec<AuditEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditParams {
    host: Option<String>,
    actor: Option<String>,
    action: Option<String>,
    limit: Option<String>,
}

/// The audit log.
#[utoipa::path(get, path = "/audit", tag = "remediation", security(("bearer" = ["admin"])),
    params(
        ("host" = Option<String>, Query, description = "host (agent) id"),
        ("actor" = Option<String>, Query, description = "who acted"),
        ("action" = Option<String>, Query, description = "what was done"),
        ("limit" = Option<i64>, Query, description = "at most this many"),
    ),
    responses(
        (status = 200, description = "audit entries", body = AuditResponse),
        (status = 400, description = "invalid parameter (named)", body = ErrorBody),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 403, description = "not an admin", body = ErrorBody),
    ))]
pub async fn audit(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<AuditParams>,
) -> Result<Json<AuditResponse>, AppError> {
    let limit = super::int_param("limit", q.limit.as_deref())?.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(AppError::bad_request(format!(
            "limit: {limit} is outside 1..=1000"
        )));
    }
    let entries = state
        .fleet
        .audit
        .entries(&AuditQuery {
            host: q.host,
            actor: q.actor,
            action: q.action,
            limit,
        })
        .await?;
    Ok(Json(AuditResponse {
        count: entries.len(),
        entries,
    }))
}
