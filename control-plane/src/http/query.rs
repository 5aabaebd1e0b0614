//! `/query`: ChatOps over REST. `POST` answers one message under the caller's role (each
//! intent then needs the role of its REST twin); `GET` lists the caller's recorded
//! exchanges (an admin's: everyone's, filterable).

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};

use super::auth::Caller;
use super::error::{ApiJson, ApiQuery, AppError, ErrorBody};
use super::AppState;
use crate::auth::Role;
use crate::chatops::{Answer, Asker, Exchange, ExchangeQuery};

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QueryBody {
    /// The question or command, in plain words (at most 4000 characters), e.g.
    /// `what's wrong with web-3?`, `cpu on web-1 last hour`, `confirm cf-abcdefgh`.
    #[schema(example = "what's wrong with web-3?")]
    text: String,
}

/// Answers a question about the fleet, or takes an action in two steps (the first message
/// returns a confirmation id; `confirm <id>` from the same user carries it out). Each
/// intent needs the role of the REST endpoint it stands for (approve, reject, trigger and
/// confirm: operator); a refusal is a 403 naming the role.
#[utoipa::path(post, path = "/query", tag = "chatops", security(("bearer" = ["viewer"])),
    request_body = QueryBody,
    responses(
        (status = 200, description = "the answer", body = Answer),
        (status = 400, description = "empty or too long text, or an invalid action (named)", body = ErrorBody),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 403, description = "the intent needs a higher role, or the confirmation is someone else's", body = ErrorBody),
        (status = 404, description = "no such host, event, action or pending confirmation", body = ErrorBody),
        (status = 409, description = "the confirmation expired, or the proposal is no longer waiting", body = ErrorBody),
    ))]
pub async fn ask(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<QueryBody>,
) -> Result<Json<Answer>, AppError> {
    let asker = Asker {
        user: caller.0.sub.clone(),
        role: caller.0.role,
        source: "api",
    };
    Ok(Json(state.chat.ask(&asker, &body.text).await?))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// Admins only: this user's exchanges (others always see their own).
    user: Option<String>,
    /// Exchanges at or after (Unix milliseconds).
    #[param(value_type = Option<i64>)]
    from: Option<String>,
    /// Exchanges before (Unix milliseconds).
    #[param(value_type = Option<i64>)]
    to: Option<String>,
    /// 1 to 200, default 50.
    #[param(value_type = Option<i64>)]
    limit: Option<String>,
    /// Default 0.
    #[param(value_type = Option<i64>)]
    offset: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct HistoryResponse {
    count: usize,
    offset: i64,
    /// The offset of the next page, null on the last one.
    next_offset: Option<i64>,
    /// Newest first: `id`, `at_ms`, `user`, `role`, `source`, `text`, `intent`, `answer`,
    /// `outcome`, `confirmation_id`.
    #[schema(value_type = Vec<Object>)]
    exchanges: Vec<Exchange>,
}

const MAX_LIMIT: i64 = 200;

/// The caller's ChatOps history, newest first, paged. Admins see everyone's and may filter by
/// `user`; a `user` other than oneself from anyone else is a 403.
#[utoipa::path(get, path = "/query", tag = "chatops", security(("bearer" = ["viewer"])),
    params(HistoryQuery),
    responses(
        (status = 200, description = "a page of exchanges", body = HistoryResponse),
        (status = 400, description = "invalid parameter (named)", body = ErrorBody),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 403, description = "another user's history, not being an admin", body = ErrorBody),
    ))]
pub async fn history(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<HistoryQuery>,
) -> Result<Json<HistoryResponse>, AppError> {
    let user = match (caller.0.role, q.user) {
        (Role::Admin, user) => user,
        (_, Some(u)) if u != caller.0.sub => {
            return Err(AppError::forbidden(
                "user: only admins may read another user's history",
            ))
        }
        _ => Some(caller.0.sub.clone()),
    };
    if let Some(u) = &user {
        if u.is_empty() || u.len() > 64 {
            return Err(AppError::bad_request(format!(
                "user: {u:?} is not a user name"
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
        50,
        MAX_LIMIT,
    )?;
    let (limit, offset, from_ms, to_ms) = (page.limit, page.offset, page.from_ms, page.to_ms);
    let exchanges = state
        .chat
        .history(&ExchangeQuery {
            user,
            from_ms,
            to_ms,
            limit,
            offset,
        })
        .await?;
    let next_offset = page.next_offset(exchanges.len());
    Ok(Json(HistoryResponse {
        count: exchanges.len(),
        offset,
        next_offset,
        exchanges,
    }))
}
