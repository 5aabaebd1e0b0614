//! `/runbooks`: the knowledge base. Viewers read and search; operators write. Every write is
//! audited.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::auth::Caller;
use super::error::{ApiJson, ApiQuery, AppError, ErrorBody};
use super::AppState;
use crate::domain::now_ms;
use crate::runbooks::{Citation, Runbook, RunbookIn, MAX_QUERY};

#[derive(Serialize, utoipa::ToSchema)]
pub struct RunbooksResponse {
    count: usize,
    /// With `q`: the matches, best first.
    runbooks: Vec<Runbook>,
    /// With `q`: rank and why per match, in the same order.
    #[serde(skip_serializing_if = "Option::is_none")]
    matches: Option<Vec<Citation>>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct RunbookResponse {
    runbook: Runbook,
}

fn one(runbook: Runbook) -> Json<RunbookResponse> {
    Json(RunbookResponse { runbook })
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct RevisionsResponse {
    id: String,
    /// Newest first.
    revisions: Vec<Runbook>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    q: Option<String>,
    tag: Option<String>,
    limit: Option<String>,
}

fn check_id(id: &str) -> Result<(), AppError> {
    if id.is_empty() || id.len() > 64 {
        return Err(AppError::bad_request("id: 1 to 64 characters"));
    }
    Ok(())
}

/// Runbooks by title, or with `q` the full-text matches best first.
#[utoipa::path(get, path = "/runbooks", tag = "runbooks", security(("bearer" = ["viewer"])),
    params(
        ("q" = Option<String>, Query, description = "full-text search over title, tags and body (every word, as a prefix)"),
        ("tag" = Option<String>, Query, description = "only runbooks with this tag"),
        ("limit" = Option<i64>, Query, description = "at most this many search results (1-100, default 20)"),
    ),
    responses(
        (status = 200, description = "runbooks", body = RunbooksResponse),
        (status = 400, description = "invalid parameter (named)", body = ErrorBody),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 403, description = "role too low", body = ErrorBody),
    ))]
pub async fn list(
    State(state): State<AppState>,
    ApiQuery(p): ApiQuery<ListParams>,
) -> Result<Json<RunbooksResponse>, AppError> {
    let limit = super::int_param("limit", p.limit.as_deref())?.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(AppError::bad_request(format!(
            "limit: {limit} is outside 1..=100"
        )));
    }
    let Some(q) = p.q else {
        let runbooks = state.runbooks.list(p.tag.as_deref()).await?;
        return Ok(Json(RunbooksResponse {
            count: runbooks.len(),
            runbooks,
            matches: None,
        }));
    };
    if q.len() > MAX_QUERY {
        return Err(AppError::bad_request(format!(
            "q: longer than {MAX_QUERY} bytes"
        )));
    }
    let mut found = state.runbooks.search(&q, limit).await?;
    let mut runbooks = Vec::with_capacity(found.len());
    for c in &found {
        if let Some(r) = state.runbooks.get(&c.id).await? {
            runbooks.push(r);
        }
    }
    if let Some(tag) = p.tag.as_deref() {
        runbooks.retain(|r| r.tags.iter().any(|t| t == tag));
        found.retain(|c| runbooks.iter().any(|r| r.id == c.id));
    }
    Ok(Json(RunbooksResponse {
        count: runbooks.len(),
        runbooks,
        matches: Some(found),
    }))
}

/// Writes a new runbook (revision 1, or the next of a deleted runbook's history).
#[utoipa::path(post, path = "/runbooks", tag = "runbooks", security(("bearer" = ["operator"])),
    request_body = RunbookIn,
    responses(
        (status = 201, description = "stored", body = RunbookResponse),
        (status = 400, description = "invalid runbook (names the field)", body = ErrorBody),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 403, description = "role too low", body = ErrorBody),
        (status = 409, description = "a runbook with this id exists", body = ErrorBody),
        (status = 413, description = "body too large", body = ErrorBody),
        (status = 415, description = "not JSON", body = ErrorBody),
        (status = 422, description = "body does not match the schema", body = ErrorBody),
    ))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(input): ApiJson<RunbookIn>,
) -> Result<(StatusCode, Json<RunbookResponse>), AppError> {
    let rb = state
        .runbooks
        .create(&caller.0.sub, input, now_ms())
        .await?;
    audit(&state, &caller, "runbook.create", &rb).await;
    Ok((StatusCode::CREATED, one(rb)))
}

