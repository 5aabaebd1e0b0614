//! `/auth/*` and `/users`: registration, login, token verification.

use axum::extract::{FromRef, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::{ApiJson, AppError};
use super::AppState;
use crate::auth::{self, Claims, Role, User};
use crate::fleet::now_ms;

/// The caller, from a valid `Authorization: Bearer` token.
pub struct Caller(pub Claims);

impl Caller {
    pub fn require(&self, role: Role) -> Result<(), AppError> {
        if self.0.role >= role {
            Ok(())
        } else {
            Err(AppError::forbidden(format!(
                "this endpoint needs the {} role; you have {}",
                role.as_str(),
                self.0.role.as_str()
            )))
        }
    }
}

fn bearer(parts: &Parts) -> Result<Option<&str>, AppError> {
    let Some(value) = parts.headers.get(axum::http::header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| AppError::unauthorized("authorization header is not valid text"))?;
    let token = value
        .strip_prefix("Bearer ")
        .ok_or_else(|| AppError::unauthorized("authorization header must be `Bearer <token>`"))?;
    Ok(Some(token.trim()))
}

#[axum::async_trait]
impl<S> FromRequestParts<S> for Caller
where
    AppState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let state = AppState::from_ref(state);
        let token = bearer(parts)?.ok_or_else(|| AppError::unauthorized("missing bearer token"))?;
        state
            .tokens
            .verify(token)
            .map(Caller)
            .map_err(|e| AppError::unauthorized(e.to_string()))
    }
}

/// Like [`Caller`] but absent without an Authorization header.
pub struct MaybeCaller(pub Option<Claims>);

#[axum::async_trait]
impl<S> FromRequestParts<S> for MaybeCaller
where
    AppState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let state = AppState::from_ref(state);
        match bearer(parts)? {
            None => Ok(Self(None)),
            Some(token) => state
                .tokens
                .verify(token)
                .map(|c| Self(Some(c)))
                .map_err(|e| AppError::unauthorized(e.to_string())),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterBody {
    username: String,
    password: String,
    #[serde(default)]
    role: Option<String>,
}

/// Open only until the first admin exists (then it bootstraps that admin);
/// afterwards only an admin may register users.
pub async fn register(
    State(state): State<AppState>,
    MaybeCaller(caller): MaybeCaller,
    ApiJson(body): ApiJson<RegisterBody>,
) -> Result<(StatusCode, Json<Value>), AppError> {
    let admin_exists = state.fleet.store().admin_exists().await?;
    let role = match body.role.as_deref() {
        None => {
            if admin_exists {
                Role::Viewer
            } else {
                Role::Admin
            }
        }
        Some(r) => Role::parse(r).ok_or_else(|| {
            AppError::bad_request(format!("role {r:?} is not one of admin, operator, viewer"))
        })?,
    };
    if admin_exists {
        match &caller {
            Some(c) if c.role == Role::Admin => {}
            Some(_) => return Err(AppError::forbidden("only an admin may register users")),
            None => return Err(AppError::forbidden("registration needs an admin token")),
        }
    } else if role != Role::Admin {
        return Err(AppError::bad_request("the first user must be an admin"));
    }
    auth::check_username(&body.username)
        .map_err(|m| AppError::bad_request(format!("username: {m}")))?;
    auth::check_password(&body.password)
        .map_err(|m| AppError::bad_request(format!("password: {m}")))?;
    let user = create_user(&state, &body.username, &body.password, role).await?;
    tracing::info!(username = %user.username, role = user.role.as_str(), by = ?caller.map(|c| c.sub), "user registered");
    Ok((StatusCode::CREATED, Json(json!({ "user": user }))))
}

pub async fn create_user(
    state: &AppState,
    username: &str,
    password: &str,
    role: Role,
) -> Result<User, AppError> {
    let password = password.to_string();
    let hash = tokio::task::spawn_blocking(move || auth::hash_password(&password))
        .await
        .map_err(AppError::internal)?
        .map_err(AppError::internal)?;
    let user = User {
        id: uuid::Uuid::new_v4().to_string(),
        username: username.to_string(),
        role,
        created_at_ms: now_ms(),
    };
    state.fleet.store().create_user(&user, &hash).await?;
    Ok(user)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginBody {
    username: String,
    password: String,
}

/// A valid argon2 hash of a random password: verifying against it when the
/// user does not exist makes unknown users cost the same time as known ones.
static DUMMY_HASH: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    auth::hash_password(&uuid::Uuid::new_v4().to_string()).unwrap_or_default()
});

pub async fn login(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<LoginBody>,
) -> Result<Json<Value>, AppError> {
    let found = state.fleet.store().user_by_name(&body.username).await?;
    let (user, hash) = match found {
        Some((u, h)) => (Some(u), h),
        None => (None, DUMMY_HASH.clone()),
    };
    let password = body.password;
    let ok = tokio::task::spawn_blocking(move || auth::verify_password(&hash, &password))
        .await
        .map_err(AppError::internal)?;
    let user = match (user, ok) {
        (Some(u), true) => u,
        // One message for both cases: no user enumeration.
        _ => return Err(AppError::unauthorized("invalid username or password")),
    };
    let (token, claims) = state
        .tokens
        .issue(&user.username, user.role, now_ms() / 1000)
        .map_err(AppError::internal)?;
    Ok(Json(json!({
        "token": token,
        "token_type": "Bearer",
        "expires_at": claims.exp,
        "role": user.role,
        "username": user.username,
    })))
}

pub async fn verify(caller: Caller) -> Json<Value> {
    Json(json!({
        "valid": true,
        "username": caller.0.sub,
        "role": caller.0.role,
        "expires_at": caller.0.exp,
    }))
}

pub async fn users(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>, AppError> {
    caller.require(Role::Admin)?;
    let users = state.fleet.store().users().await?;
    Ok(Json(json!({ "users": users })))
}
