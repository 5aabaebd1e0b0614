//! `/enrollment-tokens` (admin only).

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::auth::Caller;
use super::error::{ApiJson, AppError, ErrorBody};
use super::AppState;
use crate::fleet::enroll_limits::{MAX_TOKEN_TTL_SECS, MAX_TOKEN_USES};
use crate::fleet::EnrollmentToken;

#[derive(Serialize, utoipa::ToSchema)]
pub struct EnrollmentTokens {
    #[schema(value_type = Vec<Object>)]
    enrollment_tokens: Vec<EnrollmentToken>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct EnrollmentTokenCreated {
    /// The secret, shown only in this response.
    token: String,
    #[schema(value_type = Object)]
    enrollment_token: EnrollmentToken,
    /// SHA-256 of the fleet CA certificate, for the agent to pin; null when the control
    /// plane has no CA of its own.
    ca_sha256: Option<String>,
    note: &'static str,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateEnrollmentToken {
    /// Seconds until the token expires, 1 to `MAX_TOKEN_TTL_SECS` (default 3600).
    ttl_secs: Option<i64>,
    /// How many agents may enroll with it (default 1).
    max_uses: Option<i64>,
    /// Labels every agent enrolled with it gets (at most 64).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    labels: BTreeMap<String, String>,
}

fn check_labels(labels: &BTreeMap<String, String>) -> Result<(), AppError> {
    if labels.len() > 64 {
        return Err(AppError::bad_request("labels: at most 64 labels"));
    }
    for (k, v) in labels {
        let key_ok = !k.is_empty()
            && k.len() <= 63
            && k.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c));
        if !key_ok {
            return Err(AppError::bad_request(format!(
                "labels: key {k:?} is not [A-Za-z0-9-_./]{{1,63}}"
            )));
        }
        if v.len() > 256 {
            return Err(AppError::bad_request(format!(
                "labels: value of {k:?} is longer than 256 bytes"
            )));
        }
    }
    Ok(())
}

/// Creates an enrollment token; its secret is shown once.
#[utoipa::path(post, path = "/enrollment-tokens", tag = "enrollment", security(("bearer" = ["admin"])),
    request_body = CreateEnrollmentToken,
    responses(
        (status = 201, description = "created", body = EnrollmentTokenCreated),
        (status = 400, description = "invalid ttl_secs, max_uses or labels", body = ErrorBody),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 403, description = "not an admin", body = ErrorBody),
    ))]
pub async fn create_token(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateEnrollmentToken>,
) -> Result<(StatusCode, Json<EnrollmentTokenCreated>), AppError> {
    let ttl = body.ttl_secs.unwrap_or(3600);
    if !(1..=MAX_TOKEN_TTL_SECS).contains(&ttl) {
        return Err(AppError::bad_request(format!(
            "ttl_secs: {ttl} is outside 1..={MAX_TOKEN_TTL_SECS}"
        )));
    }
    let max_uses = body.max_uses.unwrap_or(1);
    if !(1..=MAX_TOKEN_USES).contains(&max_uses) {
        return Err(AppError::bad_request(format!(
            "max_uses: {max_uses} is outside 1..={MAX_TOKEN_USES}"
        )));
    }
    check_labels(&body.labels)?;
    let (token, secret) = state
        .fleet
        .enrollment
        .create_enrollment_token(&caller.0.sub, ttl, max_uses, body.labels)
        .await?;
    state
        .fleet
        .audit
        .record(
            &caller.0.sub,
            "enrollment_token.create",
            "",
            "created",
            json!({ "token": token.id, "max_uses": token.max_uses, "expires_at_ms": token.expires_at_ms }),
        )
        .await;
    Ok((
        StatusCode::CREATED,
        Json(EnrollmentTokenCreated {
            token: secret,
            enrollment_token: token,
            ca_sha256: state.fleet.enrollment.ca_fingerprint(),
            note: "the token is shown only now; store it safely",
        }),
    ))
}

/// Enrollment tokens (without their secrets).
#[utoipa::path(get, path = "/enrollment-tokens", tag = "enrollment", security(("bearer" = ["admin"])),
    responses(
        (status = 200, description = "enrollment tokens", body = EnrollmentTokens),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 403, description = "not an admin", body = ErrorBody),
    ))]
pub async fn list_tokens(
    State(state): State<AppState>,
) -> Result<Json<EnrollmentTokens>, AppError> {
    let enrollment_tokens = state.fleet.enrollment.enrollment_tokens().await?;
    Ok(Json(EnrollmentTokens { enrollment_tokens }))
}

/// Revokes an enrollment token.
#[utoipa::path(delete, path = "/enrollment-tokens/{id}", tag = "enrollment", security(("bearer" = ["admin"])),
    params(("id" = String, Path, description = "enrollment token id")),
    responses(
        (status = 204, description = "revoked"),
        (status = 400, description = "id too long", body = ErrorBody),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 403, description = "not an admin", body = ErrorBody),
        (status = 404, description = "no such token", body = ErrorBody),
    ))]
pub async fn revoke_token(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, AppError> {
    if id.len() > 64 {
        return Err(AppError::bad_request("token id is too long"));
    }
    if state
        .fleet
        .enrollment
        .revoke_enrollment_token(&caller.0.sub, &id)
        .await?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(AppError::not_found(format!("no enrollment token {id:?}")))
    }
}