/// One runbook at its current revision.
#[utoipa::path(get, path = "/runbooks/{id}", tag = "runbooks", security(("bearer" = ["viewer"])),
    params(("id" = String, Path, description = "runbook id")),
    responses(
        (status = 200, description = "the runbook", body = RunbookResponse),
        (status = 400, description = "invalid id", body = ErrorBody),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 403, description = "role too low", body = ErrorBody),
        (status = 404, description = "no such runbook", body = ErrorBody),
    ))]
pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<RunbookResponse>, AppError> {
    check_id(&id)?;
    let rb = state
        .runbooks
        .get(&id)
        .await?
        .ok_or_else(|| AppError::not_found(format!("no runbook {id:?}")))?;
    Ok(one(rb))
}

/// Stores the next revision of a runbook; `base_revision` guards against overwriting an
/// edit made meanwhile.
#[utoipa::path(put, path = "/runbooks/{id}", tag = "runbooks", security(("bearer" = ["operator"])),
    params(("id" = String, Path, description = "runbook id")),
    request_body = RunbookIn,
    responses(
        (status = 200, description = "the new revision", body = RunbookResponse),
        (status = 400, description = "invalid runbook (names the field)", body = ErrorBody),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 403, description = "role too low", body = ErrorBody),
        (status = 404, description = "no such runbook", body = ErrorBody),
        (status = 409, description = "changed since base_revision", body = ErrorBody),
        (status = 413, description = "body too large", body = ErrorBody),
        (status = 415, description = "not JSON", body = ErrorBody),
        (status = 422, description = "body does not match the schema", body = ErrorBody),
    ))]
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<RunbookIn>,
) -> Result<Json<RunbookResponse>, AppError> {
    check_id(&id)?;
    let rb = state
        .runbooks
        .update(&id, &caller.0.sub, input, now_ms())
        .await?;
    audit(&state, &caller, "runbook.update", &rb).await;
    Ok(one(rb))
}

/// Removes a runbook; its revisions stay readable.
#[utoipa::path(delete, path = "/runbooks/{id}", tag = "runbooks", security(("bearer" = ["operator"])),
    params(("id" = String, Path, description = "runbook id")),
    responses(
        (status = 200, description = "the removed runbook", body = RunbookResponse),
        (status = 400, description = "invalid id", body = ErrorBody),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 403, description = "role too low", body = ErrorBody),
        (status = 404, description = "no such runbook", body = ErrorBody),
    ))]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<RunbookResponse>, AppError> {
    check_id(&id)?;
    let rb = state.runbooks.delete(&id).await?;
    audit(&state, &caller, "runbook.delete", &rb).await;
    Ok(one(rb))
}

/// Every revision of a runbook, newest first (also of a deleted one).
#[utoipa::path(get, path = "/runbooks/{id}/revisions", tag = "runbooks", security(("bearer" = ["viewer"])),
    params(("id" = String, Path, description = "runbook id")),
    responses(
        (status = 200, description = "revisions", body = RevisionsResponse),
        (status = 400, description = "invalid id", body = ErrorBody),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 403, description = "role too low", body = ErrorBody),
        (status = 404, description = "never stored", body = ErrorBody),
    ))]
pub async fn revisions(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<RevisionsResponse>, AppError> {
    check_id(&id)?;
    let revisions = state.runbooks.revisions(&id).await?;
    if revisions.is_empty() {
        return Err(AppError::not_found(format!("no runbook {id:?}")));
    }
    Ok(Json(RevisionsResponse { id, revisions }))
}

async fn audit(state: &AppState, caller: &Caller, action: &str, rb: &Runbook) {
    state
        .fleet
        .audit
        .record(
            &caller.0.sub,
            action,
            "",
            "ok",
            json!({ "runbook": rb.id, "revision": rb.revision, "title": rb.title }),
        )
        .await;
}
